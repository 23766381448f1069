"""Helpers of the image service tests: layer tars, docker-save / OCI archives, real stores.

The stores are the real ones (SQLite metadata, the vfs graph driver, pymoby.archive extraction
and tar-split), under a temp dir: nothing here mounts anything.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymoby import archive
from pymoby.daemon.events import EventBus
from pymoby.daemon.images.save import TarSizes
from pymoby.daemon.images.service import ImageService
from pymoby.store.graphdriver import VfsDriver
from pymoby.store.images import ImageStore
from pymoby.store.layers import LayerStore
from pymoby.store.meta import MetaStore

# ../shared/fixtures beside the checkout (as in CI); PYMOBY_FIXTURES overrides.
FIXTURES = Path(
    os.environ.get(
        "PYMOBY_FIXTURES", str(Path(__file__).resolve().parents[5] / "shared" / "fixtures")
    )
)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes | str], *, links: dict[str, str] | None = None) -> bytes:
    """An uncompressed layer: `files` (path -> content; a str is a symlink target if in links)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(files.items()):
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
        for name, target in sorted((links or {}).items()):
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


def config(
    layers: Iterable[bytes],
    *,
    labels: dict[str, str] | None = None,
    created: str = "2024-01-02T03:04:05.123456789Z",
    history: list[dict[str, Any]] | None = None,
    os_name: str = "linux",
    arch: str = "amd64",
    extra: dict[str, Any] | None = None,
) -> bytes:
    diff_ids = [sha256(layer) for layer in layers]
    doc: dict[str, Any] = {
        "architecture": arch,
        "config": {"Cmd": ["sh"], "Labels": labels},
        "created": created,
        "os": os_name,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    if history is not None:
        doc["history"] = history
    doc.update(extra or {})
    return json.dumps(doc, separators=(",", ":")).encode()


@dataclass
class Img:
    """An image to put in an archive: its layer tars (uncompressed) and its config."""

    layers: list[bytes]
    tags: list[str] = field(default_factory=list)
    labels: dict[str, str] | None = None
    created: str = "2024-01-02T03:04:05.123456789Z"
    config_bytes: bytes | None = None
    parent: str = ""

    @property
    def config(self) -> bytes:
        if self.config_bytes is None:
            self.config_bytes = config(self.layers, labels=self.labels, created=self.created)
        return self.config_bytes

    @property
    def id(self) -> str:
        return sha256(self.config)


class TarBuilder:
    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self.names: set[str] = set()

    def file(self, name: str, data: bytes) -> None:
        if name in self.names:
            return
        self.names.add(name)
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        self.tar.addfile(info, io.BytesIO(data))

    def symlink(self, name: str, target: str) -> None:
        info = tarfile.TarInfo(name)
        info.type = tarfile.SYMTYPE
        info.linkname = target
        self.tar.addfile(info)

    def bytes(self) -> bytes:
        self.tar.close()
        return self.buf.getvalue()


def docker_save(images: list[Img], *, layout: str = "legacy", compress: bool = False) -> bytes:
    """A `docker save` archive: "legacy" (dockerd < 25) or "oci" (25+: blobs + manifest.json)."""
    tb = TarBuilder()
    manifest = []
    for img in images:
        layer_names = []
        for layer in img.layers:
            digest = sha256(layer)
            data = gzip.compress(layer, mtime=0) if compress else layer
            if layout == "legacy":
                name = f"{hashlib.sha256(digest.encode()).hexdigest()}/layer.tar"
            else:
                name = f"blobs/sha256/{sha256(data).partition(':')[2]}"
            tb.file(name, data)
            layer_names.append(name)
        if layout == "legacy":
            config_name = img.id.partition(":")[2] + ".json"
        else:
            config_name = "blobs/sha256/" + img.id.partition(":")[2]
        tb.file(config_name, img.config)
        item: dict[str, Any] = {"Config": config_name, "RepoTags": img.tags or None}
        item["Layers"] = layer_names
        if img.parent:
            item["Parent"] = img.parent
        manifest.append(item)
    tb.file("manifest.json", json.dumps(manifest).encode())
    return tb.bytes()


def oci_layout(images: list[tuple[Img, dict[str, str]]], *, compress: str = "gzip") -> bytes:
    """A plain OCI image layout (index.json, no manifest.json): (image, index annotations)."""
    tb = TarBuilder()
    tb.file("oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
    entries = []
    for img, notes in images:
        descs = []
        for layer in img.layers:
            data = gzip.compress(layer, mtime=0) if compress == "gzip" else layer
            tb.file("blobs/sha256/" + sha256(data).partition(":")[2], data)
            media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compress else "")
            descs.append({"mediaType": media, "digest": sha256(data), "size": len(data)})
        tb.file("blobs/sha256/" + img.id.partition(":")[2], img.config)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": img.id,
                    "size": len(img.config),
                },
                "layers": descs,
            }
        ).encode()
        tb.file("blobs/sha256/" + sha256(manifest).partition(":")[2], manifest)
        entry: dict[str, Any] = {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256(manifest),
            "size": len(manifest),
        }
        if notes:
            entry["annotations"] = notes
        entries.append(entry)
    tb.file("index.json", json.dumps({"schemaVersion": 2, "manifests": entries}).encode())
    return tb.bytes()


async def chunks(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@dataclass
class Env:
    meta: MetaStore
    layers: LayerStore
    images: ImageStore
    events: EventBus
    service: ImageService
    root: Path

    def close(self) -> None:
        self.meta.close()

    def layer_rows(self) -> list[str]:
        return [layer.chain_id for layer in self.layers.layers()]

    def leftovers(self) -> list[str]:
        tmp = self.root / "tmp"
        return sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []

    def event_actions(self) -> list[tuple[str, str]]:
        return [(m.action, m.actor.id) for m in self.events.buffered()]


def open_env(root: Path, *, users: Any = None) -> Env:
    meta = MetaStore.open(root / "meta.db")
    sizes = TarSizes()

    def extract(stream: Any, target: Path, whiteouts: Any, tarsplit: Any) -> archive.LayerStats:
        stats = archive.apply_layer(stream, target, whiteouts=whiteouts, tarsplit_out=tarsplit)
        sizes.record(stats.diff_id, stats.tar_size)
        return stats

    driver = VfsDriver.open(root / "vfs")
    layers = LayerStore.open(
        meta, driver, root / "image" / "vfs", extractor=extract, reassembler=archive.reassemble
    )
    images = ImageStore(meta)
    events = EventBus()
    kwargs: dict[str, Any] = {"tmp_root": root / "tmp", "tar_sizes": sizes}
    if users is not None:
        kwargs["in_use_by"] = users
    service = ImageService(images, layers, events, **kwargs)
    return Env(meta, layers, images, events, service, root)


async def drain(stream: AsyncIterator[bytes]) -> list[dict[str, Any]]:
    """The JSON lines of a progress stream."""
    data = b"".join([c async for c in stream])
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def now_ns() -> int:
    return time.time_ns()
