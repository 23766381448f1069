"""Cgroup detection: which hierarchy the host runs and which limits it can enforce.

Rule: this module only *reads* the host (mountinfo, /proc/self/cgroup, files under
/sys/fs/cgroup); it never creates or writes cgroups. The capability booleans follow dockerd's
`pkg/sysinfo` exactly, so `GET /info` says what dockerd would say on the same host:

- cgroup v2 ("unified": /sys/fs/cgroup itself is cgroup2) reads `cgroup.controllers` of the root
  group; swap limit = `memory.swap.max` exists in the daemon's own group; OOM-kill-disable is
  never available on v2.
- cgroup v1 ("legacy", or "hybrid" with a cgroup2 mount at /sys/fs/cgroup/unified) maps each
  subsystem of /proc/self/cgroup to the first cgroup v1 mount carrying it, then probes control
  files at the hierarchy root (memory.memsw.limit_in_bytes, cpu.cfs_quota_us, ...).

Everything is plain blocking file I/O: callers run it with `asyncio.to_thread`. Paths take a
`root` prefix so tests can point the probe at a fake tree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

CgroupMode = Literal["unified", "hybrid", "legacy", "unavailable"]

CGROUP_ROOT = "/sys/fs/cgroup"


@dataclass(frozen=True)
class Mount:
    """One line of /proc/<pid>/mountinfo (the fields this package needs)."""

    mountpoint: str
    fstype: str
    source: str
    super_options: tuple[str, ...]


@dataclass(frozen=True)
class CgroupInfo:
    """What the cgroup filesystem lets the daemon limit (dockerd's `sysinfo.SysInfo` subset)."""

    mode: CgroupMode
    memory_limit: bool = False
    swap_limit: bool = False
    memory_reservation: bool = False
    oom_kill_disable: bool = False
    memory_swappiness: bool = False
    cpu_shares: bool = False
    cpu_cfs: bool = False
    cpu_realtime: bool = False
    cpuset: bool = False
    pids_limit: bool = False
    blkio_weight: bool = False
    blkio_weight_device: bool = False
    blkio_read_bps_device: bool = False
    blkio_write_bps_device: bool = False
    blkio_read_iops_device: bool = False
    blkio_write_iops_device: bool = False
    devices: bool = False
    # v1: subsystem -> mountpoint; v2: enabled controllers of the root group.
    mountpoints: dict[str, str] = field(default_factory=dict)
    controllers: frozenset[str] = frozenset()
    # dockerd logs these at startup ("Your kernel does not support swap memory limit").
    warnings: tuple[str, ...] = ()

    @property
    def version(self) -> Literal["1", "2"]:
        """ "2" only for a unified host, as dockerd's CgroupVersion (hybrid counts as v1)."""
        return "2" if self.mode == "unified" else "1"


def _unescape(path: str) -> str:
    r"""Undo mountinfo's octal escapes (`\040` for a space, ...)."""
    if "\\" not in path:
        return path
    out: list[str] = []
    i = 0
    while i < len(path):
        chunk = path[i : i + 4]
        if len(chunk) == 4 and chunk[0] == "\\" and chunk[1:].isdigit():
            out.append(chr(int(chunk[1:], 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse mountinfo text; malformed lines are skipped."""
    mounts: list[Mount] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        tail = right.split()
        if len(fields) < 6 or len(tail) < 2:
            continue
        options = tuple(tail[2].split(",")) if len(tail) > 2 else ()
        mounts.append(Mount(_unescape(fields[4]), tail[0], _unescape(tail[1]), options))
    return mounts


def parse_proc_cgroup(text: str) -> tuple[dict[str, str], str | None]:
    """Parse /proc/<pid>/cgroup: (v1 subsystem -> path, the v2 `0::` path or None).

    Subsystem names keep their `name=` prefix (`name=systemd`), as containerd's parser does.
    """
    subsystems: dict[str, str] = {}
    unified: str | None = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) < 3:
            continue
        hier, controllers, path = parts
        if hier == "0" and controllers == "":
            unified = path
            continue
        for sub in controllers.split(","):
            if sub:
                subsystems[sub] = path
    return subsystems, unified


def cgroup_mode(mounts: list[Mount], root: str = "/") -> CgroupMode:
    """containerd's `cgroups.Mode()`, decided from mountinfo instead of statfs magic numbers."""

    def top(mountpoint: str) -> Mount | None:
        found = None
        for m in mounts:
            if m.mountpoint == mountpoint:
                found = m  # later lines are mounted on top of earlier ones
        return found

    if not os.path.isdir(_host(root, CGROUP_ROOT)):
        return "unavailable"
    base = top(CGROUP_ROOT)
    if base is not None and base.fstype == "cgroup2":
        return "unified"
    unified = top(CGROUP_ROOT + "/unified")
    if unified is not None and unified.fstype == "cgroup2":
        return "hybrid"
    return "legacy"


def _host(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/"))


def _exists(root: str, *parts: str) -> bool:
    return os.path.exists(_host(root, os.path.join(*parts)))


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def v1_mountpoints(mounts: list[Mount], subsystems: dict[str, str]) -> dict[str, str]:
    """dockerd's findCgroupV1Mountpoints: first cgroup (v1) mount carrying each subsystem."""
    seen: dict[str, bool] = dict.fromkeys(subsystems, False)
    result: dict[str, str] = {}
    for m in mounts:
        if m.fstype != "cgroup":
            continue
        for opt in m.super_options:
            if opt in seen and not seen[opt]:
                seen[opt] = True
                result[opt.removeprefix("name=")] = m.mountpoint
        if len(result) >= len(seen):
            break
    return result


def _probe_v1(
    root: str, mode: CgroupMode, mounts: list[Mount], subsystems: dict[str, str]
) -> CgroupInfo:
    mps = v1_mountpoints(mounts, subsystems)
    warnings: list[str] = []
    caps: dict[str, Any] = {}

    def has(subsystem: str, name: str) -> bool:
        return _exists(root, mps[subsystem], name)

    if "memory" in mps:
        caps["memory_limit"] = True
        caps["swap_limit"] = has("memory", "memory.memsw.limit_in_bytes")
        caps["memory_reservation"] = has("memory", "memory.soft_limit_in_bytes")
        caps["oom_kill_disable"] = has("memory", "memory.oom_control")
        caps["memory_swappiness"] = has("memory", "memory.swappiness")
        for key, what in (
            ("swap_limit", "swap memory limit"),
            ("memory_reservation", "memory reservation"),
            ("oom_kill_disable", "oom control"),
            ("memory_swappiness", "memory swappiness"),
        ):
            if not caps[key]:
                warnings.append(f"Your kernel does not support {what}")
    else:
        warnings.append("Your kernel does not support cgroup memory limit")

    if "cpu" in mps:
        caps["cpu_shares"] = has("cpu", "cpu.shares")
        caps["cpu_cfs"] = has("cpu", "cpu.cfs_quota_us")
        caps["cpu_realtime"] = has("cpu", "cpu.rt_period_us")
        for key, what in (
            ("cpu_shares", "CPU shares"),
            ("cpu_cfs", "CPU CFS scheduler"),
            ("cpu_realtime", "CPU realtime scheduler"),
        ):
            if not caps[key]:
                warnings.append(f"Your kernel does not support {what}")
    else:
        warnings.append("Unable to find cpu cgroup in mounts")

    if "blkio" in mps:
        for key, fname in (
            ("blkio_weight", "blkio.weight"),
            ("blkio_weight_device", "blkio.weight_device"),
            ("blkio_read_bps_device", "blkio.throttle.read_bps_device"),
            ("blkio_write_bps_device", "blkio.throttle.write_bps_device"),
            ("blkio_read_iops_device", "blkio.throttle.read_iops_device"),
            ("blkio_write_iops_device", "blkio.throttle.write_iops_device"),
        ):
            caps[key] = has("blkio", fname)
            if not caps[key]:
                what = fname.removeprefix("blkio.")
                warnings.append(f"Your kernel does not support cgroup blkio {what}")
    else:
        warnings.append("Unable to find blkio cgroup in mounts")

    caps["cpuset"] = "cpuset" in mps
    if not caps["cpuset"]:
        warnings.append("Unable to find cpuset cgroup in mounts")
    caps["pids_limit"] = "pids" in mps
    if not caps["pids_limit"]:
        warnings.append("Unable to find pids cgroup in mounts")
    caps["devices"] = "devices" in mps

    return CgroupInfo(mode=mode, mountpoints=mps, warnings=tuple(warnings), **caps)


def _probe_v2(root: str, unified_path: str | None) -> CgroupInfo:
    text = _read(_host(root, CGROUP_ROOT + "/cgroup.controllers"))
    if text is None:
        return CgroupInfo(mode="unified", warnings=("Unable to read cgroup.controllers",))
    controllers = frozenset(text.split())
    warnings: list[str] = []
    caps: dict[str, Any] = {}
    if "memory" in controllers:
        caps["memory_limit"] = True
        caps["memory_reservation"] = True
        own = (unified_path or "").strip()
        caps["swap_limit"] = bool(own) and _exists(
            root, CGROUP_ROOT, own.lstrip("/"), "memory.swap.max"
        )
    else:
        warnings.append("Unable to find memory controller")
    if "cpu" in controllers:
        caps["cpu_shares"] = True
        caps["cpu_cfs"] = True
    else:
        warnings.append("Unable to find cpu controller")
    if "io" in controllers:
        for key in (
            "blkio_weight",
            "blkio_weight_device",
            "blkio_read_bps_device",
            "blkio_write_bps_device",
            "blkio_read_iops_device",
            "blkio_write_iops_device",
        ):
            caps[key] = True
    else:
        warnings.append("Unable to find io controller")
    caps["cpuset"] = "cpuset" in controllers
    if not caps["cpuset"]:
        warnings.append("Unable to find cpuset controller")
    caps["pids_limit"] = "pids" in controllers
    if not caps["pids_limit"]:
        warnings.append("Unable to find pids controller")
    # dockerd: device rules work unless the daemon runs inside a user namespace.
    caps["devices"] = not _in_user_namespace(root)
    return CgroupInfo(mode="unified", controllers=controllers, warnings=tuple(warnings), **caps)


def _in_user_namespace(root: str) -> bool:
    """moby/sys/userns: a uid_map other than the identity `0 0 4294967295` means a userns."""
    text = _read(_host(root, "/proc/self/uid_map"))
    if text is None:
        return False
    fields = text.split()
    return fields != ["0", "0", "4294967295"]


def probe(root: str = "/") -> CgroupInfo:
    """Detect the cgroup mode and capabilities of the host seen under `root`."""
    mounts = parse_mountinfo(_read(_host(root, "/proc/self/mountinfo")) or "")
    subsystems, unified_path = parse_proc_cgroup(_read(_host(root, "/proc/self/cgroup")) or "")
    mode = cgroup_mode(mounts, root)
    if mode == "unified":
        return _probe_v2(root, unified_path)
    return _probe_v1(root, mode, mounts, subsystems)


def is_running_systemd(root: str = "/") -> bool:
    """go-systemd's IsRunningSystemd: /run/systemd/system is a directory."""
    path = _host(root, "/run/systemd/system")
    return os.path.isdir(path) and not os.path.islink(path)
