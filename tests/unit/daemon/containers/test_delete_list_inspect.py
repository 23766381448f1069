"""Remove, list (filters, texts), inspect and rename over fakes."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from containers_testlib import World, until, world

from pymoby import errdefs
from pymoby.api.filters import Filters
from pymoby.api.types.container_responses import encode_inspect, encode_summaries, inspect_wire
from pymoby.api.versions import ApiVersion
from pymoby.daemon.containers.listing import human_duration, status_text

__all__ = ["world"]


async def test_remove_a_running_container_needs_force(world: World) -> None:
    cid = await world.run("web")
    with pytest.raises(errdefs.Conflict) as err:
        await world.service.remove("web", force=False, volumes=False, link=False)
    assert err.value.message == (
        "container is running: stop the container before removing or force remove"
    )
    removed = await world.service.wait("web", "removed")
    await world.service.remove("web", force=True, volumes=False, link=False)
    assert await asyncio.wait_for(removed, 1) == (137, "")
    assert world.store.by_id(cid) is None and world.store.id_for_name("web") is None
    assert cid not in world.layers.layers and not world.layers.mounts
    assert cid not in world.runtime.procs
    c_root = world.tmp / "data" / "containers" / cid
    assert not c_root.exists()
    assert world.actions()[-3:] == ["kill", "die", "destroy"]
    with pytest.raises(errdefs.NotFound, match="No such container: web"):
        await world.service.remove("web", force=True, volumes=False, link=False)
    await world.create("web")  # the name is free


async def test_remove_a_paused_container_without_force(world: World) -> None:
    await world.run("web")
    await world.service.pause("web")
    with pytest.raises(errdefs.Conflict, match=r"^container is paused: stop the container before"):
        await world.service.remove("web", force=False, volumes=False, link=False)


async def test_lookup_errors(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from pymoby.daemon.containers import names

    ids = iter(["abc1" + "0" * 60, "abc2" + "0" * 60])
    monkeypatch.setattr(names, "new_id", lambda: next(ids))
    await world.create("aa")
    await world.create("bb")
    with pytest.raises(errdefs.InvalidParameter, match='invalid name or ID supplied: ""'):
        world.service.get("")
    with pytest.raises(errdefs.InvalidParameter) as err:
        world.service.get("abc")
    assert err.value.message == "multiple IDs found with provided prefix: abc"
    assert world.service.get("abc2").name == "/bb"
    assert world.service.get("/aa").id.startswith("abc1")
    with pytest.raises(errdefs.NotFound) as missing:
        world.service.get("zzz")
    assert missing.value.message == "No such container: zzz"


async def test_list_filters_and_order(world: World) -> None:
    a = await world.create("aa", labels={"tier": "db"})
    b = await world.run("bb", labels={"tier": "web"})
    c = await world.create("cc")
    world.runtime.exit_on_start[c] = 4
    await world.service.start_container("cc")
    await until(lambda: not world.store.get(c).running)

    async def ids(filters: dict[str, list[str]] | None = None, **kw: object) -> list[str]:
        out = await world.service.containers(
            Filters(filters or {}),
            all=bool(kw.get("all", True)),
            limit=int(kw.get("limit", 0)),  # type: ignore[call-overload]
            size=False,
        )
        return [s.id for s in out]

    assert await ids() == [c, b, a]  # newest first
    assert await ids(all=False) == [b]
    assert await ids(all=False, limit=2) == [c, b]
    assert await ids({"status": ["exited"]}, all=False) == [c]
    assert await ids({"status": ["created"]}) == [a]
    assert await ids({"exited": ["4"]}) == [c]
    assert await ids({"exited": ["0"]}) == []
    assert await ids({"label": ["tier=db"]}) == [a]
    assert await ids({"label": ["tier"]}) == [b, a]
    assert await ids({"name": ["^/?b"]}) == [b]
    assert await ids({"id": [a[:10]]}) == [a]
    assert await ids({"before": ["bb"]}) == [a]
    assert await ids({"since": ["aa"]}) == [c, b]
    assert await ids({"ancestor": ["busybox"]}) == [c, b, a]
    assert await ids({"ancestor": ["nosuch"]}) == []
    assert await ids({"network": ["none"]}) == [c, b, a]
    assert await ids({"health": ["none"]}) == [c, b, a]
    assert await ids({"is-task": ["true"]}) == []
    assert await ids({"publish": ["80"]}) == []
    for bad, message in (
        ({"bogus": ["1"]}, "invalid filter 'bogus'"),
        ({"status": ["up"]}, "invalid filter 'status=up': invalid value for state (up)"),
        ({"exited": ["x"]}, "invalid filter 'exited=x'"),
        ({"health": ["ok"]}, "invalid filter 'health=ok'"),
        ({"publish": ["1:2"]}, "filter for 'publish' should not contain ':'"),
    ):
        with pytest.raises(
            errdefs.InvalidParameter, match=message.replace("(", r"\(").replace(")", r"\)")
        ):
            await ids(bad)
    with pytest.raises(errdefs.NotFound, match="No such container: zz"):
        await ids({"before": ["zz"]})


async def test_list_wire_per_version(world: World) -> None:
    await world.run("web", cmd=["sh", "-c", "echo a b"])
    (s,) = await world.service.containers(Filters(), all=True, limit=0, size=True)
    assert s.command == "sh -c 'echo a b'"
    assert s.status.startswith("Up ") and s.state == "running"
    import json

    new = json.loads(encode_summaries([s], ApiVersion(1, 52)))[0]
    old = json.loads(encode_summaries([s], ApiVersion(1, 51)))[0]
    assert new["Health"] == {"Status": "none", "FailingStreak": 0} and "Health" not in old
    assert new["Names"] == ["/web"] and new["Image"] == "busybox"
    assert new["HostConfig"] == {"NetworkMode": "none"}
    assert list(new["NetworkSettings"]["Networks"]) == ["none"]
    assert new["Ports"] == [] and new["Mounts"] == []


def test_status_texts() -> None:
    assert human_duration(0.5) == "Less than a second"
    assert human_duration(1) == "1 second"
    assert human_duration(3) == "3 seconds"
    assert human_duration(90) == "About a minute"
    assert human_duration(600) == "10 minutes"
    assert human_duration(3600) == "About an hour"
    assert human_duration(5 * 3600) == "5 hours"
    assert human_duration(3 * 86400) == "3 days"
    assert human_duration(20 * 86400) == "2 weeks"
    assert human_duration(90 * 86400) == "3 months"
    assert human_duration(800 * 86400) == "2 years"


async def test_status_text_of_states(world: World) -> None:
    cid = await world.create("aa")
    c = world.store.get(cid)
    assert status_text(c) == "Created"
    await world.service.start_container(cid)
    now = c.state.started_at + 3_000_000_000
    assert status_text(c, now) == "Up 3 seconds"
    await world.service.pause(cid)
    assert status_text(c, now) == "Up 3 seconds (Paused)"
    await world.service.unpause(cid)
    await world.service.kill(cid, "")
    await until(lambda: not c.running)
    assert status_text(c, c.state.finished_at + 2_000_000_000) == "Exited (137) 2 seconds ago"


async def test_inspect(world: World) -> None:
    cid = await world.run("web", cmd=["true"])
    info = await world.service.inspect("web", size=True)
    import json

    wire = json.loads(encode_inspect(info, ApiVersion(1, 52)))
    assert wire["Id"] == cid and wire["Name"] == "/web" and wire["Path"] == "true"
    assert wire["State"]["Status"] == "running" and wire["State"]["Running"] is True
    assert wire["State"]["FinishedAt"] == "0001-01-01T00:00:00Z"
    assert wire["Image"] == world.images.by_name["busybox"].id
    assert wire["Config"]["Image"] == "busybox" and wire["HostConfig"]["NetworkMode"] == "none"
    assert wire["GraphDriver"]["Name"] == "fake" and wire["ExecIDs"] is None
    assert wire["SizeRw"] == 0 and wire["SizeRootFs"] == 0
    assert wire["NetworkSettings"] == {
        "SandboxID": "",
        "SandboxKey": "",
        "Ports": {},
        "Networks": wire["NetworkSettings"]["Networks"],
    }
    legacy = inspect_wire(info, ApiVersion(1, 50))
    assert (
        legacy["NetworkSettings"]["Bridge"] == "" and legacy["NetworkSettings"]["IPAddress"] == ""
    )
    assert legacy["Config"]["OnBuild"] is None and "OnBuild" not in wire["Config"]


async def test_rename(world: World) -> None:
    cid = await world.create("old")
    await world.create("taken")
    await world.service.rename("old", "new")
    assert world.store.get("new").id == cid and world.store.id_for_name("old") is None
    assert world.bus.buffered()[-1].actor.attributes["oldName"] == "/old"
    with pytest.raises(errdefs.Conflict, match="Error when allocating new name: Conflict"):
        await world.service.rename("new", "taken")
    with pytest.raises(errdefs.InvalidParameter, match="same name as its current name"):
        await world.service.rename("new", "new")
    with pytest.raises(errdefs.InvalidParameter, match="Neither old nor new names may be empty"):
        await world.service.rename("new", "")
    with pytest.raises(errdefs.InvalidParameter, match="Invalid container name"):
        await world.service.rename("new", "a b")
