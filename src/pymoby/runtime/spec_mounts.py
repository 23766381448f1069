"""The `mounts` of a container's OCI spec, built the way dockerd builds them at start.

Rule: collect the container's mounts in dockerd's order (IPC /dev/shm, tmpfs, then the mount
points from volumes-from / image volumes, Binds and Mounts, sorted by destination depth, then
the network files), and merge them into the default mounts exactly as dockerd's withMounts does:
user mounts replace defaults at the same destination, a user /dev hides the defaults below it,
/dev/shm gets its size or disappears with IpcMode none, binds get rbind/bind, ro or rro and
their propagation, a read-only rootfs makes the remaining defaults ro, privileged makes /sys
writable, writable cgroups make the cgroup mount writable. Pure: host facts come as arguments.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymoby import errdefs
from pymoby.api.types.containers import BindOptions, HostConfig
from pymoby.runtime import mounts
from pymoby.runtime.defaults import DEFAULT_SHM_SIZE, SpecError
from pymoby.runtime.mounts import DEFAULT_PROPAGATION, SpecMount

NETWORK_FILES = ("/etc/resolv.conf", "/etc/hostname", "/etc/hosts")
_RO_EXEMPT = ("/proc", "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev")


@dataclass(frozen=True)
class MountFacts:
    """What withMounts needs from outside the container's config."""

    volume_sources: Mapping[str, str]  # destination -> host path, for volume/image mounts
    extra_mounts: Sequence[SpecMount]  # volumes-from and image VOLUMEs, already resolved
    network_files: Mapping[str, str]  # /etc/resolv.conf etc. -> host path
    shm_path: str | None
    daemon_root: str
    bind_source_mounts: Mapping[str, tuple[str, str]]  # source -> (mountpoint, optional fields)
    rro_error: str | None  # None: recursive read-only supported
    # The container was created below API 1.44: its read-only binds are not recursive.
    read_only_non_recursive: bool = False


def collect_mounts(hc: HostConfig, facts: MountFacts) -> list[SpecMount]:
    """setupContainerDirs + setupMounts: the container's own mounts, in dockerd's order."""
    tmpfs: list[SpecMount] = [
        SpecMount("tmpfs", dest, data=data) for dest, data in sorted((hc.tmpfs or {}).items())
    ]
    points: dict[str, SpecMount] = {m.destination: m for m in facts.extra_mounts}
    for raw in hc.binds or ():
        try:
            mp = mounts.parse_bind(raw, hc.volume_driver)
        except errdefs.InvalidParameter as exc:
            raise SpecError(exc.message) from None
        points[mp.destination] = _spec_mount(mp, facts)
    for spec in hc.mounts or ():
        try:
            mp = mounts.parse_mount_spec(spec)
        except errdefs.InvalidParameter as exc:
            raise SpecError(exc.message) from None
        if mp.type == "tmpfs":
            try:
                data = mounts.convert_tmpfs_options(spec.tmpfs_options, spec.read_only)
            except errdefs.InvalidParameter as exc:
                raise SpecError(exc.message) from None
            tmpfs.append(SpecMount("tmpfs", mp.destination, data=data))
            continue
        points[mp.destination] = _spec_mount(mp, facts)

    tmpfs_dests = {m.destination for m in tmpfs}
    has_shm = "/dev/shm" in points or "/dev/shm" in tmpfs_dests
    out: list[SpecMount] = []
    if hc.ipc_mode not in ("", "private") and facts.shm_path and not has_shm:
        out.append(SpecMount(facts.shm_path, "/dev/shm", True, DEFAULT_PROPAGATION))
    out.extend(tmpfs)

    network = dict(facts.network_files)
    writable = dict.fromkeys(NETWORK_FILES, not hc.readonly_rootfs)
    regular: list[SpecMount] = []
    for dest, mnt in points.items():
        if dest in tmpfs_dests:
            continue
        if dest in NETWORK_FILES:  # TrySetNetworkMount: the user's file replaces ours
            network[dest], writable[dest] = mnt.source, mnt.writable
            continue
        regular.append(mnt)
    out.extend(sorted(regular, key=lambda m: mounts.mount_depth(m.destination)))
    for dest in NETWORK_FILES:
        if network.get(dest):
            out.append(SpecMount(network[dest], dest, writable[dest], DEFAULT_PROPAGATION))
    return out


def _spec_mount(mp: mounts.MountPoint, facts: MountFacts) -> SpecMount:
    """One mount point as setupMounts hands it to the spec (container.Mount)."""
    if mp.type == "bind":
        source = mp.source
        propagation = mp.propagation
        if _needs_slave(mp, facts.daemon_root):
            propagation = "rslave"
    else:
        if mp.destination not in facts.volume_sources:
            raise SpecError(f"no volume is mounted at {mp.destination}")
        source = facts.volume_sources[mp.destination]
        propagation = mp.propagation if mp.type == "image" else ""
    opts = mp.spec.bind_options if mp.type == "bind" else None
    if mp.type == "bind" and not mp.rw and facts.read_only_non_recursive:
        opts = copy.copy(opts) if opts is not None else BindOptions()
        opts.read_only_non_recursive = True
    if opts is not None:
        if not mp.spec.read_only and opts.read_only_non_recursive:
            raise SpecError("mount options conflict: !ReadOnly && BindOptions.ReadOnlyNonRecursive")
        if not mp.spec.read_only and opts.read_only_force_recursive:
            raise SpecError(
                "mount options conflict: !ReadOnly && BindOptions.ReadOnlyForceRecursive"
            )
        if opts.read_only_non_recursive and opts.read_only_force_recursive:
            raise SpecError(
                "mount options conflict: ReadOnlyNonRecursive && BindOptions.ReadOnlyForceRecursive"
            )
    return SpecMount(
        source=source,
        destination=mp.destination,
        writable=mp.rw,
        propagation=propagation,
        non_recursive=bool(opts and opts.non_recursive),
        read_only_non_recursive=bool(opts and opts.read_only_non_recursive),
        read_only_force_recursive=bool(opts and opts.read_only_force_recursive),
        explicit_propagation=bool(opts and opts.propagation),
    )


