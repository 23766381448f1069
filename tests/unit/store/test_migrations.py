"""Schema migrations: each one alone from n-1, all from zero == the drawing in meta.py."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pymoby import errdefs
from pymoby.store import meta, migrations
from pymoby.store.migrations import MIGRATIONS, Migration


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    c.execute("PRAGMA foreign_keys = ON")
    yield c
    c.close()


def _columns(conn: sqlite3.Connection, table: str) -> list[tuple[str, str, int, int]]:
    """(name, type, notnull, pk position) per column."""
    return [(r[1], r[2], r[3], r[5]) for r in conn.execute(f"PRAGMA table_info({table})")]


def _check_v1(conn: sqlite3.Connection, before: str) -> None:
    assert before == ""
    assert _columns(conn, "meta") == [("key", "TEXT", 1, 1), ("value", "TEXT", 1, 0)]
    conn.execute("INSERT INTO meta (key, value) VALUES ('a', 'b')")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO meta (key, value) VALUES ('a', 'c')")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO meta (key, value) VALUES (NULL, 'c')")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO meta (key, value) VALUES ('b', NULL)")


def _check_v2(conn: sqlite3.Connection, before: str) -> None:
    assert "layers" not in before
    assert [c[0] for c in _columns(conn, "layers")] == [
        "chain_id", "diff_id", "parent", "cache_id", "size", "created"
    ]  # fmt: skip
    base = "INSERT INTO layers VALUES (?, 'sha256:d', ?, ?, 1, 0)"
    conn.execute(base, ("a", None, "ca"))
    conn.execute(base, ("b", "a", "cb"))
    for bad in (("c", "missing", "cc"), ("c", None, "ca"), ("a", None, "cd")):
        with pytest.raises(sqlite3.IntegrityError):  # no parent / cache_id reused / chain_id
            conn.execute(base, bad)
    conn.execute("INSERT INTO layer_refs VALUES ('img', 'b')")
    conn.execute("INSERT INTO rw_layers VALUES ('ctr', 'cr', 'cr-init', 'b', 0)")
    for statement in (
        "INSERT INTO layer_refs VALUES ('img', 'missing')",
        "INSERT INTO rw_layers VALUES ('ctr2', 'cx', NULL, 'missing', 0)",
        "INSERT INTO rw_layers VALUES ('ctr2', 'cr', NULL, NULL, 0)",
        "DELETE FROM layers WHERE chain_id = 'a'",  # b is its child
        "DELETE FROM layers WHERE chain_id = 'b'",  # referenced by img and ctr
    ):
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(statement)


def _check_v3(conn: sqlite3.Connection, before: str) -> None:
    assert not {"images", "image_refs"} & {block.split("\n")[0] for block in before.split("\n\n")}
    assert _columns(conn, "images") == [
        ("id", "TEXT", 1, 1), ("config", "BLOB", 1, 0), ("chain_id", "TEXT", 0, 0),
        ("size", "INTEGER", 1, 0), ("created", "INTEGER", 0, 0), ("parent", "TEXT", 0, 0),
        ("last_tag_time", "INTEGER", 0, 0),
    ]  # fmt: skip
    assert [c[0] for c in _columns(conn, "image_refs")] == [
        "ref", "name", "tag", "digest", "image_id"
    ]  # fmt: skip
    a, b, c = ("sha256:" + x * 64 for x in "abc")
    image = "INSERT INTO images (id, config, size, parent) VALUES (?, x'7b7d', 0, ?)"
    conn.execute(image, (a, None))
    conn.execute(image, (b, a))
    for bad in (("busybox", None), (c, "sha256:" + "d" * 64), (a, None)):
        with pytest.raises(sqlite3.IntegrityError):  # not an ID / unknown parent / taken
            conn.execute(image, bad)
    ref = "INSERT INTO image_refs VALUES (?, 'docker.io/library/x', ?, ?, ?)"
    conn.execute(ref, ("docker.io/library/x:1", "1", None, a))
    conn.execute(ref, ("docker.io/library/x@sha256:1", None, "sha256:1", a))
    for bad_ref in (
        ("docker.io/library/x:1", "1", None, b),  # the reference is taken
        ("docker.io/library/x:2", "2", "sha256:2", a),  # tag and digest
        ("docker.io/library/x", None, None, a),  # neither
        ("docker.io/library/y:3", "3", None, a),  # not name:tag
        ("docker.io/library/x:4", "4", None, c),  # no such image
    ):
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(ref, bad_ref)
    with pytest.raises(sqlite3.IntegrityError):  # an image with references stays
        conn.execute("DELETE FROM images WHERE id = ?", (a,))
    conn.execute("DELETE FROM image_refs")
    conn.execute("DELETE FROM images WHERE id = ?", (a,))
    assert conn.execute("SELECT parent FROM images WHERE id = ?", (b,)).fetchone() == (None,)


def _check_v4(conn: sqlite3.Connection, before: str) -> None:
    assert "containers" not in {block.split("\n")[0] for block in before.split("\n\n")}
    assert [c[0] for c in _columns(conn, "containers")] == [
        "id", "name", "image_id", "created", "doc", "status", "pid", "exit_code", "error",
        "oom_killed", "started_at", "finished_at", "restart_count", "manually_stopped",
    ]  # fmt: skip
    row = "INSERT INTO containers VALUES (?, ?, 'sha256:x', 0, x'7b7d', ?, 0, 0, '', 0, 0, 0, 0, 0)"
    a, b = "a" * 64, "b" * 64
    conn.execute(row, (a, "/one", "created"))
    for bad in (
        (b, "/one", "created"),  # the name is taken
        (a, "/two", "created"),  # the ID is taken
        ("c" * 63, "/two", "created"),  # not 64 characters
        ("C" * 64, "/two", "created"),  # not lowercase hex
        (b, "two", "created"),  # no leading slash
        (b, "/", "created"),  # a slash alone
        (b, "/two", "removing"),  # not a persisted status
    ):
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(row, bad)
    conn.execute(row, (b, "/two", "exited"))
    assert conn.execute("SELECT count(*) FROM containers").fetchone() == (2,)


def _check_v5(conn: sqlite3.Connection, before: str) -> None:
    tables = {block.split("\n")[0] for block in before.split("\n\n")}
    assert "networks" not in tables and "endpoints" not in tables
    net = "INSERT INTO networks VALUES (?, ?, 'bridge', 0, x'7b7d')"
    a, b = "a" * 64, "b" * 64
    conn.execute(net, (a, "bridge"))
    for bad in ((b, "bridge"), (a, "other"), ("c" * 63, "x"), ("C" * 64, "y")):
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(net, bad)
    ep = "INSERT INTO endpoints VALUES (?, ?, ?, ?, x'7b7d')"
    conn.execute(ep, ("e1", a, "c1", "172.17.0.2"))
    conn.execute(ep, ("e2", a, "c2", None))
    conn.execute(ep, ("e3", a, "c3", None))  # several endpoints without an address
    for bad_ep in (
        ("e4", a, "c1", "172.17.0.3"),  # the container is already on the network
        ("e4", a, "c4", "172.17.0.2"),  # the address is taken
        ("e4", b, "c4", "172.17.0.4"),  # no such network
        ("e1", a, "c5", "172.17.0.5"),  # the ID is taken
    ):
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(ep, bad_ep)
    with pytest.raises(sqlite3.IntegrityError):  # a network with endpoints stays
        conn.execute("DELETE FROM networks WHERE id = ?", (a,))


# One check per migration: (DB at version n, schema text at n-1). Add one with each migration.
CHECKS: dict[int, Callable[[sqlite3.Connection, str], None]] = {
    1: _check_v1,
    2: _check_v2,
    3: _check_v3,
    4: _check_v4,
    5: _check_v5,
}


def test_every_migration_has_its_own_test() -> None:
    assert sorted(CHECKS) == [m.version for m in MIGRATIONS]


def test_migrations_are_numbered_1_to_n_with_unique_names() -> None:
    migrations.check_sequence(MIGRATIONS)
    names = [m.name for m in MIGRATIONS]
    assert all(names) and len(set(names)) == len(names)


@pytest.mark.parametrize("m", MIGRATIONS, ids=lambda m: f"v{m.version}")
def test_each_migration_from_the_previous_version(conn: sqlite3.Connection, m: Migration) -> None:
    assert migrations.migrate(conn, target=m.version - 1) == m.version - 1
    before = migrations.describe_schema(conn)
    assert migrations.apply_one(conn, m) is True
    assert migrations.user_version(conn) == m.version
    after = migrations.describe_schema(conn)
    assert after != before
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    CHECKS[m.version](conn, before)
    assert migrations.apply_one(conn, m) is False  # already there: nothing happens
    assert migrations.describe_schema(conn) == after


def _drawn_schema() -> tuple[int, str]:
    """The schema drawing in pymoby.store.meta's docstring, comments and spacing dropped."""
    doc = meta.__doc__ or ""
    found = re.search(r"^Schema \(user_version (\d+)\)::\n\n((?:    .*\n|\n)+)", doc, re.M)
    assert found, "meta.py docstring has no 'Schema (user_version N)::' block"
    return int(found.group(1)), _normalise(found.group(2))


