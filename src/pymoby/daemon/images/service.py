"""The image service: the ImageBackend of the /images routes, over the image and layer stores.

Rule: the event loop only awaits. Store reads and writes go through MetaStore's threads, and
every tar or disk job (load, import, save, layer deletion) runs in ONE worker thread per
request, connected to the HTTP body by the bounded streams of `bridge` (loop -> thread for
uploads, thread -> loop for progress lines and the save tar). Each state change is one
transaction (see load.py, importer.py, delete.py); events are published after it committed,
with dockerd's actions and attributes (`name` = the image ID, plus the image's labels):
import, load, save, tag, untag, delete, prune.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import BinaryIO, TypeVar, cast

from pymoby import errdefs
from pymoby.api import reference as refs
from pymoby.api.filters import Filters
from pymoby.api.reference import Reference
from pymoby.api.types import progress
from pymoby.api.types.images import (
    DeleteResponse,
    HistoryResponseItem,
    ImageInspect,
    ImagesPruneReport,
    ImageSummary,
    Platform,
)
from pymoby.api.types.system import UsageSummary
from pymoby.daemon.events import EventBus
from pymoby.daemon.images import delete as deleting
from pymoby.daemon.images import importer, listing
from pymoby.daemon.images import load as loading
from pymoby.daemon.images import save as saving
from pymoby.daemon.images.bridge import Inbound, Outbound, StreamAborted, run_in_thread
from pymoby.daemon.images.delete import ImageUser, Users, no_users
from pymoby.daemon.images.save import TarSizes
from pymoby.store import images as imgstore
from pymoby.store.images import ImageRecord, ImageStore
from pymoby.store.layers import LayerStore

log = logging.getLogger("pymoby.images")

T = TypeVar("T")
Emit = Callable[[bytes], None]

_SINGLE_STORE_PLATFORMS = (
    "multiple platforms not supported for this image store; use a multi-platform image store "
    "such as containerd-snapshotter"
)


class ImageService:
    """What /images needs; `in_use_by` is the container manager's hook (no containers yet)."""

    def __init__(
        self,
        images: ImageStore,
        layers: LayerStore,
        events: EventBus,
        *,
        tmp_root: Path,
        tar_sizes: TarSizes | None = None,
        in_use_by: Users = no_users,
    ) -> None:
        self._images = images
        self._layers = layers
        self._meta = layers.meta
        self._events = events
        self._tmp_root = Path(tmp_root)
        self.tar_sizes = tar_sizes or TarSizes()
        self.in_use_by = in_use_by
        self._prune_running = False

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Remove what an interrupted load or import left (staging dirs, unreferenced layers)."""
        await asyncio.to_thread(loading.cleanup_leftovers, self._tmp_root, self._layers)

    @property
    def layers(self) -> LayerStore:
        return self._layers

    async def count(self) -> int:
        return len(await self._images.list())

    # -- events ----------------------------------------------------------------------------

    def _publish(self, action: str, image_id: str, attributes: dict[str, str]) -> None:
        self._events.publish("image", action, image_id, attributes)

    async def _publish_image(self, action: str, image_id: str, name: str) -> None:
        """dockerd's LogImageEvent: the image's labels (if it still exists) + `name`."""
        attributes: dict[str, str] = {}
        with contextlib.suppress(errdefs.NotFound):
            record = await self._images.get(image_id)
            attributes.update(listing.labels_of(record.decode_config()))
        attributes["name"] = name
        self._publish(action, image_id, attributes)

    # -- reads -----------------------------------------------------------------------------

    def _containers(self, image_id: str) -> int:
        return len(self.in_use_by(image_id))

    async def images(self, filters: Filters, *, all: bool, shared_size: bool) -> list[ImageSummary]:
        def run() -> list[ImageSummary]:
            layers = self._layers.layers() if shared_size else []

            def view(conn: sqlite3.Connection) -> list[ImageSummary]:
                return listing.list_images(
                    imgstore.list_in(conn),
                    layers,
                    filters,
                    all=all,
                    shared_size=shared_size,
                    resolve=lambda name: imgstore.resolve_in(conn, name),
                    containers=self._containers,
                )

            return self._meta.read_sync(view)

        return await asyncio.to_thread(run)

    async def inspect(self, name: str, platform: Platform | None) -> ImageInspect:
        def run() -> ImageInspect:
            record = self._images.resolve_sync(name)
            cfg = record.decode_config()
            listing.check_platform(record, cfg, name, platform)
            data = self._layers.metadata(record.chain_id) if record.chain_id else None
            return listing.inspect(record, self._layers.driver.name, data)

        return await asyncio.to_thread(run)

    async def history(self, name: str, platform: Platform | None) -> list[HistoryResponseItem]:
        def run() -> list[HistoryResponseItem]:
            def view(conn: sqlite3.Connection) -> tuple[ImageRecord, dict[str, ImageRecord]]:
                record = imgstore.resolve_in(conn, name)
                listing.check_platform(record, record.decode_config(), name, platform)
                ancestors: dict[str, ImageRecord] = {}
                current = record
                while current.parent and current.parent not in ancestors:
                    parent = imgstore.get_in(conn, current.parent)
                    if parent is None:
                        break
                    ancestors[parent.id] = parent
                    current = parent
                return record, ancestors

            record, ancestors = self._meta.read_sync(view)
            sizes = {layer.chain_id: layer.size for layer in self._layers.layers()}
            return listing.history(record, sizes, ancestors.get)

        return await asyncio.to_thread(run)

    async def disk_usage(self) -> UsageSummary:
        """/system/df: images (top ones, with shared sizes) and the size of their layers."""
        items = await self.images(Filters(), all=False, shared_size=True)

        def layers_size() -> int:
            records = self._images.list_sync()
            used: set[str] = set()
            for record in records:
                if not record.references and record.children:
                    continue
                used.update(listing.chains_of(record.decode_config()))
            return sum(layer.size for layer in self._layers.layers() if layer.chain_id in used)

        total = await asyncio.to_thread(layers_size)
        active = sum(1 for i in items if i.containers > 0)
        reclaimable = sum(
            i.size - i.shared_size
            for i in items
            if i.containers == 0 and i.size != -1 and i.shared_size != -1
        )
        return UsageSummary(
            active_count=active,
            items=list(items),
            reclaimable=reclaimable,
            total_count=len(items),
            total_size=total,
        )

    # -- tag, delete, prune ----------------------------------------------------------------

    async def tag(self, name: str, ref: Reference) -> None:
        try:
            record = await self._images.resolve(name)
        except errdefs.NotFound as exc:
            raise errdefs.NotFound(exc.message) from None
        await self._images.tag(record.id, ref, force=True)
        await self._publish_image("tag", record.id, refs.familiar_string(ref))

    async def _remove(self, name: str, *, force: bool, prune: bool) -> list[DeleteResponse]:
        users = self.in_use_by
        outcome = await self._meta.write(
            lambda conn: deleting.delete_in(conn, name, force=force, prune=prune, users=users)
        )
        removed = await asyncio.to_thread(self._layers.delete_unreferenced)
        for event in outcome.events:
            self._publish(event.action, event.image_id, event.attributes)
        return deleting.attribute_layers(outcome, removed)

    async def delete(self, name: str, *, force: bool, prune: bool) -> list[DeleteResponse]:
        return await self._remove(name, force=force, prune=prune)

    async def prune(self, filters: Filters) -> ImagesPruneReport:
        if self._prune_running:
            raise errdefs.Conflict("a prune operation is already running")
        self._prune_running = True
        try:
            records = await self._images.list()
            names = deleting.prune_plan(records, filters, time.time_ns())
            sizes = {
                layer.chain_id: layer.size for layer in await asyncio.to_thread(self._layers.layers)
            }
            deleted: list[DeleteResponse] = []
            for name in names:
                try:
                    deleted += await self._remove(name, force=False, prune=True)
                except (errdefs.Conflict, errdefs.NotFound) as exc:
                    log.debug("prune: skipping %s: %s", name, exc)
            reclaimed = sum(sizes.get(d.deleted, 0) for d in deleted if d.deleted)
            self._events.publish("image", "prune", "", {"reclaimed": str(reclaimed)})
            return ImagesPruneReport(images_deleted=deleted or None, space_reclaimed=reclaimed)
        finally:
            self._prune_running = False

    # -- streams: import, load, save -------------------------------------------------------

    async def _job(
        self,
        work: Callable[[Inbound | None, Emit], T],
        body: AsyncIterator[bytes] | None,
        result: list[T],
        *,
        out_limit: int = 1 << 20,
    ) -> AsyncIterator[bytes]:
        """Run `work` in a thread; yield what it emits; its return value lands in `result`."""
        loop = asyncio.get_running_loop()
        inbound = Inbound(loop) if body is not None else None
        outbound = Outbound(loop, limit=out_limit)

        def emit(data: bytes) -> None:
            outbound.write(data)
            outbound.flush()

        def run() -> T:
            try:
                value = work(inbound, emit)
            except BaseException as exc:
                if inbound is not None:
                    inbound.fail(StreamAborted("the upload is no longer read"))
                outbound.close(exc)
                raise
            outbound.close()
            return value

        feeder = asyncio.ensure_future(inbound.feed_from(body)) if inbound and body else None
        job = run_in_thread(run, "pymoby-image-job")
        try:
            async for chunk in outbound:
                yield chunk
            result.append(await job)
        finally:
            outbound.abandon()
            if inbound is not None and not job.done():
                inbound.fail(StreamAborted("the client went away"))
            if feeder is not None:
                if not feeder.done():
                    feeder.cancel()
                with contextlib.suppress(BaseException):
                    await feeder
            if not job.done():
                with contextlib.suppress(BaseException):
                    await asyncio.shield(job)
            elif not job.cancelled():
                job.exception()  # retrieved: the error already went to the client

    def import_image(
        self,
        source: AsyncIterator[bytes] | str,
        ref: Reference | None,
        message: str,
        changes: Sequence[str],
        platform: Platform | None,
    ) -> AsyncIterator[bytes]:
        return self._import(source, ref, message, changes, platform)

    async def _import(
        self,
        source: AsyncIterator[bytes] | str,
        ref: Reference | None,
        message: str,
        changes: Sequence[str],
        platform: Platform | None,
    ) -> AsyncIterator[bytes]:
        config = importer.run_config(changes, platform)  # bad changes: 400 before any work
        body = source if not isinstance(source, str) else None
        url = source if isinstance(source, str) else None

        def work(inbound: Inbound | None, emit: Emit) -> str:
            return importer.import_layer(
                inbound if inbound is not None else None,
                url,
                layers=self._layers,
                ref=ref,
                message=message,
                config=config,
                platform=platform,
                emit=emit,
            )

        result: list[str] = []
        async for chunk in self._job(work, body, result):
            yield chunk
        image_id = result[0]
        if ref is not None:
            await self._publish_image("tag", image_id, refs.familiar_string(ref))
        await self._publish_image("import", image_id, image_id)
        yield progress.status(image_id)

    def load(
        self, body: AsyncIterator[bytes], *, quiet: bool, platforms: Sequence[Platform]
    ) -> AsyncIterator[bytes]:
        return self._load(body, quiet=quiet, platforms=platforms)

    async def _load(
        self, body: AsyncIterator[bytes], *, quiet: bool, platforms: Sequence[Platform]
    ) -> AsyncIterator[bytes]:
        if len(platforms) > 1:
            raise errdefs.InvalidParameter(_SINGLE_STORE_PLATFORMS)
        platform = platforms[0] if platforms else None

        def work(inbound: Inbound | None, emit: Emit) -> loading.LoadResult:
            assert inbound is not None
            return loading.load(
                inbound,
                layers=self._layers,
                tmp_root=self._tmp_root,
                emit=emit,
                quiet=quiet,
                platform=platform,
            )

        result: list[loading.LoadResult] = []
        async for chunk in self._job(work, body, result):
            yield chunk
        for image in result[0].images:
            attributes = dict(image.labels)
            attributes["name"] = image.image_id
            self._publish("load", image.image_id, attributes)
        for line in result[0].lines:
            yield line

    def save(self, names: Sequence[str], platforms: Sequence[Platform]) -> AsyncIterator[bytes]:
        return self._save(list(names), platforms)

    async def _save(self, names: list[str], platforms: Sequence[Platform]) -> AsyncIterator[bytes]:
        if len(platforms) > 1:
            raise errdefs.InvalidParameter(_SINGLE_STORE_PLATFORMS)
        platform = platforms[0] if platforms else None
        selected = await self._meta.read(lambda conn: saving.select_in(conn, names, platform))
        for item in selected:
            attributes = listing.labels_of(item.cfg)
            attributes["name"] = item.record.id
            self._publish("save", item.record.id, attributes)

        loop = asyncio.get_running_loop()
        outbound = Outbound(loop)

        def run() -> None:
            try:
                saving.write_archive(
                    selected, self._layers, self.tar_sizes, cast(BinaryIO, outbound)
                )
            except BaseException as exc:
                outbound.close(exc)
                raise
            outbound.close()

        job = run_in_thread(run, "pymoby-image-save")
        try:
            async for chunk in outbound:
                yield chunk
            await job
        finally:
            outbound.abandon()
            if not job.done():
                with contextlib.suppress(BaseException):
                    await asyncio.shield(job)
            elif not job.cancelled():
                job.exception()


def image_users(users: Callable[[str], Sequence[tuple[str, bool]]]) -> Users:
    """Adapt a container manager's `(container_id, running)` pairs to the delete rules."""
    return lambda image_id: [ImageUser(cid, running) for cid, running in users(image_id)]
