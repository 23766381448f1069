"""seccompbpf: runc 1.1.5's -ENOSYS stub as instruction lists, the compiled filter loaded in a
forked child, and the program itself compared with the one runc installs in a container.

The child tests fork (the child loads the filter, runs its syscalls, reports errnos over a
pipe and always `os._exit`s). The runc test needs root, runc and busybox; each container has
a unique id and its own `runc --root` in a temp dir, and is deleted even on failure.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pymoby.kernel import procattr
from pymoby.runtime import seccompbpf
from pymoby.runtime.defaults import DEFAULT_CAPABILITIES
from pymoby.runtime.seccomp import default_seccomp, parse_kernel_release
from pymoby.runtime.seccompbpf import (
    AUDIT_ARCH_I386,
    AUDIT_ARCH_X86_64,
    RET_ERRNO_ENOSYS,
    SCMP_ARCH_X32,
    Filter,
    Insn,
    SeccompUnsupported,
    compile_filter,
    disassemble,
    enosys_stub,
)

X86_64 = os.uname().machine == "x86_64"
needs_x86_64 = pytest.mark.skipif(not X86_64, reason="syscall numbers are x86_64's")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="loading a filter needs root")

LD_ARCH = Insn(0x20, 0, 0, 4)
LD_NR = Insn(0x20, 0, 0, 0)
RET_ENOSYS = Insn(0x06, 0, 0, RET_ERRNO_ENOSYS)
BIT30 = 1 << 30


def ja(k: int) -> Insn:
    return Insn(0x05, 0, 0, k)


def jeq(k: int, jt: int, jf: int = 0) -> Insn:
    return Insn(0x15, jt, jf, k)


def jgt(k: int, jt: int, jf: int = 0) -> Insn:
    return Insn(0x25, jt, jf, k)


def jset(k: int, jt: int, jf: int = 0) -> Insn:
    return Insn(0x45, jt, jf, k)


def docker_default() -> dict[str, Any]:
    profile = default_seccomp(
        DEFAULT_CAPABILITIES, "amd64", parse_kernel_release(os.uname().release)
    )
    assert profile is not None
    return profile


# --- the stub ------------------------------------------------------------------------------


def test_stub_x86_64_alone() -> None:
    assert enosys_stub({AUDIT_ARCH_X86_64: {AUDIT_ARCH_X86_64: 450}}) == [
        LD_ARCH,
        jeq(AUDIT_ARCH_X86_64, 1),
        ja(6),
        LD_NR,
        jset(BIT30, 1),  # an x32 call is not this section's
        jgt(450, 2),
        ja(2),
        ja(1),
        RET_ENOSYS,
    ]


def test_stub_x32_alone_checks_the_other_mode() -> None:
    assert enosys_stub({AUDIT_ARCH_X86_64: {SCMP_ARCH_X32: BIT30 | 547}}) == [
        LD_ARCH,
        jeq(AUDIT_ARCH_X86_64, 1),
        ja(6),
        LD_NR,
        jset(BIT30, 0, 1),  # JumpBitsNotSet: the targets swap
        jgt(BIT30 | 547, 2),
        ja(2),
        ja(1),
        RET_ENOSYS,
    ]


def test_stub_x86_64_and_x32_share_a_section() -> None:
    stub = enosys_stub({AUDIT_ARCH_X86_64: {AUDIT_ARCH_X86_64: 450, SCMP_ARCH_X32: BIT30 | 547}})
    assert stub == [
        LD_ARCH,
        jeq(AUDIT_ARCH_X86_64, 1),
        ja(7),
        LD_NR,
        jset(BIT30, 1),
        jgt(450, 3, 1),
        jgt(BIT30 | 547, 2),
        ja(2),
        ja(1),
        RET_ENOSYS,
    ]


def test_stub_x86_64_x86_and_x32_in_first_appearance_order() -> None:
    last = {
        AUDIT_ARCH_X86_64: {AUDIT_ARCH_X86_64: 456, SCMP_ARCH_X32: BIT30 | 547},
        AUDIT_ARCH_I386: {AUDIT_ARCH_I386: 456},
    }
    assert enosys_stub(last) == [
        LD_ARCH,
        jeq(AUDIT_ARCH_I386, 2),
        jeq(AUDIT_ARCH_X86_64, 4),
        ja(10),
        LD_NR,  # i386, iterated second, sits first
        jgt(456, 7),
        ja(7),
        LD_NR,  # x86_64 and x32
        jset(BIT30, 1),
        jgt(456, 3, 1),
        jgt(BIT30 | 547, 2),
        ja(2),
        ja(1),
        RET_ENOSYS,
    ]
    # runc's Go map iteration may take the other order for either loop: same meaning.
    other = enosys_stub(
        dict(reversed(last.items())), jump_order=[AUDIT_ARCH_I386, AUDIT_ARCH_X86_64]
    )
    assert other != enosys_stub(last)
    for arch, nr in [(AUDIT_ARCH_X86_64, 456), (AUDIT_ARCH_I386, 457), (AUDIT_ARCH_X86_64, 1000)]:
        assert run_bpf([*other, ALLOW], arch, nr) == run_bpf([*enosys_stub(last), ALLOW], arch, nr)


def test_stub_without_syscalls_for_an_arch_jumps_to_the_filter() -> None:
    # findLastSyscalls deletes the arch but keeps its AUDIT_ARCH key: the dispatch still
    # names it, with a jump straight past the stub.
    assert enosys_stub({AUDIT_ARCH_X86_64: {}}) == [
        LD_ARCH,
        jeq(AUDIT_ARCH_X86_64, 3),
        ja(2),
        ja(1),
        RET_ENOSYS,
    ]
    assert enosys_stub({}) == [LD_ARCH, ja(2), ja(1), RET_ENOSYS]


def test_stub_s390x_returns_enosys_for_setup() -> None:
    s390x = 0x80000016
    stub = enosys_stub({s390x: {s390x: 400}})
    assert stub[3:6] == [LD_NR, jeq(0, 0, 1), RET_ENOSYS]
    assert run_bpf([*stub, ALLOW], s390x, 0) == RET_ERRNO_ENOSYS
    assert run_bpf([*stub, ALLOW], s390x, 1) == ALLOW.k


def test_stub_rejects_overlaps_runc_rejects() -> None:
    with pytest.raises(SeccompUnsupported):
        enosys_stub({AUDIT_ARCH_I386: {AUDIT_ARCH_I386: 1, 5: 2}})


ALLOW = Insn(0x06, 0, 0, 0x7FFF0000)


def run_bpf(program: Sequence[Insn], arch: int, nr: int) -> int:
    """A classic-BPF interpreter for the instructions the stub and libseccomp use."""
    data = {0: nr & 0xFFFFFFFF, 4: arch}
    a, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        if code == 0x20:
            a = data[k]
        elif code == 0x06:
            return k
        elif code == 0x05:
            pc += k
        elif code in (0x15, 0x25, 0x35, 0x45):
            hit = {0x15: a == k, 0x25: a > k, 0x35: a >= k, 0x45: bool(a & k)}[code]
            pc += jt if hit else jf
        else:
            raise AssertionError(f"unexpected {program[pc - 1]}")


def test_stub_long_jumps_keep_their_meaning() -> None:
    # 100 made-up architectures push the offsets past 255, into runc's long-jump forms.
    last = {0x1000 + i: {0x1000 + i: 100 + i} for i in range(100)}
    last[AUDIT_ARCH_X86_64] = {AUDIT_ARCH_X86_64: 450, SCMP_ARCH_X32: BIT30 | 547}
    stub = enosys_stub(last)
    assert any(i.code == 0x05 and i.k > 255 for i in stub)
    program = [*stub, ALLOW]
    for i in range(100):
        assert run_bpf(program, 0x1000 + i, 100 + i) == ALLOW.k
        assert run_bpf(program, 0x1000 + i, 101 + i) == RET_ERRNO_ENOSYS
    assert run_bpf(program, AUDIT_ARCH_X86_64, 450) == ALLOW.k
    assert run_bpf(program, AUDIT_ARCH_X86_64, 451) == RET_ERRNO_ENOSYS
    assert run_bpf(program, AUDIT_ARCH_X86_64, BIT30 | 547) == ALLOW.k
    assert run_bpf(program, AUDIT_ARCH_X86_64, BIT30 | 548) == RET_ERRNO_ENOSYS
    assert run_bpf(program, 0x42, 5000) == ALLOW.k  # unknown arch: left to the filter


# --- compiling -----------------------------------------------------------------------------

HAND: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "architectures": ["SCMP_ARCH_X86_64"],
    "syscalls": [
        {
            "names": ["personality"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": errno.EACCES,
            "args": [{"index": 0, "value": 0x12345, "op": "SCMP_CMP_EQ"}],
        },
        {
            "names": ["getpriority"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": errno.ENOTUNIQ,
            "args": [{"index": 0, "value": 0xFF, "valueTwo": 2, "op": "SCMP_CMP_MASKED_EQ"}],
        },
        {  # two conditions on one argument: runc adds one rule per condition (OR)
            "names": ["setpriority"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": errno.EBADMSG,
            "args": [
                {"index": 0, "value": 5, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": 7, "op": "SCMP_CMP_EQ"},
            ],
        },
        {
            "names": ["getppid", "no_such_syscall"],
            "action": "SCMP_ACT_ERRNO",
            "args": [
                {"index": 0, "value": 3, "op": "SCMP_CMP_GT"},
                {"index": 1, "value": 9, "op": "SCMP_CMP_LE"},
            ],
        },
    ],
}


@needs_x86_64
def test_permissive_defaults_get_no_stub() -> None:
    for action in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"):
        program = disassemble(compile_filter({**HAND, "defaultAction": action}).program)
        assert RET_ENOSYS not in program, action
    # runc 1.1.5 compares defaultErrnoRet with SCMP_ACT_ERRNO(ENOSYS), not with ENOSYS: 38
    # keeps the stub, 0x50026 (also ENOSYS once cut to 16 bits) drops it.
    errno_default = {**HAND, "defaultAction": "SCMP_ACT_ERRNO"}
    with_enosys = compile_filter({**errno_default, "defaultErrnoRet": errno.ENOSYS}).program
    quirk = compile_filter({**errno_default, "defaultErrnoRet": RET_ERRNO_ENOSYS}).program
    stub = enosys_stub({AUDIT_ARCH_X86_64: {AUDIT_ARCH_X86_64: 141}})  # setpriority, the largest
    assert with_enosys == seccompbpf.assemble(stub) + quirk


@needs_x86_64
def test_compile_is_deterministic_and_flagless() -> None:
    a, b = compile_filter(docker_default()), compile_filter(docker_default())
    assert a == b
    assert a.flags == 0
    assert len(a.program) % 8 == 0


@pytest.mark.parametrize(
    "change",
    [
        {"listenerPath": "/run/agent.sock"},
        {"flags": ["SECCOMP_FILTER_FLAG_LOG"]},
        {"defaultAction": "SCMP_ACT_NOTIFY"},
        {"defaultAction": "SCMP_ACT_NOPE"},
        {"defaultAction": ""},
        {"architectures": ["SCMP_ARCH_NATIVE"]},
        {"DefaultAction": "SCMP_ACT_ALLOW"},
        {"defaultErrnoRet": -1},
        {"defaultErrnoRet": 1.0},
        {"syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]},
        {"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": True}]},
        {"syscalls": [{"names": [""], "action": "SCMP_ACT_ERRNO"}]},
        {"syscalls": [{"name": "read", "action": "SCMP_ACT_ERRNO"}]},
        {
            "syscalls": [
                {
                    "names": ["read"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}],
                }
            ]
        },
        {
            "syscalls": [
                {
                    "names": ["read"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_XX"}],
                }
            ]
        },
        {
            "syscalls": [
                {
                    "names": ["read"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": 1 << 64, "op": "SCMP_CMP_EQ"}],
                }
            ]
        },
    ],
)
def test_what_runc_might_do_differently_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(SeccompUnsupported):
        compile_filter({**HAND, **change})


def test_no_seccomp_at_all_is_refused() -> None:
    with pytest.raises(SeccompUnsupported):
        compile_filter({"defaultAction": "", "syscalls": []})


# --- loading, in a forked child ------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

SYS_getpid = 39
SYS_getppid = 110
SYS_getpriority = 140
SYS_setpriority = 141
SYS_personality = 135
SYS_keyctl = 250
SYS_unshare = 272
SYS_clone3 = 435
CLONE_NEWUSER = 0x10000000


def errnos_under(f: Filter, calls: Sequence[tuple[int, ...]]) -> list[int]:
    """In a forked child: load `f`, make each syscall, return its errno (0 on success)."""
    load = procattr.seccomp_loader(f.program, f.flags)
    args = [tuple(ctypes.c_long(x) for x in call) for call in calls]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        status = 1
        try:
            os.close(r)
            load()
            out = []
            for call in args:
                ctypes.set_errno(0)
                rc = _libc.syscall(*call)
                out.append(ctypes.get_errno() if rc == -1 else 0)
            os.write(w, json.dumps(out).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(w)
    try:
        with os.fdopen(r, "rb") as rf:
            data = rf.read()
    finally:
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "child failed"
    result: list[int] = json.loads(data)
    return result


@needs_root
@needs_x86_64
def test_docker_default_profile_in_a_child() -> None:
    got = errnos_under(
        compile_filter(docker_default()),
        [
            (SYS_getpid,),
            (SYS_unshare, CLONE_NEWUSER),
            (SYS_keyctl, 0, 0, 0, 0, 0),
            (1000,),  # above every syscall the profile names: the stub's ENOSYS
            (BIT30 | 1000,),  # the same for x32
            (SYS_clone3, 0, 0),  # the profile: ENOSYS without CAP_SYS_ADMIN
            (SYS_personality, 0xFFFFFFFF),  # allowed by its argument rule
            (SYS_personality, 0x1234),
        ],
    )
    assert got == [
        0,
        errno.EPERM,
        errno.EPERM,
        errno.ENOSYS,
        errno.ENOSYS,
        errno.ENOSYS,
        0,
        errno.EPERM,
    ]


@needs_root
@needs_x86_64
def test_argument_conditions_in_a_child() -> None:
    got = errnos_under(
        compile_filter(HAND),
        [
            (SYS_personality, 0x12345),
            (SYS_personality, 0xFFFFFFFF),
            (SYS_getpriority, 0x102, 0),  # (0x102 & 0xff) == 2
            (SYS_getpriority, 0, 0),
            (SYS_setpriority, 5, 0, 0),
            (SYS_setpriority, 7, 0, 0),
            (SYS_setpriority, 6, 0, 0),  # not filtered: the kernel's EINVAL
            (SYS_getppid, 4, 9),
            (SYS_getppid, 4, 10),
            (SYS_getppid, 3, 9),
            (1000,),  # default ALLOW: no stub, the kernel's ENOSYS
        ],
    )
    assert got == [
        errno.EACCES,
        0,
        errno.ENOTUNIQ,
        0,
        errno.EBADMSG,
        errno.EBADMSG,
        errno.EINVAL,
        errno.EPERM,
        0,
        0,
        errno.ENOSYS,
    ]


@needs_root
@needs_x86_64
def test_load_errors_carry_errno() -> None:
    bad = Filter(program=bytes(8), flags=0)  # "ld 0" and no return: the kernel says EINVAL
    got = errnos_under(Filter(program=compile_filter(HAND).program, flags=0), [(SYS_getpid,)])
    assert got == [0]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            procattr.seccomp_loader(bad.program, bad.flags)()
            os.write(w, b"0")
        except OSError as exc:
            os.write(w, str(exc.errno).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as rf:
        assert rf.read() == str(errno.EINVAL).encode()
    os.waitpid(pid, 0)


# --- the program runc installs -------------------------------------------------------------

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_SECCOMP_GET_FILTER = 0x420C
WALL = 0x40000000


def installed_filter(pid: int) -> bytes:
    """The newest seccomp filter of `pid`, as the kernel keeps it (its original program)."""
    ptrace = ctypes.CDLL(None, use_errno=True).ptrace
    ptrace.restype = ctypes.c_long
    ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]

    def check(rc: int) -> int:
        if rc < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return rc

    check(ptrace(PTRACE_SEIZE, pid, None, None))
    try:
        check(ptrace(PTRACE_INTERRUPT, pid, None, None))
        os.waitpid(pid, WALL)
        count = check(ptrace(PTRACE_SECCOMP_GET_FILTER, pid, 0, None))
        buf = ctypes.create_string_buffer(count * 8)
        check(ptrace(PTRACE_SECCOMP_GET_FILTER, pid, 0, ctypes.addressof(buf)))
        return buf.raw
    finally:
        ptrace(PTRACE_DETACH, pid, None, None)


@contextlib.contextmanager
def runc_container(seccomp: dict[str, Any]) -> Iterator[int]:
    """A busybox `sleep` started by `runc run -d` with this seccomp; yields its pid."""
    runc = shutil.which("runc")
    busybox = shutil.which("busybox") or "/bin/busybox"
    if runc is None or not Path(busybox).exists():
        pytest.skip("needs runc and busybox-static")
    with tempfile.TemporaryDirectory(prefix="pymoby-seccompbpf-") as tmp:
        bundle = Path(tmp) / "bundle"
        for d in ("bin", "proc", "dev"):
            (bundle / "rootfs" / d).mkdir(parents=True)
        shutil.copy(busybox, bundle / "rootfs" / "bin" / "busybox")
        (bundle / "rootfs" / "bin" / "sleep").symlink_to("busybox")
        config = {
            "ociVersion": "1.0.2",
            "process": {
                "terminal": False,
                "user": {"uid": 0, "gid": 0},
                "args": ["/bin/sleep", "60"],
                "env": ["PATH=/bin"],
                "cwd": "/",
                "noNewPrivileges": True,
            },
            "root": {"path": "rootfs", "readonly": True},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "linux": {
                "namespaces": [{"type": t} for t in ("pid", "mount", "ipc", "uts", "network")],
                "seccomp": seccomp,
            },
        }
        (bundle / "config.json").write_text(json.dumps(config))
        cid = f"pymoby-seccompbpf-{uuid.uuid4().hex[:12]}"
        root = Path(tmp) / "state"
        base = [runc, "--root", str(root)]
        pidfile = Path(tmp) / "pid"
        try:
            with open(Path(tmp) / "runc.log", "w+b") as log:
                # The container inherits these: no pipe, or waiting for runc would wait for it.
                proc = subprocess.run(
                    [*base, "run", "-d", "--pid-file", str(pidfile), "--bundle", str(bundle), cid],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    timeout=30,
                    check=False,
                )
                log.seek(0)
                assert proc.returncode == 0, log.read().decode()
            yield int(pidfile.read_text())
        finally:
            subprocess.run(
                [*base, "delete", "--force", cid],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
                check=False,
            )


def only_x86_64(profile: dict[str, Any], *arches: str) -> dict[str, Any]:
    return {**profile, "architectures": list(arches)}


@needs_root
@needs_x86_64
@pytest.mark.parametrize(
    "name",
    ["docker-default", "x86_64-only-errno-38", "x86_64-and-x32", "hand-allow", "hand-errno"],
)
def test_same_program_as_runc(name: str) -> None:
    default = docker_default()
    profile = {
        "docker-default": default,
        "x86_64-only-errno-38": {
            **only_x86_64(default, "SCMP_ARCH_X86_64"),
            "defaultErrnoRet": errno.ENOSYS,
        },
        "x86_64-and-x32": only_x86_64(default, "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"),
        "hand-allow": HAND,
        # the hand rules on top of docker's: conditions, errnoRet and a stub together
        "hand-errno": {**default, "syscalls": [*HAND["syscalls"], *default["syscalls"]]},
    }[name]
    ours = compile_filter(profile).program
    with runc_container(profile) as pid:
        theirs = installed_filter(pid)
    if ours == theirs:
        return
    # runc builds the stub iterating a Go map: with x86_64 and i386 either order can come out
    # of each of its two loops. The rest must be identical.
    last = seccompbpf.last_syscalls(profile)
    assert len(last) > 1, "one native arch: the stub is deterministic"
    stub = enosys_stub(last)
    assert disassemble(ours)[: len(stub)] == stub
    body = ours[len(stub) * 8 :]
    keys = list(last)
    rotations = [keys[i:] + keys[:i] for i in range(len(keys))]
    variants = {
        seccompbpf.assemble(enosys_stub({k: last[k] for k in sections}, jumps)) + body
        for sections in rotations
        for jumps in rotations
    }
    assert theirs in variants
