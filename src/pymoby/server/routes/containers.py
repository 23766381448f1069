"""Container routes: create, start/stop/kill/restart/pause/unpause, wait, delete, list, inspect,
rename -- as data, over ContainerBackend (the stream routes live in container_streams.py).

Rule: handlers parse the request as dockerd's container router does (same parameter names and
error texts), apply the request-version adjustments of postContainersCreate in one place
(`_adjust_create`), call the backend, and encode with api/types/container_responses.
Wait flushes its head at once and sends the body when the condition is met (a client that
registers `next-exit` before `start` sees that start's exit); below API 1.30 it answers only
when done and ignores `condition`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from pymoby import errdefs
from pymoby.api.filters import Filters
from pymoby.api.types.container_responses import (
    encode_create,
    encode_inspect,
    encode_summaries,
    encode_wait,
)
from pymoby.api.types.containers import (
    CreateRequest,
    HostConfig,
    NetworkingConfig,
    PortBinding,
    decode_create_request,
)
from pymoby.api.types.images import Platform
from pymoby.api.versions import ApiVersion
from pymoby.server.backends import ContainerBackend
from pymoby.server.request import JSON_BODY_LIMIT, Request
from pymoby.server.response import (
    JSON,
    Response,
    empty_response,
    raw_json_response,
    stream_response,
)
from pymoby.server.router import Route
from pymoby.server.routes.images import parse_platform_specifier

V = ApiVersion
WAIT_CONDITIONS = ("not-running", "next-exit", "removed")


def _atoi(req: Request, name: str) -> int | None:
    """strconv.Atoi of a query value; None when absent or empty."""
    text = req.value(name)
    if text == "":
        return None
    try:
        return int(text, 10)
    except ValueError:
        raise errdefs.InvalidParameter(f'strconv.Atoi: parsing "{text}": invalid syntax') from None


def _adjust_create(
    req: CreateRequest, body: bytes, version: ApiVersion
) -> tuple[HostConfig, NetworkingConfig, list[str]]:
    """postContainersCreate's version-dependent adjustments; returns the warnings they add."""
    hc = req.host_config or HostConfig()
    net = req.networking_config or NetworkingConfig()
    endpoints = net.endpoints_config if net.endpoints_config is not None else {}
    net.endpoints_config = endpoints
    warnings: list[str] = []
    if hc.network_mode in ("", "default"):
        hc.network_mode = "bridge"
        if "default" in endpoints:
            endpoints["bridge"] = endpoints.pop("default")
    mounts = hc.mounts or []
    if version < V(1, 40):
        for m in mounts:
            if m.bind_options is not None:
                m.bind_options.non_recursive = False
        if hc.ipc_mode == "":
            hc.ipc_mode = "shareable"
    if version < V(1, 42):
        for m in mounts:
            if m.bind_options is not None:
                m.bind_options.create_mountpoint = False
            if m.volume_options is not None and m.type != "volume":
                m.volume_options = None
            if m.tmpfs_options is not None and m.type != "tmpfs":
                m.tmpfs_options = None
        hc.console_size = [0, 0]
    else:
        for m in mounts:
            for opts, kind, label in (
                (m.volume_options, "volume", "VolumeOptions"),
                (m.bind_options, "bind", "BindOptions"),
                (m.tmpfs_options, "tmpfs", "TmpfsOptions"),
            ):
                if opts is not None and m.type != kind:
                    raise errdefs.InvalidParameter(
                        f'{label} must not be specified on mount type "{m.type}"'
                    )
    if version < V(1, 43):
        hc.annotations = None
    if version < V(1, 44):
        if req.healthcheck is not None:
            req.healthcheck.start_interval = 0
        for m in mounts:
            if m.type == "bind" and m.bind_options and m.bind_options.read_only_force_recursive:
                raise errdefs.InvalidParameter(
                    "BindOptions.ReadOnlyForceRecursive needs API v1.44 or newer"
                )
        if len(endpoints) > 1:
            raise errdefs.InvalidParameter(
                "Container cannot be created with multiple network endpoints: "
                + ", ".join(endpoints)
            )
    if version < V(1, 45):
        for m in mounts:
            if m.volume_options is not None and m.volume_options.subpath:
                raise errdefs.InvalidParameter("VolumeOptions.Subpath needs API v1.45 or newer")
    if version < V(1, 48):
        for ep in endpoints.values():
            if ep is not None:
                ep.gw_priority = 0
        for m in mounts:
            if m.type == "image":
                raise errdefs.InvalidParameter('Mount type "Image" needs API v1.48 or newer')
    warnings.extend(_mac_address(req, hc, body, version))
    if version >= V(1, 52) and req.mac_address:
        raise errdefs.InvalidParameter(
            "container-wide MAC address no longer supported; use endpoint-specific MAC "
            "address instead"
        )
    req.mac_address = ""
    empty = [p for p, b in (hc.port_bindings or {}).items() if not b]
    for port in empty:
        assert hc.port_bindings is not None
        hc.port_bindings[port] = [PortBinding()]
    if empty and version >= V(1, 52):
        warnings.append(
            "Following container port(s) have an empty list of port-bindings: "
            f"{', '.join(empty)}. Such bindings will be discarded in a future version."
        )
    if hc.pids_limit is not None and hc.pids_limit <= 0:
        hc.pids_limit = None
    return hc, net, warnings


