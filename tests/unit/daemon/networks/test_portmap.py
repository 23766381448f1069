"""networks.portmap: PortBindings/ExposedPorts/-P parsing (dockerd's messages), the allocator."""

from __future__ import annotations

from typing import Any

import pytest

from pymoby import errdefs
from pymoby.daemon.networks import portmap
from pymoby.daemon.networks.portmap import (
    PortAllocator,
    PortBinding,
    PortRequest,
    external_connectivity_error,
    parse_host_port,
    parse_port_key,
    requests,
    validate_exposed_ports,
    validate_port_bindings,
)

ANY = "0.0.0.0"


def req(
    port: int, start: int = 0, end: int | None = None, ip: str = ANY, proto: str = "tcp"
) -> PortRequest:
    return PortRequest(proto, port, ip, start, start if end is None else end)


# -- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "want"),
    [("80", (80, "tcp")), ("80/udp", (80, "udp")), ("80/SCTP", (80, "sctp")), ("8/", (8, "tcp"))],
)
def test_parse_port_key(key: str, want: tuple[int, str]) -> None:
    assert parse_port_key(key) == want


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("", (0, 0)),
        ("0", (0, 0)),
        ("8080", (8080, 8080)),
        ("8080-8090", (8080, 8090)),
        ("8080-8080", (8080, 8080)),
        ("8080/tcp", (8080, 8080)),
        ("abc", None),
        ("70000", None),
        ("8090-8080", None),
        ("8080-", None),
        ("-1", None),
        ("+80", None),
    ],
)
def test_parse_host_port(raw: str, want: tuple[int, int] | None) -> None:
    assert parse_host_port(raw) == want


@pytest.mark.parametrize(
    ("bindings", "message"),
    [
        ({"70000/tcp": None}, "invalid JSON: invalid port '70000': value out of range"),
        ({"http/tcp": None}, "invalid JSON: invalid port 'http': invalid syntax"),
        ({"/tcp": None}, "invalid JSON: invalid port '': value is empty"),
        ({"": None}, 'invalid port specification: "invalid port"'),
        ({"0/tcp": None}, 'invalid port specification: "0/tcp"'),
        ({"0/UDP": []}, 'invalid port specification: "0/udp"'),
        ({"80/tcp": [{"HostIp": "", "HostPort": "abc"}]}, 'invalid port specification: "abc"'),
        (
            {"80/tcp": [{"HostIp": "", "HostPort": "8090-8080"}]},
            'invalid port specification: "8090-8080"',
        ),
        (
            {"80/tcp": [{"HostIp": "", "HostPort": "65536"}]},
            'invalid port specification: "65536"',
        ),
        (
            {"80/tcp": [{"HostIp": "localhost", "HostPort": ""}]},
            'invalid JSON: ParseAddr("localhost"): unable to parse IP',
        ),
    ],
)
def test_validate_port_bindings_errors(bindings: dict[str, Any], message: str) -> None:
    with pytest.raises(errdefs.InvalidParameter) as err:
        validate_port_bindings(bindings)
    assert err.value.message == message


def test_validate_port_bindings_accepts_what_dockerd_accepts() -> None:
    validate_port_bindings(None)
    validate_port_bindings(
        {
            "80/tcp": [{"HostIp": "", "HostPort": ""}, {"HostIp": "127.0.0.1", "HostPort": "0"}],
            "53/udp": None,
            "81": [{"HostPort": "8080-8090"}],
            "82/foo": [{"HostIp": "::1", "HostPort": "8082"}],  # any protocol, at create
        }
    )
    validate_exposed_ports({"80/tcp": {}, "90": {}})
    with pytest.raises(errdefs.InvalidParameter, match="invalid port '99999'"):
        validate_exposed_ports({"99999/tcp": {}})


# -- requests -----------------------------------------------------------------------------------


def test_requests_shapes_and_defaults() -> None:
    got = requests(
        {
            "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
            "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
            "443": [{"HostIp": "::ffff:10.0.0.1", "HostPort": "9000-9010"}],
        },
        None,
        False,
    )
    assert got == [
        req(80, 8080),
        req(53, 0, 0, "127.0.0.1", "udp"),
        req(443, 9000, 9010, "10.0.0.1"),
    ]


def test_requests_dockerd_order() -> None:
    """Exact ports first, then ranges/ephemeral; by container port, proto, host port, address."""
    got = requests(
        {
            "90/udp": [{"HostPort": "9090"}],
            "90/tcp": [{"HostPort": "9090"}, {"HostIp": "127.0.0.1", "HostPort": "9090"}],
            "90/sctp": [{"HostPort": "9090"}],
            "10/tcp": [{"HostPort": ""}, {"HostPort": "7000-7010"}, {"HostPort": "7001"}],
            "5/tcp": [{"HostPort": "6000-6001"}],
        },
        None,
        False,
    )
    assert got == [
        req(10, 7001),
        req(90, 9090),
        req(90, 9090, ip="127.0.0.1"),
        req(90, 9090, proto="udp"),
        req(90, 9090, proto="sctp"),
        req(5, 6000, 6001),
        req(10, 0, 0),
        req(10, 7000, 7010),
    ]