def _normalise(text: str) -> str:
    lines = (re.sub(r"\s*--.*$", "", line).rstrip() for line in text.splitlines())
    lines = (" ".join(line.split()) if line else "" for line in lines)
    return "\n".join(lines).strip("\n")


def test_migrate_from_zero_matches_the_schema_drawn_in_meta(conn: sqlite3.Connection) -> None:
    assert migrations.migrate(conn) == migrations.latest()
    version, drawn = _drawn_schema()
    assert version == migrations.latest()
    assert _normalise(migrations.describe_schema(conn)) == drawn


def test_migrate_is_idempotent(conn: sqlite3.Connection) -> None:
    migrations.migrate(conn)
    schema = migrations.describe_schema(conn)
    assert migrations.migrate(conn) == migrations.latest()
    assert migrations.describe_schema(conn) == schema


def test_target_outside_the_known_range_is_refused(conn: sqlite3.Connection) -> None:
    with pytest.raises(ValueError, match="target"):
        migrations.migrate(conn, target=migrations.latest() + 1)
    with pytest.raises(ValueError, match="target"):
        migrations.migrate(conn, target=-1)


def test_gaps_in_the_sequence_are_refused(conn: sqlite3.Connection) -> None:
    broken = (Migration(1, "one", "CREATE TABLE a (x);"), Migration(3, "three", "SELECT 1;"))
    with pytest.raises(ValueError, match="expected 2"):
        migrations.migrate(conn, broken)
    assert migrations.user_version(conn) == 0


