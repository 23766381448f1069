"""conmon's attach socket and terminal resize FIFO, as asyncio objects.

Rule: these are conmon 2.1's wire formats, nothing more.

Attach socket `<bundle>/attach` (with --full-attach): AF_UNIX SOCK_SEQPACKET, one listener per
conmon, any number of clients. Every message conmon sends is one read(2) of the container's
output prefixed by one byte naming the pipe in conmon's `stdpipe_t` (2 stdout, 3 stderr; 1
stdin is never sent; a TTY is all stdout). `read()` hands out Docker's stream numbers instead
(1 stdout, 2 stderr, as in stdcopy framing). conmon does not replay earlier output, so attach
before `runc start` to see everything. Bytes a client
sends are written to the container's stdin unframed; conmon reads at most 32 KiB per message
(SEQPACKET truncates the rest), so writes are cut to that. A client's shutdown(SHUT_WR) or
close makes conmon close the container's stdin unless it runs with --leave-stdin-open: that is
the half-close, and it applies to *any* client that goes away, not only one that wrote stdin.
When the container exits conmon drains its output to every client, closes them (EOF here)
and only then writes the exit file. Socket paths longer than sun_path are reached through
/proc/self/fd/<dir fd>/attach, as conmon binds them.

Resize: conmon applies `<height> <width>\\n` lines read from the `winsz` FIFO in the bundle with
TIOCSWINSZ on the pty master (the `ctl` FIFO's `1 <h> <w>\\n` is only forwarded to `winsz`).
conmon 2.1.6 parses a read of several queued lines wrongly (it re-reads the first line), so
every message here is padded with spaces to exactly the 199 bytes conmon reads at once: one
read is then always one message, and the last resize wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
from pathlib import Path

from pymoby import errdefs

# Docker's stream numbers (stdcopy), what `read()` returns.
STDIN = 0
STDOUT = 1
STDERR = 2
# conmon's stdpipe_t values on the wire.
_CONMON_STREAMS = {2: STDOUT, 3: STDERR}

STDIN_CHUNK = 32 * 1024  # conmon's CONN_SOCK_BUF_SIZE
_RECV_SIZE = 64 * 1024
_CTL_MSG = 199  # conmon's CTLBUFSZ - 1
_SUN_PATH_MAX = 107


class AttachSession:
    """One client connection to a conmon attach socket."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._eof = False
        self._stdin_closed = False

    @classmethod
    async def connect(cls, path: Path) -> AttachSession:
        """Connect to `path`; NotFound when no conmon listens there."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        dirfd = -1
        try:
            target = str(path)
            if len(os.fsencode(target)) > _SUN_PATH_MAX:
                dirfd = os.open(path.parent, os.O_PATH | os.O_CLOEXEC)
                target = f"/proc/self/fd/{dirfd}/{path.name}"
            await asyncio.get_running_loop().sock_connect(sock, target)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            sock.close()
            raise errdefs.NotFound(f"attach socket {path}: {e.strerror}") from None
        except BaseException:
            sock.close()
            raise
        finally:
            if dirfd >= 0:
                os.close(dirfd)
        return cls(sock)

    @property
    def closed(self) -> bool:
        return self._sock.fileno() < 0

    async def read(self) -> tuple[int, bytes] | None:
        """The next output message as (stream, data); None once conmon closed the socket."""
        while not self._eof:
            try:
                msg = await self._loop.sock_recv(self._sock, _RECV_SIZE)
            except (ConnectionResetError, BrokenPipeError):
                msg = b""
            if not msg:
                self._eof = True
                return None
            stream = _CONMON_STREAMS.get(msg[0])
            if stream is not None and len(msg) > 1:
                return stream, msg[1:]
        return None

    def __aiter__(self) -> AttachSession:
        return self

    async def __anext__(self) -> tuple[int, bytes]:
        item = await self.read()
        if item is None:
            raise StopAsyncIteration
        return item

    async def write(self, data: bytes) -> None:
        """Send bytes to the container's stdin (waits while conmon's buffer is full)."""
        if self._stdin_closed:
            raise errdefs.Conflict("stdin of this attach session is closed")
        view = memoryview(data)
        try:
            for off in range(0, len(view), STDIN_CHUNK):
                await self._loop.sock_sendall(self._sock, view[off : off + STDIN_CHUNK])
        except (BrokenPipeError, ConnectionResetError):
            raise errdefs.Conflict("the container's stdin is closed (conmon hung up)") from None

    def close_stdin(self) -> None:
        """Half-close: no more stdin from us; output keeps coming until the container exits."""
        if self._stdin_closed or self.closed:
            return
        self._stdin_closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        """Detach (closes the container's stdin too when it was created with stdin_once)."""
        if not self.closed:
            self._sock.close()

    async def __aenter__(self) -> AttachSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def _write_fifo(path: Path, message: bytes, what: str = "resize") -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ENXIO, errno.ENOENT):
            raise errdefs.Conflict(f"container is not running (no conmon to {what})") from None
        raise errdefs.System(f"open {path}: {e.strerror}") from None
    try:
        os.write(fd, message)
    except BlockingIOError:
        raise errdefs.Conflict(f"{what} refused: conmon is not reading {path.name}") from None
    finally:
        os.close(fd)


def _ctl_line(line: str) -> bytes:
    return (line + " " * (_CTL_MSG - 1 - len(line)) + "\n").encode()


def check_terminal_size(height: int, width: int) -> None:
    """A pty size must fit struct winsize (InvalidParameter otherwise)."""
    if height < 0 or width < 0 or height > 0xFFFF or width > 0xFFFF:
        raise errdefs.InvalidParameter(f"invalid terminal size {height}x{width}")


def resize_message(height: int, width: int) -> bytes:
    """A `winsz` line padded to one conmon read (see the module docstring)."""
    check_terminal_size(height, width)
    return _ctl_line(f"{height} {width}")


async def resize(bundle: Path, height: int, width: int) -> None:
    """Set the pty size of the conmon serving `bundle` (container or exec session)."""
    await asyncio.to_thread(_write_fifo, Path(bundle) / "winsz", resize_message(height, width))


# conmon's ctl FIFO message type 2: sync and reopen the log file at its path (a truncating open
# of a new file once the daemon has renamed the old one away).
REOPEN_LOG_MESSAGE = _ctl_line("2 0 0")


async def reopen_log(bundle: Path) -> None:
    """Ask the conmon serving `bundle` to reopen its log file (for lossless rotation)."""
    await asyncio.to_thread(_write_fifo, Path(bundle) / "ctl", REOPEN_LOG_MESSAGE, "reopen the log")
