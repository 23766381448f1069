"""Compile an OCI `linux.seccomp` into the classic-BPF program runc 1.1.5 loads, and load it.

Rule: produce, byte for byte, the program runc 1.1.5 (as built by Debian 12, against the same
libseccomp 2.5.x this process loads) installs for a container with that seccomp object, so
that a process we exec into the container gets the very filter `runc exec` would give it:
- specconv.SetupSeccomp: one rule per syscall name, OCI names of actions, operators and
  architectures; any `flags` is refused by runc 1.1.5, so the load flags are always 0.
- seccomp.InitSeccomp through libseccomp-golang 0.10: seccomp_init(default action), the TSYNC
  attribute, seccomp_arch_add per architecture, NO_NEW_PRIVS attribute off, then per rule:
  skipped when its action equals the default one or its name does not resolve on the native
  architecture, else seccomp_rule_add_array with all conditions, or one rule per condition
  when two conditions test the same argument. The result of seccomp_export_bpf goes through
  golang.org/x/net/bpf (disassemble, assemble) as in runc; only instructions that survive
  that round trip unchanged in meaning are accepted.
- patchbpf: unless the default action is ALLOW, LOG or TRACE (or defaultErrnoRet equals
  runc's SCMP_ACT_ERRNO(ENOSYS) constant, 0x50026, as 1.1.5 compares it), the -ENOSYS stub
  of `enosys_stub` is prepended: syscall numbers above the largest one the profile names for
  an architecture return ENOSYS. runc builds it iterating Go maps keyed by AUDIT_ARCH, so
  with two native architectures (x86_64 and i386) its order is random per runc run (a
  rotation of the first-appearance order, which Go picks 7 times out of 8 for two keys); we
  always take the first-appearance order, which means the same thing.
Anything this module is not sure runc turns into the same program (SCMP_ACT_NOTIFY, a
listener, flags, values Go's JSON decoding would reject or read differently, errors from
libseccomp) raises SeccompUnsupported, and the caller runs `runc exec` instead.

Loading is kernel/procattr.seccomp_loader (like runc, it needs CAP_SYS_ADMIN or no_new_privs
set beforehand; the caller orders that).
"""

from __future__ import annotations

import ctypes
import os
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple


class SeccompUnsupported(Exception):
    """This seccomp object is not compiled here: let `runc exec` handle the process."""


@dataclass(frozen=True)
class Filter:
    """A program (`struct sock_filter[]`, host endianness) and its seccomp(2) flags."""

    program: bytes
    flags: int


class Insn(NamedTuple):
    """One `struct sock_filter`."""

    code: int
    jt: int
    jf: int
    k: int


_INSN = struct.Struct("=HBBI")

# Classic BPF opcodes used by libseccomp's output and runc's stub.
BPF_LD_W_ABS = 0x20
BPF_JMP_JA = 0x05
BPF_JEQ_K = 0x15
BPF_JGT_K = 0x25
BPF_JGE_K = 0x35
BPF_JSET_K = 0x45
BPF_RET_K = 0x06
_BPF_ALU_K = frozenset({0x04, 0x14, 0x24, 0x34, 0x44, 0x54, 0x64, 0x74, 0x94, 0xA4})

# libseccomp action values (seccomp.h).
_ACT_KILL_PROCESS = 0x80000000
_ACT_KILL_THREAD = 0x00000000
_ACT_TRAP = 0x00030000
_ACT_ERRNO = 0x00050000
_ACT_TRACE = 0x7FF00000
_ACT_LOG = 0x7FFC0000
_ACT_ALLOW = 0x7FFF0000
_EPERM = 1
_ENOSYS = 38
RET_ERRNO_ENOSYS = _ACT_ERRNO | _ENOSYS  # patchbpf's retErrnoEnosys