def test_newer_db_is_refused_naming_both_versions(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA user_version = 42")
    with pytest.raises(migrations.SchemaTooNew) as info:
        migrations.migrate(conn, where="metadata store /x/meta.db")
    assert isinstance(info.value, errdefs.System)
    message = str(info.value)
    assert "/x/meta.db" in message
    assert "42" in message
    assert f"version {migrations.latest()}" in message
    assert (info.value.found, info.value.known) == (42, migrations.latest())


def _fail_halfway(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE b (x)")
    conn.execute("INSERT INTO b VALUES (1)")
    raise RuntimeError("power cut")


def test_failing_callable_migration_leaves_the_previous_version(conn: sqlite3.Connection) -> None:
    steps = (Migration(1, "a", "CREATE TABLE a (x);"), Migration(2, "b", _fail_halfway))
    with pytest.raises(RuntimeError, match="power cut"):
        migrations.migrate(conn, steps)
    assert migrations.user_version(conn) == 1
    assert migrations.describe_schema(conn) == "a\n  x"
    assert not conn.in_transaction


def test_failing_sql_migration_leaves_the_previous_version(conn: sqlite3.Connection) -> None:
    steps = (Migration(1, "a", "CREATE TABLE a (x); CREATE TABLE c (y); SELEKT;"),)
    with pytest.raises(sqlite3.OperationalError):
        migrations.migrate(conn, steps)
    assert migrations.user_version(conn) == 0
    assert migrations.describe_schema(conn) == ""


def test_migration_breaking_foreign_keys_is_rolled_back(conn: sqlite3.Connection) -> None:
    steps = (
        Migration(1, "parent", "CREATE TABLE p (id INTEGER PRIMARY KEY);"),
        Migration(
            2,
            "orphan",
            """
            PRAGMA defer_foreign_keys = ON;
            CREATE TABLE c (id INTEGER PRIMARY KEY, p INTEGER NOT NULL REFERENCES p (id));
            INSERT INTO c VALUES (1, 99);
            """,
        ),
    )
    with pytest.raises(sqlite3.IntegrityError, match="foreign key"):
        migrations.migrate(conn, steps)
    assert migrations.user_version(conn) == 1
    assert "REFERENCES" not in migrations.describe_schema(conn)


def test_two_processes_migrating_at_once_apply_each_step_once(tmp_path: Path) -> None:
    calls: list[int] = []

    def counted(conn: sqlite3.Connection) -> None:
        calls.append(1)
        conn.execute("CREATE TABLE t (x)")

    steps = (Migration(1, "t", counted),)
    a = sqlite3.connect(tmp_path / "m.db", isolation_level=None, check_same_thread=False)
    b = sqlite3.connect(tmp_path / "m.db", isolation_level=None, check_same_thread=False)
    try:
        # b saw version 0 before a migrated; its transaction re-reads the version and skips.
        assert migrations.user_version(b) == 0
        assert migrations.migrate(a, steps) == 1
        assert migrations.apply_one(b, steps[0]) is False
        threads = [threading.Thread(target=migrations.migrate, args=(c, steps)) for c in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert calls == [1]
        assert migrations.user_version(b) == 1
    finally:
        a.close()
        b.close()


def test_split_sql_keeps_strings_comments_and_triggers_whole() -> None:
    script = """
        -- a comment; with a semicolon
        CREATE TABLE t (x TEXT DEFAULT 'a;b');
        CREATE TRIGGER tr AFTER INSERT ON t BEGIN
            UPDATE t SET x = 'c;d';
            DELETE FROM t WHERE x = ';';
        END;
        INSERT INTO t VALUES ('e')
    """
    parts = migrations.split_sql(script)
    assert len(parts) == 3
    assert parts[0].endswith("CREATE TABLE t (x TEXT DEFAULT 'a;b');")
    assert parts[1].startswith("CREATE TRIGGER") and parts[1].endswith("END;")
    assert " ".join(parts[2].split()) == "INSERT INTO t VALUES ('e') ;"  # ';' added at the end
    assert migrations.split_sql("  ;; \n") == []
    with pytest.raises(ValueError, match="incomplete"):
        migrations.split_sql("CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1;")


def test_describe_schema_draws_keys_references_and_indexes(conn: sqlite3.Connection) -> None:
    for statement in migrations.split_sql(
        """
        CREATE TABLE owner (id TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL UNIQUE);
        CREATE TABLE pet (
            owner TEXT NOT NULL REFERENCES owner (id) ON DELETE CASCADE,
            n     INTEGER NOT NULL,
            kind  TEXT DEFAULT 'cat',
            PRIMARY KEY (owner, n)
        );
        CREATE INDEX pet_kind ON pet (kind, n);
        CREATE VIEW cats AS SELECT * FROM pet WHERE kind = 'cat';
        """
    ):
        conn.execute(statement)
    assert migrations.describe_schema(conn) == (
        "owner\n"
        "  id    TEXT PRIMARY KEY NOT NULL\n"
        "  name  TEXT NOT NULL\n"
        "  UNIQUE (name)\n"
        "\n"
        "pet\n"
        "  owner  TEXT    NOT NULL\n"
        "  n      INTEGER NOT NULL\n"
        "  kind   TEXT    DEFAULT 'cat'\n"
        "  PRIMARY KEY (owner, n)\n"
        "  FOREIGN KEY (owner) REFERENCES owner(id) ON DELETE CASCADE\n"
        "  INDEX pet_kind (kind, n)\n"
        "\n"
        "VIEW cats"
    )
