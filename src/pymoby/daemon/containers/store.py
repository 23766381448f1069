"""The ContainerStore: every container in memory, each persisted as one row of `containers`.

Rule: the in-memory index (by ID, by name) is the one the API reads; the `containers` table
(migration 4, drawn in pymoby.store.meta) is what survives the daemon. Each change is ONE
transaction (`add`, `save`, `rename`, `remove`), built from the record at the moment of the call
on the event loop, so transactions commit in call order and the last one describes the record.
Names are reserved in memory synchronously (`reserve_name`) before any await, so two creates
can never take the same name; the table's UNIQUE constraint is the backstop.

Lookup (`get`) is dockerd's GetContainer: full ID, then name (with or without the slash), then
a unique ID prefix. Errors: `invalid name or ID supplied: ""` (400), `multiple IDs found with
provided prefix: x` (400), `No such container: x` (404).

The row keeps the frequently changing state in columns and the rest (Config, HostConfig,
endpoints, mounts, paths) as one JSON document (`doc`), so a state change rewrites a few
columns only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from pymoby import errdefs
from pymoby.api.types.containers import Config, EndpointSettings, HostConfig
from pymoby.daemon.containers.model import Container, MountPoint, State
from pymoby.daemon.containers.names import (
    AmbiguousPrefix,
    ContainerNotFound,
    InvalidIdentifier,
    NameConflict,
)
from pymoby.daemon.containers.state import Status
from pymoby.daemon.networks.portmap import PortBinding
from pymoby.store.meta import MetaStore

_COLUMNS = (
    "id, name, image_id, created, doc, status, pid, exit_code, error, oom_killed, "
    "started_at, finished_at, restart_count, manually_stopped"
)


class _Doc(msgspec.Struct, kw_only=True):
    """The JSON document of one row (everything that is not a column)."""

    path: str
    args: list[str]
    config: Config
    host_config: HostConfig
    root: str
    bundle: str
    driver: str = ""
    platform: str = "linux"
    endpoints: dict[str, EndpointSettings | None] = msgspec.field(default_factory=dict)
    mounts: list[MountPoint] = msgspec.field(default_factory=list)  # msgspec encodes dataclasses
    sandbox_id: str = ""
    sandbox_key: str = ""
    ports: list[PortBinding] = msgspec.field(default_factory=list)
    proxy_pid: int = 0
    hostname_path: str = ""
    hosts_path: str = ""
    resolv_conf_path: str = ""
    mount_label: str = ""
    process_label: str = ""
    app_armor_profile: str = ""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_Doc)


def encode_doc(c: Container) -> bytes:
    doc = _Doc(
        path=c.path,
        args=list(c.args),
        config=c.config,
        host_config=c.host_config,
        root=str(c.root),
        bundle=str(c.bundle),
        driver=c.driver,
        platform=c.platform,
        endpoints=dict(c.endpoints),
        mounts=list(c.mounts),
        sandbox_id=c.sandbox_id,
        sandbox_key=c.sandbox_key,
        ports=list(c.ports),
        proxy_pid=c.proxy_pid,
        hostname_path=c.hostname_path,
        hosts_path=c.hosts_path,
        resolv_conf_path=c.resolv_conf_path,
        mount_label=c.mount_label,
        process_label=c.process_label,
        app_armor_profile=c.app_armor_profile,
    )
    return _encoder.encode(doc)


def _row(c: Container) -> tuple[Any, ...]:
    s = c.state
    return (
        c.id,
        c.name,
        c.image_id,
        c.created,
        encode_doc(c),
        s.status.value,
        s.pid,
        s.exit_code,
        s.error,
        int(s.oom_killed),
        s.started_at,
        s.finished_at,
        c.restart_count,
        int(c.manually_stopped),
    )


def decode_row(row: tuple[Any, ...]) -> Container:
    (cid, name, image_id, created, doc_bytes, status, pid, exit_code, error, oom) = row[:10]
    started_at, finished_at, restart_count, manually_stopped = row[10:]
    doc = _decoder.decode(doc_bytes)
    return Container(
        id=str(cid),
        name=str(name),
        created=int(created),
        path=doc.path,
        args=list(doc.args),
        config=doc.config,
        host_config=doc.host_config,
        image_id=str(image_id),
        root=Path(doc.root),
        bundle=Path(doc.bundle),
        driver=doc.driver,
        platform=doc.platform,
        endpoints=dict(doc.endpoints),
        mounts=doc.mounts,
        state=State(
            status=Status(status),
            pid=int(pid),
            exit_code=int(exit_code),
            error=str(error),
            oom_killed=bool(oom),
            started_at=int(started_at),
            finished_at=int(finished_at),
        ),
        restart_count=int(restart_count),
        manually_stopped=bool(manually_stopped),
        sandbox_id=doc.sandbox_id,
        sandbox_key=doc.sandbox_key,
        ports=list(doc.ports),
        proxy_pid=doc.proxy_pid,
        hostname_path=doc.hostname_path,
        hosts_path=doc.hosts_path,
        resolv_conf_path=doc.resolv_conf_path,
        mount_label=doc.mount_label,
        process_label=doc.process_label,
        app_armor_profile=doc.app_armor_profile,
    )


class ContainerStore:
    """All containers of the engine (see the module docstring)."""

    def __init__(self, meta: MetaStore) -> None:
        self._meta = meta
        self._by_id: dict[str, Container] = {}
        self._names: dict[str, str] = {}  # "/name" -> id (also reservations without a record)

    # -- loading -----------------------------------------------------------------------------

    async def load(self) -> list[Container]:
        """Read every row into memory (at daemon start); returns the containers, oldest first."""
        rows = await self._meta.read(
            lambda conn: conn.execute(
                f"SELECT {_COLUMNS} FROM containers ORDER BY created"
            ).fetchall()
        )
        loaded = [decode_row(tuple(r)) for r in rows]
        for c in loaded:
            self._by_id[c.id] = c
            self._names[c.name] = c.id
        return loaded

    # -- lookup ------------------------------------------------------------------------------

    def get(self, name_or_id: str) -> Container:
        """dockerd's GetContainer: full ID, name, unique ID prefix (errors: module docstring)."""
        if not name_or_id:
            raise InvalidIdentifier(name_or_id)
        found = self._by_id.get(name_or_id)
        if found is not None:
            return found
        by_name = self._names.get(name_or_id if name_or_id.startswith("/") else "/" + name_or_id)
        if by_name is not None and by_name in self._by_id:
            return self._by_id[by_name]
        matches = [cid for cid in self._by_id if cid.startswith(name_or_id)]
        if len(matches) > 1:
            raise AmbiguousPrefix(name_or_id)
        if not matches:
            raise ContainerNotFound(name_or_id)
        return self._by_id[matches[0]]

    def find(self, name_or_id: str) -> Container | None:
        try:
            return self.get(name_or_id)
        except errdefs.PymobyError:
            return None

    def by_id(self, cid: str) -> Container | None:
        return self._by_id.get(cid)

    def all(self) -> list[Container]:
        return list(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def id_for_name(self, name: str) -> str | None:
        return self._names.get(name if name.startswith("/") else "/" + name)

    def names_of(self, cid: str) -> list[str]:
        """Every name pointing at `cid` (one per container until links exist)."""
        return [n for n, owner in self._names.items() if owner == cid]

    def by_prefix(self, prefix: str) -> str | None:
        """The full ID of a unique prefix (used by the `id` list filter), else None."""
        matches = [cid for cid in self._by_id if cid.startswith(prefix)]
        return matches[0] if len(matches) == 1 else None

    def image_users(self, image_id: str) -> list[tuple[str, bool]]:
        """(container ID, running) of every container created from `image_id`.

        Thread-safe (a snapshot of the values): the image service calls it inside its
        transactions on the metadata writer thread.
        """
        return [(c.id, c.running) for c in list(self._by_id.values()) if c.image_id == image_id]

    # -- names -------------------------------------------------------------------------------

    def reserve_name(self, name: str, cid: str) -> None:
        """Take `name` ("/x") for `cid` now, or raise NameConflict with the owner's ID."""
        owner = self._names.get(name)
        if owner is not None and owner != cid:
            raise NameConflict(name, owner)
        self._names[name] = cid

    def try_reserve_name(self, name: str, cid: str) -> bool:
        owner = self._names.get(name)
        if owner is not None and owner != cid:
            return False
        self._names[name] = cid
        return True

    def release_name(self, name: str) -> None:
        self._names.pop(name, None)

    # -- changes (one transaction each) ------------------------------------------------------

    async def add(self, c: Container) -> None:
        """Insert a new container (its name must be reserved for it)."""
        row = _row(c)

        def insert(conn: sqlite3.Connection) -> None:
            taken = conn.execute("SELECT id FROM containers WHERE name = ?", (c.name,)).fetchone()
            if taken is not None:
                raise NameConflict(c.name, str(taken[0]))
            placeholders = ", ".join("?" * len(row))
            conn.execute(f"INSERT INTO containers ({_COLUMNS}) VALUES ({placeholders})", row)

        await self._meta.write(insert)
        self._by_id[c.id] = c
        self._names[c.name] = c.id

    async def save(self, c: Container) -> None:
        """Write the record's current state and document (one transaction)."""
        row = _row(c)

        def update(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE containers SET name = ?, image_id = ?, created = ?, doc = ?, "
                "status = ?, pid = ?, exit_code = ?, error = ?, oom_killed = ?, "
                "started_at = ?, finished_at = ?, restart_count = ?, manually_stopped = ? "
                "WHERE id = ?",
                (*row[1:], row[0]),
            )

        if c.id in self._by_id:
            await self._meta.write(update)

    async def remove(self, c: Container) -> None:
        """Delete the row, then forget the container and release its names."""
        await self._meta.write(
            lambda conn: conn.execute("DELETE FROM containers WHERE id = ?", (c.id,))
        )
        self._forget(c.id)

    def _forget(self, cid: str) -> None:
        self._by_id.pop(cid, None)
        for name in [n for n, owner in self._names.items() if owner == cid]:
            del self._names[name]

    async def rename(self, c: Container, new_name: str) -> str:
        """Give `c` the (already validated) `new_name`; returns the old name."""
        self.reserve_name(new_name, c.id)
        old = c.name
        c.name = new_name
        try:
            await self.save(c)
        except BaseException:
            c.name = old
            self.release_name(new_name)
            raise
        self.release_name(old)
        return old

    def ids(self) -> Iterable[str]:
        return list(self._by_id)
