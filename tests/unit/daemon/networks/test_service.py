"""The network service over a real MetaStore, with a fake netlink and a recording iptables."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from pymoby import errdefs
from pymoby.daemon.events import EventBus
from pymoby.daemon.networks import ipam
from pymoby.daemon.networks.model import Endpoint, EndpointDoc
from pymoby.daemon.networks.service import CreateSpec, NetworkService
from pymoby.daemon.networks.settings import NetSettings
from pymoby.daemon.networks.store import NetworkStore
from pymoby.store.meta import MetaStore


class FakeNetlink:
    def __init__(self) -> None:
        self.bridges: dict[str, list[IPv4Interface]] = {"pmtest0": [IPv4Interface("10.50.0.1/24")]}
        self.fail_bridge = False
        self.deleted: list[str] = []

    def ensure_bridge(
        self, name: str, *, mtu: int, addresses: Sequence[IPv4Interface], create: bool = True
    ) -> bool:
        if self.fail_bridge:
            raise errdefs.System(f"cannot make {name}")
        new = name not in self.bridges
        have = self.bridges.setdefault(name, [])
        have.extend(a for a in addresses if a not in have)
        return new

    def link_exists(self, name: str) -> bool:
        return name in self.bridges

    def link_addresses(self, name: str) -> list[IPv4Interface]:
        return list(self.bridges[name])

    def delete_link(self, name: str) -> None:
        self.deleted.append(name)
        self.bridges.pop(name, None)

    def routes(self) -> list[IPv4Network]:
        return [IPv4Network("192.0.2.0/24")]

    def close(self) -> None:
        return None


class FakeIptables:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any]] = []

    def reconcile(self, nets: Any, ports: Any, *, userland_proxy: bool) -> None:
        self.calls.append((list(nets), list(ports)))


def settings(tmp: Path) -> NetSettings:
    return NetSettings(
        netns_dir=tmp / "netns",
        run_dir=tmp / "run",
        bridge="pmtest0",
        pools=(ipam.AddressPool(IPv4Network("10.60.0.0/16"), 24),),
        ip_forward=False,
    )


async def open_service(tmp: Path, meta: MetaStore, nl: FakeNetlink) -> NetworkService:
    svc = NetworkService(
        NetworkStore(meta),
        settings(tmp),
        EventBus(),
        netlink=nl,  # type: ignore[arg-type]
        iptables=FakeIptables(),  # type: ignore[arg-type]
    )
    await svc.open()
    return svc


@pytest.fixture
async def meta(tmp_path: Path) -> AsyncIterator[MetaStore]:
    store = MetaStore.open(tmp_path / "meta.db")
    yield store
    store.close()


async def test_open_makes_the_predefined_networks(tmp_path: Path, meta: MetaStore) -> None:
    nl = FakeNetlink()
    svc = await open_service(tmp_path, meta, nl)
    names = {n.name: n for n in svc.all()}
    assert set(names) == {"bridge", "host", "none"}
    bridge = names["bridge"]
    assert bridge.doc.bridge == "pmtest0"
    assert [(s.subnet, s.gateway) for s in bridge.doc.subnets] == [("10.50.0.0/24", "10.50.0.1")]
    assert bridge.doc.options["com.docker.network.bridge.default_bridge"] == "true"
    again = await open_service(tmp_path, meta, nl)  # a restart keeps the IDs
    assert {n.name: n.id for n in again.all()} == {n.name: n.id for n in svc.all()}


async def test_a_user_managed_bridge_must_exist(tmp_path: Path, meta: MetaStore) -> None:
    nl = FakeNetlink()
    nl.bridges.clear()
    with pytest.raises(errdefs.InvalidParameter, match="must be created manually"):
        await open_service(tmp_path, meta, nl)


async def test_create_takes_a_free_subnet_and_makes_its_bridge(
    tmp_path: Path, meta: MetaStore
) -> None:
    nl = FakeNetlink()
    svc = await open_service(tmp_path, meta, nl)
    seen: list[str] = []
    svc.events.publish_network_event = lambda action, *a, **k: seen.append(action)  # type: ignore[method-assign]
    a = await svc.create(CreateSpec(name="a"))
    b = await svc.create(CreateSpec(name="b"))
    assert [s.subnet for s in a.doc.subnets] == ["10.60.0.0/24"]
    assert [s.subnet for s in b.doc.subnets] == ["10.60.1.0/24"]
    assert a.doc.bridge == "br-" + a.id[:12] and a.doc.bridge in nl.bridges
    assert nl.bridges[a.doc.bridge] == [IPv4Interface("10.60.0.1/24")]
    assert seen == ["create", "create"]
    with pytest.raises(errdefs.Conflict, match="network with name a already exists"):
        await svc.create(CreateSpec(name="a"))
    with pytest.raises(errdefs.Forbidden, match="predefined host network"):
        await svc.create(CreateSpec(name="host"))
    with pytest.raises(errdefs.NotFound, match='plugin "x" not found'):
        await svc.create(CreateSpec(name="c", driver="x"))
    with pytest.raises(errdefs.Forbidden, match="Pool overlaps"):
        await svc.create(CreateSpec(name="d", ipam_configs=[{"Subnet": "10.60.0.0/25"}]))
    rules = svc.iptables.calls[-1][0]  # type: ignore[union-attr]
    assert {r.bridge for r in rules} == {"pmtest0", a.doc.bridge, b.doc.bridge}


async def test_a_failed_bridge_leaves_no_record(tmp_path: Path, meta: MetaStore) -> None:
    nl = FakeNetlink()
    svc = await open_service(tmp_path, meta, nl)
    nl.fail_bridge = True
    with pytest.raises(errdefs.System, match="cannot make"):
        await svc.create(CreateSpec(name="broken"))
    assert svc.store.by_name("broken") is None
    nl.fail_bridge = False
    again = await open_service(tmp_path, meta, nl)
    assert again.store.by_name("broken") is None
    await svc.create(CreateSpec(name="broken"))  # the name is free again


async def test_remove_refuses_predefined_and_busy_networks(tmp_path: Path, meta: MetaStore) -> None:
    nl = FakeNetlink()
    svc = await open_service(tmp_path, meta, nl)
    net = await svc.create(CreateSpec(name="n"))
    with pytest.raises(errdefs.Forbidden, match="pre-defined network"):
        await svc.remove(svc.get("bridge"), in_use=lambda n: [])
    ep = Endpoint("e" * 64, net.id, "c" * 64, IPv4Address("10.60.0.2"), EndpointDoc(name="c"))
    await svc.store.add_endpoints([ep])
    with pytest.raises(errdefs.Conflict, match="has active endpoints"):
        await svc.remove(net, in_use=lambda n: [])
    await svc.store.remove_endpoints([ep])
    with pytest.raises(errdefs.Conflict, match="has active endpoints"):
        await svc.remove(net, in_use=lambda n: ["x"])
    await svc.remove(net, in_use=lambda n: [])
    assert net.doc.bridge in nl.deleted and svc.store.by_name("n") is None


async def test_addresses_are_rebuilt_from_the_endpoints(tmp_path: Path, meta: MetaStore) -> None:
    nl = FakeNetlink()
    svc = await open_service(tmp_path, meta, nl)
    net = await svc.create(CreateSpec(name="n"))
    taken = svc.addresses.take(net, None)
    assert taken == (IPv4Address("10.60.0.2"), 24)
    ep = Endpoint("e" * 64, net.id, "c" * 64, taken[0], EndpointDoc(name="c"))
    await svc.store.add_endpoints([ep])
    again = await open_service(tmp_path, meta, nl)
    assert again.addresses.take(again.get("n"), None) == (IPv4Address("10.60.0.3"), 24)
    with pytest.raises(errdefs.Forbidden, match="Address already in use"):
        again.addresses.take(again.get("n"), IPv4Address("10.60.0.2"))


async def test_open_remakes_bridges_a_crash_left_without_their_link(
    tmp_path: Path, meta: MetaStore
) -> None:
    nl = FakeNetlink()
    svc = await open_service(tmp_path, meta, nl)
    net = await svc.create(CreateSpec(name="n"))
    del nl.bridges[net.doc.bridge]  # a kill -9 between the record and the link
    await open_service(tmp_path, meta, nl)
    assert nl.bridges[net.doc.bridge] == [IPv4Interface("10.60.0.1/24")]


async def test_sweep_drops_what_containers_no_longer_running_left(
    tmp_path: Path, meta: MetaStore
) -> None:
    from pymoby.daemon.networks.sandbox import Sandboxes

    nl = FakeNetlink()
    svc = await open_service(tmp_path, meta, nl)
    net = await svc.create(CreateSpec(name="n"))
    left = svc.settings.netns_dir
    left.mkdir(parents=True)
    (left / "aaaaaaaaaaaa").touch()  # a running container's namespace file: kept
    (left / "bbbbbbbbbbbb").touch()  # a crash inside a start left this one
    eps = []
    for cid, key in (("a" * 64, "aaaaaaaaaaaa"), ("b" * 64, "bbbbbbbbbbbb")):
        addr, prefix = svc.addresses.take(net, None) or (None, 0)
        doc = EndpointDoc(name=cid[:4], prefix_len=prefix, sandbox_key=str(left / key))
        eps.append(Endpoint(cid[:1] * 64, net.id, cid, addr, doc))
    await svc.store.add_endpoints(eps)
    boxes = Sandboxes(svc, resolver=None, ports=None, proxies=None)  # type: ignore[arg-type]
    await boxes.sweep({"a" * 64}, {"aaaaaaaaaaaa"})
    assert [ep.container_id for ep in svc.store.endpoints.values()] == ["a" * 64]
    assert sorted(p.name for p in left.iterdir()) == ["aaaaaaaaaaaa"]
    assert svc.addresses.take(net, None) == (IPv4Address("10.60.0.3"), 24)  # .3 is free again


class _NoDNS:
    async def stop(self, key: str) -> None:
        return None


class _NoProxies:
    def release(self, key: str) -> None:
        return None


async def test_a_failed_setup_gives_every_address_back(tmp_path: Path, meta: MetaStore) -> None:
    from pymoby.api.types.containers import EndpointIPAMConfig, EndpointSettings
    from pymoby.daemon.networks.sandbox import Sandboxes, SandboxRequest

    nl = FakeNetlink()
    svc = await open_service(tmp_path, meta, nl)
    svc.settings.netns_dir.mkdir(parents=True)
    a = await svc.create(CreateSpec(name="a"))
    await svc.create(CreateSpec(name="b"))
    boxes = Sandboxes(svc, resolver=_NoDNS(), ports=None, proxies=_NoProxies())  # type: ignore[arg-type]
    outside = EndpointSettings(ipam_config=EndpointIPAMConfig(IPv4Address="10.99.0.5"))
    req = SandboxRequest("c" * 64, "c", [("a", EndpointSettings()), ("b", outside)])
    with pytest.raises(errdefs.InvalidParameter):
        await boxes.setup(req)
    assert svc.store.endpoints == {}
    assert svc.addresses.take(a, None) == (IPv4Address("10.60.0.2"), 24)  # .2 came back
    assert list(svc.settings.netns_dir.iterdir()) == []
