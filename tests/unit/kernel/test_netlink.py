"""kernel.netlink: bridges, veth pairs, addresses and routes, for real, as root.

Most tests run `Netlink` inside a throw-away "sandbox" namespace (created in the test's directory)
that plays the host: everything they make disappears with it, and the real host's links, routes
and iptables rules play no part. One test uses the real host namespace with unique `pmk…` names
and deletes them in a `finally`. The results are checked with pyroute2, not with the code tested.
Traffic only flows between namespaces made here (10.213.x.0/24).
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from nstestlib import clear_namespaces
from pyroute2 import IPRoute

from pymoby import errdefs
from pymoby.kernel import netlink, netns
from pymoby.kernel.netlink import Netlink, NetlinkError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="netlink changes need root")

IFF_UP = 0x1


def _name() -> str:
    return "pmk" + secrets.token_hex(3)


@pytest.fixture
def nsdir(tmp_path: Path) -> Iterator[Path]:
    """A directory for namespace files; whatever is left in it is unmounted and removed."""
    d = tmp_path / "netns"
    d.mkdir()
    yield d
    clear_namespaces(d)


@pytest.fixture
def make_ns(nsdir: Path) -> Callable[[str], Path]:
    def make(name: str) -> Path:
        path = nsdir / name
        netns.create(path)
        return path

    return make


@pytest.fixture
def sandbox(make_ns: Callable[[str], Path]) -> Path:
    return make_ns("sandbox")


@pytest.fixture
def nl(sandbox: Path) -> Iterator[Netlink]:
    """A Netlink whose "host" namespace is the sandbox."""
    with netns.entered(sandbox):
        n = Netlink()
    try:
        yield n
    finally:
        n.close()


@contextmanager
def _ipr_in(path: Path) -> Iterator[Any]:
    """A pyroute2 IPRoute bound to the namespace at `path` (its socket is made inside)."""
    with netns.entered(path):
        ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


@pytest.fixture
def ipr(sandbox: Path) -> Iterator[Any]:
    with _ipr_in(sandbox) as i:
        yield i


def _link(ipr: Any, name: str) -> Any:
    found = ipr.link_lookup(ifname=name)
    return ipr.link("get", index=found[0])[0] if found else None


def _addresses(ipr: Any, name: str) -> set[IPv4Interface]:
    index = ipr.link_lookup(ifname=name)[0]
    return {
        IPv4Interface(f"{a.get_attr('IFA_LOCAL')}/{a['prefixlen']}")
        for a in ipr.get_addr(index=index, family=socket.AF_INET)
    }


def _kind(link: Any) -> str | None:
    info = link.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info else None


def _plain(ipr: Any, name: str) -> str:
    """A link that is not a bridge (a veth pair: dummy is not built into every kernel)."""
    peer = _name()
    ipr.link("add", ifname=name, kind="veth", peer=peer)
    return peer


def _veth(nl: Netlink, ns: Path, host: str, bridge: str, ip: str, **kw: Any) -> None:
    iface = IPv4Interface(ip)
    args: dict[str, Any] = {
        "host_name": host,
        "bridge": bridge,
        "netns": ns,
        "ifname": "eth0",
        "address": iface,
        "gateway": next(iface.network.hosts()),
        "mac": netlink.mac_for(iface.ip),
        "mtu": 1500,
    }
    args.update(kw)
    nl.add_veth(**args)


# -- pure ------------------------------------------------------------------------------------


def test_mac_for_matches_dockerd() -> None:
    assert netlink.mac_for(IPv4Address("172.17.0.2")) == "02:42:ac:11:00:02"
    assert netlink.mac_for(IPv4Address("10.213.255.1")) == "02:42:0a:d5:ff:01"


def test_bad_names_are_refused(nl: Netlink, sandbox: Path) -> None:
    for bad in ("", "a" * 16, "a/b", "a b", ".."):
        with pytest.raises(errdefs.InvalidParameter):
            nl.ensure_bridge(bad, mtu=1500, addresses=[])
        with pytest.raises(errdefs.InvalidParameter):
            nl.add_veth(
                host_name=bad,
                bridge="br",
                netns=sandbox,
                ifname="eth0",
                address=None,
                gateway=None,
                mac="02:42:00:00:00:01",
                mtu=1500,
            )
    for mac in ("zz", "02:42:00:00:00", "02-42-00-00-00-01", "02:42:00:00:00:001"):
        with pytest.raises(errdefs.InvalidParameter, match="MAC"):
            _veth(nl, sandbox, "pmkx", "br", "10.213.7.2/24", mac=mac)


# -- bridges and links ----------------------------------------------------------------------


def test_ensure_bridge_creates_a_bridge_up_with_mtu_and_addresses(nl: Netlink, ipr: Any) -> None:
    name = _name()
    want = [IPv4Interface("10.213.1.1/24"), IPv4Interface("10.213.2.1/24")]
    assert nl.ensure_bridge(name, mtu=1450, addresses=want) is True
    link = _link(ipr, name)
    assert _kind(link) == "bridge"
    assert link["flags"] & IFF_UP
    assert link.get_attr("IFLA_MTU") == 1450
    assert _addresses(ipr, name) == set(want)
    assert nl.link_exists(name)
    assert name in nl.link_names()
    assert set(nl.link_addresses(name)) == set(want)
    routes = nl.routes()
    assert IPv4Network("10.213.1.0/24") in routes
    assert IPv4Network("10.213.2.0/24") in routes
    assert all(r.prefixlen > 0 for r in routes)


def test_ensure_bridge_on_an_existing_bridge_repairs_and_keeps(nl: Netlink, ipr: Any) -> None:
    name = _name()
    ipr.link("add", ifname=name, kind="bridge")
    index = ipr.link_lookup(ifname=name)[0]
    ipr.addr("add", index=index, address="10.213.3.9", prefixlen=24)  # someone else's: kept
    created = nl.ensure_bridge(name, mtu=1400, addresses=[IPv4Interface("10.213.4.1/24")])
    assert created is False
    link = _link(ipr, name)
    assert link["flags"] & IFF_UP
    assert link.get_attr("IFLA_MTU") == 1400
    assert _addresses(ipr, name) == {IPv4Interface("10.213.3.9/24"), IPv4Interface("10.213.4.1/24")}
    # idempotent
    assert nl.ensure_bridge(name, mtu=1400, addresses=[IPv4Interface("10.213.4.1/24")]) is False
    assert len(_addresses(ipr, name)) == 2


def test_ensure_bridge_without_create_refuses_a_missing_bridge(nl: Netlink, ipr: Any) -> None:
    name = _name()
    with pytest.raises(NetlinkError, match=f"non default name {name} must be created manually"):
        nl.ensure_bridge(name, mtu=1500, addresses=[], create=False)
    assert _link(ipr, name) is None


def test_ensure_bridge_refuses_a_device_that_is_not_a_bridge(nl: Netlink, ipr: Any) -> None:
    name = _name()
    _plain(ipr, name)
    with pytest.raises(NetlinkError, match="not a bridge") as info:
        nl.ensure_bridge(name, mtu=1400, addresses=[IPv4Interface("10.213.5.1/24")])
    assert isinstance(info.value, errdefs.System)
    link = _link(ipr, name)
    assert _kind(link) == "veth"
    assert link.get_attr("IFLA_MTU") == 1500
    assert _addresses(ipr, name) == set()


def test_ensure_bridge_removes_a_bridge_it_created_when_a_later_step_fails(
    nl: Netlink, ipr: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: Any, index: int, address: IPv4Interface) -> None:
        raise netlink._KernelError(errno.EADDRNOTAVAIL, "refused by the test")

    monkeypatch.setattr(netlink._Conn, "add_address", refuse)
    name = _name()
    want = rf"add address 10\.213\.5\.1/24 to bridge {name}: .*test"
    with pytest.raises(NetlinkError, match=want):
        nl.ensure_bridge(name, mtu=1500, addresses=[IPv4Interface("10.213.5.1/24")])
    assert _link(ipr, name) is None
    # an existing bridge is never removed
    ipr.link("add", ifname=name, kind="bridge")
    with pytest.raises(NetlinkError) as info:
        nl.ensure_bridge(name, mtu=1500, addresses=[IPv4Interface("10.213.5.1/24")])
    assert info.value.errno == errno.EADDRNOTAVAIL
    assert _kind(_link(ipr, name)) == "bridge"


def test_link_queries_and_delete(nl: Netlink, ipr: Any) -> None:
    name = _name()
    assert not nl.link_exists(name)
    with pytest.raises(NetlinkError, match="not found") as info:
        nl.link_addresses(name)
    assert info.value.errno == errno.ENODEV
    peer = _plain(ipr, name)
    assert nl.link_exists(name)
    assert sorted(nl.link_names()) == sorted(["lo", name, peer])
    assert nl.link_addresses(name) == []
    nl.delete_link(name)
    assert _link(ipr, name) is None
    nl.delete_link(name)  # missing is fine
    nl.remove_veth(name)


def test_closed_netlink_refuses_work(sandbox: Path) -> None:
    with netns.entered(sandbox):
        n = Netlink()
    n.close()
    n.close()
    with pytest.raises(NetlinkError, match="after close"):
        n.link_exists("lo")


# -- veth pairs ------------------------------------------------------------------------------


def test_add_veth_wires_a_namespace_to_the_bridge(
    nl: Netlink, ipr: Any, make_ns: Callable[[str], Path]
) -> None:
    bridge, host = _name(), _name()
    nl.ensure_bridge(bridge, mtu=1400, addresses=[IPv4Interface("10.213.6.1/24")])
    ns = make_ns("c1")
    nl.add_veth(
        host_name=host,
        bridge=bridge,
        netns=ns,
        ifname="eth0",
        address=IPv4Interface("10.213.6.2/24"),
        gateway=IPv4Address("10.213.6.1"),
        mac="02:42:0a:d5:06:02",
        mtu=1400,
    )
    end = _link(ipr, host)
    assert _kind(end) == "veth"
    assert end.get_attr("IFLA_MASTER") == ipr.link_lookup(ifname=bridge)[0]
    assert end["flags"] & IFF_UP
    assert end.get_attr("IFLA_MTU") == 1400
    with _ipr_in(ns) as inner:
        eth0 = _link(inner, "eth0")
        assert eth0 is not None
        assert eth0.get_attr("IFLA_ADDRESS") == "02:42:0a:d5:06:02"
        assert eth0.get_attr("IFLA_MTU") == 1400
        assert eth0["flags"] & IFF_UP
        assert _addresses(inner, "eth0") == {IPv4Interface("10.213.6.2/24")}
        defaults = [
            r for r in inner.get_routes(family=socket.AF_INET, table=254) if r["dst_len"] == 0
        ]
        assert [r.get_attr("RTA_GATEWAY") for r in defaults] == ["10.213.6.1"]
        assert defaults[0].get_attr("RTA_OIF") == eth0["index"]
    nl.remove_veth(host)
    assert _link(ipr, host) is None
    with _ipr_in(ns) as inner:
        assert _link(inner, "eth0") is None
    nl.remove_veth(host)


def test_add_veth_without_address_and_gateway(
    nl: Netlink, ipr: Any, make_ns: Callable[[str], Path]
) -> None:
    bridge, host = _name(), _name()
    nl.ensure_bridge(bridge, mtu=1500, addresses=[])
    ns = make_ns("c1")
    nl.add_veth(
        host_name=host,
        bridge=bridge,
        netns=ns,
        ifname="eth1",
        address=None,
        gateway=None,
        mac="02:42:0a:d5:06:03",
        mtu=1500,
    )
    with _ipr_in(ns) as inner:
        assert _link(inner, "eth1")["flags"] & IFF_UP
        assert _addresses(inner, "eth1") == set()
        assert [r for r in inner.get_routes(family=socket.AF_INET, table=254)] == []


def test_add_veth_failing_inside_the_namespace_removes_the_pair(
    nl: Netlink, ipr: Any, make_ns: Callable[[str], Path]
) -> None:
    bridge, host = _name(), _name()
    nl.ensure_bridge(bridge, mtu=1500, addresses=[IPv4Interface("10.213.7.1/24")])
    ns = make_ns("c1")
    with pytest.raises(NetlinkError, match=r"default route via 10\.213\.9\.1") as info:
        _veth(nl, ns, host, bridge, "10.213.7.2/24", gateway=IPv4Address("10.213.9.1"))
    assert info.value.errno == errno.ENETUNREACH
    assert _link(ipr, host) is None
    with _ipr_in(ns) as inner:
        assert [link.get_attr("IFLA_IFNAME") for link in inner.get_links()] == ["lo"]


def test_add_veth_never_deletes_a_link_it_did_not_make(
    nl: Netlink, ipr: Any, make_ns: Callable[[str], Path]
) -> None:
    bridge, taken = _name(), _name()
    nl.ensure_bridge(bridge, mtu=1500, addresses=[])
    _plain(ipr, taken)
    ns = make_ns("c1")
    with pytest.raises(NetlinkError, match=f"create veth pair {taken}/eth0") as info:
        _veth(nl, ns, taken, bridge, "10.213.7.2/24")
    assert info.value.errno == errno.EEXIST
    assert _kind(_link(ipr, taken)) == "veth"
    with _ipr_in(ns) as inner:
        assert _link(inner, "eth0") is None


def test_add_veth_with_a_missing_bridge_or_namespace(
    nl: Netlink, ipr: Any, make_ns: Callable[[str], Path], nsdir: Path
) -> None:
    host = _name()
    with pytest.raises(NetlinkError, match=r"bridge \S+ not found"):
        _veth(nl, make_ns("c1"), host, _name(), "10.213.7.2/24")
    bridge = _name()
    nl.ensure_bridge(bridge, mtu=1500, addresses=[])
    with pytest.raises(NetlinkError, match="gone"):
        _veth(nl, nsdir / "gone", host, bridge, "10.213.7.2/24")
    assert _link(ipr, host) is None


def test_remove_in_netns(nl: Netlink, ipr: Any, make_ns: Callable[[str], Path]) -> None:
    bridge, a, b = _name(), _name(), _name()
    nl.ensure_bridge(bridge, mtu=1500, addresses=[IPv4Interface("10.213.8.1/24")])
    ns = make_ns("c1")
    _veth(nl, ns, a, bridge, "10.213.8.2/24")
    _veth(nl, ns, b, bridge, "10.213.8.3/24", ifname="eth1", gateway=None)
    nl.remove_in_netns(ns, "eth1")
    with _ipr_in(ns) as inner:
        assert _link(inner, "eth1") is None
        assert _link(inner, "eth0") is not None
    assert _link(ipr, b) is None  # the host end went with it
    assert _link(ipr, a) is not None
    nl.remove_in_netns(ns, "eth1")  # missing is fine
    netns.remove(ns)
    nl.remove_in_netns(ns, "eth0")  # so is a namespace that is gone


def test_traffic_flows_between_two_namespaces_over_the_bridge(
    nl: Netlink, make_ns: Callable[[str], Path]
) -> None:
    bridge = _name()
    nl.ensure_bridge(bridge, mtu=1500, addresses=[IPv4Interface("10.213.10.1/24")])
    one, two = make_ns("one"), make_ns("two")
    _veth(nl, one, _name(), bridge, "10.213.10.2/24")
    _veth(nl, two, _name(), bridge, "10.213.10.3/24")
    rx = netns.socket_in(two, socket.AF_INET, socket.SOCK_DGRAM)
    tx = netns.socket_in(one, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("10.213.10.3", 0))
        rx.settimeout(5)
        tx.sendto(b"hello", rx.getsockname())
        data, peer = rx.recvfrom(64)
        assert data == b"hello"
        assert peer[0] == "10.213.10.2"
    finally:
        rx.close()
        tx.close()


def test_add_veth_from_many_threads_at_once(
    nl: Netlink, ipr: Any, make_ns: Callable[[str], Path]
) -> None:
    bridge = _name()
    nl.ensure_bridge(bridge, mtu=1500, addresses=[IPv4Interface("10.213.11.1/24")])
    spaces = [make_ns(f"c{i}") for i in range(8)]
    hosts = [_name() for _ in spaces]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(
            pool.map(
                lambda i: _veth(nl, spaces[i], hosts[i], bridge, f"10.213.11.{i + 2}/24"),
                range(8),
            )
        )
    master = ipr.link_lookup(ifname=bridge)[0]
    assert all(_link(ipr, h).get_attr("IFLA_MASTER") == master for h in hosts)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(nl.remove_veth, hosts))
    assert all(_link(ipr, h) is None for h in hosts)


def test_on_the_host_namespace(make_ns: Callable[[str], Path]) -> None:
    bridge, host = _name(), _name()
    n = Netlink()
    try:
        assert n.ensure_bridge(bridge, mtu=1500, addresses=[IPv4Interface("10.213.13.1/24")])
        ns = make_ns("c1")
        _veth(n, ns, host, bridge, "10.213.13.2/24")
        assert n.link_exists(host)
        assert IPv4Network("10.213.13.0/24") in n.routes()
        assert {bridge, host} <= set(n.link_names())
        n.remove_veth(host)
        assert not n.link_exists(host)
    finally:
        n.close()
        with IPRoute() as check:
            for name in (host, bridge):
                if check.link_lookup(ifname=name):
                    check.link("del", ifname=name)
            assert not check.link_lookup(ifname=bridge)
