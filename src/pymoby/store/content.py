"""The content store: immutable blobs (manifests, configs, compressed layers) named by digest.

Rule: a blob file exists under its digest only when its bytes hash to that digest. Writes go to a
temp name in the same directory, are hashed while written, fsync'd, checked against the expected
digest (and size), and only then renamed; the directory is fsync'd so the name survives a crash.

    <root>/blobs/sha256/<hex>          a complete, verified blob
    <root>/blobs/sha256/.ingest-*      an interrupted write: removed by `ContentStore.open`

- Digests are `sha256:<64 hex>` or `sha512:<128 hex>`, lower case; anything else is
  errdefs.InvalidParameter. A mismatch is errdefs.InvalidParameter naming both digests.
- Which blobs are in use is the image store's knowledge (DB rows). `gc(in_use)` deletes every
  other blob except those held by a live `Lease`: a pull writes its blobs under a lease and
  commits its rows before leaving it, so a concurrent gc never deletes them. Pass `in_use` as a
  callable when rows may change concurrently: it is called while lease exits wait.
- A write of a digest already present does not read the stream (the bytes are known).
All methods block: callers use `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pymoby import errdefs

_DIGEST = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")
_TEMP_PREFIX = ".ingest-"
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A stored blob: its digest and size in bytes."""

    digest: str
    size: int


def validate_digest(digest: str) -> tuple[str, str]:
    """Split `algorithm:hex`; errdefs.InvalidParameter for anything else."""
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise errdefs.InvalidParameter(f"invalid digest {digest!r}")
    algorithm, _, hexpart = digest.partition(":")
    return algorithm, hexpart


class Lease:
    """Blobs protected from `gc` until the lease ends (`with store.lease() as lease:`)."""

    def __init__(self, store: ContentStore) -> None:
        self._store = store
        self.digests: set[str] = set()

    def add(self, digest: str) -> None:
        with self._store._lock:
            self.digests.add(digest)


