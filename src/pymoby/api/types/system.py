"""Wire types of GET /version, GET /info and GET /system/df, and their per-version encoders.

Rule: each Struct mirrors moby's Go type field for field, in the same order, with the exact
JSON names. A field Go marks `omitempty` has a default and is dropped when equal to it
(`omit_defaults=True`); every other field has no default, so it is always encoded and every
producer must set it. Fields whose presence depends on the request's API version are decided
in exactly one place: the `*_wire` functions below (one `if` per field, citing the version).

Facts behind the version rules (moby api/docs/CHANGELOG.md and daemon/server/router/system):
- /info `Runtimes[*].status`: added in 1.44, stripped below.
- /info `Containerd`: added in 1.46 (pymoby runs no containerd, so it is always absent).
- /info `RegistryConfig.AllowNondistributableArtifacts{CIDRs,Hostnames}`: sent (empty) below
  1.47, gone from 1.47.
- /info `FirewallBackend`: added in 1.49; `{Containerd,Runc,Init}Commit.Expected` (= ID) sent
  below 1.49 only.
- /info `DiscoveredDevices`: added in 1.50; `BridgeNfIptables`/`BridgeNfIp6tables` sent below
  1.50 only. (dockerd >= 28 always sends false there; pymoby sends the real sysctl values.)
- /info `KernelMemory` (gone since dockerd 23) and `KernelMemoryTCP` (removed in 1.52, omitted
  whenever unsupported before) are never sent: omitting them is valid at every version.
- /system/df: below 1.52 the legacy shape (`LayersSize`, `Images`, `Containers`, `Volumes`,
  `BuildCache`; `BuilderSize` below 1.42); 1.52 adds `ImageUsage`, `ContainerUsage`,
  `VolumeUsage`, `BuildCacheUsage` and keeps the legacy fields unless `verbose` is set.
  `type` filtering exists from 1.42. The 1.52 names are those of moby's Go type and client
  (`ImageUsage`, ...); the 1.52 swagger (`ImagesDiskUsage`, ...) and CHANGELOG (`ImagesUsage`,
  ...) spell them differently, but the docker CLI decodes the Go names.
"""

from __future__ import annotations

from typing import Any

import msgspec

from pymoby.api.versions import ApiVersion

V1_42 = ApiVersion(1, 42)
V1_44 = ApiVersion(1, 44)
V1_46 = ApiVersion(1, 46)
V1_47 = ApiVersion(1, 47)
V1_49 = ApiVersion(1, 49)
V1_50 = ApiVersion(1, 50)
V1_52 = ApiVersion(1, 52)

# --------------------------------------------------------------------------- GET /version


class PlatformInfo(msgspec.Struct, rename="pascal"):
    """`Platform` of GET /version (a Go struct: always encoded, even when empty)."""

    name: str


class ComponentVersion(msgspec.Struct, rename="pascal", omit_defaults=True, kw_only=True):
    name: str
    version: str
    details: dict[str, str] = msgspec.field(default_factory=dict)


class Version(msgspec.Struct, rename="pascal", omit_defaults=True, kw_only=True):
    """GET /version (moby system.VersionResponse)."""

    platform: PlatformInfo
    version: str
    api_version: str
    min_api_version: str = msgspec.field(default="", name="MinAPIVersion")
    os: str
    arch: str
    components: list[ComponentVersion] = msgspec.field(default_factory=list)
    git_commit: str = ""
    go_version: str = ""
    kernel_version: str = ""
    experimental: bool = False
    build_time: str = ""


def version_wire(v: Version, api: ApiVersion) -> dict[str, Any]:
    """GET /version as JSON-ready builtins. No field of it depends on the API version."""
    del api
    result: dict[str, Any] = msgspec.to_builtins(v)
    return result


def encode_version(v: Version, api: ApiVersion) -> bytes:
    return msgspec.json.encode(version_wire(v, api))


# --------------------------------------------------------------------------- GET /info


class PluginsInfo(msgspec.Struct, rename="pascal", kw_only=True):
    volume: list[str] = msgspec.field(default_factory=list)
    network: list[str] = msgspec.field(default_factory=list)
    authorization: list[str] = msgspec.field(default_factory=list)
    log: list[str] = msgspec.field(default_factory=list)


class IndexInfo(msgspec.Struct, rename="pascal", kw_only=True):
    name: str
    mirrors: list[str]
    secure: bool
    official: bool


class RegistryServiceConfig(msgspec.Struct, kw_only=True):
    InsecureRegistryCIDRs: list[str]
    IndexConfigs: dict[str, IndexInfo]
    Mirrors: list[str]


