"""Exec routes over a fake backend, through a real socket (create, start hijacked/detached)."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hijack_testlib import exchange, request, serve, split

from pymoby import errdefs
from pymoby.api.types.exec import (
    ExecCreateRequest,
    ExecInspect,
    decode_exec_create,
    decode_exec_start,
)
from pymoby.server.backends import StdioClient
from pymoby.server.routes import exec as exec_routes
from pymoby.server.streams import STDERR, STDOUT, unframe


class FakeExec:
    def __init__(self) -> None:
        self.created: list[tuple[str, ExecCreateRequest]] = []
        self.started: list[tuple[str, bool, tuple[int, int] | None]] = []
        self.resized: list[tuple[str, int, int]] = []
        self.fail_start: Exception | None = None

    async def create(self, name: str, request: ExecCreateRequest) -> str:
        if name == "stopped":
            raise errdefs.Conflict("container abc is not running")
        self.created.append((name, request))
        return "e" * 64

    async def check(self, exec_id: str) -> None:
        if exec_id == "nope":
            raise errdefs.NotFound("No such exec instance: nope")

    async def start(
        self, exec_id: str, client: StdioClient | None, console_size: tuple[int, int] | None
    ) -> None:
        self.started.append((exec_id, client is not None, console_size))
        if self.fail_start is not None:
            raise self.fail_start
        if client is None:
            return
        await client.write(STDOUT, b"hello ")
        await client.write(STDERR, b"oops ")
        got = b""
        while data := await client.read():
            got += data
        await client.write(STDOUT, got)

    async def resize(self, exec_id: str, height: int, width: int) -> None:
        self.resized.append((exec_id, height, width))

    async def inspect(self, exec_id: str) -> ExecInspect:
        if exec_id == "nope":
            raise errdefs.NotFound("No such exec instance: nope")
        return ExecInspect(
            id=exec_id,
            running=False,
            exit_code=None,
            tty=False,
            entrypoint="sh",
            arguments=[],
            privileged=False,
            user="",
            open_stdin=True,
            open_stderr=True,
            open_stdout=True,
            can_remove=False,
            container_id="c" * 64,
            detach_keys=b"\x10\x11",
            pid=42,
        )


@pytest.fixture
def fake() -> FakeExec:
    return FakeExec()


async def test_create(fake: FakeExec) -> None:
    body = json.dumps({"Cmd": ["sh", "-c", "x"], "Tty": True, "ConsoleSize": [24, 80]}).encode()
    async with serve(exec_routes.routes(fake)) as path:
        status, headers, out = split(
            await exchange(path, request("POST", "/v1.45/containers/box/exec", body))
        )
        assert (status, json.loads(out)) == (201, {"Id": "e" * 64})
        assert headers["Content-Type"] == "application/json"
        name, req = fake.created[0]
        assert (name, req.cmd, req.tty, req.console_size) == (
            "box",
            ["sh", "-c", "x"],
            True,
            [24, 80],
        )
        await exchange(path, request("POST", "/v1.41/containers/box/exec", body))
        assert fake.created[1][1].console_size is None  # not before 1.42
        for payload, message in [
            (b'{"Cmd": []}', "No exec command specified"),
            (b"{}", "No exec command specified"),
            (b'{"Cmd": "ls"}', "invalid JSON: Expected `array"),
            (b"{nope", "invalid JSON: "),
        ]:
            status, _, out = split(
                await exchange(path, request("POST", "/containers/box/exec", payload))
            )
            assert status == 400
            assert json.loads(out)["message"].startswith(message), payload
        status, _, out = split(
            await exchange(path, request("POST", "/containers/stopped/exec", b'{"Cmd":["a"]}'))
        )
        assert status == 409
        raw = request("POST", "/containers/box/exec", b'{"Cmd":["a"]}', json_body=False)
        raw = raw.replace(b"Host: d\r\n", b"Host: d\r\nContent-Type: text/plain\r\n")
        status, _, out = split(await exchange(path, raw))
        assert status == 400 and b"must be 'application/json'" in out


async def test_start_hijacked_multiplexed_and_raw(fake: FakeExec) -> None:
    async with serve(exec_routes.routes(fake)) as path:
        body = b'{"Detach": false, "Tty": false}'
        out = await exchange(
            path, request("POST", "/v1.44/exec/abc/start", body, upgrade=True), b"in"
        )
        head, _, rest = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 UPGRADED\r\n")
        assert b"Content-Type: application/vnd.docker.multiplexed-stream" in head
        assert unframe(rest) == [(STDOUT, b"hello "), (STDERR, b"oops "), (STDOUT, b"in")]
        body = b'{"Detach": false, "Tty": true, "ConsoleSize": [30, 100]}'
        out = await exchange(
            path, request("POST", "/v1.44/exec/abc/start", body, upgrade=True), b"t"
        )
        head, _, rest = out.partition(b"\r\n\r\n")
        assert b"raw-stream" in head
        assert rest == b"hello oops t"
        assert fake.started[-1] == ("abc", True, (30, 100))
        body = b'{"Tty": false, "ConsoleSize": [30, 100]}'
        await exchange(path, request("POST", "/v1.44/exec/abc/start", body, upgrade=True))
        assert fake.started[-1] == ("abc", True, None)  # no console without a TTY
        body = b'{"Tty": true, "ConsoleSize": [30, 100]}'
        await exchange(path, request("POST", "/v1.41/exec/abc/start", body, upgrade=True))
        assert fake.started[-1] == ("abc", True, None)  # nor before 1.42


async def test_start_detached_and_errors(fake: FakeExec) -> None:
    async with serve(exec_routes.routes(fake)) as path:
        status, headers, out = split(
            await exchange(path, request("POST", "/exec/abc/start", b'{"Detach": true}'))
        )
        assert (status, out, headers["Content-Length"]) == (200, b"", "0")
        assert fake.started[-1] == ("abc", False, None)
        status, _, out = split(
            await exchange(path, request("POST", "/exec/nope/start", b"{}", upgrade=True))
        )
        assert (status, json.loads(out)) == (404, {"message": "No such exec instance: nope"})
        fake.fail_start = errdefs.Conflict("exec command abc has already run")
        status, _, out = split(
            await exchange(path, request("POST", "/exec/abc/start", b'{"Detach": true}'))
        )
        assert status == 409
        out = await exchange(path, request("POST", "/v1.45/exec/abc/start", b"{}", upgrade=True))
        rest = out.partition(b"\r\n\r\n")[2]
        assert unframe(rest) == [(STDOUT, b"exec command abc has already run\r\n")]


async def test_resize_and_inspect(fake: FakeExec) -> None:
    async with serve(exec_routes.routes(fake)) as path:
        status, _, _ = split(await exchange(path, request("POST", "/exec/abc/resize?h=3&w=4")))
        assert status == 200 and fake.resized == [("abc", 3, 4)]
        status, _, out = split(await exchange(path, request("POST", "/exec/abc/resize?h=3")))
        assert status == 400 and b'invalid resize width \\"\\"' in out
        status, _headers, out = split(await exchange(path, request("GET", "/exec/abc/json")))
        doc = json.loads(out)
        assert status == 200
        assert list(doc) == [
            "ID",
            "Running",
            "ExitCode",
            "ProcessConfig",
            "OpenStdin",
            "OpenStderr",
            "OpenStdout",
            "CanRemove",
            "ContainerID",
            "DetachKeys",
            "Pid",
        ]
        assert doc["ExitCode"] is None
        assert doc["ProcessConfig"] == {
            "tty": False,
            "entrypoint": "sh",
            "arguments": [],
            "privileged": False,
        }
        assert base64.b64decode(doc["DetachKeys"]) == b"\x10\x11"
        status, _, _ = split(await exchange(path, request("GET", "/exec/nope/json")))
        assert status == 404


def test_decoding_go_rules() -> None:
    req = decode_exec_create(b'{"cmd": ["ls"], "ENV": null, "ConsoleSize": [5], "Bogus": 1}')
    assert (req.cmd, req.env, req.console_size) == (["ls"], None, [5, 0])
    assert decode_exec_create(b"").cmd is None
    assert decode_exec_start(b"null").detach is False
    with pytest.raises(errdefs.InvalidParameter, match="cannot unmarshal array"):
        decode_exec_start(b"[]")
    with pytest.raises(errdefs.InvalidParameter, match="ConsoleSize"):
        decode_exec_start(b'{"ConsoleSize": [1, 2, 3]}')
