"""The layer store: read-only layer chains (diff IDs -> chain IDs), their references, orphans.

Rule: a layer exists when its row exists, and a row is committed only after its files are
complete and on disk (extracted, tar-split written, the filesystem synced); anything on disk
without a row is an orphan, removed by `cleanup_orphans` (run by `open`). Rows go first on
deletion (then files), so a crash at any point leaves either a usable layer or an orphan.

- chain_id = diff_id for a base layer, else sha256("<parent chain_id> <diff_id>") (OCI/moby
  ChainID). Registering a chain that already exists discards the new copy and returns the
  existing layer (concurrent pulls of the same layer are fine).
- Who keeps a layer is explicit and crash-safe: `layer_refs(owner, chain_id)` rows (written by
  the image store with `add_reference` / `remove_references` inside its own transactions), child
  layers (`layers.parent`) and container layers (`rw_layers.parent`); foreign keys forbid deleting
  a kept layer. In-flight work (a pull between `register` and its image row) holds an in-memory
  `LayerLease`. `delete_unreferenced` deletes everything else, children first.
- Files: the graph driver's directories (named by cache_id) and `<root>/tarsplit/<cache_id>`.
  Extraction and tar reassembly are injected (`Extractor`, `Reassembler`: pymoby.archive in the
  daemon, simple fakes in tests); mounts go through an injected `Mounter` (pymoby.kernel.mount).
- Container layers live in `pymoby.store.rwlayers` (same DB and driver); orphan cleanup here
  knows their rows too. One data root keeps one driver's layers: the driver's name is kept in
  `meta` ('storage_driver') and another driver is refused while layers exist.
All methods block: callers use `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

from pymoby import errdefs
from pymoby.kernel import mount as kmount
from pymoby.store.content import validate_digest
from pymoby.store.graphdriver.base import Driver, Mounter
from pymoby.store.meta import MetaStore

log = logging.getLogger(__name__)

DRIVER_KEY = "storage_driver"
_LAYER_COLUMNS = "chain_id, diff_id, parent, cache_id, size, created"


class ExtractResult(Protocol):
    """What an extraction reports (pymoby.archive.LayerStats has these)."""

    @property
    def size(self) -> int: ...

    @property
    def diff_id(self) -> str: ...


# (layer tar stream, directory to fill, whiteout mode, tar-split output) -> result
Extractor = Callable[[BinaryIO, Path, str, BinaryIO], ExtractResult]
# (tar-split record, layer directory, output) -> anything (bytes written)
Reassembler = Callable[[BinaryIO, Path, BinaryIO], object]


@dataclass(frozen=True, slots=True)
class Layer:
    """A read-only layer; `size` is this layer's own size, `created` unix nanoseconds."""

    chain_id: str
    diff_id: str
    parent: str | None
    cache_id: str
    size: int
    created: int


def chain_id(parent: str | None, diff_id: str) -> str:
    """The chain ID of `diff_id` on top of the chain `parent` (None for a base layer)."""
    if parent is None:
        return diff_id
    return "sha256:" + hashlib.sha256(f"{parent} {diff_id}".encode()).hexdigest()


def add_reference(conn: sqlite3.Connection, owner: str, chain: str) -> None:
    """Record that `owner` keeps `chain` (inside the caller's write transaction)."""
    if conn.execute("SELECT 1 FROM layers WHERE chain_id = ?", (chain,)).fetchone() is None:
        raise errdefs.NotFound(f"layer does not exist: {chain}")
    conn.execute("INSERT OR IGNORE INTO layer_refs (owner, chain_id) VALUES (?, ?)", (owner, chain))


def remove_references(conn: sqlite3.Connection, owner: str) -> int:
    """Drop every reference of `owner` (inside the caller's write transaction); return count."""
    return conn.execute("DELETE FROM layer_refs WHERE owner = ?", (owner,)).rowcount


class LayerLease:
    """Layers held in memory by in-flight work; see `LayerStore.lease`."""

    def __init__(self, store: LayerStore) -> None:
        self._store = store
        self.chain_ids: list[str] = []

    def add(self, chain: str) -> Layer:
        """Hold `chain` (NotFound if it does not exist) until the lease ends."""
        return self._store._hold(self, chain)


def _layer(row: tuple[Any, ...]) -> Layer:
    c, d, p, cache, size, created = row
    return Layer(str(c), str(d), None if p is None else str(p), str(cache), int(size), int(created))


