"""System routes: /_ping, /version, /info, /system/df, /events — as data, over two Protocols.

Rule: these handlers only parse the request, call the backend and encode for the request's
API version; every version-dependent field is decided by the encoders in api/types.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from pymoby.api.filters import Filters
from pymoby.api.timestamps import parse_event_range
from pymoby.api.types.events import encode_event, event_visible, events_content_type, frame_event
from pymoby.api.types.system import encode_disk_usage, encode_info, encode_version
from pymoby.server.backends import EventsBackend, SystemBackend
from pymoby.server.request import Request
from pymoby.server.response import Response, raw_json_response, stream_response
from pymoby.server.router import Route

_PING_HEADERS = {
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
    "Builder-Version": "1",
    "Swarm": "inactive",
}


def routes(system: SystemBackend, events: EventsBackend) -> list[Route]:
    async def ping(req: Request) -> Response:
        resp = Response(headers=dict(_PING_HEADERS))
        if req.method == "HEAD":
            resp.headers["Content-Type"] = "text/plain; charset=utf-8"
            resp.headers["Content-Length"] = "0"
        else:
            resp.body = b"OK"
            resp.detected_type = "text/plain; charset=utf-8"
        return resp

    async def version(req: Request) -> Response:
        return raw_json_response(encode_version(await system.version(), req.version))

    async def info(req: Request) -> Response:
        return raw_json_response(encode_info(await system.info(), req.version))

    async def disk_usage(req: Request) -> Response:
        usage = await system.disk_usage(req.values("type"), req.version)
        verbose = req.bool_value("verbose")
        return raw_json_response(encode_disk_usage(usage, req.version, verbose=verbose))

    async def get_events(req: Request) -> Response:
        since, until = parse_event_range(req.value("since"), req.value("until"))
        filters = Filters.parse(req.value("filters"))
        ctype = events_content_type(req.version, req.headers.get("accept"))
        subscription = events.subscribe(filters, since, until)

        async def lines() -> AsyncIterator[bytes]:
            try:
                async for msg in subscription:
                    if event_visible(msg, req.version):
                        yield frame_event(encode_event(msg, req.version), ctype)
            finally:
                aclose = getattr(subscription, "aclose", None)
                if aclose is not None:
                    await aclose()

        return stream_response(lines(), ctype)

    return [
        Route("GET", "/_ping", ping),
        Route("HEAD", "/_ping", ping),
        Route("GET", "/events", get_events),
        Route("GET", "/info", info),
        Route("GET", "/version", version),
        Route("GET", "/system/df", disk_usage),
    ]
