"""Container (RW) layers: one writable layer per container on top of an image's layer chain.

Rule: same crash rules as `pymoby.store.layers` (whose LayerStore this builds on): the driver
directories are complete and synced before the `rw_layers` row is committed, and anything a
crash leaves without a row is removed by `LayerStore.cleanup_orphans` at start. The parent chain
is held by a lease while the layer is created, and by the row's foreign key afterwards.

- Optional init layer (dockerd's `<cache_id>-init`): created between the image and the
  container layer, mounted once while `init(root)` writes the files every container needs
  (/etc/hosts, /etc/resolv.conf, ...), so they never show up in `docker diff` or a commit.
- Mounts are counted per container: the first `mount` mounts, the last `unmount` unmounts (lazy,
  like dockerd's Put). A mount left by an earlier daemon run (live restore) is adopted by `mount`
  and removed by `unmount`, never stacked. `remove` refuses (Conflict) while mounted.
All methods block: callers use `asyncio.to_thread`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymoby import errdefs
from pymoby.kernel import mount as kmount
from pymoby.store.graphdriver.base import MountSpec
from pymoby.store.layers import LayerStore

# called with the mounted init layer's root, to create the files a container needs there
InitFunc = Callable[[Path], None]

_COLUMNS = "id, cache_id, init_id, parent, created"


@dataclass(frozen=True, slots=True)
class RWLayer:
    """A container's writable layer: `id` is the container ID, `parent` the image's top chain
    ID (None for FROM scratch), `init_id` the driver id of its init layer, if any."""

    id: str
    cache_id: str
    init_id: str | None
    parent: str | None
    created: int


def _rw(row: tuple[Any, ...]) -> RWLayer:
    i, cache, init, parent, created = row
    return RWLayer(str(i), str(cache), init, parent, int(created))


class RWLayerStore:
    """Container layers over a LayerStore (same DB, driver and mounter)."""

    def __init__(self, layers: LayerStore) -> None:
        self._layers = layers
        self._meta = layers.meta
        self._driver = layers.driver
        self._mounter = layers.mounter
        self._lock = threading.Lock()
        self._mounts: dict[str, tuple[int, MountSpec]] = {}  # container id -> (count, spec)

    def create(
        self,
        container_id: str,
        parent: str | None,
        *,
        init: InitFunc | None = None,
        mount_label: str = "",
    ) -> RWLayer:
        """Create the writable layer of a container on top of the chain `parent`."""
        if not container_id:
            raise errdefs.InvalidParameter("a container layer needs an id")
        with self._layers.lease() as lease, self._layers.new_cache_id() as cache_id:
            below = lease.add(parent).cache_id if parent is not None else None
            init_id = f"{cache_id}-init" if init is not None else None
            rw = RWLayer(container_id, cache_id, init_id, parent, time.time_ns())
            try:
                if init is not None and init_id is not None:
                    self._driver.create(init_id, below, rw=True)
                    self._run_init(init_id, init, mount_label)
                    below = init_id
                self._driver.create(cache_id, below, rw=True)
                kmount.syncfs(self._driver.home)
                self._meta.write_sync(lambda conn: _insert(conn, rw))
            except BaseException:
                self._layers.discard(cache_id)
                if init_id is not None:
                    self._layers.discard(init_id)
                raise
        return rw

    def _run_init(self, init_id: str, init: InitFunc, mount_label: str) -> None:
        spec = self._driver.get(init_id, mount_label)
        try:
            if spec.needs_mount:
                self._mounter.mount(spec)
            try:
                init(Path(spec.target))
            finally:
                if spec.needs_mount:
                    self._mounter.unmount(spec.target)
        finally:
            self._driver.put(init_id)

    def get(self, container_id: str) -> RWLayer:
        row = self._meta.read_sync(
            lambda conn: conn.execute(
                f"SELECT {_COLUMNS} FROM rw_layers WHERE id = ?", (container_id,)
            ).fetchone()
        )
        if row is None:
            raise errdefs.NotFound(f"RW layer does not exist: {container_id}")
        return _rw(row)

    def all(self) -> list[RWLayer]:
        rows = self._meta.read_sync(
            lambda conn: conn.execute(f"SELECT {_COLUMNS} FROM rw_layers ORDER BY id").fetchall()
        )
        return [_rw(row) for row in rows]

    def mount(self, container_id: str, mount_label: str = "") -> Path:
        """Mount the container's root filesystem (once; counted) and return its path."""
        with self._lock:
            count, spec = self._mounts.get(container_id, (0, None))
            if count and spec is not None:
                self._mounts[container_id] = (count + 1, spec)
                return Path(spec.target)
            rw = self.get(container_id)
            spec = self._driver.get(rw.cache_id, mount_label)
            try:
                if spec.needs_mount and not self._mounter.is_mountpoint(spec.target):
                    self._mounter.mount(spec)  # else: left by an earlier run, adopt it
            except BaseException:
                self._driver.put(rw.cache_id)
                raise
            self._mounts[container_id] = (1, spec)
            return Path(spec.target)

    def unmount(self, container_id: str) -> None:
        """Drop one `mount`; the last one unmounts (also a mount left by an earlier run)."""
        with self._lock:
            count, spec = self._mounts.get(container_id, (0, None))
            if count > 1 and spec is not None:
                self._mounts[container_id] = (count - 1, spec)
                return
            rw = self.get(container_id)
            if spec is None:  # not mounted by us: look at the driver's mount point
                spec = self._driver.get(rw.cache_id)
            try:
                if spec.needs_mount and self._mounter.is_mountpoint(spec.target):
                    self._mounter.unmount(spec.target, lazy=True)
            except BaseException:
                if not count:
                    self._driver.put(rw.cache_id)
                raise
            self._driver.put(rw.cache_id)
            self._mounts.pop(container_id, None)

    def mount_count(self, container_id: str) -> int:
        with self._lock:
            return self._mounts.get(container_id, (0, None))[0]

    def remove(self, container_id: str) -> None:
        """Delete the container's layer (Conflict while mounted). Files first, then the row:
        a crash in between leaves a row whose removal simply runs again."""
        with self._lock:
            if self._mounts.get(container_id, (0, None))[0]:
                raise errdefs.Conflict(f"RW layer of {container_id} is mounted")
            rw = self.get(container_id)
            self._driver.remove(rw.cache_id)
            if rw.init_id is not None:
                self._driver.remove(rw.init_id)
            self._meta.write_sync(
                lambda conn: conn.execute("DELETE FROM rw_layers WHERE id = ?", (container_id,))
            )

    def metadata(self, container_id: str) -> dict[str, str]:
        """GraphDriver.Data of a container (docker inspect)."""
        return self._driver.metadata(self.get(container_id).cache_id)

    def diff_paths(self, container_id: str) -> tuple[Path, Path | None]:
        """(where the container's changes are, the tree below them or None) for diff / commit.

        With driver.changes_mode "overlay" the first path holds exactly the changes; with
        "compare" it is the full tree and the second is the tree to compare it with.
        """
        rw = self.get(container_id)
        below = rw.init_id or (self._layers.get(rw.parent).cache_id if rw.parent else None)
        return (
            self._driver.diff_path(rw.cache_id),
            self._driver.diff_path(below) if below else None,
        )


def _insert(conn: sqlite3.Connection, rw: RWLayer) -> None:
    if conn.execute("SELECT 1 FROM rw_layers WHERE id = ?", (rw.id,)).fetchone() is not None:
        raise errdefs.Conflict(f"RW layer already exists: {rw.id}")
    conn.execute(
        f"INSERT INTO rw_layers ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
        (rw.id, rw.cache_id, rw.init_id, rw.parent, rw.created),
    )
