"""The metadata DB: one SQLite file with the engine's small, structured state.

Rule: every state change is ONE transaction, run by the ONE writer thread.

    event loop                  writer thread (exactly one)          reader threads (a few)
    await store.write(fn) ----> BEGIN IMMEDIATE
                                fn(conn)   check + change
                                COMMIT     (ROLLBACK if fn raises)
    await store.read(fn) ------------------------------------------> BEGIN     (one snapshot)
                                                                     fn(conn)
                                                                     ROLLBACK

- One writer. All writes run on a single-worker thread that owns the only writing connection, so
  writes of this process are serialised without locks. `fn` does the whole state change (checks
  included) inside its transaction; it never awaits and never calls `write` (refused: deadlock).
  Another process, or a second MetaStore on the same file, waits up to `busy_timeout` for the
  SQLite write lock and then gets errdefs.Unavailable; nothing is corrupted either way.
- Readers never wait for the writer (WAL). Each `read` sees one committed snapshot on a
  read-only (`query_only`) connection of a small thread pool, so `docker ps` is not slowed by a
  long write. Inside a write `fn`, read through `conn`, not through `read`.
- The event loop never touches the file: `write`/`read` hand `fn` to those threads. `open`,
  `close`, `engine_id` and the `*_sync` methods block: call them from a thread
  (`asyncio.to_thread`) or at start-up.
- Crash semantics: WAL + synchronous=FULL + foreign_keys=ON. Once COMMIT returned, the change is
  on disk; a crash (SIGKILL, power loss) at any other moment leaves the previous committed state,
  so start-up has no partial state to repair. A cancelled `await store.write(fn)` may still
  commit if `fn` already started: the caller re-reads to learn the outcome.
- Errors: sqlite3 exceptions never leave this module. Corrupt / not a database -> errdefs.DataLoss
  naming the file; busy / locked -> errdefs.Unavailable; constraint violated -> errdefs.Conflict;
  anything else -> errdefs.System. Exceptions raised by `fn` itself pass through unchanged, after
  the ROLLBACK.
- The schema changes only through `pymoby.store.migrations` (ordered, PRAGMA user_version). The
  drawing below is compared with a DB migrated from zero by tests/unit/store/test_migrations.py:
  change both together.

Schema (user_version 5)::

    containers                           -- one row per container (daemon.containers.store)
      id                TEXT    PRIMARY KEY NOT NULL  -- 64 hex (CHECK)
      name              TEXT    NOT NULL     -- '/festive_hopper' (CHECK: a slash, then text)
      image_id          TEXT    NOT NULL     -- 'sha256:..', '' for FROM scratch (no FK)
      created           INTEGER NOT NULL     -- unix nanoseconds
      doc               BLOB    NOT NULL     -- JSON: Config, HostConfig, endpoints, paths, ...
      status            TEXT    NOT NULL     -- created|running|paused|restarting|exited|dead
      pid               INTEGER NOT NULL     -- the process's host pid while alive, else 0
      exit_code         INTEGER NOT NULL
      error             TEXT    NOT NULL     -- the last start/exit error, '' when none
      oom_killed        INTEGER NOT NULL     -- 0/1
      started_at        INTEGER NOT NULL     -- unix nanoseconds, 0 = never
      finished_at       INTEGER NOT NULL     -- unix nanoseconds, 0 = never
      restart_count     INTEGER NOT NULL
      manually_stopped  INTEGER NOT NULL     -- 0/1: stop/kill by a user (unless-stopped)
      INDEX containers_image_id (image_id)
      UNIQUE (name)

    endpoints                            -- endpoints of running containers (daemon.networks)
      id            TEXT PRIMARY KEY NOT NULL  -- 64 hex
      network_id    TEXT NOT NULL
      container_id  TEXT NOT NULL
      ipv4          TEXT                 -- '172.18.0.2', NULL when the network gives none
      doc           BLOB NOT NULL        -- JSON: MAC, interface names, aliases, DNS names
      FOREIGN KEY (network_id) REFERENCES networks(id)
      INDEX endpoints_container (container_id)
      UNIQUE (network_id, container_id)
      UNIQUE (network_id, ipv4)

    image_refs                           -- tags and digests (pymoby.store.images)
      ref       TEXT PRIMARY KEY NOT NULL  -- 'docker.io/library/busybox:latest' / 'name@sha256:..'
      name      TEXT NOT NULL            -- normalised: 'docker.io/library/busybox'
      tag       TEXT                     -- exactly one of tag and digest is set
      digest    TEXT
      image_id  TEXT NOT NULL
      FOREIGN KEY (image_id) REFERENCES images(id)
      INDEX image_refs_image_id (image_id)
      INDEX image_refs_name (name)

    images                               -- one row per image (pymoby.store.images)
      id             TEXT    PRIMARY KEY NOT NULL  -- 'sha256:' + sha256 of config
      config         BLOB    NOT NULL      -- the image config JSON, verbatim
      chain_id       TEXT                  -- top layer's chain_id (no FK), NULL: no layers
      size           INTEGER NOT NULL      -- bytes of all its layers
      created        INTEGER               -- config's `created`, unix nanoseconds, or NULL
      parent         TEXT                  -- local parent image (commit, build), or NULL
      last_tag_time  INTEGER               -- unix nanoseconds of the last `docker tag`, or NULL
      FOREIGN KEY (parent) REFERENCES images(id) ON DELETE SET NULL
      INDEX images_chain_id (chain_id)
      INDEX images_parent (parent)

    layer_refs                           -- who keeps a layer (pymoby.store.layers)
      owner     TEXT NOT NULL            -- e.g. an image ID; written by the image store
      chain_id  TEXT NOT NULL
      PRIMARY KEY (owner, chain_id)
      FOREIGN KEY (chain_id) REFERENCES layers(chain_id)
      INDEX layer_refs_chain (chain_id)

    layers                               -- read-only layers, immutable once inserted
      chain_id  TEXT    PRIMARY KEY NOT NULL  -- diff_id of a base, else sha256("<parent> <diff>")
      diff_id   TEXT    NOT NULL         -- sha256 of the uncompressed tar
      parent    TEXT                     -- chain_id below, NULL for a base layer
      cache_id  TEXT    NOT NULL         -- the graph driver's id (64 hex)
      size      INTEGER NOT NULL         -- bytes of this layer alone
      created   INTEGER NOT NULL         -- unix nanoseconds
      FOREIGN KEY (parent) REFERENCES layers(chain_id)
      INDEX layers_parent (parent)
      UNIQUE (cache_id)

    meta                                 -- engine-wide settings, one row per key
      key    TEXT  PRIMARY KEY NOT NULL  -- 'engine_id': uuid4, created once, never changed
      value  TEXT  NOT NULL

    networks                             -- one row per network (daemon.networks.store)
      id       TEXT    PRIMARY KEY NOT NULL  -- 64 hex (CHECK)
      name     TEXT    NOT NULL
      driver   TEXT    NOT NULL         -- bridge|host|null
      created  INTEGER NOT NULL         -- unix nanoseconds
      doc      BLOB    NOT NULL         -- JSON: options, labels, IPAM, bridge name, flags
      UNIQUE (name)

    rw_layers                            -- container layers, one per container
      id        TEXT    PRIMARY KEY NOT NULL  -- the container ID
      cache_id  TEXT    NOT NULL         -- the graph driver's id (64 hex)
      init_id   TEXT                     -- '<cache_id>-init' layer below it, or NULL
      parent    TEXT                     -- the image's top chain_id, NULL for FROM scratch
      created   INTEGER NOT NULL         -- unix nanoseconds
      FOREIGN KEY (parent) REFERENCES layers(chain_id)
      INDEX rw_layers_parent (parent)
      UNIQUE (cache_id)
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from pymoby import errdefs
from pymoby.store import migrations

T = TypeVar("T")

log = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT = 5.0  # seconds a writer waits for another process's write lock
DEFAULT_READERS = 4
ENGINE_ID_KEY = "engine_id"


def convert_error(exc: sqlite3.Error, path: Path) -> errdefs.PymobyError:
    """Map a sqlite3 exception onto an errdefs class, naming the DB file."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    where = f"metadata store {path}"
    if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return errdefs.DataLoss(f"{where} is corrupt or not a database: {exc}")
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return errdefs.Unavailable(f"{where} is locked by another writer: {exc}")
    if isinstance(exc, sqlite3.IntegrityError):
        return errdefs.Conflict(f"{where}: {exc}")
    if primary == sqlite3.SQLITE_FULL:
        return errdefs.System(f"{where}: disk full: {exc}")
    return errdefs.System(f"{where}: {exc}")


