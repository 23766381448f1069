"""What a handler returns, and how its head is written, byte-compatible with dockerd's Go server.

Rule: a handler returns one `Response`: a fixed body, a chunked stream, or a hijack. Headers a
handler sets explicitly are written sorted by name (Go's `Header.Write` order), followed by the
ones the server adds itself: `Date`, then `Content-Length` or `Transfer-Encoding: chunked`,
then a detected `Content-Type`. JSON bodies end with a newline, as Go's `json.Encoder` writes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from pymoby.server.hijack import HijackedStream

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"

HijackHandler = Callable[["HijackedStream"], Awaitable[None]]

_encoder = msgspec.json.Encoder()


@dataclass(slots=True)
class Response:
    """One answer. Exactly one of `body`, `stream`, `hijack` carries the payload."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # Content type the server adds after Content-Length when the handler set none (Go sniffs).
    detected_type: str | None = None
    stream: AsyncIterator[bytes] | None = None
    hijack: HijackHandler | None = None
    # Content type of a hijacked stream (raw-stream or multiplexed-stream).
    hijack_type: str = "application/vnd.docker.raw-stream"

    def set_header(self, name: str, value: str) -> None:
        self.headers[name] = value


def encode_json(obj: Any) -> bytes:
    """JSON as dockerd writes it: compact, HTML not escaped, newline at the end."""
    return _encoder.encode(obj) + b"\n"


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(status=status, headers={"Content-Type": JSON}, body=encode_json(obj))


def raw_json_response(encoded: bytes, status: int = 200) -> Response:
    """A body already encoded as JSON (by a per-version encoder); adds the final newline."""
    return Response(status=status, headers={"Content-Type": JSON}, body=encoded + b"\n")


def error_response(status: int, message: str) -> Response:
    return json_response({"message": message}, status)


def text_response(text: str, status: int = 200) -> Response:
    return Response(status=status, body=text.encode(), detected_type=TEXT)


def empty_response(status: int = 204) -> Response:
    return Response(status=status)


def stream_response(
    chunks: AsyncIterator[bytes], content_type: str = JSON, status: int = 200
) -> Response:
    return Response(status=status, headers={"Content-Type": content_type}, stream=chunks)


def hijack_response(handler: HijackHandler, content_type: str) -> Response:
    return Response(status=101, hijack=handler, hijack_type=content_type)


class _DateCache:
    """The `Date` header value, formatted at most once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._value = formatdate(second, usegmt=True)
        return self._value


_date = _DateCache()


def _status_line(status: int) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "status code " + str(status)
    return f"HTTP/1.1 {status} {phrase}\r\n"


def _no_body_status(status: int) -> bool:
    return 100 <= status < 200 or status in (204, 304)


def render_head(resp: Response, *, close: bool) -> bytes:
    """Status line and headers of a fixed-body or chunked response."""
    lines = [_status_line(resp.status)]
    explicit = {k.lower() for k in resp.headers}
    lines.extend(f"{name}: {resp.headers[name]}\r\n" for name in sorted(resp.headers))
    if close:
        lines.append("Connection: close\r\n")
    lines.append(f"Date: {_date.now()}\r\n")
    if not _no_body_status(resp.status):
        if resp.stream is not None:
            lines.append("Transfer-Encoding: chunked\r\n")
        elif "content-length" not in explicit:
            lines.append(f"Content-Length: {len(resp.body)}\r\n")
        if resp.detected_type and "content-type" not in explicit:
            lines.append(f"Content-Type: {resp.detected_type}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def render_hijack_head(content_type: str, *, upgrade: bool) -> bytes:
    """The head dockerd writes itself before a hijacked stream (no other headers)."""
    if upgrade:
        return (
            "HTTP/1.1 101 UPGRADED\r\n"
            f"Content-Type: {content_type}\r\n"
            "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
        ).encode("latin-1")
    return f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n\r\n".encode("latin-1")


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
