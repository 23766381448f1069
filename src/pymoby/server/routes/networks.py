"""Network routes: list, inspect, create, remove, connect, disconnect, prune -- as data.

Rule: handlers read the request as dockerd's network router does
(daemon/server/router/network/network_routes.go: same paths, parameters, status codes and
error texts), call the NetworkBackend and encode with api/types/networks for the request's
API version. JSON bodies follow httputils.ReadJSON: the Content-Type must be JSON, an absent
body (Content-Length 0) is the zero request, a chunked body with nothing in it is
`invalid JSON: got EOF while reading request body`. Version rules applied here:
- POST /networks/create ignores `EnableIPv4` below 1.48;
- POST /networks/{id}/connect ignores `EndpointConfig.MacAddress` below 1.54, i.e. for every
  version served (dockerd 29 applied it from 1.54 only);
- POST /networks/prune exists from 1.25.
Filter validation and name/ID lookup are the backend's (daemon/networks/filters.py).
"""

from __future__ import annotations

from pymoby import errdefs
from pymoby.api.filters import Filters
from pymoby.api.strconv import parse_bool
from pymoby.api.types.networks import (
    decode_connect_request,
    decode_create_request,
    decode_disconnect_request,
    encode_create_response,
    encode_network_inspect,
    encode_network_list,
    encode_prune_report,
)
from pymoby.api.versions import ApiVersion
from pymoby.server.backends import NetworkBackend
from pymoby.server.request import JSON_BODY_LIMIT, Request
from pymoby.server.response import Response, empty_response, raw_json_response
from pymoby.server.router import Route

V1_25 = ApiVersion(1, 25)
V1_48 = ApiVersion(1, 48)
V1_54 = ApiVersion(1, 54)


async def read_json_body(req: Request) -> bytes | None:
    """httputils.ReadJSON's framing: None for an absent body (decode nothing: zero value)."""
    req.check_json()
    chunked = "chunked" in req.header("transfer-encoding").lower()
    if req.content_length == 0 or (req.content_length is None and not chunked):
        await req.body.drain()
        return None
    data = await req.body.read(JSON_BODY_LIMIT)
    if not data.strip():
        raise errdefs.InvalidParameter("invalid JSON: got EOF while reading request body")
    return data


def _parse_verbose(req: Request) -> bool:
    """strconv.ParseBool of `verbose` (the first value), when not empty."""
    text = req.value("verbose")
    if text == "":
        return False
    value = parse_bool(text)
    if value is not None:
        return value
    raise errdefs.InvalidParameter(
        f'invalid value for verbose: {text}: strconv.ParseBool: parsing "{text}": invalid syntax'
    )


def routes(backend: NetworkBackend) -> list[Route]:
    async def list_networks(req: Request) -> Response:
        filters = Filters.parse(req.value("filters"))
        items = await backend.list_networks(filters)
        return raw_json_response(encode_network_list(items, req.version))

    async def inspect(req: Request) -> Response:
        verbose = _parse_verbose(req)
        found = await backend.inspect_network(
            req.params["id"], verbose=verbose, scope=req.value("scope")
        )
        return raw_json_response(encode_network_inspect(found, req.version))

    async def create(req: Request) -> Response:
        data = await read_json_body(req)
        create_req = decode_create_request(data) if data is not None else None
        if create_req is None or not create_req.name.strip():
            raise errdefs.InvalidParameter("invalid name: name is empty")
        if req.version < V1_48:
            create_req.enable_ipv4 = None
        if not create_req.driver:
            create_req.driver = "bridge"
        created = await backend.create_network(create_req)
        return raw_json_response(encode_create_response(created), 201)

    async def remove(req: Request) -> Response:
        await backend.remove_network(req.params["id"])
        return empty_response(204)

    async def connect(req: Request) -> Response:
        data = await read_json_body(req)
        body = decode_connect_request(data) if data is not None else None
        container = body.container if body is not None else ""
        config = body.endpoint_config if body is not None else None
        if config is not None and req.version < V1_54:
            config.mac_address = ""
        await backend.connect(req.params["id"], container, config)
        return empty_response(200)

    async def disconnect(req: Request) -> Response:
        data = await read_json_body(req)
        body = decode_disconnect_request(data) if data is not None else None
        container = body.container if body is not None else ""
        force = body.force if body is not None else False
        await backend.disconnect(req.params["id"], container, force=force)
        return empty_response(200)

    async def prune(req: Request) -> Response:
        deleted = await backend.prune_networks(Filters.parse(req.value("filters")))
        return raw_json_response(encode_prune_report(deleted))

    return [
        Route("GET", "/networks", list_networks),
        Route("GET", "/networks/", list_networks),
        Route("GET", "/networks/{id:.+}", inspect),
        Route("POST", "/networks/create", create),
        Route("POST", "/networks/{id:.*}/connect", connect),
        Route("POST", "/networks/{id:.*}/disconnect", disconnect),
        Route("POST", "/networks/prune", prune, min_api=V1_25),
        Route("DELETE", "/networks/{id:.*}", remove),
    ]