def test_requests_publish_all() -> None:
    bindings = {"80/tcp": [{"HostIp": "", "HostPort": "8080"}], "81/tcp": []}
    exposed: dict[str, Any] = {"80/tcp": {}, "53/udp": {}, "9000": {}}
    assert requests(bindings, exposed, False) == [req(80, 8080)]
    assert requests(bindings, exposed, True) == [
        req(80, 8080),
        req(53, 0, 0, proto="udp"),
        req(81, 0, 0),  # in PortBindings without a binding: published too (dockerd)
        req(9000, 0, 0),
    ]
    assert requests(None, {"80": {}}, True) == [req(80, 0, 0)]
    assert requests(None, None, True) == []
    assert requests({"80/tcp": None}, None, False) == []  # exposed only


def test_requests_default_host_ip_and_ipv4_only() -> None:
    bindings = {
        "80/tcp": [
            {"HostIp": "", "HostPort": "8080"},
            {"HostIp": "0.0.0.0", "HostPort": "8081"},
            {"HostIp": "::", "HostPort": "8082"},
            {"HostIp": "::1", "HostPort": "8083"},
        ]
    }
    assert requests(bindings, None, False, default_host_ip="127.0.0.1") == [
        req(80, 8080, ip="127.0.0.1"),
        req(80, 8081),  # an explicit 0.0.0.0 stays
    ]
    assert requests(bindings, None, False, default_host_ip="::") == [req(80, 8081)]


@pytest.mark.parametrize(
    ("bindings", "exposed", "message"),
    [
        ({"80/foo": [{"HostPort": "1"}]}, None, "unknown protocol"),
        ({"80/icmp": []}, None, "unknown protocol"),
        (None, {"80/foo": {}}, "unknown protocol"),
        (None, {"0/tcp": {}}, 'invalid port specification: "0/tcp"'),
        ({"80": [{"HostPort": "x"}]}, None, 'invalid port specification: "x"'),
        ({"80": [{"HostPort": "0-100"}]}, None, "invalid port range: 0-100"),
        (
            {"70000": [{"HostPort": "1"}]},
            None,
            "invalid JSON: invalid port '70000': value out of range",
        ),
    ],
)
def test_requests_errors(bindings: Any, exposed: Any, message: str) -> None:
    with pytest.raises(errdefs.InvalidParameter) as err:
        requests(bindings, exposed, True)
    assert err.value.message == message


def test_requests_unknown_protocol_without_publishing_is_fine() -> None:
    assert requests({"80/foo": None}, {"81/bar": {}}, False) == []


def test_external_connectivity_error() -> None:
    inner = errdefs.Conflict(portmap.already_allocated("0.0.0.0", 8080))
    err = external_connectivity_error("web", "e" * 64, inner)
    assert isinstance(err, errdefs.System)
    assert err.message == (
        f"driver failed programming external connectivity on endpoint web ({'e' * 64}): "
        "Bind for 0.0.0.0:8080 failed: port is already allocated"
    )


# -- the allocator ------------------------------------------------------------------------------


def test_kernel_ranges(tmp_path: Any) -> None:
    f = tmp_path / "range"
    f.write_text("32768\t60999\n")
    assert portmap.kernel_ephemeral_range(str(f)) == (32768, 60999)
    f.write_text("garbage")
    assert portmap.kernel_ephemeral_range(str(f)) == (49153, 65535)
    assert portmap.kernel_ephemeral_range(str(tmp_path / "missing")) == (49153, 65535)
    assert portmap.parse_reserved_ports("8080,30000-30002,1\n", 1000, 30001) == {
        8080,
        30000,
        30001,
    }
    assert portmap.parse_reserved_ports("\n", 1, 2) == frozenset()
    with pytest.raises(ValueError):
        portmap.parse_reserved_ports("5-4", 1, 10)
    lo, hi = PortAllocator().begin, PortAllocator().end
    assert 0 < lo <= hi <= 65535


def test_ephemeral_sequential_per_ip_and_proto() -> None:
    a = PortAllocator((40000, 40004), reserved=())
    assert [a.allocate(req(80)).host_port for _ in range(3)] == [40000, 40001, 40002]
    assert a.allocate(req(80, proto="udp")).host_port == 40000  # its own sequence
    assert a.allocate(req(80, ip="127.0.0.1")).host_port == 40003  # free there and on 0.0.0.0
    b = a.allocate(req(80))
    assert b == PortBinding("tcp", 80, ANY, 40004)
    a.release(PortBinding("tcp", 80, ANY, 40001))
    assert a.allocate(req(80)).host_port == 40001  # wraps around to the freed one
    with pytest.raises(errdefs.Conflict) as err:
        a.allocate(req(80))
    assert err.value.message == "all ports are allocated"


