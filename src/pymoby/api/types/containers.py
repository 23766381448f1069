"""Wire types of POST /containers/create: Config, HostConfig, NetworkingConfig and the body.

Rule: each Struct mirrors moby's Go type (api/types/container, mount, network, blkiodev) field
for field with the exact JSON names, and every default is Go's zero value (nil slices and maps
and pointers are `None`, so `null` is sent back where dockerd sends `null`). Decoding goes through
`decode_create_request`, which first applies Go's encoding/json rules that msgspec does not have
(a `null` leaves a field at its zero value, keys match field names case-insensitively, `Cmd`,
`Entrypoint` and `Shell` take a single string as dockerd <= 28's StrSlice did) and then
dockerd's `decodeCreateRequest` defaults; wrong types become InvalidParameter naming the field.
Encoding back (container inspect) uses `config_wire` / `host_config_wire`, which drop exactly
the fields Go tags `omitempty` when they are empty. HostConfig embeds Resources as in Go; its
JSON keys therefore come after the Resources keys (key order is not significant to clients).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import msgspec
import msgspec.inspect as mi

from pymoby import errdefs

UInt16 = Annotated[int, msgspec.Meta(ge=0, le=0xFFFF)]
UInt32 = Annotated[int, msgspec.Meta(ge=0, le=0xFFFFFFFF)]
UInt64 = Annotated[int, msgspec.Meta(ge=0)]
Int64 = Annotated[int, msgspec.Meta(ge=-(1 << 63), le=(1 << 63) - 1)]

# --------------------------------------------------------------------------- Config


class HealthConfig(msgspec.Struct, rename="pascal", omit_defaults=True, kw_only=True):
    """Healthcheck (docker-image-spec HealthcheckConfig; every field omitempty, ns durations)."""

    test: list[str] | None = None
    interval: Int64 = 0
    timeout: Int64 = 0
    start_period: Int64 = 0
    start_interval: Int64 = 0
    retries: Int64 = 0


class Config(msgspec.Struct, rename="pascal", kw_only=True):
    """container.Config: the portable part of a container's configuration."""

    OMITEMPTY: ClassVar[frozenset[str]] = frozenset(
        {
            "ExposedPorts",
            "Healthcheck",
            "ArgsEscaped",
            "NetworkDisabled",
            "MacAddress",
            "OnBuild",
            "StopSignal",
            "StopTimeout",
            "Shell",
        }
    )

    hostname: str = ""
    domainname: str = ""
    user: str = ""
    attach_stdin: bool = False
    attach_stdout: bool = False
    attach_stderr: bool = False
    exposed_ports: dict[str, dict[str, Any]] | None = None
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    env: list[str] | None = None
    cmd: list[str] | None = None
    healthcheck: HealthConfig | None = None
    args_escaped: bool = False
    image: str = ""
    volumes: dict[str, dict[str, Any]] | None = None
    working_dir: str = ""
    entrypoint: list[str] | None = None
    network_disabled: bool = False
    mac_address: str = ""  # deprecated since API 1.44; read below 1.52 only
    on_build: list[str] | None = None
    labels: dict[str, str] | None = None
    stop_signal: str = ""
    stop_timeout: Int64 | None = None
    shell: list[str] | None = None


# --------------------------------------------------------------------------- HostConfig


class LogConfig(msgspec.Struct, rename="pascal", kw_only=True):
    type: str = ""
    config: dict[str, str] | None = None


class RestartPolicy(msgspec.Struct, rename="pascal", kw_only=True):
    name: str = ""
    maximum_retry_count: Int64 = 0


class PortBinding(msgspec.Struct, kw_only=True):
    HostIp: str = ""
    HostPort: str = ""


class WeightDevice(msgspec.Struct, rename="pascal", kw_only=True):
    path: str = ""
    weight: UInt16 = 0


class ThrottleDevice(msgspec.Struct, rename="pascal", kw_only=True):
    path: str = ""
    rate: UInt64 = 0


class DeviceMapping(msgspec.Struct, rename="pascal", kw_only=True):
    path_on_host: str = ""
    path_in_container: str = ""
    cgroup_permissions: str = ""


class DeviceRequest(msgspec.Struct, rename="pascal", kw_only=True):
    driver: str = ""
    count: Int64 = 0
    device_ids: list[str] | None = msgspec.field(default=None, name="DeviceIDs")
    capabilities: list[list[str]] | None = None
    options: dict[str, str] | None = None


