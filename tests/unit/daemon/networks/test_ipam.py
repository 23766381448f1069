"""daemon.networks.ipam: pools, dynamic subnets, IPAM config validation, address sets, the
default bridge's subnet — with dockerd's choices and messages."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

import pytest

from pymoby import errdefs
from pymoby.daemon.gojson import Num
from pymoby.daemon.networks import ipam
from pymoby.daemon.networks.ipam import AddressPool, AddressSet, SubnetConfig

N, A, IF = IPv4Network, IPv4Address, IPv4Interface

# --- pools ---------------------------------------------------------------------------------------


def test_default_pools_are_dockerds() -> None:
    assert [(str(p.base), p.size) for p in ipam.DEFAULT_POOLS] == [
        ("172.17.0.0/16", 16),
        ("172.18.0.0/16", 16),
        ("172.19.0.0/16", 16),
        ("172.20.0.0/14", 16),
        ("172.24.0.0/14", 16),
        ("172.28.0.0/14", 16),
        ("192.168.0.0/16", 20),
    ]


@pytest.mark.parametrize(
    ("text", "pool"),
    [
        ("base=10.10.0.0/16,size=24", AddressPool(N("10.10.0.0/16"), 24)),
        ("SIZE=24,Base=10.10.0.0/16", AddressPool(N("10.10.0.0/16"), 24)),
        ("base=10.10.1.1/16,size=+24", AddressPool(N("10.10.0.0/16"), 24)),  # masked, as dockerd
        ('"base=10.10.0.0/16","size=24"', AddressPool(N("10.10.0.0/16"), 24)),  # CSV quoting
        ("base=10.0.0.0/8,size=8,size=16", AddressPool(N("10.0.0.0/8"), 16)),  # last one wins
    ],
)
def test_parse_address_pool(text: str, pool: AddressPool) -> None:
    assert ipam.parse_address_pool(text) == pool


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "EOF"),
        ("base", "invalid field 'base' must be a key=value pair"),
        ("Bogus=1", "unexpected key 'bogus' in 'Bogus=1'"),
        ("base=x", 'invalid base prefix "x": netip.ParsePrefix("x"): no \'/\''),
        (
            "base=10.0.0.256/8",
            'invalid base prefix "10.0.0.256/8": netip.ParsePrefix("10.0.0.256/8"): '
            'ParseAddr("10.0.0.256"): IPv4 field has value >255',
        ),
        (
            "base=10.0.0.0/8,size=x",
            'invalid size value: "base=10.0.0.0/8,size=x" (must be integer): '
            'strconv.Atoi: parsing "x": invalid syntax',
        ),
        ('base=1.2.3.0/24,si"ze=1', 'parse error on line 1, column 19: bare " in non-quoted field'),
        (
            "size=24",
            "could not construct local address space: network at index 0 "
            "(&{invalid Prefix 24}) is not in canonical form",
        ),
        (
            "base=10.10.1.1/16",
            "could not construct local address space: network at index 0 "
            "(&{10.10.1.1/16 0}) is not in canonical form",
        ),
        (
            "base=10.0.0.0/16,size=8",
            "could not construct local address space: network at index 0 (&{10.0.0.0/16 8}) "
            "has a smaller prefix (/16) than the target size of that pool (/8)",
        ),
    ],
)
def test_parse_address_pool_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        ipam.parse_address_pool(text)
    assert str(info.value) == message


def test_pool_from_json() -> None:
    assert ipam.pool_from_json({"base": "10.0.0.0/8", "size": 24}) == AddressPool(
        N("10.0.0.0/8"), 24
    )
    assert ipam.pool_from_json({"Base": "10.0.0.0/8", "SIZE": Num("24")}) == AddressPool(
        N("10.0.0.0/8"), 24
    )  # encoding/json matches field names case-insensitively; numbers arrive as gojson Nums


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ("x", "json: cannot unmarshal string into Go value of type ipamutils.NetworkToSplit"),
        (
            {"base": 5, "size": 24},
            "json: cannot unmarshal number into Go struct field NetworkToSplit.base of type "
            "netip.Prefix",
        ),
        ({"base": "nope", "size": 24}, "netip.ParsePrefix(\"nope\"): no '/'"),
        (
            {"base": "10.0.0.0/8", "size": "24"},
            "json: cannot unmarshal string into Go struct field NetworkToSplit.size of type int",
        ),
        (
            {"base": "10.0.0.0/8", "size": Num("24.5")},
            "json: cannot unmarshal number 24.5 into Go struct field NetworkToSplit.size of "
            "type int",
        ),
        (
            {"base": "10.0.0.0/8"},
            "could not construct local address space: network at index 0 (&{10.0.0.0/8 0}) is "
            "not in canonical form",
        ),
    ],
)
def test_pool_from_json_errors(obj: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        ipam.pool_from_json(obj)
    assert str(info.value) == message


def test_make_pools_counts_every_pool_and_keeps_ipv6_ones() -> None:
    v6 = ipam.parse_pool_spec("base=fd00::/104,size=112")
    v4 = ipam.parse_pool_spec("base=10.0.0.0/8,size=24")
    pools = ipam.make_pools([v6, v4])
    assert [p.size for p in pools] == [112, 24]
    with pytest.raises(ValueError, match=r"network at index 2 \(<nil>\) is not in canonical form"):
        ipam.make_pools([v6, v4, None])


# --- dynamic subnets -----------------------------------------------------------------------------


def test_allocate_subnet_first_free_in_order() -> None:
    pools = ipam.DEFAULT_POOLS
    assert ipam.allocate_subnet(pools, []) == N("172.17.0.0/16")
    assert ipam.allocate_subnet(pools, [N("172.17.0.0/16")]) == N("172.18.0.0/16")
    # a small network in use still blocks the whole /16 around it
    assert ipam.allocate_subnet(pools, [N("172.17.3.0/24"), N("172.18.0.0/16")]) == N(
        "172.19.0.0/16"
    )
    # the /14 pools are cut into /16s
    used = [N(f"172.{i}.0.0/16") for i in range(17, 21)]
    assert ipam.allocate_subnet(pools, used) == N("172.21.0.0/16")


def test_allocate_subnet_skips_host_routes() -> None:
    routes = [N("172.17.0.0/16"), N("172.18.42.0/24"), N("172.19.0.1/32")]
    assert ipam.allocate_subnet(ipam.DEFAULT_POOLS, [], routes) == N("172.20.0.0/16")
    # a route wider than a pool blocks all of it
    assert ipam.allocate_subnet(ipam.DEFAULT_POOLS, [], [N("172.16.0.0/12")]) == N("192.168.0.0/20")


def test_allocate_subnet_within_a_pool_skips_past_blockers() -> None:
    pools = [AddressPool(N("10.10.0.0/16"), 24)]
    used = [N("10.10.0.0/24"), N("10.10.1.0/24"), N("10.10.3.0/24")]
    assert ipam.allocate_subnet(pools, used) == N("10.10.2.0/24")
    assert ipam.allocate_subnet(pools, [N("10.10.0.0/23"), N("10.10.2.128/25")]) == N(
        "10.10.3.0/24"
    )


def test_allocate_subnet_pools_sorted_and_overlaps_dropped() -> None:
    pools = [
        AddressPool(N("192.168.0.0/16"), 24),
        AddressPool(N("10.0.0.0/8"), 16),
        AddressPool(N("10.1.0.0/16"), 24),  # inside 10.0.0.0/8: dropped, as dockerd does
    ]
    assert ipam.allocate_subnet(pools, []) == N("10.0.0.0/16")
    assert ipam.allocate_subnet(pools, [N("10.0.0.0/8")]) == N("192.168.0.0/24")


def test_allocate_subnet_with_a_prefix_length() -> None:
    assert ipam.allocate_subnet(ipam.DEFAULT_POOLS, [], prefix_len=24) == N("172.17.0.0/24")
    with pytest.raises(errdefs.InvalidParameter, match=r"^invalid address pool$"):
        ipam.allocate_subnet(ipam.DEFAULT_POOLS, [], prefix_len=8)


def test_allocate_subnet_exhausted() -> None:
    pools = [AddressPool(N("10.10.0.0/23"), 24)]
    with pytest.raises(errdefs.InvalidParameter) as info:
        ipam.allocate_subnet(pools, [N("10.10.0.0/24")], [N("10.10.1.0/24")])
    assert str(info.value) == "all predefined address pools have been fully subnetted"
    only_v6 = ipam.make_pools([ipam.parse_pool_spec("base=fd00::/104,size=112")])
    with pytest.raises(errdefs.InvalidParameter, match=r"^invalid address pool$"):
        ipam.allocate_subnet(only_v6, [])


# --- a network's IPAM config ---------------------------------------------------------------------


def test_validate_configs_defaults_gateway_and_keeps_aux() -> None:
    [cfg] = ipam.validate_configs(
        [{"Subnet": "10.1.0.0/16", "AuxiliaryAddresses": {"host": "10.1.0.5"}}], []
    )
    assert cfg == SubnetConfig(N("10.1.0.0/16"), A("10.1.0.1"), None, {"host": A("10.1.0.5")})
    [cfg] = ipam.validate_configs([{"Subnet": "10.1.0.0/16", "Gateway": "10.1.9.9"}], [])
    assert cfg.gateway == A("10.1.9.9")


def test_validate_configs_gateway_from_ip_range() -> None:
    # libnetwork requests the gateway from the sub-pool: its first free address
    [cfg] = ipam.validate_configs([{"Subnet": "10.1.0.0/16", "IPRange": "10.1.4.0/24"}], [])
    assert (cfg.gateway, cfg.ip_range) == (A("10.1.4.0"), N("10.1.4.0/24"))
    [cfg] = ipam.validate_configs([{"Subnet": "10.2.0.0/24", "IPRange": "10.2.0.0/24"}], [])
    assert cfg.gateway == A("10.2.0.1")


def test_validate_configs_point_to_point_subnets() -> None:
    [cfg] = ipam.validate_configs([{"Subnet": "10.3.0.0/31"}], [])
    assert cfg.gateway == A("10.3.0.0")  # no network/broadcast reservation in a /31


def test_validate_configs_without_subnet_allocates_one() -> None:
    pools = [AddressPool(N("10.20.0.0/16"), 24)]
    cfgs = ipam.validate_configs(
        [{"Gateway": ""}, {"Subnet": "0.0.0.0/25"}],
        [N("10.20.0.0/24")],
        pools=pools,
        host_routes=[N("10.20.1.0/24")],
    )
    assert [(c.subnet, c.gateway) for c in cfgs] == [
        (N("10.20.2.0/24"), A("10.20.2.1")),
        (N("10.20.3.0/25"), A("10.20.3.1")),
    ]


def test_validate_configs_lists_every_mistake() -> None:
    with pytest.raises(errdefs.InvalidParameter) as info:
        ipam.validate_configs(
            [
                {
                    "Subnet": "10.1.0.1/16",
                    "IPRange": "10.2.1.0/24",
                    "Gateway": "10.3.0.1",
                    "AuxiliaryAddresses": {"a": "10.4.0.1"},
                },
                {"Subnet": "10.5.0.0/24", "IPRange": "10.5.0.0/16"},
                {"Subnet": "10.6.0.0/24", "IPRange": "10.6.0.1/28", "Gateway": "fd00::1"},
            ],
            [],
        )
    assert str(info.value) == (
        "invalid network config:\n"
        "* invalid subnet 10.1.0.1/16: it should be 10.1.0.0/16\n"
        "* invalid ip-range 10.2.1.0/24: parent subnet 10.1.0.1/16 doesn't contain ip-range\n"
        "* invalid gateway 10.3.0.1: parent subnet 10.1.0.1/16 doesn't contain this address\n"
        "* invalid auxiliary address a: parent subnet 10.1.0.1/16 doesn't contain this address\n"
        "* invalid ip-range 10.5.0.0/16: CIDR block is bigger than its parent subnet 10.5.0.0/24\n"
        "* invalid ip-range 10.6.0.1/28: it should be 10.6.0.0/28\n"
        "* invalid gateway fd00::1: parent subnet is an IPv4 block"
    )


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (
            {"Subnet": "10.1.0.0/24", "Gateway": "10.1.1.1"},
            "invalid gateway 10.1.1.1: parent subnet 10.1.0.0/24 doesn't contain this address",
        ),
        (
            {"Subnet": "10.1.0.0/24", "IPRange": "10.9.0.0/28"},
            "invalid ip-range 10.9.0.0/28: parent subnet 10.1.0.0/24 doesn't contain ip-range",
        ),
        (
            {"Subnet": "10.1.0.0/24", "AuxiliaryAddresses": {"r": "10.2.0.1"}},
            "invalid auxiliary address r: parent subnet 10.1.0.0/24 doesn't contain this address",
        ),
        (
            {"Gateway": "10.1.0.1"},
            "invalid gateway 10.1.0.1: parent subnet invalid Prefix doesn't contain this address",
        ),
    ],
)
def test_validate_configs_single_mistake(cfg: dict[str, Any], message: str) -> None:
    with pytest.raises(errdefs.InvalidParameter) as info:
        ipam.validate_configs([cfg], [])
    assert str(info.value) == "invalid network config:\n" + message


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"Subnet": "10.1.0.0"}, "invalid JSON: netip.ParsePrefix(\"10.1.0.0\"): no '/'"),
        (
            {"Subnet": "10.1.0.0/16", "Gateway": "x"},
            'invalid JSON: ParseAddr("x"): unable to parse IP',
        ),
    ],
)
def test_validate_configs_unparsable(cfg: dict[str, Any], message: str) -> None:
    with pytest.raises(errdefs.InvalidParameter) as info:
        ipam.validate_configs([cfg], [])
    assert str(info.value) == message


def test_validate_configs_refuses_ipv6() -> None:
    with pytest.raises(errdefs.InvalidParameter) as info:
        ipam.validate_configs([{"Subnet": "10.1.0.0/16"}, {"Subnet": "fd00:1::/64"}], [])
    assert str(info.value) == "IPv6 is not supported by pymoby yet: subnet fd00:1::/64"


def test_validate_configs_overlap_is_forbidden() -> None:
    overlap = "invalid pool request: Pool overlaps with other one on this address space"
    with pytest.raises(errdefs.Forbidden) as info:
        ipam.validate_configs([{"Subnet": "10.1.2.0/24"}], [N("10.1.0.0/16")])
    assert str(info.value) == overlap
    with pytest.raises(errdefs.Forbidden):  # two configs of one request
        ipam.validate_configs([{"Subnet": "10.1.0.0/16"}, {"Subnet": "10.1.5.0/24"}], [])
    # as in dockerd, a subnet with an ip-range is not checked for overlap...
    [cfg] = ipam.validate_configs(
        [{"Subnet": "10.1.0.0/16", "IPRange": "10.1.2.0/24"}], [N("10.1.0.0/16")]
    )
    assert cfg.subnet == N("10.1.0.0/16")
    # ...unless the very same subnet and ip-range are taken
    taken = SubnetConfig(N("10.1.0.0/16"), A("10.1.2.0"), N("10.1.2.0/24"), {})
    with pytest.raises(errdefs.Forbidden):
        ipam.validate_configs([{"Subnet": "10.1.0.0/16", "IPRange": "10.1.2.0/24"}], [taken])


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (
            {"Subnet": "10.1.0.0/24", "Gateway": "10.1.0.0"},
            "failed to allocate gateway (10.1.0.0): Address already in use",
        ),
        (
            {"Subnet": "10.1.0.0/24", "Gateway": "10.1.0.255"},
            "failed to allocate gateway (10.1.0.255): Address already in use",
        ),
        (
            {"Subnet": "10.1.0.0/24", "AuxiliaryAddresses": {"gw": "10.1.0.1"}},
            "failed to allocate secondary ip address (gw:10.1.0.1): Address already in use",
        ),
        (
            {"Subnet": "10.1.0.0/24", "AuxiliaryAddresses": {"a": "10.1.0.9", "b": "10.1.0.9"}},
            "failed to allocate secondary ip address (b:10.1.0.9): Address already in use",
        ),
    ],
)
def test_validate_configs_reservation_failures(cfg: dict[str, Any], message: str) -> None:
    with pytest.raises(errdefs.System) as info:
        ipam.validate_configs([cfg], [])
    assert str(info.value) == message


# --- addresses -----------------------------------------------------------------------------------


def subnet(text: str, gw: str | None = None, rng: str | None = None, **aux: str) -> SubnetConfig:
    return SubnetConfig(
        N(text),
        A(gw) if gw else None,
        N(rng) if rng else None,
        {k: A(v) for k, v in aux.items()},
    )


def test_dynamic_allocation_is_lowest_free_and_skips_reserved() -> None:
    s = AddressSet(subnet("10.0.0.0/24", "10.0.0.1", host="10.0.0.3"))
    assert [s.allocate() for _ in range(3)] == [A("10.0.0.2"), A("10.0.0.4"), A("10.0.0.5")]
    s.release(A("10.0.0.2"))
    assert s.allocate() == A("10.0.0.2")  # dockerd reuses the lowest free address
    assert s.allocated == {A("10.0.0.2"), A("10.0.0.4"), A("10.0.0.5")}
    assert s.last == A("10.0.0.2")


def test_serial_allocation_continues_after_last_and_wraps() -> None:
    s = AddressSet(subnet("10.0.0.0/29", "10.0.0.1"), serial=True)  # hosts .2 - .6
    assert [s.allocate() for _ in range(3)] == [A("10.0.0.2"), A("10.0.0.3"), A("10.0.0.4")]
    s.release(A("10.0.0.2"))
    assert [s.allocate() for _ in range(3)] == [A("10.0.0.5"), A("10.0.0.6"), A("10.0.0.2")]
    restored = AddressSet(
        subnet("10.0.0.0/29", "10.0.0.1"), [A("10.0.0.2")], A("10.0.0.5"), serial=True
    )
    assert restored.allocate() == A("10.0.0.6")
    assert restored.allocate() == A("10.0.0.3")


def test_allocation_stays_in_ip_range() -> None:
    s = AddressSet(subnet("10.0.0.0/16", "10.0.0.1", "10.0.5.0/30"))
    assert [s.allocate() for _ in range(4)] == [A(f"10.0.5.{i}") for i in range(4)]
    with pytest.raises(errdefs.Unavailable) as info:
        s.allocate()
    assert str(info.value) == "no available addresses on this pool"
    assert s.allocate(A("10.0.9.9")) == A("10.0.9.9")  # a static address may be anywhere
    # an ip-range wider than its subnet means the whole subnet (dockerd)
    wide = AddressSet(subnet("10.1.0.0/24", "10.1.0.1", "10.0.0.0/8"))
    assert wide.allocate() == A("10.1.0.2")


def test_exhausted_small_subnet() -> None:
    s = AddressSet(subnet("10.0.0.0/30", "10.0.0.1"))
    assert s.allocate() == A("10.0.0.2")
    with pytest.raises(errdefs.Unavailable):
        s.allocate()


def test_static_allocation_errors() -> None:
    s = AddressSet(subnet("10.0.0.0/24", "10.0.0.1", aux="10.0.0.9"), [A("10.0.0.2")])
    for taken in ("10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.9", "10.0.0.255"):
        with pytest.raises(errdefs.Forbidden) as info:
            s.allocate(A(taken))
        assert str(info.value) == "Address already in use"
    with pytest.raises(errdefs.InvalidParameter) as bad:
        s.allocate(A("10.9.0.1"))
    assert str(bad.value) == "requested address is out of range"
    assert s.allocate(A("10.0.0.200")) == A("10.0.0.200")
    assert s.last is None  # static addresses do not move the dynamic cursor


def test_release() -> None:
    s = AddressSet(subnet("10.0.0.0/24", "10.0.0.1"), [A("10.0.0.7"), A("192.0.2.1")])
    assert s.allocated == {A("10.0.0.7")}  # addresses outside the subnet are not kept
    s.release(A("10.0.0.7"))
    s.release(A("10.0.0.7"))  # releasing a free address is fine
    s.release(A("10.0.0.1"))  # the gateway stays reserved
    assert s.allocated == frozenset()
    with pytest.raises(errdefs.InvalidParameter, match=r"^requested address is out of range$"):
        s.release(A("10.9.0.1"))
    with pytest.raises(errdefs.Forbidden):
        s.allocate(A("10.0.0.1"))


def test_status_counts_like_the_api() -> None:
    s = AddressSet(
        subnet("10.0.0.0/24", "10.0.0.1", "10.0.0.0/28"), [A("10.0.0.2"), A("10.0.0.100")]
    )
    # in use: network, broadcast, gateway, .2, .100; dynamic range .0-.15 holds .0, .1, .2
    assert s.status() == (5, 13)


# --- the default bridge --------------------------------------------------------------------------


def bridge(
    bip: str | None = None,
    fixed: str | None = None,
    addrs: tuple[str, ...] = (),
    **kw: Any,
) -> SubnetConfig:
    return ipam.bridge_subnet(
        bip,
        fixed,
        [IF(a) for a in addrs],
        kw.pop("pools", ipam.DEFAULT_POOLS),
        kw.pop("in_use", []),
        kw.pop("routes", []),
        **kw,
    )


def test_bridge_defaults_to_the_first_pool_subnet() -> None:
    assert bridge() == SubnetConfig(N("172.17.0.0/16"), A("172.17.0.1"), None, {})
    cfg = bridge(in_use=[N("172.17.0.0/16")], routes=[N("172.18.0.0/24")])
    assert (cfg.subnet, cfg.gateway) == (N("172.19.0.0/16"), A("172.19.0.1"))


def test_bridge_bip_and_fixed_cidr() -> None:
    assert bridge("172.26.0.1/16") == SubnetConfig(N("172.26.0.0/16"), A("172.26.0.1"), None, {})
    assert bridge("192.168.176.88/24") == SubnetConfig(
        N("192.168.176.0/24"), A("192.168.176.88"), None, {}
    )
    cfg = bridge("172.26.0.1/16", "172.26.5.0/24")
    assert (cfg.subnet, cfg.gateway, cfg.ip_range) == (
        N("172.26.0.0/16"),
        A("172.26.0.1"),
        N("172.26.5.0/24"),
    )
    # fixed-cidr alone is the subnet and the range (dockerd's integration test cases)
    assert bridge(None, "192.168.176.0/24") == SubnetConfig(
        N("192.168.176.0/24"), A("192.168.176.1"), N("192.168.176.0/24"), {}
    )


def test_bridge_existing_addresses() -> None:
    assert bridge(addrs=("192.168.176.88/24",)) == SubnetConfig(
        N("192.168.176.0/24"), A("192.168.176.88"), None, {}
    )
    # fixed-cidr inside the old subnet: subnet kept, range narrowed
    cfg = bridge(None, "192.168.176.0/24", ("192.168.176.88/20",))
    assert (cfg.subnet, cfg.gateway, cfg.ip_range) == (
        N("192.168.176.0/20"),
        A("192.168.176.88"),
        N("192.168.176.0/24"),
    )
    # docker0's subnet within a wider fixed-cidr: widened
    cfg = bridge(None, "192.168.176.0/20", ("192.168.176.88/24",))
    assert (cfg.subnet, cfg.gateway) == (N("192.168.176.0/20"), A("192.168.176.88"))
    # docker0's address outside fixed-cidr: ignored
    cfg = bridge(None, "192.168.177.0/24", ("192.168.176.88/24",))
    assert (cfg.subnet, cfg.gateway) == (N("192.168.177.0/24"), A("192.168.177.1"))
    # --bip wins over the bridge's old address
    cfg = bridge("192.168.176.99/24", "192.168.176.0/24", ("192.168.176.88/20",))
    assert (cfg.subnet, cfg.gateway) == (N("192.168.176.0/24"), A("192.168.176.99"))


def test_bridge_user_managed() -> None:
    addrs = ("192.168.160.88/20", "192.168.176.88/20", "192.168.192.88/20")
    cfg = bridge(None, "192.168.177.0/24", addrs, user_managed=True)
    assert (cfg.subnet, cfg.gateway, cfg.ip_range) == (
        N("192.168.176.0/20"),
        A("192.168.176.88"),
        N("192.168.177.0/24"),
    )
    # fixed-cidr outside (or wider than) the bridge's subnet is dropped, not an error
    cfg = bridge(None, "192.168.176.0/24", ("192.168.160.88/20",), user_managed=True)
    assert (cfg.subnet, cfg.ip_range) == (N("192.168.160.0/20"), None)
    cfg = bridge(None, "192.168.176.0/20", ("192.168.177.1/24",), user_managed=True)
    assert (cfg.subnet, cfg.gateway, cfg.ip_range) == (
        N("192.168.177.0/24"),
        A("192.168.177.1"),
        None,
    )


def test_bridge_default_gateway() -> None:
    cfg = bridge("172.26.0.1/16", default_gateway="172.26.0.254")
    assert cfg.aux_addresses == {"DefaultGatewayIPv4": A("172.26.0.254")}
    with pytest.raises(errdefs.Forbidden) as info:
        bridge("172.26.0.1/16", default_gateway="10.0.0.1")
    assert str(info.value) == (
        "auxiliary address: (DefaultGatewayIPv4:10.0.0.1) must belong to the master pool: "
        "172.26.0.0/16"
    )
    with pytest.raises(errdefs.InvalidParameter) as bad:
        bridge("172.26.0.1/16", default_gateway="x")
    assert str(bad.value) == 'invalid --default-gateway: failed to parse IP: "x"'


INVALID = errdefs.InvalidParameter


@pytest.mark.parametrize(
    ("bip", "fixed", "kind", "message"),
    [
        ("172.26.0.1", None, INVALID, "parse bip failed: invalid CIDR address: 172.26.0.1"),
        (None, "10.0.0.0/x", INVALID, "parse fixed-cidr failed: invalid CIDR address: 10.0.0.0/x"),
        ("172.26.0.1/33", None, INVALID, "parse bip failed: invalid CIDR address: 172.26.0.1/33"),
        ("fd00::1/64", None, INVALID, "IPv6 is not supported by pymoby yet: --bip=fd00::1/64"),
        (
            "172.26.0.1/16",
            "10.0.0.0/24",
            INVALID,
            "fixed-cidr=10.0.0.0/24 is outside the default bridge's subnet 172.26.0.0/16",
        ),
        (
            "172.26.0.0/16",
            None,
            errdefs.System,
            "failed to allocate gateway (172.26.0.0): Address already in use",
        ),
    ],
)
def test_bridge_errors(
    bip: str | None, fixed: str | None, kind: type[Exception], message: str
) -> None:
    with pytest.raises(kind) as info:
        bridge(bip, fixed)
    assert str(info.value) == message


def test_bridge_static_subnet_overlap() -> None:
    with pytest.raises(errdefs.Forbidden) as info:
        bridge("10.1.0.1/16", in_use=[N("10.1.2.0/24")])
    assert str(info.value) == (
        "invalid pool request: Pool overlaps with other one on this address space"
    )
    # with a fixed-cidr (a sub-pool) dockerd does not check
    assert bridge("10.1.0.1/16", "10.1.0.0/24", in_use=[N("10.1.2.0/24")]).subnet == N(
        "10.1.0.0/16"
    )
