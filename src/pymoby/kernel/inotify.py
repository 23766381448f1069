"""inotify(7) through ctypes: one non-blocking descriptor, watches by path, parsed events.

Rule: this module only wraps the three syscalls (inotify_init1, inotify_add_watch,
inotify_rm_watch) and decodes `struct inotify_event`; it knows nothing about what is watched.
The descriptor is non-blocking and close-on-exec, so callers register `fileno()` with their
event loop (`loop.add_reader`) and call `read_events()` when it is readable; `read_events()`
returns `[]` instead of blocking when nothing is queued. OSError carries the errno.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
from dataclasses import dataclass

IN_ACCESS = 0x00000001
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_CLOSE_NOWRITE = 0x00000010
IN_OPEN = 0x00000020
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000

IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len
_READ_SIZE = 64 * 1024

_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        lib.inotify_init1.argtypes = [ctypes.c_int]
        lib.inotify_init1.restype = ctypes.c_int
        lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        lib.inotify_add_watch.restype = ctypes.c_int
        lib.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.inotify_rm_watch.restype = ctypes.c_int
        _libc = lib
    return _libc


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


@dataclass(frozen=True)
class Event:
    """One `struct inotify_event`; `name` is the file name inside a watched directory."""

    wd: int
    mask: int
    cookie: int
    name: str

    @property
    def overflow(self) -> bool:
        return bool(self.mask & IN_Q_OVERFLOW)


def parse_events(buf: bytes) -> list[Event]:
    """Decode a buffer read from an inotify descriptor (names are NUL-padded)."""
    events: list[Event] = []
    off = 0
    while off + _HEADER.size <= len(buf):
        wd, mask, cookie, length = _HEADER.unpack_from(buf, off)
        start = off + _HEADER.size
        raw = buf[start : start + length]
        name = raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        events.append(Event(wd, mask, cookie, name))
        off = start + length
    return events


class Inotify:
    """An inotify instance (non-blocking, close-on-exec)."""

    def __init__(self) -> None:
        self._fd = _check(_lib().inotify_init1(IN_NONBLOCK | IN_CLOEXEC), "inotify_init1")

    def fileno(self) -> int:
        return self._fd

    def add_watch(self, path: str | os.PathLike[str], mask: int) -> int:
        """Watch `path` for the events in `mask`; returns the watch descriptor."""
        raw = os.fsencode(path)
        return _check(_lib().inotify_add_watch(self._fd, raw, mask), f"inotify_add_watch {path}")

    def rm_watch(self, wd: int) -> None:
        _check(_lib().inotify_rm_watch(self._fd, wd), "inotify_rm_watch")

    def read_events(self) -> list[Event]:
        """Every event queued now; `[]` when the queue is empty."""
        events: list[Event] = []
        while True:
            try:
                buf = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                return events
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                raise
            if not buf:
                return events
            events.extend(parse_events(buf))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def __enter__(self) -> Inotify:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
