"""Create-time checks and defaults of a container's Config and HostConfig, as dockerd does them.

Rule: `validate_host_config` runs dockerd's create-time validation in dockerd's order
(runconfig.validateCreateRequest, verifyContainerSettings with verifyPlatformContainerResources
from resources.py, parseSecurityOpt, the Binds/Mounts parsing of registerMountPoints) and raises
InvalidParameter with dockerd's exact text; like dockerd it also *adjusts* the HostConfig in
place (drops limits the kernel cannot apply, with dockerd's warning) and returns the warnings.
`adapt_host_config` applies adaptContainerSettings' defaults. Host facts come in `HostLimits`;
nothing here reads the host.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pymoby import errdefs
from pymoby.api.strconv import parse_bool
from pymoby.api.types.containers import Config, HostConfig
from pymoby.log import go_quote
from pymoby.runtime import mounts
from pymoby.runtime.defaults import DEFAULT_SHM_SIZE, normalize_capabilities
from pymoby.runtime.resources import CgroupSupport, is_go_int, validate_resources

MAX_HOSTNAME_LEN = 64
MIN_HEALTH_DURATION_NS = 1_000_000

_BASE_SIGNALS = (
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
    "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
    "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU",
    "XFSZ", "RTMIN", "RTMAX",
)  # fmt: skip
_SIGNALS = frozenset(
    [
        *_BASE_SIGNALS,
        *(f"RTMIN+{i}" for i in range(1, 16)),
        *(f"RTMAX-{i}" for i in range(1, 15)),
    ]
)


@dataclass(frozen=True)
class HostLimits:
    """Host and daemon facts the create-time checks depend on."""

    cgroups: CgroupSupport
    ncpu: int
    cpus: str = ""  # the cpuset.cpus the daemon may use, e.g. "0-7"
    mems: str = ""  # the cpuset.mems, e.g. "0"
    cgroup_namespaces: bool = True
    ipv4_forwarding_disabled: bool = False
    host_capabilities: Sequence[str] | None = None  # the daemon's effective caps
    runtimes: Sequence[str] = ("runc",)
    default_runtime: str = "runc"
    systemd_cgroup: bool = False
    daemon_root: str = ""


@dataclass(frozen=True)
class DaemonDefaults:
    """The daemon settings adaptContainerSettings falls back to."""

    shm_size: int = DEFAULT_SHM_SIZE
    ipc_mode: str = "private"
    cgroupns_mode: str = "host"  # dockerd: "private" on a cgroup v2 host, "host" on v1


@dataclass
class SecurityOptions:
    """parseSecurityOpt's result."""

    no_new_privileges: bool = False
    writable_cgroups: bool | None = None
    apparmor_profile: str = ""
    seccomp_profile: str = ""
    label_opts: tuple[str, ...] = ()


def _bad(msg: str) -> errdefs.InvalidParameter:
    return errdefs.InvalidParameter(msg)


def container_ref(mode: str) -> str | None:
    """containerID: the part after `container:`, or None when the mode is not one."""
    kind, sep, ref = mode.partition(":")
    return ref if sep and kind == "container" else None


def parse_security_opts(opts: Sequence[str] | None, default_nnp: bool = False) -> SecurityOptions:
    """parseSecurityOpt: no-new-privileges, writable-cgroups, label, apparmor, seccomp."""
    out = SecurityOptions(no_new_privileges=default_nnp)
    labels: list[str] = []
    for opt in opts or ():
        if opt == "no-new-privileges":
            out.no_new_privileges = True
            continue
        if opt == "writable-cgroups":
            out.writable_cgroups = True
            continue
        if opt == "disable":
            labels.append("disable")
            continue
        sep = "=" if "=" in opt else ":" if ":" in opt else ""
        if not sep:
            raise _bad(f"invalid --security-opt 1: {go_quote(opt)}")
        key, _, value = opt.partition(sep)
        if key == "label":
            labels.append(value)
        elif key == "apparmor":
            out.apparmor_profile = value
        elif key == "seccomp":
            out.seccomp_profile = value
        elif key in ("no-new-privileges", "writable-cgroups"):
            flag = parse_bool(value)
            if flag is None:
                raise _bad(f"invalid --security-opt 2: {go_quote(opt)}")
            if key == "no-new-privileges":
                out.no_new_privileges = flag
            else:
                out.writable_cgroups = flag
        else:
            raise _bad(f"invalid --security-opt 2: {go_quote(opt)}")
    out.label_opts = tuple(labels)
    return out


