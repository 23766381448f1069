"""Exec routes: POST /containers/{id}/exec, POST /exec/{id}/start, /resize, GET /exec/{id}/json.

Rules (dockerd's daemon/server/router/container/exec.go):
- create: the body must name a command (`No exec command specified`, 400); `ConsoleSize` is
  dropped below API 1.42; the answer is 201 `{"Id": ...}`.
- start: the exec must exist and its container run (checked before the hijack, so 404/409 are
  HTTP errors). `ConsoleSize` counts only at API >= 1.42 and with `Tty`. `Detach` answers 200
  once the process runs. Otherwise the connection is hijacked: the start body's `Tty` decides
  raw vs stdcopy framing (and the multiplexed content type at API >= 1.42 with Upgrade); a
  failure after the hijack is written onto the stream as `<err>\\r\\n`.
- resize: `h` and `w` are uint32, as for containers.
"""

from __future__ import annotations

import logging

from pymoby import errdefs
from pymoby.api.types.exec import (
    decode_exec_create,
    decode_exec_start,
    encode_exec_created,
    encode_exec_inspect,
)
from pymoby.api.versions import ApiVersion
from pymoby.server.backends import ExecBackend
from pymoby.server.body import ClientGone
from pymoby.server.hijack import RAW_STREAM, HijackedStream, stream_content_type
from pymoby.server.request import JSON_BODY_LIMIT, Request
from pymoby.server.response import Response, empty_response, hijack_response, raw_json_response
from pymoby.server.router import Route
from pymoby.server.routes.container_streams import hijacked_client, uint32_param
from pymoby.server.streams import STDOUT

log = logging.getLogger("pymoby.server")

_CONSOLE_SIZE = ApiVersion(1, 42)


async def _body(req: Request) -> bytes:
    req.check_json()
    return await req.body.read(JSON_BODY_LIMIT)


def routes(backend: ExecBackend) -> list[Route]:
    async def create(req: Request) -> Response:
        request = decode_exec_create(await _body(req))
        if not request.cmd:
            raise errdefs.InvalidParameter("No exec command specified")
        if req.version < _CONSOLE_SIZE:
            request.console_size = None
        exec_id = await backend.create(req.params["name"], request)
        return raw_json_response(encode_exec_created(exec_id), 201)

    async def start(req: Request) -> Response:
        exec_id = req.params["name"]
        options = decode_exec_start(await _body(req))
        await backend.check(exec_id)
        size: tuple[int, int] | None = None
        if options.console_size and options.tty and req.version >= _CONSOLE_SIZE:
            size = (options.console_size[0], options.console_size[1])
        if options.detach:
            await backend.start(exec_id, None, size)
            return empty_response(200)
        tty = options.tty
        ctype = stream_content_type(req.version, tty=tty) if req.upgrade else RAW_STREAM

        async def run(stream: HijackedStream) -> None:
            client = hijacked_client(stream, req, multiplexed=not tty)
            try:
                await backend.start(exec_id, client, size)
            except ClientGone:
                raise
            except errdefs.PymobyError as exc:
                log.error("Error running exec %s in container: %s", exec_id, exc.message)
                await client.write(STDOUT, f"{exc.message}\r\n".encode())

        return hijack_response(run, ctype)

    async def resize(req: Request) -> Response:
        height = uint32_param(req, "h", "height")
        width = uint32_param(req, "w", "width")
        await backend.resize(req.params["name"], height, width)
        return empty_response(200)

    async def inspect(req: Request) -> Response:
        return raw_json_response(encode_exec_inspect(await backend.inspect(req.params["id"])))

    return [
        Route("GET", "/exec/{id:.*}/json", inspect),
        Route("POST", "/containers/{name:.*}/exec", create),
        Route("POST", "/exec/{name:.*}/start", start),
        Route("POST", "/exec/{name:.*}/resize", resize),
    ]