def test_ephemeral_skips_reserved_ports_but_ranges_do_not() -> None:
    a = PortAllocator((40000, 40003), reserved=(40000, 40002))
    assert [a.allocate(req(80)).host_port for _ in range(2)] == [40001, 40003]
    assert a.allocate(req(80, 40000, 40003)).host_port == 40000


def test_specific_ports_and_conflicts() -> None:
    a = PortAllocator((40000, 40010), reserved=())
    assert a.allocate(req(80, 8080)) == PortBinding("tcp", 80, ANY, 8080)
    with pytest.raises(errdefs.Conflict) as err:
        a.allocate(req(81, 8080))
    assert err.value.message == "Bind for 0.0.0.0:8080 failed: port is already allocated"
    with pytest.raises(errdefs.Conflict) as err:
        a.allocate(req(81, 8080, ip="127.0.0.1"))  # 0.0.0.0 holds it for every address
    assert err.value.message == "Bind for 0.0.0.0:8080 failed: port is already allocated"
    assert a.allocate(req(81, 8080, proto="udp")).host_port == 8080

    a.allocate(req(90, 9090, ip="127.0.0.1"))
    assert a.allocate(req(90, 9090, ip="127.0.0.2")).host_port == 9090  # another address
    with pytest.raises(errdefs.Conflict) as err:
        a.allocate(req(91, 9090))  # 0.0.0.0 needs it free on every address
    assert err.value.message.startswith("Bind for 127.0.0.")
    with pytest.raises(errdefs.Conflict, match=r"^Bind for 127\.0\.0\.1:9090 failed"):
        a.allocate(req(91, 9090, ip="127.0.0.1"))
    assert a.in_use("127.0.0.1", "tcp", 9090) and not a.in_use(ANY, "tcp", 9090)


def test_ranges_first_free_then_sequential() -> None:
    a = PortAllocator((40000, 40010), reserved=())
    a.allocate(req(1, 8080))
    assert a.allocate(req(80, 8080, 8082)).host_port == 8081
    assert a.allocate(req(81, 8080, 8082)).host_port == 8082
    with pytest.raises(errdefs.Conflict, match="all ports are allocated"):
        a.allocate(req(82, 8080, 8082))
    a.release(PortBinding("tcp", 1, ANY, 8080))
    assert a.allocate(req(82, 8080, 8082)).host_port == 8080
    assert a.allocate(req(83, 8081, 8083)).host_port == 8083  # another range, own sequence


@pytest.mark.parametrize(
    ("r", "message"),
    [
        (req(80, 0, 10), "invalid port range: 0-10"),
        (req(80, 10, 5), "invalid port range: 10-5"),
        (req(80, 8080, proto="icmp"), "unknown protocol"),
    ],
)
def test_allocate_invalid(r: PortRequest, message: str) -> None:
    with pytest.raises(errdefs.InvalidParameter) as err:
        PortAllocator((40000, 40001), reserved=()).allocate(r)
    assert err.value.message == message


def test_reserve_and_release() -> None:
    a = PortAllocator((40000, 40002), reserved=())
    b = PortBinding("tcp", 80, ANY, 40000)
    a.reserve(b)
    a.reserve(b)  # idempotent
    with pytest.raises(errdefs.Conflict):
        a.allocate(req(81, 40000, ip="127.0.0.1"))
    assert a.allocate(req(81)).host_port == 40001  # ephemeral skips the reserved one
    a.release(b)
    a.release(b)  # no-op
    a.release(PortBinding("udp", 1, "10.9.9.9", 1))
    assert a.allocate(req(82, 40000)).host_port == 40000


def test_allocate_all_groups_share_a_port_and_roll_back() -> None:
    a = PortAllocator((40000, 40010), reserved=())
    reqs = [
        req(80, ip="127.0.0.1"),
        req(80, ip="127.0.0.2"),  # same request but the address: one port for both
        req(81, ip="127.0.0.1"),
    ]
    got = a.allocate_all(reqs)
    assert [b.host_port for b in got] == [40000, 40000, 40001]
    assert portmap.groups(reqs) == [reqs[:2], reqs[2:]]
    dup = [req(90, 9090), req(90, 9090)]  # the same address twice: two groups, a conflict
    assert portmap.groups(dup) == [[dup[0]], [dup[1]]]
    with pytest.raises(errdefs.Conflict, match=r"Bind for 0\.0\.0\.0:9090 failed"):
        a.allocate_all([req(70, 7070), *dup])
    assert not a.in_use(ANY, "tcp", 7070) and not a.in_use(ANY, "tcp", 9090)  # rolled back
    with pytest.raises(ValueError):
        a.allocate_group([req(1, 1), req(2, 1, ip="127.0.0.1")])
    assert a.allocate_group([]) == []
