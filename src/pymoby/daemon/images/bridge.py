"""Byte streams between the event loop and a worker thread, bounded in both directions.

Rule: tar and disk work runs in a thread; request bodies arrive on the event loop and response
bodies leave from it. `Inbound` carries bytes loop -> thread (a blocking `read(n)` for the
thread, `feed_from(async iterator)` on the loop); `Outbound` carries bytes thread -> loop (a
blocking `write` for the thread, `async for` on the loop). Each holds at most `limit` bytes, so
a 2 GiB upload or download costs a few MiB of memory whatever the speeds. Either side can fail
the stream (`fail`); the other side then raises that error instead of waiting forever, and a
closed stream refuses further data. The loop never blocks: it waits on futures that the thread
resolves with `call_soon_threadsafe`. `run_in_thread` gives each such job a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from pymoby import errdefs

T = TypeVar("T")

DEFAULT_LIMIT = 4 << 20


class StreamAborted(errdefs.Cancelled):
    """The other side of the stream stopped (client gone, worker failed)."""


class Inbound:
    """Bytes fed on the event loop, read by one worker thread as a file (`read(n)`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int = DEFAULT_LIMIT) -> None:
        self._loop = loop
        self._limit = limit
        self._cond = threading.Condition()
        self._chunks: deque[bytes] = deque()
        self._head = memoryview(b"")
        self._size = 0
        self._eof = False
        self._error: BaseException | None = None
        self._space: asyncio.Future[None] | None = None
        self.total = 0

    # -- loop side -----------------------------------------------------------------------
    async def feed_from(self, source: AsyncIterator[bytes]) -> None:
        """Copy `source` in (waiting while `limit` bytes are unread), then mark the end.

        An error of `source` (the client left) fails the stream for the reader. When the
        reader failed, the rest of `source` is not read.
        """
        try:
            async for data in source:
                if not await self._put(data):
                    return
        except BaseException as exc:
            self.fail(exc if isinstance(exc, Exception) else StreamAborted("upload cancelled"))
            raise
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    async def _put(self, data: bytes) -> bool:
        while True:
            with self._cond:
                if self._error is not None:
                    return False
                if self._size < self._limit or not self._chunks:
                    self._chunks.append(data)
                    self._size += len(data)
                    self.total += len(data)
                    self._cond.notify_all()
                    return True
                self._space = self._loop.create_future()
                space = self._space
            await space

    def fail(self, exc: BaseException) -> None:
        """Stop the stream: the reader raises `exc`, the feeder stops."""
        with self._cond:
            if self._error is None:
                self._error = exc
            self._chunks.clear()
            self._head = memoryview(b"")
            self._size = 0
            self._cond.notify_all()
            self._wake_feeder()

    def _wake_feeder(self) -> None:
        space, self._space = self._space, None
        if space is not None:
            self._loop.call_soon_threadsafe(_resolve, space)

    # -- thread side ---------------------------------------------------------------------
    def read(self, n: int = -1, /) -> bytes:
        """Up to `n` bytes (all that is left for n < 0); b"" at the end; blocks."""
        if n is None or n < 0:
            parts = []
            while data := self.read(1 << 20):
                parts.append(data)
            return b"".join(parts)
        with self._cond:
            while not self._head:
                if self._error is not None:
                    raise self._error
                if self._chunks:
                    self._head = memoryview(self._chunks.popleft())
                    break
                if self._eof:
                    return b""
                self._cond.wait()
            if self._error is not None:
                raise self._error
            out = self._head[:n]
            self._head = self._head[n:]
            self._size -= len(out)
            if self._size < self._limit:
                self._wake_feeder()
            return bytes(out)


class Outbound:
    """Bytes written by one worker thread (`write`), read on the event loop (`async for`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int = DEFAULT_LIMIT) -> None:
        self._loop = loop
        self._limit = limit
        self._cond = threading.Condition()
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._closed = False
        self._error: BaseException | None = None
        self._reader_gone = False
        self._data: asyncio.Future[None] | None = None
        self._pending = bytearray()

    # -- thread side ---------------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Queue `data` (batched to ~256 KiB pieces); blocks while `limit` bytes wait."""
        self._pending += data
        if len(self._pending) >= 256 << 10:
            self._push(bytes(self._pending))
            self._pending.clear()
        return len(data)

    def flush(self) -> None:
        if self._pending:
            self._push(bytes(self._pending))
            self._pending.clear()

    def _push(self, data: bytes) -> None:
        with self._cond:
            while self._size >= self._limit and not self._reader_gone:
                self._cond.wait()
            if self._reader_gone:
                raise StreamAborted("the client stopped reading")
            self._chunks.append(data)
            self._size += len(data)
            self._wake_reader()

    def close(self, error: BaseException | None = None) -> None:
        """The end of the stream (with `error`, the reader raises it after the data)."""
        if error is None:
            with contextlib.suppress(StreamAborted):
                self.flush()
        with self._cond:
            self._closed = True
            self._error = error
            self._wake_reader()

    def _wake_reader(self) -> None:
        data, self._data = self._data, None
        if data is not None:
            self._loop.call_soon_threadsafe(_resolve, data)

    # -- loop side -----------------------------------------------------------------------
    def abandon(self) -> None:
        """The reader leaves: a blocked or later `write` raises StreamAborted."""
        with self._cond:
            self._reader_gone = True
            self._chunks.clear()
            self._size = 0
            self._cond.notify_all()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            with self._cond:
                if self._chunks:
                    data = self._chunks.popleft()
                    self._size -= len(data)
                    self._cond.notify_all()
                elif self._closed:
                    if self._error is not None:
                        raise self._error
                    return
                else:
                    data = b""
                    self._data = self._loop.create_future()
                    waiter = self._data
            if data:
                yield data
            else:
                await waiter


def run_in_thread(fn: Callable[[], T], name: str) -> asyncio.Future[T]:
    """Run `fn` in a thread of its own (long jobs must not occupy the shared pool that
    `asyncio.to_thread` uses); the future resolves on the calling loop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: object) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)  # type: ignore[arg-type]
        else:
            future.set_exception(value)  # type: ignore[arg-type]

    def main() -> None:
        try:
            value: object = fn()
            ok = True
        except BaseException as exc:  # handed to the awaiting coroutine
            value, ok = exc, False
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(settle, ok, value)

    threading.Thread(target=main, name=name, daemon=True).start()
    return future


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
