"""Stream helpers: stdcopy framing and dockerd's flushed-or-error rule."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from pymoby import errdefs
from pymoby.server.streams import STDERR, STDOUT, flushed_or_error, frame, unframe


def test_frame_roundtrip_and_split() -> None:
    assert frame(STDOUT, b"hi") == b"\x01\x00\x00\x00\x00\x00\x00\x02hi"
    big = b"x" * (70 << 10)
    frames = unframe(frame(STDERR, big))
    assert [s for s, _ in frames] == [STDERR] * 3
    assert b"".join(d for _, d in frames) == big


async def test_error_before_first_chunk_is_http_error() -> None:
    async def gen() -> AsyncIterator[bytes]:
        raise errdefs.NotFound("No such image: x")
        yield b""  # pragma: no cover

    with pytest.raises(errdefs.NotFound):
        await flushed_or_error(gen())


async def test_error_after_first_chunk_is_in_band() -> None:
    async def gen() -> AsyncIterator[bytes]:
        yield b'{"status":"one"}\r\n'
        raise errdefs.InvalidParameter("layer broken")

    resp = await flushed_or_error(gen())
    assert resp.stream is not None
    out = [chunk async for chunk in resp.stream]
    assert out[0] == b'{"status":"one"}\r\n'
    assert json.loads(out[1]) == {
        "errorDetail": {"message": "layer broken"},
        "error": "layer broken",
    }
    assert out[1].endswith(b"\r\n")
