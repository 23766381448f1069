"""The k8s-file log format conmon writes, parsed back into whole lines.

Rule: one record per line of the file, `<timestamp> <stream> <tag> <content>`, where the
timestamp is RFC 3339 with nanoseconds and the local zone offset
(`2026-11-27T18:10:43.824631952+00:00`), stream is `stdout` or `stderr`, and tag is `F` (the
content ends a line: the record's newline *is* the content's newline) or `P` (a partial line:
conmon appended the newline, it is not content). conmon writes whatever one read(2) returned,
so a long or unterminated line is a run of P records closed by one F record, and the runs of
stdout and stderr interleave; joining is therefore per stream. A joined line keeps the time of
its first record. Content is bytes (containers write arbitrary bytes).

At `--log-size-max` conmon starts the file again (truncates by rename), so a reader that sees
the file shrink starts over; a run of P records cut off by the end of the file (the container
stopped mid-line) comes out as a partial line from `flush()`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pymoby.runtime.runc import parse_rfc3339_ns

STREAMS = ("stdout", "stderr")
DEFAULT_MAX_LINE = 1024 * 1024


@dataclass(frozen=True)
class LogRecord:
    """One record (line) of a k8s-file log."""

    time: str
    stream: str
    partial: bool
    content: bytes  # for F records including the line's b"\n"; for P records without one

    @property
    def time_ns(self) -> int:
        return parse_rfc3339_ns(self.time)


@dataclass(frozen=True)
class LogLine:
    """A whole line (P records joined up to their F), or a trailing partial one."""

    time: str
    stream: str
    data: bytes  # ends with b"\n" unless partial
    partial: bool = False

    @property
    def time_ns(self) -> int:
        return parse_rfc3339_ns(self.time)


def parse_record(line: bytes) -> LogRecord | None:
    """Parse one record (with or without its trailing newline); None when malformed."""
    if line.endswith(b"\n"):
        line = line[:-1]
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        return None
    ts, stream, tag = parts[0], parts[1], parts[2]
    content = parts[3] if len(parts) == 4 else b""
    if tag not in (b"F", b"P") or stream not in (b"stdout", b"stderr"):
        return None
    partial = tag == b"P"
    if not partial:
        content += b"\n"
    return LogRecord(ts.decode("ascii", "replace"), stream.decode(), partial, content)


class LogJoiner:
    """Feed records in file order; whole lines come out as soon as their F record arrives."""

    def __init__(self, *, max_line: int = DEFAULT_MAX_LINE) -> None:
        self._max = max_line
        self._parts: dict[str, list[bytes]] = {}
        self._size: dict[str, int] = {}
        self._time: dict[str, str] = {}

    def feed(self, record: LogRecord) -> list[LogLine]:
        s = record.stream
        if record.partial:
            if s not in self._parts:
                self._parts[s], self._size[s], self._time[s] = [], 0, record.time
            self._parts[s].append(record.content)
            self._size[s] += len(record.content)
            if self._size[s] >= self._max:  # bound memory: hand out what we have, as partial
                return [self._take(s, partial=True)]
            return []
        if s not in self._parts:
            return [LogLine(record.time, s, record.content)]
        self._parts[s].append(record.content)
        return [self._take(s, partial=False)]

    def _take(self, stream: str, *, partial: bool) -> LogLine:
        data = b"".join(self._parts.pop(stream))
        self._size.pop(stream, None)
        return LogLine(self._time.pop(stream), stream, data, partial)

    def flush(self) -> list[LogLine]:
        """Pending partial lines (the file ended mid-line), oldest first."""
        out = [self._take(s, partial=True) for s in list(self._parts)]
        out.sort(key=lambda line: line.time)
        return out

    def reset(self) -> None:
        """Forget pending parts (the file was truncated and starts over)."""
        self._parts.clear()
        self._size.clear()
        self._time.clear()


def iter_lines(lines: Iterable[bytes], *, flush: bool = True) -> Iterator[LogLine]:
    """Whole lines from raw file lines; malformed records are skipped."""
    joiner = LogJoiner()
    for raw in lines:
        record = parse_record(raw)
        if record is not None:
            yield from joiner.feed(record)
    if flush:
        yield from joiner.flush()


def parse_log(data: bytes) -> list[LogLine]:
    """Every line of a whole k8s-file log given as bytes (split on b"\n" only: content may
    carry b"\r" from a TTY)."""
    raw = data.split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()
    return list(iter_lines(raw))
