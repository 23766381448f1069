"""Wire types of the container responses: list, inspect, create, wait; per API version.

Rule: the Structs below carry what the daemon knows (times as Unix nanoseconds, 0 = Go's zero
time); the `*_wire` functions turn them into dockerd's JSON, field for field in Go's order, and
decide in exactly one place what a client of an older API version sees:
- GET /containers/json: `HostConfig.Annotations` from 1.46; `Health` from 1.52.
- GET /containers/{id}/json: below 1.52 `NetworkSettings` also carries the deprecated `Bridge`,
  `HairpinMode`, `LinkLocalIPv6Address`, `LinkLocalIPv6PrefixLen`, `SecondaryIPAddresses`,
  `SecondaryIPv6Addresses` and the default network's `EndpointID`, `Gateway`,
  `GlobalIPv6Address`, `GlobalIPv6PrefixLen`, `IPAddress`, `IPPrefixLen`, `IPv6Gateway`,
  `MacAddress` (CHANGELOG v1.52; taken from the "bridge" endpoint, empty without one), and
  `Config.OnBuild` is always present (1.52 omits it when empty). `HostConfig.Annotations` is
  dropped below 1.43, `Config.Healthcheck.StartInterval` below 1.44.
- POST /containers/{id}/wait: `{"StatusCode": n}`, with `"Error": {"Message": ...}` first when
  the container recorded an error (omitempty in moby's WaitResponse since 2022).
"""

from __future__ import annotations

from typing import Any

import msgspec

from pymoby.api.types.containers import (
    Config,
    EndpointSettings,
    HostConfig,
    config_wire,
    host_config_wire,
)
from pymoby.api.types.images import format_rfc3339_nano
from pymoby.api.versions import ApiVersion

V1_43 = ApiVersion(1, 43)
V1_44 = ApiVersion(1, 44)
V1_46 = ApiVersion(1, 46)
V1_52 = ApiVersion(1, 52)


class MountPointView(msgspec.Struct, kw_only=True):
    type: str = ""
    name: str = ""
    source: str = ""
    destination: str = ""
    driver: str = ""
    mode: str = ""
    rw: bool = True
    propagation: str = ""


class StateView(msgspec.Struct, kw_only=True):
    status: str
    running: bool = False
    paused: bool = False
    restarting: bool = False
    oom_killed: bool = False
    dead: bool = False
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    started_at: int = 0
    finished_at: int = 0


class PortView(msgspec.Struct, kw_only=True):
    private_port: int
    type: str
    ip: str = ""
    public_port: int = 0


class ContainerSummary(msgspec.Struct, kw_only=True):
    id: str
    names: list[str]
    image: str
    image_id: str
    command: str
    created: int  # seconds
    ports: list[PortView]
    labels: dict[str, str]
    state: str
    status: str
    network_mode: str
    annotations: dict[str, str] | None
    networks: dict[str, EndpointSettings]
    mounts: list[MountPointView]
    health_status: str = "none"
    failing_streak: int = 0
    size_rw: int | None = None
    size_root_fs: int | None = None


class ContainerInspect(msgspec.Struct, kw_only=True):
    id: str
    created: int
    path: str
    args: list[str]
    state: StateView
    image: str
    resolv_conf_path: str
    hostname_path: str
    hosts_path: str
    log_path: str
    name: str
    restart_count: int
    driver: str
    platform: str
    mount_label: str
    process_label: str
    app_armor_profile: str
    exec_ids: list[str] | None
    host_config: HostConfig
    graph_driver: dict[str, str] | None
    mounts: list[MountPointView]
    config: Config
    sandbox_id: str
    sandbox_key: str
    ports: dict[str, Any] | None
    networks: dict[str, EndpointSettings]
    size_rw: int | None = None
    size_root_fs: int | None = None


_encoder = msgspec.json.Encoder()


def _mount_wire(m: MountPointView) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if m.type:
        out["Type"] = m.type
    if m.name:
        out["Name"] = m.name
    out["Source"] = m.source
    out["Destination"] = m.destination
    if m.driver:
        out["Driver"] = m.driver
    out["Mode"] = m.mode
    out["RW"] = m.rw
    out["Propagation"] = m.propagation
    return out


def _endpoint_wire(ep: EndpointSettings) -> dict[str, Any]:
    wire: dict[str, Any] = msgspec.to_builtins(ep)
    return wire


def _port_wire(p: PortView) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if p.ip:
        out["IP"] = p.ip
    out["PrivatePort"] = p.private_port
    if p.public_port:
        out["PublicPort"] = p.public_port
    out["Type"] = p.type
    return out


