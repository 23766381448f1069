"""Linux mount parsing as dockerd does it: `Binds` strings, `Mounts` specs, tmpfs options.

Rule: this is moby's volume/mounts linuxParser (ParseMountRaw, ParseMountSpec,
ValidateMountConfig, ConvertTmpfsOptions, ValidateTmpfsMountDestination) plus
moby/sys/mount.MergeTmpfsOptions, with their exact error texts; errors are InvalidParameter
because dockerd reports them when the container is created. Whether a bind source exists is
asked through an injected predicate, so nothing here touches the filesystem.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pymoby import errdefs
from pymoby.api.types.containers import BindOptions, Driver, Mount, TmpfsOptions, VolumeOptions
from pymoby.log import go_quote

PROPAGATION_MODES = ("private", "rprivate", "slave", "rslave", "shared", "rshared")
DEFAULT_PROPAGATION = "rprivate"
_RW_MODES = ("rw", "ro")
_LABEL_MODES = ("z", "Z")
_CONSISTENCY_MODES = ("consistent", "cached", "delegated")
_COPY_MODES = {"nocopy": False}

ERR_TARGET_IS_ROOT = "invalid specification: destination can't be '/'"


class MountError(errdefs.InvalidParameter):
    """A Binds entry or Mounts spec dockerd rejects."""


@dataclass(frozen=True)
class MountPoint:
    """A parsed mount (moby's volumemounts.MountPoint, the fields the spec needs)."""

    type: str  # bind | volume | tmpfs | image
    destination: str
    source: str = ""  # host path for binds; volume name for named volumes
    rw: bool = True
    propagation: str = ""
    mode: str = ""  # the raw options of a Binds entry
    driver: str = ""
    copy_data: bool = True
    spec: Mount = field(default_factory=Mount, compare=False, hash=False)

    @property
    def name(self) -> str:
        return self.source if self.type == "volume" else ""


@dataclass(frozen=True)
class SpecMount:
    """dockerd's container.Mount: one mount handed to the spec builder."""

    source: str
    destination: str
    writable: bool = True
    propagation: str = ""
    non_recursive: bool = False
    read_only_non_recursive: bool = False
    read_only_force_recursive: bool = False
    data: str = ""  # tmpfs options, only when source == "tmpfs"
    explicit_propagation: bool = False  # the user set BindOptions.Propagation


def go_clean(path: str) -> str:
    """Go's path.Clean (posixpath.normpath keeps a leading `//`, Go does not)."""
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def valid_mount_mode(mode: str) -> bool:
    """linuxValidMountMode: comma-separated options, at most one of each kind."""
    if mode == "":
        return True
    counts = {"rw": 0, "label": 0, "prop": 0, "copy": 0, "consistency": 0}
    for opt in mode.split(","):
        if opt in _RW_MODES:
            counts["rw"] += 1
        elif opt in _LABEL_MODES:
            counts["label"] += 1
        elif opt in PROPAGATION_MODES:
            counts["prop"] += 1
        elif opt in _COPY_MODES:
            counts["copy"] += 1
        elif opt in _CONSISTENCY_MODES:
            counts["consistency"] += 1
        else:
            return False
    return all(n <= 1 for n in counts.values())


def read_write(mode: str) -> bool:
    return valid_mount_mode(mode) and "ro" not in mode.split(",")


def _propagation(mode: str) -> str | None:
    return next((o for o in mode.split(",") if o in PROPAGATION_MODES), None)


def _invalid_spec(raw: str) -> str:
    return f"invalid volume specification: '{raw}'"


def _mount_config_error(mnt: Mount, detail: str) -> MountError:
    return MountError(f"invalid mount config for type {go_quote(mnt.type)}: {detail}")


def validate_not_root(path: str) -> None:
    if go_clean(path.replace("\\", "/")) == "/":
        raise MountError(ERR_TARGET_IS_ROOT)


def validate_absolute(path: str) -> None:
    path = path.replace("\\", "/")
    if not path.startswith("/"):
        raise MountError(f"invalid mount path: '{path}' mount path must be absolute")


def validate_tmpfs_destination(dest: str) -> None:
    """ValidateTmpfsMountDestination (for HostConfig.Tmpfs keys)."""
    validate_not_root(dest)
    validate_absolute(dest)


def _is_local(path: str) -> bool:
    """Go's filepath.IsLocal on Unix."""
    if path == "" or path.startswith("/"):
        return False
    return go_clean(path) != ".." and not go_clean(path).startswith("../")


def validate_mount_config(mnt: Mount, source_exists: Callable[[str], bool] | None = None) -> None:
    """ValidateMountConfig; `source_exists` None skips the bind-source existence check."""
    for kind, name, value in (
        ("bind", "BindOptions", mnt.bind_options),
        ("volume", "VolumeOptions", mnt.volume_options),
        ("image", "ImageOptions", mnt.image_options),
        ("tmpfs", "TmpfsOptions", mnt.tmpfs_options),
        ("cluster", "ClusterOptions", mnt.cluster_options),
    ):
        if mnt.type != kind and value is not None:
            raise _mount_config_error(mnt, f"field {name} must not be specified")
    if mnt.target == "":
        raise _mount_config_error(mnt, "field Target must not be empty")
    for check in (validate_not_root, validate_absolute):
        try:
            check(mnt.target)
        except MountError as exc:
            raise _mount_config_error(mnt, exc.message) from None
    if mnt.type == "bind":
        if mnt.source == "":
            raise _mount_config_error(mnt, "field Source must not be empty")
        prop = mnt.bind_options.propagation if mnt.bind_options else ""
        if prop and prop not in PROPAGATION_MODES:
            raise _mount_config_error(mnt, f"invalid propagation mode: {prop}")
        try:
            validate_absolute(mnt.source)
        except MountError as exc:
            raise _mount_config_error(mnt, exc.message) from None
        create = bool(mnt.bind_options and mnt.bind_options.create_mountpoint)
        if source_exists is not None and not create and not source_exists(mnt.source):
            raise _mount_config_error(mnt, f"bind source path does not exist: {mnt.source}")
    elif mnt.type == "volume":
        subpath = mnt.volume_options.subpath if mnt.volume_options else ""
        if subpath:
            if mnt.source == "":
                raise _mount_config_error(mnt, "must not set Subpath when using anonymous volumes")
            if not _is_local(subpath):
                raise _mount_config_error(mnt, "subpath must be a relative path within the volume")
    elif mnt.type == "tmpfs":
        if mnt.source != "":
            raise _mount_config_error(mnt, "field Source must not be specified")
        try:
            convert_tmpfs_options(mnt.tmpfs_options, mnt.read_only)
        except MountError as exc:
            raise _mount_config_error(mnt, exc.message) from None
    elif mnt.type == "image":
        if mnt.source == "":
            raise _mount_config_error(mnt, "field Source must not be empty")
        subpath = mnt.image_options.subpath if mnt.image_options else ""
        if subpath and not _is_local(subpath):
            raise _mount_config_error(mnt, "subpath must be a relative path within the volume")
    else:
        raise _mount_config_error(mnt, "mount type unknown")


def parse_mount_spec(mnt: Mount, source_exists: Callable[[str], bool] | None = None) -> MountPoint:
    """ParseMountSpec: one HostConfig.Mounts entry to a MountPoint."""
    validate_mount_config(mnt, source_exists)
    dest = go_clean(mnt.target)
    if mnt.type == "volume":
        opts = mnt.volume_options
        driver = opts.driver_config.name if opts and opts.driver_config else ""
        copy = not (opts and opts.no_copy)
        return MountPoint("volume", dest, mnt.source, not mnt.read_only, "", "", driver, copy, mnt)
    if mnt.type == "bind":
        prop = (mnt.bind_options.propagation if mnt.bind_options else "") or DEFAULT_PROPAGATION
        return MountPoint("bind", dest, go_clean(mnt.source), not mnt.read_only, prop, spec=mnt)
    if mnt.type == "image":
        return MountPoint(
            "image", dest, mnt.source, not mnt.read_only, DEFAULT_PROPAGATION, spec=mnt
        )
    return MountPoint(mnt.type, dest, "", not mnt.read_only, spec=mnt)


def parse_bind(raw: str, volume_driver: str = "") -> MountPoint:
    """ParseMountRaw: one `HostConfig.Binds` entry (`[src:]dst[:mode]`)."""
    parts = raw.split(":", 3)
    if parts[0] == "":
        raise MountError(_invalid_spec(raw))
    source, mode = "", ""
    if len(parts) == 1:
        target = parts[0]
    elif len(parts) == 2:
        if valid_mount_mode(parts[1]):
            raise MountError(_invalid_spec(raw))
        source, target = parts
    elif len(parts) == 3:
        source, target, mode = parts
    else:
        raise MountError(_invalid_spec(raw))
    if not valid_mount_mode(mode):
        raise MountError(f"invalid mode: {mode}")
    kind = "bind" if source.startswith("/") else "volume"
    volume_options: VolumeOptions | None = None
    if volume_driver and kind == "volume":
        volume_options = VolumeOptions(driver_config=Driver(name=volume_driver))
    copy_opt = next((o for o in mode.split(",") if o in _COPY_MODES), None)
    if copy_opt is not None:
        volume_options = volume_options or VolumeOptions()
        volume_options.no_copy = not _COPY_MODES[copy_opt]
    prop = _propagation(mode)
    spec = Mount(
        type=kind,
        source=source,
        target=target,
        read_only=not read_write(mode),
        volume_options=volume_options,
        bind_options=BindOptions(propagation=prop) if prop else None,
    )
    try:
        mp = parse_mount_spec(spec)
    except MountError as exc:
        raise MountError(f"{_invalid_spec(raw)}: {exc.message}") from None
    return MountPoint(
        mp.type, mp.destination, mp.source, mp.rw, mp.propagation, mode, mp.driver,
        mp.copy_data, mp.spec,
    )  # fmt: skip


def parse_volumes_from(spec: str) -> tuple[str, str]:
    """ParseVolumesFrom: `container[:ro|rw]` -> (container, mode)."""
    if spec == "":
        raise MountError("volumes-from specification cannot be an empty string")
    cid, _, mode = spec.partition(":")
    if mode == "":
        return cid, "rw"
    if (
        not valid_mount_mode(mode)
        or _propagation(mode)
        or any(o in _COPY_MODES for o in mode.split(","))
    ):
        raise MountError(f"invalid mode: {mode}")
    return cid, mode


def convert_tmpfs_options(opts: TmpfsOptions | None, read_only: bool) -> str:
    """ConvertTmpfsOptions: `ro`, `mode=<octal>`, `size=<n>[kmg]` and the allowed flags."""
    raw: list[str] = ["ro"] if read_only else []
    if opts is not None and opts.mode:
        raw.append(f"mode={opts.mode:o}")
    if opts is not None and opts.size_bytes:
        size, suffix = opts.size_bytes, ""
        for suf, div in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
            if size % div == 0:
                size, suffix = size // div, suf
                break
        raw.append(f"size={size}{suffix}")
    for opt in (opts.options or []) if opts is not None else []:
        if len(opt) < 1 or len(opt) > 2:
            raise MountError("invalid option array length")
        if opt[0] not in ("exec", "noexec"):
            raise MountError("invalid option: " + opt[0])
        raw.append(opt[0] if len(opt) == 1 else f"{opt[0]}={opt[1]}")
    return ",".join(raw)


# moby/sys/mount flags: options that set or clear the same mount flag collide.
_FLAG_KEY = {
    "ro": "rdonly", "rw": "rdonly", "suid": "nosuid", "nosuid": "nosuid", "dev": "nodev",
    "nodev": "nodev", "exec": "noexec", "noexec": "noexec", "sync": "sync", "async": "sync",
    "dirsync": "dirsync", "remount": "remount", "mand": "mand", "nomand": "mand",
    "atime": "noatime", "noatime": "noatime", "diratime": "nodiratime",
    "nodiratime": "nodiratime", "relatime": "relatime", "norelatime": "relatime",
    "strictatime": "strictatime", "nostrictatime": "strictatime",
}  # fmt: skip
_PROPAGATION_FLAGS = frozenset(("bind", "rbind", "unbindable", "runbindable", *PROPAGATION_MODES))
_TMPFS_DATA = frozenset(("", "size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol"))


def merge_tmpfs_options(options: Iterable[str]) -> list[str]:
    """MergeTmpfsOptions: the last of colliding options wins, order otherwise kept."""
    seen: set[str] = set()
    out: list[str] = []
    for opt in reversed(list(options)):
        if opt == "defaults":
            continue
        if opt in _FLAG_KEY or opt in _PROPAGATION_FLAGS:
            key = "propagation" if opt in _PROPAGATION_FLAGS else _FLAG_KEY[opt]
        else:
            name, sep, _ = opt.partition("=")
            if not sep or name not in _TMPFS_DATA:
                raise MountError(f"invalid tmpfs option {go_quote(name)}")
            key = "data:" + name
        if key not in seen:
            seen.add(key)
            out.insert(0, opt)
    return out


def mount_depth(destination: str) -> int:
    """mountSort: the number of `/` in the cleaned destination."""
    return go_clean(destination).count("/")
