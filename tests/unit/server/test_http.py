"""The HTTP layer end to end over a real unix socket, with an in-memory app."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pymoby import errdefs
from pymoby.api.versions import MAX, MIN, ApiVersion
from pymoby.server import body as body_mod
from pymoby.server import listeners
from pymoby.server.hijack import HijackedStream, stream_content_type
from pymoby.server.http import ConnectionTracker
from pymoby.server.middleware import ServerInfo, build_app
from pymoby.server.request import Request
from pymoby.server.response import (
    Response,
    hijack_response,
    json_response,
    stream_response,
    text_response,
)
from pymoby.server.router import Route, Router
from pymoby.server.streams import STDOUT, frame, unframe


class Backend:
    """An in-memory backend: what the routes below call."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.started = asyncio.Event()
        self.received = 0
        self.max_buffered = 0


def make_routes(b: Backend) -> list[Route]:
    async def ping(req: Request) -> Response:
        return text_response("OK")

    async def version(req: Request) -> Response:
        return json_response({"ApiVersion": str(req.version), "Name": req.params.get("name")})

    async def fail(req: Request) -> Response:
        raise errdefs.NotFound("No such thing: " + req.params["name"])

    async def crash(req: Request) -> Response:
        raise RuntimeError("boom")

    async def echo(req: Request) -> Response:
        doc = await req.json_any()
        return json_response(doc, 201)

    async def upload(req: Request) -> Response:
        async for data in req.body:
            b.received += len(data)
            await asyncio.sleep(0)
        return json_response({"received": b.received})

    async def slow(req: Request) -> Response:
        b.started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            b.cancelled.set()
            raise
        return text_response("late")

    async def lines(req: Request) -> Response:
        async def gen() -> AsyncIterator[bytes]:
            for i in range(3):
                yield json.dumps({"n": i}).encode() + b"\n"

        return stream_response(gen())

    async def attach(req: Request) -> Response:
        tty = req.bool_value("tty")

        async def run(stream: HijackedStream) -> None:
            got = b""
            while data := await stream.read():
                got += data
            out = b"body=" + (await req.body.read()) + b" stdin=" + got
            await stream.write(out if tty else frame(STDOUT, out))

        return hijack_response(run, stream_content_type(req.version, tty=tty))

    async def attach_body(req: Request) -> Response:
        payload = await req.body.read()

        async def run(stream: HijackedStream) -> None:
            await stream.write(b"body=" + payload)
            await stream.write(b" stdin=" + await stream.read())

        return hijack_response(run, stream_content_type(req.version, tty=True))

    return [
        Route("GET", "/_ping", ping),
        Route("HEAD", "/_ping", ping),
        Route("GET", "/version", version),
        Route("GET", "/images/{name:.*}/json", version),
        Route("GET", "/things/{name}", fail),
        Route("GET", "/crash", crash),
        Route("POST", "/echo", echo),
        Route("POST", "/upload", upload),
        Route("GET", "/slow", slow),
        Route("GET", "/lines", lines),
        Route("GET", "/new", ping, min_api=ApiVersion(1, 44)),
        Route("POST", "/attach", attach),
        Route("POST", "/exec/start", attach_body),
    ]