class BlobWriter:
    """One blob being written: `write` chunks, then `commit` (verify + rename) or `abort`."""

    def __init__(
        self,
        store: ContentStore,
        algorithm: str,
        expected: str | None,
        size: int | None,
        lease: Lease | None,
    ) -> None:
        self._store = store
        self._expected = expected
        self._size = size
        self._lease = lease
        self._hash = hashlib.new(algorithm)
        self._dir = store.root / "blobs" / algorithm
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._temp = self._dir / f"{_TEMP_PREFIX}{secrets.token_hex(8)}"
        self._file: BinaryIO | None = open(self._temp, "xb")  # noqa: SIM115 - closed in commit
        self.written = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._file is None:
            raise errdefs.System("content store: write on a finished blob writer")
        self._hash.update(data)
        self.written += len(data)
        if self._size is not None and self.written > self._size:
            self.abort()
            raise errdefs.InvalidParameter(
                f"size mismatch for {self._expected or 'blob'}: more than the expected "
                f"{self._size} bytes"
            )
        return self._file.write(data)

    def commit(self) -> Descriptor:
        """Verify digest and size, make the blob durable and visible; return its descriptor."""
        if self._file is None:
            raise errdefs.System("content store: commit on a finished blob writer")
        actual = f"{self._hash.name}:{self._hash.hexdigest()}"
        try:
            if self._expected is not None and actual != self._expected:
                raise errdefs.InvalidParameter(
                    f"digest mismatch: expected {self._expected}, got {actual}"
                )
            if self._size is not None and self.written != self._size:
                raise errdefs.InvalidParameter(
                    f"size mismatch for {actual}: expected {self._size} bytes, got {self.written}"
                )
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            os.chmod(self._temp, 0o644)
            if self._lease is not None:
                self._lease.add(actual)  # before the name appears: a gc never sees it unleased
            os.replace(self._temp, self._dir / actual.partition(":")[2])
            _fsync_dir(self._dir)
        except OSError as exc:
            self.abort()
            raise errdefs.System(f"content store: write {actual}: {exc.strerror or exc}") from None
        except BaseException:
            self.abort()
            raise
        return Descriptor(actual, self.written)

    def abort(self) -> None:
        """Drop the partial blob. Idempotent."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._temp.unlink(missing_ok=True)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()  # after a commit there is nothing left to drop


class ContentStore:
    """Blobs by digest under `<root>/blobs`; make one with `ContentStore.open(root)`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._leases: list[Lease] = []

    @classmethod
    def open(cls, root: Path) -> ContentStore:
        """Create the directories and remove the leftovers of interrupted writes."""
        store = cls(root)
        try:
            (store.root / "blobs" / "sha256").mkdir(mode=0o700, parents=True, exist_ok=True)
            store.remove_temp_files()
        except OSError as exc:
            raise errdefs.System(f"content store {root}: {exc.strerror or exc}") from None
        return store

    def remove_temp_files(self) -> int:
        """Delete `.ingest-*` files (only safe while nothing writes: at start). Returns count."""
        removed = 0
        for algorithm_dir in self._algorithm_dirs():
            for entry in os.scandir(algorithm_dir):
                if entry.name.startswith(_TEMP_PREFIX):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                        removed += 1
        return removed

    # -- writing ---------------------------------------------------------------------------

    def writer(
        self,
        expected: str | None = None,
        size: int | None = None,
        *,
        lease: Lease | None = None,
        algorithm: str = "sha256",
    ) -> BlobWriter:
        """A writer for one blob; with `expected`, `commit` refuses other content."""
        if expected is not None:
            algorithm = validate_digest(expected)[0]
        elif algorithm not in ("sha256", "sha512"):
            raise errdefs.InvalidParameter(f"unsupported digest algorithm {algorithm!r}")
        try:
            return BlobWriter(self, algorithm, expected, size, lease)
        except OSError as exc:
            raise errdefs.System(f"content store {self.root}: {exc.strerror or exc}") from None

    def write(
        self,
        stream: BinaryIO,
        expected: str | None = None,
        size: int | None = None,
        *,
        lease: Lease | None = None,
    ) -> Descriptor:
        """Store everything `stream` yields; verified against `expected` / `size` if given."""
        if expected is not None and self.exists(expected):
            if lease is not None:
                lease.add(expected)
            if self.exists(expected):  # still there once leased: a gc cannot take it now
                return Descriptor(expected, self.size(expected))
        with self.writer(expected, size, lease=lease) as w:
            while chunk := stream.read(_CHUNK):
                w.write(chunk)
            return w.commit()

    def write_bytes(
        self, data: bytes, expected: str | None = None, *, lease: Lease | None = None
    ) -> Descriptor:
        with self.writer(expected, len(data), lease=lease) as w:
            w.write(data)
            return w.commit()

    # -- reading ---------------------------------------------------------------------------

    def path(self, digest: str) -> Path:
        algorithm, hexpart = validate_digest(digest)
        return self.root / "blobs" / algorithm / hexpart

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise errdefs.NotFound(f"content {digest}: not found") from None

    def reader(self, digest: str) -> BinaryIO:
        """An open binary file of the blob; the caller closes it."""
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise errdefs.NotFound(f"content {digest}: not found") from None
        except OSError as exc:
            raise errdefs.System(f"content {digest}: {exc.strerror or exc}") from None

    def read_bytes(self, digest: str) -> bytes:
        with self.reader(digest) as f:
            return f.read()

    def digests(self) -> list[str]:
        """Every complete blob, sorted."""
        found = []
        for algorithm_dir in self._algorithm_dirs():
            for entry in os.scandir(algorithm_dir):
                digest = f"{algorithm_dir.name}:{entry.name}"
                if _DIGEST.match(digest) and entry.is_file(follow_symlinks=False):
                    found.append(digest)
        return sorted(found)

    # -- deleting --------------------------------------------------------------------------

    def delete(self, digest: str) -> bool:
        """Remove a blob; False if it was not there."""
        try:
            self.path(digest).unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise errdefs.System(f"content {digest}: delete: {exc.strerror or exc}") from None
        return True

    @contextlib.contextmanager
    def lease(self) -> Iterator[Lease]:
        """Protect the blobs written (or added) under it from `gc` until the block ends."""
        lease = Lease(self)
        with self._lock:
            self._leases.append(lease)
        try:
            yield lease
        finally:
            with self._lock:
                self._leases.remove(lease)

    def gc(self, in_use: Iterable[str] | Callable[[], Iterable[str]]) -> list[str]:
        """Delete every blob not in `in_use` and not leased; return the deleted digests."""
        with self._lock:  # lease exits wait: a blob cannot lose its lease during the sweep
            keep = set(in_use() if callable(in_use) else in_use)
            for lease in self._leases:
                keep |= lease.digests
            removed = [d for d in self.digests() if d not in keep and self.delete(d)]
        return removed

    def _algorithm_dirs(self) -> list[Path]:
        blobs = self.root / "blobs"
        if not blobs.is_dir():
            return []
        return [blobs / name for name in ("sha256", "sha512") if (blobs / name).is_dir()]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