class LayerStore:
    """Layers on a MetaStore + a graph driver; make one with `LayerStore.open(...)`."""

    def __init__(
        self,
        meta: MetaStore,
        driver: Driver,
        root: Path,
        *,
        extractor: Extractor,
        reassembler: Reassembler,
        mounter: Mounter | None = None,
    ) -> None:
        self._meta = meta
        self._driver = driver
        self._root = Path(root)
        self._tarsplits = self._root / "tarsplit"
        self._extract = extractor
        self._reassemble = reassembler
        self._mounter: Mounter = mounter or kmount.Mounter()
        self._lock = threading.Lock()  # leases and in-flight cache ids
        self._held: Counter[str] = Counter()
        self._inflight: set[str] = set()

    @classmethod
    def open(
        cls,
        meta: MetaStore,
        driver: Driver,
        root: Path,
        *,
        extractor: Extractor,
        reassembler: Reassembler,
        mounter: Mounter | None = None,
    ) -> LayerStore:
        """Check the data root belongs to `driver`, then remove orphans of an earlier crash."""
        store = cls(
            meta, driver, root, extractor=extractor, reassembler=reassembler, mounter=mounter
        )
        try:
            store._tarsplits.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise errdefs.System(f"layer store {root}: {exc.strerror or exc}") from None
        meta.write_sync(store._claim_driver)
        removed = store.cleanup_orphans()
        if removed:
            log.info("layer store: removed %d orphaned layer directories", len(removed))
        return store

    @property
    def driver(self) -> Driver:
        return self._driver

    @property
    def meta(self) -> MetaStore:
        return self._meta

    @property
    def mounter(self) -> Mounter:
        return self._mounter

    @contextlib.contextmanager
    def new_cache_id(self) -> Iterator[str]:
        """A fresh driver id that `cleanup_orphans` leaves alone (with `-init`) in the block."""
        cache_id = secrets.token_hex(32)
        with self._lock:
            self._inflight.add(cache_id)
        try:
            yield cache_id
        finally:
            with self._lock:
                self._inflight.discard(cache_id)

    # -- read-only layers ------------------------------------------------------------------

    def register(
        self,
        source: BinaryIO | Path,
        parent: str | None = None,
        *,
        expected_diff_id: str | None = None,
        lease: LayerLease | None = None,
    ) -> Layer:
        """Extract a layer tar on top of `parent` and record it; return the (maybe existing) layer.

        With `lease`, the layer is held by it on return (do that when a reference row follows).
        """
        if expected_diff_id is not None:
            validate_digest(expected_diff_id)
        with self.lease() as own:
            parent_layer = own.add(parent) if parent is not None else None
            if parent is not None and self._depth(parent) >= self._driver.max_depth:
                raise errdefs.InvalidParameter(
                    f"max depth exceeded: a chain may have at most {self._driver.max_depth} layers"
                )
            with self.new_cache_id() as cache_id:
                try:
                    layer = self._extract_new(source, parent_layer, cache_id, expected_diff_id)
                    existing = self._meta.write_sync(lambda c: self._insert(c, layer, lease))
                except BaseException:
                    self.discard(cache_id)
                    raise
        if existing is not None:
            self.discard(cache_id)
            return existing
        return layer

    def _extract_new(
        self, source: BinaryIO | Path, parent: Layer | None, cache_id: str, expected: str | None
    ) -> Layer:
        self._driver.create(cache_id, parent.cache_id if parent else None, rw=False)
        target = self._driver.diff_path(cache_id)
        try:
            with open(self._tarsplits / cache_id, "xb") as tarsplit:
                if isinstance(source, Path):
                    with open(source, "rb") as stream:
                        result = self._extract(stream, target, self._driver.whiteout_mode, tarsplit)
                else:
                    result = self._extract(source, target, self._driver.whiteout_mode, tarsplit)
                tarsplit.flush()
                os.fsync(tarsplit.fileno())
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            raise errdefs.System(f"register layer:{where}: {exc.strerror or exc}") from None
        diff_id = result.diff_id
        validate_digest(diff_id)
        if expected is not None and diff_id != expected:
            raise errdefs.InvalidParameter(
                f"layer diff ID mismatch: expected {expected}, got {diff_id}"
            )
        kmount.syncfs(target)  # every file of the layer on disk before the row
        return Layer(
            chain_id=chain_id(parent.chain_id if parent else None, diff_id),
            diff_id=diff_id,
            parent=parent.chain_id if parent else None,
            cache_id=cache_id,
            size=int(result.size),
            created=time.time_ns(),
        )

    def _insert(
        self, conn: sqlite3.Connection, layer: Layer, lease: LayerLease | None
    ) -> Layer | None:
        row = conn.execute(
            f"SELECT {_LAYER_COLUMNS} FROM layers WHERE chain_id = ?", (layer.chain_id,)
        ).fetchone()
        if row is None:
            conn.execute(
                f"INSERT INTO layers ({_LAYER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    layer.chain_id,
                    layer.diff_id,
                    layer.parent,
                    layer.cache_id,
                    layer.size,
                    layer.created,
                ),
            )
        if lease is not None:
            self._add_hold(lease, layer.chain_id)
        return None if row is None else _layer(row)

    def get(self, chain: str) -> Layer:
        validate_digest(chain)
        row = self._meta.read_sync(
            lambda conn: conn.execute(
                f"SELECT {_LAYER_COLUMNS} FROM layers WHERE chain_id = ?", (chain,)
            ).fetchone()
        )
        if row is None:
            raise errdefs.NotFound(f"layer does not exist: {chain}")
        return _layer(row)

    def exists(self, chain: str) -> bool:
        try:
            self.get(chain)
        except errdefs.NotFound:
            return False
        return True

    def layers(self) -> list[Layer]:
        rows = self._meta.read_sync(
            lambda conn: conn.execute(
                f"SELECT {_LAYER_COLUMNS} FROM layers ORDER BY created, chain_id"
            ).fetchall()
        )
        return [_layer(row) for row in rows]

    def chain(self, chain: str) -> list[Layer]:
        """The layers of `chain`, base first."""
        validate_digest(chain)
        rows = self._meta.read_sync(lambda conn: _chain_rows(conn, chain))
        if not rows:
            raise errdefs.NotFound(f"layer does not exist: {chain}")
        return [_layer(row) for row in reversed(rows)]

    def size(self, chain: str) -> int:
        """This layer's own size in bytes."""
        return self.get(chain).size

    def chain_size(self, chain: str) -> int:
        """The size of the whole chain (an image's Size)."""
        return sum(layer.size for layer in self.chain(chain))

    def metadata(self, chain: str) -> dict[str, str]:
        """GraphDriver.Data of an image whose top layer is `chain`."""
        return self._driver.metadata(self.get(chain).cache_id)

    def tar_stream(self, chain: str, out: BinaryIO) -> int:
        """Write the layer's original uncompressed tar to `out`; return its size.

        DataLoss when the layer's files no longer reproduce its diff ID.
        """
        with self.lease() as lease:
            layer = lease.add(chain)
            hashing = _HashingWriter(out)
            try:
                with open(self._tarsplits / layer.cache_id, "rb") as tarsplit:
                    root = self._driver.diff_path(layer.cache_id)
                    self._reassemble(tarsplit, root, cast(BinaryIO, hashing))
            except FileNotFoundError:
                raise errdefs.DataLoss(f"layer {chain}: tar-split record is missing") from None
            except OSError as exc:
                raise errdefs.System(f"layer {chain}: {exc.strerror or exc}") from None
        actual = "sha256:" + hashing.hash.hexdigest()
        if actual != layer.diff_id:
            raise errdefs.DataLoss(
                f"layer {chain} is corrupt: its files give {actual}, expected {layer.diff_id}"
            )
        return hashing.size

    # -- references and deletion ------------------------------------------------------------

    @contextlib.contextmanager
    def lease(self) -> Iterator[LayerLease]:
        """Hold layers (`lease.add`, `register(lease=...)`) against deletion until the end."""
        lease = LayerLease(self)
        try:
            yield lease
        finally:
            with self._lock:
                for chain in lease.chain_ids:
                    self._held[chain] -= 1
                    if self._held[chain] <= 0:
                        del self._held[chain]
                lease.chain_ids.clear()

    def _hold(self, lease: LayerLease, chain: str) -> Layer:
        validate_digest(chain)

        def hold(conn: sqlite3.Connection) -> Layer:
            row = conn.execute(
                f"SELECT {_LAYER_COLUMNS} FROM layers WHERE chain_id = ?", (chain,)
            ).fetchone()
            if row is None:
                raise errdefs.NotFound(f"layer does not exist: {chain}")
            self._add_hold(lease, chain)
            return _layer(row)

        # On the writer thread, so it is ordered with delete_unreferenced's transaction.
        return self._meta.write_sync(hold)

    def _add_hold(self, lease: LayerLease, chain: str) -> None:
        with self._lock:
            self._held[chain] += 1
            lease.chain_ids.append(chain)

    def delete_unreferenced(self) -> list[Layer]:
        """Delete every layer nothing keeps (no reference, child, container or lease).

        Returns the deleted layers, children before parents.
        """
        deleted = self._meta.write_sync(self._delete_rows)
        for layer in deleted:
            self.discard(layer.cache_id)
        return deleted

    def _delete_rows(self, conn: sqlite3.Connection) -> list[Layer]:
        with self._lock:
            held = set(self._held)
        deleted: list[Layer] = []
        while True:
            rows = conn.execute(
                f"SELECT {_LAYER_COLUMNS} FROM layers AS l WHERE"
                " NOT EXISTS (SELECT 1 FROM layer_refs AS r WHERE r.chain_id = l.chain_id) AND"
                " NOT EXISTS (SELECT 1 FROM layers AS c WHERE c.parent = l.chain_id) AND"
                " NOT EXISTS (SELECT 1 FROM rw_layers AS w WHERE w.parent = l.chain_id)"
                " ORDER BY l.chain_id"
            ).fetchall()
            victims = [_layer(row) for row in rows if str(row[0]) not in held]
            if not victims:
                return deleted
            conn.executemany(
                "DELETE FROM layers WHERE chain_id = ?", [(v.chain_id,) for v in victims]
            )
            deleted += victims

    # -- crash repair -----------------------------------------------------------------------

    def cleanup_orphans(self) -> list[str]:
        """Remove driver layers and tar-split files no row knows; return the removed ids."""
        layers, known = self._meta.read_sync(_known_cache_ids)
        with self._lock:
            busy = set(self._inflight)
        removed = []
        for cache_id in self._driver.ids():
            if cache_id not in known and cache_id.removesuffix("-init") not in busy:
                try:
                    self._remove_orphan(cache_id)
                except errdefs.PymobyError as exc:
                    log.warning("layer store: cannot remove orphan layer %s: %s", cache_id, exc)
                    continue
                removed.append(cache_id)
        for entry in os.scandir(self._tarsplits):
            if entry.name not in layers and entry.name not in busy:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
        return removed

    def _remove_orphan(self, cache_id: str) -> None:
        try:
            spec = self._driver.get(cache_id)
        except errdefs.PymobyError:
            spec = None
        try:
            if spec is not None and spec.needs_mount and self._mounter.is_mountpoint(spec.target):
                self._mounter.unmount(spec.target, lazy=True)
        finally:
            if spec is not None:
                self._driver.put(cache_id)
        self._driver.remove(cache_id)

    # -- internals --------------------------------------------------------------------------

    def _claim_driver(self, conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (DRIVER_KEY,)).fetchone()
        name = self._driver.name
        if row is not None and row[0] != name and _has_layers(conn):
            raise errdefs.InvalidParameter(
                f"the data root holds layers of storage driver {row[0]!r}, not {name!r}: start "
                f"with --storage-driver {row[0]} or use another --data-root"
            )
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (DRIVER_KEY, name),
        )

    def _depth(self, chain: str) -> int:
        return len(self._meta.read_sync(lambda conn: _chain_rows(conn, chain)))

    def discard(self, cache_id: str) -> None:
        """Remove a layer's files after its row is gone (or never was); errors are logged."""
        try:
            if self._driver.exists(cache_id):
                self._driver.remove(cache_id)
            (self._tarsplits / cache_id).unlink(missing_ok=True)
        except (errdefs.PymobyError, OSError) as exc:
            log.warning("layer store: cannot remove layer files %s (left for start-up): %s",
                        cache_id, exc)  # fmt: skip


