"""What a `docker load` archive contains: the images, their layers and names, checked up front.

Rule: the whole archive is understood and checked BEFORE any layer is registered, so a broken
archive fails without side effects. Three layouts are read (dockerd's graph-driver Load reads
only the first; the others are what containerd-backed dockerd 25+ and skopeo write):

- `manifest.json` (docker save, any version): `[{"Config", "RepoTags", "Layers", "Parent"}]`,
  keys matched case-insensitively as Go's decoder does. Legacy archives name files
  `<id>.json` / `<id>/layer.tar` (shared layers as symlinks); dockerd 25+ names them
  `blobs/sha256/<hex>` next to an OCI layout. `manifest.json` wins when both exist.
- `index.json` without `manifest.json`: a plain OCI image layout. Each index entry (nested
  indexes: the entry matching the platform) is one image; its name is the descriptor's
  `io.containerd.image.name`, else its `org.opencontainers.image.ref.name`, parsed as a docker
  reference the way containerd-backed dockerd does (`two-layer` -> `two-layer:latest`); a
  name that does not parse leaves the image unnamed (`Loaded image ID: ...`).
- Neither: `invalid archive: does not contain a manifest.json` (dockerd's message).

Checks: documents decode; configs are image configs for Linux with as many diff IDs as the
manifest lists layers; a file named by a digest (`blobs/<alg>/<hex>`, `<hex>.json`) must hash to
it (documents here; layer blobs while they are registered); OCI descriptor sizes must match.
Layer diff IDs are checked by the layer store while extracting. Errors are InvalidParameter with
dockerd's wording where dockerd has one.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

from pymoby import errdefs
from pymoby.api import reference as refs
from pymoby.api.reference import Reference
from pymoby.api.types.images import (
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    decode_image_config,
)
from pymoby.daemon.images import platforms as plat
from pymoby.daemon.images.spool import InvalidArchive, Spool
from pymoby.store.images import image_id_of

MANIFEST_FILE = "manifest.json"
INDEX_FILE = "index.json"
REPOSITORIES_FILE = "repositories"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
_BLOB_NAME = re.compile(r"^(?:\./)?blobs/(sha256|sha512)/([0-9a-f]+)$")
_LEGACY_CONFIG = re.compile(r"^(?:\./)?([0-9a-f]{64})\.json$")


@dataclass(frozen=True, slots=True)
class LayerSource:
    """One layer of an image in the archive: where it is and what it must hash to."""

    name: str  # the archive name of the (maybe compressed) layer tar
    diff_id: str  # sha256 of the uncompressed tar (from the config)
    digest: str | None = None  # sha256 of the stored bytes, when the archive names it
    size: int | None = None  # the stored size, when a descriptor says it


@dataclass(slots=True)
class ImageSource:
    """One image to load: verbatim config bytes, layers base first, the names to tag."""

    config: bytes
    cfg: ImageConfig
    layers: list[LayerSource]
    tags: list[Reference] = field(default_factory=list)
    parent: str = ""  # docker manifest "Parent" (a locally built parent image ID)
    named: bool = False  # the archive named it (else "Loaded image ID")

    @property
    def image_id(self) -> str:
        return image_id_of(self.config)

    @property
    def platform(self) -> Platform:
        return Platform(
            os=self.cfg.os, architecture=self.cfg.architecture, variant=self.cfg.variant
        )


@dataclass(slots=True)
class Plan:
    kind: str  # "docker" (manifest.json) or "oci" (index.json)
    images: list[ImageSource]


def read_plan(spool: Spool, platform: Platform | None) -> Plan:
    """Understand the spooled archive; only images matching `platform` (when given)."""
    if spool.exists(MANIFEST_FILE):
        return Plan("docker", _docker_images(spool, platform))
    if spool.exists(INDEX_FILE):
        return Plan("oci", _oci_images(spool, platform))
    raise InvalidArchive(f"does not contain a {MANIFEST_FILE}")


# -- docker save (manifest.json) ----------------------------------------------------------------


def _go_field(item: dict[str, Any], name: str) -> Any:
    """Go's encoding/json field match: exact key first, then case-insensitive."""
    if name in item:
        return item[name]
    lowered = name.lower()
    for key, value in item.items():
        if key.lower() == lowered:
            return value
    return None


