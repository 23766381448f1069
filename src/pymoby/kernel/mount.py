"""Mounts: the only code that calls mount(2), umount2(2) and the new mount API.

Rule: callers describe a mount as data (`MountSpec`) and this module performs it; nothing else in
pymoby mounts or unmounts. Every failure is an `errdefs` error naming the target and the errno
text (and the kernel's own message when the new mount API gave one); OSError never leaves.

- Overlay mounts use the new mount API (fsopen("overlay") + one `fsconfig(lowerdir+)` per lower
  layer + fsmount + move_mount, kernel >= 6.8) when the kernel has it: each lower directory is its
  own call, so there is no 4096-byte limit on the option string. Otherwise the classic mount(2)
  with one option string, which must fit in a page (dockerd's overlay2 limit).
- Paths in a spec may be relative to `spec.cwd` (overlay2's short `l/<id>` links). They are made
  absolute when that fits (fsconfig takes at most 255 bytes per value; mount(2) one page); when it
  does not, the mount runs in a short-lived thread that unshares its cwd (CLONE_FS) and chdirs to
  `spec.cwd`, so the relative names are used and the process's cwd is never touched.
- A spec of type "none" describes a directory that needs no mount (vfs, a layer without parents);
  `mount` refuses it: callers check `spec.needs_mount`.
- Also here: the filesystem facts mount decisions depend on (statfs magic, d_type support,
  is-a-mountpoint via statx) and `syncfs`, so callers never need their own ctypes.
All calls block: callers use `asyncio.to_thread`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import re
import resource
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from pymoby import errdefs

T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

# The new mount API has the same numbers on every architecture (added after the 424 unification).
_SYSCALLS: dict[str, dict[str, int]] = {
    arch: {"move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432}
    for arch in ("x86_64", "aarch64")
}

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MNT_DETACH = 0x2

_FSOPEN_CLOEXEC = 1
_FSCONFIG_SET_FLAG = 0
_FSCONFIG_SET_STRING = 1
_FSCONFIG_CMD_CREATE = 6
_FSMOUNT_CLOEXEC = 1
_MOVE_MOUNT_F_EMPTY_PATH = 4
_AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100
_STATX_ATTR_MOUNT_ROOT = 0x2000
_CLONE_FS = 0x200
_FSCONFIG_MAX = 255  # fsconfig copies at most 256 bytes of a value, NUL included

# Generic options: (mount(2) flag, fsmount attribute flag). The rest go to the filesystem.
_GENERIC = {
    "ro": (MS_RDONLY, 0x1),
    "nosuid": (MS_NOSUID, 0x2),
    "nodev": (MS_NODEV, 0x4),
    "noexec": (MS_NOEXEC, 0x8),
}
_PROPAGATION = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
}
_QUOTED = ("context", "fscontext", "defcontext", "rootcontext")  # SELinux labels contain commas

Api = Literal["auto", "new", "classic"]


class MountError(errdefs.System):
    """A mount, unmount or probe failed; `errno` is the kernel's error number."""

    def __init__(self, message: str, err: int) -> None:
        super().__init__(message)
        self.errno = err


@dataclass(frozen=True, slots=True)
class MountSpec:
    """How to produce a directory tree at `target`: the data a graph driver returns.

    fstype: "overlay", "bind", another filesystem type (source + options), or "none" when
    `target` already is the tree and nothing is mounted. `options` holds generic flags ("ro",
    "nosuid", "nodev", "noexec", "rbind", propagation like "rprivate") and filesystem options
    ("index=off", "context=<label>"). For overlay, `lowerdirs` are ordered top first; `upperdir`
    and `workdir` are empty for a read-only overlay. Relative paths are relative to `cwd`.
    """

    fstype: str
    target: str
    source: str = ""
    options: tuple[str, ...] = ()
    lowerdirs: tuple[str, ...] = ()
    upperdir: str = ""
    workdir: str = ""
    cwd: str = ""

    @property
    def needs_mount(self) -> bool:
        return self.fstype != "none"

    @classmethod
    def plain_dir(cls, path: str | Path) -> MountSpec:
        """A tree that is already in place at `path`."""
        return cls(fstype="none", target=str(path))


# -- errors ----------------------------------------------------------------------------------


def _error(what: str, target: str, err: int | None, detail: str = "") -> MountError:
    err = err or 0
    text = os.strerror(err) if err else "unknown error"
    extra = f" ({detail})" if detail else ""
    return MountError(f"{what} {target}: {text}{extra}", err)


