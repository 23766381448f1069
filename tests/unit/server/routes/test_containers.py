"""Container routes over a recording fake backend: parameters, version rules, wait streaming."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Sequence
from typing import Any

import pytest

from pymoby import errdefs
from pymoby.api.filters import Filters
from pymoby.api.types.container_responses import ContainerInspect, ContainerSummary
from pymoby.api.types.containers import Config, EndpointSettings, HostConfig
from pymoby.api.types.images import Platform
from pymoby.api.versions import MAX, MIN
from pymoby.server.body import ByteStream
from pymoby.server.middleware import ServerInfo, build_app
from pymoby.server.request import Request
from pymoby.server.response import Response
from pymoby.server.router import Router
from pymoby.server.routes import containers


class FakeBackend:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.created: tuple[str, Config, HostConfig, dict[str, Any], Platform | None] | None = None
        self.waiter: asyncio.Future[tuple[int, str]] | None = None

    async def create(
        self,
        name: str,
        config: Config,
        host_config: HostConfig,
        endpoints: dict[str, EndpointSettings | None],
        platform: Platform | None,
    ) -> tuple[str, list[str]]:
        self.created = (name, config, host_config, endpoints, platform)
        return "c" * 64, []

    async def start_container(self, name: str) -> None:
        self.calls.append(("start", name))

    async def stop(self, name: str, signal: str, seconds: int | None) -> None:
        self.calls.append(("stop", name, signal, seconds))
        if name == "stopped":
            raise errdefs.NotModified("container is already stopped")

    async def kill(self, name: str, signal: str) -> None:
        self.calls.append(("kill", name, signal))

    async def restart(self, name: str, signal: str, seconds: int | None) -> None:
        self.calls.append(("restart", name, signal, seconds))

    async def pause(self, name: str) -> None:
        self.calls.append(("pause", name))

    async def unpause(self, name: str) -> None:
        self.calls.append(("unpause", name))

    async def wait(self, name: str, condition: str) -> Awaitable[tuple[int, str]]:
        self.calls.append(("wait", name, condition))
        if name == "nope":
            raise errdefs.NotFound("No such container: nope")
        self.waiter = asyncio.get_running_loop().create_future()
        return self.waiter

    async def remove(self, name: str, *, force: bool, volumes: bool, link: bool) -> None:
        self.calls.append(("remove", name, force, volumes, link))

    async def containers(
        self, filters: Filters, *, all: bool, limit: int, size: bool
    ) -> Sequence[ContainerSummary]:
        self.calls.append(("list", filters.get("status"), all, limit, size))
        return []

    async def inspect(self, name: str, *, size: bool) -> ContainerInspect:
        raise errdefs.NotFound(f"No such container: {name}")

    async def rename(self, name: str, new_name: str) -> None:
        self.calls.append(("rename", name, new_name))


def _app(backend: FakeBackend):  # type: ignore[no-untyped-def]
    info = ServerInfo("0.1.0", MIN, MAX, experimental=lambda: False, debug=lambda: False)
    return build_app(Router(containers.routes(backend)), info)


def _req(method: str, target: str, body: bytes = b"", ctype: str = "application/json") -> Request:
    path, _, query = target.partition("?")
    stream = ByteStream(lambda: None, lambda: None)
    if body:
        stream.feed(body)
    stream.feed_eof()
    headers = {"content-type": ctype} if body else {}
    return Request(method, path, query, headers, stream, content_length=len(body))


async def _collect(resp: Response) -> bytes:
    assert resp.stream is not None
    return b"".join([chunk async for chunk in resp.stream])


async def test_create_passes_the_request_and_applies_defaults() -> None:
    backend = FakeBackend()
    body = json.dumps(
        {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"PidsLimit": -1}}
    ).encode()
    resp = await _app(backend)(_req("POST", "/v1.52/containers/create?name=web", body))
    assert resp.status == 201
    assert json.loads(resp.body) == {"Id": "c" * 64, "Warnings": []}
    assert backend.created is not None
    name, config, hc, endpoints, platform = backend.created
    assert name == "web" and config.image == "busybox" and config.cmd == ["true"]
    assert hc.network_mode == "bridge" and hc.pids_limit is None
    assert endpoints == {} and platform is None


async def test_create_version_rules() -> None:
    backend = FakeBackend()
    app = _app(backend)
    body = json.dumps(
        {
            "Image": "busybox",
            "HostConfig": {"NetworkMode": "none", "Annotations": {"a": "b"}},
        }
    ).encode()
    await app(_req("POST", "/v1.39/containers/create", body))
    assert backend.created is not None
    assert backend.created[2].ipc_mode == "shareable" and backend.created[2].annotations is None
    mac = json.dumps({"Image": "b", "MacAddress": "02:42:ac:11:00:02"}).encode()
    resp = await app(_req("POST", "/v1.52/containers/create", mac))
    assert resp.status == 400
    assert "container-wide MAC address no longer supported" in json.loads(resp.body)["message"]
    resp = await app(_req("POST", "/v1.44/containers/create", mac))
    assert resp.status == 201
    assert "MacAddress field is now deprecated" in json.loads(resp.body)["Warnings"][0]
    ports = json.dumps({"Image": "b", "HostConfig": {"PortBindings": {"80/tcp": []}}}).encode()
    resp = await app(_req("POST", "/v1.52/containers/create", ports))
    assert "empty list of port-bindings: 80/tcp" in json.loads(resp.body)["Warnings"][0]
    resp = await app(_req("POST", "/v1.52/containers/create?platform=linux/arm64", ports))
    assert backend.created[4] == Platform(os="linux", architecture="arm64")


async def test_create_bad_bodies() -> None:
    app = _app(FakeBackend())
    resp = await app(_req("POST", "/containers/create", b"{}"))
    assert json.loads(resp.body)["message"] == (
        "config cannot be empty in order to create a container"
    )
    resp = await app(_req("POST", "/containers/create", b'{"Image":"x"}', ctype="text/plain"))
    assert resp.status == 400


async def test_life_cycle_parameters() -> None:
    backend = FakeBackend()
    app = _app(backend)
    for target in (
        "/containers/web/start",
        "/v1.41/containers/web/stop?t=5&signal=INT",
        "/v1.42/containers/web/stop?t=5&signal=INT",
        "/containers/web/kill?signal=USR1",
        "/containers/web/restart",
        "/containers/web/pause",
        "/containers/web/unpause",
        "/containers/web/rename?name=new",
    ):
        resp = await app(_req("POST", target))
        assert resp.status == 204, target
    resp = await app(_req("DELETE", "/containers/web?force=1&v=1"))
    assert resp.status == 204
    assert backend.calls == [
        ("start", "web"),
        ("stop", "web", "", 5),
        ("stop", "web", "INT", 5),
        ("kill", "web", "USR1"),
        ("restart", "web", "", None),
        ("pause", "web"),
        ("unpause", "web"),
        ("rename", "web", "new"),
        ("remove", "web", True, True, False),
    ]
    resp = await app(_req("POST", "/containers/web/stop?t=abc"))
    assert resp.status == 400
    assert json.loads(resp.body)["message"] == 'strconv.Atoi: parsing "abc": invalid syntax'
    resp = await app(_req("POST", "/containers/stopped/stop"))
    assert resp.status == 304 and resp.body == b""
    resp = await app(_req("POST", "/containers/web/start", b'{"Binds":["/a:/b"]}'))
    assert resp.status == 400 and b"removed in v1.24" in resp.body


async def test_wait_flushes_the_head_then_the_result() -> None:
    backend = FakeBackend()
    app = _app(backend)
    resp = await app(_req("POST", "/containers/web/wait?condition=next-exit"))
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
    assert resp.stream is not None
    body = asyncio.ensure_future(_collect(resp))
    await asyncio.sleep(0.01)
    assert not body.done()
    assert backend.waiter is not None
    backend.waiter.set_result((3, ""))
    assert await body == b'{"StatusCode":3}\n'
    assert backend.calls[-1] == ("wait", "web", "next-exit")
    resp = await app(_req("POST", "/containers/web/wait?condition=removed"))
    body = asyncio.ensure_future(_collect(resp))
    await asyncio.sleep(0)
    backend.waiter.set_result((1, "boom"))
    assert json.loads(await body) == {"Error": {"Message": "boom"}, "StatusCode": 1}


async def test_wait_errors_and_legacy() -> None:
    backend = FakeBackend()
    app = _app(backend)
    resp = await app(_req("POST", "/containers/nope/wait"))
    assert resp.status == 404
    resp = await app(_req("POST", "/containers/web/wait?condition=whenever"))
    assert resp.status == 400
    assert json.loads(resp.body)["message"] == 'invalid condition: "whenever"'
    task = asyncio.ensure_future(app(_req("POST", "/v1.29/containers/web/wait?condition=x")))
    await asyncio.sleep(0.01)
    assert backend.calls[-1] == ("wait", "web", "not-running") and not task.done()
    assert backend.waiter is not None
    backend.waiter.set_result((0, ""))
    resp = await task
    assert resp.stream is None and resp.body == b'{"StatusCode":0}\n'


async def test_list_and_inspect() -> None:
    backend = FakeBackend()
    app = _app(backend)
    resp = await app(
        _req("GET", '/containers/json?all=1&limit=3&size=1&filters={"status":["exited"]}')
    )
    assert resp.status == 200 and resp.body == b"[]\n"
    assert backend.calls[-1] == ("list", ["exited"], True, 3, True)
    resp = await app(_req("GET", "/containers/web/json"))
    assert resp.status == 404
    assert json.loads(resp.body) == {"message": "No such container: web"}


@pytest.mark.parametrize("bad", ["limit=x"])
async def test_list_bad_limit(bad: str) -> None:
    resp = await _app(FakeBackend())(_req("GET", f"/containers/json?{bad}"))
    assert resp.status == 400