class Ulimit(msgspec.Struct, rename="pascal", kw_only=True):
    name: str = ""
    hard: Int64 = 0
    soft: Int64 = 0


class Driver(msgspec.Struct, rename="pascal", omit_defaults=True, kw_only=True):
    name: str = ""
    options: dict[str, str] | None = None


class BindOptions(msgspec.Struct, rename="pascal", omit_defaults=True, kw_only=True):
    propagation: str = ""
    non_recursive: bool = False
    create_mountpoint: bool = False
    read_only_non_recursive: bool = False
    read_only_force_recursive: bool = False


class VolumeOptions(msgspec.Struct, rename="pascal", omit_defaults=True, kw_only=True):
    no_copy: bool = False
    labels: dict[str, str] | None = None
    subpath: str = ""
    driver_config: Driver | None = None


class ImageOptions(msgspec.Struct, rename="pascal", omit_defaults=True, kw_only=True):
    subpath: str = ""


class TmpfsOptions(msgspec.Struct, rename="pascal", omit_defaults=True, kw_only=True):
    size_bytes: Int64 = 0
    mode: UInt32 = 0  # os.FileMode
    options: list[list[str]] | None = None


class ClusterOptions(msgspec.Struct, omit_defaults=True):
    """Intentionally empty, as in moby."""


class Mount(msgspec.Struct, rename="pascal", omit_defaults=True, kw_only=True):
    """mount.Mount: one entry of HostConfig.Mounts (every field omitempty)."""

    type: str = ""
    source: str = ""
    target: str = ""
    read_only: bool = False
    consistency: str = ""
    bind_options: BindOptions | None = None
    volume_options: VolumeOptions | None = None
    image_options: ImageOptions | None = None
    tmpfs_options: TmpfsOptions | None = None
    cluster_options: ClusterOptions | None = None


class Resources(msgspec.Struct, rename="pascal", kw_only=True):
    """container.Resources (embedded in HostConfig and in the update request)."""

    cpu_shares: Int64 = 0
    memory: Int64 = 0
    nano_cpus: Int64 = 0
    cgroup_parent: str = ""
    blkio_weight: UInt16 = 0
    blkio_weight_device: list[WeightDevice] | None = None
    blkio_device_read_bps: list[ThrottleDevice] | None = None
    blkio_device_write_bps: list[ThrottleDevice] | None = None
    blkio_device_read_iops: list[ThrottleDevice] | None = msgspec.field(
        default=None, name="BlkioDeviceReadIOps"
    )
    blkio_device_write_iops: list[ThrottleDevice] | None = msgspec.field(
        default=None, name="BlkioDeviceWriteIOps"
    )
    cpu_period: Int64 = 0
    cpu_quota: Int64 = 0
    cpu_realtime_period: Int64 = 0
    cpu_realtime_runtime: Int64 = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    devices: list[DeviceMapping] | None = None
    device_cgroup_rules: list[str] | None = None
    device_requests: list[DeviceRequest] | None = None
    memory_reservation: Int64 = 0
    memory_swap: Int64 = 0
    memory_swappiness: Int64 | None = None
    oom_kill_disable: bool | None = None
    pids_limit: Int64 | None = None
    ulimits: list[Ulimit] | None = None
    cpu_count: Int64 = 0
    cpu_percent: Int64 = 0
    io_maximum_iops: UInt64 = msgspec.field(default=0, name="IOMaximumIOps")
    io_maximum_bandwidth: UInt64 = msgspec.field(default=0, name="IOMaximumBandwidth")


