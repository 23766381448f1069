"""Content store: verified writes, crash leftovers, reads, deletes, gc with leases."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path

import pytest

from pymoby import errdefs
from pymoby.store.content import ContentStore, Descriptor, validate_digest


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore.open(tmp_path / "content")


def test_write_read_exists_size_delete(store: ContentStore, tmp_path: Path) -> None:
    data = b"hello" * 1000
    desc = store.write(io.BytesIO(data))
    assert desc == Descriptor(sha(data), len(data))
    path = tmp_path / "content" / "blobs" / "sha256" / sha(data).removeprefix("sha256:")
    assert store.path(desc.digest) == path and path.read_bytes() == data
    assert path.stat().st_mode & 0o777 == 0o644
    assert store.exists(desc.digest) and store.size(desc.digest) == len(data)
    assert store.read_bytes(desc.digest) == data
    with store.reader(desc.digest) as f:
        assert f.read(5) == b"hello"
    assert store.digests() == [desc.digest]
    assert store.delete(desc.digest) is True
    assert store.delete(desc.digest) is False
    assert not store.exists(desc.digest)
    with pytest.raises(errdefs.NotFound, match="not found"):
        store.read_bytes(desc.digest)
    with pytest.raises(errdefs.NotFound):
        store.size(desc.digest)


def test_expected_digest_and_size_are_verified(store: ContentStore) -> None:
    data = b"layer bytes"
    wrong = sha(b"something else")
    with pytest.raises(errdefs.InvalidParameter) as info:
        store.write(io.BytesIO(data), wrong)
    assert str(info.value) == f"digest mismatch: expected {wrong}, got {sha(data)}"
    with pytest.raises(errdefs.InvalidParameter) as info:
        store.write(io.BytesIO(data), sha(data), size=20)
    assert str(info.value) == f"size mismatch for {sha(data)}: expected 20 bytes, got 11"
    with pytest.raises(errdefs.InvalidParameter, match="more than the expected 4 bytes"):
        store.write(io.BytesIO(b"12345"), size=4)
    assert store.digests() == [] and _temp_files(store) == []
    assert store.write(io.BytesIO(data), sha(data), size=11) == Descriptor(sha(data), 11)


def test_write_of_a_known_digest_does_not_read(store: ContentStore) -> None:
    data = b"known"
    store.write_bytes(data)

    class Unreadable(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            raise AssertionError("read")

    assert store.write(Unreadable(), sha(data)) == Descriptor(sha(data), len(data))


def test_sha512(store: ContentStore) -> None:
    data = b"x"
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    assert store.write(io.BytesIO(data), digest).digest == digest
    assert store.writer(algorithm="sha512").commit().digest.startswith("sha512:")
    assert digest in store.digests()


@pytest.mark.parametrize(
    "bad",
    ["", "sha256:abc", "sha256:" + "A" * 64, "md5:" + "0" * 32, "sha256:" + "0" * 63 + "g"],
)
def test_bad_digests(store: ContentStore, bad: str) -> None:
    with pytest.raises(errdefs.InvalidParameter, match="invalid digest"):
        validate_digest(bad)
    with pytest.raises(errdefs.InvalidParameter):
        store.exists(bad)


def test_failed_stream_leaves_nothing(store: ContentStore) -> None:
    class Broken(io.RawIOBase):
        calls = 0

        def read(self, n: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 2:
                raise OSError("connection reset")
            return b"x" * 10

    with pytest.raises(OSError, match="connection reset"):
        store.write(Broken())  # type: ignore[arg-type]
    assert store.digests() == [] and _temp_files(store) == []


def test_interrupted_writes_are_removed_at_open(tmp_path: Path) -> None:
    store = ContentStore.open(tmp_path)
    kept = store.write_bytes(b"complete")
    writer = store.writer()
    writer.write(b"half a blob")  # a crash now leaves the temp file
    assert len(_temp_files(store)) == 1
    assert store.digests() == [kept.digest]  # never listed
    reopened = ContentStore.open(tmp_path)
    assert _temp_files(reopened) == []
    assert reopened.digests() == [kept.digest]


def test_writer_abort_and_reuse(store: ContentStore) -> None:
    with store.writer() as w:
        w.write(b"abc")
    assert _temp_files(store) == []  # leaving the block without commit drops it
    w = store.writer(sha(b"abc"))
    w.write(b"a")
    w.write(memoryview(b"bc"))
    assert w.commit() == Descriptor(sha(b"abc"), 3)
    with pytest.raises(errdefs.System, match="finished"):
        w.write(b"more")


def test_gc_deletes_what_is_not_in_use(store: ContentStore) -> None:
    a, b, c = (store.write_bytes(x).digest for x in (b"a", b"b", b"c"))
    assert store.gc({a}) == sorted([b, c])
    assert store.digests() == [a]
    assert store.gc(lambda: [a]) == []


def test_gc_spares_leased_blobs(store: ContentStore) -> None:
    old = store.write_bytes(b"old").digest
    with store.lease() as lease:
        new = store.write(io.BytesIO(b"new"), lease=lease).digest
        again = store.write(io.BytesIO(b"old"), old, lease=lease).digest  # known: only leased
        assert store.gc(set()) == []
        assert lease.digests == {new, old} and again == old
    assert store.gc(set()) == sorted([new, old])


def test_gc_in_use_callable_runs_while_leases_wait(store: ContentStore) -> None:
    """A pull commits its rows, then leaves its lease: a gc in between still sees one of them."""
    rows: set[str] = set()
    in_gc = threading.Event()
    release = threading.Event()

    def in_use() -> set[str]:
        snapshot = set(rows)  # taken before the pull's row exists
        in_gc.set()
        assert release.wait(5)
        return snapshot

    lease_block = store.lease()
    lease = lease_block.__enter__()
    blob = store.write_bytes(b"pulled", lease=lease).digest
    gc = threading.Thread(target=store.gc, args=(in_use,))
    gc.start()
    assert in_gc.wait(5)  # the gc read the (still empty) rows...
    rows.add(blob)  # ...the pull commits its row...
    leaving = threading.Thread(target=lease_block.__exit__, args=(None, None, None))
    leaving.start()  # ...and leaves its lease: that waits for the sweep
    leaving.join(0.1)
    assert leaving.is_alive()
    release.set()
    gc.join(5)
    leaving.join(5)
    assert store.exists(blob)
    assert store.gc(lambda: rows) == []


def _temp_files(store: ContentStore) -> list[str]:
    d = store.root / "blobs" / "sha256"
    return [n for n in os.listdir(d) if n.startswith(".ingest-")]
