"""Start, stop, kill, restart, pause, wait, exits, restart policies, AutoRemove over fakes."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from containers_testlib import SIGTERM, World, settle, until, world

from pymoby import errdefs
from pymoby.api.types.containers import RestartPolicy
from pymoby.daemon.containers import lifecycle
from pymoby.daemon.containers.monitor import should_restart

__all__ = ["world"]


async def test_start_runs_the_runtime_in_order_and_records_running(world: World) -> None:
    cid = await world.create("web", cmd=["sleep", "9"])
    await world.service.start_container("web")
    c = world.store.get(cid)
    assert world.runtime.names() == ["create", "start"]
    assert c.running and c.state.pid == world.runtime.procs[cid].pid and c.state.started_at
    assert world.layers.mounts == {cid: 1}
    spec = json.loads((c.bundle / "config.json").read_text())
    assert spec["process"]["args"] == ["sleep", "9"]
    assert spec["root"]["path"] == str(world.layers.root / cid / "diff")
    assert spec["hostname"] == cid[:12]
    assert (c.root / "hostname").read_text() == cid[:12] + "\n"
    assert "127.0.0.1\tlocalhost" in (c.root / "hosts").read_text()
    assert c.hosts_path == str(c.root / "hosts")
    assert world.actions() == ["create", "start"]
    assert cid in world.runtime.watch.forgotten  # type: ignore[union-attr]
    # conmon is under way while the bundle is written (its cgroup move overlaps that work)
    assert world.runtime.spawned_before_bundle == [True]


async def test_a_start_that_fails_before_the_bundle_abandons_the_runtime(world: World) -> None:
    cid = await world.create("nomount", cmd=["true"])
    world.layers.mount_error = errdefs.System("mount failed")
    with pytest.raises(errdefs.System, match="mount failed"):
        await world.service.start_container("nomount")
    assert world.runtime.abandoned == [cid]
    assert world.runtime.names() == [] and cid not in world.runtime.procs
    c = world.store.get(cid)
    assert c.state_name == "created" and not c.running


async def test_start_of_a_running_container_is_not_modified(world: World) -> None:
    await world.run("web")
    with pytest.raises(errdefs.NotModified, match="container is already running"):
        await world.service.start_container("web")


async def test_wait_registered_before_start_sees_that_exit(world: World) -> None:
    cid = await world.create("job")
    world.runtime.exit_on_start[cid] = 3
    pending = await world.service.wait("job", "next-exit")
    await world.service.start_container("job")
    assert await asyncio.wait_for(pending, 2) == (3, "")
    c = world.store.get(cid)
    assert c.state_name == "exited" and c.state.exit_code == 3 and c.state.pid == 0
    assert world.layers.mounts == {}  # unmounted at exit
    assert ("delete", cid, True) in world.runtime.calls
    assert not c.bundle.exists()
    die = world.bus.buffered()[-1]
    assert die.action == "die" and die.actor.attributes["exitCode"] == "3"


async def test_not_running_wait_is_immediate_for_a_stopped_container(world: World) -> None:
    await world.create("job")
    assert await asyncio.wait_for(await world.service.wait("job", "not-running"), 1) == (0, "")


async def test_stop_sends_the_stop_signal_then_kill(world: World) -> None:
    cid = await world.run("web", stop_signal="SIGUSR1")
    world.runtime.ignore = {10}
    await world.service.stop("web", "", 0)
    kills = [c for c in world.runtime.calls if c[0] == "kill"]
    assert [k[2] for k in kills] == [10, 9]
    c = world.store.get(cid)
    assert c.state.exit_code == 137 and c.manually_stopped
    assert world.actions()[-4:] == ["kill", "kill", "die", "stop"]
    with pytest.raises(errdefs.NotModified, match="container is already stopped"):
        await world.service.stop("web", "", None)


async def test_stop_with_a_signal_that_ends_it(world: World) -> None:
    await world.run("web")
    await world.service.stop("web", "SIGINT", 5)
    assert world.store.get("web").state.exit_code == 130
    assert world.actions()[-3:] == ["kill", "die", "stop"]


async def test_kill_with_a_signal_and_errors(world: World) -> None:
    world.runtime.ignore = {10}
    await world.run("web")
    await world.service.kill("web", "USR1")
    assert world.store.get("web").running
    assert world.bus.buffered()[-1].actor.attributes["signal"] == "10"
    with pytest.raises(
        errdefs.InvalidParameter, match="cannot kill container: web: Invalid signal: FOO"
    ):
        await world.service.kill("web", "FOO")
    with pytest.raises(errdefs.InvalidParameter, match="does not support signal 99"):
        await world.service.kill("web", "99")
    await world.service.kill("web", "")
    await until(lambda: not world.store.get("web").running)
    with pytest.raises(errdefs.Conflict) as err:
        await world.service.kill("web", "KILL")
    cid = world.store.get("web").id
    assert err.value.message == f"cannot kill container: web: container {cid} is not running"
    with pytest.raises(
        errdefs.NotFound, match="cannot kill container: nope: No such container: nope"
    ):
        await world.service.kill("nope", "")


async def test_pause_and_unpause(world: World) -> None:
    cid = await world.run("web")
    await world.service.pause("web")
    c = world.store.get(cid)
    assert c.paused and c.running and c.state_name == "paused"
    with pytest.raises(errdefs.Conflict, match="is already paused"):
        await world.service.pause("web")
    with pytest.raises(errdefs.Conflict, match="cannot start a paused container"):
        await world.service.start_container("web")
    await world.service.unpause("web")
    assert not c.paused and c.running
    with pytest.raises(errdefs.System, match=f"Container {cid} is not paused"):
        await world.service.unpause("web")
    assert world.actions()[-2:] == ["pause", "unpause"]


async def test_restart(world: World) -> None:
    cid = await world.run("web")
    first = world.store.get(cid).state.pid
    await world.service.restart("web", "", 1)
    c = world.store.get(cid)
    assert c.running and c.state.pid != first and c.restart_count == 0
    assert world.actions()[-5:] == ["kill", "die", "stop", "start", "restart"]


async def test_failed_start_records_127_and_leaves_nothing(world: World) -> None:
    cid = await world.create("bad", cmd=["nope"])
    world.runtime.create_error = (
        'runc create failed: unable to start container process: exec: "nope": executable '
        "file not found in $PATH"
    )
    with pytest.raises(errdefs.InvalidParameter, match="executable file not found"):
        await world.service.start_container("bad")
    c = world.store.get(cid)
    assert c.state_name == "created" and c.state.exit_code == 127
    assert "executable file not found" in c.state.error
    assert world.layers.mounts == {} and not c.bundle.exists()


async def test_failed_runc_start_deletes_the_runtime_state(world: World) -> None:
    from pymoby.runtime.runc import RuncError

    cid = await world.create("bad")
    world.runtime.start_error = RuncError("boom")
    with pytest.raises(errdefs.System, match="boom"):
        await world.service.start_container("bad")
    assert cid not in world.runtime.procs and world.layers.mounts == {}
    assert world.store.get(cid).state.exit_code == 128


async def test_oom_exit(world: World) -> None:
    cid = await world.run("hog")
    world.runtime.exit(cid, 137, oom=True)
    await until(lambda: not world.store.get(cid).running)
    c = world.store.get(cid)
    assert c.state.oom_killed and c.state.exit_code == 137
    assert world.actions()[-2:] == ["oom", "die"]


async def test_auto_remove_after_exit(world: World) -> None:
    cid = await world.create("tmp", auto_remove=True)
    pending = await world.service.wait("tmp", "removed")
    world.runtime.exit_on_start[cid] = 0
    await world.service.start_container("tmp")
    assert await asyncio.wait_for(pending, 2) == (0, "")
    assert world.store.by_id(cid) is None and cid not in world.layers.layers
    assert world.actions()[-2:] == ["die", "destroy"]


async def test_on_failure_restarts_up_to_the_limit(world: World) -> None:
    cid = await world.run(
        "flaky", restart_policy=RestartPolicy(name="on-failure", maximum_retry_count=2)
    )
    c = world.store.get(cid)
    for expected in (1, 2):
        world.runtime.exit(c.id, 1)
        await until(lambda e=expected: c.restart_count == e and c.state_name == "running")  # type: ignore[misc]
    world.runtime.exit(c.id, 1)
    await until(lambda: c.state_name == "exited")
    assert c.restart_count == 2
    assert world.actions().count("start") == 3


async def test_a_kill_cancels_the_next_restart(world: World) -> None:
    cid = await world.run("always", restart_policy=RestartPolicy(name="always"))
    await world.service.stop("always", "", 1)
    await settle()
    c = world.store.get(cid)
    assert c.state_name == "exited" and c.restart_count == 0


def test_unless_stopped_and_backoff() -> None:
    class C:
        def __init__(self, policy: str) -> None:
            self.host_config = type("H", (), {"restart_policy": RestartPolicy(name=policy)})()
            self.restart_cancelled = False
            self.restart_delay = 0.0
            self.manually_stopped = False
            self.restart_count = 0

    c = C("unless-stopped")
    assert should_restart(c, 0, 1) == (True, 0.1)  # type: ignore[arg-type]
    assert should_restart(c, 0, 1) == (True, 0.2)  # type: ignore[arg-type]
    assert should_restart(c, 0, 11) == (True, 0.1)  # type: ignore[arg-type]
    c.manually_stopped = True
    assert should_restart(c, 0, 1)[0] is False  # type: ignore[arg-type]
    c.restart_delay = 50
    assert should_restart(c, 0, 1)[1] == 60  # type: ignore[arg-type]
    assert should_restart(C("no"), 1, 1) == (False, 0.0)  # type: ignore[arg-type]


def test_classify_start_errors() -> None:
    assert lifecycle.classify_start_error(Exception("exec: permission denied"))[0] == 126
    assert lifecycle.classify_start_error(Exception("no such file or directory"))[0] == 127
    code, err = lifecycle.classify_start_error(Exception("something odd"))
    assert code == 128 and isinstance(err, errdefs.System)


async def test_kill_of_a_vanished_process_checks_the_exit(world: World) -> None:
    cid = await world.run("web")
    world.runtime.procs.pop(cid)  # runc forgot it; the exit will come from the watcher
    with pytest.raises(errdefs.NotFound, match="no such process"):
        await world.service.kill("web", "TERM")
    await settle()
    assert cid in world.runtime.watch.checked  # type: ignore[union-attr]
    assert SIGTERM == 15