def adapt_host_config(host_config: HostConfig, defaults: DaemonDefaults) -> None:
    """adaptContainerSettings: MemorySwap = 2 x Memory when unset, default ShmSize, IpcMode and
    CgroupnsMode, OomKillDisable false. (The SELinux labels it adds are off in pymoby.)"""
    if host_config.memory > 0 and host_config.memory_swap == 0:
        host_config.memory_swap = host_config.memory * 2
    if host_config.shm_size == 0:
        host_config.shm_size = defaults.shm_size
    if host_config.ipc_mode == "":
        host_config.ipc_mode = defaults.ipc_mode
    if host_config.cgroupns_mode == "":
        host_config.cgroupns_mode = defaults.cgroupns_mode
    if host_config.oom_kill_disable is None:
        host_config.oom_kill_disable = False


def validate_host_config(
    config: Config | None,
    host_config: HostConfig | None,
    limits: HostLimits,
    *,
    source_exists: Callable[[str], bool] | None = None,
    update: bool = False,
) -> list[str]:
    """Everything dockerd rejects when a container is created; returns the warnings.

    Adjusts `host_config` in place as dockerd does (default restart policy "no", the default
    runtime, limits the cgroups cannot apply). `source_exists` answers whether a bind source of
    `Mounts` exists (None skips that check)."""
    warnings: list[str] = []
    if config is not None and host_config is not None:
        _validate_create_request(config, host_config, limits)
    if host_config is not None and host_config.restart_policy.name == "":
        host_config.restart_policy.name = "no"
    if config is not None:
        _validate_config(config)
    if host_config is None:
        if config is not None and len(config.hostname) > MAX_HOSTNAME_LEN:
            raise _bad(_hostname_error(config.hostname))
        return warnings
    _validate_common(host_config, limits, source_exists)
    if config is not None and len(config.hostname) > MAX_HOSTNAME_LEN:
        raise _bad(_hostname_error(config.hostname))
    warnings.extend(
        validate_resources(
            host_config, limits.cgroups, limits.ncpu, limits.cpus, limits.mems, update=update
        )
    )
    _validate_platform(host_config, limits, warnings)
    parse_security_opts(host_config.security_opt)
    _validate_binds(host_config, limits.daemon_root)
    return warnings


def _hostname_error(hostname: str) -> str:
    return f"hostname {go_quote(hostname)} is too long (maximum {MAX_HOSTNAME_LEN} bytes)"


def _validate_create_request(config: Config, hc: HostConfig, limits: HostLimits) -> None:
    """runconfig.validateCreateRequest (run by the router before anything else)."""
    if hc.network_mode == "container" or container_ref(hc.network_mode) is not None:
        if not container_ref(hc.network_mode):
            raise _bad("invalid network mode: invalid container format container:<name|id>")
        if config.hostname:
            raise _bad("conflicting options: hostname and the network mode")
        if hc.links:
            raise _bad(
                "conflicting options: container type network can't be used with links. "
                "This would result in undefined behavior"
            )
        if hc.dns:
            raise _bad("conflicting options: dns and the network mode")
        if hc.extra_hosts:
            raise _bad("conflicting options: custom host-to-IP mapping and the network mode")
        if hc.port_bindings or hc.publish_all_ports:
            raise _bad("conflicting options: port publishing and the container type network mode")
        if config.exposed_ports:
            raise _bad("conflicting options: port exposing and the container type network mode")
    if hc.uts_mode == "host" and config.hostname:
        raise _bad("conflicting options: hostname and the UTS mode")
    if hc.network_mode == "host" and hc.links:
        raise _bad(
            "conflicting options: host type networking can't be used with links. "
            "This would result in undefined behavior"
        )
    if hc.isolation.lower() not in ("", "default"):
        raise _bad(f"invalid isolation ({hc.isolation}): linux only supports 'default'")
    if hc.io_maximum_bandwidth:
        raise _bad("invalid option: QoS maximum bandwidth configuration is not supported on linux")
    if hc.io_maximum_iops:
        raise _bad("invalid option: QoS maximum IOPs configuration is not supported on linux")
    rt_period, rt_runtime = hc.cpu_realtime_period, hc.cpu_realtime_runtime
    if (rt_period or rt_runtime) and not limits.cgroups.cpu_realtime:
        raise _bad("kernel does not support CPU real-time scheduler")
    if rt_period and rt_runtime and rt_runtime > rt_period:
        raise _bad("cpu real-time runtime cannot be higher than cpu real-time period")
    if limits.cgroups.cpu_shares and hc.cpu_shares < 0:
        raise _bad(f"invalid CPU shares ({hc.cpu_shares}): value must be a positive integer")