class Server:
    def __init__(self, path: str, backend: Backend, tracker: ConnectionTracker) -> None:
        self.path = path
        self.backend = backend
        self.tracker = tracker

    async def raw(self, data: bytes, *, read_until_close: bool = True) -> bytes:
        reader, writer = await asyncio.open_unix_connection(self.path)
        writer.write(data)
        await writer.drain()
        if read_until_close:
            out = await asyncio.wait_for(reader.read(), 5)
        else:
            out = await asyncio.wait_for(reader.read(65536), 5)
        writer.close()
        return out

    async def get(self, target: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        out = await self.raw(
            f"{method} {target} HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n".encode()
        )
        return parse_response(out)


def parse_response(out: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(": ")
        headers[k] = v
    return status, headers, body


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    backend = Backend()
    info = ServerInfo("0.1.0", MIN, MAX, experimental=lambda: False, debug=lambda: True)
    app = build_app(Router(make_routes(backend)), info)
    tracker = ConnectionTracker()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "api.sock")
        servers = await listeners.start(
            [listeners.Listen("unix", path)], app, tracker, group="no-such-group-xyz"
        )
        try:
            yield Server(path, backend, tracker)
        finally:
            await listeners.stop(servers)
            await tracker.shutdown(1)


async def test_ping_headers_and_body(server: Server) -> None:
    status, headers, body = await server.get("/_ping")
    assert status == 200
    assert body == b"OK"
    assert headers["Api-Version"] == "1.52"
    assert headers["Ostype"] == "linux"
    assert headers["Docker-Experimental"] == "false"
    assert headers["Server"] == "Docker/0.1.0 (linux)"
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["Content-Length"] == "2"


async def test_head_has_headers_but_no_body(server: Server) -> None:
    status, headers, body = await server.get("/_ping", method="HEAD")
    assert status == 200
    assert body == b""
    assert headers["Content-Length"] == "2"


async def test_socket_is_0660(server: Server) -> None:
    assert Path(server.path).stat().st_mode & 0o777 == 0o660


@pytest.mark.parametrize("prefix", ["", "/v1.24", "/v1.41", "/v1.52"])
async def test_prefixed_and_bare_paths(server: Server, prefix: str) -> None:
    status, headers, body = await server.get(prefix + "/version")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["ApiVersion"] == (prefix[2:] or "1.52")
    assert body.endswith(b"}\n")


async def test_too_old_and_too_new(server: Server) -> None:
    status, headers, body = await server.get("/v1.19/version")
    assert status == 400
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {
        "message": "client version 1.19 is too old. Minimum supported API version is 1.24, "
        "please upgrade your client to a newer version"
    }
    assert "Docker-Experimental" not in headers
    assert headers["Api-Version"] == "1.52"
    status, _, body = await server.get("/v9.99/_ping")
    assert status == 400
    assert json.loads(body) == {
        "message": "client version 9.99 is too new. Maximum supported API version is 1.52"
    }


async def test_route_minimum_version(server: Server) -> None:
    status, _, body = await server.get("/v1.41/new")
    assert status == 400
    assert "requires API version 1.44" in json.loads(body)["message"]
    status, _, _ = await server.get("/v1.44/new")
    assert status == 200


@pytest.mark.parametrize(
    "target,method",
    [("/nope", "GET"), ("/version", "POST"), ("/v1.4a/version", "GET"), ("/v1.41", "GET")],
)
async def test_unknown_path_or_method_is_404(server: Server, target: str, method: str) -> None:
    status, headers, body = await server.get(target, method)
    assert status == 404
    assert headers["Content-Type"] == "application/json"
    assert body == b'{"message":"page not found"}\n'


async def test_path_params_with_slashes(server: Server) -> None:
    status, _, body = await server.get("/v1.41/images/docker.io/library/busybox:latest/json")
    assert status == 200
    assert json.loads(body)["Name"] == "docker.io/library/busybox:latest"


async def test_errors_map_to_status(server: Server) -> None:
    status, _, body = await server.get("/things/x")
    assert status == 404
    assert json.loads(body) == {"message": "No such thing: x"}
    status, _, body = await server.get("/crash")
    assert status == 500
    assert json.loads(body) == {"message": "boom"}


async def test_json_body_errors(server: Server) -> None:
    def post(body: bytes, ctype: str = "application/json") -> bytes:
        return (
            f"POST /echo HTTP/1.1\r\nHost: d\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body

    status, _, body = parse_response(await server.raw(post(b'{"a": 1}')))
    assert (status, json.loads(body)) == (201, {"a": 1})
    status, _, body = parse_response(await server.raw(post(b"{bad")))
    assert status == 400
    assert json.loads(body)["message"].startswith("invalid JSON: ")
    status, _, body = parse_response(await server.raw(post(b"x", "text/plain")))
    assert status == 400
    assert json.loads(body)["message"] == (
        "Content-Type specified (text/plain) must be 'application/json'"
    )


async def test_garbage_gets_400_json(server: Server) -> None:
    status, headers, body = parse_response(await server.raw(b"\x00\x01garbage\r\n\r\n"))
    assert status == 400
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["message"].startswith("malformed HTTP request")


async def test_oversize_headers_get_431(server: Server) -> None:
    big = "x" * (1 << 20)
    req = f"GET /_ping HTTP/1.1\r\nHost: d\r\nX-Registry-Auth: {big}\r\n\r\n".encode()
    status, _, body = parse_response(await server.raw(req))
    assert status == 431
    assert json.loads(body) == {"message": "request header fields too large"}


async def test_large_header_under_limit_is_fine(server: Server) -> None:
    big = "x" * (512 << 10)
    req = f"GET /_ping HTTP/1.1\r\nHost: d\r\nX-Registry-Auth: {big}\r\nConnection: close\r\n\r\n"
    status, _, body = parse_response(await server.raw(req.encode()))
    assert (status, body) == (200, b"OK")


async def test_keep_alive_and_pipelining(server: Server) -> None:
    one = b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n"
    last = b"GET /v1.41/version HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n"
    out = await server.raw(one + one + last)
    assert out.count(b"HTTP/1.1 200 OK") == 3
    assert out.endswith(b'"Name":null}\n')


async def test_chunked_json_lines(server: Server) -> None:
    status, headers, body = await server.get("/lines")
    assert status == 200
    assert headers["Transfer-Encoding"] == "chunked"
    assert body == (b'9\r\n{"n": 0}\n\r\n9\r\n{"n": 1}\n\r\n9\r\n{"n": 2}\n\r\n0\r\n\r\n')


async def test_chunked_request_body(server: Server) -> None:
    req = (
        b"POST /upload HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    status, _, body = parse_response(await server.raw(req))
    assert (status, json.loads(body)) == (200, {"received": 11})


async def test_upload_streams_with_backpressure(server: Server) -> None:
    """64 MiB through a handler that reads slowly: the buffer stays bounded."""
    total = 64 << 20
    seen: list[int] = []
    orig_feed = body_mod.ByteStream.feed

    def spy(self: body_mod.ByteStream, data: bytes) -> None:
        orig_feed(self, data)
        seen.append(self._size)

    body_mod.ByteStream.feed = spy  # type: ignore[method-assign]
    try:
        reader, writer = await asyncio.open_unix_connection(server.path)
        writer.write(
            f"POST /upload HTTP/1.1\r\nHost: d\r\nContent-Length: {total}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        block = b"\0" * (1 << 20)
        for _ in range(total // len(block)):
            writer.write(block)
            await writer.drain()
        out = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    finally:
        body_mod.ByteStream.feed = orig_feed  # type: ignore[method-assign]
    status, _, body = parse_response(out)
    assert (status, json.loads(body)) == (200, {"received": total})
    assert max(seen) < body_mod.HIGH_WATER + (1 << 20)


async def test_disconnect_cancels_handler(server: Server) -> None:
    _reader, writer = await asyncio.open_unix_connection(server.path)
    writer.write(b"GET /slow HTTP/1.1\r\nHost: d\r\n\r\n")
    await writer.drain()
    await asyncio.wait_for(server.backend.started.wait(), 5)
    writer.close()
    await asyncio.wait_for(server.backend.cancelled.wait(), 5)


async def _hijack(
    server: Server, target: str, body: bytes, stdin: bytes, *, upgrade: bool = True
) -> tuple[bytes, bytes]:
    reader, writer = await asyncio.open_unix_connection(server.path)
    hdrs = "Connection: Upgrade\r\nUpgrade: tcp\r\n" if upgrade else ""
    writer.write(
        f"POST {target} HTTP/1.1\r\nHost: d\r\n{hdrs}Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
        + stdin
    )
    await writer.drain()
    writer.write_eof()  # stdin EOF: half-close
    out = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, rest = out.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


async def test_hijack_upgrade_body_then_stdin_half_close(server: Server) -> None:
    head, rest = await _hijack(server, "/v1.41/exec/start", b'{"Detach":false}', b"typed")
    assert head == (
        b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
        b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
    )
    assert rest == b'body={"Detach":false} stdin=typed'


async def test_hijack_multiplexed_at_142(server: Server) -> None:
    head, rest = await _hijack(server, "/v1.42/attach", b"{}", b"in")
    assert b"Content-Type: application/vnd.docker.multiplexed-stream\r\n" in head
    assert unframe(rest) == [(STDOUT, b"body={} stdin=in")]
    head, _ = await _hijack(server, "/v1.41/attach", b"{}", b"in")
    assert b"Content-Type: application/vnd.docker.raw-stream\r\n" in head
    head, rest = await _hijack(server, "/v1.42/attach?tty=1", b"{}", b"in")
    assert b"raw-stream" in head
    assert rest == b"body={} stdin=in"


async def test_hijack_without_upgrade_answers_200(server: Server) -> None:
    head, rest = await _hijack(server, "/v1.24/attach?tty=1", b"", b"", upgrade=False)
    assert head == b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n"
    assert rest == b"body= stdin="


async def test_shutdown_ends_streams_and_closes_idle(server: Server) -> None:
    reader, writer = await asyncio.open_unix_connection(server.path)
    writer.write(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
    await writer.drain()
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\nOK"), 5)
    await server.tracker.shutdown(1)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
