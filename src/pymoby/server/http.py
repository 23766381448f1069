"""HTTP/1.1 connections on asyncio + httptools: one request at a time, bodies streamed, hijack.

Rules:
- A connection serves its requests in order; a request's handler starts as soon as its headers
  are parsed, and its body streams to it with backpressure (body.py).
- `Connection: Upgrade` requests: llhttp stops after the headers; the next Content-Length bytes
  are still the body, everything after is raw stdin for the hijack.
- A hijack without Upgrade headers answers `200 OK` and goes raw as well.
- Half-close: `eof_received` keeps the write side open; stdin EOF reaches the handler, output
  continues, and the server half-closes and closes when the handler is done.
- A client that leaves mid-request cancels its handler; errors after a hijack go onto the socket.
- Bad bytes or oversize headers get a 4xx in Docker's `{"message": ...}` shape and a close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import cast
from urllib.parse import unquote

import httptools

from pymoby.server.body import ByteStream, ClientGone
from pymoby.server.hijack import HijackedStream
from pymoby.server.request import Request
from pymoby.server.response import (
    LAST_CHUNK,
    Response,
    chunk,
    error_response,
    render_head,
    render_hijack_head,
)

log = logging.getLogger("pymoby.server")

App = Callable[[Request], Awaitable[Response]]

MAX_HEADER_BYTES = 1 << 20
_WRITE_HIGH = 1 << 20

_HTTP, _UPGRADE_BODY, _RAW = range(3)


class BadRequest(Exception):
    """The bytes on the socket are not an acceptable HTTP request."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ConnectionTracker:
    """The set of live connections, for graceful shutdown."""

    def __init__(self) -> None:
        self.connections: set[HttpConnection] = set()
        self.closing = False
        self._empty = asyncio.Event()
        self._empty.set()

    def add(self, conn: HttpConnection) -> None:
        self.connections.add(conn)
        self._empty.clear()

    def discard(self, conn: HttpConnection) -> None:
        self.connections.discard(conn)
        if not self.connections:
            self._empty.set()

    async def shutdown(self, grace: float) -> None:
        """Close idle connections, end streams, give in-flight requests `grace` seconds."""
        self.closing = True
        for conn in list(self.connections):
            conn.shutdown()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._empty.wait()
        for conn in list(self.connections):
            conn.abort()


