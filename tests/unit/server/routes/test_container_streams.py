"""Attach, logs and resize routes over a fake backend, through a real socket (hijack, chunks)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hijack_testlib import dechunk, exchange, request, serve, split

from pymoby import errdefs
from pymoby.server.backends import (
    AttachOptions,
    LogMessage,
    LogsOptions,
    LogStream,
    StdioClient,
)
from pymoby.server.routes import container_streams
from pymoby.server.routes.container_streams import format_attrs, format_timestamp
from pymoby.server.streams import STDERR, STDOUT, SYSTEMERR, unframe

T = 1_700_000_000_123_456_789


class FakeSession:
    def __init__(self, tty: bool, fail: Exception | None = None) -> None:
        self._tty = tty
        self.fail = fail

    @property
    def tty(self) -> bool:
        return self._tty

    async def run(self, client: StdioClient) -> None:
        await client.write(STDOUT, b"out ")
        await client.write(STDERR, b"err ")
        if self.fail is not None:
            raise self.fail
        got = b""
        while data := await client.read():
            got += data
        await client.write(STDOUT, b"stdin=" + got)


class FakeStreams:
    def __init__(self) -> None:
        self.attach_calls: list[tuple[str, AttachOptions]] = []
        self.logs_calls: list[tuple[str, LogsOptions]] = []
        self.resizes: list[tuple[str, int, int]] = []
        self.tty = False
        self.fail: Exception | None = None
        self.lines: list[LogMessage] = []
        self.log_error: Exception | None = None
        self.follow_closed = asyncio.Event()
        self.follow_started = asyncio.Event()

    async def attach(self, name: str, options: AttachOptions) -> FakeSession:
        if name == "missing":
            raise errdefs.NotFound("No such container: missing")
        self.attach_calls.append((name, options))
        return FakeSession(self.tty, self.fail)

    async def logs(self, name: str, options: LogsOptions) -> LogStream:
        if name == "missing":
            raise errdefs.NotFound("No such container: missing")
        self.logs_calls.append((name, options))

        async def gen() -> AsyncIterator[list[LogMessage]]:
            try:
                for m in self.lines:
                    yield [m]
                if self.log_error is not None:
                    raise self.log_error
                if options.follow:
                    self.follow_started.set()
                    await asyncio.sleep(30)
            finally:
                self.follow_closed.set()

        return LogStream(tty=self.tty, batches=gen())

    async def resize(self, name: str, height: int, width: int) -> None:
        if name == "stopped":
            raise errdefs.Conflict("container abc is not running")
        self.resizes.append((name, height, width))


@pytest.fixture
async def fake() -> FakeStreams:
    return FakeStreams()


async def test_attach_non_tty_is_framed_and_typed_by_version(fake: FakeStreams) -> None:
    async with serve(container_streams.routes(fake)) as path:
        target = "/v1.43/containers/box/attach?stream=1&stdin=1&stdout=1&stderr=0&detachKeys=ctrl-a"
        out = await exchange(path, request("POST", target, upgrade=True), b"typed")
        head, _, rest = out.partition(b"\r\n\r\n")
        assert head + b"\r\n\r\n" == (
            b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream"
            b"\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
        )
        assert unframe(rest) == [(STDOUT, b"out "), (STDERR, b"err "), (STDOUT, b"stdin=typed")]
        name, opts = fake.attach_calls[0]
        assert name == "box"
        assert opts == AttachOptions(
            stdin=True, stdout=True, stderr=False, logs=False, stream=True, detach_keys="ctrl-a"
        )
        out = await exchange(path, request("POST", "/v1.41/containers/box/attach", upgrade=True))
        assert b"Content-Type: application/vnd.docker.raw-stream\r\n" in out
        assert unframe(out.partition(b"\r\n\r\n")[2])[0] == (STDOUT, b"out ")  # still framed


async def test_attach_tty_is_raw_and_without_upgrade_answers_200(fake: FakeStreams) -> None:
    fake.tty = True
    async with serve(container_streams.routes(fake)) as path:
        out = await exchange(path, request("POST", "/containers/box/attach", upgrade=True), b"x")
        head, _, rest = out.partition(b"\r\n\r\n")
        assert b"application/vnd.docker.raw-stream" in head
        assert rest == b"out err stdin=x"
        fake.tty = False
        out = await exchange(path, request("POST", "/containers/box/attach?stream=1", close=False))
        head, _, rest = out.partition(b"\r\n\r\n")
        assert head == b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream"
        assert unframe(rest)[-1] == (STDOUT, b"stdin=")


async def test_attach_errors_before_and_after_the_hijack(fake: FakeStreams) -> None:
    async with serve(container_streams.routes(fake)) as path:
        out = await exchange(path, request("POST", "/containers/missing/attach", upgrade=True))
        status, _headers, body = split(out)
        assert status == 404
        assert json.loads(body) == {"message": "No such container: missing"}
        fake.fail = errdefs.Conflict("boom")
        out = await exchange(path, request("POST", "/v1.44/containers/box/attach", upgrade=True))
        frames = unframe(out.partition(b"\r\n\r\n")[2])
        assert frames[-1] == (STDOUT, b"Error attaching: boom\n")


def _msg(
    stream: str, line: bytes, ns: int = T, attrs: tuple[tuple[str, str], ...] = ()
) -> LogMessage:
    return LogMessage(stream, line, ns, attrs)


async def test_logs_framed_timestamps_details(fake: FakeStreams) -> None:
    fake.lines = [
        _msg("stdout", b"a\n", attrs=(("k", "v w"), ("a&b", "1"))),
        _msg("stderr", b"b\n"),
        _msg("stdout", b"partial"),
    ]
    async with serve(container_streams.routes(fake)) as path:
        target = "/v1.45/containers/box/logs?stdout=1&stderr=1&timestamps=1&details=1&tail=5"
        status, headers, body = split(await exchange(path, request("GET", target)))
        assert status == 200
        assert headers["Content-Type"] == "application/vnd.docker.multiplexed-stream"
        assert headers["Transfer-Encoding"] == "chunked"
        frames = unframe(dechunk(body))
        ts = b"2023-11-14T22:13:20.123456789Z "
        assert frames == [
            (STDOUT, ts + b"a%26b=1,k=v+w a\n"),
            (STDERR, ts + b" b\n"),
            (STDOUT, ts + b" partial"),
        ]
        opts = fake.logs_calls[0][1]
        assert (opts.stdout, opts.stderr, opts.timestamps, opts.details, opts.tail) == (
            True,
            True,
            True,
            True,
            "5",
        )
        fake.tty = True
        status, headers, body = split(
            await exchange(path, request("GET", "/containers/box/logs?stdout=1"))
        )
        assert headers["Content-Type"] == "application/vnd.docker.raw-stream"
        assert dechunk(body) == b"a\npartial"  # stderr not asked for


async def test_logs_since_until_and_errors(fake: FakeStreams) -> None:
    async with serve(container_streams.routes(fake)) as path:
        target = "/containers/box/logs?stdout=1&since=1700000000.5&until=0"
        status, _, _ = split(await exchange(path, request("GET", target)))
        assert status == 200
        opts = fake.logs_calls[-1][1]
        assert (opts.since, opts.until) == (1_700_000_000_500_000_000, None)
        status, _, body = split(await exchange(path, request("GET", "/containers/box/logs")))
        assert status == 400
        assert b"you must choose at least one stream" in body
        target = "/containers/box/logs?stdout=1&since=yesterday"
        status, _, body = split(await exchange(path, request("GET", target)))
        assert status == 400
        assert json.loads(body)["message"].startswith('invalid value for "since": ')
        status, _, body = split(
            await exchange(path, request("GET", "/containers/missing/logs?stderr=1"))
        )
        assert status == 404


async def test_logs_error_after_start_is_in_band(fake: FakeStreams) -> None:
    fake.lines = [_msg("stdout", b"x\n")]
    fake.log_error = errdefs.System("disk on fire")
    async with serve(container_streams.routes(fake)) as path:
        target = "/containers/box/logs?stdout=1"
        _, _, body = split(await exchange(path, request("GET", target)))
        assert unframe(dechunk(body)) == [
            (STDOUT, b"x\n"),
            (SYSTEMERR, b"Error grabbing logs: disk on fire\n"),
        ]


async def test_follow_stops_when_the_client_leaves(fake: FakeStreams) -> None:
    async with serve(container_streams.routes(fake)) as path:
        _reader, writer = await asyncio.open_unix_connection(path)
        writer.write(request("GET", "/containers/box/logs?stdout=1&follow=1", close=False))
        await writer.drain()
        await asyncio.wait_for(fake.follow_started.wait(), 5)
        writer.close()
        await asyncio.wait_for(fake.follow_closed.wait(), 2)


async def test_resize(fake: FakeStreams) -> None:
    async with serve(container_streams.routes(fake)) as path:
        out = await exchange(path, request("POST", "/containers/box/resize?h=40&w=120"))
        status, headers, body = split(out)
        assert (status, body, headers["Content-Length"]) == (200, b"", "0")
        assert fake.resizes == [("box", 40, 120)]
        for query, message in [
            ("h=x&w=1", 'invalid resize height "x": invalid syntax'),
            ("h=1", 'invalid resize width "": invalid syntax'),
            ("h=-1&w=1", 'invalid resize height "-1": value out of range'),
            ("h=1&w=4294967296", 'invalid resize width "4294967296": value out of range'),
        ]:
            out = await exchange(path, request("POST", f"/containers/box/resize?{query}"))
            status, _, body = split(out)
            assert (status, json.loads(body)["message"]) == (400, message)
        status, _, _ = split(
            await exchange(path, request("POST", "/containers/stopped/resize?h=1&w=1"))
        )
        assert status == 409


def test_formatting() -> None:
    assert format_timestamp(0) == "1970-01-01T00:00:00.000000000Z"
    assert format_timestamp(T) == "2023-11-14T22:13:20.123456789Z"
    assert format_attrs((("b", "2"), ("a", "x=y"))) == b"a=x%3Dy,b=2"
    assert format_attrs(()) == b""
