"""Persistent network namespaces: the only code that calls unshare/setns for CLONE_NEWNET.

Rule: a network namespace lives as long as its bind mount (nsfs) on a file, like
`ip netns add` / dockerd's `/var/run/docker/netns/<id>`. Namespaces are per thread, so every
switch happens either in a fresh short-lived thread (`create`, `socket_in`) or inside `entered`,
which always puts the calling thread back in its original namespace; if that restore ever fails
the process cannot trust the thread any more and `NetnsFatal` (a BaseException) is raised. Every
other failure is a `NetnsError` naming the path and the errno text; OSError never leaves.
All calls block: callers use `asyncio.to_thread`.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from pymoby import errdefs
from pymoby.kernel import mount as kmount

T = TypeVar("T")

CLONE_NEWNET = 0x40000000

_SELF_NS = "/proc/thread-self/ns/net"
_SIOCGIFFLAGS = 0x8913
_NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3), Linux >= 4.11
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = "16sH22x"  # struct ifreq: name, flags, padding to 40 bytes

_libc = ctypes.CDLL(None, use_errno=True)
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]


class NetnsError(errdefs.System):
    """Creating, entering or removing a network namespace failed; `errno` when the kernel said."""

    def __init__(self, message: str, err: int | None = None) -> None:
        super().__init__(message)
        self.errno = err


class NetnsFatal(BaseException):
    """A thread could not return to its own network namespace: it must not run anything more."""


def _oserror(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


def _unshare_net() -> None:
    ctypes.set_errno(0)
    if _libc.unshare(CLONE_NEWNET) != 0:
        raise _oserror("unshare(CLONE_NEWNET)")


def _setns(fd: int) -> None:
    ctypes.set_errno(0)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        raise _oserror("setns(CLONE_NEWNET)")


def _in_thread(name: str, fn: Callable[[], T]) -> T:
    """Run `fn` in a new thread (whose namespace changes die with it); re-raise its error."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]


