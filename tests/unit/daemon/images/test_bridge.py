"""Loop <-> thread byte streams: bounded memory, both ends see the other's failure."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest

from pymoby.daemon.images.bridge import Inbound, Outbound, StreamAborted


async def source(n: int, size: int, consumed: list[int]) -> AsyncIterator[bytes]:
    for _ in range(n):
        consumed[0] += 1
        yield b"x" * size


async def test_inbound_is_bounded_and_complete() -> None:
    inbound = Inbound(asyncio.get_running_loop(), limit=256 << 10)
    peak = [0]
    got = bytearray()

    def reader() -> None:
        while data := inbound.read(10_000):
            peak[0] = max(peak[0], inbound._size)
            got.extend(data)

    consumed = [0]
    thread = asyncio.get_running_loop().run_in_executor(None, reader)
    await inbound.feed_from(source(200, 64 << 10, consumed))
    await thread
    assert len(got) == 200 * (64 << 10) and inbound.total == len(got)
    assert peak[0] <= (256 << 10) + (64 << 10)


async def test_inbound_reader_failure_stops_the_feeder() -> None:
    inbound = Inbound(asyncio.get_running_loop(), limit=64 << 10)
    consumed = [0]

    def reader() -> None:
        inbound.read(1000)
        inbound.fail(ValueError("bad archive"))

    thread = asyncio.get_running_loop().run_in_executor(None, reader)
    await asyncio.wait_for(inbound.feed_from(source(10_000, 64 << 10, consumed)), 5)
    await thread
    assert consumed[0] < 10


async def test_inbound_client_gone_reaches_the_reader() -> None:
    inbound = Inbound(asyncio.get_running_loop())
    errors: list[BaseException] = []

    async def broken() -> AsyncIterator[bytes]:
        yield b"abc"
        raise ConnectionResetError("client closed the connection")

    def reader() -> None:
        try:
            while inbound.read(2):
                pass
        except BaseException as exc:
            errors.append(exc)

    thread = asyncio.get_running_loop().run_in_executor(None, reader)
    with pytest.raises(ConnectionResetError):
        await inbound.feed_from(broken())
    await thread
    assert isinstance(errors[0], ConnectionResetError)


async def test_outbound_streams_and_reports_errors() -> None:
    outbound = Outbound(asyncio.get_running_loop(), limit=128 << 10)

    def writer() -> None:
        for _ in range(100):
            outbound.write(b"y" * 50_000)
        outbound.close(RuntimeError("late failure"))

    job = asyncio.get_running_loop().run_in_executor(None, writer)
    total = 0
    with pytest.raises(RuntimeError, match="late failure"):
        async for chunk in outbound:
            total += len(chunk)
    await job
    assert 0 < total <= 100 * 50_000  # what was flushed before the failure


async def test_outbound_abandoned_reader_unblocks_the_writer() -> None:
    outbound = Outbound(asyncio.get_running_loop(), limit=64 << 10)
    failed = threading.Event()

    def writer() -> None:
        try:
            while True:
                outbound.write(b"z" * 300_000)
        except StreamAborted:
            failed.set()

    job = asyncio.get_running_loop().run_in_executor(None, writer)
    it = aiter(outbound)
    await anext(it)
    outbound.abandon()
    await asyncio.wait_for(job, 5)
    assert failed.is_set()