def _needs_slave(mp: mounts.MountPoint, root: str) -> bool:
    """validateBindDaemonRoot: a bind of (or into) the daemon root defaults to rslave."""
    if not root:
        return False
    src = mp.spec.source
    if not (src.startswith(root) or root.startswith(src)):
        return False
    return mp.spec.bind_options is None or mp.spec.bind_options.propagation == ""


def apply_mounts(
    spec: dict[str, Any],
    user: Sequence[SpecMount],
    hc: HostConfig,
    facts: MountFacts,
    writable_cgroups: bool,
) -> None:
    """withMounts: merge `user` into spec["mounts"] (the defaults) and adjust options."""
    ordered = sorted(user, key=lambda m: mounts.mount_depth(m.destination))
    user_dests = {m.destination for m in ordered}
    mount_dev = "/dev" in user_dests
    merged: list[dict[str, Any]] = []
    for default in spec["mounts"]:
        dest = default["destination"]
        if dest in user_dests or (mount_dev and dest.startswith("/dev/")):
            continue
        if dest == "/dev/shm" and hc.ipc_mode == "none":
            continue
        merged.append({**default, "options": list(default["options"])})
        if dest == "/dev/shm":
            merged[-1]["options"].append(f"size={hc.shm_size or DEFAULT_SHM_SIZE}")
    linux = spec["linux"]
    for m in ordered:
        if m.source == "tmpfs":
            options = ["noexec", "nosuid", "nodev", DEFAULT_PROPAGATION]
            if m.data:
                options.extend(m.data.split(","))
            try:
                merged_opts = mounts.merge_tmpfs_options(options)
            except errdefs.InvalidParameter as exc:
                raise SpecError(exc.message) from None
            merged.append(_mount(m.destination, "tmpfs", m.source, merged_opts))
            continue
        _check_propagation(m, linux, facts)
        opts = ["bind" if m.non_recursive else "rbind"]
        if not m.writable:
            rro = not m.read_only_non_recursive
            if m.read_only_non_recursive and m.read_only_force_recursive:
                raise SpecError(
                    "mount options conflict: ReadOnlyNonRecursive && ReadOnlyForceRecursive"
                )
            if facts.rro_error is not None:
                rro = False
                if m.read_only_force_recursive:
                    raise SpecError(facts.rro_error)
            opts.append("rro" if rro else "ro")
        if m.propagation in mounts.PROPAGATION_MODES:
            opts.append(m.propagation)
        merged.append(_mount(m.destination, "bind", m.source, opts))

    if spec["root"].get("readonly"):
        for entry in merged:
            if entry["destination"] in _RO_EXEMPT or entry["destination"] in user_dests:
                continue
            if "ro" not in entry.get("options", []):
                entry["options"] = [*entry.get("options", []), "ro"]
    if hc.privileged:
        for entry in merged:
            if entry["destination"] == "/sys":
                _clear_ro(entry)
        linux.pop("readonlyPaths", None)
        linux.pop("maskedPaths", None)
    if writable_cgroups:
        for entry in merged:
            if entry.get("type") == "cgroup":
                _clear_ro(entry)
    spec["mounts"] = merged


def _mount(dest: str, kind: str, source: str, options: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"destination": dest, "type": kind, "source": source}
    if options:
        out["options"] = options
    return out


def _clear_ro(m: dict[str, Any]) -> None:
    options = [o for o in m.get("options", []) if o != "ro"]
    if options:
        m["options"] = options
    else:
        m.pop("options", None)


def _check_propagation(m: SpecMount, linux: dict[str, Any], facts: MountFacts) -> None:
    """ensureShared / ensureSharedOrSlave on the bind source and the rootfs propagation they
    require; a source without an entry in `facts.bind_source_mounts` is not checked."""
    root_prop = linux.get("rootfsPropagation", "")
    known = facts.bind_source_mounts.get(m.source)
    if m.propagation in ("shared", "rshared"):
        if known is not None and not _has_optional(known[1], "shared:"):
            raise SpecError(
                f"path {m.source} is mounted on {known[0]} but it is not a shared mount"
            )
        if root_prop not in ("shared", "rshared"):
            linux["rootfsPropagation"] = "shared"
    elif m.propagation in ("slave", "rslave"):
        if known is not None and not _has_optional(known[1], "shared:", "master:"):
            root = facts.daemon_root
            in_root = bool(root) and (m.source.startswith(root) or root.startswith(m.source))
            if not in_root or m.explicit_propagation:
                raise SpecError(
                    f"path {m.source} is mounted on {known[0]} but it is not a shared or "
                    "slave mount"
                )
            return  # dockerd falls back to the default propagation for the daemon root
        if root_prop not in ("shared", "rshared", "slave", "rslave"):
            linux["rootfsPropagation"] = "rslave"


def _has_optional(optional: str, *prefixes: str) -> bool:
    return any(opt.startswith(p) for opt in optional.split(" ") for p in prefixes)
