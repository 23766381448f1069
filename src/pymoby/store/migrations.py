"""Schema migrations of the metadata DB: an ordered tuple, applied one transaction each.

Rule: the schema changes ONLY by appending a Migration to MIGRATIONS (never by editing one that
has shipped), and the drawing in the docstring of `pymoby.store.meta` is updated in the same
change (a test compares it with a DB migrated from zero).

- The version is SQLite's `PRAGMA user_version` (0 = empty file). Migration n takes the DB from
  n-1 to n; versions are 1, 2, 3, ... without gaps.
- Each migration runs in its own `BEGIN IMMEDIATE .. COMMIT` together with its `user_version`
  bump, so a crash or error mid-migration leaves the DB at n-1 (SQLite DDL is transactional).
  The version is re-read inside that transaction, so two processes opening the same file at once
  apply each migration exactly once.
- `apply` is SQL (one or more statements; triggers allowed) or a callable taking the connection.
  It must not COMMIT/ROLLBACK itself. A table rebuild that would trip foreign keys can use
  `PRAGMA defer_foreign_keys = ON`; `PRAGMA foreign_key_check` must be clean before the commit.
- A DB newer than the code (downgrade) is refused with SchemaTooNew; nothing is touched.
- This module raises raw sqlite3 errors; `pymoby.store.meta` converts them at its public edge.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pymoby import errdefs


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: takes the DB from `version - 1` to `version`."""

    version: int
    name: str
    apply: str | Callable[[sqlite3.Connection], None]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "meta: engine-wide key/value settings",
        """
        CREATE TABLE meta (
            key   TEXT PRIMARY KEY NOT NULL,
            value TEXT NOT NULL
        );
        """,
    ),
    Migration(
        2,
        "layers: read-only layer chains, their references, container (RW) layers",
        """
        CREATE TABLE layers (
            chain_id TEXT PRIMARY KEY NOT NULL,
            diff_id  TEXT NOT NULL,
            parent   TEXT REFERENCES layers (chain_id),
            cache_id TEXT NOT NULL UNIQUE,
            size     INTEGER NOT NULL,
            created  INTEGER NOT NULL
        );
        CREATE INDEX layers_parent ON layers (parent);
        CREATE TABLE layer_refs (
            owner    TEXT NOT NULL,
            chain_id TEXT NOT NULL REFERENCES layers (chain_id),
            PRIMARY KEY (owner, chain_id)
        );
        CREATE INDEX layer_refs_chain ON layer_refs (chain_id);
        CREATE TABLE rw_layers (
            id       TEXT PRIMARY KEY NOT NULL,
            cache_id TEXT NOT NULL UNIQUE,
            init_id  TEXT,
            parent   TEXT REFERENCES layers (chain_id),
            created  INTEGER NOT NULL
        );
        CREATE INDEX rw_layers_parent ON rw_layers (parent);
        """,
    ),
    Migration(
        3,
        "images and image_refs: image configs by ID, their tags and digests",
        """
        CREATE TABLE images (
            id            TEXT    PRIMARY KEY NOT NULL,
            config        BLOB    NOT NULL,
            chain_id      TEXT,
            size          INTEGER NOT NULL,
            created       INTEGER,
            parent        TEXT    REFERENCES images (id) ON DELETE SET NULL,
            last_tag_time INTEGER,
            CHECK (id GLOB 'sha256:*' AND length(id) = 71)
        );
        CREATE INDEX images_parent ON images (parent);
        CREATE INDEX images_chain_id ON images (chain_id);
        CREATE TABLE image_refs (
            ref      TEXT PRIMARY KEY NOT NULL,
            name     TEXT NOT NULL,
            tag      TEXT,
            digest   TEXT,
            image_id TEXT NOT NULL REFERENCES images (id),
            CHECK ((tag IS NULL) <> (digest IS NULL)),
            CHECK (ref = name || coalesce(':' || tag, '@' || digest))
        );
        CREATE INDEX image_refs_image_id ON image_refs (image_id);
        CREATE INDEX image_refs_name ON image_refs (name);
        """,
    ),
    Migration(
        4,
        "containers: one row per container, its state in columns, the rest as JSON",
        """
        CREATE TABLE containers (
            id               TEXT    PRIMARY KEY NOT NULL,
            name             TEXT    NOT NULL UNIQUE,
            image_id         TEXT    NOT NULL,
            created          INTEGER NOT NULL,
            doc              BLOB    NOT NULL,
            status           TEXT    NOT NULL,
            pid              INTEGER NOT NULL,
            exit_code        INTEGER NOT NULL,
            error            TEXT    NOT NULL,
            oom_killed       INTEGER NOT NULL,
            started_at       INTEGER NOT NULL,
            finished_at      INTEGER NOT NULL,
            restart_count    INTEGER NOT NULL,
            manually_stopped INTEGER NOT NULL,
            CHECK (length(id) = 64 AND id NOT GLOB '*[^0-9a-f]*'),
            CHECK (name GLOB '/?*'),
            CHECK (status IN ('created', 'running', 'paused', 'restarting', 'exited', 'dead'))
        );
        CREATE INDEX containers_image_id ON containers (image_id);
        """,
    ),
    Migration(
        5,
        "networks and endpoints: network records, and the endpoints of running containers",
        """
        CREATE TABLE networks (
            id      TEXT    PRIMARY KEY NOT NULL,
            name    TEXT    NOT NULL UNIQUE,
            driver  TEXT    NOT NULL,
            created INTEGER NOT NULL,
            doc     BLOB    NOT NULL,
            CHECK (length(id) = 64 AND id NOT GLOB '*[^0-9a-f]*')
        );
        CREATE TABLE endpoints (
            id           TEXT PRIMARY KEY NOT NULL,
            network_id   TEXT NOT NULL REFERENCES networks (id),
            container_id TEXT NOT NULL,
            ipv4         TEXT,
            doc          BLOB NOT NULL,
            UNIQUE (network_id, container_id),
            UNIQUE (network_id, ipv4)
        );
        CREATE INDEX endpoints_container ON endpoints (container_id);
        """,
    ),
)


