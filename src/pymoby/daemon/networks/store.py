"""The NetworkStore: every network and endpoint in memory, each persisted as one SQLite row.

Rule: the in-memory maps are what the API reads; the `networks` and `endpoints` tables
(migration 5, drawn in pymoby.store.meta) are what survives the daemon. Every change is ONE
transaction, built on the event loop at the moment of the call, and the memory is changed only
after the transaction committed, so a failed write changes nothing. Names are reserved in memory
synchronously before any await (`reserve_name`), so two creates never take the same name; the
table's UNIQUE constraint is the backstop. Endpoint addresses are UNIQUE per network in the
table: the database refuses a double allocation even if memory were wrong.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address

import msgspec

from pymoby import errdefs
from pymoby.daemon.networks.model import Endpoint, EndpointDoc, Network, NetworkDoc
from pymoby.store.meta import MetaStore

_encode = msgspec.json.Encoder().encode
_net_doc = msgspec.json.Decoder(NetworkDoc)
_ep_doc = msgspec.json.Decoder(EndpointDoc)


class NetworkStore:
    """All networks and endpoints of the engine (see the module docstring)."""

    def __init__(self, meta: MetaStore) -> None:
        self._meta = meta
        self.networks: dict[str, Network] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self._names: set[str] = set()

    async def load(self) -> None:
        def read(conn: sqlite3.Connection) -> tuple[list[sqlite3.Row], list[sqlite3.Row]]:
            nets = conn.execute(
                "SELECT id, name, driver, created, doc FROM networks ORDER BY created"
            ).fetchall()
            eps = conn.execute(
                "SELECT id, network_id, container_id, ipv4, doc FROM endpoints"
            ).fetchall()
            return nets, eps

        nets, eps = await self._meta.read(read)
        for nid, name, driver, created, doc in nets:
            net = Network(str(nid), str(name), str(driver), int(created), _net_doc.decode(doc))
            self.networks[net.id] = net
            self._names.add(net.name)
        for eid, nid, cid, ipv4, doc in eps:
            ep = Endpoint(
                str(eid),
                str(nid),
                str(cid),
                IPv4Address(ipv4) if ipv4 else None,
                _ep_doc.decode(doc),
            )
            self.endpoints[ep.id] = ep

    # -- networks ----------------------------------------------------------------------------

    def by_name(self, name: str) -> Network | None:
        for net in self.networks.values():
            if net.name == name:
                return net
        return None

    def reserve_name(self, name: str) -> None:
        """Take `name` for a network being created (Conflict when taken)."""
        if name in self._names:
            raise errdefs.Conflict(f"network with name {name} already exists")
        self._names.add(name)

    def release_name(self, name: str) -> None:
        if not any(n.name == name for n in self.networks.values()):
            self._names.discard(name)

    async def add(self, net: Network) -> None:
        row = (net.id, net.name, net.driver, net.created, _encode(net.doc))
        await self._meta.write(
            lambda conn: conn.execute("INSERT INTO networks VALUES (?, ?, ?, ?, ?)", row)
        )
        self.networks[net.id] = net
        self._names.add(net.name)

    async def save(self, net: Network) -> None:
        doc = _encode(net.doc)
        await self._meta.write(
            lambda conn: conn.execute("UPDATE networks SET doc = ? WHERE id = ?", (doc, net.id))
        )

    async def remove(self, net: Network) -> None:
        await self._meta.write(
            lambda conn: conn.execute("DELETE FROM networks WHERE id = ?", (net.id,))
        )
        self.networks.pop(net.id, None)
        self._names.discard(net.name)

    # -- endpoints ---------------------------------------------------------------------------

    def endpoints_of(self, network_id: str) -> list[Endpoint]:
        return [ep for ep in self.endpoints.values() if ep.network_id == network_id]

    def endpoints_of_container(self, container_id: str) -> list[Endpoint]:
        return [ep for ep in self.endpoints.values() if ep.container_id == container_id]

    async def add_endpoints(self, eps: Sequence[Endpoint]) -> None:
        rows = [
            (
                ep.id,
                ep.network_id,
                ep.container_id,
                str(ep.ipv4) if ep.ipv4 else None,
                _encode(ep.doc),
            )
            for ep in eps
        ]
        await self._meta.write(
            lambda conn: conn.executemany("INSERT INTO endpoints VALUES (?, ?, ?, ?, ?)", rows)
        )
        for ep in eps:
            self.endpoints[ep.id] = ep

    async def remove_endpoints(self, eps: Iterable[Endpoint]) -> None:
        ids = [(ep.id,) for ep in eps]
        if not ids:
            return
        await self._meta.write(
            lambda conn: conn.executemany("DELETE FROM endpoints WHERE id = ?", ids)
        )
        for (eid,) in ids:
            self.endpoints.pop(eid, None)
