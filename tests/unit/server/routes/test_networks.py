"""Network routes over a recording fake backend: bodies, status codes, version rules."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests import swagger

from pymoby import errdefs
from pymoby.api.filters import Filters
from pymoby.api.types.containers import EndpointSettings
from pymoby.api.types.networks import (
    IPAM,
    EndpointResource,
    IPAMConfig,
    NetworkCreateRequest,
    NetworkCreateResponse,
    NetworkResource,
)
from pymoby.api.versions import MAX, MIN
from pymoby.server.body import ByteStream
from pymoby.server.middleware import ServerInfo, build_app
from pymoby.server.request import Request
from pymoby.server.router import Router
from pymoby.server.routes import networks

NID = "9" * 64
CID = "c" * 64


def _resource(name: str = "app") -> NetworkResource:
    return NetworkResource(
        name=name,
        id=NID,
        created=1_700_000_000_000_000_000,
        ipam=IPAM(driver="default", options={}, config=[IPAMConfig(subnet="172.18.0.0/16")]),
        containers={CID: EndpointResource(name="web", ipv4_address="172.18.0.2/16")},
    )


class FakeNetworks:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.deleted: list[str] = []

    async def create_network(self, req: NetworkCreateRequest) -> NetworkCreateResponse:
        self.calls.append(("create", req))
        if req.name == "bridge":
            raise errdefs.Forbidden("operation is not permitted on predefined bridge network ")
        return NetworkCreateResponse(id=NID)

    async def list_networks(self, filters: Filters) -> list[NetworkResource]:
        self.calls.append(("list", filters))
        if "foo" in filters:
            raise errdefs.InvalidParameter("invalid filter 'foo'")
        return [_resource()]

    async def inspect_network(self, term: str, *, verbose: bool, scope: str) -> NetworkResource:
        self.calls.append(("inspect", term, verbose, scope))
        if term == "missing":
            raise errdefs.NotFound("network missing not found")
        return _resource(term)

    async def remove_network(self, term: str) -> None:
        self.calls.append(("remove", term))
        if term == "bridge":
            raise errdefs.Forbidden("bridge is a pre-defined network and cannot be removed")

    async def prune_networks(self, filters: Filters) -> list[str]:
        self.calls.append(("prune", filters))
        return list(self.deleted)

    async def connect(self, term: str, container: str, config: EndpointSettings | None) -> None:
        self.calls.append(("connect", term, container, config))

    async def disconnect(self, term: str, container: str, *, force: bool) -> None:
        self.calls.append(("disconnect", term, container, force))


def _app(backend: FakeNetworks):  # type: ignore[no-untyped-def]
    info = ServerInfo("0.1.0", MIN, MAX, experimental=lambda: False, debug=lambda: False)
    return build_app(Router(networks.routes(backend)), info)


def _req(
    method: str,
    target: str,
    body: bytes = b"",
    ctype: str = "application/json",
    *,
    chunked: bool = False,
) -> Request:
    path, _, query = target.partition("?")
    stream = ByteStream(lambda: None, lambda: None)
    if body:
        stream.feed(body)
    stream.feed_eof()
    headers = {"content-type": ctype} if body or chunked else {}
    if chunked:
        headers["transfer-encoding"] = "chunked"
    length = None if chunked else len(body)
    return Request(method, path, query, headers, stream, content_length=length)


def _message(body: bytes) -> str:
    message: str = json.loads(body)["message"]
    return message


# ---------------------------------------------------------------------------- list and inspect


async def test_list_per_version() -> None:
    backend = FakeNetworks()
    app = _app(backend)
    flt = "%7B%22driver%22%3A%7B%22bridge%22%3Atrue%7D%7D"
    resp = await app(_req("GET", f"/v1.52/networks?filters={flt}"))
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
    (item,) = json.loads(resp.body)
    assert "Containers" not in item and item["Id"] == NID
    assert backend.calls[-1] == ("list", Filters({"driver": ["bridge"]}))
    swagger.validate("GET /networks", json.loads(resp.body), optional={"Network": ["Containers"]})
    resp = await app(_req("GET", "/v1.27/networks/"))
    (item,) = json.loads(resp.body)
    assert item["Containers"][CID]["IPv4Address"] == "172.18.0.2/16"


async def test_list_errors() -> None:
    app = _app(FakeNetworks())
    resp = await app(_req("GET", "/networks?filters=%7Bbad"))
    assert resp.status == 400 and _message(resp.body) == "invalid filter"
    resp = await app(_req("GET", "/networks?filters=%7B%22foo%22%3A%5B%22x%22%5D%7D"))
    assert resp.status == 400 and _message(resp.body) == "invalid filter 'foo'"


async def test_inspect() -> None:
    backend = FakeNetworks()
    app = _app(backend)
    resp = await app(_req("GET", "/v1.52/networks/app?verbose=true&scope=local"))
    assert resp.status == 200
    body = json.loads(resp.body)
    assert body["Name"] == "app" and body["Status"] == {"IPAM": {}} and CID in body["Containers"]
    assert backend.calls[-1] == ("inspect", "app", True, "local")
    swagger.validate("GET /networks/{id}", body)
    resp = await app(_req("GET", "/v1.51/networks/app?verbose=0"))
    assert "Status" not in json.loads(resp.body)
    assert backend.calls[-1] == ("inspect", "app", False, "")
    resp = await app(_req("GET", "/networks/missing"))
    assert resp.status == 404 and _message(resp.body) == "network missing not found"


@pytest.mark.parametrize("value", ["yes", "tRuE", "2"])
async def test_inspect_verbose_must_be_a_go_bool(value: str) -> None:
    resp = await _app(FakeNetworks())(_req("GET", f"/networks/app?verbose={value}"))
    assert resp.status == 400
    assert _message(resp.body) == (
        f'invalid value for verbose: {value}: strconv.ParseBool: parsing "{value}": invalid syntax'
    )


# ---------------------------------------------------------------------------- create


async def test_create() -> None:
    backend = FakeNetworks()
    app = _app(backend)
    body = json.dumps({"Name": "app", "EnableIPv4": False, "Labels": {"a": "b"}}).encode()
    resp = await app(_req("POST", "/v1.52/networks/create", body))
    assert resp.status == 201
    assert resp.body == b'{"Id":"' + NID.encode() + b'","Warning":""}\n'
    req = backend.calls[-1][1]
    assert req.name == "app" and req.driver == "bridge" and req.enable_ipv4 is False
    assert req.labels == {"a": "b"}
    swagger.validate("POST /networks/create 201", json.loads(resp.body))


async def test_create_ignores_enable_ipv4_below_1_48() -> None:
    backend = FakeNetworks()
    app = _app(backend)
    body = json.dumps({"Name": "app", "EnableIPv4": False, "Driver": "macvlan"}).encode()
    await app(_req("POST", "/v1.47/networks/create", body))
    assert backend.calls[-1][1].enable_ipv4 is None and backend.calls[-1][1].driver == "macvlan"
    await app(_req("POST", "/v1.48/networks/create", body))
    assert backend.calls[-1][1].enable_ipv4 is False


async def test_create_body_errors() -> None:
    backend = FakeNetworks()
    app = _app(backend)
    resp = await app(_req("POST", "/networks/create"))
    assert resp.status == 400 and _message(resp.body) == "invalid name: name is empty"
    resp = await app(_req("POST", "/networks/create", b'{"Name":"  "}'))
    assert _message(resp.body) == "invalid name: name is empty"
    resp = await app(_req("POST", "/networks/create", chunked=True))
    assert resp.status == 400
    assert _message(resp.body) == "invalid JSON: got EOF while reading request body"
    resp = await app(_req("POST", "/networks/create", b'{"Name":"x"}', ctype="text/plain"))
    assert resp.status == 400
    assert _message(resp.body) == "Content-Type specified (text/plain) must be 'application/json'"
    resp = await app(_req("POST", "/networks/create", b'{"Name":"x"} x'))
    assert _message(resp.body) == "unexpected content after JSON"
    resp = await app(_req("POST", "/networks/create", b'{"Name":'))
    assert _message(resp.body) == "invalid JSON: unexpected EOF"
    bad = json.dumps({"Name": "x", "IPAM": {"Config": [{"Subnet": "10.1.0.0"}]}}).encode()
    resp = await app(_req("POST", "/networks/create", bad))
    assert _message(resp.body) == "invalid JSON: netip.ParsePrefix(\"10.1.0.0\"): no '/'"
    assert backend.calls == []
    resp = await app(_req("POST", "/networks/create", b'{"Name":"bridge"}'))
    assert resp.status == 403


# ---------------------------------------------------------------------------- remove, connect


async def test_remove() -> None:
    backend = FakeNetworks()
    app = _app(backend)
    resp = await app(_req("DELETE", "/networks/app"))
    assert resp.status == 204 and resp.body == b""
    assert backend.calls[-1] == ("remove", "app")
    resp = await app(_req("DELETE", "/networks/bridge"))
    assert resp.status == 403


async def test_connect() -> None:
    backend = FakeNetworks()
    app = _app(backend)
    body = json.dumps(
        {
            "Container": "web",
            "EndpointConfig": {
                "Aliases": ["db"],
                "MacAddress": "02:42:ac:11:00:09",
                "IPAMConfig": {"IPv4Address": "172.18.0.9"},
            },
        }
    ).encode()
    resp = await app(_req("POST", "/v1.52/networks/app/connect", body))
    assert resp.status == 200 and resp.body == b""
    _, term, container, config = backend.calls[-1]
    assert (term, container) == ("app", "web")
    assert isinstance(config, EndpointSettings) and config.aliases == ["db"]
    assert config.ipam_config is not None and config.ipam_config.IPv4Address == "172.18.0.9"
    assert config.mac_address == ""  # dockerd applies MacAddress from API 1.54 only
    await app(_req("POST", "/networks/app/connect", b'{"Container":"web"}'))
    assert backend.calls[-1] == ("connect", "app", "web", None)
    await app(_req("POST", "/networks/app/connect"))
    assert backend.calls[-1] == ("connect", "app", "", None)
    resp = await app(_req("POST", "/networks/app/connect", b'{"Container":1}'))
    assert resp.status == 400 and _message(resp.body).startswith("invalid JSON: ")


async def test_disconnect() -> None:
    backend = FakeNetworks()
    app = _app(backend)
    body = b'{"Container":"web","Force":true}'
    resp = await app(_req("POST", "/networks/app/disconnect", body))
    assert resp.status == 200 and resp.body == b""
    assert backend.calls[-1] == ("disconnect", "app", "web", True)
    await app(_req("POST", "/networks/app/disconnect", b'{"container":"db"}'))
    assert backend.calls[-1] == ("disconnect", "app", "db", False)


# ---------------------------------------------------------------------------- prune


async def test_prune() -> None:
    backend = FakeNetworks()
    app = _app(backend)
    resp = await app(_req("POST", "/v1.24/networks/prune"))
    assert resp.status == 400  # introduced in 1.25
    assert backend.calls == []
    flt = "%7B%22until%22%3A%5B%2224h%22%5D%7D"
    resp = await app(_req("POST", f"/v1.25/networks/prune?filters={flt}"))
    assert resp.status == 200 and resp.body == b'{"NetworksDeleted":null}\n'
    assert backend.calls[-1] == ("prune", Filters({"until": ["24h"]}))
    backend.deleted = ["app", "db"]
    resp = await app(_req("POST", "/networks/prune"))
    assert json.loads(resp.body) == {"NetworksDeleted": ["app", "db"]}
    swagger.validate("POST /networks/prune", json.loads(resp.body))
