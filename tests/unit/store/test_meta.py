"""MetaStore in one process: pragmas, transactions, readers vs the writer, errors, engine ID."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pymoby import errdefs
from pymoby.store import migrations
from pymoby.store.meta import MetaStore, convert_error


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "meta.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[MetaStore]:
    s = MetaStore.open(db_path)
    yield s
    s.close()


def _get(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _put(key: str, value: str) -> Callable[[sqlite3.Connection], None]:
    def fn(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    return fn


def _hold_write(store: MetaStore) -> tuple[threading.Thread, threading.Event, threading.Event]:
    """Start a write (in a thread) that stays inside its transaction until `release` is set."""
    started, release = threading.Event(), threading.Event()

    def fn(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO meta (key, value) VALUES ('held', 'yes')")
        started.set()
        assert release.wait(10)

    thread = threading.Thread(target=store.write_sync, args=(fn,))
    thread.start()
    assert started.wait(5)
    return thread, started, release


def test_open_creates_private_dir_and_file(db_path: Path) -> None:
    with MetaStore.open(db_path) as s:
        assert s.path == db_path
        assert s.schema_version == migrations.latest()
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600


def test_connections_use_wal_full_sync_and_foreign_keys(store: MetaStore) -> None:
    def pragmas(conn: sqlite3.Connection) -> tuple[object, ...]:
        names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout", "query_only")
        return tuple(conn.execute(f"PRAGMA {n}").fetchone()[0] for n in names)

    assert store.write_sync(pragmas) == ("wal", 2, 1, 5000, 0)
    assert store.read_sync(pragmas) == ("wal", 2, 1, 5000, 1)


async def test_set_and_get_meta(store: MetaStore) -> None:
    assert await store.get_meta("color") is None
    await store.set_meta("color", "blue")
    await store.set_meta("color", "red")
    assert await store.get_meta("color") == "red"


async def test_write_returns_the_result_of_fn(store: MetaStore) -> None:
    def fn(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO meta (key, value) VALUES ('a', '1'), ('b', '2')")
        return int(conn.execute("SELECT count(*) FROM meta").fetchone()[0])

    assert await store.write(fn) == 2
    assert await store.read(lambda c: _get(c, "b")) == "2"


async def test_exception_from_fn_rolls_back_and_passes_through(store: MetaStore) -> None:
    boom = errdefs.NotFound("No such container: x")

    def fn(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO meta (key, value) VALUES ('half', 'done')")
        raise boom

    with pytest.raises(errdefs.NotFound) as info:
        await store.write(fn)
    assert info.value is boom
    assert await store.get_meta("half") is None


async def test_sqlite_error_rolls_back_and_becomes_system(store: MetaStore) -> None:
    def fn(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO meta (key, value) VALUES ('half', 'done')")
        conn.execute("SELEKT nonsense")

    with pytest.raises(errdefs.System) as info:
        await store.write(fn)
    assert str(store.path) in str(info.value)
    assert isinstance(info.value.__cause__, sqlite3.Error)
    assert await store.get_meta("half") is None


async def test_constraint_violation_becomes_conflict(store: MetaStore) -> None:
    await store.set_meta("k", "v")
    with pytest.raises(errdefs.Conflict):
        await store.write(lambda c: c.execute("INSERT INTO meta (key, value) VALUES ('k', 'w')"))
    with pytest.raises(errdefs.Conflict):
        await store.write(lambda c: c.execute("INSERT INTO meta (key, value) VALUES ('n', NULL)"))
    assert await store.get_meta("k") == "v"


async def test_reads_cannot_write(store: MetaStore) -> None:
    with pytest.raises(errdefs.System):
        await store.read(lambda c: c.execute("INSERT INTO meta (key, value) VALUES ('r', 'w')"))
    assert await store.get_meta("r") is None


async def test_concurrent_writes_are_serialised(store: MetaStore) -> None:
    def increment(conn: sqlite3.Connection) -> None:
        value = int(_get(conn, "n") or "0")
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('n', ?)", (str(value + 1),))

    await asyncio.gather(*(store.write(increment) for _ in range(50)))
    assert await store.get_meta("n") == "50"


async def test_reads_do_not_wait_for_a_long_write(store: MetaStore) -> None:
    await store.set_meta("k", "old")
    started, release = threading.Event(), threading.Event()

    def long_write(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE meta SET value = 'new' WHERE key = 'k'")
        started.set()
        assert release.wait(10)

    writing = asyncio.create_task(store.write(long_write))
    try:
        assert await asyncio.to_thread(started.wait, 5)
        t0 = time.monotonic()
        assert await asyncio.wait_for(store.get_meta("k"), 2) == "old"  # last committed state
        await asyncio.sleep(0.01)  # the event loop keeps running meanwhile
        assert time.monotonic() - t0 < 1
        assert not writing.done()
    finally:
        release.set()
    await writing
    assert await store.get_meta("k") == "new"


def test_a_read_sees_one_snapshot(store: MetaStore) -> None:
    store.write_sync(_put("k", "1"))
    inside, proceed = threading.Event(), threading.Event()

    def read_twice(conn: sqlite3.Connection) -> tuple[str | None, str | None]:
        first = _get(conn, "k")
        inside.set()
        assert proceed.wait(5)
        return first, _get(conn, "k")

    results: list[tuple[str | None, str | None]] = []
    reader = threading.Thread(target=lambda: results.append(store.read_sync(read_twice)))
    reader.start()
    assert inside.wait(5)
    store.write_sync(_put("k", "2"))
    proceed.set()
    reader.join()
    assert results == [("1", "1")]
    assert store.read_sync(lambda c: _get(c, "k")) == "2"


def test_nested_calls_are_refused_instead_of_deadlocking(store: MetaStore) -> None:
    with pytest.raises(errdefs.System, match="deadlock"):
        store.write_sync(lambda c: store.write_sync(lambda c2: None))
    with pytest.raises(errdefs.System, match="deadlock"):
        store.read_sync(lambda c: store.read_sync(lambda c2: None))
    with pytest.raises(errdefs.System, match="deadlock"):
        store.write_sync(lambda c: store.close())
    with pytest.raises(errdefs.System, match="deadlock"):
        store.read_sync(lambda c: store.close())
    store.read_sync(lambda c: store.write_sync(_put("from-read", "ok")))  # different pool: fine
    assert store.read_sync(lambda c: _get(c, "from-read")) == "ok"
    assert store.read_sync(lambda c: 1) == 1


def test_engine_id_is_a_uuid4_created_once(db_path: Path) -> None:
    with MetaStore.open(db_path) as s:
        assert s.read_sync(lambda c: _get(c, "engine_id")) is None
        ids: list[str] = []
        threads = [threading.Thread(target=lambda: ids.append(s.engine_id())) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        first = s.engine_id()
        assert set(ids) == {first}
        assert uuid.UUID(first).version == 4
        assert s.read_sync(lambda c: _get(c, "engine_id")) == first
    with MetaStore.open(db_path) as s:
        assert s.engine_id() == first


async def test_close_is_idempotent_checkpoints_and_refuses_later_calls(db_path: Path) -> None:
    s = MetaStore.open(db_path)
    await s.set_meta("k", "v")
    assert db_path.with_name("meta.db-wal").exists()
    await asyncio.to_thread(s.close)
    s.close()
    wal = db_path.with_name("meta.db-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    with pytest.raises(errdefs.Unavailable):
        await s.write(lambda c: None)
    with pytest.raises(errdefs.Unavailable):
        await s.get_meta("k")
    with pytest.raises(errdefs.Unavailable):
        s.write_sync(lambda c: None)
    with MetaStore.open(db_path) as again:  # everything reached the DB file
        assert again.read_sync(lambda c: _get(c, "k")) == "v"


def test_close_finishes_queued_writes(db_path: Path) -> None:
    s = MetaStore.open(db_path)
    thread, _, release = _hold_write(s)
    queued = threading.Thread(target=s.write_sync, args=(_put("queued", "1"),))
    queued.start()
    deadline = time.monotonic() + 5
    while s._writer._work_queue.qsize() == 0 and time.monotonic() < deadline:  # peek: queued?
        time.sleep(0.005)
    closer = threading.Thread(target=s.close)
    closer.start()
    release.set()
    for t in (thread, queued, closer):
        t.join(5)
    with MetaStore.open(db_path) as again:
        assert again.read_sync(lambda c: (_get(c, "held"), _get(c, "queued"))) == ("yes", "1")


def test_not_a_database_is_data_loss_naming_the_file(db_path: Path) -> None:
    db_path.parent.mkdir()
    db_path.write_bytes(b"this is not SQLite\n" * 500)
    with pytest.raises(errdefs.DataLoss, match=str(db_path)):
        MetaStore.open(db_path)


def test_corrupt_pages_are_data_loss(db_path: Path) -> None:
    with MetaStore.open(db_path) as s:
        s.write_sync(
            lambda c: c.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [(f"k{i}", "v" * 200) for i in range(200)],
            )
        )
    data = bytearray(db_path.read_bytes())
    data[4096:] = b"\xa5" * (len(data) - 4096)  # keep page 1 (header + schema), clobber the rest
    db_path.write_bytes(bytes(data))
    # at open (the schema spans pages the clobbering hit) or at the first read
    with pytest.raises(errdefs.DataLoss, match=str(db_path)), MetaStore.open(db_path) as s:
        s.read_sync(lambda c: c.execute("SELECT * FROM meta").fetchall())


def test_newer_schema_is_refused_naming_both_versions(db_path: Path) -> None:
    db_path.parent.mkdir()
    newer = migrations.latest() + 7
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {newer}")
    conn.close()
    with pytest.raises(migrations.SchemaTooNew) as info:
        MetaStore.open(db_path)
    assert isinstance(info.value, errdefs.System)
    assert str(newer) in str(info.value)
    assert str(migrations.latest()) in str(info.value)
    with sqlite3.connect(db_path) as conn:  # left untouched
        assert conn.execute("PRAGMA user_version").fetchone()[0] == newer
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    conn.close()


def test_unusable_path_is_system_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(errdefs.System, match="file"):
        MetaStore.open(tmp_path / "file" / "meta.db")
    with pytest.raises(errdefs.System):
        MetaStore.open(tmp_path)  # a directory


@pytest.mark.parametrize(
    ("exc", "code", "expected"),
    [
        (sqlite3.OperationalError("database is locked"), sqlite3.SQLITE_BUSY, errdefs.Unavailable),
        (sqlite3.OperationalError("table is locked"), sqlite3.SQLITE_LOCKED, errdefs.Unavailable),
        (sqlite3.DatabaseError("malformed"), sqlite3.SQLITE_CORRUPT, errdefs.DataLoss),
        (sqlite3.DatabaseError("not a database"), sqlite3.SQLITE_NOTADB, errdefs.DataLoss),
        (sqlite3.OperationalError("disk I/O error"), sqlite3.SQLITE_IOERR | 0x300, errdefs.System),
        (sqlite3.OperationalError("database or disk is full"), sqlite3.SQLITE_FULL, errdefs.System),
        (sqlite3.IntegrityError("UNIQUE failed"), sqlite3.SQLITE_CONSTRAINT, errdefs.Conflict),
        (sqlite3.ProgrammingError("closed database"), None, errdefs.System),
    ],
)
def test_convert_error(
    exc: sqlite3.Error, code: int | None, expected: type[errdefs.PymobyError]
) -> None:
    if code is not None:
        exc.sqlite_errorcode = code
    converted = convert_error(exc, Path("/var/lib/pymoby/meta.db"))
    assert type(converted) is expected
    assert "/var/lib/pymoby/meta.db" in str(converted)
    assert str(exc) in str(converted)


def test_two_stores_on_one_file_second_writer_waits_or_is_unavailable(db_path: Path) -> None:
    first = MetaStore.open(db_path)
    impatient = MetaStore.open(db_path, busy_timeout=0.1)
    patient = MetaStore.open(db_path, busy_timeout=5)
    try:
        thread, _, release = _hold_write(first)
        t0 = time.monotonic()
        with pytest.raises(errdefs.Unavailable, match=str(db_path)):
            impatient.write_sync(_put("x", "1"))
        assert time.monotonic() - t0 < 2
        assert impatient.read_sync(lambda c: _get(c, "held")) is None  # reads still work

        waiting = threading.Thread(target=patient.write_sync, args=(_put("x", "2"),))
        waiting.start()
        time.sleep(0.1)
        assert waiting.is_alive()  # blocked on the first store's lock
        release.set()
        thread.join(5)
        waiting.join(5)
        assert not waiting.is_alive()
        impatient.write_sync(_put("y", "3"))
        state = patient.read_sync(lambda c: (_get(c, "held"), _get(c, "x"), _get(c, "y")))
        assert state == ("yes", "2", "3")
        assert first.read_sync(lambda c: c.execute("PRAGMA integrity_check").fetchone()[0]) == "ok"
    finally:
        for s in (first, impatient, patient):
            s.close()
