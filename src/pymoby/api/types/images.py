"""Image wire types: the image config document, manifests, and the /images endpoints' shapes.

Rule: documents (config, manifest, index) are Structs for *parsing*; an image's config bytes are
kept verbatim elsewhere (its ID is the sha256 of exactly those bytes) and never re-encoded from
these Structs. Response Structs mirror moby's Go types (API 1.52, dockerd 29) field for field and
in Go's order; what a client of an older API version sees is decided in exactly one place, the
`*_wire` functions below (one `if` per field, citing the version). Go maps are written with
sorted keys, and where dockerd wraps a response in its `compat` helper (a Go map) every object
of that response has sorted keys, as there.

Facts behind the version rules (moby api/docs/CHANGELOG.md, daemon/server/router/image):
- GET /images/json: `<none>:<none>` / `<none>@<none>` for an image without references below
  1.43 (else `[]`); `VirtualSize` (= Size) below 1.44; `Containers` is -1 below 1.51.
- GET /images/{name}/json: `VirtualSize` below 1.44, and `Created` "0001-01-01T00:00:00Z" when
  the config has none (omitted from 1.44); `Container` and `ContainerConfig` below 1.45;
  `Parent`, `Comment`, `DockerVersion`, `Author` always below 1.52, from 1.52 only when set
  (`Parent`, `DockerVersion` via compat, so the response is then key-sorted). `Config` is the
  image's run config as Docker's OCI image config (every field omitempty); below 1.52 `Cmd`,
  `Entrypoint`, `Env`, `Labels`, `OnBuild`, `User`, `Volumes`, `WorkingDir` are always present
  and below 1.50 also `Hostname`, `Domainname`, `AttachStd*`, `Tty`, `OpenStdin`, `StdinOnce`,
  `Image` (always empty: they are not part of an image's configuration).
- `Descriptor`, `Manifests` (1.47/1.48+, containerd image store only) are never sent.
- History, delete and prune responses do not depend on the version.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from pymoby import errdefs
from pymoby.api.versions import ApiVersion

V1_43 = ApiVersion(1, 43)
V1_44 = ApiVersion(1, 44)
V1_45 = ApiVersion(1, 45)
V1_50 = ApiVersion(1, 50)
V1_51 = ApiVersion(1, 51)
V1_52 = ApiVersion(1, 52)

# -- media types (docker distribution schema2 + OCI image-spec v1.1) ---------------------------

MEDIA_TYPE_DOCKER_SCHEMA1_MANIFEST = "application/vnd.docker.distribution.manifest.v1+json"
MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
MEDIA_TYPE_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_TYPE_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_TYPE_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MEDIA_TYPE_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MEDIA_TYPE_DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
MEDIA_TYPE_DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar"
MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
MEDIA_TYPE_OCI_DESCRIPTOR = "application/vnd.oci.descriptor.v1+json"
MEDIA_TYPE_OCI_LAYOUT_HEADER = "application/vnd.oci.layout.header.v1+json"
MEDIA_TYPE_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_OCI_EMPTY = "application/vnd.oci.empty.v1+json"
MEDIA_TYPE_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPE_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MEDIA_TYPE_OCI_NONDIST_LAYER = "application/vnd.oci.image.layer.nondistributable.v1.tar"
MEDIA_TYPE_OCI_NONDIST_LAYER_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
MEDIA_TYPE_OCI_NONDIST_LAYER_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

MANIFEST_MEDIA_TYPES = frozenset({MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_OCI_MANIFEST})
INDEX_MEDIA_TYPES = frozenset({MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_OCI_INDEX})
CONFIG_MEDIA_TYPES = frozenset({MEDIA_TYPE_DOCKER_CONFIG, MEDIA_TYPE_OCI_CONFIG})

ROOTFS_TYPE_LAYERS = "layers"
HISTORY_MISSING_ID = "<missing>"  # history rows of layers that are not a local image
ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time in JSON

# -- the image config document (docker image v1.x / OCI image config) -------------------------


class HealthConfig(msgspec.Struct, rename="pascal", omit_defaults=True, kw_only=True):
    """Docker's HealthcheckConfig; durations are Go time.Duration nanoseconds."""

    test: list[str] | None = None
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


