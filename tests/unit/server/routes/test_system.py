"""System routes over in-memory backends: encoding per version, events streaming, bad input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Collection

import pytest

from pymoby import errdefs
from pymoby.api.filters import Filters
from pymoby.api.types.events import Actor, Message
from pymoby.api.types.system import DiskUsage, Info, PlatformInfo, Version
from pymoby.api.versions import MAX, MIN, ApiVersion
from pymoby.server.body import ByteStream
from pymoby.server.middleware import ServerInfo, build_app
from pymoby.server.request import Request
from pymoby.server.response import Response
from pymoby.server.router import Router
from pymoby.server.routes import system


class FakeSystem:
    def __init__(self) -> None:
        self.df_calls: list[tuple[list[str], ApiVersion]] = []

    async def version(self) -> Version:
        return Version(
            platform=PlatformInfo(name="test"),
            version="0.0.1",
            api_version="1.52",
            os="linux",
            arch="amd64",
        )

    async def info(self) -> Info:
        raise errdefs.Unavailable("info is not ready")

    async def disk_usage(self, types: Collection[str], api: ApiVersion) -> DiskUsage:
        self.df_calls.append((list(types), api))
        if "bogus" in types:
            raise errdefs.InvalidParameter("unknown object type: bogus")
        return DiskUsage()


class FakeEvents:
    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages
        self.calls: list[tuple[Filters, int | None, int | None]] = []
        self.closed = False

    def subscribe(
        self, filters: Filters, since: int | None, until: int | None
    ) -> AsyncIterator[Message]:
        self.calls.append((filters, since, until))

        async def gen() -> AsyncIterator[Message]:
            try:
                for msg in self.messages:
                    yield msg
            finally:
                self.closed = True

        return gen()


def _msg(action: str) -> Message:
    return Message(
        type="daemon",
        action=action,
        actor=Actor(id="e", attributes={}),
        scope="local",
        time=1,
        time_nano=1_000_000_000,
    )


def _app(sysb: FakeSystem, ev: FakeEvents):  # type: ignore[no-untyped-def]
    info = ServerInfo("0.1.0", MIN, MAX, experimental=lambda: False, debug=lambda: False)
    return build_app(Router(system.routes(sysb, ev)), info)


def _req(method: str, target: str, headers: dict[str, str] | None = None) -> Request:
    path, _, query = target.partition("?")
    body = ByteStream(lambda: None, lambda: None)
    body.feed_eof()
    return Request(method, path, query, headers or {}, body)


async def _collect(resp: Response) -> bytes:
    assert resp.stream is not None
    return b"".join([chunk async for chunk in resp.stream])


async def test_ping_head_sets_explicit_length() -> None:
    app = _app(FakeSystem(), FakeEvents([]))
    resp = await app(_req("HEAD", "/_ping"))
    assert resp.headers["Content-Length"] == "0"
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    resp = await app(_req("GET", "/v1.24/_ping"))
    assert resp.body == b"OK"
    assert resp.headers["Builder-Version"] == "1"
    assert resp.headers["Swarm"] == "inactive"


async def test_version_encodes_json_with_newline() -> None:
    resp = await _app(FakeSystem(), FakeEvents([]))(_req("GET", "/version"))
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.body.endswith(b"\n")
    assert json.loads(resp.body)["Version"] == "0.0.1"


async def test_backend_errors_map_to_status() -> None:
    resp = await _app(FakeSystem(), FakeEvents([]))(_req("GET", "/info"))
    assert resp.status == 503
    assert json.loads(resp.body) == {"message": "info is not ready"}


async def test_df_passes_types_and_version() -> None:
    fake = FakeSystem()
    app = _app(fake, FakeEvents([]))
    resp = await app(_req("GET", "/v1.44/system/df?type=image&type=container"))
    assert resp.status == 200
    assert fake.df_calls == [(["image", "container"], ApiVersion(1, 44))]
    resp = await app(_req("GET", "/system/df?type=bogus"))
    assert resp.status == 400


@pytest.mark.parametrize(
    "version,ctype", [("1.41", "application/json"), ("1.52", "application/jsonl")]
)
async def test_events_stream_per_version(version: str, ctype: str) -> None:
    events = FakeEvents([_msg("reload"), _msg("reload")])
    resp = await _app(FakeSystem(), events)(
        _req(
            "GET",
            f"/v{version}/events?since=10&until=20&filters=%7B%22type%22%3A%5B%22daemon%22%5D%7D",
        )
    )
    assert resp.headers["Content-Type"] == ctype
    lines = (await _collect(resp)).decode().splitlines()
    assert [json.loads(line)["Action"] for line in lines] == ["reload", "reload"]
    filters, since, until = events.calls[0]
    assert filters.get("type") == ["daemon"]
    assert (since, until) == (10 * 10**9, 20 * 10**9)
    assert events.closed


async def test_events_bad_input_is_400() -> None:
    app = _app(FakeSystem(), FakeEvents([]))
    for target in ("/events?since=abc", "/events?filters=%7Bx", "/events?since=20&until=10"):
        resp = await app(_req("GET", target))
        assert resp.status == 400, target
        assert json.loads(resp.body)["message"]


async def test_events_end_when_client_leaves() -> None:
    """A stream with no events ends as soon as the consuming task is cancelled."""

    class Forever(FakeEvents):
        def subscribe(
            self, filters: Filters, since: int | None, until: int | None
        ) -> AsyncIterator[Message]:
            async def gen() -> AsyncIterator[Message]:
                try:
                    await asyncio.sleep(3600)
                    yield _msg("never")
                finally:
                    self.closed = True

            return gen()

    events = Forever([])
    resp = await _app(FakeSystem(), events)(_req("GET", "/events"))
    task = asyncio.ensure_future(_collect(resp))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events.closed
