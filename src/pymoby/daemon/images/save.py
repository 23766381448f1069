"""`docker save`: the OCI layout + manifest.json + repositories tar that dockerd 25+ writes.

Rule: the archive is streamed, never assembled in a temp file. Names are resolved first, in one
read snapshot (dockerd's parseNames: a repository name takes all its tags, a tag or ID one
image; errors then are ordinary HTTP errors); the images' layers are held by a layer lease
while the tar is written. Entries come in the order dockerd's `archive.Tar` of its temp dir
gives: `blobs/`, `blobs/sha256/`, every blob sorted by digest (uncompressed layer tars named by
their diff ID and reproduced byte for byte from tar-split by `LayerStore.tar_stream`, image
configs verbatim, one OCI manifest per image), then `index.json`, `manifest.json`,
`oci-layout` and `repositories` (only when something is tagged). A tar header needs the size
before the bytes: a layer's tar size comes from `TarSizes` (recorded when the layer was
extracted) or from one counting pass of `tar_stream`. Documents are Go's `json.Marshal`
output (manifest.json and repositories end in a newline, as `json.Encoder` writes them).
dockerd's legacy v1 `<id>` JSON blobs (unreferenced by anything) are not written.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast

import msgspec

from pymoby import errdefs
from pymoby.api import reference as refs
from pymoby.api.reference import Reference
from pymoby.api.types.images import (
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_LAYER,
    MEDIA_TYPE_OCI_MANIFEST,
    ImageConfig,
    Platform,
    decode_image_config,
    parse_rfc3339,
)
from pymoby.archive import tarformat as tf
from pymoby.daemon.images import platforms as plat
from pymoby.daemon.images.formats import ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME
from pymoby.store import images as imgstore
from pymoby.store import layers as layerstore
from pymoby.store.images import ImageNotFound, ImageRecord
from pymoby.store.layers import LayerStore

_ENCODER = msgspec.json.Encoder()
OCI_LAYOUT = b'{"imageLayoutVersion": "1.0.0"}'
_SECOND = 1_000_000_000


class TarSizes:
    """Uncompressed tar size by diff ID (content-determined, so never stale); bounded LRU."""

    def __init__(self, limit: int = 65536) -> None:
        self._sizes: OrderedDict[str, int] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def record(self, diff_id: str, size: int) -> None:
        with self._lock:
            self._sizes[diff_id] = size
            self._sizes.move_to_end(diff_id)
            while len(self._sizes) > self._limit:
                self._sizes.popitem(last=False)

    def get(self, diff_id: str) -> int | None:
        with self._lock:
            return self._sizes.get(diff_id)


@dataclass(slots=True)
class Selected:
    """One image to save and the tags it is saved under (in the order the user named them)."""

    record: ImageRecord
    cfg: ImageConfig
    tags: list[Reference] = field(default_factory=list)


# -- names -> images (dockerd's parseNames) -----------------------------------------------------


def select_in(
    conn: sqlite3.Connection, names: list[str], platform: Platform | None
) -> list[Selected]:
    """Resolve what `docker save` was asked for, in one read snapshot."""
    chosen: dict[str, Selected] = {}

    def add(image_id: str, ref: Reference | None) -> None:
        item = chosen.get(image_id)
        if item is None:
            record = imgstore.get_in(conn, image_id)
            if record is None:
                raise ImageNotFound(image_id)
            item = Selected(record, _check_image(record, platform))
            chosen[image_id] = item
        if ref is None or ref.is_digested:
            return
        tagged = refs.tag_name_only(ref)
        if tagged not in item.tags:
            item.tags.append(tagged)

    for name in names:
        ref = refs.parse_any_reference(name)
        if not ref.is_named:
            add(ref.digest, None)
        elif refs.familiar_name(ref) == "sha256":
            add(_search(conn, name), None)
        elif ref.is_name_only:
            found = imgstore.references_by_name_in(conn, ref)
            for other, image_id in found:
                add(image_id, other)
            if not found:
                add(_search(conn, name), None)
        else:
            target = imgstore.get_reference_in(conn, ref)
            if target is None:
                raise errdefs.NotFound("reference does not exist")
            add(target, ref)
    return list(chosen.values())


def _search(conn: sqlite3.Connection, name: str) -> str:
    """dockerd's image store Search: a unique ID prefix, else `No such image: <name>`."""
    try:
        record = imgstore.resolve_in(conn, name)
    except errdefs.NotFound:
        raise ImageNotFound(name) from None
    if not imgstore.is_image_id_prefix(record.id, name.removeprefix("sha256:")):
        raise ImageNotFound(name)
    return record.id


def _check_image(record: ImageRecord, platform: Platform | None) -> ImageConfig:
    cfg = decode_image_config(record.config)
    if not plat.os_supported(cfg.os):
        raise errdefs.InvalidParameter(f'os "{cfg.os}" is not supported')
    image_platform = Platform(os=cfg.os, architecture=cfg.architecture, variant=cfg.variant)
    if platform is not None and not plat.matches(platform, image_platform):
        raise errdefs.NotFound(
            "no suitable export target found for platform " + plat.format_platform(platform)
        )
    if not cfg.diff_ids:
        raise errdefs.System("empty export - not implemented")
    return cfg


# -- the archive ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Blob:
    digest: str
    size: int
    mtime_ns: int
    data: bytes | None = None  # documents
    chain_id: str | None = None  # layers: streamed from the layer store


class _Counter:
    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.size += len(data)
        return len(data)


def _marshal(obj: Any) -> bytes:
    return _ENCODER.encode(obj)


def _created_ns(cfg: ImageConfig) -> int:
    """The config's creation time (the blobs' mtime in dockerd's archive); 0 when absent."""
    return max(0, parse_rfc3339(cfg.created)[0]) if cfg.created is not None else 0