def _mac_address(req: CreateRequest, hc: HostConfig, body: bytes, version: ApiVersion) -> list[str]:
    """handleMACAddressBC and rejectLegacyCapabilities (API < 1.52 only)."""
    if version >= V(1, 52):
        return []
    try:
        raw = json.loads(body)
    except ValueError:
        raw = {}
    legacy = raw.get("HostConfig") if isinstance(raw, dict) else None
    if version == V(1, 40) and isinstance(legacy, dict) and legacy.get("Capabilities"):
        raise errdefs.InvalidParameter(
            "the HostConfig.Capabilities field is not supported by this daemon; use CapAdd "
            "and CapDrop to set capabilities"
        )
    if not req.mac_address:
        return []
    private = hc.network_mode not in ("host", "none") and not hc.network_mode.startswith(
        "container:"
    )
    if version < V(1, 44) and not private:
        raise errdefs.InvalidParameter("conflicting options: mac-address and the network mode")
    return [
        "The container-wide MacAddress field is now deprecated. It should be specified in "
        "EndpointsConfig instead."
    ]


def routes(backend: ContainerBackend) -> list[Route]:
    async def create(req: Request) -> Response:
        req.check_json()
        body = await req.body.read(JSON_BODY_LIMIT)
        creq = decode_create_request(body)
        hc, net, warnings = _adjust_create(creq, body, req.version)
        platform: Platform | None = None
        if req.version >= V(1, 41) and req.value("platform"):
            platform = parse_platform_specifier(req.value("platform"))
        cid, more = await backend.create(
            req.value("name"), creq.config(), hc, net.endpoints_config or {}, platform
        )
        return raw_json_response(encode_create(cid, [*more, *warnings]), 201)

    async def start(req: Request) -> Response:
        length = req.content_length
        if (length is not None and length > 7) or (
            length is None and req.header("transfer-encoding").lower() == "chunked"
        ):
            raise errdefs.InvalidParameter(
                "starting container with non-empty request body was deprecated since API "
                "v1.22 and removed in v1.24"
            )
        await backend.start_container(req.params["name"])
        return empty_response()

    def signal_of(req: Request) -> str:
        return req.value("signal") if req.version >= V(1, 42) else ""

    async def stop(req: Request) -> Response:
        await backend.stop(req.params["name"], signal_of(req), _atoi(req, "t"))
        return empty_response()

    async def kill(req: Request) -> Response:
        await backend.kill(req.params["name"], req.value("signal"))
        return empty_response()

    async def restart(req: Request) -> Response:
        await backend.restart(req.params["name"], signal_of(req), _atoi(req, "t"))
        return empty_response()

    async def pause(req: Request) -> Response:
        await backend.pause(req.params["name"])
        return empty_response()

    async def unpause(req: Request) -> Response:
        await backend.unpause(req.params["name"])
        return empty_response()

    async def wait(req: Request) -> Response:
        legacy = req.version < V(1, 30)
        condition = "not-running"
        if not legacy and req.value("condition"):
            condition = req.value("condition")
            if condition not in WAIT_CONDITIONS:
                raise errdefs.InvalidParameter(f'invalid condition: "{condition}"')
        quiet_error = condition == "removed" and req.version < V(1, 34)
        pending = await backend.wait(req.params["name"], condition)
        if legacy:
            code, error = await pending
            return raw_json_response(encode_wait(code, error))

        async def body() -> AsyncIterator[bytes]:
            code, error = await pending
            if quiet_error and error:
                return
            yield encode_wait(code, error) + b"\n"

        return stream_response(body(), JSON)

    async def remove(req: Request) -> Response:
        await backend.remove(
            req.params["name"],
            force=req.bool_value("force"),
            volumes=req.bool_value("v"),
            link=req.bool_value("link"),
        )
        return empty_response()

    async def list_containers(req: Request) -> Response:
        filters = Filters.parse(req.value("filters"))
        limit = 0
        if req.value("limit"):
            parsed = _atoi(req, "limit")
            limit = parsed if parsed is not None else 0
        items = await backend.containers(
            filters, all=req.bool_value("all"), limit=limit, size=req.bool_value("size")
        )
        return raw_json_response(encode_summaries(list(items), req.version))

    async def inspect(req: Request) -> Response:
        found = await backend.inspect(req.params["name"], size=req.bool_value("size"))
        return raw_json_response(encode_inspect(found, req.version))

    async def rename(req: Request) -> Response:
        await backend.rename(req.params["name"], req.value("name"))
        return empty_response()

    return [
        Route("GET", "/containers/json", list_containers),
        Route("GET", "/containers/{name:.*}/json", inspect),
        Route("POST", "/containers/create", create),
        Route("POST", "/containers/{name:.*}/kill", kill),
        Route("POST", "/containers/{name:.*}/pause", pause),
        Route("POST", "/containers/{name:.*}/unpause", unpause),
        Route("POST", "/containers/{name:.*}/restart", restart),
        Route("POST", "/containers/{name:.*}/start", start),
        Route("POST", "/containers/{name:.*}/stop", stop),
        Route("POST", "/containers/{name:.*}/wait", wait),
        Route("POST", "/containers/{name:.*}/rename", rename),
        Route("DELETE", "/containers/{name:.*}", remove),
    ]