class MetaStore:
    """The metadata DB. Make one with `MetaStore.open(path)`; see the module docstring."""

    def __init__(self, path: Path, *, busy_timeout: float, readers: int) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="pymoby-meta-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="pymoby-meta-reader")
        self._wconn: sqlite3.Connection | None = None
        self._writer_ident: int | None = None
        self._local = threading.local()
        self._rconns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._version = 0
        self._engine_id: str | None = None

    # -- life cycle -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        readers: int = DEFAULT_READERS,
    ) -> MetaStore:
        """Open (creating if needed) the DB at `path` and apply pending migrations. Blocks."""
        path = Path(path)
        _prepare_file(path)
        store = cls(path, busy_timeout=busy_timeout, readers=readers)
        try:
            store._version = store._writer.submit(store._open_writer).result()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        """Finish queued work, checkpoint the WAL into the DB file and close. Idempotent."""
        self._refuse_inside("close", write=True, read=True)
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._readers.shutdown(wait=True)
        for conn in self._rconns:
            _close_quietly(conn, checkpoint=False)
        self._rconns.clear()
        try:
            self._writer.submit(self._close_writer).result()
        finally:
            self._writer.shutdown(wait=True)

    def __enter__(self) -> MetaStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def schema_version(self) -> int:
        """PRAGMA user_version after the migrations ran at open."""
        return self._version

    # -- transactions -----------------------------------------------------------------------

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` in one write transaction on the writer thread; return its result."""
        return await asyncio.wrap_future(self._submit(self._writer, self._run_write, fn))

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on a read-only snapshot in a reader thread; return its result."""
        return await asyncio.wrap_future(self._submit(self._readers, self._run_read, fn))

    def write_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`write` for synchronous callers (threads, start-up, tests). Blocks."""
        self._refuse_inside("write_sync", write=True, read=False)
        return self._submit(self._writer, self._run_write, fn).result()

    def read_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`read` for synchronous callers (threads, start-up, tests). Blocks."""
        self._refuse_inside("read_sync", write=False, read=True)
        return self._submit(self._readers, self._run_read, fn).result()

    # -- small helpers on the meta table --------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        return await self.read(lambda conn: _get(conn, key))

    async def set_meta(self, key: str, value: str) -> None:
        await self.write(lambda conn: _set(conn, key, value))

    def engine_id(self) -> str:
        """The persistent engine ID (a uuid4), created on the first call ever. Blocks once."""
        if self._engine_id is None:
            self._engine_id = self.write_sync(_ensure_engine_id)
        return self._engine_id

    # -- internals --------------------------------------------------------------------------

    def _submit(
        self,
        pool: ThreadPoolExecutor,
        run: Callable[[Callable[[sqlite3.Connection], T]], T],
        fn: Callable[[sqlite3.Connection], T],
    ) -> Future[T]:
        if self._closed:
            raise errdefs.Unavailable(f"metadata store {self._path} is closed")
        try:
            return pool.submit(run, fn)
        except RuntimeError as exc:  # shut down between the check and the submit
            raise errdefs.Unavailable(f"metadata store {self._path} is closed") from exc

    def _refuse_inside(self, what: str, *, write: bool, read: bool) -> None:
        """Waiting for our own thread pool from one of its threads would deadlock."""
        if write and threading.get_ident() == self._writer_ident:
            raise errdefs.System(f"MetaStore.{what} called inside a write: it would deadlock")
        if read and getattr(self._local, "conn", None) is not None:
            raise errdefs.System(f"MetaStore.{what} called inside a read: it would deadlock")

    def _connect(self, *, reader: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout,
            isolation_level=None,  # explicit BEGIN/COMMIT only
            check_same_thread=not reader,  # readers are closed by close() on another thread
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            if not reader:
                self._enable_wal(conn)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            if reader:
                conn.execute("PRAGMA query_only = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # Switching a fresh file to WAL needs an exclusive lock, and SQLite answers BUSY at once
        # (no busy handler) while another process is switching or migrating it: retry a while.
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
                break
            except sqlite3.OperationalError as exc:
                code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
                if code != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)
        if mode.lower() != "wal":
            raise errdefs.System(f"metadata store {self._path}: cannot use WAL (got {mode!r})")

    def _open_writer(self) -> int:
        self._writer_ident = threading.get_ident()
        try:
            self._wconn = self._connect(reader=False)
            return migrations.migrate(self._wconn, where=f"metadata store {self._path}")
        except sqlite3.Error as exc:
            raise convert_error(exc, self._path) from exc

    def _close_writer(self) -> None:
        if self._wconn is not None:
            _close_quietly(self._wconn, checkpoint=True)
            self._wconn = None

    def _run_write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._wconn
        if conn is None:
            raise errdefs.Unavailable(f"metadata store {self._path} is closed")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                _rollback_quietly(conn)
                raise
        except sqlite3.Error as exc:
            raise convert_error(exc, self._path) from exc
        return result

    def _run_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            conn = self._reader_conn()
            conn.execute("BEGIN")  # one snapshot for everything fn reads
            try:
                return fn(conn)
            finally:
                _rollback_quietly(conn)
        except sqlite3.Error as exc:
            raise convert_error(exc, self._path) from exc

    def _reader_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(reader=True)
            with self._lock:
                self._rconns.append(conn)
            self._local.conn = conn
        return conn


def _prepare_file(path: Path) -> None:
    """Create the parent directory (0700) and the DB file (0600) before SQLite opens it."""
    try:
        if not path.parent.is_dir():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(path.parent, 0o700)  # mkdir's mode is filtered by the umask
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            return
        os.close(fd)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)  # the new name survives a power cut, not just its contents
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise errdefs.System(f"metadata store {path}: {exc.strerror or exc}") from exc


def _rollback_quietly(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("metadata store: ROLLBACK failed")


def _close_quietly(conn: sqlite3.Connection, *, checkpoint: bool) -> None:
    try:
        if checkpoint:  # fold the WAL into the DB file; a busy reader elsewhere just defers it
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error:
        log.warning("metadata store: WAL checkpoint at close failed", exc_info=True)
    finally:
        conn.close()


def _get(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _set(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def _ensure_engine_id(conn: sqlite3.Connection) -> str:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
        (ENGINE_ID_KEY, str(uuid.uuid4())),
    )
    value = _get(conn, ENGINE_ID_KEY)
    assert value is not None  # inserted above in this very transaction
    return value
