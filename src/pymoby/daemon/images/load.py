"""`docker load`: spool, check, register layers, then ONE transaction makes the images visible.

Rule: nothing a load does is visible until its last step. The steps, all in one worker thread:
1. the request body (any compression) is spooled into `<tmp>/load-<random>/` (spool.py);
2. the archive is understood and checked as a whole (formats.py), and every layer that is not
   already present must be in the archive;
3. missing layers are registered with the layer store from the spooled files, held by a layer
   lease (the layer store checks each diff ID; stored blob digests and sizes are checked here);
4. one metadata transaction creates every image, its layer reference and its tags (moving a
   tag that pointed elsewhere, as dockerd does) and the parent links.
Any failure before 4 commits nothing: the lease ends and the layers this load registered,
referenced by nothing, are deleted; the staging directory is always removed. A crash (kill -9)
leaves a staging directory and unreferenced layer rows: `cleanup_leftovers` removes both at the
next start. Output lines are dockerd's: `Loading layer` progress (unless quiet), `The image x
already exists, renaming the old one with ID y to empty string`, `Loaded image: x`,
`Loaded image ID: sha256:...` (graph-driver rule: the IDs are printed when the LAST image of
manifest.json has no tag; an OCI layout prints each unnamed image's ID).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from pymoby import errdefs
from pymoby.api import reference as refs
from pymoby.api.types import progress
from pymoby.api.types.images import Platform, parse_rfc3339
from pymoby.archive.compression import Reader, decompress_stream
from pymoby.daemon.images.formats import ImageSource, Plan, read_plan
from pymoby.daemon.images.meter import MeteredReader
from pymoby.daemon.images.spool import InvalidArchive, Spool
from pymoby.store import images as imgstore
from pymoby.store import layers as layerstore
from pymoby.store.layers import Layer, LayerLease, LayerStore

log = logging.getLogger("pymoby.images")

STAGING_PREFIXES = ("load-", "import-", "save-")

Emit = Callable[[bytes], None]


@dataclass(frozen=True, slots=True)
class Loaded:
    """One image the load committed: what the service announces (event `load`)."""

    image_id: str
    labels: dict[str, str]


@dataclass(frozen=True, slots=True)
class LoadResult:
    images: list[Loaded]
    lines: list[bytes]  # the final `Loaded image...` stream lines, in order


def cleanup_leftovers(tmp_root: Path, layers: LayerStore) -> None:
    """Start-up repair after a crash: staging directories and unreferenced layers go."""
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(tmp_root):
            if entry.name.startswith(STAGING_PREFIXES):
                log.info("removing leftover staging directory %s", entry.path)
                shutil.rmtree(entry.path, ignore_errors=True)
    deleted = layers.delete_unreferenced()
    if deleted:
        log.info("removed %d unreferenced layers left by an interrupted load", len(deleted))


def staging_dir(tmp_root: Path, prefix: str) -> Path:
    tmp_root.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=tmp_root))


def load(
    stream: Reader,
    *,
    layers: LayerStore,
    tmp_root: Path,
    emit: Emit,
    quiet: bool,
    platform: Platform | None,
) -> LoadResult:
    """Load the archive in `stream` (blocking; run in a thread). See the module rule."""
    staging = staging_dir(tmp_root, "load-")
    try:
        spool = Spool.read(decompress_stream(stream), staging)
        plan = read_plan(spool, platform)
        _check_parents(plan)
        _check_present(plan, spool, layers)
        lines: list[bytes] = []
        try:
            with layers.lease() as lease:
                tops = [
                    _register(image, spool, layers, lease, emit=emit, quiet=quiet)
                    for image in plan.images
                ]
                layers.meta.write_sync(lambda conn: _commit(conn, plan, tops, lines))
        except BaseException:
            release_unreferenced(layers)  # the lease has ended: what this load added goes
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    loaded = [Loaded(image.image_id, _labels(image)) for image in plan.images]
    return LoadResult(loaded, lines)


def release_unreferenced(layers: LayerStore) -> None:
    """Delete layers nothing keeps (after a failed load or import); errors are only logged."""
    try:
        layers.delete_unreferenced()
    except (errdefs.PymobyError, OSError) as exc:
        log.warning("cannot release the layers of a failed load (left for start-up): %s", exc)


def _labels(image: ImageSource) -> dict[str, str]:
    config = image.cfg.config
    return dict(config.labels or {}) if config is not None else {}


def _chains(image: ImageSource) -> list[str]:
    chains: list[str] = []
    for layer in image.layers:
        chains.append(layerstore.chain_id(chains[-1] if chains else None, layer.diff_id))
    return chains


def _check_present(plan: Plan, spool: Spool, layers: LayerStore) -> None:
    """Every layer is either present already or in the archive (checked before any work)."""
    for image in plan.images:
        for layer, chain in zip(image.layers, _chains(image), strict=True):
            if not spool.exists(layer.name) and not layers.exists(chain):
                raise InvalidArchive(f"layer {layer.name!r} is missing")


def _check_parents(plan: Plan) -> None:
    """dockerd's validatedParentLinks + checkValidParent, before anything is stored."""
    by_id = {image.image_id: image for image in plan.images}
    for image in plan.images:
        parent = by_id.get(image.parent) if image.parent != image.image_id else None
        if parent is None:
            image.parent = ""  # not in this archive: the link is dropped, as dockerd does
            continue
        if not _valid_parent(image, parent):
            raise errdefs.InvalidParameter(
                f"image {parent.image_id} is not a valid parent for {image.image_id}"
            )


