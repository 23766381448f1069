"""Helpers for the container stream tests: container records and conmon k8s-file records."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from pymoby import errdefs
from pymoby.api.types.containers import Config, HostConfig, LogConfig
from pymoby.daemon.containers.model import Container

CID = "c0ffee" + "0" * 58


def make_container(
    root: Path,
    *,
    cid: str = CID,
    name: str = "/box",
    tty: bool = False,
    open_stdin: bool = False,
    stdin_once: bool = False,
    log_type: str = "json-file",
    log_opts: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    env: list[str] | None = None,
) -> Container:
    root.mkdir(parents=True, exist_ok=True)
    config = Config(
        image="busybox",
        tty=tty,
        open_stdin=open_stdin,
        stdin_once=stdin_once,
        labels=labels,
        env=env,
        cmd=["sh"],
    )
    host = HostConfig(log_config=LogConfig(type=log_type, config=log_opts))
    return Container(
        id=cid,
        name=name,
        created=time.time_ns(),
        path="sh",
        args=[],
        config=config,
        host_config=host,
        image_id="sha256:" + "1" * 64,
        root=root,
        bundle=root / "bundle",
    )


def stamp(ns: int) -> str:
    """conmon's timestamp: RFC 3339 with nanoseconds and a numeric zone."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}+00:00"


def record(stream: str, content: bytes, *, partial: bool = False, ns: int = 0) -> bytes:
    ns = ns or time.time_ns()
    tag = b"P" if partial else b"F"
    return stamp(ns).encode() + b" " + stream.encode() + b" " + tag + b" " + content + b"\n"


def append(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


# -- fakes of the runtime's attach side and of a hijacked client ---------------------------------


class FakeSession:
    """One connection to a FakeConmon (runtime.attach.AttachSession's behaviour)."""

    def __init__(self, conmon: FakeConmon) -> None:
        self.conmon = conmon
        self.queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self.closed = False
        self.stdin_closed = False

    async def read(self) -> tuple[int, bytes] | None:
        if self.closed:
            return None
        return await self.queue.get()

    async def write(self, data: bytes) -> None:
        if self.stdin_closed or self.closed:
            raise errdefs.Conflict("stdin of this attach session is closed")
        self.conmon.stdin += data

    def close_stdin(self) -> None:
        if not self.stdin_closed:
            self.stdin_closed = True
            self.conmon.client_left()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)
            if not self.stdin_closed:
                self.conmon.client_left()
            self.conmon.sessions.remove(self)


class FakeConmon:
    """A container's conmon: broadcasts output to every session, closes the container's stdin
    when a session goes away unless `leave_stdin_open`."""

    def __init__(self, leave_stdin_open: bool = False) -> None:
        self.sessions: list[FakeSession] = []
        self.connects = 0
        self.stdin = b""
        self.stdin_closed = False
        self.leave_stdin_open = leave_stdin_open
        self.alive = True

    def client_left(self) -> None:
        if not self.leave_stdin_open:
            self.stdin_closed = True

    def emit(self, stream: int, data: bytes) -> None:
        for s in self.sessions:
            s.queue.put_nowait((stream, data))

    def exit(self) -> None:
        self.alive = False
        for s in list(self.sessions):
            s.queue.put_nowait(None)


class FakeRuntime:
    def __init__(self) -> None:
        self.conmons: dict[str, FakeConmon] = {}
        self.resizes: list[tuple[str, int, int]] = []

    async def attach(self, cid: str) -> FakeSession:
        conmon = self.conmons.get(cid)
        if conmon is None or not conmon.alive:
            raise errdefs.NotFound(f"attach socket of {cid}: No such file or directory")
        conmon.connects += 1
        session = FakeSession(conmon)
        conmon.sessions.append(session)
        return session

    async def resize(self, cid: str, height: int, width: int) -> None:
        self.resizes.append((cid, height, width))


class FakeStore:
    def __init__(self, *containers: Container) -> None:
        self.by_id = {c.id: c for c in containers}

    def get(self, name: str) -> Container:
        found = self.find(name)
        if found is None:
            raise errdefs.NotFound(f"No such container: {name}")
        return found

    def find(self, name: str) -> Container | None:
        for c in self.by_id.values():
            if name in (c.id, c.name, c.name.lstrip("/")) or (
                len(name) >= 3 and c.id.startswith(name)
            ):
                return c
        return None

    def all(self) -> list[Container]:
        return list(self.by_id.values())


class FakeClient:
    """A hijacked client: `send` stdin, `eof` half-closes, `leave` disconnects."""

    def __init__(self) -> None:
        self.stdin: asyncio.Queue[bytes] = asyncio.Queue()
        self.output: list[tuple[int, bytes]] = []
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.got_output = asyncio.Event()

    def send(self, data: bytes) -> None:
        self.stdin.put_nowait(data)

    def eof(self) -> None:
        self.stdin.put_nowait(b"")

    def leave(self) -> None:
        self.stdin.put_nowait(b"")
        if not self.gone.done():
            self.gone.set_result(None)

    async def read(self) -> bytes:
        return await self.stdin.get()

    async def write(self, stream: int, data: bytes) -> None:
        if self.gone.done():
            raise errdefs.Cancelled("client disconnected")
        self.output.append((stream, data))
        self.got_output.set()

    async def wait_closed(self) -> None:
        await asyncio.shield(self.gone)

    def text(self, stream: int | None = None) -> bytes:
        return b"".join(d for s, d in self.output if stream is None or s == stream)

    async def wait_for(self, data: bytes, timeout: float = 5) -> None:
        async with asyncio.timeout(timeout):
            while data not in self.text():
                self.got_output.clear()
                await self.got_output.wait()


async def settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


def action_names(events: Any) -> list[str]:
    return [m.action for m in events.buffered()]


async def until(predicate: Any, timeout: float = 5) -> None:
    """Wait (on the loop, letting worker threads finish) until `predicate()` is true."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)
