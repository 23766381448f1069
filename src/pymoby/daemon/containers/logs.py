"""Container logs (GET /containers/{id}/logs, attach's `logs=1`): conmon's log read back.

Rule: the log is read exactly as dockerd's json-file reader reads its own files:
- `tail` (dockerd: strconv.Atoi, anything else or negative is "all") selects the last N lines
  of the whole file set first; `since` and `until` filter what tail selected. Lines before
  `since` are skipped until the first one at or after it, then every line passes (timestamps
  need not be monotonic); the first line after `until` ends the stream, following included.
- `follow` only while the container runs (dockerd follows only a running container's logger):
  the files are read up to where they were when the request came, then followed (DirWatcher
  wake-ups, a slow poll as a safety net) until the container stops; then the rest is read and
  the stream ends. A client that leaves cancels the iterator at once.
- Lines are conmon's records joined per stream (runtime/k8slog.py); a joined line has the time
  of its first record. A line still open when the stream ends is handed out as it is (no
  newline), as dockerd hands out a partial message.
- `details` attributes come from the log options `labels`, `labels-regex`, `env`, `env-regex`
  and the container's labels and environment (dockerd's Info.ExtraAttributes); k8s-file does
  not store them per line, so they are the container's current ones.
- Errors as dockerd: `You must choose at least one stream` (400), a container being removed or
  dead (409), the `none` log driver (501 `configured logging driver does not support reading`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pymoby import errdefs
from pymoby.daemon.containers.logfile import Cursor, snapshot, tail_start
from pymoby.daemon.containers.logwatch import DirWatcher
from pymoby.daemon.containers.model import Container
from pymoby.runtime.k8slog import DEFAULT_MAX_LINE, LogLine
from pymoby.runtime.runc import parse_rfc3339_ns
from pymoby.server.backends import LogMessage, LogsOptions, LogStream

SAFETY_POLL = 1.0  # seconds between reads while following when no wake-up comes


class ReadLogsNotSupported(errdefs.NotImplementedErr):
    def __init__(self) -> None:
        super().__init__("configured logging driver does not support reading")


def parse_tail(text: str) -> int:
    """dockerd: strconv.Atoi of `tail`; not a number (e.g. "all") or negative means all (-1)."""
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        return -1
    n = int(text, 10)
    return n if n >= 0 else -1


def extra_attributes(
    opts: Mapping[str, str] | None, labels: Mapping[str, str] | None, env: Sequence[str] | None
) -> tuple[tuple[str, str], ...]:
    """dockerd's Info.ExtraAttributes(nil), sorted by key as logstream writes them."""
    opts = opts or {}
    labels = labels or {}
    extra: dict[str, str] = {}
    for key in (opts.get("labels") or "").split(","):
        if key and key in labels:
            extra[key] = labels[key]
    if opts.get("labels-regex"):
        pattern = re.compile(opts["labels-regex"])
        extra.update({k: v for k, v in labels.items() if pattern.search(k)})
    mapping: dict[str, str] = {}
    for item in env or ():
        key, sep, value = item.partition("=")
        if sep:
            mapping[key] = value
    if mapping:
        for key in (opts.get("env") or "").split(","):
            if key in mapping:
                extra[key] = mapping[key]
        if opts.get("env-regex"):
            pattern = re.compile(opts["env-regex"])
            extra.update({k: v for k, v in mapping.items() if pattern.search(k)})
    return tuple(sorted(extra.items()))


_STREAM_NAMES = {b"stdout": "stdout", b"stderr": "stderr"}


class Joiner:
    """conmon's records joined into lines per stream, as runtime/k8slog.LogJoiner joins them
    (same rules; a line without P records, the common case, takes a short path)."""

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self._max = max_line
        self._open: dict[str, tuple[str, list[bytes], int]] = {}

    def feed(self, records: list[bytes]) -> list[LogLine]:
        out: list[LogLine] = []
        opened = self._open
        for raw in records:
            parts = raw.split(b" ", 3)
            if len(parts) < 3:
                continue
            stream = _STREAM_NAMES.get(parts[1])
            tag = parts[2]
            if stream is None or tag not in (b"F", b"P"):
                continue
            content = parts[3] if len(parts) == 4 else b""
            pending = opened.get(stream)
            if tag == b"F":
                if pending is None:
                    out.append(
                        LogLine(parts[0].decode("ascii", "replace"), stream, content + b"\n")
                    )
                else:
                    del opened[stream]
                    pending[1].append(content + b"\n")
                    out.append(LogLine(pending[0], stream, b"".join(pending[1])))
            elif pending is None:
                opened[stream] = (parts[0].decode("ascii", "replace"), [content], len(content))
            else:
                pending[1].append(content)
                size = pending[2] + len(content)
                if size >= self._max:  # bound memory: hand out what there is, as partial
                    del opened[stream]
                    out.append(LogLine(pending[0], stream, b"".join(pending[1]), True))
                else:
                    opened[stream] = (pending[0], pending[1], size)
        return out

    def flush(self) -> list[LogLine]:
        """The lines still open, oldest first (each without its newline)."""
        out = [LogLine(t, s, b"".join(chunks), True) for s, (t, chunks, _) in self._open.items()]
        self._open.clear()
        out.sort(key=lambda line: line.time)
        return out