def _validate_config(config: Config) -> None:
    """validateContainerConfig (also cleans WorkingDir, as dockerd does)."""
    if config.working_dir:
        if not config.working_dir.startswith("/"):
            raise _bad(
                f"the working directory '{config.working_dir}' is invalid, "
                "it needs to be an absolute path"
            )
        config.working_dir = mounts.go_clean(config.working_dir)
    if config.stop_signal and not _valid_signal(config.stop_signal):
        raise _bad(f"invalid signal: {config.stop_signal}")
    for env in config.env or ():
        if env.partition("=")[0] == "":
            raise _bad(f"invalid environment variable: {env}")
    hc = config.healthcheck
    if hc is None:
        return
    for name, value in (
        ("Interval", hc.interval),
        ("Timeout", hc.timeout),
    ):
        if value != 0 and value < MIN_HEALTH_DURATION_NS:
            raise _bad(f"{name} in Healthcheck cannot be less than 1ms")
    if hc.retries < 0:
        raise _bad("Retries in Healthcheck cannot be negative")
    for name, value in (("StartPeriod", hc.start_period), ("StartInterval", hc.start_interval)):
        if value != 0 and value < MIN_HEALTH_DURATION_NS:
            raise _bad(f"{name} in Healthcheck cannot be less than 1ms")


def _valid_signal(raw: str) -> bool:
    """moby/sys/signal ParseSignal: a non-zero number or a known name (SIG prefix optional)."""
    if is_go_int(raw):
        return int(raw) != 0
    name = raw.upper()
    return (name[3:] if name.startswith("SIG") else name) in _SIGNALS


def _validate_common(
    hc: HostConfig, limits: HostLimits, source_exists: Callable[[str], bool] | None
) -> None:
    """validateHostConfig."""
    if hc.auto_remove and hc.restart_policy.name not in ("", "no"):
        raise _bad("can't create 'AutoRemove' container with restart policy")
    for mnt in hc.mounts or ():
        mounts.validate_mount_config(mnt, source_exists)
    for host in hc.extra_hosts or ():
        name, sep, ip = host.partition(":")
        if not sep or not name:
            raise _bad(f"bad format for add-host: {go_quote(host)}")
        if ip != "host-gateway" and not _valid_ip(ip):
            raise _bad(f"invalid IP address in add-host: {go_quote(ip)}")
    for port, bindings in (hc.port_bindings or {}).items():
        if not _valid_port(port):
            raise _bad(f"invalid port specification: {go_quote(port)}")
        for binding in bindings or ():
            if binding.HostPort and not _valid_port_range(binding.HostPort):
                raise _bad(f"invalid port specification: {go_quote(binding.HostPort)}")
    _validate_restart_policy(hc)
    for field, caps in (("CapAdd", hc.cap_add), ("CapDrop", hc.cap_drop)):
        try:
            normalize_capabilities(caps, limits.host_capabilities)
        except errdefs.InvalidParameter as exc:
            raise _bad(f"invalid {field}: {exc.message}") from None
    if hc.isolation.lower() not in ("", "default"):
        raise _bad(f"invalid isolation '{hc.isolation}' on linux")
    if hc.annotations and "" in hc.annotations:
        raise _bad("invalid Annotations: the empty string is not permitted as an annotation key")


def _valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _valid_port(port: str) -> bool:
    num, _, _proto = port.partition("/")
    return re.fullmatch("[0-9]+", num) is not None and 0 < int(num) <= 0xFFFF


def _valid_port_range(text: str) -> bool:
    lo, dash, hi = text.partition("-")
    parts = [lo, hi] if dash else [lo]
    if not all(re.fullmatch("[0-9]+", p) and int(p) <= 0xFFFF for p in parts):
        return False
    return not dash or int(lo) <= int(hi)


def _validate_restart_policy(hc: HostConfig) -> None:
    """container.ValidateRestartPolicy."""
    name, retries = hc.restart_policy.name, hc.restart_policy.maximum_retry_count
    if name in ("always", "unless-stopped", "no"):
        if retries != 0:
            msg = "invalid restart policy: maximum retry count can only be used with 'on-failure'"
            raise _bad(msg + (" and cannot be negative" if retries < 0 else ""))
    elif name == "on-failure":
        if retries < 0:
            raise _bad("invalid restart policy: maximum retry count cannot be negative")
    elif name != "":
        raise _bad(
            f"invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', "
            "'on-failure', or 'unless-stopped'"
        )