_CHAIN_SQL = (
    "WITH RECURSIVE up(id, n) AS (SELECT ?, 0 UNION ALL"
    " SELECT l.parent, up.n + 1 FROM layers AS l JOIN up ON l.chain_id = up.id"
    " WHERE l.parent IS NOT NULL)"
    f" SELECT {', '.join('l.' + c for c in _LAYER_COLUMNS.split(', '))}"
    " FROM up JOIN layers AS l ON l.chain_id = up.id ORDER BY up.n"
)


def _chain_rows(conn: sqlite3.Connection, chain: str) -> list[tuple[Any, ...]]:
    """The rows of `chain` and its ancestors, top first."""
    return list(conn.execute(_CHAIN_SQL, (chain,)).fetchall())


def _known_cache_ids(conn: sqlite3.Connection) -> tuple[set[str], set[str]]:
    """(cache ids of read-only layers, every cache id a row knows)."""
    layers = {str(r[0]) for r in conn.execute("SELECT cache_id FROM layers")}
    known = set(layers)
    for cache_id, init_id in conn.execute("SELECT cache_id, init_id FROM rw_layers"):
        known.add(str(cache_id))
        if init_id is not None:
            known.add(str(init_id))
    return layers, known


def _has_layers(conn: sqlite3.Connection) -> bool:
    return any(
        conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None
        for table in ("layers", "rw_layers")
    )


class _HashingWriter:
    """Passes writes to `out`, hashing and counting them (what reassembly writes to)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.hash.update(data)
        self.size += len(data)
        self._out.write(data)
        return len(data)
