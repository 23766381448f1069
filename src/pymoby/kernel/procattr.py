"""What a process sets on itself before execve: namespaces, capabilities, privileges, keyring,
controlling terminal, seccomp filter (the syscalls of runc's init, for runtime/nsexec).

Rule: thin wrappers over one syscall (or one gocapability step) each, for a single-threaded
process about to exec; failures raise OSError(errno, "<what>: <Go's text>"), the text runc
would print for the same failure. Capability semantics are gocapability's (what runc uses):
the bounding set is only cut while CAP_SETPCAP is effective (EINVAL ignored), ambient
capabilities are lowered or raised one by one with every failure ignored.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct
import termios
from collections.abc import Callable, Iterable

_PR_SET_DUMPABLE = 4
_PR_SET_KEEPCAPS = 8
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_RAISE = 2
_PR_CAP_AMBIENT_LOWER = 3
_CAP_V3 = 0x20080522
_CAP_SETPCAP = 8
_KEYCTL_JOIN_SESSION_KEYRING = 1
_TIOCSCTTY = 0x540E
_TIOCGPTN = 0x80045430
_TIOCSPTLCK = 0x40045431
_SECCOMP_SET_MODE_FILTER = 1
_EINVAL = 22
_BPF_INSN = 8  # sizeof(struct sock_filter)

# syscall numbers by machine (os.uname().machine)
_SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {"capget": 125, "capset": 126, "keyctl": 250, "seccomp": 317},
    "aarch64": {"capget": 90, "capset": 91, "keyctl": 219, "seccomp": 277},
    "riscv64": {"capget": 90, "capset": 91, "keyctl": 219, "seccomp": 277},
    "ppc64le": {"capget": 183, "capset": 184, "keyctl": 271, "seccomp": 358},
    "s390x": {"capget": 184, "capset": 185, "keyctl": 280, "seccomp": 348},
}

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def go_strerror(code: int) -> str:
    """Go's syscall.Errno text: glibc's with a lower-case first letter."""
    text = os.strerror(code)
    return text[:1].lower() + text[1:]


def _fail(what: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{what}: {go_strerror(code)}")


def _nr(name: str) -> int:
    table = _SYSCALLS.get(os.uname().machine)
    if table is None:
        raise OSError(38, f"{name}: no syscall number for {os.uname().machine}")
    return table[name]


def supported() -> bool:
    """True when this machine's syscall numbers are known here and setns(2) takes a pidfd
    (Linux 5.8)."""
    release = os.uname().release.split(".")
    try:
        version = (int(release[0]), int("".join(c for c in release[1] if c.isdigit()) or 0))
    except (IndexError, ValueError):
        return False
    return os.uname().machine in _SYSCALLS and version >= (5, 8)


def setns(fd: int, flags: int) -> None:
    """setns(2): with a pidfd, every namespace in `flags` at once."""
    if _libc.setns(fd, flags) < 0:
        raise _fail("setns")


def join_session_keyring(name: str) -> int:
    """KEYCTL_JOIN_SESSION_KEYRING: 0, or the errno (the caller decides what is fatal)."""
    if _syscall(_nr("keyctl"), _KEYCTL_JOIN_SESSION_KEYRING, name.encode()) < 0:
        return ctypes.get_errno()
    return 0


def set_dumpable(on: bool) -> None:
    """PR_SET_DUMPABLE (execve sets it again for the new program)."""
    if _libc.prctl(_PR_SET_DUMPABLE, 1 if on else 0, 0, 0, 0) < 0:
        raise _fail("dumpable")


def set_no_new_privs() -> None:
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0:
        raise _fail("no_new_privs")


def set_keep_caps(on: bool) -> None:
    if _libc.prctl(_PR_SET_KEEPCAPS, 1 if on else 0, 0, 0, 0) < 0:
        raise _fail("unable to set keep caps" if on else "unable to clear keep caps")


def _capget() -> tuple[int, ...]:
    data = ctypes.create_string_buffer(24)
    if _syscall(_nr("capget"), struct.pack("Ii", _CAP_V3, 0), data) < 0:
        raise _fail("capget")
    return struct.unpack("6I", data.raw)


def apply_bounding(keep: Iterable[int], last: int) -> None:
    """gocapability Apply(BOUNDS): drop every capability up to `last` not in `keep`."""
    if not _capget()[0] & 1 << _CAP_SETPCAP:
        return
    kept = set(keep)
    for cap in range(last + 1):
        failed = cap not in kept and _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) < 0
        if failed and ctypes.get_errno() != _EINVAL:
            raise _fail("unable to apply bounding set")


def _words(caps: Iterable[int]) -> tuple[int, int]:
    bits = 0
    for cap in caps:
        bits |= 1 << cap
    return bits & 0xFFFFFFFF, bits >> 32


def apply_caps(
    effective: Iterable[int],
    permitted: Iterable[int],
    inheritable: Iterable[int],
    ambient: Iterable[int],
    last: int,
) -> None:
    """gocapability Apply(CAPS|AMBS): capset, then each ambient one lowered or raised."""
    eff, prm, inh = _words(effective), _words(permitted), _words(inheritable)
    data = struct.pack("6I", eff[0], prm[0], inh[0], eff[1], prm[1], inh[1])
    if _syscall(_nr("capset"), struct.pack("Ii", _CAP_V3, 0), data) < 0:
        raise _fail("unable to apply caps")
    raised = set(ambient)
    for cap in range(last + 1):
        action = _PR_CAP_AMBIENT_RAISE if cap in raised else _PR_CAP_AMBIENT_LOWER
        _libc.prctl(_PR_CAP_AMBIENT, action, cap, 0, 0)


def open_pty(console: tuple[int, int] | None) -> tuple[int, str]:
    """A new pty of the devpts at /dev/ptmx: (master fd, slave path), sized when asked."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
        (n,) = struct.unpack("I", fcntl.ioctl(master, _TIOCGPTN, struct.pack("I", 0)))
        if console is not None and console[0] and console[1]:
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", *console, 0, 0))
    except BaseException:
        os.close(master)
        raise
    return master, f"/dev/pts/{n}"


def set_controlling_terminal(fd: int) -> None:
    fcntl.ioctl(fd, _TIOCSCTTY, 0)


class _SeccompLoad:
    """The prepared call; it holds the program buffer and the sock_fprog alive."""

    __slots__ = ("_args", "_keep")

    def __init__(self, args: tuple[object, ...], keep: tuple[object, ...]) -> None:
        self._args = args
        self._keep = keep

    def __call__(self) -> None:
        if _syscall(*self._args) != 0:
            raise _fail("seccomp")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_loader(program: bytes, flags: int) -> Callable[[], None]:
    """Everything seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog) needs, built now: the returned
    callable makes only that call (the last thing before execve; it allocates nothing)."""
    count = len(program) // _BPF_INSN
    if count == 0 or count > 0xFFFF or len(program) % _BPF_INSN:
        raise ValueError("bad seccomp program")
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(count, ctypes.addressof(buf))
    args = (
        ctypes.c_long(_nr("seccomp")),
        ctypes.c_long(_SECCOMP_SET_MODE_FILTER),
        ctypes.c_ulong(flags),
        ctypes.c_void_p(ctypes.addressof(fprog)),
    )
    return _SeccompLoad(args, (buf, fprog))
