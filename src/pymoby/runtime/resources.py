"""HostConfig resources: dockerd's create-time checks and their OCI `linux.resources` form.

Rule: `validate_resources` is verifyPlatformContainerResources (errors InvalidParameter with
dockerd's text, unsupported limits dropped with dockerd's warning); the `oci_*` functions are
WithResources/WithDevices' conversions (getMemoryResources, getCPUResources, getPidsLimit,
blkio devices, device cgroup rules), taking device numbers as input instead of stat'ing paths.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from pymoby import errdefs
from pymoby.api.types.containers import Resources, ThrottleDevice
from pymoby.runtime.defaults import SpecError

LINUX_MIN_MEMORY = 6 * 1024 * 1024
_MAX_CPUS = 8192
_DEVICE_RULE = re.compile(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$")


def _bad(msg: str) -> errdefs.InvalidParameter:
    return errdefs.InvalidParameter(msg)


class CgroupSupport(Protocol):
    """What the cgroup hierarchy can limit (kernel.cgroups.CgroupInfo satisfies this)."""

    memory_limit: bool
    swap_limit: bool
    memory_reservation: bool
    oom_kill_disable: bool
    memory_swappiness: bool
    cpu_shares: bool
    cpu_cfs: bool
    cpu_realtime: bool
    cpuset: bool
    pids_limit: bool
    blkio_weight: bool
    blkio_weight_device: bool
    blkio_read_bps_device: bool
    blkio_write_bps_device: bool
    blkio_read_iops_device: bool
    blkio_write_iops_device: bool


def parse_uint_list(value: str, maximum: int) -> set[int]:
    """sysinfo parseUintList: "0-2,4"; ValueError with moby's text."""
    if value == "":
        return set()
    invalid = f"invalid format: {value}"
    out: set[int] = set()
    for part in value.split(","):
        lo_s, dash, hi_s = part.partition("-")
        if not is_go_int(lo_s) or (dash and not is_go_int(hi_s)):
            raise ValueError(invalid)
        lo = int(lo_s)
        hi = int(hi_s) if dash else lo
        if hi < lo:
            raise ValueError(invalid)
        if maximum and hi > maximum:
            raise ValueError(f"value of out range, maximum is {maximum}")
        out.update(range(lo, hi + 1))
    return out


def is_go_int(text: str) -> bool:
    return re.fullmatch(r"[+-]?[0-9]+", text) is not None


def _cpuset_available(requested: str, available: str) -> bool:
    avail = parse_uint_list(available, 0) if available else set()
    maximum = max([_MAX_CPUS, *avail])
    return parse_uint_list(requested, maximum) <= avail


def validate_resources(
    hc: Resources,
    cg: CgroupSupport,
    ncpu: int,
    cpus: str = "",
    mems: str = "",
    *,
    update: bool = False,
) -> list[str]:
    """verifyPlatformContainerResources: raise InvalidParameter for what dockerd rejects, drop
    (with dockerd's warning) what the cgroups cannot apply, return the warnings. `cpus`/`mems`
    are the cpuset the daemon may use; `update` is True for POST /containers/{id}/update."""
    w: list[str] = []
    if hc.memory_swappiness == -1:
        hc.memory_swappiness = None
    if hc.memory != 0 and hc.memory < LINUX_MIN_MEMORY:
        raise _bad("Minimum memory limit allowed is 6MB")
    if hc.memory > 0 and not cg.memory_limit:
        w.append(
            "Your kernel does not support memory limit capabilities or the cgroup is not "
            "mounted. Limitation discarded."
        )
        hc.memory, hc.memory_swap = 0, -1
    if hc.memory > 0 and hc.memory_swap != -1 and not cg.swap_limit:
        w.append(
            "Your kernel does not support swap limit capabilities or the cgroup is not mounted. "
            "Memory limited without swap."
        )
        hc.memory_swap = -1
    if hc.memory > 0 and hc.memory_swap > 0 and hc.memory_swap < hc.memory:
        raise _bad("Minimum memoryswap limit should be larger than memory limit, see usage")
    if hc.memory == 0 and hc.memory_swap > 0 and not update:
        raise _bad("You should always set the Memory limit when using Memoryswap limit, see usage")
    if hc.memory_swappiness is not None and not cg.memory_swappiness:
        w.append(
            "Your kernel does not support memory swappiness capabilities or the cgroup is not "
            "mounted. Memory swappiness discarded."
        )
        hc.memory_swappiness = None
    if hc.memory_swappiness is not None and not 0 <= hc.memory_swappiness <= 100:
        raise _bad(f"Invalid value: {hc.memory_swappiness}, valid memory swappiness range is 0-100")
    if hc.memory_reservation > 0 and not cg.memory_reservation:
        w.append(
            "Your kernel does not support memory soft limit capabilities or the cgroup is not "
            "mounted. Limitation discarded."
        )
        hc.memory_reservation = 0
    if 0 < hc.memory_reservation < LINUX_MIN_MEMORY:
        raise _bad("Minimum memory reservation allowed is 6MB")
    if hc.memory > 0 and hc.memory_reservation > 0 and hc.memory < hc.memory_reservation:
        raise _bad("Minimum memory limit can not be less than memory reservation limit, see usage")
    if hc.oom_kill_disable is not None and not cg.oom_kill_disable:
        if hc.oom_kill_disable:
            w.append("Your kernel does not support OomKillDisable. OomKillDisable discarded.")
        hc.oom_kill_disable = None
    if hc.oom_kill_disable and hc.memory == 0:
        w.append(
            "OOM killer is disabled for the container, but no memory limit is set, this can "
            "result in the system running out of resources."
        )
    if hc.pids_limit is not None and not cg.pids_limit:
        if hc.pids_limit > 0:
            w.append(
                "Your kernel does not support PIDs limit capabilities or the cgroup is not "
                "mounted. PIDs limit discarded."
            )
        hc.pids_limit = None
    _validate_cpu(hc, cg, w, nc=ncpu, cpus=cpus, mems=mems)
    _validate_blkio(hc, cg, w)
    return w


