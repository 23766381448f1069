"""A container's log files on disk, read back in order: the tail start and a forward cursor.

Rule: a log is a *file set*: `<log>.N` ... `<log>.1` (rotated, oldest first) then `<log>` (the
one conmon writes, see logrotate.py), all in conmon's k8s-file format (runtime/k8slog.py). Every
function here is blocking (file I/O) and runs in a worker thread; nothing here waits for data.

- Records are whole lines of a file. A line without its newline at the end of the file that
  conmon writes is still being written: it is not read until its newline is there.
- `tail_start(n)` finds where to start reading so that the last `n` *joined* lines (P records
  joined up to their F, runs of stdout and stderr interleaved) are read whole: it scans records
  backwards until it has counted `n` lines and reached, for every stream with a counted line,
  that stream's previous F record. The caller reads forward from there and keeps the last `n`
  lines (earlier lines read from there may be cut at their start: they are not among the last n).
  A stream's open line (P records after its last F) counts as a line only when `partial`
  lines are wanted (the reader hands them out at the end); it is read whole either way. A
  stream not met among the last lines is looked for only TRAILING_SCAN bytes further back.
- `Cursor` reads forward across the file set and follows the current file through rotation:
  at the end of the file it holds, when the log path names another file (conmon reopened after a
  rename), the old file is read to its end first and the new one is then read from its start.
  While the path names no file (renamed, conmon not yet reopened) the old file is still written.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BLOCK = 64 * 1024
STREAMS = ("stdout", "stderr")
# How far `tail_start` looks back past the wanted lines for a stream it has not met yet (whose
# open line, if it has one, must be read whole): beyond that such a line is not looked for.
TRAILING_SCAN = 1 << 20
BATCH_BYTES = 1 << 20  # bytes of records handed out per `Cursor.read` call
_ALL = 1 << 62


def rotated_files(path: Path) -> list[Path]:
    """The rotated files `<log>.N` that exist, oldest (highest N) first."""
    pattern = re.compile(re.escape(path.name) + r"\.([0-9]+)$")
    found: list[tuple[int, Path]] = []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    for name in names:
        m = pattern.match(name)
        if m is not None:
            found.append((int(m.group(1)), path.parent / name))
    found.sort(key=lambda item: -item[0])
    return [p for _, p in found]


@dataclass
class Snapshot:
    """The file set at one moment, oldest first, each file open; how far each is complete.

    The last file is the one conmon writes (the log path, or the newest rotated file while the
    path names nothing between a rename and conmon's reopen); a Cursor follows it.
    """

    paths: list[Path]
    fds: list[int]
    ends: list[int]  # offset just after each file's last newline

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []


def _complete_end(fd: int) -> int:
    """The offset just after the last newline of an open file."""
    pos = os.fstat(fd).st_size
    while pos > 0:
        start = max(0, pos - BLOCK)
        data = os.pread(fd, pos - start, start)
        idx = data.rfind(b"\n")
        if idx >= 0:
            return start + idx + 1
        pos = start
    return 0


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return -1


def _same_file(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except OSError:
        return False


def snapshot(path: Path, *, attempts: int = 5) -> Snapshot:
    """Open the file set of `path` as it is now; retried when a rotation happens meanwhile."""
    for _ in range(attempts):
        paths: list[Path] = []
        fds: list[int] = []
        for p in [*rotated_files(path), path]:
            fd = _open(p)
            if fd >= 0:
                paths.append(p)
                fds.append(fd)
        snap = Snapshot(paths, fds, [])
        if all(_same_file(p, fd) for p, fd in zip(paths, fds, strict=True)):
            snap.ends = [_complete_end(fd) for fd in fds]
            return snap
        snap.close()
    paths, fds = [], []
    fd = _open(path)
    if fd >= 0:
        paths, fds = [path], [fd]
    return Snapshot(paths, fds, [_complete_end(fd) for fd in fds])


def _reverse_records(fd: int, end: int) -> Iterator[tuple[int, bytes]]:
    """(offset, record without its newline) of each line before `end`, last first."""
    buf = b""
    buf_start = end
    limit = 0  # buf[:limit] is not handed out yet; buf[limit - 1] is a newline
    while True:
        idx = buf.rfind(b"\n", 0, limit - 1) if limit > 1 else -1
        if idx >= 0:
            yield buf_start + idx + 1, buf[idx + 1 : limit - 1]
            limit = idx + 1
            continue
        if buf_start == 0:
            if limit > 0:
                yield 0, buf[: limit - 1]
            return
        size = min(BLOCK, buf_start)
        buf_start -= size
        chunk = os.pread(fd, size, buf_start)
        buf = chunk + buf[:limit]
        limit = len(chunk) + limit


def _record_head(line: bytes) -> tuple[str, bool] | None:
    """(stream, partial) of a k8s-file record, None when malformed."""
    parts = line.split(b" ", 3)
    if len(parts) < 3 or parts[2] not in (b"F", b"P") or parts[1] not in (b"stdout", b"stderr"):
        return None
    return parts[1].decode(), parts[2] == b"P"


def tail_start(snap: Snapshot, n: int, *, partial: bool) -> tuple[int, int]:
    """(file index, offset) to read forward from for the last `n` lines (module docstring)."""
    counted = 0
    seen: set[str] = set()  # streams whose last record was seen (going backwards)
    open_streams: set[str] = set()  # streams with a wanted line whose start is not reached
    extra = -1  # bytes scanned since `n` lines were found, looking for an unseen stream
    for index in range(len(snap.paths) - 1, -1, -1):
        for offset, record in _reverse_records(snap.fds[index], snap.ends[index]):
            head = _record_head(record)
            if head is None:
                continue
            stream, is_partial = head
            if stream not in seen:
                seen.add(stream)
                if is_partial:  # the stream's line still open at the end
                    open_streams.add(stream)
                    counted += 1 if partial else 0
                    continue
            if extra >= 0:
                extra += len(record) + 1
            if is_partial:
                continue
            if counted < n:
                counted += 1
                open_streams.add(stream)
            elif stream in open_streams:
                open_streams.discard(stream)  # the previous line of `stream`: not wanted
            if counted >= n and not open_streams:
                extra = max(extra, 0)
                if len(seen) == len(STREAMS) or extra > TRAILING_SCAN:
                    return index, offset + len(record) + 1
    return 0, 0


class Cursor:
    """Reads records forward from a position in a snapshot, then follows the last file.

    The cursor owns the snapshot's descriptors (`close` releases them).
    """

    def __init__(self, path: Path, snap: Snapshot, index: int, offset: int) -> None:
        self.path = path
        self._fds = snap.fds
        self._ends = snap.ends
        snap.fds = []
        self._index = index
        self._offset = offset
        self._rest = b""  # bytes after the last newline read from the file being read

    def close(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []

    def read(self, *, follow: bool) -> list[bytes]:
        """The next records (each without its newline); [] when nothing more is there now.

        Without `follow` reading stops at the snapshot's ends. With it, the last file is read
        to its present end, and when the log path names another file, that one next.
        """
        while self._index < len(self._fds) - 1:  # files before the last: complete
            records = self._read(self._ends[self._index] - self._offset)
            if records:
                return records
            self._index += 1
            self._offset = 0
            self._rest = b""
        if not self._fds:
            return self._switch() if follow else []
        if not follow:
            return self._read(self._ends[-1] - self._offset)
        records = self._read(_ALL)
        if records:
            return records
        ino = self._path_ino()
        if ino and ino != os.fstat(self._fds[-1]).st_ino:
            # conmon writes to the new file now; what it wrote to this one before the switch
            # may have come after our last read: read again, switch only once it is drained
            return self._read(_ALL) or self._switch()
        return []

    def _read(self, limit: int) -> list[bytes]:
        """Whole records from the file at `_index`: up to `limit` bytes, but no more than about
        BATCH_BYTES once a record is complete."""
        fd = self._fds[self._index]
        parts: list[bytes] = []
        total = 0
        while total < limit:
            data = os.pread(fd, min(BATCH_BYTES, limit - total), self._offset)
            if not data:
                break
            parts.append(data)
            total += len(data)
            self._offset += len(data)
            if total >= BATCH_BYTES and b"\n" in data:
                break
        if not parts:
            return []
        data = self._rest + b"".join(parts)
        cut = data.rfind(b"\n") + 1
        self._rest = data[cut:]
        return data[: cut - 1].split(b"\n") if cut else []

    def _path_ino(self) -> int:
        try:
            return os.stat(self.path).st_ino
        except OSError:
            return 0

    def _successor(self) -> tuple[Path, int]:
        """The file written after the one being read, and its inode (0: unknown). Files in
        rotation order are `<log>.N` ... `<log>.1`, `<log>`: the one after ours (found by
        inode), or, when ours is gone (rotated out, or the hidden name of max-file 1), the
        oldest left, since every remaining file is newer. A follower that fell two rotations
        behind thus still reads every file."""
        files = [*rotated_files(self.path), self.path]
        current = os.fstat(self._fds[-1]).st_ino if self._fds else 0
        inodes = []
        for p in files:
            try:
                inodes.append(os.stat(p).st_ino)
            except OSError:
                inodes.append(0)
        if current and current in inodes[:-1]:
            i = inodes.index(current) + 1
        else:
            i = 0 if current else len(files) - 1
        while i < len(files) - 1 and not inodes[i]:
            i += 1
        return files[i], inodes[i]

    def _switch(self) -> list[bytes]:
        """Follow the next file (see `_successor`), from its start."""
        for _ in range(3):  # a rotation between the stat and the open renames under us
            path, ino = self._successor()
            fd = _open(path)
            if fd < 0 or not ino or os.fstat(fd).st_ino == ino:
                break
            os.close(fd)
        if fd < 0:
            return []
        self._fds.append(fd)
        self._ends.append(0)
        self._index = len(self._fds) - 1
        self._offset = 0
        self._rest = b""  # an unterminated record of the old file never gets its newline
        # keep only the file being followed open
        for old in self._fds[:-1]:
            with contextlib.suppress(OSError):
                os.close(old)
        self._fds = [fd]
        self._ends = [0]
        self._index = 0
        return self._read(_ALL)
