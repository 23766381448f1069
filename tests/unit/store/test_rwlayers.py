"""Container layers: create (with init layer), counted mounts, adoption, removal; deep chains."""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from layer_testlib import fake_extract, fake_reassemble, make_tar, tree, unmount_all

from pymoby import errdefs
from pymoby.kernel import mount as kmount
from pymoby.store.graphdriver import Overlay2Driver, new_driver
from pymoby.store.layers import Layer, LayerStore
from pymoby.store.meta import MetaStore
from pymoby.store.rwlayers import RWLayerStore


@pytest.fixture
def meta(tmp_path: Path) -> Iterator[MetaStore]:
    store = MetaStore.open(tmp_path / "meta.db")
    yield store
    store.close()


def _layers(meta: MetaStore, driver: object, tmp_path: Path) -> LayerStore:
    return LayerStore.open(
        meta,
        driver,  # type: ignore[arg-type]
        tmp_path / "layerdb",
        extractor=fake_extract,
        reassembler=fake_reassemble,
    )


@pytest.fixture(params=["overlay2", "vfs"])
def stores(
    request: pytest.FixtureRequest, meta: MetaStore, tmp_path: Path
) -> Iterator[tuple[LayerStore, RWLayerStore]]:
    layers = _layers(meta, new_driver(request.param, tmp_path), tmp_path)
    yield layers, RWLayerStore(layers)
    assert unmount_all(tmp_path) == [], "a test left mounts behind"


def _image(layers: LayerStore) -> Layer:
    base = layers.register(io.BytesIO(make_tar({"etc/hostname": b"image\n", "bin/sh": b"sh"})))
    return layers.register(io.BytesIO(make_tar({"app": b"app"})), base.chain_id)


def _init(root: Path) -> None:
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc" / "hosts").write_text("")
    (root / "dev").mkdir()
    (root / "dev" / "console").write_text("")


def test_create_mount_write_unmount_remove(stores: tuple[LayerStore, RWLayerStore]) -> None:
    layers, rw = stores
    image = _image(layers)
    created = rw.create("c1", image.chain_id, init=_init)
    assert (created.id, created.parent, created.init_id) == (
        "c1",
        image.chain_id,
        f"{created.cache_id}-init",
    )
    assert rw.get("c1") == created and rw.all() == [created]
    root = rw.mount("c1")
    assert tree(root) == {
        "etc": "dir",
        "etc/hostname": "image\n",
        "etc/hosts": "",
        "bin": "dir",
        "bin/sh": "sh",
        "app": "app",
        "dev": "dir",
        "dev/console": "",
    }
    (root / "written").write_text("w")
    (root / "app").unlink()
    changes, below = rw.diff_paths("c1")
    assert (changes / "written").read_text() == "w"
    assert below == layers.driver.diff_path(created.init_id or "")
    if layers.driver.changes_mode == "overlay":
        assert sorted(os.listdir(changes)) == ["app", "written"]  # app: a whiteout
    rw.unmount("c1")
    if layers.driver.name == "overlay2":
        assert not kmount.is_mountpoint(root)
    rw.remove("c1")
    with pytest.raises(errdefs.NotFound, match="RW layer does not exist: c1"):
        rw.get("c1")
    assert sorted(layers.driver.ids()) == sorted(x.cache_id for x in layers.chain(image.chain_id))


def test_mounts_are_counted(stores: tuple[LayerStore, RWLayerStore]) -> None:
    layers, rw = stores
    rw.create("c1", _image(layers).chain_id)
    first = rw.mount("c1")
    assert rw.mount("c1") == first and rw.mount_count("c1") == 2
    rw.unmount("c1")
    assert (first / "app").exists()  # still mounted once
    with pytest.raises(errdefs.Conflict, match="mounted"):
        rw.remove("c1")
    rw.unmount("c1")
    assert rw.mount_count("c1") == 0
    rw.unmount("c1")  # not mounted: nothing to do
    rw.remove("c1")


def test_duplicate_and_missing(stores: tuple[LayerStore, RWLayerStore]) -> None:
    layers, rw = stores
    image = _image(layers)
    rw.create("c1", image.chain_id)
    before = sorted(layers.driver.ids())
    with pytest.raises(errdefs.Conflict, match="already exists: c1"):
        rw.create("c1", image.chain_id, init=_init)
    assert sorted(layers.driver.ids()) == before  # the second copy was cleaned up
    with pytest.raises(errdefs.NotFound, match="layer does not exist"):
        rw.create("c2", "sha256:" + "3" * 64)
    with pytest.raises(errdefs.InvalidParameter):
        rw.create("", image.chain_id)
    for call in (rw.mount, rw.unmount, rw.remove, rw.metadata):
        with pytest.raises(errdefs.NotFound):
            call("nope")