def _decode_json(data: bytes, what: str) -> Any:
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise InvalidArchive(f"failed to decode {what}: {exc}") from None


def _strings(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArchive(f"failed to decode {MANIFEST_FILE}: {what} must be a list of strings")
    return list(value)


def _docker_images(spool: Spool, platform: Platform | None) -> list[ImageSource]:
    manifest = _decode_json(spool.read_document(MANIFEST_FILE, MANIFEST_FILE), MANIFEST_FILE)
    if manifest is None:
        raise errdefs.InvalidParameter("invalid manifest, manifest cannot be null (but can be [])")
    if not isinstance(manifest, list):
        raise InvalidArchive(f"failed to decode {MANIFEST_FILE}: expected a JSON array")
    images = []
    for item in manifest:
        if not isinstance(item, dict):
            raise InvalidArchive(f"failed to decode {MANIFEST_FILE}: expected JSON objects")
        config_name = _go_field(item, "Config")
        if not isinstance(config_name, str) or not config_name:
            raise InvalidArchive(f"{MANIFEST_FILE} names no config for an image")
        config = spool.read_document(config_name, "config")
        _check_named_digest(config_name, config, "config")
        cfg = _config(config, config_name)
        if platform is not None and not plat.matches(platform, _platform_of(cfg)):
            continue
        layer_names = _strings(_go_field(item, "Layers"), "Layers")
        if len(layer_names) != len(cfg.diff_ids):
            raise errdefs.InvalidParameter(
                "invalid manifest, layers length mismatch: expected "
                f"{len(layer_names)}, got {len(cfg.diff_ids)}"
            )
        layers = []
        for name, diff_id in zip(layer_names, cfg.diff_ids, strict=True):
            match = _BLOB_NAME.match(name)
            digest = f"{match.group(1)}:{match.group(2)}" if match else None
            layers.append(LayerSource(name, diff_id, digest))
        tags = [_repo_tag(text) for text in _strings(_go_field(item, "RepoTags"), "RepoTags")]
        parent = _go_field(item, "Parent")
        images.append(
            ImageSource(
                config, cfg, layers, tags, parent if isinstance(parent, str) else "", bool(tags)
            )
        )
    return images


def _repo_tag(text: str) -> Reference:
    ref = refs.parse_normalized_named(text)
    if not ref.is_tagged or ref.is_digested:
        raise errdefs.InvalidParameter(f'invalid tag "{text}"')
    return ref


def _config(data: bytes, name: str) -> ImageConfig:
    cfg = decode_image_config(data)
    if not plat.os_supported(cfg.os):
        raise errdefs.InvalidParameter(f"cannot load {cfg.os} image on linux")
    return cfg


def _platform_of(cfg: ImageConfig) -> Platform:
    return Platform(os=cfg.os, architecture=cfg.architecture, variant=cfg.variant)


def _check_named_digest(name: str, data: bytes, what: str) -> None:
    """A file named by its digest must hash to it."""
    match = _BLOB_NAME.match(name)
    if match is not None:
        algorithm, hex_part = match.groups()
    else:
        legacy = _LEGACY_CONFIG.match(name)
        if legacy is None:
            return
        algorithm, hex_part = "sha256", legacy.group(1)
    actual = hashlib.new(algorithm, data).hexdigest()
    if actual != hex_part:
        raise InvalidArchive(f"{what} {name!r} does not match its digest: got {algorithm}:{actual}")


# -- OCI image layout (index.json) ------------------------------------------------------------


def blob_name(digest: str) -> str:
    algorithm, _, hex_part = digest.partition(":")
    if algorithm not in ("sha256", "sha512") or not re.fullmatch(r"[0-9a-f]+", hex_part or "-"):
        raise InvalidArchive(f"invalid digest {digest!r}")
    return f"blobs/{algorithm}/{hex_part}"


def _blob(spool: Spool, desc: Descriptor, what: str) -> bytes:
    name = blob_name(desc.digest)
    data = spool.read_document(name, what)
    algorithm, _, hex_part = desc.digest.partition(":")
    actual = hashlib.new(algorithm, data).hexdigest()
    if actual != hex_part:
        raise InvalidArchive(f"{what} {desc.digest} does not match its digest: got {actual}")
    if desc.size != len(data):
        raise InvalidArchive(f"{what} {desc.digest}: size {len(data)}, descriptor says {desc.size}")
    return data


def _oci_name(desc: Descriptor) -> Reference | None:
    annotations = desc.annotations or {}
    text = annotations.get(ANNOTATION_IMAGE_NAME) or annotations.get(ANNOTATION_REF_NAME) or ""
    if not text:
        return None
    try:
        ref = refs.parse_normalized_named(text)
    except errdefs.InvalidParameter:
        return None
    if ref.is_digested:
        return None
    return refs.tag_name_only(ref)


def _is_attestation(desc: Descriptor) -> bool:
    annotations = desc.annotations or {}
    if annotations.get("vnd.docker.reference.type") == "attestation-manifest":
        return True
    p = desc.platform
    return p is not None and p.os == "unknown" and p.architecture == "unknown"


def _oci_images(spool: Spool, platform: Platform | None) -> list[ImageSource]:
    try:
        index = msgspec.json.decode(spool.read_document(INDEX_FILE, INDEX_FILE), type=Index)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidArchive(f"failed to decode {INDEX_FILE}: {exc}") from None
    wanted = platform or plat.host_platform()
    by_manifest: dict[str, ImageSource] = {}
    order: list[str] = []
    for desc in index.manifests:
        manifest_desc = _pick_manifest(spool, desc, wanted, depth=0)
        if manifest_desc is None:
            continue
        image = by_manifest.get(manifest_desc.digest)
        if image is None:
            image = _oci_image(spool, manifest_desc)
            if platform is not None and not plat.matches(platform, image.platform):
                continue
            by_manifest[manifest_desc.digest] = image
            order.append(manifest_desc.digest)
        name = _oci_name(desc)
        if name is not None and name not in image.tags:
            image.tags.append(name)
            image.named = True
    return [by_manifest[d] for d in order]


def _pick_manifest(
    spool: Spool, desc: Descriptor, wanted: Platform, *, depth: int
) -> Descriptor | None:
    """The image manifest `desc` leads to for `wanted` (nested indexes), or None to skip."""
    if depth > 4:
        raise InvalidArchive("image indexes are nested too deeply")
    if desc.media_type in MANIFEST_MEDIA_TYPES or not desc.media_type:
        return None if _is_attestation(desc) else desc
    if desc.media_type not in INDEX_MEDIA_TYPES:
        return None  # artifacts and unknown types are not images
    try:
        nested = msgspec.json.decode(_blob(spool, desc, "index"), type=Index)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidArchive(f"failed to decode index {desc.digest}: {exc}") from None
    candidates = [
        d
        for d in nested.manifests
        if not _is_attestation(d)
        and (d.platform is None or plat.matches(wanted, _desc_platform(d.platform)))
    ]
    for candidate in candidates:
        if not spool.exists(blob_name(candidate.digest)):
            continue
        found = _pick_manifest(spool, candidate, wanted, depth=depth + 1)
        if found is not None:
            return found
    raise errdefs.NotFound(
        f"no matching manifest for {plat.format_platform(wanted)} in the manifest list entries"
    )


def _desc_platform(p: Platform) -> Platform:
    return Platform(os=p.os, architecture=p.architecture, variant=p.variant)


def _oci_image(spool: Spool, desc: Descriptor) -> ImageSource:
    try:
        manifest = msgspec.json.decode(_blob(spool, desc, "manifest"), type=Manifest)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidArchive(f"failed to decode manifest {desc.digest}: {exc}") from None
    config = _blob(spool, manifest.config, "config")
    cfg = _config(config, manifest.config.digest)
    if len(manifest.layers) != len(cfg.diff_ids):
        raise errdefs.InvalidParameter(
            "invalid manifest, layers length mismatch: expected "
            f"{len(manifest.layers)}, got {len(cfg.diff_ids)}"
        )
    layers = []
    for layer, diff_id in zip(manifest.layers, cfg.diff_ids, strict=True):
        name = blob_name(layer.digest)
        if not spool.exists(name):
            raise InvalidArchive(f"layer blob {layer.digest} is missing")
        layers.append(LayerSource(name, diff_id, layer.digest, layer.size))
    return ImageSource(config, cfg, layers)
