"""The image + reference store: dockerd's lookup, tag and delete rules, one transaction each."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from pymoby import errdefs
from pymoby.api import reference as r
from pymoby.store import images as im
from pymoby.store.images import ImageStore
from pymoby.store.meta import MetaStore

_serial = count()


def diff(n: int) -> str:
    return "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()


def config(*diff_ids: str, **extra: Any) -> bytes:
    """A distinct image config (a serial number in `comment` keeps IDs apart)."""
    doc: dict[str, Any] = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-05-01T10:20:30.5Z",
        "comment": f"#{next(_serial)}",
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
    }
    doc.update(extra)
    return json.dumps(doc).encode()


def ref(text: str) -> r.Reference:
    return r.parse_normalized_named(text)


@pytest.fixture
def meta(tmp_path: Path) -> Iterator[MetaStore]:
    with MetaStore.open(tmp_path / "meta.db") as store:
        yield store


@pytest.fixture
def store(meta: MetaStore) -> ImageStore:
    return ImageStore(meta)


async def new_image(store: ImageStore, *diff_ids: str, **extra: Any) -> im.ImageRecord:
    return await store.create(config(*diff_ids, **extra), im.chain_id_of(diff_ids), 10)


# -- create ----------------------------------------------------------------------------------------


async def test_create_keeps_the_config_verbatim_and_ids_it_by_sha256(store: ImageStore) -> None:
    raw = b'{ "rootfs" : {"type":"layers","diff_ids":["%s"]},\n "os":"linux", "zzz": [1, 2] }' % (
        diff(1).encode()
    )
    record = await store.create(raw, diff(1), 1234)
    assert record.id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert record.config == raw
    assert (record.chain_id, record.size, record.created, record.parent) == (
        diff(1),
        1234,
        None,
        None,
    )
    assert record.last_tag_time is None and record.references == () and record.children == ()
    assert (await store.get(record.id)).config == raw
    assert record.decode_config().os == "linux"


async def test_create_is_idempotent_by_id(store: ImageStore) -> None:
    data = config(diff(1))
    first = await store.create(data, diff(1), 10)
    assert await store.create(data, diff(1), 99) == first  # the stored row wins
    assert len(await store.list()) == 1


async def test_create_derives_created_and_checks_the_chain(store: ImageStore) -> None:
    layers = (diff(1), diff(2), diff(3))
    top = im.chain_id_of(layers)
    record = await store.create(config(*layers), top, 30)
    assert record.chain_id == top
    assert record.created == 1714558830_500000000
    empty = await store.create(config(), None, 0)
    assert empty.chain_id is None
    with pytest.raises(errdefs.System, match="chain ID"):
        await store.create(config(diff(1)), diff(2), 1)
    with pytest.raises(errdefs.System, match="chain ID"):
        await store.create(config(), diff(2), 1)


def test_chain_id_follows_the_image_spec() -> None:
    assert im.chain_id_of([]) is None
    assert im.chain_id_of([diff(1)]) == diff(1)
    two = "sha256:" + hashlib.sha256(f"{diff(1)} {diff(2)}".encode()).hexdigest()
    assert im.chain_id_of([diff(1), diff(2)]) == two
    three = "sha256:" + hashlib.sha256(f"{two} {diff(3)}".encode()).hexdigest()
    assert im.chain_id_of([diff(1), diff(2), diff(3)]) == three


@pytest.mark.parametrize(
    ("data", "chain", "error", "message"),
    [
        (b'{"os":"linux"}', None, errdefs.InvalidParameter, "^invalid image JSON, no RootFS key$"),
        (b"not json", None, errdefs.InvalidParameter, "^invalid image JSON"),
        (
            config(history=[{"created_by": "a"}]),
            None,
            errdefs.InvalidParameter,
            "^too many non-empty layers in History section$",
        ),
        (config(diff(1), os="windows"), diff(1), errdefs.InvalidParameter, "^operating system is"),
    ],
)  # fmt: skip
async def test_create_refuses_bad_configs(
    store: ImageStore, data: bytes, chain: str | None, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await store.create(data, chain, 1)
    assert await store.list() == []


async def test_create_accepts_history_with_empty_layers_and_os_without_layers(
    store: ImageStore,
) -> None:
    history = [{"created_by": "a"}, {"created_by": "b", "empty_layer": True}]
    await store.create(config(diff(1), history=history), diff(1), 1)
    await store.create(config(os="windows"), None, 0)  # no layer, nothing to run
    await store.create(config(diff(1), os="Linux"), diff(1), 1)  # EqualFold
    await store.create(config(diff(1), os=""), diff(1), 1)  # empty: the host's


async def test_parent_must_exist_and_can_be_set_later(store: ImageStore) -> None:
    base = await new_image(store, diff(1))
    unknown = "sha256:" + "0" * 64
    with pytest.raises(errdefs.NotFound, match=f"^unknown parent image ID {unknown}$"):
        await store.create(config(diff(1), diff(2)), im.chain_id_of([diff(1), diff(2)]), 1, unknown)
    data = config(diff(1), diff(2))
    child = await store.create(data, im.chain_id_of([diff(1), diff(2)]), 1, base.id)
    assert child.parent == base.id
    assert (await store.get(base.id)).children == (child.id,)
    other = await new_image(store, diff(5))
    again = await store.create(data, im.chain_id_of([diff(1), diff(2)]), 1, other.id)
    assert again.parent == other.id  # dockerd: Create, then SetParent
    assert await store.children(base.id) == []
    await store.set_parent(child.id, base.id)
    assert await store.children(base.id) == [child.id]
    with pytest.raises(errdefs.NotFound, match="unknown parent image ID"):
        await store.set_parent(child.id, unknown)
    with pytest.raises(im.ImageNotFound):
        await store.set_parent(unknown, base.id)


# -- tags and digests ------------------------------------------------------------------------------


async def test_tag_defaults_to_latest_and_records_the_tag_time(store: ImageStore) -> None:
    img = await new_image(store, diff(1))
    before = time.time_ns()
    await store.tag(img.id, ref("busybox"), force=False)
    tagged = await store.get(img.id)
    assert tagged.repo_tags == ["busybox:latest"]
    assert tagged.last_tag_time is not None and tagged.last_tag_time >= before
    other = await new_image(store, diff(2))
    await store.tag(other.id, ref("pulled:1"), force=True, touch=False)
    assert (await store.get(other.id)).last_tag_time is None


async def test_retagging_moves_the_tag_only_when_forced(store: ImageStore) -> None:
    a = await new_image(store, diff(1))
    b = await new_image(store, diff(2))
    await store.tag(a.id, ref("app:v1"), force=False)
    await store.tag(a.id, ref("app:v1"), force=False)  # same image: nothing to do
    with pytest.raises(im.ConflictingTag) as info:
        await store.tag(b.id, ref("app:v1"), force=False)
    assert str(info.value) == (
        f"tag app:v1 is already set to image {a.id}, use the force option to replace it"
    )
    assert isinstance(info.value, errdefs.Conflict)
    await store.tag(b.id, ref("docker.io/library/app:v1"), force=True)
    assert (await store.get(a.id)).references == ()
    assert (await store.get(b.id)).repo_tags == ["app:v1"]
    assert await store.get_reference(ref("app:v1")) == b.id


async def test_digest_references(store: ImageStore) -> None:
    a = await new_image(store, diff(1))
    b = await new_image(store, diff(2))
    dgst = "sha256:" + "e" * 64
    with pytest.raises(im.InvalidTag, match=r"^refusing to create a tag with a digest reference$"):
        await store.tag(a.id, ref(f"app@{dgst}"), force=True)
    await store.add_digest(a.id, ref(f"app:v1@{dgst}"), force=True)  # the tag is dropped
    assert (await store.get(a.id)).repo_digests == [f"app@{dgst}"]
    assert (await store.get(a.id)).repo_tags == []
    with pytest.raises(im.ConflictingTag, match=f"^cannot overwrite digest {dgst}$"):
        await store.add_digest(b.id, ref(f"app@{dgst}"), force=True)
    with pytest.raises(errdefs.InvalidParameter):
        await store.add_digest(a.id, ref("app:v1"), force=True)
    assert await store.get_reference(ref(f"app:other@{dgst}")) == a.id  # a digest wins


async def test_sha256_as_a_name_is_refused(store: ImageStore) -> None:
    img = await new_image(store, diff(1))
    with pytest.raises(im.InvalidTag) as info:
        await store.tag(img.id, ref("sha256:abc"), force=True)
    assert str(info.value) == "refusing to create an ambiguous tag using digest algorithm as name"
    await store.tag(img.id, ref("me/sha256:abc"), force=True)  # only the bare name is ambiguous


async def test_tagging_a_missing_image_fails(store: ImageStore) -> None:
    missing = "sha256:" + "0" * 64
    with pytest.raises(im.ImageNotFound, match=f"^No such image: {missing}$"):
        await store.tag(missing, ref("x"), force=True)


async def test_references_are_sorted_as_dockerd_sorts_them(store: ImageStore) -> None:
    img = await new_image(store, diff(1))
    dgst = "sha256:" + "e" * 64
    for text in ("zeta", "localhost/a", "example.com/b:2", "alpha:1", "alpha:0"):
        await store.tag(img.id, ref(text), force=False)
    await store.add_digest(img.id, ref(f"alpha@{dgst}"), force=False)
    record = await store.get(img.id)
    # by the full normalised string: docker.io/... < example.com/... < localhost/...
    assert record.repo_tags == [
        "alpha:0", "alpha:1", "zeta:latest", "example.com/b:2", "localhost/a:latest",
    ]  # fmt: skip
    assert record.repo_digests == [f"alpha@{dgst}"]
    assert [str(x) for x in await store.references_of(img.id)][:3] == [
        "docker.io/library/alpha:0", "docker.io/library/alpha:1", f"docker.io/library/alpha@{dgst}",
    ]  # fmt: skip
    by_name = await store.references_by_name(ref("alpha:whatever"))
    assert [(r.familiar_string(x), i) for x, i in by_name] == [
        ("alpha:0", img.id), ("alpha:1", img.id), (f"alpha@{dgst}", img.id),
    ]  # fmt: skip


async def test_references_are_stored_normalised(store: ImageStore) -> None:
    img = await new_image(store, diff(1))
    await store.tag(img.id, r.parse("me/app"), force=False)  # not normalised by the caller
    await store.tag(img.id, r.parse("index.docker.io/solo:1"), force=False)
    hex_name = ref("docker.io/" + "a" * 64)  # valid with a domain, but its familiar form is not
    await store.tag(img.id, hex_name, force=False)
    assert [str(x) for x in await store.references_of(img.id)] == [
        "docker.io/library/" + "a" * 64 + ":latest",
        "docker.io/library/solo:1",
        "docker.io/me/app:latest",
    ]
    assert await store.get_reference(hex_name) == img.id
    assert (await store.resolve("docker.io/" + "a" * 64)).id == img.id


async def test_untag(store: ImageStore) -> None:
    img = await new_image(store, diff(1))
    dgst = "sha256:" + "e" * 64
    await store.tag(img.id, ref("app"), force=False)
    await store.tag(img.id, ref("app:v1"), force=False)
    await store.add_digest(img.id, ref(f"app@{dgst}"), force=False)
    removed, image_id = await store.untag(ref("app"))  # a bare name means :latest
    assert (str(removed), image_id) == ("docker.io/library/app:latest", img.id)
    removed, _ = await store.untag(ref(f"app:v1@{dgst}"))  # the digest wins
    assert str(removed) == f"docker.io/library/app@{dgst}"
    assert (await store.get(img.id)).repo_tags == ["app:v1"]
    with pytest.raises(im.ReferenceNotFound, match=r"^reference does not exist$"):
        await store.untag(ref("app"))


# -- resolve ---------------------------------------------------------------------------------------


async def test_resolve_by_reference_and_id(store: ImageStore) -> None:
    img = await new_image(store, diff(1))
    await store.tag(img.id, ref("busybox"), force=False)
    hex_id = img.id.removeprefix("sha256:")
    for text in (
        "busybox", "busybox:latest", "docker.io/library/busybox", "index.docker.io/busybox:latest",
        img.id, hex_id, hex_id[:12], hex_id[:1], "sha256:" + hex_id[:5],
    ):  # fmt: skip
        assert (await store.resolve(text)).id == img.id, text
    assert store.resolve_sync("busybox").id == img.id


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("nope", im.ImageNotFound, "No such image: nope:latest"),
        ("me/nope:v1", im.ImageNotFound, "No such image: me/nope:v1"),
        ("localhost:5000/x", im.ImageNotFound, "No such image: localhost:5000/x:latest"),
        ("0" * 64, im.ImageNotFound, "No such image: sha256:" + "0" * 64),
        ("sha256:" + "0" * 64, im.ImageNotFound, "No such image: sha256:" + "0" * 64),
        ("sha256:00", im.ImageNotFound, "No such image: sha256:00"),
        ("sha256:" + "A" * 64, im.ImageNotFound, "No such image: sha256:" + "A" * 64),
        ("md5:" + "0" * 32, im.ImageNotFound, "No such image: md5:" + "0" * 32),
        ("Busybox", errdefs.InvalidParameter,
         "invalid reference format: repository name (library/Busybox) must be lowercase"),
        ("a b", errdefs.InvalidParameter, "invalid reference format"),
    ],
)  # fmt: skip
async def test_resolve_errors(
    store: ImageStore, text: str, error: type[Exception], message: str
) -> None:
    await new_image(store, diff(1))
    with pytest.raises(error) as info:
        await store.resolve(text)
    assert str(info.value) == message


async def test_an_ambiguous_id_prefix_is_not_found(store: ImageStore) -> None:
    seen: dict[str, str] = {}
    while True:  # 17 images always contain two IDs with the same first hex digit
        img = await new_image(store)
        first = img.id[len("sha256:")]
        if first in seen:
            break
        seen[first] = img.id
    for prefix, shown in ((first, f"{first}:latest"), ("sha256:" + first, "sha256:" + first)):
        with pytest.raises(im.ImageNotFound) as info:
            await store.resolve(prefix)
        assert str(info.value) == f"No such image: {shown}"  # `sha256` is a name, `x` a tag
    assert (await store.resolve(img.id[:20])).id == img.id  # a longer prefix is unique


async def test_a_tag_wins_over_an_id_prefix(store: ImageStore) -> None:
    a = await new_image(store, diff(1))
    b = await new_image(store, diff(2))
    prefix = b.id.removeprefix("sha256:")[:12]
    await store.tag(a.id, ref(prefix), force=False)
    assert (await store.resolve(prefix)).id == a.id
    assert (await store.resolve(prefix[:11])).id == b.id


# -- delete, children, list ------------------------------------------------------------------------


async def test_delete(store: ImageStore) -> None:
    base = await new_image(store, diff(1))
    layers = [diff(1), diff(2)]
    child = await store.create(config(*layers), im.chain_id_of(layers), 1, base.id)
    await store.tag(base.id, ref("base"), force=False)
    with pytest.raises(errdefs.Conflict, match="reference"):
        await store.delete(base.id)
    await store.untag(ref("base"))
    deleted = await store.delete(base.id)
    assert (deleted.id, deleted.chain_id) == (base.id, diff(1))
    assert (await store.get(child.id)).parent is None  # dockerd drops the children's parent
    with pytest.raises(im.ImageNotFound, match=f"^No such image: {base.id}$"):
        await store.get(base.id)
    with pytest.raises(im.ImageNotFound):
        await store.delete(base.id)


async def test_list_returns_everything_in_one_snapshot(store: ImageStore) -> None:
    base = await new_image(store, diff(1))
    child = await store.create(
        config(diff(1), diff(2)), im.chain_id_of([diff(1), diff(2)]), 1, base.id
    )
    await store.tag(child.id, ref("c:1"), force=False)
    records = {x.id: x for x in await store.list()}
    assert records[base.id].children == (child.id,)
    assert records[child.id].repo_tags == ["c:1"] and records[child.id].parent == base.id
    assert store.list_sync() == sorted(records.values(), key=lambda x: x.id)


# -- transactions ----------------------------------------------------------------------------------


async def test_a_failure_inside_a_transaction_leaves_nothing(meta: MetaStore) -> None:
    store = ImageStore(meta)
    holder = await new_image(store, diff(9))
    await store.tag(holder.id, ref("taken"), force=False)
    data = config(diff(1))

    def create_then_conflict(conn: sqlite3.Connection) -> None:
        created = im.create_in(conn, data, diff(1), 5)
        im.tag_in(conn, created.id, ref("fresh"), force=False, last_tag_time=1)
        im.tag_in(conn, created.id, ref("taken"), force=False)  # conflicts: everything rolls back

    with pytest.raises(im.ConflictingTag):
        await meta.write(create_then_conflict)
    assert [x.id for x in await store.list()] == [holder.id]
    assert await store.get_reference(ref("fresh")) is None


def test_sync_variants_and_persistence(tmp_path: Path) -> None:
    with MetaStore.open(tmp_path / "m.db") as meta:
        store = ImageStore(meta)
        record = store.create_sync(config(diff(1)), diff(1), 3)
        assert store.get_sync(record.id) == record
    with MetaStore.open(tmp_path / "m.db") as meta:
        assert ImageStore(meta).get_sync(record.id) == record


# -- dockerd's rmi messages, defined here for the image service ------------------------------------


def test_delete_conflict_messages() -> None:
    image_id = "sha256:" + "ab" * 32
    container = "c" * 64
    cases = {
        im.ImageDeleteConflict.dependent_child(image_id): (
            "conflict: unable to delete abababababab (cannot be forced) - "
            "image has dependent child images",
            True,
            False,
        ),
        im.ImageDeleteConflict.running_container(image_id, container): (
            "conflict: unable to delete abababababab (cannot be forced) - "
            "image is being used by running container cccccccccccc",
            True,
            True,
        ),
        im.ImageDeleteConflict.referenced(image_id): (
            "conflict: unable to delete abababababab (must be forced) - "
            "image is referenced in multiple repositories",
            False,
            False,
        ),
        im.ImageDeleteConflict.stopped_container(image_id, container): (
            "conflict: unable to delete abababababab (must be forced) - "
            "image is being used by stopped container cccccccccccc",
            False,
            True,
        ),
    }
    for error, (message, hard, used) in cases.items():
        assert (str(error), error.hard, error.used) == (message, hard, used)
        assert isinstance(error, errdefs.Conflict)
    error = im.repository_reference_conflict("busybox", container, image_id)
    assert str(error) == (
        'conflict: unable to remove repository reference "busybox" (must force) - '
        "container cccccccccccc is using its referenced image abababababab"
    )


def test_id_helpers() -> None:
    image_id = "sha256:" + "0123456789" * 6 + "abcd"
    assert im.truncate_id(image_id) == "012345678901"
    assert im.truncate_id("abc") == "abc"
    assert im.is_image_id_prefix(image_id, "0123")
    assert im.is_image_id_prefix(image_id, "sha256:0123")
    assert not im.is_image_id_prefix(image_id, "busybox")
    dgst = "sha256:" + "e" * 64
    one_repo = [ref("a:1"), ref(f"a@{dgst}")]
    assert im.is_single_reference([ref("a:1")])
    assert not im.is_single_reference([])
    assert im.is_single_reference(one_repo)
    assert im.is_single_reference([ref(f"a@{dgst}"), ref(f"a@sha256:{'f' * 64}")])
    assert not im.is_single_reference([ref("a:1"), ref("a:2")])
    assert not im.is_single_reference([ref("a:1"), ref(f"b@{dgst}")])
    assert not im.is_single_reference([ref(f"a@{dgst}"), ref(f"b@{dgst}")])