def test_failing_init_leaves_nothing(stores: tuple[LayerStore, RWLayerStore]) -> None:
    layers, rw = stores
    image = _image(layers)
    before = sorted(layers.driver.ids())

    def broken(root: Path) -> None:
        raise errdefs.System("init failed")

    with pytest.raises(errdefs.System, match="init failed"):
        rw.create("c1", image.chain_id, init=broken)
    assert sorted(layers.driver.ids()) == before
    with pytest.raises(errdefs.NotFound):
        rw.get("c1")


def test_from_scratch(stores: tuple[LayerStore, RWLayerStore]) -> None:
    _, rw = stores
    rw.create("c1", None)
    root = rw.mount("c1")
    (root / "f").write_text("f")
    rw.unmount("c1")
    rw.remove("c1")


def test_metadata_is_the_drivers(stores: tuple[LayerStore, RWLayerStore]) -> None:
    layers, rw = stores
    image = _image(layers)
    created = rw.create("c1", image.chain_id, init=_init)
    data = rw.metadata("c1")
    if layers.driver.name == "vfs":
        assert data == {"SourceDir": str(layers.driver.diff_path(created.cache_id))}
        return
    home = layers.driver.home
    chain = layers.chain(image.chain_id)
    assert data == {
        "LowerDir": ":".join(
            [f"{home}/{created.cache_id}-init/diff"]
            + [f"{home}/{x.cache_id}/diff" for x in reversed(chain)]
        ),
        "MergedDir": f"{home}/{created.cache_id}/merged",
        "UpperDir": f"{home}/{created.cache_id}/diff",
        "WorkDir": f"{home}/{created.cache_id}/work",
    }


def test_a_mount_left_by_an_earlier_run_is_adopted(meta: MetaStore, tmp_path: Path) -> None:
    layers = _layers(meta, Overlay2Driver.open(tmp_path / "overlay2"), tmp_path)
    rw = RWLayerStore(layers)
    rw.create("c1", _image(layers).chain_id)
    root = rw.mount("c1")
    (root / "kept").write_text("k")
    # the daemon restarts (live restore): new stores, the mount is still there
    layers2 = _layers(meta, Overlay2Driver.open(tmp_path / "overlay2"), tmp_path)
    rw2 = RWLayerStore(layers2)
    with pytest.raises(errdefs.Conflict):
        rw2.remove("c1")
    assert rw2.mount("c1") == root
    assert len([m for m in _mountinfo() if m == str(root)]) == 1  # not stacked
    rw2.unmount("c1")
    assert not kmount.is_mountpoint(root)
    rw2.mount("c1")
    rw2.unmount("c1")
    layers3 = _layers(meta, Overlay2Driver.open(tmp_path / "overlay2"), tmp_path)
    rw.mount("c1")  # mounted again by the first store, unknown to the third...
    RWLayerStore(layers3).unmount("c1")  # ...which still cleans it up
    assert not kmount.is_mountpoint(root)
    assert unmount_all(tmp_path) == []


def _mountinfo() -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return [line.split()[4] for line in f]


@pytest.mark.parametrize(("count", "api"), [(120, "new"), (120, "classic"), (200, "new")])
def test_deep_image_on_overlay2(
    meta: MetaStore, tmp_path: Path, count: int, api: kmount.Api
) -> None:
    """`count` layers of one file each, a container on top: every file visible, writes go up."""
    driver = Overlay2Driver.open(tmp_path / "overlay2", api=api)
    layers = LayerStore.open(
        meta,
        driver,
        tmp_path / "layerdb",
        extractor=fake_extract,
        reassembler=fake_reassemble,
        mounter=kmount.Mounter(api),
    )
    rw = RWLayerStore(layers)
    start = time.perf_counter()
    top: str | None = None
    for i in range(count):
        tar = make_tar({f"file{i:03}": str(i).encode()})
        top = layers.register(io.BytesIO(tar), top).chain_id
    registered = time.perf_counter()
    assert top is not None and len(layers.chain(top)) == count
    rw.create("c1", top)
    try:
        t0 = time.perf_counter()
        root = rw.mount("c1")
        mounted_at = time.perf_counter()
        assert sorted(os.listdir(root)) == [f"file{i:03}" for i in range(count)]
        assert (root / "file007").read_text() == "7"
        (root / "new").write_text("n")
        assert (driver.diff_path(rw.get("c1").cache_id) / "new").read_text() == "n"
        assert not any((driver.diff_path(x.cache_id) / "new").exists() for x in layers.layers())
    finally:
        rw.unmount("c1")
    print(
        f"\n{count} layers ({api}): register {registered - start:.2f}s, "
        f"mount {(mounted_at - t0) * 1000:.1f} ms"
    )
    rw.remove("c1")
    assert len(layers.delete_unreferenced()) == count
    assert driver.ids() == [] and os.listdir(driver.home / "l") == []
