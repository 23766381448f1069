"""A pure function: container config -> OCI runtime config.json dict (runc's `config.json`).

Rule: `build_spec` does what dockerd's createSpec does (daemon/oci_linux.go: DefaultLinuxSpec
then withCommonOptions, withCgroups, WithResources, WithSysctls, WithUser, WithDevices,
withRlimits, WithNamespaces, WithCapabilities, WithSeccomp, withMounts, WithApparmor,
WithOOMScore, annotations, no-new-privileges, console size, masked/readonly paths) and nothing
else. It performs no I/O: everything it needs from the host, the image or the daemon is a field
of `SpecInput` (the caller reads /etc/passwd, stats devices, prepares the network namespace).
Its keys come out in the order of the runtime-spec Go structs; `omitempty` fields are left out
when empty. Any failure is a SpecError (errdefs.System), as dockerd reports createSpec errors.
Create-time checks live in validate.py (`validate_host_config`), not here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymoby import errdefs
from pymoby.api.types.containers import Config, HostConfig, Ulimit
from pymoby.runtime import resources, seccomp, spec_linux, spec_mounts
from pymoby.runtime.defaults import (
    DEFAULT_CGROUP_PARENT,
    DEFAULT_MASKED_PATHS,
    DEFAULT_MOUNTS,
    DEFAULT_READONLY_PATHS,
    IN_CONTAINER_INIT_PATH,
    OCI_VERSION,
    SpecError,
    tweak_capabilities,
)
from pymoby.runtime.merge import daemon_environment, entrypoint_and_args
from pymoby.runtime.mounts import SpecMount, go_clean
from pymoby.runtime.spec_linux import Device, NamespacePaths
from pymoby.runtime.users import resolve_process_user
from pymoby.runtime.validate import container_ref, parse_security_opts

DEFAULT_SYSCTLS = frozenset(("net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"))

__all__ = ["Device", "NamespacePaths", "SpecError", "SpecInput", "SpecMount", "build_spec"]


@dataclass(frozen=True)
class SpecInput:
    """Everything build_spec needs. `config` is the container's Config after the create-time
    merge with the image (merge.merge_image_config); `host_config` after adapt_host_config."""

    container_id: str
    config: Config
    host_config: HostConfig
    rootfs: str  # the mounted root filesystem (root.path)
    goarch: str  # GOARCH of the host, e.g. "amd64" (seccomp architectures)
    kernel: tuple[int, int]  # host kernel (major, minor), e.g. (6, 1) (seccomp minKernel)
    # The image's /etc/passwd and /etc/group contents; None when the file does not exist.
    passwd: str | None = None
    group: str | None = None
    # Files bind-mounted over /etc/hostname, /etc/hosts, /etc/resolv.conf (None: not mounted).
    hostname_path: str | None = None
    hosts_path: str | None = None
    resolv_conf_path: str | None = None
    shm_path: str | None = None  # /dev/shm to bind for IpcMode shareable/container/host
    namespaces: NamespacePaths = field(default_factory=NamespacePaths)
    time_namespace: bool = False  # the host kernel and the runtime support time namespaces
    init_path: str | None = None  # host path of docker-init (tini) for --init
    daemon_init: bool = False  # the daemon's `init` setting (used when HostConfig.Init is null)
    cgroup_parent: str = ""  # the daemon's --cgroup-parent
    systemd_cgroup: bool = False  # native.cgroupdriver=systemd
    default_ulimits: Sequence[Ulimit] = ()  # the daemon's default-ulimits
    no_new_privileges: bool = False  # the daemon's no-new-privileges
    host_capabilities: Sequence[str] | None = None  # the daemon's effective caps (None: all)
    seccomp_enabled: bool = True  # the kernel supports seccomp
    seccomp_profile: str | None = None  # the daemon's seccomp-profile: JSON, "unconfined", None
    apparmor_enabled: bool = False  # AppArmor is enabled (docker-default is loaded by caller)
    host_devices: Sequence[Device] = ()  # all host devices, for privileged containers
    devices: Sequence[Device] = ()  # HostConfig.Devices resolved to device nodes
    block_devices: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # blkio paths
    thermal_throttle_paths: Sequence[str] = ()  # existing /sys/.../cpuN/thermal_throttle
    host_sysctls: frozenset[str] = DEFAULT_SYSCTLS  # which of dockerd's default sysctls exist
    in_user_namespace: bool = False  # the daemon itself runs in a user namespace
    volume_sources: Mapping[str, str] = field(default_factory=dict)  # dest -> volume host path
    extra_mounts: Sequence[SpecMount] = ()  # volumes-from and image VOLUMEs, resolved
    bind_source_mounts: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    daemon_root: str = ""
    rro_error: str | None = None  # why recursive read-only is unavailable (None: it is)
    read_only_non_recursive: bool = False  # created below API 1.44: ro binds not recursive
    linked_env: Sequence[str] = ()  # legacy link variables


def build_spec(inp: SpecInput) -> dict[str, Any]:
    """The OCI runtime config for one container start."""
    try:
        return _build(inp)
    except SpecError:
        raise
    except errdefs.PymobyError as exc:
        raise SpecError(exc.message) from None


def _build(inp: SpecInput) -> dict[str, Any]:
    cfg, hc = inp.config, inp.host_config
    sec = parse_security_opts(hc.security_opt, inp.no_new_privileges)
    mounts: list[dict[str, Any]] = [
        {"destination": d, "type": t, "source": s, "options": list(o)}
        for d, t, s, o in DEFAULT_MOUNTS
    ]
    spec: dict[str, Any] = {
        "root": {"path": inp.rootfs, **({"readonly": True} if hc.readonly_rootfs else {})},
        "mounts": mounts,
        "linux": {
            "maskedPaths": [*DEFAULT_MASKED_PATHS, *inp.thermal_throttle_paths],
            "readonlyPaths": list(DEFAULT_READONLY_PATHS),
        },
    }
    linux = spec["linux"]

    # withCommonOptions
    path, args = entrypoint_and_args(cfg.entrypoint, cfg.cmd)
    argv = [path, *args]
    pid_private = hc.pid_mode != "host" and container_ref(hc.pid_mode) is None
    if pid_private and (hc.init if hc.init is not None else inp.daemon_init):
        if not inp.init_path:
            raise SpecError('exec: "docker-init": executable file not found in $PATH')
        argv = [IN_CONTAINER_INIT_PATH, "--", *argv]
        mounts.append(
            {
                "destination": IN_CONTAINER_INIT_PATH,
                "type": "bind",
                "source": inp.init_path,
                "options": ["bind", "ro"],
            }
        )
    sysctl: dict[str, str] = {}
    if cfg.domainname:
        sysctl["kernel.domainname"] = cfg.domainname
    if hc.network_mode != "host" and container_ref(hc.network_mode) is None:
        ping = "net.ipv4.ping_group_range"
        if not inp.in_user_namespace and ping in inp.host_sysctls:
            sysctl[ping] = "0 2147483647"
        if "net.ipv4.ip_unprivileged_port_start" in inp.host_sysctls:
            sysctl["net.ipv4.ip_unprivileged_port_start"] = "0"
    sysctl.update(hc.sysctls or {})  # WithSysctls: the container's win

    # withCgroups
    if hc.cgroup_parent:
        parent = hc.cgroup_parent
    elif inp.cgroup_parent:
        parent = inp.cgroup_parent
    else:
        parent = "system.slice" if inp.systemd_cgroup else DEFAULT_CGROUP_PARENT
    if inp.systemd_cgroup:
        cgroups_path = f"{parent}:docker:{inp.container_id}"
    else:
        cgroups_path = _clean_join(parent, inp.container_id)

    user = resolve_process_user(cfg.user, hc.group_add, inp.passwd, inp.group)
    nodes, device_rules = spec_linux.devices(hc, inp.devices, inp.host_devices)
    res: dict[str, Any] = {"devices": device_rules}
    for key, value in (
        ("memory", resources.oci_memory(hc)),
        ("cpu", resources.oci_cpu(hc)),
        ("pids", resources.oci_pids(hc)),
    ):
        if value is not None:
            res[key] = value
    res["blockIO"] = resources.oci_block_io(hc, inp.block_devices)
    limits = spec_linux.rlimits(hc.ulimits, inp.default_ulimits)
    spaces = spec_linux.namespaces(hc, cfg.network_disabled, inp.namespaces, inp.time_namespace)
    caps = tweak_capabilities(hc.cap_add, hc.cap_drop, hc.privileged, inp.host_capabilities)
    seccomp_spec = _seccomp(inp, sec.seccomp_profile, caps)

    facts = spec_mounts.MountFacts(
        volume_sources=inp.volume_sources,
        extra_mounts=inp.extra_mounts,
        network_files={
            k: v
            for k, v in (
                ("/etc/resolv.conf", inp.resolv_conf_path),
                ("/etc/hostname", inp.hostname_path),
                ("/etc/hosts", inp.hosts_path),
            )
            if v
        },
        shm_path=inp.shm_path,
        daemon_root=inp.daemon_root,
        bind_source_mounts=inp.bind_source_mounts,
        rro_error=inp.rro_error,
        read_only_non_recursive=inp.read_only_non_recursive,
    )
    writable_cgroups = sec.writable_cgroups if sec.writable_cgroups is not None else hc.privileged
    spec_mounts.apply_mounts(
        spec, spec_mounts.collect_mounts(hc, facts), hc, facts, writable_cgroups
    )

    if hc.masked_paths is not None:
        linux["maskedPaths"] = list(hc.masked_paths)
    if hc.readonly_paths is not None:
        linux["readonlyPaths"] = list(hc.readonly_paths)
    spec_linux.check_sysctls(sysctl, spaces)

    process: dict[str, Any] = {}
    if cfg.tty:
        process["terminal"] = True
        height, width = (hc.console_size or [0, 0])[:2]
        if height > 0 or width > 0:
            process["consoleSize"] = {"height": height, "width": width}
    process["user"] = {
        "uid": user.uid,
        "gid": user.gid,
        "additionalGids": list(user.additional_gids),
    }
    process["args"] = argv
    process["env"] = daemon_environment(cfg, inp.linked_env)
    process["cwd"] = cfg.working_dir or "/"
    process["capabilities"] = {
        k: list(caps) for k in ("bounding", "effective", "permitted") if caps
    }
    if limits:
        process["rlimits"] = limits
    if sec.no_new_privileges:
        process["noNewPrivileges"] = True
    if inp.apparmor_enabled:
        default = "unconfined" if hc.privileged else "docker-default"
        process["apparmorProfile"] = sec.apparmor_profile or default
    process["oomScoreAdj"] = hc.oom_score_adj

    out: dict[str, Any] = {"ociVersion": OCI_VERSION, "process": process, "root": spec["root"]}
    hostname = "" if hc.uts_mode == "host" else cfg.hostname
    if hostname:
        out["hostname"] = hostname
    out["mounts"] = spec["mounts"]
    if hc.annotations:
        out["annotations"] = dict(hc.annotations)
    lx: dict[str, Any] = {}
    if sysctl:
        lx["sysctl"] = sysctl
    lx["resources"] = res
    lx["cgroupsPath"] = cgroups_path
    lx["namespaces"] = spaces
    if nodes:
        lx["devices"] = nodes
    if seccomp_spec is not None:
        lx["seccomp"] = seccomp_spec
    for key in ("rootfsPropagation", "maskedPaths", "readonlyPaths"):
        if linux.get(key):
            lx[key] = linux[key]
    out["linux"] = lx
    return out


def _clean_join(parent: str, name: str) -> str:
    """filepath.Join(parent, id): joined and cleaned."""
    return go_clean(f"{parent}/{name}" if parent else name)


def _seccomp(inp: SpecInput, profile: str, caps: Sequence[str]) -> dict[str, Any] | None:
    """WithSeccomp: which profile applies ("builtin" is the default one, "unconfined" none)."""
    if profile == "unconfined":
        return None
    kernel, arch = inp.kernel, inp.goarch
    if inp.host_config.privileged:
        # dockerd loads any explicit profile as JSON here, even "builtin".
        if profile:
            return seccomp.setup_seccomp(seccomp.load_profile(profile), caps, arch, kernel)
        return None
    if not inp.seccomp_enabled:
        if profile and profile != "builtin":
            raise SpecError(
                "seccomp is not enabled in your kernel, cannot run a custom seccomp profile"
            )
        return None
    if profile == "builtin":
        return seccomp.default_seccomp(caps, arch, kernel)
    if profile:
        return seccomp.setup_seccomp(seccomp.load_profile(profile), caps, arch, kernel)
    if inp.seccomp_profile == "unconfined":
        return None
    if inp.seccomp_profile and inp.seccomp_profile != "builtin":
        return seccomp.setup_seccomp(seccomp.load_profile(inp.seccomp_profile), caps, arch, kernel)
    return seccomp.default_seccomp(caps, arch, kernel)
