"""docker rmi / image prune / images / inspect / history / tag on real stores."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from images_testlib import Env, Img, chunks, config, docker_save, drain, layer_tar, open_env, sha256

from pymoby import errdefs
from pymoby.api import reference as refs
from pymoby.api.filters import Filters
from pymoby.daemon.images.delete import ImageUser
from pymoby.store.images import chain_id_of

L1 = layer_tar({"base": b"1" * 100})
L2 = layer_tar({"mid": b"2" * 200})
L3 = layer_tar({"top": b"3" * 300})


class Users:
    def __init__(self) -> None:
        self.by_image: dict[str, list[ImageUser]] = {}

    def __call__(self, image_id: str) -> Sequence[ImageUser]:
        return self.by_image.get(image_id, [])


@pytest.fixture
def users() -> Users:
    return Users()


@pytest.fixture
def env(tmp_path: Path, users: Users) -> Iterator[Env]:
    e = open_env(tmp_path, users=users)
    try:
        yield e
    finally:
        e.close()


async def load(env: Env, *images: Img) -> None:
    await drain(env.service.load(chunks(docker_save(list(images))), quiet=True, platforms=[]))


def records(items: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [("Untagged", i.untagged) if i.untagged else ("Deleted", i.deleted) for i in items]


async def test_rmi_tag_untags_then_deletes_with_layers(env: Env) -> None:
    img = Img([L1, L2], tags=["me/a:1", "me/a:2"], labels={"l": "v"})
    await load(env, img)
    out = await env.service.delete("me/a:1", force=False, prune=True)
    assert records(out) == [("Untagged", "me/a:1")]
    out = await env.service.delete("me/a:2", force=False, prune=True)
    chain2 = chain_id_of([sha256(L1), sha256(L2)])
    assert records(out) == [
        ("Untagged", "me/a:2"),
        ("Deleted", img.id),
        ("Deleted", chain2),
        ("Deleted", sha256(L1)),
    ]
    assert env.layer_rows() == [] and env.layers.driver.ids() == []
    actions = [a for a in env.event_actions() if a[0] in ("untag", "delete")]
    assert actions == [("untag", img.id), ("untag", img.id), ("delete", img.id)]
    untag = next(m for m in env.events.buffered() if m.action == "untag")
    assert untag.actor.attributes == {"l": "v", "name": img.id}


async def test_rmi_by_id(env: Env) -> None:
    one = Img([L1], tags=["me/one:1"])
    many = Img([L2], tags=["me/many:1", "other/many:1"])
    await load(env, one, many)
    out = await env.service.delete(one.id[7:19], force=False, prune=True)
    assert records(out)[:2] == [("Untagged", "me/one:1"), ("Deleted", one.id)]
    with pytest.raises(errdefs.Conflict) as err:
        await env.service.delete(many.id, force=False, prune=True)
    assert err.value.message == (
        f"conflict: unable to delete {many.id[7:19]} (must be forced) - "
        "image is referenced in multiple repositories"
    )
    out = await env.service.delete(many.id, force=True, prune=True)
    assert records(out)[:3] == [
        ("Untagged", "me/many:1"),
        ("Untagged", "other/many:1"),
        ("Deleted", many.id),
    ]


async def test_rmi_missing(env: Env) -> None:
    with pytest.raises(errdefs.NotFound, match="No such image: nothere:latest"):
        await env.service.delete("nothere", force=False, prune=True)


async def test_rmi_container_conflicts(env: Env, users: Users) -> None:
    img = Img([L1], tags=["me/a:1"])
    await load(env, img)
    users.by_image[img.id] = [ImageUser("c" * 64, running=False)]
    with pytest.raises(errdefs.Conflict) as err:
        await env.service.delete("me/a:1", force=False, prune=True)
    assert err.value.message == (
        'conflict: unable to remove repository reference "me/a:1" (must force) - container '
        f"{'c' * 12} is using its referenced image {img.id[7:19]}"
    )
    with pytest.raises(errdefs.Conflict, match="being used by stopped container cccccccccccc"):
        await env.service.delete(img.id, force=False, prune=True)
    # a running container: a forced untag keeps the (used) image, quietly
    users.by_image[img.id] = [ImageUser("d" * 64, running=True)]
    out = await env.service.delete("me/a:1", force=True, prune=True)
    assert records(out) == [("Untagged", "me/a:1")]
    with pytest.raises(errdefs.Conflict) as err:
        await env.service.delete(img.id, force=True, prune=True)
    assert err.value.message == (
        f"conflict: unable to delete {img.id[7:19]} (cannot be forced) - "
        f"image is being used by running container {'d' * 12}"
    )
    # a stopped container does not keep a forced removal (dockerd's soft conflict)
    users.by_image[img.id] = [ImageUser("c" * 64, running=False)]
    out = await env.service.delete(img.id, force=True, prune=True)
    assert ("Deleted", img.id) in records(out)


def chain_images() -> tuple[Img, Img]:
    h1 = [{"created": "2024-01-01T00:00:00Z", "created_by": "one"}]
    h2 = [*h1, {"created": "2024-01-01T00:00:01Z", "created_by": "two"}]
    parent = Img([L1], config_bytes=config([L1], history=h1, created="2024-01-01T00:00:00Z"))
    child = Img(
        [L1, L2],
        tags=["me/child:1"],
        config_bytes=config([L1, L2], history=h2, created="2024-01-01T00:00:01Z"),
    )
    child.parent = parent.id
    return parent, child


async def test_rmi_children_and_pruning_parents(env: Env) -> None:
    parent, child = chain_images()
    await load(env, parent, child)
    with pytest.raises(errdefs.Conflict, match="image has dependent child images"):
        await env.service.delete(parent.id, force=True, prune=True)
    out = await env.service.delete("me/child:1", force=False, prune=False)  # noprune
    assert ("Deleted", child.id) in records(out) and ("Deleted", parent.id) not in records(out)
    assert [r.id for r in await env.images.list()] == [parent.id]
    await env.images.delete(parent.id)
    parent2, child2 = chain_images()
    await load(env, parent2, child2)
    out = await env.service.delete("me/child:1", force=False, prune=True)
    got = records(out)
    assert got.index(("Deleted", child2.id)) < got.index(("Deleted", parent2.id))
    assert got[-1] == ("Deleted", sha256(L1))  # the base layer goes with the parent


async def test_tag(env: Env) -> None:
    img = Img([L1], tags=["me/a:1"], labels={"k": "v"})
    await load(env, img)
    await env.service.tag(img.id[7:15], refs.parse_normalized_named("me/b:2"))
    record = await env.images.get(img.id)
    assert record.repo_tags == ["me/a:1", "me/b:2"] and record.last_tag_time is not None
    event = env.events.buffered()[-1]
    assert (event.action, event.actor.attributes) == ("tag", {"k": "v", "name": "me/b:2"})
    with pytest.raises(errdefs.NotFound, match="No such image: zz:latest"):
        await env.service.tag("zz", refs.parse_normalized_named("me/b:3"))


async def test_prune(env: Env) -> None:
    dangling = Img([L1], created="2020-01-01T00:00:00Z")
    tagged = Img([L2], tags=["me/t:1"], labels={"keep": "yes"}, created="2021-01-01T00:00:00Z")
    other = Img([L3], tags=["me/o:1"], created="2022-01-01T00:00:00Z")
    await load(env, dangling, tagged, other)
    report = await env.service.prune(Filters())
    assert [(d.untagged, d.deleted) for d in report.images_deleted or []] == [
        ("", dangling.id),
        ("", sha256(L1)),
    ]
    assert report.space_reclaimed == env.layers.size(sha256(L2)) * 0 + len(b"1" * 100)
    event = env.events.buffered()[-1]
    assert (event.action, event.actor.id, event.actor.attributes) == (
        "prune",
        "",
        {"reclaimed": str(report.space_reclaimed)},
    )
    report = await env.service.prune(Filters({"dangling": ["false"], "label!": ["keep=yes"]}))
    assert {d.untagged for d in report.images_deleted or [] if d.untagged} == {"me/o:1"}
    report = await env.service.prune(
        Filters({"dangling": ["false"], "until": ["2020-06-01T00:00:00Z"]})
    )
    assert report.images_deleted is None and report.space_reclaimed == 0
    with pytest.raises(errdefs.InvalidParameter, match="invalid filter 'bogus'"):
        await env.service.prune(Filters({"bogus": ["1"]}))
    with pytest.raises(errdefs.InvalidParameter, match="more than one until filter specified"):
        await env.service.prune(Filters({"until": ["1h", "2h"]}))


async def test_list_filters(env: Env) -> None:
    old = Img([L1], tags=["me/old:1"], labels={"a": "1"}, created="2020-01-01T00:00:00Z")
    mid = Img([L1, L2], tags=["me/mid:1", "docker.io/other/x:2"], created="2021-01-01T00:00:00Z")
    new = Img([L3], labels={"a": "2"}, created="2022-01-01T00:00:00Z")
    await load(env, old, mid, new)

    async def ids(**filters: list[str]) -> list[str]:
        items = await env.service.images(Filters(filters), all=False, shared_size=False)
        return [i.id for i in items]

    assert await ids() == [new.id, mid.id, old.id]
    assert await ids(dangling=["true"]) == [new.id]
    assert await ids(dangling=["false"]) == [mid.id, old.id]
    assert await ids(label=["a"]) == [new.id, old.id]
    assert await ids(label=["a=1"]) == [old.id]
    assert await ids(before=["me/mid:1"]) == [old.id]
    assert await ids(since=["me/old:1"]) == [new.id, mid.id]
    assert await ids(until=["2021-06-01T00:00:00Z"]) == [mid.id, old.id]
    assert await ids(reference=["me/*"]) == [mid.id, old.id]
    assert await ids(reference=["docker.io/other/*"]) == [mid.id]
    items = await env.service.images(Filters({"reference": ["me/*"]}), all=False, shared_size=True)
    assert items[0].repo_tags == ["me/mid:1"]  # only matching references are listed
    assert items[0].shared_size == items[1].shared_size == env.layers.size(sha256(L1))
    with pytest.raises(errdefs.InvalidParameter, match="invalid filter 'nope'"):
        await ids(nope=["x"])
    with pytest.raises(errdefs.NotFound):
        await ids(before=["missing:1"])
    with pytest.raises(errdefs.InvalidParameter, match="invalid value for 'until' filter"):
        await ids(until=["yesterday"])


async def test_inspect_and_history(env: Env) -> None:
    parent, child = chain_images()
    await load(env, parent, child)
    data = await env.service.inspect("me/child:1", None)
    assert data.id == child.id and data.repo_tags == ["me/child:1"] and data.parent == parent.id
    assert data.size == env.layers.chain_size(chain_id_of([sha256(L1), sha256(L2)]))
    assert data.graph_driver is not None and data.graph_driver.name == "vfs"
    assert (
        data.root_fs_layers == [sha256(L1), sha256(L2)] and data.created == "2024-01-01T00:00:01Z"
    )
    rows = await env.service.history("me/child:1", None)
    assert [(r.id, r.created_by, r.tags) for r in rows] == [
        (child.id, "two", ["me/child:1"]),
        (parent.id, "one", None),
    ]
    assert rows[0].size == env.layers.size(chain_id_of([sha256(L1), sha256(L2)]))
    from pymoby.api.types.images import Platform

    with pytest.raises(errdefs.NotFound, match="does not match the specified platform"):
        await env.service.inspect(child.id, Platform(os="linux", architecture="arm64"))


async def test_disk_usage_and_count(env: Env) -> None:
    await load(env, Img([L1], tags=["me/a:1"]), Img([L1, L2], tags=["me/b:1"]))
    usage = await env.service.disk_usage()
    assert usage.total_count == 2 == await env.service.count()
    assert usage.total_size == sum(layer.size for layer in env.layers.layers())
    assert json.loads(json.dumps([i.id for i in usage.items]))  # summaries are listed
    assert usage.reclaimable == sum(i.size - i.shared_size for i in usage.items)