class ContainerConfig(msgspec.Struct, rename="pascal", omit_defaults=True, kw_only=True):
    """moby's container.Config as found in image configs (`config`, `container_config`).

    OCI image configs carry a subset of it (User, ExposedPorts, Env, Entrypoint, Cmd, Volumes,
    WorkingDir, Labels, StopSignal, ArgsEscaped) with the same names. Unknown keys are ignored;
    `null` lists and maps decode to None, as Go decodes them to nil.
    """

    hostname: str = ""
    domainname: str = ""
    user: str = ""
    attach_stdin: bool = False
    attach_stdout: bool = False
    attach_stderr: bool = False
    exposed_ports: dict[str, Any] | None = None
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    env: list[str] | None = None
    cmd: list[str] | None = None
    healthcheck: HealthConfig | None = None
    args_escaped: bool = False
    image: str = ""
    volumes: dict[str, Any] | None = None
    working_dir: str = ""
    entrypoint: list[str] | None = None
    network_disabled: bool = False
    mac_address: str = ""
    on_build: list[str] | None = None
    labels: dict[str, str] | None = None
    stop_signal: str = ""
    stop_timeout: int | None = None
    shell: list[str] | None = None


class RootFSDoc(msgspec.Struct, omit_defaults=True, kw_only=True):
    type: str = ""
    diff_ids: list[str] | None = None


class HistoryDoc(msgspec.Struct, omit_defaults=True, kw_only=True):
    created: str | None = None
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False


class ImageConfig(msgspec.Struct, omit_defaults=True, kw_only=True):
    """The image config document (Docker's image.Image = V1Image + rootfs/history, OCI Image).

    `parent` and `container_config` are legacy-builder leftovers kept for old API versions;
    dockerd takes an image's parent from its store, not from this document.
    """

    id: str = ""
    parent: str = ""
    comment: str = ""
    created: str | None = None
    container: str = ""
    container_config: ContainerConfig | None = None
    docker_version: str = ""
    author: str = ""
    config: ContainerConfig | None = None
    architecture: str = ""
    variant: str = ""
    os: str = ""
    os_version: str = msgspec.field(name="os.version", default="")
    os_features: list[str] | None = msgspec.field(name="os.features", default=None)
    rootfs: RootFSDoc | None = None
    history: list[HistoryDoc] | None = None

    @property
    def diff_ids(self) -> list[str]:
        return list(self.rootfs.diff_ids or ()) if self.rootfs is not None else []


_CONFIG_DECODER = msgspec.json.Decoder(ImageConfig)


def image_comment(cfg: ImageConfig) -> str:
    """Inspect's `Comment`: the config's, else that of the last history entry (dockerd)."""
    if cfg.comment or not cfg.history:
        return cfg.comment
    return cfg.history[-1].comment


def decode_image_config(data: bytes) -> ImageConfig:
    """Parse an image config as dockerd's image.NewFromJSON does (InvalidParameter if bad)."""
    try:
        cfg = _CONFIG_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise errdefs.InvalidParameter(f"invalid image JSON: {exc}") from exc
    if cfg.rootfs is None:
        raise errdefs.InvalidParameter("invalid image JSON, no RootFS key")
    if cfg.created is not None:
        parse_rfc3339(cfg.created)
    for item in cfg.history or ():
        if item.created is not None:
            parse_rfc3339(item.created)
    return cfg


# -- manifests and indexes ---------------------------------------------------------------------


class Platform(msgspec.Struct, omit_defaults=True, kw_only=True):
    architecture: str = ""
    os: str = ""
    os_version: str = msgspec.field(name="os.version", default="")
    os_features: list[str] | None = msgspec.field(name="os.features", default=None)
    variant: str = ""
    features: list[str] | None = None  # docker manifest lists only


