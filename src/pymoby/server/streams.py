"""Stream encodings: stdcopy frames for multiplexed output, JSON lines, stream races.

Rules:
- stdcopy: an 8-byte header (stream id: 0 stdin, 1 stdout, 2 stderr, 3 systemerr; three zero
  bytes; big-endian uint32 payload length) before each payload; one frame per write.
- JSON lines: one compact object per line, newline-terminated, flushed as it is produced.
- A stream ends within milliseconds of the client leaving: the connection cancels the task
  that iterates it (http.py), which closes the producer.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from typing import Any

from pymoby.server.response import encode_json

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