# OCI action -> runc's configs.Action kind (Kill and KillThread are one libseccomp action).
_ACTIONS = {
    "SCMP_ACT_KILL": "kill",
    "SCMP_ACT_KILL_THREAD": "kill",
    "SCMP_ACT_KILL_PROCESS": "kill_process",
    "SCMP_ACT_ERRNO": "errno",
    "SCMP_ACT_TRAP": "trap",
    "SCMP_ACT_ALLOW": "allow",
    "SCMP_ACT_TRACE": "trace",
    "SCMP_ACT_LOG": "log",
}
# patchbpf.isAllowAction: no stub for these default actions.
_ALLOW_KINDS = frozenset({"allow", "log", "trace"})

# OCI operator -> enum scmp_compare.
_OPERATORS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# OCI architecture -> libseccomp token (AUDIT_ARCH_* except for x32).
AUDIT_ARCH_I386 = 0x40000003
AUDIT_ARCH_X86_64 = 0xC000003E
SCMP_ARCH_X32 = 0x4000003E
_AUDIT_ARCH_S390 = 0x00000016
_AUDIT_ARCH_S390X = 0x80000016
_ARCHES = {
    "SCMP_ARCH_X86": AUDIT_ARCH_I386,
    "SCMP_ARCH_X86_64": AUDIT_ARCH_X86_64,
    "SCMP_ARCH_X32": SCMP_ARCH_X32,
    "SCMP_ARCH_ARM": 0x40000028,
    "SCMP_ARCH_AARCH64": 0xC00000B7,
    "SCMP_ARCH_MIPS": 0x00000008,
    "SCMP_ARCH_MIPS64": 0x80000008,
    "SCMP_ARCH_MIPS64N32": 0xA0000008,
    "SCMP_ARCH_MIPSEL": 0x40000008,
    "SCMP_ARCH_MIPSEL64": 0xC0000008,
    "SCMP_ARCH_MIPSEL64N32": 0xE0000008,
    "SCMP_ARCH_PPC": 0x00000014,
    "SCMP_ARCH_PPC64": 0x80000015,
    "SCMP_ARCH_PPC64LE": 0xC0000015,
    "SCMP_ARCH_S390": _AUDIT_ARCH_S390,
    "SCMP_ARCH_S390X": _AUDIT_ARCH_S390X,
}

_SCMP_FLTATR_CTL_NNP = 3
_SCMP_FLTATR_CTL_TSYNC = 4
_ENOTSUP = 95
_EEXIST = 17
_SCMP_ERROR = -1  # __NR_SCMP_ERROR


_TOP_KEYS = frozenset(
    {
        "defaultAction",
        "defaultErrnoRet",
        "architectures",
        "flags",
        "listenerPath",
        "listenerMetadata",
        "syscalls",
    }
)
_CALL_KEYS = frozenset({"names", "action", "errnoRet", "args"})
_ARG_KEYS = frozenset({"index", "value", "valueTwo", "op"})


# --- the OCI object, as runc's specconv reads it -------------------------------------------


@dataclass(frozen=True)
class _Cond:
    index: int
    op: int
    value: int
    value_two: int


@dataclass(frozen=True)
class _Rule:
    name: str
    action: int  # libseccomp action value
    conds: tuple[_Cond, ...]


@dataclass(frozen=True)
class _Config:
    default_kind: str
    default_errno: int | None
    default_action: int
    arches: tuple[int, ...]
    rules: tuple[_Rule, ...]


def _uint(value: Any, what: str, bits: int = 64) -> int:
    """A JSON number Go decodes into an unsigned integer of `bits` bits."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise SeccompUnsupported(f"{what}: {value!r} is not an unsigned integer")
    return value


def _or_zero(value: Any) -> Any:
    """JSON null (or a missing key) leaves Go's integer at 0."""
    return 0 if value is None else value