class Descriptor(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    media_type: str = ""
    digest: str
    size: int
    urls: list[str] | None = None
    annotations: dict[str, str] | None = None
    data: bytes | None = None
    platform: Platform | None = None
    artifact_type: str = ""


class Manifest(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    """An image manifest: docker schema2 or OCI (same shape)."""

    schema_version: int
    media_type: str = ""
    artifact_type: str = ""
    config: Descriptor
    layers: list[Descriptor] = msgspec.field(default_factory=list)
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None


class Index(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    """A manifest list (docker) or image index (OCI)."""

    schema_version: int
    media_type: str = ""
    artifact_type: str = ""
    manifests: list[Descriptor] = msgspec.field(default_factory=list)
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None


# -- responses ---------------------------------------------------------------------------------


class ImageSummary(msgspec.Struct, kw_only=True):
    """One entry of GET /images/json (moby image.Summary)."""

    containers: int = msgspec.field(name="Containers", default=-1)
    created: int = msgspec.field(name="Created")  # seconds; 0 when the config has none
    id: str = msgspec.field(name="Id")
    labels: dict[str, str] | None = msgspec.field(name="Labels", default=None)
    parent_id: str = msgspec.field(name="ParentId", default="")
    repo_digests: list[str] | None = msgspec.field(name="RepoDigests", default=None)
    repo_tags: list[str] | None = msgspec.field(name="RepoTags", default=None)
    shared_size: int = msgspec.field(name="SharedSize", default=-1)  # -1: not computed
    size: int = msgspec.field(name="Size")


class GraphDriverData(msgspec.Struct):
    data: dict[str, str] | None = msgspec.field(name="Data")
    name: str = msgspec.field(name="Name")


class ImageInspect(msgspec.Struct, kw_only=True):
    """GET /images/{name}/json: the data of moby's InspectResponse plus its legacy extras.

    `created` and `last_tag_time` are already formatted (RFC 3339 with nanoseconds, as Go
    prints a time.Time; `format_rfc3339_nano`); "" / ZERO_TIME when unknown. `config` and
    `container_config` are the parsed documents; `image_inspect_wire` shapes them.
    """

    id: str
    repo_tags: list[str] = msgspec.field(default_factory=list)
    repo_digests: list[str] = msgspec.field(default_factory=list)
    parent: str = ""
    comment: str = ""
    created: str = ""
    docker_version: str = ""
    author: str = ""
    config: ContainerConfig | None = None
    architecture: str = ""
    variant: str = ""
    os: str = ""
    os_version: str = ""
    size: int = 0
    graph_driver: GraphDriverData | None = None
    root_fs_type: str = ""
    root_fs_layers: list[str] = msgspec.field(default_factory=list)
    last_tag_time: str = ZERO_TIME
    container: str = ""
    container_config: ContainerConfig | None = None


class HistoryResponseItem(msgspec.Struct, kw_only=True):
    """One row of GET /images/{name}/history, newest first. Tags is null when there are none."""

    comment: str = msgspec.field(name="Comment", default="")
    created: int = msgspec.field(name="Created", default=0)
    created_by: str = msgspec.field(name="CreatedBy", default="")
    id: str = msgspec.field(name="Id", default=HISTORY_MISSING_ID)
    size: int = msgspec.field(name="Size", default=0)
    tags: list[str] | None = msgspec.field(name="Tags", default=None)


class DeleteResponse(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One item of DELETE /images/{name}: `{"Untagged": ref}` or `{"Deleted": id}`."""

    deleted: str = msgspec.field(name="Deleted", default="")
    untagged: str = msgspec.field(name="Untagged", default="")


class ImagesPruneReport(msgspec.Struct, kw_only=True):
    """POST /images/prune. ImagesDeleted is null (Go's nil slice) when nothing was deleted."""

    images_deleted: list[DeleteResponse] | None = msgspec.field(name="ImagesDeleted", default=None)
    space_reclaimed: int = msgspec.field(name="SpaceReclaimed", default=0)


# -- per-version encoders ------------------------------------------------------------------------

_ENCODER = msgspec.json.Encoder()


def _sorted_deep(value: Any) -> Any:
    """A Go map[string]any round trip: every object's keys sorted."""
    if isinstance(value, dict):
        return {k: _sorted_deep(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_deep(v) for v in value]
    return value


def _go_map(m: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if m is None else {k: m[k] for k in sorted(m)}


def _go_set(m: dict[str, Any] | None) -> dict[str, Any] | None:
    """map[string]struct{}: keys sorted, every value `{}`."""
    return None if m is None else {k: {} for k in sorted(m)}


def image_summary_wire(s: ImageSummary, api: ApiVersion) -> dict[str, Any]:
    d: dict[str, Any] = msgspec.to_builtins(s)
    d["Labels"] = _go_map(s.labels)
    if api < V1_43:
        if not s.repo_tags and not s.repo_digests:
            d["RepoTags"] = [*(s.repo_tags or ()), "<none>:<none>"]
            d["RepoDigests"] = [*(s.repo_digests or ()), "<none>@<none>"]
    else:
        d["RepoTags"] = list(s.repo_tags or ())
        d["RepoDigests"] = list(s.repo_digests or ())
    if api < V1_51:
        d["Containers"] = -1
    if api < V1_44:
        d["VirtualSize"] = s.size
        wrapped: dict[str, Any] = _sorted_deep(d)
        return wrapped
    return d


def encode_image_list(items: list[ImageSummary], api: ApiVersion) -> bytes:
    return _ENCODER.encode([image_summary_wire(s, api) for s in items])


def _health_wire(h: HealthConfig) -> dict[str, Any]:
    d: dict[str, Any] = msgspec.to_builtins(h)
    if not h.test:
        d.pop("Test", None)
    return d


def image_config_wire(c: ContainerConfig | None) -> dict[str, Any]:
    """The image's run config as moby's DockerOCIImageConfig (1.52): every field omitempty."""
    d: dict[str, Any] = {}
    if c is None:
        return d
    if c.user:
        d["User"] = c.user
    if c.exposed_ports:
        d["ExposedPorts"] = _go_set(c.exposed_ports)
    for key, value in (("Env", c.env), ("Entrypoint", c.entrypoint), ("Cmd", c.cmd)):
        if value:
            d[key] = list(value)
    if c.volumes:
        d["Volumes"] = _go_set(c.volumes)
    if c.working_dir:
        d["WorkingDir"] = c.working_dir
    if c.labels:
        d["Labels"] = _go_map(c.labels)
    if c.stop_signal:
        d["StopSignal"] = c.stop_signal
    if c.args_escaped:
        d["ArgsEscaped"] = True
    if c.healthcheck is not None:
        d["Healthcheck"] = _health_wire(c.healthcheck)
    if c.on_build:
        d["OnBuild"] = list(c.on_build)
    if c.shell:
        d["Shell"] = list(c.shell)
    return d


def container_config_wire(c: ContainerConfig | None) -> dict[str, Any]:
    """moby's container.Config as Go encodes it (the `ContainerConfig` of API < 1.45)."""
    c = c or ContainerConfig()
    d: dict[str, Any] = {
        "Hostname": c.hostname,
        "Domainname": c.domainname,
        "User": c.user,
        "AttachStdin": c.attach_stdin,
        "AttachStdout": c.attach_stdout,
        "AttachStderr": c.attach_stderr,
    }
    if c.exposed_ports:
        d["ExposedPorts"] = _go_set(c.exposed_ports)
    d.update(Tty=c.tty, OpenStdin=c.open_stdin, StdinOnce=c.stdin_once, Env=c.env, Cmd=c.cmd)
    if c.healthcheck is not None:
        d["Healthcheck"] = _health_wire(c.healthcheck)
    if c.args_escaped:
        d["ArgsEscaped"] = True
    d.update(
        Image=c.image, Volumes=_go_set(c.volumes), WorkingDir=c.working_dir, Entrypoint=c.entrypoint
    )
    if c.network_disabled:
        d["NetworkDisabled"] = True
    if c.on_build:
        d["OnBuild"] = c.on_build
    d["Labels"] = _go_map(c.labels)
    if c.stop_signal:
        d["StopSignal"] = c.stop_signal
    if c.stop_timeout is not None:
        d["StopTimeout"] = c.stop_timeout
    if c.shell:
        d["Shell"] = c.shell
    return d


# Config fields dockerd adds (when absent) for older clients: moby inspect_response.go.
_LEGACY_CONFIG_1_50: dict[str, Any] = {
    "Cmd": None,
    "Entrypoint": None,
    "Env": None,
    "Labels": None,
    "OnBuild": None,
    "User": "",
    "Volumes": None,
    "WorkingDir": "",
}
_LEGACY_CONFIG_1_49: dict[str, Any] = {
    **_LEGACY_CONFIG_1_50,
    "AttachStderr": False,
    "AttachStdin": False,
    "AttachStdout": False,
    "Domainname": "",
    "Hostname": "",
    "Image": "",
    "OpenStdin": False,
    "StdinOnce": False,
    "Tty": False,
}


def image_inspect_wire(i: ImageInspect, api: ApiVersion) -> dict[str, Any]:
    """GET /images/{name}/json as JSON-ready builtins for a client speaking `api`."""
    d: dict[str, Any] = {
        "Id": i.id,
        "RepoTags": list(i.repo_tags),
        "RepoDigests": list(i.repo_digests),
    }
    for key, value in (("Comment", i.comment), ("Created", i.created), ("Author", i.author)):
        if value:
            d[key] = value
    config = image_config_wire(i.config)
    d["Config"] = config
    d["Architecture"] = i.architecture
    if i.variant:
        d["Variant"] = i.variant
    d["Os"] = i.os
    if i.os_version:
        d["OsVersion"] = i.os_version
    d["Size"] = i.size
    if i.graph_driver is not None:
        d["GraphDriver"] = {"Data": _go_map(i.graph_driver.data), "Name": i.graph_driver.name}
    root_fs: dict[str, Any] = {}
    if i.root_fs_type:
        root_fs["Type"] = i.root_fs_type
    if i.root_fs_layers:
        root_fs["Layers"] = list(i.root_fs_layers)
    d["RootFS"] = root_fs
    d["Metadata"] = {"LastTagTime": i.last_tag_time or ZERO_TIME}

    extra: dict[str, Any] = {}
    wrapped = False
    if api < V1_44:
        extra["VirtualSize"] = i.size
        d["Created"] = i.created or ZERO_TIME
        wrapped = True
    if api < V1_45:
        extra["Container"] = i.container
        extra["ContainerConfig"] = container_config_wire(i.container_config)
        wrapped = True
    if api < V1_52:
        extra.update(
            Parent=i.parent, Comment=i.comment, DockerVersion=i.docker_version, Author=i.author
        )
        legacy = _LEGACY_CONFIG_1_49 if api < V1_50 else _LEGACY_CONFIG_1_50
        for key, value in legacy.items():
            if config.get(key) is None:
                config[key] = value
        wrapped = True
    else:
        if i.parent:
            extra["Parent"] = i.parent
            wrapped = True
        if i.docker_version:
            extra["DockerVersion"] = i.docker_version
            wrapped = True
    for key, value in extra.items():  # compat.WithExtraFields: fill only absent or null keys
        if d.get(key) is None:
            d[key] = value
    if wrapped:
        d = _sorted_deep(d)
    return d


def encode_image_inspect(i: ImageInspect, api: ApiVersion) -> bytes:
    return _ENCODER.encode(image_inspect_wire(i, api))


def encode_history(items: list[HistoryResponseItem]) -> bytes:
    return _ENCODER.encode(items)


def encode_delete(items: list[DeleteResponse]) -> bytes:
    return _ENCODER.encode(items)


def encode_prune_report(report: ImagesPruneReport) -> bytes:
    return _ENCODER.encode(report)


# -- time.Time as Go's encoding/json reads and writes it -------------------------------------

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:Z|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = 1_000_000_000


def parse_rfc3339(text: str) -> tuple[int, int]:
    """An RFC 3339 time as Go's time.Time.UnmarshalJSON accepts it.

    Returns (nanoseconds since the Unix epoch, UTC offset in seconds); fractions beyond
    nanoseconds are truncated. Raises InvalidParameter naming the value.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise errdefs.InvalidParameter(f'parsing time "{text}": not an RFC 3339 timestamp')
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    offset = 0
    if match.group(8):
        oh, om = int(match.group(9)), int(match.group(10))
        if oh > 23 or om > 59:
            raise errdefs.InvalidParameter(f'parsing time "{text}": time zone offset out of range')
        offset = (oh * 3600 + om * 60) * (-1 if match.group(8) == "-" else 1)
    try:
        local = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as exc:
        raise errdefs.InvalidParameter(f'parsing time "{text}": {exc}') from exc
    seconds = (local - _EPOCH) // timedelta(seconds=1) - offset
    fraction = (match.group(7) or "")[:9].ljust(9, "0")
    return seconds * _SECOND + int(fraction), offset


def format_rfc3339_nano(ns: int | None, offset: int = 0) -> str:
    """Go's time.Time JSON form (RFC3339Nano: trailing zeros of the fraction dropped, `Z` for
    UTC). None is Go's zero time."""
    if ns is None:
        return ZERO_TIME
    seconds, fraction = divmod(ns + offset * _SECOND, _SECOND)
    t = _EPOCH + timedelta(seconds=seconds)
    text = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    if offset == 0:
        return text + "Z"
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset) // 60, 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"
