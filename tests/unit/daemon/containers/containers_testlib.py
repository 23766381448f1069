"""Fakes at the container manager's Protocols (runtime, exit watcher, layers, images) and a
ready-made ContainerService over a real MetaStore in a temp dir."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pymoby import errdefs
from pymoby.api.types.containers import Config, HostConfig
from pymoby.api.types.events import Message
from pymoby.daemon.containers.ports import HostEnv
from pymoby.daemon.containers.service import ContainerService
from pymoby.daemon.containers.store import ContainerStore
from pymoby.daemon.events import EventBus
from pymoby.daemon.images import platforms as plat
from pymoby.kernel.cgroups import CgroupInfo
from pymoby.runtime.conmon import AdoptedState, CreateError
from pymoby.runtime.exits import ExitStatus, OnExit
from pymoby.runtime.runc import RuncConflict, RuncNotFound, RuncState
from pymoby.runtime.validate import HostLimits
from pymoby.store.images import ImageNotFound, ImageRecord, image_id_of
from pymoby.store.meta import MetaStore
from pymoby.store.rwlayers import InitFunc, RWLayer

CHAIN = "sha256:" + "c" * 64


class FakeWatcher:
    def __init__(self, on_exit: OnExit) -> None:
        self.on_exit = on_exit
        self.started = False
        self.closed = False
        self.forgotten: list[str] = []
        self.checked: list[str] = []

    async def start(self) -> None:
        self.started = True

    async def check(self, cid: str) -> ExitStatus | None:
        self.checked.append(cid)
        return None

    def forget(self, cid: str) -> None:
        self.forgotten.append(cid)

    async def prepare(self) -> None:
        self.prepared = True

    async def close(self) -> None:
        self.closed = True


@dataclass
class Proc:
    pid: int
    status: str = "created"  # created | running | paused | stopped


class FakeRuntime:
    """Containers as dicts; exits are delivered through the watcher's callback, as conmon's."""

    def __init__(self) -> None:
        self.procs: dict[str, Proc] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.watch: FakeWatcher | None = None
        self.next_pid = 1000
        self.create_error: str | None = None
        self.spawned_before_bundle: list[bool] = []  # create entered before config.json?
        self.abandoned: list[str] = []  # creates cancelled while waiting for `ready`
        self.start_error: errdefs.PymobyError | None = None
        self.ignore: set[int] = set()  # signals that do not end the process
        self.exit_on_start: dict[str, int] = {}  # cid -> exit code right after start
        self.adopted: dict[str, AdoptedState] = {}
        self.oom_on_exit: set[str] = set()

    # -- test controls -----------------------------------------------------------------
    def exit(self, cid: str, code: int, *, oom: bool = False) -> None:
        """The process of `cid` ends: report it as conmon's exit file would."""
        proc = self.procs.get(cid)
        if proc is not None:
            proc.status = "stopped"
        assert self.watch is not None
        result = self.watch.on_exit(cid, code, oom or cid in self.oom_on_exit, time.time_ns())
        if asyncio.iscoroutine(result):
            asyncio.get_running_loop().create_task(result)

    # -- Runtime -------------------------------------------------------------------------
    async def create(
        self,
        cid: str,
        bundle: Path,
        *,
        tty: bool,
        stdin: bool,
        stdin_once: bool,
        log_path: Path,
        log_max_size: int | None = None,
        ready: Awaitable[None] | None = None,
    ) -> int:
        self.spawned_before_bundle.append(not (bundle / "config.json").is_file())
        if ready is not None:
            try:
                await ready
            except asyncio.CancelledError:
                self.abandoned.append(cid)
                raise
        self.calls.append(("create", cid, tty, stdin, stdin_once))
        assert (bundle / "config.json").is_file()
        if self.create_error is not None:
            raise CreateError(self.create_error)
        if cid in self.procs:
            raise errdefs.Conflict(f"container {cid} already exists in the runtime")
        self.next_pid += 1
        self.procs[cid] = Proc(self.next_pid)
        return self.next_pid

    async def start(self, cid: str) -> None:
        self.calls.append(("start", cid))
        if self.start_error is not None:
            raise self.start_error
        self.procs[cid].status = "running"
        if cid in self.exit_on_start:
            code = self.exit_on_start[cid]
            asyncio.get_running_loop().call_soon(self.exit, cid, code)

    async def kill(self, cid: str, signal: int | str = 15, *, all: bool = False) -> None:
        self.calls.append(("kill", cid, signal, all))
        proc = self.procs.get(cid)
        if proc is None:
            raise RuncNotFound("container does not exist")
        if proc.status == "stopped":
            raise RuncConflict("container not running")
        sig = int(signal)
        if sig not in self.ignore or sig == 9:
            asyncio.get_running_loop().call_soon(self.exit, cid, 128 + sig)

    async def pause(self, cid: str) -> None:
        self.calls.append(("pause", cid))
        self.procs[cid].status = "paused"

    async def resume(self, cid: str) -> None:
        self.calls.append(("resume", cid))
        self.procs[cid].status = "running"

    async def delete(self, cid: str, force: bool = False) -> None:
        self.calls.append(("delete", cid, force))
        self.procs.pop(cid, None)

    async def read_exit(self, cid: str) -> ExitStatus | None:
        return None

    async def adopt(self, cid: str) -> AdoptedState:
        self.calls.append(("adopt", cid))
        return self.adopted.get(cid, AdoptedState(cid, "gone"))

    def watcher(self, on_exit: OnExit) -> FakeWatcher:
        self.watch = FakeWatcher(on_exit)
        return self.watch

    async def list(self) -> list[RuncState]:
        return [RuncState(cid, p.status, p.pid, "") for cid, p in self.procs.items()]

    async def prepare(self) -> None:
        self.prepared = True

    async def close(self) -> None:
        self.closed = True

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


