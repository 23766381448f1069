"""The `linux` parts of a container's OCI spec: namespaces, devices, rlimits, sysctl checks.

Rule: dockerd's WithNamespaces, WithDevices and withRlimits, plus the sysctl rules runc
enforces when it creates the container (libcontainer/configs/validate), so a bad sysctl fails
with runc's own words before runc is even started. Namespace paths for joined namespaces and
the device nodes are inputs; nothing here looks at /proc or /dev.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymoby.api.types.containers import HostConfig, Ulimit
from pymoby.log import go_quote
from pymoby.runtime.defaults import DEFAULT_NAMESPACES, SpecError, default_device_rules
from pymoby.runtime.resources import device_cgroup_rules
from pymoby.runtime.validate import container_ref

_IPC_SYSCTLS = frozenset(
    (
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    )
)


@dataclass(frozen=True)
class Device:
    """A device node for `linux.devices` (containerd's DeviceFromPath result), with the host
    path it was found at and the cgroup permissions to grant for it."""

    path: str  # in the container
    type: str  # "c", "b" or "p"
    major: int
    minor: int
    file_mode: int | None = None  # permission bits only
    uid: int | None = None
    gid: int | None = None
    host_path: str = ""
    permissions: str = "rwm"

    def oci(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "type": self.type,
            "major": self.major,
            "minor": self.minor,
        }
        for key, value in (("fileMode", self.file_mode), ("uid", self.uid), ("gid", self.gid)):
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True)
class NamespacePaths:
    """Paths of namespaces to join: another container's (container:<id> modes, as
    /proc/<pid>/ns/<kind>) or, for the network, a namespace prepared by the network layer."""

    network: str | None = None
    ipc: str | None = None
    pid: str | None = None


def namespaces(
    hc: HostConfig, network_disabled: bool, paths: NamespacePaths, time_ns: bool
) -> list[dict[str, Any]]:
    """WithNamespaces (without user namespaces: pymoby does not remap ids)."""
    spaces: list[dict[str, Any]] = [{"type": t} for t in DEFAULT_NAMESPACES]

    def put(kind: str, path: str | None = None) -> None:
        entry = {"type": kind, **({"path": path} if path else {})}
        for i, ns in enumerate(spaces):
            if ns["type"] == kind:
                spaces[i] = entry
                return
        spaces.append(entry)

    def remove(kind: str) -> None:
        spaces[:] = [ns for ns in spaces if ns["type"] != kind]

    def joined(kind: str, mode: str, path: str | None) -> str:
        if not path:
            raise SpecError(f"no {kind} namespace path given to join {mode}")
        return path

    if not network_disabled:
        mode = hc.network_mode
        if container_ref(mode) is not None:
            put("network", joined("network", mode, paths.network))
        elif mode == "host":
            remove("network")
        else:
            put("network", paths.network)
    if not time_ns:
        remove("time")

    ipc = hc.ipc_mode
    if container_ref(ipc) is not None:
        put("ipc", joined("ipc", ipc, paths.ipc))
    elif ipc == "host":
        remove("ipc")
    elif ipc in ("", "private", "shareable", "none"):
        put("ipc")
    else:
        raise SpecError(f"invalid IPC mode: {ipc}")

    pid = hc.pid_mode
    if container_ref(pid):
        put("pid", joined("pid", pid, paths.pid))
    elif pid == "host":
        remove("pid")
    elif pid == "":
        put("pid")
    else:
        raise SpecError(f"invalid PID mode: {pid}")

    if hc.uts_mode not in ("", "host"):
        raise SpecError(f"invalid UTS mode: {hc.uts_mode}")
    if hc.uts_mode == "host":
        remove("uts")
    if hc.cgroupns_mode not in ("", "private", "host"):
        raise SpecError(f"invalid cgroup namespace mode: {hc.cgroupns_mode}")
    if hc.cgroupns_mode == "private":
        put("cgroup")
    return spaces


def devices(
    hc: HostConfig, mapped: Sequence[Device], host_devices: Sequence[Device]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """WithDevices: (linux.devices, linux.resources.devices). `mapped` are HostConfig.Devices
    resolved to nodes; `host_devices` are all of the host's, used when privileged."""
    if hc.device_requests:
        req = hc.device_requests[0]
        caps = "[" + " ".join("[" + " ".join(c) + "]" for c in req.capabilities or ()) + "]"
        raise SpecError(f'could not select device driver "{req.driver}" with capabilities: {caps}')
    if hc.privileged:
        nodes = [d.oci() for d in host_devices]
        nodes += [d.oci() for d in mapped if d.host_path != d.path]
        return nodes, [{"allow": True, "access": "rwm"}]
    rules = default_device_rules()
    for d in mapped:
        rules.append(
            {
                "allow": True,
                "type": d.type,
                "major": d.major,
                "minor": d.minor,
                "access": d.permissions,
            }
        )
    rules.extend(device_cgroup_rules(hc.device_cgroup_rules))
    return [d.oci() for d in mapped], rules


def rlimits(ulimits: Sequence[Ulimit] | None, defaults: Sequence[Ulimit]) -> list[dict[str, Any]]:
    """withRlimits: the container's ulimits, then the daemon's default-ulimits it does not
    override (by name); values are Go's uint64 conversion of the int64 (-1 is unlimited)."""
    merged = list(ulimits or ())
    names = {u.name for u in merged}
    merged.extend(u for u in defaults if u.name not in names)
    mask = (1 << 64) - 1
    return [
        {"type": "RLIMIT_" + u.name.upper(), "hard": u.hard & mask, "soft": u.soft & mask}
        for u in merged
    ]


def _dotted(name: str) -> str:
    """runc's convertSysctlVariableToDotsSeparator: "net/ipv4/ip_forward" -> dotted form."""
    first = min((i for i in (name.find("."), name.find("/")) if i >= 0), default=-1)
    if first == -1 or name[first] == ".":
        return name
    return name.translate(str.maketrans("./", "/."))


def check_sysctls(sysctl: Mapping[str, str], spaces: Sequence[Mapping[str, Any]]) -> None:
    """runc's sysctl validation: IPC sysctls need a private IPC namespace, net.* a network
    namespace that is not the host's, kernel.domainname a private UTS namespace; nothing else
    is namespaced."""
    kinds = {ns["type"]: ns.get("path", "") for ns in spaces}
    for raw in sysctl:
        name = _dotted(raw)
        quoted = go_quote(name)
        if name in _IPC_SYSCTLS or name.startswith("fs.mqueue."):
            if "ipc" not in kinds:
                raise SpecError(f"sysctl {quoted} is not allowed in the hosts ipc namespace")
            continue
        if name.startswith("net."):
            if "network" not in kinds:
                raise SpecError(f"sysctl {quoted} not allowed in host network namespace")
            continue
        if "uts" in kinds:
            if name == "kernel.domainname":
                continue
            if name == "kernel.hostname":
                raise SpecError(
                    f'sysctl {quoted} is not allowed as it conflicts with the OCI "hostname" field'
                )
        raise SpecError(f"sysctl {quoted} is not in a separate kernel namespace")
