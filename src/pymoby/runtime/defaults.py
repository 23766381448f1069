"""dockerd's default OCI spec pieces and its capability rules, as data plus pure functions.

Rule: every table here is a fact read from moby (daemon/pkg/oci/defaults.go, oci/caps,
containerd's pkg/cap) and is never edited to taste; functions take the host facts they need as
arguments (the daemon's effective capabilities) and never read the host themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymoby import errdefs
from pymoby.log import go_quote


class SpecError(errdefs.System):
    """build_spec could not produce a spec. dockerd reports every error of its createSpec as a
    System error (500), whatever its cause, with the cause's message."""


DEFAULT_PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OCI_VERSION = "1.0.2"
IN_CONTAINER_INIT_PATH = "/sbin/docker-init"
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
DEFAULT_CGROUP_PARENT = "/docker"

# oci/caps DefaultCapabilities, in moby's order.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

# containerd pkg/cap capsLatest (kernel 5.9): index = capability number.
KNOWN_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip

# DefaultLinuxSpec mounts, before the daemon adjusts them (shm size, ro, privileged).
DEFAULT_MOUNTS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("/proc", "proc", "proc", ("nosuid", "noexec", "nodev")),
    ("/dev", "tmpfs", "tmpfs", ("nosuid", "strictatime", "mode=755", "size=65536k")),
    (
        "/dev/pts",
        "devpts",
        "devpts",
        ("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"),
    ),
    ("/sys", "sysfs", "sysfs", ("nosuid", "noexec", "nodev", "ro")),
    ("/sys/fs/cgroup", "cgroup", "cgroup", ("ro", "nosuid", "noexec", "nodev")),
    ("/dev/mqueue", "mqueue", "mqueue", ("nosuid", "noexec", "nodev")),
    ("/dev/shm", "tmpfs", "shm", ("nosuid", "noexec", "nodev", "mode=1777")),
)

DEFAULT_MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
)

DEFAULT_READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

# DefaultLinuxSpec namespaces, in order ("time" is dropped unless the host supports it).
DEFAULT_NAMESPACES: tuple[str, ...] = ("mount", "network", "time", "uts", "pid", "ipc")


def default_device_rules() -> list[dict[str, Any]]:
    """The device cgroup rules of DefaultLinuxSpec: deny all, then allow null, zero, full,
    random, urandom, tty, console, ptmx ... and deny /dev/net/tun (10:229)."""
    rules: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
    for allow, major, minor in (
        (True, 1, 5),
        (True, 1, 3),
        (True, 1, 9),
        (True, 1, 8),
        (True, 5, 0),
        (True, 5, 1),
        (False, 10, 229),
    ):
        rules.append({"allow": allow, "type": "c", "major": major, "minor": minor, "access": "rwm"})
    return rules


def caps_from_proc_status(text: str) -> list[str]:
    """containerd's cap.Current: the effective capabilities in a /proc/<pid>/status text,
    by number (unknown numbers are left out). Raises ValueError for a malformed CapEff line."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "CapEff":
            bits = int(value.strip(), 16)
            return [name for i, name in enumerate(KNOWN_CAPABILITIES) if bits >> i & 1]
    return []


def normalize_capabilities(
    caps: Sequence[str] | None, host_caps: Sequence[str] | None
) -> list[str]:
    """oci/caps NormalizeLegacyCapabilities: upper-case, add `CAP_`, keep `ALL`, and reject
    unknown capabilities and ones the daemon itself does not hold (`host_caps`; None when they
    could not be read, in which case every known capability is accepted)."""
    out: list[str] = []
    for raw in caps or ():
        cap = raw.upper()
        if cap == "ALL":
            out.append(cap)
            continue
        if not cap.startswith("CAP_"):
            cap = "CAP_" + cap
        if cap not in KNOWN_CAPABILITIES:
            raise errdefs.InvalidParameter(f"unknown capability: {go_quote(cap)}")
        if host_caps and cap not in host_caps:
            raise errdefs.InvalidParameter(
                "capability not supported by your kernel or not available in the current "
                f"environment: {go_quote(cap)}"
            )
        out.append(cap)
    return out


def all_capabilities(host_caps: Sequence[str] | None) -> list[str]:
    """oci/caps GetAllCapabilities: what the daemon holds, or every known one if unknown."""
    return list(host_caps) if host_caps is not None else list(KNOWN_CAPABILITIES)


def tweak_capabilities(
    adds: Sequence[str] | None,
    drops: Sequence[str] | None,
    privileged: bool,
    host_caps: Sequence[str] | None,
) -> list[str]:
    """oci/caps TweakCapabilities on the default set: privileged gets everything; `ALL` in
    CapAdd gives everything but CapDrop; `ALL` in CapDrop keeps only CapAdd; otherwise the
    defaults minus CapDrop plus CapAdd (in that order, duplicates kept as dockerd keeps them)."""
    if privileged:
        return all_capabilities(host_caps)
    if not adds and not drops:
        return list(DEFAULT_CAPABILITIES)
    cap_drop = normalize_capabilities(drops, host_caps)
    cap_add = normalize_capabilities(adds, host_caps)
    if "ALL" in cap_add:
        return [c for c in all_capabilities(host_caps) if c not in cap_drop]
    if "ALL" in cap_drop:
        return cap_add
    return [c for c in DEFAULT_CAPABILITIES if c not in cap_drop] + cap_add
