"""Network wire types: Go's field order and omitempty rules, version gates, Go decoding rules."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests import swagger

from pymoby import errdefs
from pymoby.api.types import networks as t
from pymoby.api.types.containers import EndpointSettings
from pymoby.api.versions import ApiVersion

V = ApiVersion
NID = "7d86d31b1478e7cca9ebed7e73aa0fdeec46c5ca29497431d3007d2d9e15ed99"
CID = "19a4d5d687db25203351ed79d478946f861258f018fe384f229f2efa4b23513c"

# moby api/types/network: Network's fields, then Inspect's (dockerd 29 struct order).
GO_NETWORK = [
    "Name", "Id", "Created", "Scope", "Driver", "EnableIPv4", "EnableIPv6", "IPAM", "Internal",
    "Attachable", "Ingress", "ConfigFrom", "ConfigOnly", "Options", "Labels",
]  # fmt: skip


def _net(**kw: Any) -> t.NetworkResource:
    base: dict[str, Any] = {
        "name": "net01",
        "id": NID,
        "created": 1_476_851_610_360_899_459,
        "ipam": t.IPAM(
            driver="default",
            options={},
            config=[t.IPAMConfig(subnet="172.19.0.0/16", gateway="172.19.0.1")],
        ),
        "options": {"com.docker.network.bridge.name": "br-x", "a": "1"},
        "labels": {"z": "2", "com.example": "v"},
        "containers": {
            CID: t.EndpointResource(
                name="test",
                endpoint_id="628cadb8bcb9",
                mac_address="02:42:ac:13:00:02",
                ipv4_address="172.19.0.2/16",
            )
        },
    }
    base.update(kw)
    return t.NetworkResource(**base)


def _decoded(data: bytes) -> Any:
    return json.loads(data)


# ---------------------------------------------------------------------------- encoding


def test_inspect_bytes_at_1_52() -> None:
    n = _net(status={"172.19.0.0/16": t.SubnetStatus(ips_in_use=4, dynamic_ips_available=65532)})
    assert t.encode_network_inspect(n, V(1, 52)) == (
        b'{"Name":"net01","Id":"' + NID.encode() + b'","Created":"2016-10-19T04:33:30.360899459Z",'
        b'"Scope":"local","Driver":"bridge","EnableIPv4":true,"EnableIPv6":false,'
        b'"IPAM":{"Driver":"default","Options":{},"Config":[{"Subnet":"172.19.0.0/16",'
        b'"Gateway":"172.19.0.1"}]},"Internal":false,"Attachable":false,"Ingress":false,'
        b'"ConfigFrom":{"Network":""},"ConfigOnly":false,'
        b'"Options":{"a":"1","com.docker.network.bridge.name":"br-x"},'
        b'"Labels":{"com.example":"v","z":"2"},'
        b'"Containers":{"' + CID.encode() + b'":{"Name":"test","EndpointID":"628cadb8bcb9",'
        b'"MacAddress":"02:42:ac:13:00:02","IPv4Address":"172.19.0.2/16","IPv6Address":""}},'
        b'"Status":{"IPAM":{"Subnets":{"172.19.0.0/16":{"IPsInUse":4,"DynamicIPsAvailable":65532}}}}}'
    )


def test_inspect_field_order_and_status_gate() -> None:
    n = _net()
    assert list(_decoded(t.encode_network_inspect(n, V(1, 51)))) == [*GO_NETWORK, "Containers"]
    at_52 = _decoded(t.encode_network_inspect(n, V(1, 52)))
    assert list(at_52) == [*GO_NETWORK, "Containers", "Status"]
    assert at_52["Status"] == {"IPAM": {}}  # dockerd sets Status for every 1.52 inspect


def test_status_subnets_sorted_like_go_map_keys() -> None:
    n = _net(
        status={
            "172.19.0.0/16": t.SubnetStatus(ips_in_use=1),
            "10.1.0.0/24": t.SubnetStatus(ips_in_use=2),
        }
    )
    subnets = _decoded(t.encode_network_inspect(n, V(1, 52)))["Status"]["IPAM"]["Subnets"]
    assert list(subnets) == ["10.1.0.0/24", "172.19.0.0/16"]


def test_list_is_summary_from_1_28_and_full_below() -> None:
    n = _net()
    (item,) = _decoded(t.encode_network_list([n], V(1, 28)))
    assert list(item) == GO_NETWORK  # network.Summary has no Containers field
    (old,) = _decoded(t.encode_network_list([n], V(1, 27)))
    assert list(old) == [*GO_NETWORK, "Containers"] and CID in old["Containers"]
    (latest,) = _decoded(t.encode_network_list([n], V(1, 52)))
    assert "Status" not in latest and "Containers" not in latest
    assert t.encode_network_list([], V(1, 52)) == b"[]"


def test_enable_ipv4_is_sent_to_every_version() -> None:
    n = _net(enable_ipv4=False)
    assert _decoded(t.encode_network_inspect(n, V(1, 24)))["EnableIPv4"] is False


def test_nil_maps_and_ipam_parts() -> None:
    n = _net(options=None, labels=None, containers=None, ipam=t.IPAM(driver="default"))
    d = _decoded(t.encode_network_inspect(n, V(1, 44)))
    assert d["Options"] == {} and d["Labels"] == {} and d["Containers"] == {}
    # dockerd's host and none networks: IPAM Options and Config are nil -> null.
    assert d["IPAM"] == {"Driver": "default", "Options": None, "Config": None}


def test_ipam_config_omits_empty_fields_and_sorts_aux_addresses() -> None:
    cfg = t.IPAMConfig(
        subnet="10.0.0.0/24",
        ip_range="10.0.0.128/25",
        gateway="10.0.0.1",
        aux_addresses={"b": "10.0.0.3", "a": "10.0.0.2"},
    )
    assert json.dumps(t.ipam_config_wire(cfg), separators=(",", ":")) == (
        '{"Subnet":"10.0.0.0/24","IPRange":"10.0.0.128/25","Gateway":"10.0.0.1",'
        '"AuxiliaryAddresses":{"a":"10.0.0.2","b":"10.0.0.3"}}'
    )
    assert t.ipam_config_wire(t.IPAMConfig(subnet="10.0.0.0/24")) == {"Subnet": "10.0.0.0/24"}
    assert t.ipam_config_wire(t.IPAMConfig(aux_addresses={})) == {}


def test_created_time_forms() -> None:
    zero = _decoded(t.encode_network_inspect(_net(created=0), V(1, 52)))
    assert zero["Created"] == "0001-01-01T00:00:00Z"
    local = _net(created=1_700_000_000_500_000_000, created_offset=3600)
    assert _decoded(t.encode_network_inspect(local, V(1, 52)))["Created"] == (
        "2023-11-14T23:13:20.5+01:00"
    )


def test_create_and_prune_answers() -> None:
    assert t.encode_create_response(t.NetworkCreateResponse(id="abc")) == (
        b'{"Id":"abc","Warning":""}'
    )
    assert t.encode_prune_report([]) == b'{"NetworksDeleted":null}'
    assert t.encode_prune_report(["a", "b"]) == b'{"NetworksDeleted":["a","b"]}'


# ---------------------------------------------------------------------------- swagger (1.41)


@pytest.mark.parametrize("api", [V(1, 41), V(1, 44), V(1, 52)])
def test_inspect_matches_swagger(api: ApiVersion) -> None:
    swagger.validate("GET /networks/{id}", _decoded(t.encode_network_inspect(_net(), api)), api=api)


@pytest.mark.parametrize("api", [V(1, 27), V(1, 41), V(1, 52)])
def test_list_matches_swagger(api: ApiVersion) -> None:
    body = _decoded(t.encode_network_list([_net(), _net(name="b", id="b" * 64)], api))
    swagger.validate(
        "GET /networks",
        body,
        api=api,
        optional={"Network": ["Containers"]},  # network.Summary (1.28+) has no Containers
    )


def test_create_and_prune_answers_match_swagger() -> None:
    swagger.validate(
        "POST /networks/create 201",
        _decoded(t.encode_create_response(t.NetworkCreateResponse(id=NID))),
    )
    swagger.validate("POST /networks/prune", _decoded(t.encode_prune_report(["x"])))


# ---------------------------------------------------------------------------- decoding

# What the docker CLI 28 sends for
# `docker network create --subnet 10.5.0.0/16 --gateway 10.5.0.1 -o a=b --label l=v n1`.
CLI_BODY = {
    "Driver": "bridge",
    "Scope": "",
    "EnableIPv4": None,
    "IPAM": {
        "Driver": "default",
        "Options": {},
        "Config": [{"Subnet": "10.5.0.0/16", "Gateway": "10.5.0.1"}],
    },
    "Internal": False,
    "Attachable": False,
    "Ingress": False,
    "ConfigOnly": False,
    "ConfigFrom": None,
    "Options": {"a": "b"},
    "Labels": {"l": "v"},
    "Name": "n1",
}


def test_decode_cli_body() -> None:
    req = t.decode_create_request(json.dumps(CLI_BODY).encode())
    assert req.name == "n1" and req.driver == "bridge"
    assert req.enable_ipv4 is None and req.enable_ipv6 is None and req.config_from is None
    assert req.ipam == t.IPAM(
        driver="default",
        options={},
        config=[t.IPAMConfig(subnet="10.5.0.0/16", gateway="10.5.0.1")],
    )
    assert req.options == {"a": "b"} and req.labels == {"l": "v"}


def test_decode_go_rules() -> None:
    req = t.decode_create_request(
        b'{"name":"x","enableipv6":true,"EnableIPv4":false,"Internal":null,'
        b'"CheckDuplicate":true,"ConfigFrom":{"Network":"cfg"},"Unknown":[1]}'
    )
    assert req.name == "x" and req.enable_ipv6 is True and req.enable_ipv4 is False
    assert req.internal is False and req.config_from == t.ConfigReference(network="cfg")
    assert t.decode_create_request(b"null") == t.NetworkCreateRequest()
    # Go's Decoder reads the first value; dec.More() is false before `]` or `}`.
    assert t.decode_create_request(b'{"Name":"y"}}').name == "y"


@pytest.mark.parametrize(
    "body,message",
    [
        (b'{"Name":"x"} {}', "unexpected content after JSON"),
        (b'{"Name":"x"', "invalid JSON: unexpected EOF"),
        (
            b"[]",
            "invalid JSON: json: cannot unmarshal array into Go value of type "
            "network.CreateRequest",
        ),
        (b'"x"', "invalid JSON: json: cannot unmarshal string into Go value of type "
         "network.CreateRequest"),
    ],
)  # fmt: skip
def test_decode_errors(body: bytes, message: str) -> None:
    with pytest.raises(errdefs.InvalidParameter) as err:
        t.decode_create_request(body)
    assert err.value.message == message


def test_decode_type_error_names_the_field() -> None:
    with pytest.raises(errdefs.InvalidParameter) as err:
        t.decode_create_request(b'{"Name":"x","Internal":"yes"}')
    assert err.value.message.startswith("invalid JSON: ") and "Internal" in err.value.message


@pytest.mark.parametrize(
    "cfg,message",
    [
        ({"Subnet": "10.0.0.0"}, 'netip.ParsePrefix("10.0.0.0"): no \'/\''),
        (
            {"Subnet": "10.0.0/8"},
            'netip.ParsePrefix("10.0.0/8"): ParseAddr("10.0.0"): IPv4 address too short',
        ),
        ({"Subnet": "10.0.0.0/33"}, 'netip.ParsePrefix("10.0.0.0/33"): prefix length out of range'),
        (
            {"Subnet": "10.0.0.0/08"},
            'netip.ParsePrefix("10.0.0.0/08"): bad bits after slash: "08"',
        ),
        ({"IPRange": "10.0.0.0/x"}, 'netip.ParsePrefix("10.0.0.0/x"): bad bits after slash: "x"'),
        ({"Gateway": "10.0.0.256"}, 'ParseAddr("10.0.0.256"): IPv4 field has value >255'),
        (
            {"Gateway": "10.0.0.01"},
            'ParseAddr("10.0.0.01"): IPv4 field has octet with leading zero',
        ),
        (
            {"Gateway": "10..0.1"},
            'ParseAddr("10..0.1"): IPv4 field must have at least one digit (at ".0.1")',
        ),
        ({"Gateway": "10.0.0.1.2"}, 'ParseAddr("10.0.0.1.2"): IPv4 address too long'),
        ({"Gateway": "10.0.0.x"}, 'ParseAddr("10.0.0.x"): unexpected character (at "x")'),
        ({"Gateway": "gw"}, 'ParseAddr("gw"): unable to parse IP'),
        ({"AuxiliaryAddresses": {"a": "%eth0"}}, 'ParseAddr("%eth0"): missing IPv6 address'),
        (
            {"Subnet": "fe80::%eth0/64"},
            'netip.ParsePrefix("fe80::%eth0/64"): IPv6 zones cannot be present in a prefix',
        ),
        (
            {"Subnet": "2001:db8::/129"},
            'netip.ParsePrefix("2001:db8::/129"): prefix length out of range',
        ),
    ],
)  # fmt: skip
def test_ipam_addresses_parse_as_go_netip(cfg: dict[str, Any], message: str) -> None:
    body = json.dumps({"Name": "x", "IPAM": {"Config": [cfg]}}).encode()
    with pytest.raises(errdefs.InvalidParameter) as err:
        t.decode_create_request(body)
    assert err.value.message == "invalid JSON: " + message


def test_ipam_valid_addresses_pass() -> None:
    cfg = {
        "Subnet": "2001:db8::/64",
        "IPRange": "10.0.0.0/25",
        "Gateway": "",
        "AuxiliaryAddresses": {"r": "10.0.0.2", "s": "2001:db8::2", "e": ""},
    }
    body = json.dumps({"Name": "x", "IPAM": {"Config": [cfg]}}).encode()
    assert t.decode_create_request(body).ipam is not None


def test_decode_connect_and_disconnect() -> None:
    cli = {
        "Container": "web",
        "EndpointConfig": {
            "IPAMConfig": {"IPv4Address": "172.20.0.9"},
            "Links": None,
            "Aliases": ["db"],
            "DriverOpts": None,
            "GwPriority": 0,
            "NetworkID": "",
            "EndpointID": "",
            "Gateway": "",
            "IPAddress": "",
            "MacAddress": "",
            "IPPrefixLen": 0,
            "IPv6Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "DNSNames": None,
        },
    }
    req = t.decode_connect_request(json.dumps(cli).encode())
    assert req.container == "web"
    assert isinstance(req.endpoint_config, EndpointSettings)
    assert req.endpoint_config.aliases == ["db"]
    assert req.endpoint_config.ipam_config is not None
    assert req.endpoint_config.ipam_config.IPv4Address == "172.20.0.9"
    assert t.decode_connect_request(b'{"Container":"c"}').endpoint_config is None
    off = t.decode_disconnect_request(b'{"Container":"c","Force":true}')
    assert off == t.NetworkDisconnectRequest(container="c", force=True)
    with pytest.raises(errdefs.InvalidParameter, match=r"networkbackend\.DisconnectRequest"):
        t.decode_disconnect_request(b"1")