class HostConfig(Resources, kw_only=True):
    """container.HostConfig: the host-dependent part of a container's configuration."""

    OMITEMPTY: ClassVar[frozenset[str]] = frozenset(
        {"Annotations", "StorageOpt", "Tmpfs", "Sysctls", "Runtime", "Mounts", "Init"}
    )

    binds: list[str] | None = None
    container_id_file: str = msgspec.field(default="", name="ContainerIDFile")
    log_config: LogConfig = msgspec.field(default_factory=LogConfig)
    network_mode: str = ""
    port_bindings: dict[str, list[PortBinding] | None] | None = None
    restart_policy: RestartPolicy = msgspec.field(default_factory=RestartPolicy)
    auto_remove: bool = False
    volume_driver: str = ""
    volumes_from: list[str] | None = None
    console_size: list[int] | None = msgspec.field(default_factory=lambda: [0, 0])
    annotations: dict[str, str] | None = None
    cap_add: list[str] | None = None
    cap_drop: list[str] | None = None
    cgroupns_mode: str = ""
    dns: list[str] | None = None
    dns_options: list[str] | None = None
    dns_search: list[str] | None = None
    extra_hosts: list[str] | None = None
    group_add: list[str] | None = None
    ipc_mode: str = ""
    cgroup: str = ""
    links: list[str] | None = None
    oom_score_adj: Int64 = 0
    pid_mode: str = ""
    privileged: bool = False
    publish_all_ports: bool = False
    readonly_rootfs: bool = False
    security_opt: list[str] | None = None
    storage_opt: dict[str, str] | None = None
    tmpfs: dict[str, str] | None = None
    uts_mode: str = msgspec.field(default="", name="UTSMode")
    userns_mode: str = ""
    shm_size: Int64 = 0
    sysctls: dict[str, str] | None = None
    runtime: str = ""
    isolation: str = ""
    mounts: list[Mount] | None = None
    masked_paths: list[str] | None = None
    readonly_paths: list[str] | None = None
    init: bool | None = None

    def __post_init__(self) -> None:
        # Go's [2]uint: null keeps zeros, a short array is padded, a long one truncated.
        size = list(self.console_size or [])
        if any(v < 0 for v in size):
            raise ValueError("ConsoleSize values must be unsigned integers")
        self.console_size = [*size, 0, 0][:2]


# --------------------------------------------------------------------------- networking


class EndpointIPAMConfig(msgspec.Struct, omit_defaults=True, kw_only=True):
    IPv4Address: str = ""
    IPv6Address: str = ""
    LinkLocalIPs: list[str] | None = None


class EndpointSettings(msgspec.Struct, rename="pascal", kw_only=True):
    """network.EndpointSettings as a create request carries it."""

    ipam_config: EndpointIPAMConfig | None = msgspec.field(default=None, name="IPAMConfig")
    links: list[str] | None = None
    aliases: list[str] | None = None
    driver_opts: dict[str, str] | None = None
    gw_priority: Int64 = 0
    network_id: str = msgspec.field(default="", name="NetworkID")
    endpoint_id: str = msgspec.field(default="", name="EndpointID")
    gateway: str = ""
    ip_address: str = msgspec.field(default="", name="IPAddress")
    mac_address: str = ""
    ip_prefix_len: Int64 = msgspec.field(default=0, name="IPPrefixLen")
    ipv6_gateway: str = msgspec.field(default="", name="IPv6Gateway")
    global_ipv6_address: str = msgspec.field(default="", name="GlobalIPv6Address")
    global_ipv6_prefix_len: Int64 = msgspec.field(default=0, name="GlobalIPv6PrefixLen")
    dns_names: list[str] | None = msgspec.field(default=None, name="DNSNames")


class NetworkingConfig(msgspec.Struct, rename="pascal", kw_only=True):
    endpoints_config: dict[str, EndpointSettings | None] | None = None


# --------------------------------------------------------------------------- create body


class CreateRequest(Config, kw_only=True):
    """The POST /containers/create body: Config's fields at the top level (Go embeds *Config),
    plus HostConfig and NetworkingConfig."""

    host_config: HostConfig | None = None
    networking_config: NetworkingConfig | None = None

    def config(self) -> Config:
        """The embedded Config part, as its own Struct."""
        names = Config.__struct_fields__
        return Config(**{n: getattr(self, n) for n in names})


def _struct_info(cls: type[msgspec.Struct]) -> mi.StructType:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    return info


_CONFIG_KEYS = frozenset(f.encode_name.lower() for f in _struct_info(Config).fields)
_CREATE_INFO = _struct_info(CreateRequest)
_STR_SLICES = ("Cmd", "Entrypoint", "Shell")


