"""A connection taken over by attach or exec: raw bytes both ways after the hijack head.

Rules (each has bitten a prototype, see DESIGN.md "HTTP stack"):
- The head is flushed on its own, and the first output frame waits a moment after it, because
  docker-py reads the head through a buffered reader and would swallow output sent with it.
- stdin EOF (the client half-closes) is `read() == b""`; output keeps flowing after it.
- At the end the server half-closes its side (`close_write`), then closes.
- Non-TTY output at API >= 1.42 is announced as multiplexed; framing is stdcopy (streams.py).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from pymoby.api.versions import ApiVersion
from pymoby.server.body import ByteStream, ClientGone

RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"

# Delay between the hijack head and the first output bytes (see the module docstring).
FIRST_OUTPUT_DELAY = 0.005


def stream_content_type(version: ApiVersion, *, tty: bool) -> str:
    """Content type of a hijacked stream: multiplexed only for non-TTY at API >= 1.42."""
    if not tty and version >= ApiVersion(1, 42):
        return MULTIPLEXED_STREAM
    return RAW_STREAM


class RawConnection(Protocol):
    """What the hijacked stream needs from the connection that owns the socket."""

    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def write_eof(self) -> None: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def head_sent_at(self) -> float: ...


class HijackedStream:
    """stdin from the client (`read`) and output to it (`write`), both raw."""

    def __init__(self, conn: RawConnection, stdin: ByteStream) -> None:
        self._conn = conn
        self._stdin = stdin
        self._first = True

    async def read(self) -> bytes:
        """The next stdin bytes; b"" once the client closed its write side or left."""
        try:
            return await self._stdin.readany()
        except ClientGone:
            return b""

    async def write(self, data: bytes) -> None:
        """Send output; waits while the client is slow; ClientGone once it has left."""
        if self._conn.closed:
            raise ClientGone("client disconnected")
        if self._first:
            self._first = False
            loop = asyncio.get_running_loop()
            wait = self._conn.head_sent_at + FIRST_OUTPUT_DELAY - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
        self._conn.write(data)
        await self._conn.drain()

    def close_write(self) -> None:
        """Half-close: the client sees EOF on its read side; it may still send."""
        if not self._conn.closed:
            self._conn.write_eof()

    @property
    def closed(self) -> bool:
        return self._conn.closed
