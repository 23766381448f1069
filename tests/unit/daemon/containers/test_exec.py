"""Exec sessions over a fake exec runtime: create, start (streamed and detached), exit codes."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from streams_testlib import (
    FakeClient,
    FakeConmon,
    FakeSession,
    FakeStore,
    action_names,
    make_container,
    settle,
    until,
)

from pymoby import errdefs
from pymoby.api.types.exec import ExecCreateRequest
from pymoby.daemon.containers.exec import ExecService
from pymoby.daemon.containers.state import Status
from pymoby.daemon.events import EventBus
from pymoby.runtime.conmon import CreateError

PROCESS = {
    "terminal": False,
    "user": {"uid": 0, "gid": 0, "umask": 18},
    "args": ["sh"],
    "env": ["PATH=/bin"],
    "cwd": "/",
    "capabilities": {"bounding": ["CAP_CHOWN"]},
    "noNewPrivileges": True,
    "consoleSize": {"height": 1, "width": 1},
}


class FakeProcess:
    def __init__(self, pid: int, session: FakeSession | None) -> None:
        self._pid = pid
        self._attach = session
        self.exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.resizes: list[tuple[int, int]] = []
        self.closed = False
        self.detached = False

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def attach(self) -> FakeSession | None:
        return self._attach

    async def wait(self) -> int:
        return await asyncio.shield(self.exit)

    async def resize(self, height: int, width: int) -> None:
        self.resizes.append((height, width))

    def detach(self) -> None:
        self.detached = True

    async def close(self) -> None:
        self.closed = True

    def finish(self, code: int, conmon: FakeConmon | None = None) -> None:
        if conmon is not None:
            conmon.exit()
        self.exit.set_result(code)


class FakeExecRuntime:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.processes: list[tuple[FakeProcess, FakeConmon]] = []
        self.fail: str | None = None

    async def exec(
        self,
        cid: str,
        process_spec: dict[str, Any],
        *,
        tty: bool,
        stdin: bool,
        attach: bool,
        exec_id: str | None = None,
    ) -> FakeProcess:
        self.calls.append(
            {"cid": cid, "spec": process_spec, "tty": tty, "stdin": stdin, "attach": attach}
        )
        if self.fail is not None:
            raise CreateError(self.fail)
        conmon = FakeConmon()
        session = FakeSession(conmon) if attach else None
        if session is not None:
            conmon.sessions.append(session)
        process = FakeProcess(1000 + len(self.processes), session)
        self.processes.append((process, conmon))
        return process


class World:
    def __init__(self, tmp: Path, **kwargs: Any) -> None:
        self.c = make_container(tmp / "c", **kwargs)
        self.c.state.status = Status.RUNNING
        self.c.config.env = ["FOO=1"]
        self.c.config.hostname = "box"
        self.c.config.working_dir = "/srv"
        self.c.bundle.mkdir(parents=True)
        (self.c.bundle / "config.json").write_text(json.dumps({"process": PROCESS}))
        rootfs = tmp / "rootfs"
        (rootfs / "etc").mkdir(parents=True)
        (rootfs / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nwww:x:33:33::/:/bin/sh\n")
        (rootfs / "etc/group").write_text("root:x:0:\nwww:x:33:\nextra:x:50:www\n")
        self.c.rootfs = str(rootfs)
        self.runtime = FakeExecRuntime()
        self.bus = EventBus()
        self.service = ExecService(
            FakeStore(self.c), self.runtime, self.bus, host_capabilities=("CAP_A", "CAP_B")
        )

    async def create(self, cmd: list[str], **kwargs: Any) -> str:
        return await self.service.create("box", ExecCreateRequest(cmd=cmd, **kwargs))


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


async def test_create_records_the_exec(world: World) -> None:
    eid = await world.create(["true"], tty=True, env=["FOO=2", "BAR=3"], attach_stdout=True)
    assert world.c.exec_ids == [eid]
    msg = world.bus.buffered()[-1]
    assert msg.action == "exec_create: true "  # dockerd joins an empty arg list after a space
    assert msg.actor.attributes["execID"] == eid
    info = await world.service.inspect(eid)
    assert (info.running, info.exit_code, info.pid, info.user, info.tty) == (
        False,
        None,
        0,
        "",
        True,
    )
    assert info.detach_keys == b""
    await world.service.start(eid, None)
    spec = world.runtime.calls[-1]["spec"]
    assert spec["env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                           "HOSTNAME=box", "TERM=xterm", "FOO=2", "BAR=3"]  # fmt: skip
    assert spec["cwd"] == "/srv" and spec["args"] == ["true"] and spec["terminal"] is True
    assert "consoleSize" not in spec  # none asked for
    assert spec["noNewPrivileges"] is True and spec["user"] == PROCESS["user"]


async def test_create_checks(world: World) -> None:
    with pytest.raises(errdefs.InvalidParameter, match="unable to find user nobody"):
        await world.create(["id"], user="nobody")
    with pytest.raises(errdefs.System, match=r"Invalid escape keys \(ctrl-\) provided"):
        await world.create(["id"], detach_keys="ctrl-")
    world.c.state.status = Status.PAUSED
    with pytest.raises(errdefs.Conflict, match="Container box is paused, unpause the container"):
        await world.create(["id"])
    world.c.state.status = Status.EXITED
    with pytest.raises(errdefs.Conflict, match=f"container {world.c.id} is not running"):
        await world.create(["id"])
    with pytest.raises(errdefs.NotFound, match="No such container: zz"):
        await world.service.create("zz", ExecCreateRequest(cmd=["id"]))


async def test_streamed_start_returns_after_the_exit_code(world: World) -> None:
    eid = await world.create(
        ["sh", "-c", "x"], attach_stdout=True, attach_stderr=True, user="www", privileged=True
    )
    client = FakeClient()
    start = asyncio.create_task(world.service.start(eid, client, (24, 80)))
    await until(lambda: world.runtime.processes)
    process, conmon = world.runtime.processes[0]
    call = world.runtime.calls[0]
    assert call["attach"] and not call["stdin"] and not call["tty"]
    assert call["spec"]["user"] == {"uid": 33, "gid": 33, "umask": 18, "additionalGids": [33, 50]}
    assert call["spec"]["capabilities"] == {
        "bounding": ["CAP_A", "CAP_B"],
        "effective": ["CAP_A", "CAP_B"],
        "permitted": ["CAP_A", "CAP_B"],
    }
    assert "consoleSize" not in call["spec"]  # no console without a TTY
    info = await world.service.inspect(eid)
    assert (info.running, info.pid) == (True, 1000)
    conmon.emit(1, b"out")
    conmon.emit(2, b"err")
    await client.wait_for(b"err")
    conmon.exit()  # the output ends before conmon reports the exit code
    await settle()
    assert not start.done()
    process.finish(3)
    await asyncio.wait_for(start, 5)
    info = await world.service.inspect(eid)
    assert (info.running, info.exit_code) == (False, 3)
    assert client.output == [(1, b"out"), (2, b"err")]
    assert world.c.exec_ids == [] and process.closed
    assert action_names(world.bus)[1:] == ["exec_start: sh -c x", "exec_die"]
    assert world.bus.buffered()[-1].actor.attributes == {
        "execID": eid,
        "exitCode": "3",
        "image": "busybox",
        "name": "box",
    }
    with pytest.raises(errdefs.Conflict, match=f"exec command {eid} has already run"):
        await world.service.start(eid, None)


async def test_start_twice_and_detached(world: World) -> None:
    eid = await world.create(["sleep", "1"])
    await world.service.start(eid, None)
    with pytest.raises(errdefs.Conflict, match="is already running"):
        await world.service.start(eid, None)
    process, _ = world.runtime.processes[0]
    assert world.runtime.calls[0]["attach"] is False
    process.finish(0)
    await settle()
    assert (await world.service.inspect(eid)).exit_code == 0
    assert process.closed


async def test_runtime_failure_sets_dockerds_exit_code(world: World) -> None:
    world.runtime.fail = (
        'exec failed: unable to start container process: exec: "nope": '
        "executable file not found in $PATH"
    )
    eid = await world.create(["nope"])
    with pytest.raises(errdefs.InvalidParameter) as err:
        await world.service.start(eid, FakeClient())
    assert err.value.message == (
        'OCI runtime exec failed: exec failed: unable to start container process: exec: "nope": '
        "executable file not found in $PATH: unknown"
    )
    info = await world.service.inspect(eid)
    assert (info.running, info.exit_code) == (False, 127)
    with pytest.raises(errdefs.InvalidParameter, match="exec process is not started"):
        await world.service.resize(eid, 1, 1)
    world.runtime.fail = "something odd"
    eid = await world.create(["x"])
    with pytest.raises(errdefs.System):
        await world.service.start(eid, None)
    assert (await world.service.inspect(eid)).exit_code == 128


async def test_stdin_end_closes_the_process_stdin(world: World) -> None:
    eid = await world.create(["cat"], attach_stdin=True, attach_stdout=True)
    client = FakeClient()
    start = asyncio.create_task(world.service.start(eid, client))
    await until(lambda: world.runtime.processes)
    await settle()
    process, conmon = world.runtime.processes[0]
    assert world.runtime.calls[0]["stdin"]
    client.send(b"data")
    client.eof()
    await settle()
    assert conmon.stdin == b"data" and conmon.stdin_closed
    conmon.emit(1, b"data")
    process.finish(0, conmon)
    await asyncio.wait_for(start, 5)
    assert client.text() == b"data"


async def test_tty_detach_and_resize(world: World) -> None:
    eid = await world.create(
        ["sh"], tty=True, attach_stdin=True, attach_stdout=True, console_size=[10, 20]
    )
    client = FakeClient()
    start = asyncio.create_task(world.service.start(eid, client))
    await until(lambda: world.runtime.processes)
    await settle()
    process, conmon = world.runtime.processes[0]
    assert world.runtime.calls[0]["spec"]["consoleSize"] == {"height": 10, "width": 20}
    await world.service.resize(eid, 40, 100)
    assert process.resizes == [(40, 100)]
    client.send(b"ls\x10\x11")
    await asyncio.wait_for(start, 5)  # detached: the process keeps running
    assert conmon.stdin == b"ls" and not process.exit.done()
    assert process.detached  # its output is drained while nobody reads it
    assert action_names(world.bus)[-1] == "exec_detach"
    assert (await world.service.inspect(eid)).running
    process.finish(0, conmon)
    await settle()
    assert process.closed and (await world.service.inspect(eid)).exit_code == 0


async def test_client_leaving_does_not_stop_the_process(world: World) -> None:
    eid = await world.create(["sleep", "9"], attach_stdout=True)
    client = FakeClient()
    start = asyncio.create_task(world.service.start(eid, client))
    await until(lambda: world.runtime.processes)
    await settle()
    client.leave()
    await asyncio.wait_for(start, 5)
    process, _ = world.runtime.processes[0]
    assert not process.closed and (await world.service.inspect(eid)).running
    assert process.detached
    process.finish(137)
    await settle()
    assert process.closed


async def test_lookup_errors_and_forgetting(world: World) -> None:
    with pytest.raises(errdefs.NotFound, match="No such exec instance: nope"):
        await world.service.check("nope")
    done = await world.create(["true"])
    await world.service.start(done, None)
    world.runtime.processes[0][0].finish(0)
    await settle()
    unfinished = await world.create(["sleep", "9"])
    world.c.state.status = Status.EXITED
    with pytest.raises(errdefs.Conflict, match="is not running"):
        await world.service.check(done)
    world.c.notify_stopped()
    await settle()
    with pytest.raises(errdefs.NotFound):
        await world.service.inspect(unfinished)  # forgotten with the container's stop
    assert (await world.service.inspect(done)).exit_code == 0  # kept until the GC
    assert world.service.collect() == 0  # first round marks it
    assert (await world.service.inspect(done)).can_remove
    assert world.service.collect() == 1
    with pytest.raises(errdefs.NotFound):
        await world.service.inspect(done)


async def test_container_gone(world: World, tmp_path: Path) -> None:
    eid = await world.create(["true"])
    store: FakeStore = world.service.store  # type: ignore[assignment]
    store.by_id.clear()
    with pytest.raises(errdefs.NotFound, match=f"No such container: {eid}"):
        await world.service.check(eid)
    with pytest.raises(errdefs.NotFound, match=f"No such exec instance: {eid}"):
        await world.service.inspect(eid)