def decode_create_request(data: bytes) -> CreateRequest:
    """Decode a create body as dockerd does (Go JSON rules, then decodeCreateRequest's defaults).

    Raises InvalidParameter: "invalid JSON: ..." for syntax and type errors (naming the field),
    "config cannot be empty in order to create a container" when no Config field is present.
    """
    try:
        raw = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise errdefs.InvalidParameter(f"invalid JSON: {exc or 'malformed JSON'}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        kind = json_kind(raw)
        raise errdefs.InvalidParameter(
            f"invalid JSON: json: cannot unmarshal {kind} into Go value of type "
            "container.CreateRequest"
        )
    has_config = any(k.lower() in _CONFIG_KEYS for k in raw)
    cleaned = go_normalize(raw, _CREATE_INFO)
    for key in _STR_SLICES:  # strslice.StrSlice (dockerd <= 28) also takes a single string
        if isinstance(cleaned.get(key), str):
            cleaned[key] = [cleaned[key]]
    try:
        req = msgspec.convert(cleaned, type=CreateRequest)
    except msgspec.ValidationError as exc:
        raise errdefs.InvalidParameter(f"invalid JSON: {exc}") from None
    if not has_config:
        raise errdefs.InvalidParameter("config cannot be empty in order to create a container")
    if req.volumes is None:
        req.volumes = {}
    if req.host_config is None:
        req.host_config = HostConfig()
    if req.host_config.port_bindings is None:
        req.host_config.port_bindings = {}
    if req.host_config.network_mode == "":
        req.host_config.network_mode = "default"
    if req.networking_config is None:
        req.networking_config = NetworkingConfig()
    if req.networking_config.endpoints_config is None:
        req.networking_config.endpoints_config = {}
    return req


def go_normalize(value: Any, info: mi.Type) -> Any:
    """Apply Go's decoding rules to decoded JSON before msgspec converts it to `info`'s type:
    a `null` struct field is dropped (the field keeps its zero value), a `null` list element or
    map value becomes the element's zero value, and object keys match field names
    case-insensitively when they do not match exactly."""
    if isinstance(info, mi.UnionType):
        if value is None and any(isinstance(t, mi.NoneType) for t in info.types):
            return None
        for t in info.types:
            if not isinstance(t, mi.NoneType):
                return go_normalize(value, t) if value is not None else _zero(t)
        return value
    if value is None:
        return _zero(info)
    if isinstance(info, mi.StructType) and isinstance(value, dict):
        fields = {f.encode_name: f for f in info.fields}
        folded = {name.lower(): name for name in fields}
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = key if key in fields else folded.get(str(key).lower())
            if name is None:
                continue  # Go ignores unknown fields
            if item is None and not _nullable(fields[name].type):
                out.pop(name, None)
                continue
            out[name] = go_normalize(item, fields[name].type)
        return out
    if isinstance(info, mi.ListType) and isinstance(value, list):
        return [go_normalize(v, info.item_type) for v in value]
    if isinstance(info, mi.DictType) and isinstance(value, dict):
        return {k: go_normalize(v, info.value_type) for k, v in value.items()}
    return value


def _nullable(info: mi.Type) -> bool:
    return isinstance(info, mi.UnionType) and any(isinstance(t, mi.NoneType) for t in info.types)


def _zero(info: mi.Type) -> Any:
    """Go's zero value of a non-pointer element, in the shape msgspec converts from."""
    if isinstance(info, mi.StrType):
        return ""
    if isinstance(info, mi.IntType):
        return 0
    if isinstance(info, mi.FloatType):
        return 0.0
    if isinstance(info, mi.BoolType):
        return False
    if isinstance(info, mi.StructType | mi.DictType):
        return {}
    if isinstance(info, mi.ListType):
        return []
    return None


def json_kind(value: Any) -> str:
    """The JSON type name Go's decoder uses in its errors."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# --------------------------------------------------------------------------- encoding


def _omit_empty(wire: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
    """Drop Go `omitempty` fields holding an empty value (false, 0, "", nil, empty slice/map)."""
    empty: tuple[Any, ...] = (None, False, 0, "", [], {})
    return {k: v for k, v in wire.items() if k not in names or v not in empty}


def config_wire(config: Config) -> dict[str, Any]:
    """Config as dockerd encodes it (container inspect's `Config`)."""
    if isinstance(config, CreateRequest):
        config = config.config()
    wire: dict[str, Any] = msgspec.to_builtins(config)
    names = Config.OMITEMPTY
    if config.stop_timeout is not None:
        names = names - {"StopTimeout"}  # *int: only nil is empty, a pointer to 0 is sent
    return _omit_empty(wire, names)


def host_config_wire(host_config: HostConfig) -> dict[str, Any]:
    """HostConfig as dockerd encodes it (container inspect's `HostConfig`)."""
    wire: dict[str, Any] = msgspec.to_builtins(host_config)
    names = HostConfig.OMITEMPTY
    if host_config.init is not None:
        names = names - {"Init"}  # *bool: a pointer to false is sent
    return _omit_empty(wire, names)
