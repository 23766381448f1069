"""Container stream routes: POST /containers/{id}/attach, GET .../logs, POST .../resize.

Rules (dockerd's postContainersAttach, getContainersLogs, postContainersResize):
- Everything that can fail is checked before the stream starts (container, detach keys, query
  values), so those failures are ordinary HTTP errors.
- Attach: a non-TTY container's output is always stdcopy-framed; the content type says
  multiplexed only with Upgrade headers at API >= 1.42 (the no-Upgrade form answers 200 with
  raw-stream). A failure after the hijack is written in-band: `Error attaching: <err>\\n`.
- Logs: the head goes out before the first line; non-TTY lines are framed (stdout 1, stderr 2),
  TTY lines are raw. `timestamps` prefixes RFC 3339 with nanoseconds padded to 9 digits in UTC,
  `details` prefixes the attributes (`k=v,k2=v2` query-escaped, sorted) and a space. An error
  while streaming becomes `Error grabbing logs: <err>\\n` on the system-error stream (3).
- Resize: `h` and `w` are uint32 (empty is an error, as dockerd's Uint32Value).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from urllib.parse import quote_plus

from pymoby import errdefs
from pymoby.api.timestamps import parse_unix_timestamp
from pymoby.server.backends import (
    AttachOptions,
    ContainerStreamsBackend,
    LogMessage,
    LogsOptions,
    StdioClient,
)
from pymoby.server.body import ClientGone
from pymoby.server.hijack import RAW_STREAM, HijackedStream, stream_content_type
from pymoby.server.request import Request
from pymoby.server.response import Response, empty_response, hijack_response, stream_response
from pymoby.server.router import Route
from pymoby.server.streams import STDERR, STDOUT, SYSTEMERR, frame

log = logging.getLogger("pymoby.server")

_UINT32_MAX = 0xFFFFFFFF


class HijackedClient:
    """StdioClient over a hijacked connection; frames output when `multiplexed`."""

    def __init__(
        self,
        stream: HijackedStream,
        *,
        multiplexed: bool,
        disconnected: asyncio.Future[None] | None,
    ) -> None:
        self._stream = stream
        self._mux = multiplexed
        self._gone = disconnected

    async def read(self) -> bytes:
        return await self._stream.read()

    async def write(self, stream: int, data: bytes) -> None:
        if data:
            await self._stream.write(frame(stream, data) if self._mux else data)

    async def wait_closed(self) -> None:
        if self._gone is None:
            await asyncio.Event().wait()  # no connection to watch: never
        else:
            await asyncio.shield(self._gone)


def hijacked_client(stream: HijackedStream, req: Request, *, multiplexed: bool) -> StdioClient:
    return HijackedClient(stream, multiplexed=multiplexed, disconnected=req.disconnected)


def uint32_param(req: Request, name: str, what: str) -> int:
    """dockerd's Uint32Value with the resize routes' wrapping of its error."""
    raw = req.value(name)
    text = raw.removeprefix("-")
    negative = text != raw
    reason = ""
    if text == "" or not text.isdigit() or not text.isascii():
        reason = "invalid syntax"
    elif negative or int(text) > _UINT32_MAX:
        reason = "value out of range"
    if reason:
        raise errdefs.InvalidParameter(f'invalid resize {what} "{raw}": {reason}')
    return int(text)


def _time_param(req: Request, name: str, *, zero_is_unset: bool = False) -> int | None:
    value = req.value(name)
    if value == "" or (zero_is_unset and value == "0"):
        return None
    try:
        return parse_unix_timestamp(value)
    except errdefs.InvalidParameter as exc:
        raise errdefs.InvalidParameter(f'invalid value for "{name}": {exc.message}') from None


_last_second: list[tuple[int, str]] = [(-1, "")]  # lines come in bursts within one second


def format_timestamp(ns: int) -> str:
    """Go's `2006-01-02T15:04:05.000000000Z07:00` of a UTC time."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    cached, text = _last_second[0]
    if cached != seconds:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _last_second[0] = (seconds, text)
    return f"{text}.{nanos:09d}Z"


def format_attrs(attrs: tuple[tuple[str, str], ...]) -> bytes:
    """dockerd's attrsByteSlice: `k=v` pairs sorted by key, query-escaped, comma-separated."""
    pairs = sorted(attrs, key=lambda kv: kv[0])
    return ",".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in pairs).encode()


def format_line(msg: LogMessage, options: LogsOptions) -> bytes:
    line = msg.line
    if options.details:
        line = format_attrs(msg.attrs) + b" " + line
    if options.timestamps:
        line = format_timestamp(msg.time_ns).encode() + b" " + line
    return line


def routes(backend: ContainerStreamsBackend) -> list[Route]:
    async def attach(req: Request) -> Response:
        name = req.params["name"]
        options = AttachOptions(
            stdin=req.bool_value("stdin"),
            stdout=req.bool_value("stdout"),
            stderr=req.bool_value("stderr"),
            logs=req.bool_value("logs"),
            stream=req.bool_value("stream"),
            detach_keys=req.value("detachKeys"),
        )
        session = await backend.attach(name, options)
        multiplexed = not session.tty
        ctype = stream_content_type(req.version, tty=session.tty) if req.upgrade else RAW_STREAM

        async def run(stream: HijackedStream) -> None:
            client = hijacked_client(stream, req, multiplexed=multiplexed)
            try:
                await session.run(client)
            except ClientGone:
                raise
            except errdefs.PymobyError as exc:
                log.error("Handler for POST /containers/%s/attach returned error: %s", name, exc)
                await client.write(STDOUT, f"Error attaching: {exc.message}\n".encode())

        return hijack_response(run, ctype)

    async def logs(req: Request) -> Response:
        stdout, stderr = req.bool_value("stdout"), req.bool_value("stderr")
        if not stdout and not stderr:
            raise errdefs.InvalidParameter("Bad parameters: you must choose at least one stream")
        options = LogsOptions(
            stdout=stdout,
            stderr=stderr,
            follow=req.bool_value("follow"),
            timestamps=req.bool_value("timestamps"),
            details=req.bool_value("details"),
            since=_time_param(req, "since"),
            until=_time_param(req, "until", zero_is_unset=True),
            tail=req.value("tail"),
        )
        result = await backend.logs(req.params["name"], options)
        mux = not result.tty
        ctype = stream_content_type(req.version, tty=result.tty)

        async def body() -> AsyncIterator[bytes]:
            batches = result.batches
            wanted = {"stdout": STDOUT if stdout else 0, "stderr": STDERR if stderr else 0}
            try:
                async for batch in batches:
                    out: list[bytes] = []
                    for msg in batch:
                        number = wanted.get(msg.stream, 0)
                        if number:
                            line = format_line(msg, options)
                            out.append(frame(number, line) if mux else line)
                    if out:
                        yield b"".join(out)
            except errdefs.PymobyError as exc:
                text = f"Error grabbing logs: {exc.message}\n".encode()
                yield frame(SYSTEMERR, text) if mux else text
            finally:
                aclose = getattr(batches, "aclose", None)
                if aclose is not None:
                    await aclose()

        return stream_response(body(), ctype)

    async def resize(req: Request) -> Response:
        height = uint32_param(req, "h", "height")
        width = uint32_param(req, "w", "width")
        await backend.resize(req.params["name"], height, width)
        return empty_response(200)

    return [
        Route("POST", "/containers/{name:.*}/attach", attach),
        Route("GET", "/containers/{name:.*}/logs", logs),
        Route("POST", "/containers/{name:.*}/resize", resize),
    ]