async def read_lines(
    path: Path,
    *,
    tail: int = -1,
    follow: bool = False,
    stop: asyncio.Future[Any] | None = None,
    watcher: DirWatcher | None = None,
    poll: float = SAFETY_POLL,
    open_lines: bool = True,
) -> AsyncIterator[list[LogLine]]:
    """The joined lines of the log at `path` in batches as read (module docstring); `stop`
    ends following.

    Lines still open are handed out at the end when `open_lines` (the container stopped);
    else (a running container is writing them) only once they are complete.
    """
    snap = await asyncio.to_thread(snapshot, path)
    partial = open_lines and not follow
    try:
        start = (0, 0)
        if tail >= 0:
            start = await asyncio.to_thread(tail_start, snap, tail, partial=partial)
    except BaseException:
        snap.close()
        raise
    cursor = Cursor(path, snap, *start)
    joiner = Joiner()
    unsubscribe = None
    try:
        window: deque[LogLine] | None = deque(maxlen=tail) if tail >= 0 else None
        while records := await asyncio.to_thread(cursor.read, follow=False):
            lines = joiner.feed(records)
            if window is None:
                if lines:
                    yield lines
            else:
                window.extend(lines)
        if partial:
            if window is None:
                window = deque()
            window.extend(joiner.flush())
        if window:
            yield list(window)
        if not follow:
            return
        wake = asyncio.Event()
        prefix = path.name + "."

        def woken(name: str) -> None:
            if name in ("", path.name) or name.startswith(prefix):
                wake.set()

        if watcher is not None:
            with contextlib.suppress(OSError):
                unsubscribe = watcher.subscribe(path.parent, woken)
        stopping = False
        while True:
            wake.clear()
            records = await asyncio.to_thread(cursor.read, follow=True)
            if records:
                if lines := joiner.feed(records):
                    yield lines
                continue
            if stopping:
                break
            if stop is not None and stop.done():
                stopping = True  # conmon wrote everything before the exit: one more read
                continue
            waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(wake.wait())]
            if stop is not None:
                waiters.append(stop)
            try:
                await asyncio.wait(waiters, timeout=poll, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiters[0].cancel()
        if lines := joiner.flush():
            yield lines
    finally:
        if unsubscribe is not None:
            unsubscribe()
        cursor.close()


class LogService:
    """Reads containers' logs; `watcher` wakes followers (None: they poll)."""

    def __init__(self, watcher: DirWatcher | None = None, *, poll: float = SAFETY_POLL) -> None:
        self.watcher = watcher
        self.poll = poll

    def check(self, c: Container) -> None:
        if c.removing or c.dead:
            raise errdefs.Conflict(
                "can not get logs from container which is dead or marked for removal"
            )
        if c.host_config.log_config.type == "none":
            raise ReadLogsNotSupported()

    def lines(
        self, c: Container, *, tail: int = -1, follow: bool = False
    ) -> AsyncIterator[list[LogLine]]:
        """The container's joined log lines in batches; following ends when it stops."""
        stop: asyncio.Future[Any] | None = None
        if follow:
            stop = c.wait("not-running")
        lines = read_lines(
            c.log_path,
            tail=tail,
            follow=follow,
            stop=stop,
            watcher=self.watcher,
            poll=self.poll,
            open_lines=not c.running,
        )
        return _cancelling(lines, stop)

    async def logs(self, c: Container, options: LogsOptions) -> LogStream:
        if not options.stdout and not options.stderr:
            raise errdefs.InvalidParameter("You must choose at least one stream")
        self.check(c)
        attrs = extra_attributes(c.host_config.log_config.config, c.config.labels, c.config.env)
        follow = options.follow and c.running
        lines = self.lines(c, tail=parse_tail(options.tail), follow=follow)
        return LogStream(tty=c.config.tty, batches=_messages(lines, options, attrs))


async def _cancelling(
    batches: AsyncIterator[list[LogLine]], stop: asyncio.Future[Any] | None
) -> AsyncIterator[list[LogLine]]:
    """`batches`, then the stop waiter is dropped (a reader that ends first leaves none)."""
    try:
        async for batch in batches:
            yield batch
    finally:
        if stop is not None:
            stop.cancel()
        await batches.aclose()  # type: ignore[attr-defined]


async def _messages(
    batches: AsyncIterator[list[LogLine]],
    options: LogsOptions,
    attrs: tuple[tuple[str, str], ...],
) -> AsyncIterator[list[LogMessage]]:
    since, until = options.since, options.until
    wanted = {s for s, on in (("stdout", options.stdout), ("stderr", options.stderr)) if on}
    last_text, last_ns = "", 0
    try:
        async for batch in batches:
            out: list[LogMessage] = []
            for line in batch:
                if line.time != last_text:
                    last_text, last_ns = line.time, parse_rfc3339_ns(line.time)
                if since is not None:
                    if last_ns < since:
                        continue
                    since = None
                if until is not None and last_ns > until:
                    if out:
                        yield out
                    return
                if line.stream in wanted:
                    out.append(LogMessage(line.stream, line.data, last_ns, attrs))
            if out:
                yield out
    finally:
        aclose = getattr(batches, "aclose", None)
        if aclose is not None:
            await aclose()