class NamedGenericResource(msgspec.Struct, rename="pascal"):
    kind: str
    value: str


class DiscreteGenericResource(msgspec.Struct, rename="pascal"):
    kind: str
    value: int


class GenericResource(msgspec.Struct, rename="pascal", omit_defaults=True, kw_only=True):
    named_resource_spec: NamedGenericResource | None = None
    discrete_resource_spec: DiscreteGenericResource | None = None


class Runtime(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One entry of `Runtimes` (moby RuntimeWithStatus; runc-compatible runtimes only)."""

    path: str = ""
    runtime_args: list[str] = msgspec.field(default_factory=list, name="runtimeArgs")
    status: dict[str, str] = msgspec.field(default_factory=dict)


class PeerNode(msgspec.Struct, rename="pascal"):
    node_id: str = msgspec.field(name="NodeID")
    addr: str


class SwarmInfo(msgspec.Struct, rename="pascal", omit_defaults=True, kw_only=True):
    """`Swarm` of GET /info. pymoby has no swarm mode, so `Cluster` (omitempty, only set on a
    manager) is not modelled; the node is always `inactive`."""

    node_id: str = msgspec.field(name="NodeID")
    node_addr: str
    local_node_state: str
    control_available: bool
    error: str
    remote_managers: list[PeerNode] | None
    nodes: int = 0
    managers: int = 0


def inactive_swarm() -> SwarmInfo:
    """What dockerd reports when the node is not part of a swarm."""
    return SwarmInfo(
        node_id="",
        node_addr="",
        local_node_state="inactive",
        control_available=False,
        error="",
        remote_managers=None,
    )


class Commit(msgspec.Struct):
    """Commit of a helper binary (`Expected` is added by `info_wire` below API 1.49)."""

    ID: str


class NetworkAddressPool(msgspec.Struct, rename="pascal"):
    base: str
    size: int


class FirewallInfo(msgspec.Struct, rename="pascal", omit_defaults=True, kw_only=True):
    driver: str
    info: list[tuple[str, str]] = msgspec.field(default_factory=list)


class DeviceInfo(msgspec.Struct):
    Source: str
    ID: str


class ContainerdNamespaces(msgspec.Struct, rename="pascal"):
    containers: str
    plugins: str


class ContainerdInfo(msgspec.Struct, rename="pascal", omit_defaults=True, kw_only=True):
    address: str = ""
    namespaces: ContainerdNamespaces


class Info(msgspec.Struct, rename="pascal", omit_defaults=True, kw_only=True):
    """GET /info (moby system.Info, API 1.52 shape plus the legacy bridge-nf facts)."""

    id: str = msgspec.field(name="ID")
    containers: int
    containers_running: int
    containers_paused: int
    containers_stopped: int
    images: int
    driver: str
    driver_status: list[tuple[str, str]]
    plugins: PluginsInfo
    memory_limit: bool
    swap_limit: bool
    cpu_cfs_period: bool
    cpu_cfs_quota: bool
    cpu_shares: bool = msgspec.field(name="CPUShares")
    cpu_set: bool = msgspec.field(name="CPUSet")
    pids_limit: bool
    ipv4_forwarding: bool = msgspec.field(name="IPv4Forwarding")
    debug: bool
    n_fd: int
    oom_kill_disable: bool
    n_goroutines: int
    system_time: str
    logging_driver: str
    cgroup_driver: str
    cgroup_version: str = ""
    n_events_listener: int
    kernel_version: str
    operating_system: str
    os_version: str = msgspec.field(name="OSVersion")
    os_type: str = msgspec.field(name="OSType")
    architecture: str
    index_server_address: str
    registry_config: RegistryServiceConfig | None
    ncpu: int = msgspec.field(name="NCPU")
    mem_total: int
    generic_resources: list[GenericResource]
    docker_root_dir: str
    http_proxy: str
    https_proxy: str
    no_proxy: str
    name: str
    labels: list[str]
    experimental_build: bool
    server_version: str
    runtimes: dict[str, Runtime]
    default_runtime: str
    swarm: SwarmInfo
    live_restore_enabled: bool
    isolation: str
    init_binary: str
    containerd_commit: Commit
    runc_commit: Commit
    init_commit: Commit
    security_options: list[str]
    product_license: str = ""
    default_address_pools: list[NetworkAddressPool] = msgspec.field(default_factory=list)
    firewall_backend: FirewallInfo | None = None
    cdi_spec_dirs: list[str] = msgspec.field(name="CDISpecDirs")
    discovered_devices: list[DeviceInfo] = msgspec.field(default_factory=list)
    containerd: ContainerdInfo | None = None
    warnings: list[str]
    # Only on the wire below API 1.50 (see info_wire); never encoded from here directly.
    bridge_nf_iptables: bool = msgspec.field(default=False, name="BridgeNfIptables")
    bridge_nf_ip6tables: bool = msgspec.field(default=False, name="BridgeNfIp6tables")


_LEGACY_BRIDGE_NF = ("BridgeNfIptables", "BridgeNfIp6tables")


def info_wire(info: Info, api: ApiVersion) -> dict[str, Any]:
    """GET /info as JSON-ready builtins for a client speaking `api`."""
    d: dict[str, Any] = msgspec.to_builtins(info)
    for key in _LEGACY_BRIDGE_NF:
        d.pop(key, None)
    if api < V1_44:
        for runtime in d["Runtimes"].values():
            runtime.pop("status", None)
    if api < V1_46:
        d.pop("Containerd", None)
    if api < V1_47 and d["RegistryConfig"] is not None:
        d["RegistryConfig"]["AllowNondistributableArtifactsCIDRs"] = []
        d["RegistryConfig"]["AllowNondistributableArtifactsHostnames"] = []
    if api < V1_49:
        d.pop("FirewallBackend", None)
        for key in ("ContainerdCommit", "RuncCommit", "InitCommit"):
            d[key]["Expected"] = d[key]["ID"]
    if api < V1_50:
        d.pop("DiscoveredDevices", None)
        d["BridgeNfIptables"] = info.bridge_nf_iptables
        d["BridgeNfIp6tables"] = info.bridge_nf_ip6tables
    return d


def encode_info(info: Info, api: ApiVersion) -> bytes:
    return msgspec.json.encode(info_wire(info, api))


# --------------------------------------------------------------------------- GET /system/df

CONTAINER_OBJECT = "container"
IMAGE_OBJECT = "image"
VOLUME_OBJECT = "volume"
BUILD_CACHE_OBJECT = "build-cache"
DISK_USAGE_OBJECTS = frozenset({CONTAINER_OBJECT, IMAGE_OBJECT, VOLUME_OBJECT, BUILD_CACHE_OBJECT})


class UsageSummary(msgspec.Struct, rename="pascal", omit_defaults=True, kw_only=True):
    """moby's {image,container,volume,build}.DiskUsage: every field omitempty.

    `items` holds the owning area's list entries (image summaries, container summaries,
    volumes, build-cache records) as Structs; they are encoded as they are.
    """

    active_count: int = 0
    items: list[msgspec.Struct] = msgspec.field(default_factory=list)
    reclaimable: int = 0
    total_count: int = 0
    total_size: int = 0


class DiskUsage(msgspec.Struct, kw_only=True):
    """Result of a disk-usage computation; None means that object type was not requested."""

    images: UsageSummary | None = None
    containers: UsageSummary | None = None
    volumes: UsageSummary | None = None
    build_cache: UsageSummary | None = None


def disk_usage_wire(du: DiskUsage, api: ApiVersion, *, verbose: bool = False) -> dict[str, Any]:
    """GET /system/df as JSON-ready builtins for a client speaking `api`.

    `LayersSize` is always part of the legacy shape (dockerd < 29 always sent it; 29 omits a
    zero), so clients indexing it never miss it. A requested type's legacy list is `[]` when
    empty; a type that was not requested is left out.
    """
    legacy = api < V1_52 or not verbose
    with_items = verbose or legacy  # dockerd computes items when either needs them
    d: dict[str, Any] = {}
    if legacy:
        d["LayersSize"] = du.images.total_size if du.images is not None else 0
        for key, usage in (
            ("Images", du.images),
            ("Containers", du.containers),
            ("Volumes", du.volumes),
            ("BuildCache", du.build_cache),
        ):
            if usage is not None:
                d[key] = msgspec.to_builtins(usage.items)
        if api < V1_42 and du.build_cache is not None and du.build_cache.total_size:
            d["BuilderSize"] = du.build_cache.total_size
    if api >= V1_52:
        for key, usage in (
            ("ImageUsage", du.images),
            ("ContainerUsage", du.containers),
            ("VolumeUsage", du.volumes),
            ("BuildCacheUsage", du.build_cache),
        ):
            if usage is None:
                continue
            summary: dict[str, Any] = msgspec.to_builtins(usage)
            if not with_items:
                summary.pop("Items", None)
            d[key] = summary
    return d


def encode_disk_usage(du: DiskUsage, api: ApiVersion, *, verbose: bool = False) -> bytes:
    return msgspec.json.encode(disk_usage_wire(du, api, verbose=verbose))
