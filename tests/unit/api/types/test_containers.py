"""Wire names, Go decoding rules and omitempty encoding of the container create request."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from pymoby import errdefs
from pymoby.api.types import containers as t

# JSON names of moby's container.Config and HostConfig (api/types/container), Go's order.
GO_CONFIG = [
    "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr",
    "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped",
    "Image", "Volumes", "WorkingDir", "Entrypoint", "NetworkDisabled", "MacAddress", "OnBuild",
    "Labels", "StopSignal", "StopTimeout", "Shell",
]  # fmt: skip
GO_RESOURCES = [
    "CpuShares", "Memory", "NanoCpus", "CgroupParent", "BlkioWeight", "BlkioWeightDevice",
    "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps",
    "CpuPeriod", "CpuQuota", "CpuRealtimePeriod", "CpuRealtimeRuntime", "CpusetCpus",
    "CpusetMems", "Devices", "DeviceCgroupRules", "DeviceRequests", "MemoryReservation",
    "MemorySwap", "MemorySwappiness", "OomKillDisable", "PidsLimit", "Ulimits", "CpuCount",
    "CpuPercent", "IOMaximumIOps", "IOMaximumBandwidth",
]  # fmt: skip
GO_HOST_CONFIG = [
    "Binds", "ContainerIDFile", "LogConfig", "NetworkMode", "PortBindings", "RestartPolicy",
    "AutoRemove", "VolumeDriver", "VolumesFrom", "ConsoleSize", "Annotations", "CapAdd",
    "CapDrop", "CgroupnsMode", "Dns", "DnsOptions", "DnsSearch", "ExtraHosts", "GroupAdd",
    "IpcMode", "Cgroup", "Links", "OomScoreAdj", "PidMode", "Privileged", "PublishAllPorts",
    "ReadonlyRootfs", "SecurityOpt", "StorageOpt", "Tmpfs", "UTSMode", "UsernsMode", "ShmSize",
    "Sysctls", "Runtime", "Isolation", "Mounts", "MaskedPaths", "ReadonlyPaths", "Init",
]  # fmt: skip

# What the docker CLI 28 sends for `docker run --rm -it -m 64m busybox id`.
CLI_BODY = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": True, "AttachStdout": True,
    "AttachStderr": True, "Tty": True, "OpenStdin": True, "StdinOnce": True, "Env": [],
    "Cmd": ["id"], "Image": "busybox", "Volumes": {}, "WorkingDir": "", "Entrypoint": None,
    "OnBuild": None, "Labels": {},
    "HostConfig": {
        "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "", "Config": {}},
        "NetworkMode": "bridge", "PortBindings": {}, "RestartPolicy": {"Name": "no",
        "MaximumRetryCount": 0}, "AutoRemove": True, "VolumeDriver": "", "VolumesFrom": None,
        "ConsoleSize": [24, 80], "CapAdd": None, "CapDrop": None, "CgroupnsMode": "",
        "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None,
        "IpcMode": "", "Cgroup": "", "Links": None, "OomScoreAdj": 0, "PidMode": "",
        "Privileged": False, "PublishAllPorts": False, "ReadonlyRootfs": False,
        "SecurityOpt": None, "UTSMode": "", "UsernsMode": "", "ShmSize": 0, "Isolation": "",
        "CpuShares": 0, "Memory": 67108864, "NanoCpus": 0, "CgroupParent": "",
        "BlkioWeight": 0, "BlkioWeightDevice": [], "BlkioDeviceReadBps": [],
        "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [],
        "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0,
        "CpusetCpus": "", "CpusetMems": "", "Devices": [], "DeviceCgroupRules": None,
        "DeviceRequests": None, "MemoryReservation": 0, "MemorySwap": 0,
        "MemorySwappiness": None, "OomKillDisable": False, "PidsLimit": None, "Ulimits": [],
        "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
        "MaskedPaths": None, "ReadonlyPaths": None,
    },
    "NetworkingConfig": {"EndpointsConfig": {}},
}  # fmt: skip

# What docker-py 7 sends for containers.create("busybox", "id", mem_limit="64m",
# volumes=["/tmp:/data:ro"], tmpfs={"/run": "size=1m"}, cap_add=["NET_ADMIN"]).
DOCKER_PY_BODY = {
    "Tty": False, "OpenStdin": False, "StdinOnce": False, "AttachStdin": False,
    "AttachStdout": False, "AttachStderr": False, "Cmd": ["id"], "Image": "busybox",
    "NetworkDisabled": False,
    "HostConfig": {
        "NetworkMode": "default", "Memory": 67108864, "Binds": ["/tmp:/data:ro"],
        "Tmpfs": {"/run": "size=1m"}, "CapAdd": ["NET_ADMIN"],
    },
}  # fmt: skip


def _names(cls: type[msgspec.Struct]) -> list[str]:
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    return [f.encode_name for f in info.fields]


def test_wire_names_are_gos() -> None:
    assert _names(t.Config) == GO_CONFIG
    assert _names(t.HostConfig) == GO_RESOURCES + GO_HOST_CONFIG
    assert _names(t.CreateRequest) == [*GO_CONFIG, "HostConfig", "NetworkingConfig"]
    assert _names(t.Mount) == [
        "Type", "Source", "Target", "ReadOnly", "Consistency", "BindOptions", "VolumeOptions",
        "ImageOptions", "TmpfsOptions", "ClusterOptions",
    ]  # fmt: skip
    assert _names(t.BindOptions) == [
        "Propagation", "NonRecursive", "CreateMountpoint", "ReadOnlyNonRecursive",
        "ReadOnlyForceRecursive",
    ]  # fmt: skip
    assert _names(t.TmpfsOptions) == ["SizeBytes", "Mode", "Options"]
    assert _names(t.EndpointSettings)[:5] == [
        "IPAMConfig", "Links", "Aliases", "DriverOpts", "GwPriority",
    ]  # fmt: skip


def test_decodes_the_docker_cli_body() -> None:
    req = t.decode_create_request(json.dumps(CLI_BODY).encode())
    assert req.image == "busybox" and req.cmd == ["id"] and req.tty
    hc = req.host_config
    assert hc is not None
    assert hc.memory == 64 << 20 and hc.console_size == [24, 80]
    assert hc.network_mode == "bridge" and hc.restart_policy.name == "no"
    assert hc.oom_kill_disable is False and hc.pids_limit is None
    assert hc.masked_paths is None and hc.dns == []
    assert req.networking_config is not None and req.networking_config.endpoints_config == {}


def test_decodes_the_docker_py_body_with_dockerds_defaults() -> None:
    req = t.decode_create_request(json.dumps(DOCKER_PY_BODY).encode())
    hc = req.host_config
    assert hc is not None
    assert hc.binds == ["/tmp:/data:ro"] and hc.tmpfs == {"/run": "size=1m"}
    assert hc.cap_add == ["NET_ADMIN"] and hc.network_mode == "default"
    # decodeCreateRequest's defaults
    assert req.volumes == {} and hc.port_bindings == {}
    assert req.networking_config == t.NetworkingConfig(endpoints_config={})
    assert hc.console_size == [0, 0]


def test_missing_host_config_and_network_mode_get_defaults() -> None:
    req = t.decode_create_request(b'{"Image": "busybox"}')
    assert req.host_config == t.HostConfig(network_mode="default", port_bindings={})


@pytest.mark.parametrize(
    ("body", "check"),
    [
        # null leaves Go's zero value, for scalars and for lists alike
        ({"Image": "x", "Hostname": None, "Tty": None}, lambda r: r.hostname == "" and not r.tty),
        ({"Image": "x", "HostConfig": {"Memory": None}}, lambda r: r.host_config.memory == 0),
        ({"Image": "x", "Env": None}, lambda r: r.env is None),
        # null list elements and map values become the element's zero value
        ({"Image": "x", "Env": ["A=1", None]}, lambda r: r.env == ["A=1", ""]),
        ({"Image": "x", "Labels": {"a": None}}, lambda r: r.labels == {"a": ""}),
        # a null ConsoleSize keeps [0, 0]; a short one is padded as a Go array
        (
            {"Image": "x", "HostConfig": {"ConsoleSize": None}},
            lambda r: r.host_config.console_size == [0, 0],
        ),
        (
            {"Image": "x", "HostConfig": {"ConsoleSize": [5]}},
            lambda r: r.host_config.console_size == [5, 0],
        ),
        # MaskedPaths: null and [] differ (systempaths=unconfined sends [])
        (
            {"Image": "x", "HostConfig": {"MaskedPaths": []}},
            lambda r: r.host_config.masked_paths == [],
        ),
        # Cmd, Entrypoint and Shell also take a single string (strslice.StrSlice)
        (
            {"Image": "x", "Cmd": "id", "Entrypoint": "sh"},
            lambda r: r.cmd == ["id"] and r.entrypoint == ["sh"],
        ),
        # keys match case-insensitively, unknown keys are ignored
        ({"image": "x", "CMD": ["a"], "Bogus": 1}, lambda r: r.image == "x" and r.cmd == ["a"]),
        # a null endpoint config is kept (dockerd reports it later)
        (
            {"Image": "x", "NetworkingConfig": {"EndpointsConfig": {"bridge": None}}},
            lambda r: r.networking_config.endpoints_config == {"bridge": None},
        ),
    ],
)
def test_go_decoding_rules(body: dict[str, Any], check: Any) -> None:
    assert check(t.decode_create_request(json.dumps(body).encode()))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[1]", "invalid JSON: json: cannot unmarshal array into Go value of type "),
        (b"{bad", "invalid JSON: "),
        (b"{}", "config cannot be empty in order to create a container"),
        (b'{"HostConfig": {}}', "config cannot be empty in order to create a container"),
        (b'{"Image": 1}', "invalid JSON: Expected `str`, got `int` - at `$.Image`"),
        (
            b'{"Image": "x", "Cmd": 1}',
            "invalid JSON: Expected `array | null`, got `int` - at `$.Cmd`",
        ),
        (
            b'{"Image": "x", "HostConfig": {"Memory": "1g"}}',
            "invalid JSON: Expected `int`, got `str` - at `$.HostConfig.Memory`",
        ),
        (
            b'{"Image": "x", "HostConfig": {"BlkioWeight": 70000}}',
            "invalid JSON: Expected `int` <= 65535 - at `$.HostConfig.BlkioWeight`",
        ),
        (
            b'{"Image": "x", "HostConfig": {"Mounts": [{"Type": "bind", "ReadOnly": "yes"}]}}',
            "at `$.HostConfig.Mounts[0].ReadOnly`",
        ),
    ],
)
def test_bad_bodies_are_invalid_parameter(body: bytes, message: str) -> None:
    with pytest.raises(errdefs.InvalidParameter) as exc:
        t.decode_create_request(body)
    assert message in str(exc.value)


def test_config_part_of_the_request() -> None:
    req = t.decode_create_request(b'{"Image": "busybox", "Cmd": ["id"], "HostConfig": {}}')
    cfg = req.config()
    assert type(cfg) is t.Config
    assert cfg.image == "busybox" and cfg.cmd == ["id"] and cfg.volumes == {}


def test_config_wire_drops_only_omitempty_fields() -> None:
    wire = t.config_wire(t.Config(image="busybox"))
    assert list(wire) == [n for n in GO_CONFIG if n not in t.Config.OMITEMPTY]
    assert wire["Env"] is None and wire["Cmd"] is None and wire["Labels"] is None
    full = t.config_wire(
        t.Config(stop_timeout=0, exposed_ports={"80/tcp": {}}, stop_signal="SIGINT")
    )
    assert full["StopTimeout"] == 0  # a pointer to 0 is not empty
    assert full["ExposedPorts"] == {"80/tcp": {}} and full["StopSignal"] == "SIGINT"


def test_host_config_wire() -> None:
    wire = t.host_config_wire(t.HostConfig())
    for name in ("Annotations", "StorageOpt", "Tmpfs", "Sysctls", "Runtime", "Mounts", "Init"):
        assert name not in wire
    assert wire["ConsoleSize"] == [0, 0] and wire["MaskedPaths"] is None
    assert wire["LogConfig"] == {"Type": "", "Config": None}
    assert t.host_config_wire(t.HostConfig(init=False))["Init"] is False
    mounts = t.host_config_wire(
        t.HostConfig(mounts=[t.Mount(type="tmpfs", target="/x", tmpfs_options=t.TmpfsOptions())])
    )["Mounts"]
    assert mounts == [{"Type": "tmpfs", "Target": "/x", "TmpfsOptions": {}}]


def test_round_trip_keeps_values() -> None:
    req = t.decode_create_request(json.dumps(CLI_BODY).encode())
    assert req.host_config is not None
    again = msgspec.convert(t.host_config_wire(req.host_config), type=t.HostConfig)
    assert again == req.host_config
