"""The narrow Protocols the routes consume; the composition root passes real managers in.

Rule: server/ never imports a manager. Each area's routes take one Protocol from here, so unit
tests drive the routes with in-memory fakes and the daemon wires the real thing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from typing import Protocol

from pymoby.api.filters import Filters
from pymoby.api.types.events import Message
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