class SchemaTooNew(errdefs.System):
    """The DB was written by a newer pymoby; refusing to open it rather than guess."""

    def __init__(self, where: str, found: int, known: int) -> None:
        super().__init__(
            f"{where} has schema version {found}, newer than version {known} known to this "
            f"pymoby; refusing to open it (run a newer pymoby or restore a backup)"
        )
        self.found = found
        self.known = known


def latest(migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """The version a DB has after all of `migrations` (0 if there are none)."""
    return migrations[-1].version if migrations else 0


def check_sequence(migrations: Sequence[Migration]) -> None:
    """Raise ValueError unless the versions are exactly 1, 2, ..., n in order."""
    for index, m in enumerate(migrations, start=1):
        if m.version != index:
            raise ValueError(f"migration {m.name!r} has version {m.version}, expected {index}")


def user_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def split_sql(script: str) -> list[str]:
    """Split a script into complete statements (semicolons in strings and triggers are kept).

    `executescript` cannot be used: it COMMITs any open transaction first.
    """
    statements: list[str] = []
    buf = ""
    for piece in script.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \t\r\n;"):
                statements.append(buf.strip())
            buf = ""
    if buf[:-1].strip():  # the text after the last ';' never completes
        raise ValueError(f"incomplete SQL statement: {buf[:-1].strip()[:80]!r}")
    return statements


def _run(conn: sqlite3.Connection, m: Migration) -> None:
    if callable(m.apply):
        m.apply(conn)
        return
    for statement in split_sql(m.apply):
        conn.execute(statement)


def apply_one(conn: sqlite3.Connection, m: Migration) -> bool:
    """Apply `m` in its own transaction if the DB is at `m.version - 1`.

    Returns False (and changes nothing) when the DB is already at `m.version` or later.
    `conn` must be in autocommit mode (isolation_level=None) with no open transaction.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = user_version(conn)
        if current >= m.version:
            conn.execute("ROLLBACK")
            return False
        if current != m.version - 1:
            raise ValueError(f"migration {m.version} cannot apply to DB version {current}")
        _run(conn, m)
        broken = conn.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise sqlite3.IntegrityError(
                f"migration {m.version} ({m.name}) breaks foreign keys: {broken[:5]}"
            )
        conn.execute(f"PRAGMA user_version = {int(m.version)}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return True


def migrate(
    conn: sqlite3.Connection,
    migrations: Sequence[Migration] = MIGRATIONS,
    *,
    target: int | None = None,
    where: str = "metadata store",
) -> int:
    """Bring the DB up to `target` (default: the latest version) and return its version.

    Raises SchemaTooNew when the DB is newer than the newest of `migrations`.
    """
    check_sequence(migrations)
    newest = latest(migrations)
    goal = newest if target is None else target
    if not 0 <= goal <= newest:
        raise ValueError(f"target version {goal} is outside 0..{newest}")
    current = user_version(conn)  # no lock needed when there is nothing to do
    if current > newest:
        raise SchemaTooNew(where, current, newest)
    for m in migrations[current:goal]:
        apply_one(conn, m)
    current = user_version(conn)
    if current > newest:  # another process raced ahead with newer code
        raise SchemaTooNew(where, current, newest)
    return current


def describe_schema(conn: sqlite3.Connection) -> str:
    """Render the schema as the drawing in `pymoby.store.meta`'s docstring (without comments).

    One block per table: its name, then one line per column, then table constraints and indexes.
    """
    tables = [
        str(row[0])
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    blocks = [_describe_table(conn, table) for table in tables]
    for kind, name in conn.execute(
        "SELECT type, name FROM sqlite_master WHERE type IN ('view', 'trigger') ORDER BY type, name"
    ):
        blocks.append(f"{str(kind).upper()} {name}")
    return "\n\n".join(blocks)


def _describe_table(conn: sqlite3.Connection, table: str) -> str:
    quoted = _quote(table)
    columns = conn.execute(f"PRAGMA table_info({quoted})").fetchall()
    pk = [str(c[1]) for c in sorted(columns, key=lambda c: int(c[5])) if int(c[5]) > 0]
    width_name = max(len(str(c[1])) for c in columns)
    width_type = max(len(str(c[2])) for c in columns)
    lines = [table]
    for _cid, name, ctype, notnull, default, pk_index in columns:
        attrs = [str(ctype).ljust(width_type)]
        if pk_index and len(pk) == 1:
            attrs.append("PRIMARY KEY")
        if notnull:
            attrs.append("NOT NULL")
        if default is not None:
            attrs.append(f"DEFAULT {default}")
        lines.append(f"  {str(name).ljust(width_name)}  {' '.join(attrs)}".rstrip())
    if len(pk) > 1:
        lines.append(f"  PRIMARY KEY ({', '.join(pk)})")
    fks: dict[int, list[tuple[str, str, str, str]]] = {}
    for fk in conn.execute(f"PRAGMA foreign_key_list({quoted})"):
        fks.setdefault(int(fk[0]), []).append((str(fk[3]), str(fk[2]), str(fk[4]), str(fk[6])))
    for _id, parts in sorted(fks.items()):
        cols = ", ".join(p[0] for p in parts)
        ref = f"{parts[0][1]}({', '.join(p[2] for p in parts)})"
        on_delete = "" if parts[0][3] == "NO ACTION" else f" ON DELETE {parts[0][3]}"
        lines.append(f"  FOREIGN KEY ({cols}) REFERENCES {ref}{on_delete}")
    for _seq, name, unique, origin, _partial in sorted(
        conn.execute(f"PRAGMA index_list({quoted})").fetchall(), key=lambda i: str(i[1])
    ):
        if origin == "pk":
            continue
        cols = ", ".join(str(c[2]) for c in conn.execute(f"PRAGMA index_info({_quote(str(name))})"))
        if origin == "u":
            lines.append(f"  UNIQUE ({cols})")
        else:
            lines.append(f"  {'UNIQUE INDEX' if unique else 'INDEX'} {name} ({cols})")
    return "\n".join(lines)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