class HttpConnection(asyncio.Protocol):
    """One client connection (plain or under the TLS adapter)."""

    def __init__(self, app: App, tracker: ConnectionTracker) -> None:
        self._app = app
        self._tracker = tracker
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._mode = _HTTP
        self._pending: deque[Request] = deque()
        self._current: Request | None = None  # the request whose body is being received
        self._worker: asyncio.Task[None] | None = None
        self._serving: Request | None = None
        self._streaming = False
        self._lost: asyncio.Future[None] | None = None
        self._peer_eof = False
        self._upgrade_left = 0
        self._raw: ByteStream | None = None
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._head_sent_at = 0.0
        # parse state of the request being read
        self._url = bytearray()
        self._headers: dict[str, str] = {}
        self._header_bytes = 0

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport
        self._transport = cast(asyncio.Transport, transport)
        self._lost = asyncio.get_running_loop().create_future()
        self._tracker.add(self)

    def data_received(self, data: bytes) -> None:
        if self._mode == _RAW:
            assert self._raw is not None
            self._raw.feed(data)
        elif self._mode == _UPGRADE_BODY:
            self._feed_upgrade(data)
        else:
            self._parse(data)

    def eof_received(self) -> bool:
        self._peer_eof = True
        if self._mode == _RAW and self._raw is not None:
            self._raw.feed_eof()  # stdin EOF of a hijack: output keeps flowing
            return True
        # Plain HTTP: EOF means the client is gone (Go cancels the request context too).
        gone = ClientGone("client closed the connection")
        for req in (self._current, *self._pending):
            if req is not None:
                req.body.set_error(gone)
        if self._worker is not None:
            self._worker.cancel()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._tracker.discard(self)
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        gone = ClientGone("client disconnected")
        for req in (self._current, *self._pending):
            if req is not None:
                req.body.set_error(gone)
        if self._raw is not None:
            self._raw.feed_eof()
        if self._worker is not None:
            self._worker.cancel()
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ClientGone("client disconnected"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- RawConnection (for HijackedStream) -------------------------------------------------
    def write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    async def drain(self) -> None:
        if self.closed:
            raise ClientGone("client disconnected")
        if self._write_paused:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            await self._drain_waiter

    def write_eof(self) -> None:
        t = self._transport
        if t is not None and not t.is_closing() and t.can_write_eof():
            t.write_eof()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    @property
    def closed(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    @property
    def head_sent_at(self) -> float:
        return self._head_sent_at

    def shutdown(self) -> None:
        """Server shutdown: idle connections close now, streams end, requests may finish."""
        if self._worker is None:
            self.close()
        elif (self._streaming or self._mode == _RAW) and self._worker is not None:
            self._worker.cancel()

    # -- parsing ----------------------------------------------------------------------------
    def _parse(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._start_upgrade(data[exc.args[0] :])
        except BadRequest as exc:
            self._reject(exc.status, exc.message)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, BadRequest):
                self._reject(cause.status, cause.message)
            else:
                self._reject(400, f"malformed HTTP request: {exc}")
        except httptools.HttpParserError as exc:
            self._reject(400, f"malformed HTTP request: {exc}")

    def on_message_begin(self) -> None:
        self._url.clear()
        self._headers = {}
        self._header_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count_header_bytes(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value) + 4)
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        old = self._headers.get(key)
        self._headers[key] = text if old is None else f"{old}, {text}"

    def _count_header_bytes(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_HEADER_BYTES:
            raise BadRequest(431, "request header fields too large")

    def on_headers_complete(self) -> None:
        parsed = httptools.parse_url(bytes(self._url))
        path = (parsed.path or b"/").decode("latin-1")
        query = (parsed.query or b"").decode("latin-1")
        length_text = self._headers.get("content-length")
        length = int(length_text) if length_text and length_text.isdigit() else None
        upgrade = bool(self._parser.should_upgrade())
        body = ByteStream(self._pause_reading, self._resume_reading)
        req = Request(
            self._parser.get_method().decode("latin-1"),
            _unquote_path(path),
            query,
            self._headers,
            body,
            upgrade=upgrade,
            content_length=length,
            disconnected=self._lost,
        )
        if not self._parser.should_keep_alive():
            req.headers.setdefault("connection", "close")
        self._current = req
        self._pending.append(req)
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work())

    def on_body(self, body: bytes) -> None:
        if self._current is not None:
            self._current.body.feed(body)

    def on_message_complete(self) -> None:
        req = self._current
        if req is not None and not req.upgrade:
            req.body.feed_eof()
            self._current = None

    def _start_upgrade(self, rest: bytes) -> None:
        req = self._current
        if req is None:
            self._reject(400, "malformed HTTP request: upgrade without a request")
            return
        self._raw = ByteStream(self._pause_reading, self._resume_reading)
        req.raw_stream = self._raw
        self._upgrade_left = req.content_length or 0
        self._mode = _UPGRADE_BODY
        self._feed_upgrade(rest)

    def _feed_upgrade(self, data: bytes) -> None:
        req = self._current
        assert req is not None and self._raw is not None
        if self._upgrade_left:
            part = data[: self._upgrade_left]
            self._upgrade_left -= len(part)
            req.body.feed(part)
            data = data[len(part) :]
        if not self._upgrade_left:
            req.body.feed_eof()
            self._current = None
            self._mode = _RAW
            self._raw.feed(data)

    def _pause_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def _reject(self, status: int, message: str) -> None:
        """Answer a request we cannot parse, then close (nothing after it can be trusted)."""
        log.debug("rejecting request: %s", message)
        if self._worker is not None:
            self._worker.cancel()
        resp = error_response(status, message)
        self.write(render_head(resp, close=True) + resp.body)
        self.close()

    # -- serving ----------------------------------------------------------------------------
    async def _work(self) -> None:
        try:
            while self._pending:
                req = self._pending.popleft()
                self._serving = req
                keep = await self._serve(req)
                self._serving = None
                if not keep:
                    self.close()
                    return
            if self._peer_eof or self._tracker.closing:
                self.close()
        except asyncio.CancelledError:
            self.close()
        except ClientGone:
            self.close()
        except Exception:
            log.exception("connection failed")
            self.abort()
        finally:
            self._worker = None

    async def _serve(self, req: Request) -> bool:
        resp = await self._app(req)
        if resp.hijack is not None:
            await self._serve_hijack(req, resp)
            return False
        if req.upgrade:
            # An Upgrade request answered without a hijack: the raw bytes can't be trusted.
            close = True
        else:
            close = req.header("connection").lower() == "close" or self._tracker.closing
        if resp.stream is not None:
            await self._serve_stream(req, resp, close=close)
        else:
            body = b"" if req.method == "HEAD" else resp.body
            self.write(render_head(resp, close=close) + body)
        if not close and not req.body.at_eof:
            await req.body.drain()
        return not close

    async def _serve_stream(self, req: Request, resp: Response, *, close: bool) -> None:
        assert resp.stream is not None
        self._streaming = True
        stream = resp.stream
        try:
            self.write(render_head(resp, close=close))
            if req.method == "HEAD":
                return
            async for data in stream:
                if data:
                    self.write(chunk(data))
                    await self.drain()
            self.write(LAST_CHUNK)
        finally:
            self._streaming = False
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    async def _serve_hijack(self, req: Request, resp: Response) -> None:
        assert resp.hijack is not None
        if self._raw is None:
            self._raw = ByteStream(self._pause_reading, self._resume_reading)
            req.raw_stream = self._raw
            self._mode = _RAW
        self.write(render_hijack_head(resp.hijack_type, upgrade=req.upgrade))
        self._head_sent_at = asyncio.get_running_loop().time()
        await self.drain()
        stream = HijackedStream(self, self._raw)
        try:
            await resp.hijack(stream)
        except ClientGone:
            return
        except Exception as exc:
            log.exception("hijacked stream failed")
            # After the hijack, errors go raw onto the socket.
            self.write(f"Error: {exc}\r\n".encode())
        stream.close_write()


def _unquote_path(path: str) -> str:
    return unquote(path) if "%" in path else path