def write_archive(
    selected: list[Selected], layers: LayerStore, sizes: TarSizes, out: BinaryIO
) -> None:
    """Write the tar of `selected` to `out` (blocking; run in a thread)."""
    with layers.lease() as lease:
        blobs: dict[str, _Blob] = {}
        manifest_items: list[dict[str, Any]] = []
        index_entries: list[dict[str, Any]] = []
        repositories: dict[str, dict[str, str]] = {}
        saved_ids = {item.record.id for item in selected}
        for item in selected:
            cfg = item.cfg
            ts = _created_ns(cfg)
            chain: str | None = None
            layer_descs: list[dict[str, Any]] = []
            for diff_id in cfg.diff_ids:
                chain = layerstore.chain_id(chain, diff_id)
                lease.add(chain)
                blob = blobs.get(diff_id)
                if blob is None:
                    size = sizes.get(diff_id)
                    if size is None:
                        size = layers.tar_stream(chain, cast(BinaryIO, _Counter()))
                        sizes.record(diff_id, size)
                    blob = _Blob(diff_id, size, ts, chain_id=chain)
                    blobs[diff_id] = blob
                layer_descs.append(
                    {"mediaType": MEDIA_TYPE_OCI_LAYER, "digest": diff_id, "size": blob.size}
                )
            config_digest = item.record.id
            blobs.setdefault(
                config_digest, _Blob(config_digest, len(item.record.config), ts, item.record.config)
            )
            manifest = _marshal(
                {
                    "schemaVersion": 2,
                    "mediaType": MEDIA_TYPE_OCI_MANIFEST,
                    "config": {
                        "mediaType": MEDIA_TYPE_OCI_CONFIG,
                        "digest": config_digest,
                        "size": len(item.record.config),
                    },
                    "layers": layer_descs,
                }
            )
            manifest_digest = imgstore.image_id_of(manifest)
            blobs.setdefault(manifest_digest, _Blob(manifest_digest, len(manifest), 0, manifest))
            untagged = {
                "mediaType": MEDIA_TYPE_OCI_MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest),
            }
            repo_tags = []
            for ref in item.tags:
                familiar = refs.familiar_name(ref)
                repositories.setdefault(familiar, {})[ref.tag] = cfg.diff_ids[-1].partition(":")[2]
                repo_tags.append(refs.familiar_string(ref))
                index_entries.append(
                    {
                        **untagged,
                        "annotations": {
                            ANNOTATION_IMAGE_NAME: str(ref),
                            ANNOTATION_REF_NAME: ref.tag,
                        },
                    }
                )
            if not item.tags:
                index_entries.append(untagged)
            entry: dict[str, Any] = {
                "Config": "blobs/" + config_digest.replace(":", "/"),
                "RepoTags": repo_tags or None,
                "Layers": ["blobs/" + d.replace(":", "/") for d in cfg.diff_ids],
            }
            if item.record.parent and item.record.parent in saved_ids:
                entry["Parent"] = item.record.parent
            manifest_items.append(entry)
        index = _marshal(
            {"schemaVersion": 2, "mediaType": MEDIA_TYPE_OCI_INDEX, "manifests": index_entries}
        )
        _write_tar(
            out,
            blobs,
            layers,
            index=index,
            manifest_items=manifest_items,
            repositories=repositories,
        )


def _write_tar(
    out: BinaryIO,
    blobs: dict[str, _Blob],
    layers: LayerStore,
    *,
    index: bytes,
    manifest_items: list[dict[str, Any]],
    repositories: dict[str, dict[str, str]],
) -> None:
    _dir(out, "blobs/")
    algorithms = sorted({d.partition(":")[0] for d in blobs})
    for algorithm in algorithms:
        _dir(out, f"blobs/{algorithm}/")
        for digest in sorted(d for d in blobs if d.startswith(algorithm + ":")):
            blob = blobs[digest]
            name = f"blobs/{algorithm}/{digest.partition(':')[2]}"
            if blob.data is not None:
                _file(out, name, blob.data, blob.mtime_ns)
                continue
            assert blob.chain_id is not None
            out.write(tf.format_header(_header(name, blob.size, blob.mtime_ns)))
            written = layers.tar_stream(blob.chain_id, out)
            if written != blob.size:
                raise errdefs.DataLoss(
                    f"layer {blob.chain_id} gave {written} bytes, expected {blob.size}"
                )
            out.write(tf.padding(blob.size))
    _file(out, "index.json", index, 0)
    _file(out, "manifest.json", _marshal(manifest_items) + b"\n", 0)
    _file(out, "oci-layout", OCI_LAYOUT, 0)
    if repositories:
        sorted_repos = {k: dict(sorted(v.items())) for k, v in sorted(repositories.items())}
        _file(out, "repositories", _marshal(sorted_repos) + b"\n", 0)
    out.write(bytes(2 * tf.BLOCK))


def _header(name: str, size: int, mtime_ns: int, *, directory: bool = False) -> tf.TarHeader:
    return tf.TarHeader(
        name=name,
        typeflag=tf.DIR if directory else tf.REG,
        mode=0o755 if directory else 0o644,
        size=size,
        mtime_ns=(mtime_ns // _SECOND) * _SECOND,
    )


def _dir(out: BinaryIO, name: str) -> None:
    out.write(tf.format_header(_header(name, 0, 0, directory=True)))


def _file(out: BinaryIO, name: str, data: bytes, mtime_ns: int) -> None:
    out.write(tf.format_header(_header(name, len(data), mtime_ns)))
    out.write(data)
    out.write(tf.padding(len(data)))
