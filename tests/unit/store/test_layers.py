"""Layer store: register (chain IDs, dedup, verification), references, deletion, orphans, tar.

Runs on both real drivers with the tarfile-based fake extractor from layer_testlib.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from layer_testlib import (
    diff_id_of,
    fake_extract,
    fake_reassemble,
    make_tar,
    tree,
    unmount_all,
)

from pymoby import errdefs
from pymoby.kernel import mount as kmount
from pymoby.store import layers as layers_mod
from pymoby.store.graphdriver import Driver, Overlay2Driver, VfsDriver, new_driver
from pymoby.store.layers import Layer, LayerStore, add_reference, chain_id, remove_references
from pymoby.store.meta import MetaStore
from pymoby.store.rwlayers import RWLayerStore


@pytest.fixture
def meta(tmp_path: Path) -> Iterator[MetaStore]:
    store = MetaStore.open(tmp_path / "meta.db")
    yield store
    store.close()


def _open(meta: MetaStore, driver: Driver, root: Path, **kw: object) -> LayerStore:
    return LayerStore.open(
        meta,
        driver,
        root / "layerdb",
        extractor=kw.pop("extractor", fake_extract),  # type: ignore[arg-type]
        reassembler=fake_reassemble,
    )


@pytest.fixture(params=["overlay2", "vfs"])
def store(request: pytest.FixtureRequest, meta: MetaStore, tmp_path: Path) -> Iterator[LayerStore]:
    driver = new_driver(request.param, tmp_path)
    yield _open(meta, driver, tmp_path)
    assert unmount_all(tmp_path) == [], "a test left mounts behind"


def _files(store: LayerStore) -> tuple[list[str], list[str]]:
    return store.driver.ids(), sorted(os.listdir(store._tarsplits))


def test_chain_id_is_mobys() -> None:
    a = "sha256:" + "a" * 64
    b = "sha256:" + "b" * 64
    assert chain_id(None, a) == a
    assert chain_id(a, b) == "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()


def test_register_base_and_child(store: LayerStore) -> None:
    base_tar = make_tar({"etc/os": b"base\n"})
    base = store.register(io.BytesIO(base_tar))
    assert base.chain_id == base.diff_id == diff_id_of(base_tar)
    assert base.parent is None and base.size == 5 and len(base.cache_id) == 64
    child_tar = make_tar({"app": b"12345678"}, deletes=("etc/os",))
    child = store.register(io.BytesIO(child_tar), base.chain_id)
    assert child.diff_id == diff_id_of(child_tar)
    assert child.chain_id == chain_id(base.chain_id, child.diff_id)
    assert child.parent == base.chain_id
    assert store.get(child.chain_id) == child
    assert store.exists(base.chain_id) and not store.exists("sha256:" + "0" * 64)
    assert store.layers() == [base, child]
    assert store.chain(child.chain_id) == [base, child]
    assert (store.size(child.chain_id), store.chain_size(child.chain_id)) == (8, 13)
    assert sorted(_files(store)[0]) == sorted([base.cache_id, child.cache_id])
    assert store.metadata(child.chain_id) == store.driver.metadata(child.cache_id)


def test_register_from_a_path(store: LayerStore, tmp_path: Path) -> None:
    (tmp_path / "layer.tar").write_bytes(make_tar({"f": b"x"}))
    layer = store.register(tmp_path / "layer.tar")
    assert store.driver.exists(layer.cache_id)


def test_same_chain_twice_keeps_one_copy(store: LayerStore) -> None:
    data = make_tar({"f": b"x"})
    first = store.register(io.BytesIO(data))
    second = store.register(io.BytesIO(data))
    assert second == first
    assert _files(store) == ([first.cache_id], [first.cache_id])


def test_concurrent_registers_of_one_layer(store: LayerStore) -> None:
    data = make_tar({"f": b"x" * 1000})
    results: list[Layer] = []
    threads = [
        threading.Thread(target=lambda: results.append(store.register(io.BytesIO(data))))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.chain_id for r in results}) == 1 and len(results) == 4
    assert len(store.driver.ids()) == 1


def test_expected_diff_id_mismatch_leaves_nothing(store: LayerStore) -> None:
    data = make_tar({"f": b"x"})
    expected = diff_id_of(b"other")
    with pytest.raises(errdefs.InvalidParameter) as info:
        store.register(io.BytesIO(data), expected_diff_id=expected)
    assert str(info.value) == (
        f"layer diff ID mismatch: expected {expected}, got {diff_id_of(data)}"
    )
    assert _files(store) == ([], []) and store.layers() == []
    layer = store.register(io.BytesIO(data), expected_diff_id=diff_id_of(data))
    assert layer.diff_id == diff_id_of(data)


def test_failing_extraction_leaves_nothing(meta: MetaStore, tmp_path: Path) -> None:
    def broken(stream: BinaryIO, root: Path, whiteouts: str, tarsplit: BinaryIO) -> object:
        (root / "partial").write_text("p")
        tarsplit.write(b"partial")
        raise errdefs.InvalidParameter("unexpected EOF")

    store = _open(meta, VfsDriver.open(tmp_path / "vfs"), tmp_path, extractor=broken)
    with pytest.raises(errdefs.InvalidParameter, match="unexpected EOF"):
        store.register(io.BytesIO(b""))
    assert _files(store) == ([], [])


def test_missing_parent(store: LayerStore) -> None:
    with pytest.raises(errdefs.NotFound, match="layer does not exist"):
        store.register(io.BytesIO(make_tar({"f": b"x"})), "sha256:" + "1" * 64)
    with pytest.raises(errdefs.InvalidParameter, match="invalid digest"):
        store.register(io.BytesIO(make_tar({"f": b"x"})), "latest")
    assert _files(store) == ([], [])


def test_max_depth(meta: MetaStore, tmp_path: Path) -> None:
    class Shallow(VfsDriver):
        max_depth = 3

    store = _open(meta, Shallow(VfsDriver.open(tmp_path / "vfs").home), tmp_path)
    parent = None
    for i in range(3):
        parent = store.register(io.BytesIO(make_tar({f"f{i}": b"x"})), parent).chain_id
    with pytest.raises(errdefs.InvalidParameter, match="max depth exceeded"):
        store.register(io.BytesIO(make_tar({"f": b"y"})), parent)


def test_whiteouts_follow_the_driver(store: LayerStore) -> None:
    base = store.register(io.BytesIO(make_tar({"a": b"a", "d/x": b"x", "d/y": b"y"})))
    top = store.register(
        io.BytesIO(make_tar({"d/z": b"z"}, deletes=("a",), opaque=("d",))), base.chain_id
    )
    rw = RWLayerStore(store)
    rw.create("c1", top.chain_id)
    try:
        root = rw.mount("c1")
        assert tree(root) == {"d": "dir", "d/z": "z"}
    finally:
        rw.unmount("c1")


def test_tar_stream_reproduces_the_layer(store: LayerStore) -> None:
    data = make_tar({"f": b"content"})
    layer = store.register(io.BytesIO(data))
    out = io.BytesIO()
    assert store.tar_stream(layer.chain_id, out) == len(data)
    assert out.getvalue() == data
    (store._tarsplits / layer.cache_id).write_bytes(b"tampered")
    with pytest.raises(errdefs.DataLoss, match="corrupt"):
        store.tar_stream(layer.chain_id, io.BytesIO())
    (store._tarsplits / layer.cache_id).unlink()
    with pytest.raises(errdefs.DataLoss, match="tar-split record is missing"):
        store.tar_stream(layer.chain_id, io.BytesIO())


# -- references and deletion --------------------------------------------------------------


def _chain(store: LayerStore, n: int, tag: str = "") -> list[Layer]:
    out: list[Layer] = []
    for i in range(n):
        parent = out[-1].chain_id if out else None
        out.append(store.register(io.BytesIO(make_tar({f"{tag}{i}": b"x"})), parent))
    return out


def test_delete_unreferenced_keeps_referenced_chains(store: LayerStore) -> None:
    kept = _chain(store, 3, "k")
    dropped = _chain(store, 2, "d")
    store.meta.write_sync(lambda conn: add_reference(conn, "image-1", kept[-1].chain_id))
    deleted = store.delete_unreferenced()
    assert deleted == [dropped[1], dropped[0]]  # children first
    assert store.layers() == kept
    assert sorted(store.driver.ids()) == sorted(layer.cache_id for layer in kept)
    store.meta.write_sync(lambda conn: remove_references(conn, "image-1"))
    assert store.delete_unreferenced() == list(reversed(kept))
    assert _files(store) == ([], [])


def test_add_reference_needs_the_layer(store: LayerStore) -> None:
    with pytest.raises(errdefs.NotFound):
        store.meta.write_sync(lambda conn: add_reference(conn, "img", "sha256:" + "2" * 64))
    layer = _chain(store, 1)[0]
    store.meta.write_sync(lambda conn: add_reference(conn, "img", layer.chain_id))
    store.meta.write_sync(lambda conn: add_reference(conn, "img", layer.chain_id))  # idempotent
    assert store.meta.write_sync(lambda conn: remove_references(conn, "img")) == 1


def test_leases_protect_in_flight_layers(store: LayerStore) -> None:
    with store.lease() as lease:
        layer = store.register(io.BytesIO(make_tar({"f": b"x"})), lease=lease)
        assert store.delete_unreferenced() == []
        assert lease.add(layer.chain_id) == layer  # twice: still released once per add
    assert store.delete_unreferenced() == [layer]
    with store.lease() as lease, pytest.raises(errdefs.NotFound):
        lease.add(layer.chain_id)


def test_container_layers_keep_their_parents(store: LayerStore) -> None:
    layer = _chain(store, 1)[0]
    rw = RWLayerStore(store)
    rw.create("c1", layer.chain_id)
    assert store.delete_unreferenced() == []
    rw.remove("c1")
    assert store.delete_unreferenced() == [layer]


# -- start-up ------------------------------------------------------------------------------


def test_orphans_are_removed_at_open(meta: MetaStore, tmp_path: Path) -> None:
    driver = Overlay2Driver.open(tmp_path / "overlay2")
    store = _open(meta, driver, tmp_path)
    kept = _chain(store, 2)
    rw = RWLayerStore(store)
    rw.create("c1", kept[-1].chain_id, init=lambda root: None)
    # what a crash leaves: a driver layer (even mounted) and a tar-split without rows
    driver.create("f" * 64, kept[-1].cache_id, rw=True)
    spec = driver.get("f" * 64)
    kmount.mount(spec)
    (store._tarsplits / ("f" * 64)).write_bytes(b"partial")
    reopened = _open(meta, Overlay2Driver.open(tmp_path / "overlay2"), tmp_path)
    rw_layer = rw.get("c1")
    assert sorted(reopened.driver.ids()) == sorted(
        [kept[0].cache_id, kept[1].cache_id, rw_layer.cache_id, f"{rw_layer.cache_id}-init"]
    )
    assert sorted(os.listdir(reopened._tarsplits)) == sorted(k.cache_id for k in kept)
    assert not kmount.is_mountpoint(spec.target)


def test_in_flight_ids_are_not_orphans(store: LayerStore) -> None:
    with store.new_cache_id() as cache_id:
        store.driver.create(cache_id, None, rw=False)
        store.driver.create(f"{cache_id}-init", None, rw=True)
        assert store.cleanup_orphans() == []
    assert sorted(store.cleanup_orphans()) == sorted([cache_id, f"{cache_id}-init"])


def test_one_driver_per_data_root(meta: MetaStore, tmp_path: Path) -> None:
    store = _open(meta, new_driver("overlay2", tmp_path), tmp_path)
    _open(meta, new_driver("vfs", tmp_path), tmp_path)  # no layers yet: switching is fine
    store = _open(meta, new_driver("overlay2", tmp_path), tmp_path)
    _chain(store, 1)
    with pytest.raises(errdefs.InvalidParameter) as info:
        _open(meta, new_driver("vfs", tmp_path), tmp_path)
    assert str(info.value) == (
        "the data root holds layers of storage driver 'overlay2', not 'vfs': start with "
        "--storage-driver overlay2 or use another --data-root"
    )
    assert (
        meta.read_sync(
            lambda conn: conn.execute(
                "SELECT value FROM meta WHERE key = ?", (layers_mod.DRIVER_KEY,)
            ).fetchone()[0]
        )
        == "overlay2"
    )
