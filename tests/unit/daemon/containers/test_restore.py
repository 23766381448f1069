"""Live restore: a second daemon over the same DB and runtime takes every container back."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from containers_testlib import Proc, World, env, until, world

from pymoby.api.types.containers import RestartPolicy
from pymoby.daemon.containers.service import ContainerService
from pymoby.daemon.containers.store import ContainerStore
from pymoby.daemon.events import EventBus
from pymoby.runtime.conmon import AdoptedState
from pymoby.store.rwlayers import RWLayer

__all__ = ["world"]


async def _restart_daemon(w: World) -> ContainerService:
    """A new service over the same DB, runtime and layers: the old one is simply abandoned
    (kill -9), and conmon keeps the containers."""
    w.layers.mounts.clear()  # the new daemon has counted no mount yet
    service = ContainerService(
        ContainerStore(w.meta),
        runtime=w.runtime,
        layers=w.layers,
        images=w.images,
        events=EventBus(),
        env=env(w.tmp),
    )
    await service.start()
    return service


async def test_running_containers_are_adopted(world: World) -> None:
    cid = await world.run("web")
    pid = world.store.get(cid).state.pid
    world.runtime.adopted[cid] = AdoptedState(cid, "running", pid=pid, conmon_alive=True)
    service = await _restart_daemon(world)
    try:
        c = service.get("web")
        assert c.running and c.state.pid == pid and c.in_runtime
        assert world.layers.mounts == {cid: 1}  # the rootfs mount is counted again
        await service.stop("web", "", 1)  # and the adopted container can be stopped
        assert not c.running and c.state.exit_code == 143
    finally:
        await service.close()


async def test_a_paused_container_stays_paused(world: World) -> None:
    cid = await world.run("web")
    world.runtime.adopted[cid] = AdoptedState(cid, "paused", pid=5, conmon_alive=True)
    service = await _restart_daemon(world)
    try:
        assert service.get("web").paused
    finally:
        await service.close()


async def test_an_exit_while_down_keeps_its_true_code(world: World) -> None:
    cid = await world.run("job")
    finished = time.time_ns() - 5_000_000_000
    world.runtime.adopted[cid] = AdoptedState(
        cid, "exited", exit_code=3, finished_at_ns=finished, oom=True, conmon_alive=False
    )
    bus_before = len(world.bus.buffered())
    service = await _restart_daemon(world)
    try:
        c = service.get("job")
        assert c.state_name == "exited" and c.state.exit_code == 3 and c.state.oom_killed
        assert c.state.finished_at == finished
        assert ("delete", cid, True) in world.runtime.calls and world.layers.mounts == {}
        assert len(world.bus.buffered()) == bus_before  # the new daemon has its own bus
    finally:
        await service.close()


async def test_lost_and_orphaned_processes(world: World) -> None:
    gone = await world.run("gone")
    orphan = await world.run("orphan")
    world.runtime.adopted[orphan] = AdoptedState(orphan, "running", pid=9, conmon_alive=False)
    service = await _restart_daemon(world)
    try:
        assert service.get("gone").state.exit_code == 255
        assert "lost" in service.get("gone").state.error
        o = service.get("orphan")
        assert o.state.exit_code == 137 and "conmon" in o.state.error
        assert ("kill", orphan, 9, True) in world.runtime.calls
        assert gone
    finally:
        await service.close()


async def test_restart_policy_and_auto_remove_at_boot(world: World) -> None:
    always = await world.run("always", restart_policy=RestartPolicy(name="always"))
    await world.service.stop("always", "", 1)  # manually stopped: `always` restarts at boot
    tmp = await world.create("tmp", auto_remove=True)
    world.store.get(tmp).state.started_at = 1  # it ran once and exited
    world.store.get(tmp).state.finished_at = 2
    await world.store.save(world.store.get(tmp))
    service = await _restart_daemon(world)
    try:
        await until(lambda: service.get("always").running)
        await until(lambda: service.store.by_id(tmp) is None)
        assert always
    finally:
        await service.close()


async def test_orphan_layers_and_runtime_state_are_removed(world: World) -> None:
    world.layers.layers["f" * 64] = RWLayer("f" * 64, "x", None, None, 0)
    world.runtime.procs["e" * 64] = Proc(4)
    service = await _restart_daemon(world)
    try:
        assert "f" * 64 not in world.layers.layers
        assert ("delete", "e" * 64, True) in world.runtime.calls
    finally:
        await service.close()


async def test_dead_containers_are_removed_at_boot(world: World) -> None:
    cid = await world.create("dying")
    c = world.store.get(cid)
    from pymoby.daemon.containers.state import Event

    c.apply(Event.MARK_DEAD)
    await world.store.save(c)
    service = await _restart_daemon(world)
    try:
        await until(lambda: service.store.by_id(cid) is None)
        assert cid not in world.layers.layers
    finally:
        await service.close()


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def created(self, c: object) -> None:
        self.seen.append(("created", c.name))  # type: ignore[attr-defined]

    def restored(self, c: object) -> None:
        self.seen.append(("restored", c.name))  # type: ignore[attr-defined]

    def removed(self, c: object) -> None:
        self.seen.append(("removed", c.name))  # type: ignore[attr-defined]


async def test_listeners_follow_create_restore_and_remove(world: World) -> None:
    rec = Recorder()
    world.service.add_listener(rec)
    cid = await world.run("web")
    await world.create("idle")
    world.runtime.adopted[cid] = AdoptedState(cid, "running", pid=7, conmon_alive=True)
    later = Recorder()
    world.layers.mounts.clear()
    service = ContainerService(
        ContainerStore(world.meta),
        runtime=world.runtime,
        layers=world.layers,
        images=world.images,
        events=EventBus(),
        env=env(world.tmp),
    )
    service.add_listener(later)
    await service.start()
    try:
        await service.remove("web", force=True, volumes=False, link=False)
        assert rec.seen == [("created", "/web"), ("created", "/idle")]
        assert later.seen == [
            ("created", "/web"),
            ("created", "/idle"),
            ("restored", "/web"),
            ("removed", "/web"),
        ]
    finally:
        await service.close()


async def test_an_interrupted_start_is_cleaned_at_boot(world: World) -> None:
    cid = await world.create("half")
    world.runtime.procs[cid] = Proc(11, "created")  # conmon + runc create ran, status not saved
    service = await _restart_daemon(world)
    try:
        assert ("delete", cid, True) in world.runtime.calls
        assert world.layers.mounts == {}
        assert service.get("half").state_name == "created"
        await service.start_container("half")  # the runtime no longer has it: start works
        assert service.get("half").running
    finally:
        await service.close()
