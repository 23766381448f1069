"""TLS through MemoryBIO: client-certificate verification and half-close on a hijack."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from certs import Certs, make_certs
from pymoby.api.versions import MAX, MIN
from pymoby.server import listeners
from pymoby.server.hijack import RAW_STREAM, HijackedStream
from pymoby.server.http import ConnectionTracker
from pymoby.server.middleware import ServerInfo, build_app
from pymoby.server.request import Request
from pymoby.server.response import Response, hijack_response, text_response
from pymoby.server.router import Route, Router
from pymoby.server.tls import server_context


async def ping(req: Request) -> Response:
    return text_response("OK")


async def attach(req: Request) -> Response:
    async def run(stream: HijackedStream) -> None:
        got = b""
        while data := await stream.read():
            got += data
        # stdin is closed; output still flows after the client's close_notify
        for part in (b"after-eof:", got):
            await stream.write(part)

    return hijack_response(run, RAW_STREAM)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
async def tls_port(certs: Certs) -> AsyncIterator[int]:
    info = ServerInfo("0.1.0", MIN, MAX, experimental=lambda: False, debug=lambda: False)
    app = build_app(Router([Route("GET", "/_ping", ping), Route("POST", "/attach", attach)]), info)
    tracker = ConnectionTracker()
    ctx = server_context(certs.server_cert, certs.server_key, certs.ca, verify=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    servers = await listeners.start(
        [listeners.Listen("tcp", f"127.0.0.1:{port}")], app, tracker, tls=ctx
    )
    try:
        yield port
    finally:
        await listeners.stop(servers)
        await tracker.shutdown(1)


def client_ctx(certs: Certs, *, with_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    if with_cert:
        ctx.load_cert_chain(str(certs.client_cert), str(certs.client_key))
    return ctx


async def test_tlsverify_accepts_client_cert(certs: Certs, tls_port: int) -> None:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", tls_port, ssl=client_ctx(certs, with_cert=True), server_hostname="localhost"
    )
    writer.write(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
    out = await asyncio.wait_for(reader.read(), 5)
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert out.endswith(b"\r\n\r\nOK")
    writer.close()


async def test_tlsverify_refuses_client_without_cert(certs: Certs, tls_port: int) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1",
            tls_port,
            ssl=client_ctx(certs, with_cert=False),
            server_hostname="localhost",
        )
        writer.write(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
        out = await asyncio.wait_for(reader.read(), 5)
        if not out:
            raise ConnectionError("closed without an answer")


async def test_half_close_survives_tls(certs: Certs, tls_port: int) -> None:
    """The client sends close_notify after stdin; the server still writes, then closes."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_ctx(certs, with_cert=True).wrap_bio(
        incoming, outgoing, server_hostname="localhost"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_port)

    async def pump() -> bool:
        if data := outgoing.read():
            writer.write(data)
            await writer.drain()
        data = await asyncio.wait_for(reader.read(65536), 5)
        if data:
            incoming.write(data)
        else:
            incoming.write_eof()
        return bool(data)

    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            await pump()
    tls.write(
        b"POST /attach HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
        b"Content-Length: 0\r\n\r\nstdin-bytes"
    )
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.unwrap()  # our close_notify: stdin EOF
    writer.write(outgoing.read())
    await writer.drain()
    got = b""
    while True:
        try:
            data = tls.read(65536)
            if not data:
                break
            got += data
            continue
        except ssl.SSLWantReadError:
            pass
        except (ssl.SSLZeroReturnError, ssl.SSLError):
            break
        if not await pump():
            break
    writer.close()
    head, _, rest = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 UPGRADED")
    assert rest == b"after-eof:stdin-bytes"
