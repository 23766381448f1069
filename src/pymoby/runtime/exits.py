"""Container exits: conmon's exit directory, watched with inotify, and exit files read back.

Rule: conmon writes `<exit dir>/<cid>` once, when the container's init process is gone, with
the exit status as decimal text (128+signal for a signal death, -1 when unknown), and it writes
it with g_file_set_contents: a temporary `<cid>.XXXXXX` renamed into place. So the name
appears atomically with IN_MOVED_TO; temporaries (names with a dot suffix) are ignored.
The OOM marker is a separate empty file (`<persist dir>/oom`), created by conmon when the
container's memory cgroup reported an OOM kill before the exit; the finish time is the exit
file's mtime, which survives a daemon restart.

`ExitWatcher` reports every exit once per exit file (same inode and mtime = same exit), at once
(no polling), and rescans the directory when the kernel's queue overflowed. The file reads run
in a worker thread; only the inotify descriptor lives on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymoby.kernel import inotify

log = logging.getLogger(__name__)

OnExit = Callable[[str, int, bool, int], object]
"""on_exit(cid, exit_code, oom, finished_at_ns); may return an awaitable (run as a task)."""

_MASK = inotify.IN_MOVED_TO | inotify.IN_CLOSE_WRITE | inotify.IN_ONLYDIR


@dataclass(frozen=True)
class ExitStatus:
    cid: str
    exit_code: int
    oom: bool
    finished_at_ns: int
    key: tuple[int, int] = (0, 0)  # (inode, mtime_ns) of the exit file


def read_exit_file(path: Path, cid: str, oom_marker: Path | None) -> ExitStatus | None:
    """Read one exit file; None when it is missing or not (yet) an integer. Blocking."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            text = f.read(64)
    except OSError:
        return None
    try:
        code = int(text.strip())
    except ValueError:
        return None
    oom = oom_marker is not None and oom_marker.exists()
    return ExitStatus(cid, code, oom, st.st_mtime_ns, (st.st_ino, st.st_mtime_ns))


def _is_exit_name(name: str) -> bool:
    return bool(name) and "." not in name and "/" not in name


class ExitWatcher:
    """Watches one exit directory and calls `on_exit` for each container exit."""

    def __init__(
        self,
        exit_dir: Path,
        on_exit: OnExit,
        *,
        oom_marker: Callable[[str], Path | None] | None = None,
    ) -> None:
        self.exit_dir = Path(exit_dir)
        self._on_exit = on_exit
        self._oom_marker = oom_marker or (lambda _cid: None)
        self._ino: inotify.Inotify | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seen: dict[str, tuple[int, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Create the directory if needed and start watching (call before adopting)."""
        if self._ino is not None:
            return
        await asyncio.to_thread(self.exit_dir.mkdir, parents=True, exist_ok=True)
        ino = inotify.Inotify()
        try:
            ino.add_watch(self.exit_dir, _MASK)
        except OSError:
            ino.close()
            raise
        self._ino = ino
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(ino.fileno(), self._readable)

    def _readable(self) -> None:
        if self._ino is None:
            return
        try:
            events = self._ino.read_events()
        except OSError as e:
            log.error("reading exit directory events: %s", e)
            return
        names: list[str] = []
        rescan = False
        for ev in events:
            if ev.overflow:
                rescan = True
            elif _is_exit_name(ev.name) and ev.name not in names:
                names.append(ev.name)
        if rescan or names:
            self._spawn(self._handle(names, rescan))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, names: list[str], rescan: bool) -> None:
        if rescan:
            listing = await asyncio.to_thread(os.listdir, self.exit_dir)
            names = [n for n in listing if _is_exit_name(n)]
        statuses = await asyncio.to_thread(self._read_all, names)
        for st in statuses:
            await self._report(st)

    def _read_all(self, names: list[str]) -> list[ExitStatus]:
        out: list[ExitStatus] = []
        for name in names:
            st = read_exit_file(self.exit_dir / name, name, self._oom_marker(name))
            if st is not None:
                out.append(st)
        return out

    async def _report(self, st: ExitStatus) -> None:
        if self._seen.get(st.cid) == st.key:
            return
        self._seen[st.cid] = st.key
        try:
            result = self._on_exit(st.cid, st.exit_code, st.oom, st.finished_at_ns)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("exit handler for %s failed", st.cid)

    async def check(self, cid: str) -> ExitStatus | None:
        """Read `cid`'s exit file now and report it if it was not reported yet."""
        st = await asyncio.to_thread(
            read_exit_file, self.exit_dir / cid, cid, self._oom_marker(cid)
        )
        if st is not None:
            await self._report(st)
        return st

    def forget(self, cid: str) -> None:
        """Drop what was reported for `cid` (its exit file was removed for a new run)."""
        self._seen.pop(cid, None)

    async def close(self) -> None:
        if self._ino is not None:
            if self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(self._ino.fileno())
            ino, self._ino = self._ino, None
            await asyncio.to_thread(ino.close)  # closing an inotify fd can wait ~20 ms
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