def _valid_parent(image: ImageSource, parent: ImageSource) -> bool:
    child_history = image.cfg.history or []
    parent_history = parent.cfg.history or []
    if not child_history and not parent_history:
        return True
    if len(child_history) - len(parent_history) != 1:
        return False
    for p, c in zip(parent_history, child_history, strict=False):
        if (p.created is None) != (c.created is None):
            return False
        if (
            p.created is not None
            and c.created is not None
            and parse_rfc3339(p.created)[0] != parse_rfc3339(c.created)[0]
        ):
            return False
        if (p.created_by, p.author, p.comment, p.empty_layer) != (
            c.created_by,
            c.author,
            c.comment,
            c.empty_layer,
        ):
            return False
    return True


def _register(
    image: ImageSource,
    spool: Spool,
    layers: LayerStore,
    lease: LayerLease,
    *,
    emit: Emit,
    quiet: bool,
) -> list[Layer]:
    """Make every layer of `image` present and held by `lease`; the chain, base first."""
    chain: list[Layer] = []
    for index, source in enumerate(image.layers):
        parent = chain[-1].chain_id if chain else None
        wanted = layerstore.chain_id(parent, source.diff_id)
        try:
            chain.append(lease.add(wanted))
            continue
        except errdefs.NotFound:
            pass
        entry = spool.lookup(source.name)
        if entry is None or entry.path is None:
            raise InvalidArchive(f"layer {source.name!r} is missing")
        if source.size is not None and entry.size != source.size:
            raise InvalidArchive(
                f"layer blob {source.digest}: size {entry.size}, descriptor says {source.size}"
            )
        short = source.diff_id.partition(":")[2][:12]

        def report(current: int, total: int, short: str = short) -> None:
            emit(progress.progress("Loading layer", short, current, total))

        with open(entry.path, "rb") as raw:
            algorithm = source.digest.partition(":")[0] if source.digest else None
            meter = MeteredReader(
                raw, total=entry.size, progress=None if quiet else report, algorithm=algorithm
            )
            try:
                layer = layers.register(
                    cast(BinaryIO, meter), parent, expected_diff_id=source.diff_id, lease=lease
                )
            except errdefs.InvalidParameter as exc:
                if exc.message.startswith("layer diff ID mismatch"):
                    raise errdefs.InvalidParameter(
                        f'invalid diffID for layer {index}: expected "{source.diff_id}", '
                        f'got "{exc.message.rpartition(" ")[2]}"'
                    ) from None
                raise
            meter.drain()
        if source.digest is not None and meter.digest() != source.digest:
            raise InvalidArchive(
                f"layer blob {source.name!r} does not match its digest: got {meter.digest()}"
            )
        chain.append(layer)
    return chain


def _commit(
    conn: sqlite3.Connection, plan: Plan, tops: list[list[Layer]], lines: list[bytes]
) -> None:
    """The one transaction that makes the loaded images visible."""
    ids_text = ""
    tagged_last = False
    for image, chain in zip(plan.images, tops, strict=True):
        top = chain[-1].chain_id if chain else None
        size = sum(layer.size for layer in chain)
        record = imgstore.create_in(conn, image.config, top, size)
        if top is not None:
            layerstore.add_reference(conn, record.id, top)
        ids_text += f"Loaded image ID: {record.id}\n"
        tagged_last = False
        for ref in image.tags:
            previous = imgstore.get_reference_in(conn, ref)
            name = refs.familiar_string(refs.tag_name_only(ref))
            if previous is not None and previous != record.id:
                lines.append(
                    progress.stream(
                        f"The image {name} already exists, renaming the old one with ID "
                        f"{previous} to empty string\n"
                    )
                )
            imgstore.tag_in(conn, record.id, ref, force=True)
            lines.append(progress.stream(f"Loaded image: {name}\n"))
            tagged_last = True
        if plan.kind == "oci" and not image.tags:
            lines.append(progress.stream(f"Loaded image ID: {record.id}\n"))
    for image in plan.images:
        if image.parent:
            imgstore.set_parent_in(conn, image.image_id, image.parent)
    if plan.kind == "docker" and not tagged_last and ids_text:
        lines.append(progress.stream(ids_text))