def _syscall(name: str, *args: object) -> int:
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None:
        raise OSError(errno.ENOSYS, f"no syscall table for {platform.machine()}")
    ctypes.set_errno(0)
    result = int(_libc.syscall(ctypes.c_long(numbers[name]), *args))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


# -- the new mount API -----------------------------------------------------------------------

_probe_lock = threading.Lock()
_new_api: bool | None = None


def new_api_available() -> bool:
    """Whether the kernel has fsopen("overlay") with `lowerdir+` (Linux >= 6.8). Cached."""
    global _new_api
    with _probe_lock:
        if _new_api is None:
            _new_api = _probe_new_api()
        return _new_api


def _probe_new_api() -> bool:
    try:
        fd = _syscall("fsopen", b"overlay", _FSOPEN_CLOEXEC)
    except OSError:
        return False
    try:
        _syscall("fsconfig", fd, _FSCONFIG_SET_STRING, b"lowerdir+", b"/", 0)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def _kernel_messages(fd: int) -> str:
    """Drain the error log of an fs context ("e overlay: ..." lines)."""
    lines: list[str] = []
    while True:
        try:
            raw = os.read(fd, 4096)
        except OSError:
            break
        if not raw:
            break
        lines.append(raw.decode(errors="replace").strip())
    return "; ".join(line.removeprefix("e ") for line in lines)


def _mount_new(spec: MountSpec, fs_options: list[str], attrs: int, paths: _Paths) -> None:
    fd = _syscall("fsopen", spec.fstype.encode(), _FSOPEN_CLOEXEC)
    try:
        config: list[tuple[str, str | None]] = []
        for option in fs_options:
            name, sep, text = option.partition("=")
            config.append((name, text if sep else None))
        config += [("lowerdir+", lower) for lower in paths.lowerdirs]
        if paths.upperdir:
            config += [("upperdir", paths.upperdir), ("workdir", paths.workdir)]
        if spec.source:
            config.append(("source", spec.source))
        for key, value in config:
            try:
                if value is None:
                    _syscall("fsconfig", fd, _FSCONFIG_SET_FLAG, key.encode(), None, 0)
                else:
                    raw = value.encode()
                    _syscall("fsconfig", fd, _FSCONFIG_SET_STRING, key.encode(), raw, 0)
            except OSError as exc:
                detail = _kernel_messages(fd) or (f"{key}={value}" if value else key)
                raise _error(f"mount {spec.fstype} on", spec.target, exc.errno, detail) from None
        try:
            _syscall("fsconfig", fd, _FSCONFIG_CMD_CREATE, None, None, 0)
            mfd = _syscall("fsmount", fd, _FSMOUNT_CLOEXEC, attrs)
        except OSError as exc:
            detail = _kernel_messages(fd)
            raise _error(f"mount {spec.fstype} on", spec.target, exc.errno, detail) from None
        try:
            target = paths.target.encode()
            _syscall("move_mount", mfd, b"", _AT_FDCWD, target, _MOVE_MOUNT_F_EMPTY_PATH)
        except OSError as exc:
            raise _error(f"mount {spec.fstype} on", spec.target, exc.errno) from None
        finally:
            os.close(mfd)
    finally:
        os.close(fd)


# -- the classic mount(2) --------------------------------------------------------------------


def _classic_data(fs_options: list[str], paths: _Paths) -> str:
    parts = []
    for option in fs_options:
        key, sep, value = option.partition("=")
        quote = sep and key in _QUOTED and not value.startswith('"')
        parts.append(f'{key}="{value}"' if quote else option)
    if paths.lowerdirs:
        parts.append("lowerdir=" + ":".join(paths.lowerdirs))
    if paths.upperdir:
        parts += [f"upperdir={paths.upperdir}", f"workdir={paths.workdir}"]
    return ",".join(parts)


def _sys_mount(source: str, target: str, fstype: str | None, flags: int, data: str) -> None:
    ctypes.set_errno(0)
    rc = _libc.mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        flags,
        data.encode() if data else None,
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


# -- paths, cwd ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Paths:
    target: str
    lowerdirs: tuple[str, ...]
    upperdir: str
    workdir: str

    def longest(self) -> int:
        return max((len(p.encode()) for p in (*self.lowerdirs, self.upperdir)), default=0)


def _paths(spec: MountSpec, *, absolute: bool) -> _Paths:
    def fix(p: str) -> str:
        return os.path.join(spec.cwd, p) if absolute and p and spec.cwd else p

    return _Paths(
        target=spec.target,
        lowerdirs=tuple(fix(p) for p in spec.lowerdirs),
        upperdir=fix(spec.upperdir),
        workdir=fix(spec.workdir),
    )


