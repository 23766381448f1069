"""The narrow Protocols the routes consume; the composition root passes real managers in.

Rule: server/ never imports a manager. Each area's routes take one Protocol from here, so unit
tests drive the routes with in-memory fakes and the daemon wires the real thing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from typing import Protocol

from pymoby.api.filters import Filters
from pymoby.api.reference import Reference
from pymoby.api.types.events import Message
from pymoby.api.types.images import (
    DeleteResponse,
    HistoryResponseItem,
    ImageInspect,
    ImagesPruneReport,
    ImageSummary,
    Platform,
)
from pymoby.api.types.system import DiskUsage, Info, Version
from pymoby.api.versions import ApiVersion


class SystemBackend(Protocol):
    """GET /version, /info, /system/df."""

    async def version(self) -> Version: ...

    async def info(self) -> Info: ...

    async def disk_usage(self, types: Collection[str], api: ApiVersion) -> DiskUsage: ...


class EventsBackend(Protocol):
    """GET /events: replay from the ring buffer within [since, until], then live."""

    def subscribe(
        self, filters: Filters, since: int | None, until: int | None
    ) -> AsyncIterator[Message]: ...


class ImageBackend(Protocol):
    """The /images routes (graph-driver image store; pull, push and search come later).

    Streams (`import_image`, `load`) yield progress lines already encoded (api/types/progress);
    `save` yields the bytes of the tar. An error raised by an iterator before its first item is
    an HTTP error, after it an in-band one (the route applies dockerd's rule per endpoint).
    Names are what the user typed (reference, ID or ID prefix); platforms are OCI platforms.
    """

    async def images(
        self, filters: Filters, *, all: bool, shared_size: bool
    ) -> list[ImageSummary]: ...

    async def inspect(self, name: str, platform: Platform | None) -> ImageInspect: ...

    async def history(self, name: str, platform: Platform | None) -> list[HistoryResponseItem]: ...

    async def tag(self, name: str, ref: Reference) -> None: ...

    async def delete(self, name: str, *, force: bool, prune: bool) -> list[DeleteResponse]: ...

    async def prune(self, filters: Filters) -> ImagesPruneReport: ...

    def import_image(
        self,
        source: AsyncIterator[bytes] | str,
        ref: Reference | None,
        message: str,
        changes: Sequence[str],
        platform: Platform | None,
    ) -> AsyncIterator[bytes]: ...

    def load(
        self, body: AsyncIterator[bytes], *, quiet: bool, platforms: Sequence[Platform]
    ) -> AsyncIterator[bytes]: ...

    def save(self, names: Sequence[str], platforms: Sequence[Platform]) -> AsyncIterator[bytes]: ...