def _validate_platform(hc: HostConfig, limits: HostLimits, w: list[str]) -> None:
    """The rest of verifyPlatformContainerSettings."""
    ipc = hc.ipc_mode
    if not (ipc in ("", "none", "private", "host", "shareable") or container_ref(ipc) is not None):
        raise _bad(f"invalid IPC mode: {ipc}")
    if not (hc.pid_mode in ("", "host") or container_ref(hc.pid_mode)):
        raise _bad(f"invalid PID mode: {hc.pid_mode}")
    if hc.shm_size < 0:
        raise _bad("SHM size can not be less than 0")
    if hc.uts_mode not in ("", "host"):
        raise _bad(f"invalid UTS mode: {hc.uts_mode}")
    if not -1000 <= hc.oom_score_adj <= 1000:
        raise _bad(f"Invalid value {hc.oom_score_adj}, range for oom score adj is [-1000, 1000]")
    if limits.ipv4_forwarding_disabled and hc.network_mode not in ("host", "none"):
        w.append("IPv4 forwarding is disabled. Networking will not work.")
    if hc.network_mode == "host" and hc.port_bindings:
        w.append("Published ports are discarded when using host network mode")
    parent = hc.cgroup_parent
    if parent and limits.systemd_cgroup and (len(parent) <= 6 or not parent.endswith(".slice")):
        raise _bad('cgroup-parent for systemd cgroup should be a valid slice named as "xxx.slice"')
    if hc.runtime == "":
        hc.runtime = limits.default_runtime
    if hc.runtime not in limits.runtimes:
        raise _bad(f"unknown or invalid runtime name: {hc.runtime}")
    for dest in hc.tmpfs or {}:
        mounts.validate_tmpfs_destination(dest)
    if hc.cgroupns_mode not in ("", "private", "host"):
        raise _bad(f"invalid cgroup namespace mode: {hc.cgroupns_mode}")
    if hc.cgroupns_mode == "private" and not limits.cgroup_namespaces:
        w.append(
            "Your kernel does not support cgroup namespaces.  Cgroup namespace setting discarded."
        )


def _validate_binds(hc: HostConfig, daemon_root: str) -> None:
    """registerMountPoints' parsing: each Binds entry, the daemon-root propagation rule, and no
    destination mounted twice."""
    seen: set[str] = set()
    for raw in hc.binds or ():
        mp = mounts.parse_bind(raw, hc.volume_driver)
        _check_daemon_root(mp, daemon_root)
        if mp.destination in seen or mp.destination in (hc.tmpfs or {}):
            raise _bad(f"Duplicate mount point: {mp.destination}")
        seen.add(mp.destination)
    for mnt in hc.mounts or ():
        mp = mounts.parse_mount_spec(mnt)
        _check_daemon_root(mp, daemon_root)
        if mp.destination in seen:
            raise _bad(f"Duplicate mount point: {mnt.target}")
        seen.add(mp.destination)


def _check_daemon_root(mp: mounts.MountPoint, daemon_root: str) -> None:
    """validateBindDaemonRoot: a bind of (or into) the daemon root must be rslave or rshared."""
    if not needs_slave_propagation(mp, daemon_root) and mp.type == "bind" and daemon_root:
        spec = mp.spec
        within = spec.source.startswith(daemon_root) or daemon_root.startswith(spec.source)
        prop = spec.bind_options.propagation if spec.bind_options else ""
        if within and prop not in ("", "rslave", "rshared"):
            raise _bad(
                'invalid mount config: must use either propagation mode "rslave" or "rshared" '
                f"when mount source is within the daemon root, daemon root: {go_quote(daemon_root)}"
                f", bind mount source: {go_quote(spec.source)}, propagation: {go_quote(prop)}"
            )


def needs_slave_propagation(mp: mounts.MountPoint, daemon_root: str) -> bool:
    """validateBindDaemonRoot's first result: a bind of (or into) the daemon root without an
    explicit propagation gets rslave instead of rprivate."""
    if mp.type != "bind" or not daemon_root:
        return False
    spec = mp.spec
    if not (spec.source.startswith(daemon_root) or daemon_root.startswith(spec.source)):
        return False
    return spec.bind_options is None or spec.bind_options.propagation == ""