def _validate_cpu(
    hc: Resources, cg: CgroupSupport, w: list[str], *, nc: int, cpus: str, mems: str
) -> None:
    if hc.nano_cpus > 0 and hc.cpu_period > 0:
        raise _bad("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if hc.nano_cpus > 0 and hc.cpu_quota > 0:
        raise _bad("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    if hc.nano_cpus > 0 and not cg.cpu_cfs:
        raise _bad(
            "NanoCPUs can not be set, as your kernel does not support CPU CFS scheduler or the "
            "cgroup is not mounted"
        )
    if hc.nano_cpus != 0 and (hc.nano_cpus < 0 or hc.nano_cpus > nc * 1_000_000_000):
        raise _bad(f"range of CPUs is from 0.01 to {nc}.00, as there are only {nc} CPUs available")
    if hc.cpu_shares > 0 and not cg.cpu_shares:
        w.append(
            "Your kernel does not support CPU shares or the cgroup is not mounted. "
            "Shares discarded."
        )
        hc.cpu_shares = 0
    if (hc.cpu_period or hc.cpu_quota) and not cg.cpu_cfs:
        w.append("Your kernel does not support CPU CFS scheduler. CPU period/quota discarded.")
        hc.cpu_period = hc.cpu_quota = 0
    if hc.cpu_period != 0 and not 1000 <= hc.cpu_period <= 1_000_000:
        raise _bad(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
        )
    if 0 < hc.cpu_quota < 1000:
        raise _bad("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if hc.cpu_percent > 0:
        w.append("linux does not support CPU percent. Percent discarded.")
        hc.cpu_percent = 0
    if (hc.cpuset_cpus or hc.cpuset_mems) and not cg.cpuset:
        w.append(
            "Your kernel does not support cpuset or the cgroup is not mounted. Cpuset discarded."
        )
        hc.cpuset_cpus = hc.cpuset_mems = ""
    for value, what, available, label in (
        (hc.cpuset_cpus, "cpus", cpus, "CPUs"),
        # moby checks mems against the CPU set too (sysinfo parses MemSets from Cpus).
        (hc.cpuset_mems, "mems", cpus, "memory nodes"),
    ):
        try:
            ok = _cpuset_available(value, available)
        except ValueError as exc:
            raise _bad(f"Invalid value {value} for cpuset {what}: {exc}") from None
        if not ok:
            shown = cpus if what == "cpus" else mems
            raise _bad(
                f"Requested {label} are not available - requested {value}, available: {shown}"
            )


def _validate_blkio(hc: Resources, cg: CgroupSupport, w: list[str]) -> None:
    if hc.blkio_weight > 0 and not cg.blkio_weight:
        w.append(
            "Your kernel does not support Block I/O weight or the cgroup is not mounted. "
            "Weight discarded."
        )
        hc.blkio_weight = 0
    if hc.blkio_weight > 0 and not 10 <= hc.blkio_weight <= 1000:
        raise _bad("Range of blkio weight is from 10 to 1000")
    if hc.io_maximum_bandwidth or hc.io_maximum_iops:
        raise _bad(
            "Invalid QoS settings: linux does not support Maximum IO Bandwidth or Maximum IO IOps"
        )
    if hc.blkio_weight_device and not cg.blkio_weight_device:
        w.append(
            "Your kernel does not support Block I/O weight_device or the cgroup is not mounted. "
            "Weight-device discarded."
        )
        hc.blkio_weight_device = []
    for attr, supported, what, kind in (
        ("blkio_device_read_bps", cg.blkio_read_bps_device, "BPS Block I/O read", "BPS read"),
        ("blkio_device_write_bps", cg.blkio_write_bps_device, "BPS Block I/O write", "BPS write"),
        ("blkio_device_read_iops", cg.blkio_read_iops_device, "IOPS Block read", "IOPS read"),
        ("blkio_device_write_iops", cg.blkio_write_iops_device, "IOPS Block write", "IOPS write"),
    ):
        if getattr(hc, attr) and not supported:
            w.append(
                f"Your kernel does not support {what} limit or the cgroup is not mounted. "
                f"Block I/O {kind} limit discarded."
            )
            setattr(hc, attr, [])


# --------------------------------------------------------------------------- OCI form


def oci_memory(r: Resources) -> dict[str, Any] | None:
    """getMemoryResources: only the limits that are set; None when none is."""
    mem: dict[str, Any] = {}
    if r.memory > 0:
        mem["limit"] = r.memory
    if r.memory_reservation > 0:
        mem["reservation"] = r.memory_reservation
    if r.memory_swap > 0:
        mem["swap"] = r.memory_swap
    if r.memory_swappiness is not None:
        mem["swappiness"] = r.memory_swappiness & 0xFFFFFFFFFFFFFFFF  # uint64(*v)
    if r.oom_kill_disable is not None:
        mem["disableOOMKiller"] = r.oom_kill_disable
    return mem or None


def oci_cpu(r: Resources) -> dict[str, Any] | None:
    """getCPUResources: shares, quota/period (NanoCpus -> period 100000 us), realtime, cpuset."""
    cpu: dict[str, Any] = {}
    if r.cpu_shares != 0:
        if r.cpu_shares < 0:
            raise SpecError(
                f"invalid CPU shares ({r.cpu_shares}): value must be a positive integer"
            )
        cpu["shares"] = r.cpu_shares
    if r.nano_cpus > 0:
        cpu["quota"] = r.nano_cpus * 100_000 // 1_000_000_000
        cpu["period"] = 100_000
    if r.cpu_quota != 0:
        cpu["quota"] = r.cpu_quota
    if r.cpu_period != 0:
        cpu["period"] = r.cpu_period
    if r.cpu_realtime_runtime != 0:
        cpu["realtimeRuntime"] = r.cpu_realtime_runtime
    if r.cpu_realtime_period != 0:
        cpu["realtimePeriod"] = r.cpu_realtime_period
    if r.cpuset_cpus:
        cpu["cpus"] = r.cpuset_cpus
    if r.cpuset_mems:
        cpu["mems"] = r.cpuset_mems
    order = ("shares", "quota", "period", "realtimeRuntime", "realtimePeriod", "cpus", "mems")
    return {k: cpu[k] for k in order if k in cpu} or None


def oci_pids(r: Resources) -> dict[str, Any] | None:
    """getPidsLimit: unset stays unset; 0 or negative means unlimited (-1)."""
    if r.pids_limit is None:
        return None
    return {"limit": r.pids_limit if r.pids_limit > 0 else -1}


def _device_number(path: str, devices: Mapping[str, tuple[int, int]]) -> tuple[int, int]:
    if path not in devices:
        raise SpecError(f"stat {path}: no such file or directory")
    major, minor = devices[path]
    return major, minor


def oci_block_io(r: Resources, devices: Mapping[str, tuple[int, int]]) -> dict[str, Any]:
    """WithResources' BlockIO (always present, possibly empty); `devices` maps each host path
    named in the blkio options to its (major, minor)."""
    bio: dict[str, Any] = {}
    if r.blkio_weight != 0:
        bio["weight"] = r.blkio_weight
    weights = []
    for wd in r.blkio_weight_device or ():
        major, minor = _device_number(wd.path, devices)
        weights.append({"major": major, "minor": minor, "weight": wd.weight})
    if weights:
        bio["weightDevice"] = weights

    def throttle(devs: Sequence[ThrottleDevice] | None) -> list[dict[str, Any]]:
        out = []
        for d in devs or ():
            major, minor = _device_number(d.path, devices)
            out.append({"major": major, "minor": minor, "rate": d.rate})
        return out

    for key, devs in (
        ("throttleReadBpsDevice", r.blkio_device_read_bps),
        ("throttleWriteBpsDevice", r.blkio_device_write_bps),
        ("throttleReadIOPSDevice", r.blkio_device_read_iops),
        ("throttleWriteIOPSDevice", r.blkio_device_write_iops),
    ):
        rules = throttle(devs)
        if rules:
            bio[key] = rules
    return bio


def device_cgroup_rules(rules: Sequence[str] | None) -> list[dict[str, Any]]:
    """AppendDevicePermissionsFromCgroupRules: "c 1:3 rwm" style rules, `*` as -1."""
    out = []
    for rule in rules or ():
        m = _DEVICE_RULE.match(rule)
        if not m:
            raise SpecError(f"invalid device cgroup rule format: '{rule}'")
        kind, major, minor, access = m.groups()
        out.append(
            {
                "allow": True,
                "type": kind,
                "major": -1 if major == "*" else int(major),
                "minor": -1 if minor == "*" else int(minor),
                "access": access,
            }
        )
    return out
