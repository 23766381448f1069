"""A real pymoby HTTP server on a temporary unix socket for route tests that hijack or stream."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator

from pymoby.api.versions import MAX, MIN
from pymoby.server import listeners
from pymoby.server.http import ConnectionTracker
from pymoby.server.middleware import ServerInfo, build_app
from pymoby.server.router import Route, Router


@contextlib.asynccontextmanager
async def serve(routes: list[Route]) -> AsyncIterator[str]:
    """Serve `routes`; yields the socket path."""
    info = ServerInfo("0.1.0", MIN, MAX, experimental=lambda: False, debug=lambda: False)
    app = build_app(Router(routes), info)
    tracker = ConnectionTracker()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "api.sock")
        servers = await listeners.start(
            [listeners.Listen("unix", path)], app, tracker, group="no-such-group-xyz"
        )
        try:
            yield path
        finally:
            await listeners.stop(servers)
            await tracker.shutdown(1)


def request(
    method: str,
    target: str,
    body: bytes = b"",
    *,
    upgrade: bool = False,
    json_body: bool = True,
    close: bool = True,
) -> bytes:
    headers = "Host: d\r\n"
    if upgrade:
        headers += "Connection: Upgrade\r\nUpgrade: tcp\r\n"
    elif close:
        headers += "Connection: close\r\n"
    if body:
        if json_body:
            headers += "Content-Type: application/json\r\n"
        headers += f"Content-Length: {len(body)}\r\n"
    return f"{method} {target} HTTP/1.1\r\n{headers}\r\n".encode() + body


async def exchange(
    path: str, data: bytes, stdin: bytes = b"", *, half_close: bool = True, timeout: float = 5
) -> bytes:
    """Send a request (and stdin), half-close, read everything until the server closes."""
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(data + stdin)
        await writer.drain()
        if half_close:
            writer.write_eof()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def split(out: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, _, value = line.partition(": ")
        headers[key] = value
    return status, headers, body


def dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_text, _, rest = body.partition(b"\r\n")
        size = int(size_text, 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out