def _lo_up() -> None:
    """Set IFF_UP on `lo` of the current thread's namespace (ioctl, no netlink needed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        req = struct.pack(_IFREQ, b"lo", 0)
        _, flags = struct.unpack(_IFREQ, fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, req))
        if not flags & _IFF_UP:
            fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))


def _open_ns(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise NetnsError(f"open network namespace {path}: {exc.strerror}", exc.errno) from None
    if not _is_nsfs_fd(fd):
        os.close(fd)
        raise NetnsError(f"{path} is not a network namespace", errno.EINVAL)
    return fd


def _is_nsfs_fd(fd: int) -> bool:
    """Whether `fd` is a network namespace file (ioctl NS_GET_NSTYPE says CLONE_NEWNET)."""
    try:
        return fcntl.ioctl(fd, _NS_GET_NSTYPE) == CLONE_NEWNET
    except OSError:
        return False


@contextmanager
def _switched(fd: int, path: Path) -> Iterator[None]:
    """The calling thread inside the namespace `fd` for the block; always switched back."""
    own = os.open(_SELF_NS, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            _setns(fd)
        except OSError as exc:
            raise NetnsError(f"enter network namespace {path}: {exc.strerror}", exc.errno) from None
        try:
            yield
        finally:
            try:
                _setns(own)
            except OSError as exc:
                raise NetnsFatal(
                    f"thread {threading.current_thread().name} cannot return to its network "
                    f"namespace from {path}: {exc.strerror}"
                ) from None
    finally:
        os.close(own)


# -- public API ------------------------------------------------------------------------------


def create(path: Path) -> None:
    """A new network namespace kept alive by a bind mount on `path` (created here), `lo` up.

    The parent directory must exist; an existing `path` is a NetnsError. On any failure nothing
    remains (no file, no mount).
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    except OSError as exc:
        raise NetnsError(f"create network namespace {path}: {exc.strerror}", exc.errno) from None
    os.close(fd)
    mounted = False

    def work() -> None:
        nonlocal mounted
        own = os.open(_SELF_NS, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _unshare_net()
            try:
                kmount.mount(kmount.MountSpec(fstype="bind", source=_SELF_NS, target=str(path)))
                mounted = True
                _lo_up()
            finally:
                try:
                    _setns(own)
                except OSError as exc:  # the thread is ours and ends now: nothing runs in it
                    raise NetnsFatal(f"cannot leave the new namespace: {exc.strerror}") from None
        finally:
            os.close(own)

    try:
        _in_thread("pymoby-netns-create", work)
    except BaseException as exc:
        if mounted:
            kmount.unmount(path, lazy=True, missing_ok=True)
        path.unlink(missing_ok=True)
        if isinstance(exc, errdefs.PymobyError):
            raise NetnsError(f"create network namespace {path}: {exc.message}") from None
        if isinstance(exc, NetnsFatal):  # only the short-lived thread was stuck, and it ended
            raise NetnsError(f"create network namespace {path}: {exc}") from None
        if isinstance(exc, OSError):
            raise NetnsError(
                f"create network namespace {path}: {exc.strerror}", exc.errno
            ) from None
        raise


def remove(path: Path) -> None:
    """Unmount (detach) and delete `path`; a missing or unmounted path is fine."""
    path = Path(path)
    try:
        kmount.unmount(path, lazy=True, missing_ok=True)
    except errdefs.PymobyError as exc:
        raise NetnsError(f"remove network namespace {path}: {exc.message}") from None
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise NetnsError(f"remove network namespace {path}: {exc.strerror}", exc.errno) from None


def is_netns(path: Path) -> bool:
    """Whether `path` is a mounted nsfs network namespace."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        return _is_nsfs_fd(fd)
    finally:
        os.close(fd)


@contextmanager
def entered(path: Path) -> Iterator[None]:
    """The calling thread runs inside the namespace at `path` for the block, restored after.

    Keep the block short and synchronous (no await, no hand-off to other threads; a thread
    started inside the block would be born in the namespace). If the thread cannot be restored,
    `NetnsFatal` (a BaseException) is raised: the thread must die. Prefer `socket_in` or a
    dedicated thread for anything that does not need the calling thread itself.
    """
    fd = _open_ns(Path(path))
    try:
        with _switched(fd, Path(path)):
            yield
    finally:
        os.close(fd)


def socket_in(path: Path, family: int, type: int, proto: int = 0) -> socket.socket:
    """A close-on-exec socket created inside the namespace at `path` (it stays bound to it)."""
    fd = _open_ns(Path(path))
    try:

        def make() -> socket.socket:
            with _switched(fd, Path(path)):
                return socket.socket(family, type | socket.SOCK_CLOEXEC, proto)

        try:
            return _in_thread("pymoby-netns-socket", make)
        except OSError as exc:
            raise NetnsError(
                f"socket in network namespace {path}: {exc.strerror}", exc.errno
            ) from None
        except NetnsFatal as exc:  # only the short-lived thread was stuck, and it ended
            raise NetnsError(f"socket in network namespace {path}: {exc}") from None
    finally:
        os.close(fd)


def write_sysctl(path: Path, key: str, value: str) -> None:
    """Write /proc/sys/<key> ("net/ipv6/conf/eth0/disable_ipv6") as seen inside the namespace
    at `path` (net.* sysctls are per namespace; a dedicated thread switches)."""
    fd = _open_ns(Path(path))
    try:

        def write() -> None:
            with _switched(fd, Path(path)), open(f"/proc/sys/{key}", "w", encoding="ascii") as f:
                f.write(value)

        try:
            _in_thread("pymoby-netns-sysctl", write)
        except OSError as exc:
            raise NetnsError(
                f"sysctl {key} in network namespace {path}: {exc.strerror}", exc.errno
            ) from None
        except NetnsFatal as exc:
            raise NetnsError(f"sysctl {key} in network namespace {path}: {exc}") from None
    finally:
        os.close(fd)