def _in_dir(cwd: str, fn: Callable[[], T]) -> T:
    """Run `fn` in a new thread whose cwd is `cwd`; the process's cwd stays as it is."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            ctypes.set_errno(0)
            if _libc.unshare(_CLONE_FS) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"unshare(CLONE_FS): {os.strerror(err)}")
            os.chdir(cwd)
            box["result"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, name="pymoby-mount-cwd")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]


# -- public API ------------------------------------------------------------------------------


def mount(spec: MountSpec, *, api: Api = "auto") -> None:
    """Mount `spec` on `spec.target` (which must exist). Raises MountError."""
    if not spec.needs_mount:
        raise errdefs.InvalidParameter(f"mount {spec.target}: nothing to mount (type none)")
    try:
        if spec.fstype == "bind":
            _mount_bind(spec)
        elif spec.fstype == "overlay":
            _mount_overlay(spec, api)
        else:
            _mount_other(spec)
    except OSError as exc:
        raise _error(f"mount {spec.fstype} on", spec.target, exc.errno) from None


def _split_options(options: tuple[str, ...]) -> tuple[list[str], int, int, int]:
    """-> (filesystem options, mount(2) flags, fsmount attrs, propagation flags)."""
    fs_options: list[str] = []
    flags = attrs = propagation = 0
    for option in options:
        if option in _GENERIC:
            flags |= _GENERIC[option][0]
            attrs |= _GENERIC[option][1]
        elif option in _PROPAGATION:
            propagation |= _PROPAGATION[option]
        elif option not in ("bind", "rbind", "rw"):
            fs_options.append(option)
    return fs_options, flags, attrs, propagation


def _mount_overlay(spec: MountSpec, api: Api) -> None:
    fs_options, flags, attrs, _ = _split_options(spec.options)
    if not spec.lowerdirs:
        raise errdefs.InvalidParameter(f"mount overlay on {spec.target}: no lower directories")
    use_new = api == "new" or (api == "auto" and new_api_available())
    absolute = _paths(spec, absolute=True)
    if use_new:
        if absolute.longest() <= _FSCONFIG_MAX or not spec.cwd:
            _mount_new(spec, fs_options, attrs, absolute)
        else:
            relative = _paths(spec, absolute=False)
            _in_dir(spec.cwd, lambda: _mount_new(spec, fs_options, attrs, relative))
        return
    limit = resource.getpagesize() - 1
    data = _classic_data(fs_options, absolute)
    if len(data.encode()) <= limit or not spec.cwd:
        _sys_mount("overlay", spec.target, "overlay", flags, data)
        return
    relative = _paths(spec, absolute=False)
    data = _classic_data(fs_options, relative)
    if len(data.encode()) > limit:
        raise MountError(
            f"mount overlay on {spec.target}: mount options are {len(data)} bytes, more than "
            f"the {limit} mount(2) takes ({len(spec.lowerdirs)} lower directories)",
            errno.E2BIG,
        )
    _in_dir(spec.cwd, lambda: _sys_mount("overlay", spec.target, "overlay", flags, data))


def _mount_bind(spec: MountSpec) -> None:
    fs_options, flags, _, propagation = _split_options(spec.options)
    if fs_options:
        raise errdefs.InvalidParameter(f"bind mount on {spec.target}: bad options {fs_options}")
    rec = MS_REC if "rbind" in spec.options else 0
    _sys_mount(spec.source, spec.target, None, MS_BIND | rec, "")
    try:
        if flags:  # a bind mount takes its flags only on a remount
            _sys_mount("", spec.target, None, MS_REMOUNT | MS_BIND | flags, "")
        if propagation:
            _sys_mount("", spec.target, None, propagation, "")
    except OSError:
        _libc.umount2(spec.target.encode(), MNT_DETACH)
        raise


def _mount_other(spec: MountSpec) -> None:
    fs_options, flags, _, propagation = _split_options(spec.options)
    data = _classic_data(fs_options, _paths(spec, absolute=True))
    _sys_mount(spec.source or spec.fstype, spec.target, spec.fstype, flags, data)
    if propagation:
        try:
            _sys_mount("", spec.target, None, propagation, "")
        except OSError:
            _libc.umount2(spec.target.encode(), MNT_DETACH)
            raise


def unmount(target: str | Path, *, lazy: bool = False, missing_ok: bool = False) -> bool:
    """Unmount `target`; with `lazy`, detach it even while busy (MNT_DETACH).

    Returns False when `missing_ok` and `target` was not mounted (or does not exist).
    """
    path = str(target)
    ctypes.set_errno(0)
    if _libc.umount2(path.encode(), MNT_DETACH if lazy else 0) == 0:
        return True
    err = ctypes.get_errno()
    if missing_ok and err in (errno.EINVAL, errno.ENOENT):
        return False
    raise _error("unmount", path, err)


class _Statx(ctypes.Structure):
    _fields_ = [
        ("mask", ctypes.c_uint32),
        ("blksize", ctypes.c_uint32),
        ("attributes", ctypes.c_uint64),
        ("rest", ctypes.c_uint8 * 40),
        ("attributes_mask", ctypes.c_uint64),
        ("tail", ctypes.c_uint8 * 192),
    ]


def is_mountpoint(path: str | Path) -> bool:
    """Whether `path` is the root of a mount (statx STATX_ATTR_MOUNT_ROOT; no symlink follow)."""
    buf = _Statx()
    ctypes.set_errno(0)
    rc = _libc.statx(_AT_FDCWD, str(path).encode(), _AT_SYMLINK_NOFOLLOW, 0, ctypes.byref(buf))
    if rc != 0:
        err = ctypes.get_errno()
        if err in (errno.ENOENT, errno.ENOTDIR):
            return False
        raise _error("statx", str(path), err)
    if buf.attributes_mask & _STATX_ATTR_MOUNT_ROOT:
        return bool(buf.attributes & _STATX_ATTR_MOUNT_ROOT)
    return _in_mountinfo(str(path))  # kernel < 5.8


def _in_mountinfo(path: str) -> bool:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            field = line.split(" ", 5)[4]
            if re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field) == real:
                return True
    return False


class Mounter:
    """This module as an object, for code that takes a mounter (unit tests pass fakes)."""

    def __init__(self, api: Api = "auto") -> None:
        self.api: Api = api

    def mount(self, spec: MountSpec) -> None:
        mount(spec, api=self.api)

    def unmount(self, target: str | Path, *, lazy: bool = False) -> None:
        unmount(target, lazy=lazy)

    def is_mountpoint(self, path: str | Path) -> bool:
        return is_mountpoint(path)


# -- filesystem facts ------------------------------------------------------------------------


def fs_magic(path: str | Path) -> int:
    """statfs(2) f_type of the filesystem holding `path`."""
    buf = (ctypes.c_long * 32)()  # struct statfs is 120 bytes on 64-bit; f_type comes first
    ctypes.set_errno(0)
    if _libc.statfs(str(path).encode(), ctypes.byref(buf)) != 0:
        raise _error("statfs", str(path), ctypes.get_errno())
    return int(buf[0]) & 0xFFFFFFFF


class _Dirent(ctypes.Structure):
    _fields_ = [
        ("d_ino", ctypes.c_uint64),
        ("d_off", ctypes.c_int64),
        ("d_reclen", ctypes.c_uint16),
        ("d_type", ctypes.c_uint8),
        ("d_name", ctypes.c_char * 256),
    ]


_libc.opendir.restype = ctypes.c_void_p
_libc.opendir.argtypes = [ctypes.c_char_p]
_libc.readdir64.restype = ctypes.POINTER(_Dirent)
_libc.readdir64.argtypes = [ctypes.c_void_p]
_libc.closedir.argtypes = [ctypes.c_void_p]


def supports_d_type(path: str | Path) -> bool:
    """Whether readdir on the filesystem of `path` reports file types (overlay needs it)."""
    probe = Path(path) / f".d_type-check-{uuid.uuid4().hex}"
    try:
        probe.mkdir()
        (probe / "f").touch()
        handle = _libc.opendir(str(probe).encode())
        if not handle:
            raise OSError(ctypes.get_errno(), "opendir")
        try:
            while entry := _libc.readdir64(handle):
                if entry.contents.d_name == b"f":
                    return bool(entry.contents.d_type != 0)  # DT_UNKNOWN is 0
        finally:
            _libc.closedir(handle)
    except OSError as exc:
        raise _error("d_type check in", str(path), exc.errno) from None
    finally:
        (probe / "f").unlink(missing_ok=True)
        if probe.exists():
            probe.rmdir()
    return False


def syncfs(path: str | Path) -> None:
    """Flush every dirty page of the filesystem holding `path` to disk (syncfs(2))."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise _error("syncfs", str(path), exc.errno) from None
    try:
        ctypes.set_errno(0)
        if _libc.syncfs(fd) != 0:
            raise _error("syncfs", str(path), ctypes.get_errno())
    finally:
        os.close(fd)