class FakeLayers:
    """RW layers as directories; mounts are counted."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.layers: dict[str, RWLayer] = {}
        self.mounts: dict[str, int] = {}
        self.fail_create: errdefs.PymobyError | None = None
        self.mount_error: errdefs.PymobyError | None = None
        self.init_roots: list[Path] = []

    def create(
        self, container_id: str, parent: str | None, *, init: InitFunc | None = None
    ) -> RWLayer:
        if self.fail_create is not None:
            raise self.fail_create
        d = self.root / container_id
        (d / "init").mkdir(parents=True)
        (d / "diff").mkdir()
        if init is not None:
            init(d / "init")
            self.init_roots.append(d / "init")
        rw = RWLayer(container_id, container_id, None, parent, time.time_ns())
        self.layers[container_id] = rw
        return rw

    def mount(self, container_id: str) -> Path:
        if self.mount_error is not None:
            raise self.mount_error
        if container_id not in self.layers:
            raise errdefs.NotFound(f"RW layer does not exist: {container_id}")
        self.mounts[container_id] = self.mounts.get(container_id, 0) + 1
        return self.root / container_id / "diff"

    def unmount(self, container_id: str) -> None:
        self.mounts[container_id] -= 1
        if not self.mounts[container_id]:
            del self.mounts[container_id]

    def remove(self, container_id: str) -> None:
        if self.mounts.get(container_id):
            raise errdefs.Conflict(f"RW layer of {container_id} is mounted")
        if container_id not in self.layers:
            raise errdefs.NotFound(f"RW layer does not exist: {container_id}")
        del self.layers[container_id]

    def metadata(self, container_id: str) -> dict[str, str]:
        return {"UpperDir": str(self.root / container_id / "diff")}

    def all(self) -> list[RWLayer]:
        return list(self.layers.values())

    def diff_paths(self, container_id: str) -> tuple[Path, Path | None]:
        return self.root / container_id / "diff", None


def image_record(cmd: list[str] | None = None, **config: Any) -> ImageRecord:
    doc = {
        "architecture": plat.host_architecture(),
        "os": "linux",
        "config": {"Cmd": cmd if cmd is not None else ["sh"], "Env": ["PATH=/bin"], **config},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "d" * 64]},
    }
    data = json.dumps(doc).encode()
    return ImageRecord(image_id_of(data), data, CHAIN, 100, None, None, None)


class FakeImages:
    def __init__(self) -> None:
        self.by_name: dict[str, ImageRecord] = {}

    def add(self, name: str, record: ImageRecord) -> ImageRecord:
        self.by_name[name] = record
        return record

    async def resolve(self, ref_or_id: str) -> ImageRecord:
        for name, record in self.by_name.items():
            if ref_or_id in (name, record.id):
                return record
        raise ImageNotFound(ref_or_id if ":" in ref_or_id else ref_or_id + ":latest")

    async def get(self, image_id: str) -> ImageRecord:
        for record in self.by_name.values():
            if record.id == image_id:
                return record
        raise ImageNotFound(image_id)


def cgroups() -> CgroupInfo:
    return CgroupInfo(
        mode="unified",
        memory_limit=True,
        swap_limit=True,
        memory_reservation=True,
        memory_swappiness=False,
        cpu_shares=True,
        cpu_cfs=True,
        cpuset=True,
        pids_limit=True,
    )


@dataclass
class World:
    """A ContainerService with fakes; `events` records every message published."""

    tmp: Path
    meta: MetaStore
    runtime: FakeRuntime
    layers: FakeLayers
    images: FakeImages
    bus: EventBus
    service: ContainerService
    messages: list[Message] = field(default_factory=list)

    @property
    def store(self) -> ContainerStore:
        return self.service.store

    def actions(self) -> list[str]:
        return [m.action for m in self.bus.buffered()]

    async def create(
        self, name: str = "", *, image: str = "busybox", network: str = "none", **host: Any
    ) -> str:
        config = Config(image=image, cmd=host.pop("cmd", None), labels=host.pop("labels", None))
        stop_signal = host.pop("stop_signal", "")
        config.stop_signal = stop_signal
        hc = HostConfig(network_mode=network, **host)
        cid, _ = await self.service.create(name, config, hc, {}, None)
        return cid

    async def run(self, name: str = "", **kw: Any) -> str:
        cid = await self.create(name, **kw)
        await self.service.start_container(cid)
        return cid


def env(tmp: Path) -> HostEnv:
    return HostEnv(
        data_root=tmp / "data",
        exec_root=tmp / "exec",
        limits=HostLimits(cgroups=cgroups(), ncpu=2, daemon_root=str(tmp / "data")),  # type: ignore[arg-type]
        storage_driver="fake",
        hostname=lambda: "testhost",
    )


async def make_world(
    tmp: Path,
    setup: Callable[[FakeRuntime, FakeLayers, FakeImages], Awaitable[None] | None] | None = None,
    meta: MetaStore | None = None,
) -> World:
    meta = meta or MetaStore.open(tmp / "meta.db")
    runtime, layers, images = FakeRuntime(), FakeLayers(tmp / "layers"), FakeImages()
    images.add("busybox", image_record())
    if setup is not None:
        result = setup(runtime, layers, images)
        if result is not None:
            await result
    bus = EventBus()
    service = ContainerService(
        ContainerStore(meta),
        runtime=runtime,
        layers=layers,
        images=images,
        events=bus,
        env=env(tmp),
    )
    await service.start()
    return World(tmp, meta, runtime, layers, images, bus, service)


async def settle(rounds: int = 20) -> None:
    """Let background tasks (exit handling, auto-remove) run."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def until(cond: Callable[[], bool], seconds: float = 2.0) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


SIGTERM = int(signal.SIGTERM)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """A World over fakes, closed after the test (import this fixture into a test module)."""
    w = await make_world(tmp_path)
    try:
        yield w
    finally:
        await w.service.close()
        w.meta.close()
