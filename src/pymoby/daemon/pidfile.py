"""One daemon per pidfile and per data-root, enforced with `flock`, not with pid liveness.

Rule: the daemon holds an exclusive `fcntl.flock` on its pidfile and on
`<data-root>/pymobyd.lock` for its whole life (both files contain its pid). A lock held by
someone else means another daemon runs: fail, naming the file and that daemon's pid. A file
whose lock is free is stale (its daemon died) and is taken over silently, whatever pid it holds.
The kernel drops the locks when the process dies, so a crash never blocks the next start.
On clean exit the pidfile is removed (while still locked); the data-root lock file stays.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from types import TracebackType

from pymoby import errdefs

LOCK_NAME = "pymobyd.lock"


class AlreadyRunning(errdefs.Conflict):
    """Another daemon holds the pidfile or the data-root lock."""

    def __init__(self, message: str, path: str, pid: int | None) -> None:
        super().__init__(message)
        self.path = path
        self.pid = pid


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _lock(path: str, mode: int, *, pidfile: bool) -> int:
    """Open `path` and take its lock; return the fd. Raise AlreadyRunning if it is held."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            running = f"process with PID {pid} is still running" if pid else "it is locked"
            if pidfile:
                message = (
                    f"failed to start daemon, ensure pymobyd is not running or delete {path}:"
                    f" {running}"
                )
            else:
                data_root = os.path.dirname(path)
                message = (
                    f"failed to start daemon: another pymobyd is using data-root {data_root}"
                    f" ({running}; lock {path})"
                )
            raise AlreadyRunning(message, path, pid) from None
        except BaseException:
            os.close(fd)
            raise
        # The previous owner may have unlinked the file between our open and our lock:
        # then we locked an orphan inode. Start over on the file now at `path`.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _write_pid(fd: int, pid: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(pid).encode(), 0)


class DaemonLock:
    """Hold the data-root lock and the pidfile for the daemon's life.

    with DaemonLock(config.pidfile, config.data_root):
        serve()

    `pidfile` may be "" (no pidfile, as dockerd allows); the data-root lock is always taken.
    Directories are created as dockerd does (data-root 0711, pidfile's parent 0755).
    """

    def __init__(self, pidfile: str, data_root: str, pid: int | None = None) -> None:
        self.pidfile = pidfile
        self.data_root = data_root
        self.lock_path = os.path.join(data_root, LOCK_NAME)
        self.pid = os.getpid() if pid is None else pid
        self._root_fd: int | None = None
        self._pid_fd: int | None = None

    def acquire(self) -> None:
        if self.pid < 1:
            raise errdefs.InvalidParameter(
                f"invalid PID ({self.pid}): only positive PIDs are allowed"
            )
        if not os.path.isdir(self.data_root):
            os.makedirs(self.data_root, mode=0o711, exist_ok=True)
            os.chmod(self.data_root, 0o711)  # not narrowed by the umask
        root_fd = _lock(self.lock_path, 0o600, pidfile=False)
        try:
            _write_pid(root_fd, self.pid)
            if self.pidfile:
                os.makedirs(os.path.dirname(self.pidfile) or ".", mode=0o755, exist_ok=True)
                pid_fd = _lock(self.pidfile, 0o644, pidfile=True)
                try:
                    _write_pid(pid_fd, self.pid)
                except BaseException:
                    os.close(pid_fd)
                    raise
                self._pid_fd = pid_fd
        except BaseException:
            os.close(root_fd)
            raise
        self._root_fd = root_fd

    def release(self) -> None:
        """Remove the pidfile and drop both locks; safe to call twice."""
        if self._pid_fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.pidfile)
            os.close(self._pid_fd)
            self._pid_fd = None
        if self._root_fd is not None:
            os.close(self._root_fd)
            self._root_fd = None

    @property
    def held(self) -> bool:
        return self._root_fd is not None

    def __enter__(self) -> DaemonLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def read_pid(path: str) -> int | None:
    """The pid in a pidfile if a live daemon holds its lock, else None (stale or absent).

    It probes with a brief shared lock, so a daemon starting at that very instant may be
    refused once; meant for tools and tests, not for the daemon's own start.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd)
        return None
    finally:
        os.close(fd)
