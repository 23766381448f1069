"""Attach over a fake conmon: hubs, attach before start, stdin rules, detach keys, resize."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from streams_testlib import (
    FakeClient,
    FakeConmon,
    FakeRuntime,
    FakeStore,
    action_names,
    append,
    make_container,
    record,
    settle,
)

from pymoby import errdefs
from pymoby.daemon.containers.attach import ContainerStreams
from pymoby.daemon.containers.logrotate import RotationPolicy
from pymoby.daemon.containers.logs import LogService
from pymoby.daemon.containers.model import Container
from pymoby.daemon.containers.state import Status
from pymoby.daemon.containers.stdio import EscapeScanner, parse_detach_keys
from pymoby.daemon.events import EventBus
from pymoby.server.backends import AttachOptions

STREAM = AttachOptions(stdin=True, stdout=True, stderr=True, stream=True)


class World:
    def __init__(self, c: Container) -> None:
        self.c = c
        self.runtime = FakeRuntime()
        self.bus = EventBus()
        self.streams = ContainerStreams(FakeStore(c), self.runtime, self.bus, LogService())

    async def start(self, *, leave_stdin_open: bool | None = None) -> FakeConmon:
        """What the lifecycle does: runtime create, the start hooks, runc start."""
        keep = not (self.c.config.open_stdin and self.c.config.stdin_once)
        conmon = FakeConmon(leave_stdin_open=keep if leave_stdin_open is None else leave_stdin_open)
        self.runtime.conmons[self.c.id] = conmon
        hooks, self.c.start_hooks = list(self.c.start_hooks), []
        for hook in hooks:
            await hook(self.c)
        self.c.state.status = Status.RUNNING
        return conmon

    def exit(self, conmon: FakeConmon) -> None:
        conmon.exit()
        self.c.state.status = Status.EXITED
        self.c.notify_stopped()

    async def attach(
        self, client: FakeClient, options: AttachOptions = STREAM
    ) -> asyncio.Task[None]:
        session = await self.streams.attach(self.c.id, options)
        task = asyncio.create_task(session.run(client))
        await settle()
        return task


# -- detach keys ----------------------------------------------------------------------------------


def test_parse_detach_keys() -> None:
    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("ctrl-@,ctrl-a,ctrl-_,ctrl-\\") == b"\x00\x01\x1f\x1c"
    assert parse_detach_keys("a,DEL,Z") == b"a\x7fZ"
    for bad in ("ctrl-", "ctrl-A", "ctrlp", "", "a,,b", "ctrl-pq", "é"):
        with pytest.raises(ValueError, match="Unknown character"):
            parse_detach_keys(bad)


def test_escape_scanner_across_chunks() -> None:
    s = EscapeScanner(b"\x10\x11")
    assert s.feed(b"ab\x10") == (b"ab", False)  # held back: may start the sequence
    assert s.feed(b"x") == (b"\x10x", False)  # it did not
    assert s.feed(b"\x10") == (b"", False)
    assert s.feed(b"\x11tail") == (b"", True)
    s = EscapeScanner(b"aab")
    assert s.feed(b"aaa") == (b"a", False)
    assert s.feed(b"b") == (b"", True)
    s = EscapeScanner(b"\x10\x11")
    assert s.feed(b"x\x10") == (b"x", False)
    assert s.flush() == b"\x10"
    assert EscapeScanner(b"").keys == b"\x10\x11"


# -- attach ---------------------------------------------------------------------------------------


async def test_attach_before_start_sees_everything_and_stdin_once_closes_stdin(
    tmp_path: Path,
) -> None:
    w = World(make_container(tmp_path / "c", open_stdin=True, stdin_once=True))
    client = FakeClient()
    task = await w.attach(client)
    client.send(b"hello\n")
    client.eof()  # `echo hello | docker run -i ...`: stdin ends before the start
    await settle()
    assert not task.done()
    conmon = await w.start()
    assert conmon.connects == 1
    await settle()
    assert conmon.stdin == b"hello\n" and conmon.stdin_closed
    conmon.emit(1, b"hello\n")
    conmon.emit(2, b"warn\n")
    await client.wait_for(b"warn\n")
    assert not task.done()  # output keeps flowing after stdin's end
    w.exit(conmon)
    await asyncio.wait_for(task, 5)
    assert client.output == [(1, b"hello\n"), (2, b"warn\n")]
    assert action_names(w.bus) == ["attach"]


async def test_clients_share_one_connection_and_end_with_the_run(tmp_path: Path) -> None:
    w = World(make_container(tmp_path / "c"))
    conmon = await w.start()
    a, b = FakeClient(), FakeClient()
    ta = await w.attach(a, AttachOptions(stdout=True, stream=True))
    tb = await w.attach(b, AttachOptions(stderr=True, stream=True))
    assert conmon.connects == 1
    conmon.emit(1, b"out")
    conmon.emit(2, b"err")
    await a.wait_for(b"out")
    await b.wait_for(b"err")
    w.exit(conmon)
    await asyncio.wait_for(asyncio.gather(ta, tb), 5)
    assert a.output == [(1, b"out")] and b.output == [(2, b"err")]


async def test_last_client_leaving_disconnects_unless_stdin_once(tmp_path: Path) -> None:
    w = World(make_container(tmp_path / "c", open_stdin=True))
    conmon = await w.start()
    client = FakeClient()
    task = await w.attach(client, AttachOptions(stdout=True, stream=True))
    assert len(conmon.sessions) == 1
    client.leave()
    await asyncio.wait_for(task, 5)
    assert conmon.sessions == []
    assert not conmon.stdin_closed  # --leave-stdin-open

    w2 = World(make_container(tmp_path / "d", open_stdin=True, stdin_once=True))
    conmon2 = await w2.start()
    other = FakeClient()  # a second client without stdin leaves: stdin must stay open
    task2 = await w2.attach(other, AttachOptions(stdout=True, stream=True))
    other.leave()
    await asyncio.wait_for(task2, 5)
    assert len(conmon2.sessions) == 1 and not conmon2.stdin_closed


async def test_stdin_end_without_stdin_once_ends_the_attach(tmp_path: Path) -> None:
    w = World(make_container(tmp_path / "c", open_stdin=True))
    conmon = await w.start()
    client = FakeClient()
    task = await w.attach(client)
    client.send(b"typed")
    client.eof()
    await asyncio.wait_for(task, 5)
    assert conmon.stdin == b"typed"
    await settle()
    assert not conmon.stdin_closed


async def test_tty_detach_keys(tmp_path: Path) -> None:
    w = World(make_container(tmp_path / "c", tty=True, open_stdin=True, stdin_once=True))
    conmon = await w.start()
    client = FakeClient()
    session = await w.streams.attach(w.c.id, STREAM)
    task = asyncio.create_task(session.run(client))
    await settle()
    client.send(b"ls\r\x10")
    client.send(b"\x11ignored")
    await asyncio.wait_for(task, 5)
    await settle()
    assert conmon.stdin == b"ls\r"
    assert not conmon.stdin_closed
    assert action_names(w.bus) == ["attach", "detach"]
    client2 = FakeClient()
    session = await w.streams.attach(
        w.c.id, AttachOptions(stdin=True, stdout=True, stream=True, detach_keys="ctrl-x")
    )
    task = asyncio.create_task(session.run(client2))
    await settle()
    client2.send(b"a\x10\x11b\x18")
    await asyncio.wait_for(task, 5)
    await settle()
    assert conmon.stdin == b"ls\ra\x10\x11b"


async def test_non_tty_ignores_detach_keys_and_stdin_without_open_stdin(tmp_path: Path) -> None:
    w = World(make_container(tmp_path / "c"))
    conmon = await w.start()
    client = FakeClient()
    task = await w.attach(client)
    client.send(b"\x10\x11")
    await settle()
    assert not task.done() and conmon.stdin == b""  # not OpenStdin: stdin is not read
    w.exit(conmon)
    await asyncio.wait_for(task, 5)


async def test_logs_replay_then_stream(tmp_path: Path) -> None:
    c = make_container(tmp_path / "c")
    append(c.log_path, record("stdout", b"old") + record("stderr", b"olderr"))
    w = World(c)
    conmon = await w.start()
    client = FakeClient()
    task = await w.attach(client, AttachOptions(stdout=True, stderr=True, logs=True, stream=True))
    conmon.emit(1, b"new\n")
    await client.wait_for(b"new\n")
    w.exit(conmon)
    await asyncio.wait_for(task, 5)
    assert client.output == [(1, b"old\n"), (2, b"olderr\n"), (1, b"new\n")]
    logs_only = FakeClient()
    session = await w.streams.attach(c.id, AttachOptions(stdout=True, logs=True))
    await asyncio.wait_for(session.run(logs_only), 5)
    assert logs_only.output == [(1, b"old\n")]


async def test_logs_replay_with_the_none_driver_fails(tmp_path: Path) -> None:
    w = World(make_container(tmp_path / "c", log_type="none"))
    session = await w.streams.attach(w.c.id, AttachOptions(stdout=True, logs=True))
    with pytest.raises(errdefs.NotImplementedErr, match="does not support reading"):
        await session.run(FakeClient())


async def test_waiting_client_ends_when_the_container_is_removed(tmp_path: Path) -> None:
    w = World(make_container(tmp_path / "c"))
    client = FakeClient()
    task = await w.attach(client)
    w.c.notify_removed()
    w.streams.removed(w.c)
    await asyncio.wait_for(task, 5)


async def test_attach_to_a_running_container_whose_conmon_is_gone(tmp_path: Path) -> None:
    w = World(make_container(tmp_path / "c"))
    w.c.state.status = Status.RUNNING  # no FakeConmon: the attach socket is missing
    client = FakeClient()
    task = await w.attach(client)
    await asyncio.wait_for(task, 5)
    assert client.output == []


async def test_attach_checks(tmp_path: Path) -> None:
    w = World(make_container(tmp_path / "c"))
    with pytest.raises(errdefs.InvalidParameter, match=r"Invalid detach keys \(ctrl-\) provided"):
        await w.streams.attach("c0ffee", AttachOptions(detach_keys="ctrl-"))
    with pytest.raises(errdefs.NotFound):
        await w.streams.attach("nothing", AttachOptions())
    w.c.state.status = Status.PAUSED
    with pytest.raises(errdefs.Conflict, match="container box is paused, unpause"):
        await w.streams.attach("box", AttachOptions())
    w.c.state.status = Status.RESTARTING
    with pytest.raises(errdefs.Conflict, match="is restarting, wait until"):
        await w.streams.attach("box", AttachOptions())


async def test_resize(tmp_path: Path) -> None:
    tty = World(make_container(tmp_path / "t", tty=True))
    with pytest.raises(errdefs.Conflict, match="is not running"):
        await tty.streams.resize("box", 10, 20)
    await tty.start()
    await tty.streams.resize("box", 10, 20)
    assert tty.runtime.resizes == [(tty.c.id, 10, 20)]
    msg = tty.bus.buffered()[-1]
    assert (msg.action, msg.actor.attributes["height"], msg.actor.attributes["width"]) == (
        "resize",
        "10",
        "20",
    )
    pipe = World(make_container(tmp_path / "p"))
    await pipe.start()
    await pipe.streams.resize("box", 10, 20)
    assert pipe.runtime.resizes == [] and action_names(pipe.bus) == ["resize"]


async def test_start_hook_rotates_while_running(tmp_path: Path) -> None:
    c = make_container(tmp_path / "c", log_opts={"max-size": "1k", "max-file": "2"})
    w = World(c)
    watched: list[tuple[str, RotationPolicy | None]] = []
    unwatched: list[str] = []

    class Rotator:
        def watch(self, cid: str, path: Path, policy: RotationPolicy | None) -> None:
            watched.append((cid, policy))

        def unwatch(self, cid: str) -> None:
            unwatched.append(cid)

    w.streams.rotator = Rotator()  # type: ignore[assignment]
    w.streams.install(c)
    conmon = await w.start()
    assert watched == [(c.id, RotationPolicy(1024, 2))]
    assert w.streams.start_hook in c.start_hooks  # put back for the next start
    unwatched.clear()
    w.exit(conmon)
    await settle()
    assert unwatched == [c.id]
