"""A byte stream fed by the connection and read by a handler, with backpressure.

Rule: the connection `feed`s bytes as they arrive; when more than HIGH_WATER bytes wait unread
the connection stops reading from the socket, and it resumes once the reader has drained the
buffer below LOW_WATER. Memory per stream is therefore bounded whatever the upload size.
The same class carries request bodies and the raw stdin of a hijacked connection.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable

from pymoby import errdefs

HIGH_WATER = 1 << 20
LOW_WATER = 256 << 10


class BodyTooLarge(errdefs.InvalidParameter):
    """A body read with a size cap went past it."""


class ClientGone(errdefs.Cancelled):
    """The client closed the connection before the body was complete."""


class ByteStream:
    """Bytes in arrival order; `read*` wait for data, return b"" at the end."""

    def __init__(self, pause: Callable[[], None], resume: Callable[[], None]) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._pause = pause
        self._resume = resume
        self._paused = False

    # -- producer side (the connection) ---------------------------------------------------
    def feed(self, data: bytes) -> None:
        if not data or self._eof:
            return
        self._chunks.append(data)
        self._size += len(data)
        if self._size > HIGH_WATER and not self._paused:
            self._paused = True
            self._pause()
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def set_error(self, exc: BaseException) -> None:
        if not self._eof:
            self._error = exc
            self._eof = True
            self._wake()

    @property
    def at_eof(self) -> bool:
        return self._eof and not self._chunks

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        while not self._chunks and not self._eof:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter

    def _took(self, n: int) -> None:
        self._size -= n
        if self._paused and self._size < LOW_WATER:
            self._paused = False
            self._resume()

    # -- consumer side (the handler) ------------------------------------------------------
    async def readany(self) -> bytes:
        """The next piece that arrived; b"" at the end of the stream."""
        await self._wait()
        if self._chunks:
            data = self._chunks.popleft()
            self._took(len(data))
            return data
        if self._error is not None:
            raise self._error
        return b""

    async def read(self, limit: int | None = None) -> bytes:
        """Everything up to the end; BodyTooLarge when more than `limit` bytes arrive."""
        parts: list[bytes] = []
        total = 0
        while data := await self.readany():
            total += len(data)
            if limit is not None and total > limit:
                raise BodyTooLarge(f"request body is larger than {limit} bytes")
            parts.append(data)
        return b"".join(parts)

    async def drain(self) -> None:
        """Read and drop the rest, so the connection can move on."""
        while await self.readany():
            pass

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while data := await self.readany():
            yield data