def _str(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SeccompUnsupported(f"{what}: {value!r} is not a string")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SeccompUnsupported(f"{what}: {value!r} is not a list")
    return value


def _dict(value: Any, what: str, keys: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SeccompUnsupported(f"{what}: {value!r} is not an object")
    # Go's decoder matches keys case-insensitively and ignores unknown ones: only the exact
    # spelling is read the same way by both.
    unknown = set(value) - keys
    if unknown:
        raise SeccompUnsupported(f"{what}: unknown keys {sorted(unknown)}")
    return value


def _action(kind: str, errno_ret: int | None) -> int:
    """seccomp.getAction + libseccomp-golang toNative: the return code keeps its low 16 bits."""
    if kind == "errno":
        return _ACT_ERRNO | ((_EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    if kind == "trace":
        return _ACT_TRACE | ((_EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    return {
        "kill": _ACT_KILL_THREAD,
        "kill_process": _ACT_KILL_PROCESS,
        "trap": _ACT_TRAP,
        "allow": _ACT_ALLOW,
        "log": _ACT_LOG,
    }[kind]


def _kind(value: Any, what: str) -> str:
    name = _str(value, what)
    if name == "SCMP_ACT_NOTIFY":
        raise SeccompUnsupported("SCMP_ACT_NOTIFY needs runc's seccomp agent")
    kind = _ACTIONS.get(name)
    if kind is None:
        raise SeccompUnsupported(f"{what}: unknown action {name!r}")
    return kind


def _parse(seccomp: Any) -> _Config:
    top = _dict(seccomp, "seccomp", _TOP_KEYS)
    default_name = _str(top.get("defaultAction"), "defaultAction")
    calls = _list(top.get("syscalls"), "syscalls")
    if not default_name and not calls:
        raise SeccompUnsupported("runc runs this container without seccomp")
    if _list(top.get("flags"), "flags"):
        raise SeccompUnsupported("runc 1.1.5 refuses seccomp flags")
    if _str(top.get("listenerPath"), "listenerPath"):
        raise SeccompUnsupported("a seccomp listener needs runc")
    if _str(top.get("listenerMetadata"), "listenerMetadata"):
        raise SeccompUnsupported("a seccomp listener needs runc")

    arches: list[int] = []
    for arch in _list(top.get("architectures"), "architectures"):
        token = _ARCHES.get(_str(arch, "architectures"))
        if token is None:
            raise SeccompUnsupported(f"unknown architecture {arch!r}")
        arches.append(token)

    default_kind = _kind(default_name, "defaultAction")
    raw_errno = top.get("defaultErrnoRet")
    default_errno = None if raw_errno is None else _uint(raw_errno, "defaultErrnoRet")
    default_action = _action(default_kind, default_errno)

    rules: list[_Rule] = []
    for raw in calls:
        call = _dict(raw, "syscall", _CALL_KEYS)
        kind = _kind(call.get("action"), "syscall action")
        raw_ret = call.get("errnoRet")
        errno_ret = None if raw_ret is None else _uint(raw_ret, "errnoRet")
        conds: list[_Cond] = []
        for raw_arg in _list(call.get("args"), "args"):
            arg = _dict(raw_arg, "arg", _ARG_KEYS)
            op = _OPERATORS.get(_str(arg.get("op"), "op"))
            if op is None:
                raise SeccompUnsupported(f"unknown operator {arg.get('op')!r}")
            index = _uint(_or_zero(arg.get("index")), "index")
            if index > 5:  # MakeCondition's error
                raise SeccompUnsupported(f"argument index {index} out of range")
            conds.append(
                _Cond(
                    index=index,
                    op=op,
                    value=_uint(_or_zero(arg.get("value")), "value"),
                    value_two=_uint(_or_zero(arg.get("valueTwo")), "valueTwo"),
                )
            )
        for raw_name in _list(call.get("names"), "names"):
            name = _str(raw_name, "names")
            if not name or "\0" in name:
                raise SeccompUnsupported(f"bad syscall name {name!r}")
            rules.append(_Rule(name=name, action=_action(kind, errno_ret), conds=tuple(conds)))
    return _Config(
        default_kind=default_kind,
        default_errno=default_errno,
        default_action=default_action,
        arches=tuple(arches),
        rules=tuple(rules),
    )


# --- libseccomp ---------------------------------------------------------------------------


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


class _Lib:
    def __init__(self) -> None:
        try:
            lib = ctypes.CDLL("libseccomp.so.2")
        except OSError as exc:
            raise SeccompUnsupported(f"libseccomp: {exc}") from None
        vp, u32, cint = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
        lib.seccomp_init.argtypes = [u32]
        lib.seccomp_init.restype = vp
        lib.seccomp_release.argtypes = [vp]
        lib.seccomp_release.restype = None
        lib.seccomp_arch_add.argtypes = [vp, u32]
        lib.seccomp_arch_add.restype = cint
        lib.seccomp_arch_native.argtypes = []
        lib.seccomp_arch_native.restype = u32
        lib.seccomp_attr_set.argtypes = [vp, cint, u32]
        lib.seccomp_attr_set.restype = cint
        lib.seccomp_api_get.argtypes = []
        lib.seccomp_api_get.restype = ctypes.c_uint
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_syscall_resolve_name.restype = cint
        lib.seccomp_syscall_resolve_name_arch.argtypes = [u32, ctypes.c_char_p]
        lib.seccomp_syscall_resolve_name_arch.restype = cint
        lib.seccomp_rule_add_array.argtypes = [vp, u32, cint, ctypes.c_uint, vp]
        lib.seccomp_rule_add_array.restype = cint
        lib.seccomp_export_bpf.argtypes = [vp, cint]
        lib.seccomp_export_bpf.restype = cint
        self.lib = lib


_lib: _Lib | None = None
_lock = threading.Lock()  # libseccomp probes the kernel into unlocked globals


def _libseccomp() -> _Lib:
    global _lib
    if _lib is None:
        _lib = _Lib()
    return _lib


def _check(rc: int, what: str) -> None:
    if rc != 0:
        raise SeccompUnsupported(f"libseccomp {what}: {os.strerror(-rc)}")


def _libseccomp_program(cfg: _Config) -> list[Insn]:
    """InitSeccomp up to seccomp_export_bpf, with the same libseccomp calls in the same order."""
    lib = _libseccomp().lib
    lib.seccomp_api_get()  # runc asks for the API level first
    ctx = lib.seccomp_init(cfg.default_action)
    if not ctx:
        raise SeccompUnsupported("libseccomp seccomp_init failed")
    try:
        rc = lib.seccomp_attr_set(ctx, _SCMP_FLTATR_CTL_TSYNC, 1)
        if rc not in (0, -_ENOTSUP):
            _check(rc, "TSYNC")
        for arch in cfg.arches:
            rc = lib.seccomp_arch_add(ctx, arch)
            if rc != -_EEXIST:
                _check(rc, "arch_add")
        _check(lib.seccomp_attr_set(ctx, _SCMP_FLTATR_CTL_NNP, 0), "NNP")
        for rule in cfg.rules:
            if rule.action == cfg.default_action:
                continue  # redundant, runc skips it
            nr = lib.seccomp_syscall_resolve_name(rule.name.encode())
            if nr == _SCMP_ERROR:
                continue  # unknown to libseccomp: runc ignores it
            counts = [0] * 6
            for cond in rule.conds:
                counts[cond.index] += 1
            # Two conditions on one argument: one rule per condition (runc's "old behavior").
            groups: list[tuple[_Cond, ...]] = (
                [(cond,) for cond in rule.conds] if max(counts) > 1 else [rule.conds]
            )
            for group in groups:
                array = (_ArgCmp * len(group))(
                    *(_ArgCmp(c.index, c.op, c.value, c.value_two) for c in group)
                )
                ptr = ctypes.cast(array, ctypes.c_void_p) if group else None
                rc = lib.seccomp_rule_add_array(ctx, rule.action, nr, len(group), ptr)
                _check(rc, f"rule_add for {rule.name}")
        fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            _check(lib.seccomp_export_bpf(ctx, fd), "export_bpf")
            size = os.lseek(fd, 0, os.SEEK_END)
            data = os.pread(fd, size, 0)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)
    if len(data) % _INSN.size:
        raise SeccompUnsupported("libseccomp exported a partial instruction")
    return [_go_roundtrip(insn) for insn in disassemble(data)]


def _go_roundtrip(insn: Insn) -> Insn:
    """golang.org/x/net/bpf Disassemble then Assemble, for the instructions libseccomp emits."""
    code, k = insn.code, insn.k
    if code == BPF_LD_W_ABS and k <= 0xFFFFEFFF:  # LoadAbsolute (not an extension)
        return Insn(code, 0, 0, k)
    if code in (BPF_JMP_JA, BPF_RET_K) or code in _BPF_ALU_K:
        return Insn(code, 0, 0, k)
    if code in (BPF_JEQ_K, BPF_JGT_K, BPF_JGE_K, BPF_JSET_K):
        return insn  # jumpOpToTest and jumpToRaw are inverse for (jt, jf)
    raise SeccompUnsupported(f"unexpected BPF instruction {insn}")


# --- patchbpf's -ENOSYS stub --------------------------------------------------------------


def _native_arch(token: int) -> int:
    """patchbpf.archToNative: x32 shares x86_64's AUDIT_ARCH."""
    return AUDIT_ARCH_X86_64 if token == SCMP_ARCH_X32 else token


def _last_syscalls(
    arches: Sequence[int], names: Sequence[str], resolve: Callable[[int, str], int]
) -> dict[int, dict[int, int]]:
    """patchbpf.findLastSyscalls: per AUDIT_ARCH, per libseccomp arch, the largest syscall
    number any rule names (rules runc skips included). Dicts keep first-appearance order."""
    last: dict[int, dict[int, int]] = {}
    for token in arches:
        per_arch = last.setdefault(_native_arch(token), {})
        if token in per_arch:
            continue
        largest = 0
        for name in names:
            nr = resolve(token, name)
            if nr != _SCMP_ERROR and nr > largest:
                largest = nr
        if largest != 0:
            per_arch[token] = largest
        else:
            per_arch.pop(token, None)
    return last


def last_syscalls(seccomp: Mapping[str, Any]) -> dict[int, dict[int, int]]:
    """What the stub is generated from, for an OCI seccomp object (see `enosys_stub`)."""
    cfg = _parse(seccomp)
    with _lock:
        lib = _libseccomp().lib
        return _last_syscalls(
            cfg.arches,
            [r.name for r in cfg.rules],
            lambda arch, name: int(lib.seccomp_syscall_resolve_name_arch(arch, name.encode())),
        )


def _jump_if(cond: str, val: int, skip_true: int, skip_false: int = 0) -> Insn:
    """bpf.JumpIf assembled: the negated tests swap the two targets."""
    code, flip = {
        "eq": (BPF_JEQ_K, False),
        "ne": (BPF_JEQ_K, True),
        "gt": (BPF_JGT_K, False),
        "le": (BPF_JGT_K, True),
        "set": (BPF_JSET_K, False),
        "notset": (BPF_JSET_K, True),
    }[cond]
    jt, jf = skip_true & 0xFF, skip_false & 0xFF  # Go's uint8()
    if flip:
        jt, jf = jf, jt
    return Insn(code, jt, jf, val & 0xFFFFFFFF)


def _ja(skip: int) -> Insn:
    return Insn(BPF_JMP_JA, 0, 0, skip & 0xFFFFFFFF)


def _ld(off: int) -> Insn:
    return Insn(BPF_LD_W_ABS, 0, 0, off)


def _ret(val: int) -> Insn:
    return Insn(BPF_RET_K, 0, 0, val)


def enosys_stub(
    last: Mapping[int, Mapping[int, int]], jump_order: Sequence[int] | None = None
) -> list[Insn]:
    """patchbpf.generateEnosysStub. `last` maps AUDIT_ARCH -> {libseccomp arch: largest
    syscall}; its iteration order is the order runc's first map loop would take (sections),
    `jump_order` the order of its second loop (the arch dispatch), by default the same."""
    tail = [_ja(1), _ret(RET_ERRNO_ENOSYS)]
    jump_table: dict[int, int] = {}
    for native, max_syscalls in last.items():
        base_enosys = len(tail) - 1
        base_filter = base_enosys + 1
        section = [_ld(0)]
        if len(max_syscalls) == 0:
            continue
        if len(max_syscalls) == 1:
            ((scmp_arch, sysno),) = max_syscalls.items()
            if scmp_arch in (_AUDIT_ARCH_S390, _AUDIT_ARCH_S390X):
                # setup(2), nr 0, multiplexes unknown syscalls there.
                section += [_jump_if("ne", 0, 1), _ret(RET_ERRNO_ENOSYS)]
            if base_enosys + 1 <= 255:
                section_tail = [_jump_if("gt", sysno, base_enosys + 1), _ja(base_filter)]
            else:
                section_tail = [
                    _jump_if("le", sysno, 1),
                    _ja(base_enosys + 1),
                    _ja(base_filter),
                ]
            if native == AUDIT_ARCH_X86_64:
                if scmp_arch == AUDIT_ARCH_X86_64:
                    mode = _jump_if("set", 1 << 30, len(section_tail) - 1)
                elif scmp_arch == SCMP_ARCH_X32:
                    mode = _jump_if("notset", 1 << 30, len(section_tail) - 1)
                else:
                    raise SeccompUnsupported(f"unknown amd64 native architecture {scmp_arch:#x}")
                section_tail = [mode, *section_tail]
            section += section_tail
        elif len(max_syscalls) == 2:
            if native != AUDIT_ARCH_X86_64:
                raise SeccompUnsupported(f"unknown architecture overlap on {native:#x}")
            x32_sysno = max_syscalls.get(SCMP_ARCH_X32)
            x86_sysno = max_syscalls.get(AUDIT_ARCH_X86_64)
            if x32_sysno is None or x86_sysno is None:
                raise SeccompUnsupported("bad overlapping x86_64 architectures")
            if base_enosys + 2 <= 255:
                section += [
                    _jump_if("set", 1 << 30, 1),
                    _jump_if("gt", x86_sysno, base_enosys + 2, 1),
                    _jump_if("gt", x32_sysno, base_enosys + 1),
                    _ja(base_filter),
                ]
            else:
                section += [
                    _jump_if("set", 1 << 30, 1),
                    _jump_if("gt", x86_sysno, 1, 2),
                    _jump_if("le", x32_sysno, 1),
                    _ja(base_enosys + 1),
                    _ja(base_filter),
                ]
        else:
            raise SeccompUnsupported(f"{len(max_syscalls)} architectures overlap")
        tail = section + tail
        jump_table[native] = len(tail)

    tail = [_ja(len(tail)), *tail]
    for native in last if jump_order is None else jump_order:
        jump = len(tail) - jump_table.get(native, 0)
        if jump <= 255:
            tail = [_jump_if("eq", native, jump), *tail]
        else:
            tail = [_jump_if("ne", native, 1), _ja(jump), *tail]
    return [_ld(4), *tail]


# --- the whole program --------------------------------------------------------------------


def assemble(insns: Sequence[Insn]) -> bytes:
    return b"".join(_INSN.pack(*insn) for insn in insns)


def disassemble(program: bytes) -> list[Insn]:
    return [Insn(*fields) for fields in _INSN.iter_unpack(program)]


def compile_filter(seccomp: Mapping[str, Any]) -> Filter:
    """The program and flags runc 1.1.5 loads for this OCI `linux.seccomp` object; raises
    SeccompUnsupported when that is not certain. Thread-safe; blocking (a few ms)."""
    cfg = _parse(seccomp)
    with _lock:
        body = _libseccomp_program(cfg)
        # patchbpf.generatePatch (1.1.5 compares defaultErrnoRet with the action value).
        if cfg.default_errno == RET_ERRNO_ENOSYS or cfg.default_kind in _ALLOW_KINDS:
            stub: list[Insn] = []
        else:
            lib = _libseccomp().lib
            last = _last_syscalls(
                cfg.arches,
                [r.name for r in cfg.rules],
                lambda arch, name: int(lib.seccomp_syscall_resolve_name_arch(arch, name.encode())),
            )
            stub = enosys_stub(last)
    return Filter(program=assemble(stub + body), flags=0)
