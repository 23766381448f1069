"""POST /containers/create over fakes: the record, the name rules, nothing left on failure."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from containers_testlib import World, image_record, world

from pymoby import errdefs
from pymoby.api.types.containers import Config, HostConfig, LogConfig, Mount, RestartPolicy
from pymoby.daemon.containers.store import ContainerStore

__all__ = ["world"]


async def test_create_makes_row_layer_directory_and_event(world: World) -> None:
    cid = await world.create("web", cmd=["echo", "hi"], labels={"a": "b"})
    c = world.store.get("web")
    assert c.id == cid and c.name == "/web"
    assert (c.path, c.args) == ("echo", ["hi"])
    assert c.config.hostname == cid[:12]
    assert c.config.env == ["PATH=/bin"]  # merged from the image
    assert c.image_id == world.images.by_name["busybox"].id
    assert c.host_config.restart_policy.name == "no"
    assert c.host_config.log_config.type == "json-file"
    assert c.state_name == "created" and not c.running
    assert cid in world.layers.layers and c.root.is_dir()
    init = world.layers.init_roots[0]  # the init layer got its mount points
    assert (init / "etc" / "hosts").is_file() and (init / ".dockerenv").is_file()
    assert (init / "etc" / "mtab").is_symlink()
    assert world.actions() == ["create"]
    msg = world.bus.buffered()[0]
    assert msg.actor.attributes == {"a": "b", "image": "busybox", "name": "web"}
    # persisted: a second store reads the same record
    again = ContainerStore(world.meta)
    loaded = await again.load()
    assert [x.name for x in loaded] == ["/web"] and loaded[0].config.labels == {"a": "b"}


async def test_generated_name_and_prefix_lookup(world: World) -> None:
    cid = await world.create()
    c = world.store.get(cid[:5])
    assert c.id == cid and c.name.startswith("/") and "_" in c.name
    assert world.store.get(c.name[1:]) is c


async def test_name_conflict(world: World) -> None:
    first = await world.create("web")
    with pytest.raises(errdefs.Conflict) as err:
        await world.create("/web")
    assert err.value.message == (
        f'Conflict. The container name "/web" is already in use by container "{first}". You '
        "have to remove (or rename) that container to be able to reuse that name."
    )
    assert len(world.layers.layers) == 1


async def test_invalid_name(world: World) -> None:
    with pytest.raises(errdefs.InvalidParameter, match=r"Invalid container name \(a/b\)"):
        await world.create("a/b")
    assert not world.layers.layers and not world.store.all()


async def test_no_such_image(world: World) -> None:
    with pytest.raises(errdefs.NotFound, match="No such image: nosuch:latest"):
        await world.create("xx", image="nosuch")
    assert world.store.id_for_name("xx") is None


@pytest.mark.parametrize("mode", ["bridge", "mynet"])
async def test_without_a_network_layer_networks_are_501(world: World, mode: str) -> None:
    with pytest.raises(errdefs.NotImplementedErr, match="networking is disabled"):
        await world.create("xx", network=mode)
    assert not world.store.all()


class _Nets:
    """Just enough of the network layer for create: names resolve, unknown ones are 404."""

    def network_name(self, term: str) -> str:
        known = {"bridge": "bridge", "appnet": "appnet", "0123abcd": "appnet"}
        if term not in known:
            raise errdefs.NotFound(f"network {term} not found")
        return known[term]


async def test_endpoints_are_stored_by_network_name(world: World) -> None:
    world.service.deps.networks = _Nets()  # type: ignore[assignment]
    await world.create("xx", network="nope")  # dockerd: start fails, not create
    assert list(world.store.get("xx").endpoints) == ["nope"]
    await world.create("yy", network="0123abcd")
    assert list(world.store.get("yy").endpoints) == ["appnet"]
    await world.create("zz", network="bridge")
    assert list(world.store.get("zz").endpoints) == ["bridge"]


async def test_host_network_takes_the_host_name(world: World) -> None:
    await world.create("hh", network="host")
    assert world.store.get("hh").config.hostname == "testhost"


async def test_no_command_anywhere(world: World) -> None:
    world.images.add("empty", image_record(cmd=[]))
    with pytest.raises(errdefs.InvalidParameter, match="no command specified"):
        await world.create("xx", image="empty")


async def test_failed_layer_create_leaves_nothing(world: World) -> None:
    world.layers.fail_create = errdefs.System("disk full")
    with pytest.raises(errdefs.System, match="disk full"):
        await world.create("xx")
    assert world.store.id_for_name("xx") is None
    assert not world.store.all()
    world.layers.fail_create = None
    await world.create("xx")  # the name is free again


async def test_failed_row_insert_removes_the_layer_and_directory(world: World) -> None:
    async def broken_add(c: object) -> None:
        raise errdefs.Unavailable("metadata store is locked")

    world.store.add = broken_add  # type: ignore[method-assign]
    with pytest.raises(errdefs.Unavailable):
        await world.create("xx")
    assert not world.layers.layers
    assert not list((world.tmp / "data" / "containers").iterdir())
    assert world.store.id_for_name("xx") is None


async def test_log_drivers(world: World) -> None:
    with pytest.raises(errdefs.NotImplementedErr, match='log driver "syslog"'):
        await world.create("aa", log_config=LogConfig(type="syslog"))
    with pytest.raises(errdefs.InvalidParameter, match="no log driver named 'bogus'"):
        await world.create("bb", log_config=LogConfig(type="bogus"))
    with pytest.raises(errdefs.InvalidParameter, match="unknown log opt 'x' for json-file"):
        await world.create("cc", log_config=LogConfig(type="json-file", config={"x": "1"}))
    await world.create("dd", log_config=LogConfig(type="local", config={"max-size": "1m"}))


async def test_volumes_are_refused_until_they_exist(world: World) -> None:
    with pytest.raises(errdefs.NotImplementedErr, match="named volumes"):
        await world.create("aa", binds=["data:/data"])
    with pytest.raises(errdefs.NotImplementedErr, match='mounts of type "volume"'):
        await world.create("bb", mounts=[Mount(type="volume", target="/v")])
    world.images.add("withvol", image_record(Volumes={"/var/lib/x": {}}))
    cid, warnings = await world.service.create(
        "cc", Config(image="withvol"), HostConfig(network_mode="none"), {}, None
    )
    assert any("VOLUME /var/lib/x" in w for w in warnings)
    assert world.store.get(cid)


async def test_bind_mounts_are_listed(world: World, tmp_path: Path) -> None:
    await world.create("bb", binds=[f"{tmp_path}:/host:ro"])
    (m,) = world.store.get("bb").mounts
    assert (m.type, m.source, m.destination, m.rw, m.mode) == (
        "bind",
        str(tmp_path),
        "/host",
        False,
        "ro",
    )


async def test_validation_errors_come_from_validate_host_config(world: World) -> None:
    with pytest.raises(errdefs.InvalidParameter, match="can't create 'AutoRemove' container"):
        await world.create("xx", auto_remove=True, restart_policy=RestartPolicy(name="always"))