def summary_wire(s: ContainerSummary, api: ApiVersion) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Id": s.id,
        "Names": s.names,
        "Image": s.image,
        "ImageID": s.image_id,
        "Command": s.command,
        "Created": s.created,
        "Ports": [_port_wire(p) for p in s.ports],
    }
    if s.size_rw:
        out["SizeRw"] = s.size_rw
    if s.size_root_fs:
        out["SizeRootFs"] = s.size_root_fs
    out["Labels"] = s.labels
    out["State"] = s.state
    out["Status"] = s.status
    host: dict[str, Any] = {}
    if s.network_mode:
        host["NetworkMode"] = s.network_mode
    if s.annotations and api >= V1_46:
        host["Annotations"] = s.annotations
    out["HostConfig"] = host
    if api >= V1_52:
        out["Health"] = {"Status": s.health_status, "FailingStreak": s.failing_streak}
    out["NetworkSettings"] = {"Networks": {k: _endpoint_wire(v) for k, v in s.networks.items()}}
    out["Mounts"] = [_mount_wire(m) for m in s.mounts]
    return out


def encode_summaries(items: list[ContainerSummary], api: ApiVersion) -> bytes:
    return _encoder.encode([summary_wire(s, api) for s in items])


def state_wire(s: StateView) -> dict[str, Any]:
    return {
        "Status": s.status,
        "Running": s.running,
        "Paused": s.paused,
        "Restarting": s.restarting,
        "OOMKilled": s.oom_killed,
        "Dead": s.dead,
        "Pid": s.pid,
        "ExitCode": s.exit_code,
        "Error": s.error,
        "StartedAt": format_rfc3339_nano(s.started_at or None),
        "FinishedAt": format_rfc3339_nano(s.finished_at or None),
    }


def _network_settings_wire(i: ContainerInspect, api: ApiVersion) -> dict[str, Any]:
    networks = {k: _endpoint_wire(v) for k, v in i.networks.items()}
    if api >= V1_52:
        return {
            "SandboxID": i.sandbox_id,
            "SandboxKey": i.sandbox_key,
            "Ports": i.ports,
            "Networks": networks,
        }
    bridge = i.networks.get("bridge")
    return {
        "Bridge": "",
        "SandboxID": i.sandbox_id,
        "SandboxKey": i.sandbox_key,
        "Ports": i.ports,
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None,
        "EndpointID": bridge.endpoint_id if bridge else "",
        "Gateway": bridge.gateway if bridge else "",
        "GlobalIPv6Address": bridge.global_ipv6_address if bridge else "",
        "GlobalIPv6PrefixLen": bridge.global_ipv6_prefix_len if bridge else 0,
        "IPAddress": bridge.ip_address if bridge else "",
        "IPPrefixLen": bridge.ip_prefix_len if bridge else 0,
        "IPv6Gateway": bridge.ipv6_gateway if bridge else "",
        "MacAddress": bridge.mac_address if bridge else "",
        "Networks": networks,
    }


def inspect_wire(i: ContainerInspect, api: ApiVersion) -> dict[str, Any]:
    host = host_config_wire(i.host_config)
    if api < V1_43:
        host.pop("Annotations", None)
    config = config_wire(i.config)
    if api < V1_52 and "OnBuild" not in config:
        config["OnBuild"] = None
    if api < V1_44 and isinstance(config.get("Healthcheck"), dict):
        config["Healthcheck"].pop("StartInterval", None)
    out: dict[str, Any] = {
        "Id": i.id,
        "Created": format_rfc3339_nano(i.created),
        "Path": i.path,
        "Args": i.args,
        "State": state_wire(i.state),
        "Image": i.image,
        "ResolvConfPath": i.resolv_conf_path,
        "HostnamePath": i.hostname_path,
        "HostsPath": i.hosts_path,
        "LogPath": i.log_path,
        "Name": i.name,
        "RestartCount": i.restart_count,
        "Driver": i.driver,
        "Platform": i.platform,
        "MountLabel": i.mount_label,
        "ProcessLabel": i.process_label,
        "AppArmorProfile": i.app_armor_profile,
        "ExecIDs": i.exec_ids or None,
        "HostConfig": host,
    }
    if i.graph_driver is not None:
        out["GraphDriver"] = {"Data": i.graph_driver, "Name": i.driver}
    if i.size_rw is not None:
        out["SizeRw"] = i.size_rw
    if i.size_root_fs is not None:
        out["SizeRootFs"] = i.size_root_fs
    out["Mounts"] = [_mount_wire(m) for m in i.mounts]
    out["Config"] = config
    out["NetworkSettings"] = _network_settings_wire(i, api)
    return out


def encode_inspect(i: ContainerInspect, api: ApiVersion) -> bytes:
    return _encoder.encode(inspect_wire(i, api))


def encode_create(container_id: str, warnings: list[str]) -> bytes:
    return _encoder.encode({"Id": container_id, "Warnings": warnings})


def encode_wait(status_code: int, error: str) -> bytes:
    """container.WaitResponse (`Error` omitempty since moby 22, so `{"StatusCode":0}`)."""
    if error:
        return _encoder.encode({"Error": {"Message": error}, "StatusCode": status_code})
    return _encoder.encode({"StatusCode": status_code})
