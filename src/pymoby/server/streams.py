"""Stream encodings: stdcopy frames, JSON lines, progress streams with in-band errors.

Rules:
- stdcopy: an 8-byte header (stream id: 0 stdin, 1 stdout, 2 stderr, 3 systemerr; three zero
  bytes; big-endian uint32 payload length) before each payload; one frame per write.
- JSON lines: one compact object per line, newline-terminated, flushed as it is produced.
- A stream ends within milliseconds of the client leaving: the connection cancels the task
  that iterates it (http.py), which closes the producer.
- Progress streams follow dockerd's "flushed" rule (`flushed_or_error`): an error before the
  first byte is an HTTP error, after it an in-band error line.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import AsyncIterator
from typing import Any

from pymoby import errdefs
from pymoby.api.types import progress
from pymoby.server.response import Response, encode_json, stream_response

log = logging.getLogger("pymoby.server")

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3
_HEADER = struct.Struct(">BxxxL")
MAX_FRAME = 32 << 10


def frame(stream: int, data: bytes) -> bytes:
    """Frame `data` for `stream`; large payloads become several frames, as dockerd sends."""
    if len(data) <= MAX_FRAME:
        return _HEADER.pack(stream, len(data)) + data
    return b"".join(
        _HEADER.pack(stream, len(part)) + part
        for part in (data[i : i + MAX_FRAME] for i in range(0, len(data), MAX_FRAME))
    )


def unframe(buf: bytes) -> list[tuple[int, bytes]]:
    """Split a buffer of whole frames (for tests and clients of our own)."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos + _HEADER.size <= len(buf):
        stream, size = _HEADER.unpack_from(buf, pos)
        pos += _HEADER.size
        out.append((stream, buf[pos : pos + size]))
        pos += size
    return out


async def json_lines(items: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    """Encode each item as one JSON line."""
    async for item in items:
        yield encode_json(item)


async def flushed_or_error(
    chunks: AsyncIterator[bytes], content_type: str = "application/json"
) -> Response:
    """dockerd's `output.Flushed()` rule for progress streams (pull, load, import, save).

    The producer runs until its first chunk before the head is sent: an error before that is an
    ordinary HTTP error (status from the error table); an error after it is written in-band as
    a progress error line, since the status line is already on the wire.
    """
    it = aiter(chunks)
    try:
        first = await anext(it)
    except StopAsyncIteration:
        first = b""

    async def rest() -> AsyncIterator[bytes]:
        try:
            if first:
                yield first
            async for data in it:
                yield data
        except Exception as exc:  # in-band: the head has been sent
            log.warning("stream failed after its start: %s", exc)
            message = exc.message if isinstance(exc, errdefs.PymobyError) else str(exc)
            yield progress.error(message)

    return stream_response(rest(), content_type)
