"""What every graph driver is: a `Driver` Protocol over directories, returning mount DATA.

Rule: a driver owns the directories under its home (`<data-root>/<name>`) and never mounts: `get`
returns a `MountSpec` saying how to produce a layer's merged tree, and the caller (the layer
store) hands that to `pymoby.kernel.mount`. Drivers that must probe the kernel at start (overlay2)
do it through an injected `Mounter`, so tests can replace the kernel.

- IDs are opaque names chosen by the layer store (64 hex, or `<id>-init`); a driver keeps no
  database, and `ids()` lists what exists on disk so orphans can be found after a crash.
- `create(id, parent, rw=...)`: a new layer on top of `parent` (a driver id or None). `rw=False`
  is a read-only image layer (filled by extraction into `diff_path(id)`, then never changed);
  `rw=True` is a container layer (mounted with its diff as the writable upper layer).
- `get(id)` / `put(id)` bracket the use of a layer's merged tree; `remove(id)` refuses
  (errdefs.Conflict) while a `get` is outstanding or the tree is still mounted.
- `whiteout_mode` tells extraction how to record deletions: "overlay" (0/0 character devices and
  the `trusted.overlay.opaque` xattr in the diff directory) or "delete" (remove the files from a
  full copy of the parent). `changes_mode` tells `docker diff` / commit where changes live:
  "overlay" (the diff directory holds exactly the changes, overlay whiteouts) or "compare" (walk
  the tree and compare with the parent's).
- Errors are errdefs classes: unknown id -> NotFound, in use -> Conflict, host failure -> System.
All methods block: callers use `asyncio.to_thread`.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import queue
import secrets
import shutil
import threading
from collections import Counter
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from pymoby import errdefs
from pymoby.kernel.mount import MountSpec

__all__ = [
    "TRASH_DIR",
    "ChangesMode",
    "Driver",
    "GetCounter",
    "MountSpec",
    "Mounter",
    "NotSupportedError",
    "Trash",
    "WhiteoutMode",
    "atomic_write",
    "backing_fs_name",
    "random_link_id",
    "remove_tree",
    "system_error",
]

TRASH_DIR = ".trash"  # under a driver's home: removed layers being deleted in the background
log = logging.getLogger(__name__)

WhiteoutMode = Literal["overlay", "delete"]
ChangesMode = Literal["overlay", "compare"]


class NotSupportedError(errdefs.System):
    """The driver cannot work on this host or filesystem (dockerd's graphdriver.ErrNotSupported).

    The registry skips such a driver during automatic selection; when the driver was named
    explicitly the message reaches the user.
    """


class Mounter(Protocol):
    """The part of `pymoby.kernel.mount` the storage code uses (tests pass a fake)."""

    def mount(self, spec: MountSpec) -> None: ...

    def unmount(self, target: str | Path, *, lazy: bool = False) -> None: ...

    def is_mountpoint(self, path: str | Path) -> bool: ...


@runtime_checkable
class Driver(Protocol):
    """A graph driver; see the module docstring."""

    @property
    def name(self) -> str: ...

    @property
    def home(self) -> Path: ...

    @property
    def whiteout_mode(self) -> WhiteoutMode: ...

    @property
    def changes_mode(self) -> ChangesMode: ...

    @property
    def max_depth(self) -> int:
        """How many read-only layers a chain may have (dockerd: 125)."""
        ...

    def create(self, id: str, parent: str | None, *, rw: bool) -> None: ...

    def remove(self, id: str) -> None: ...

    def exists(self, id: str) -> bool: ...

    def ids(self) -> list[str]: ...

    def diff_path(self, id: str) -> Path: ...

    def get(self, id: str, mount_label: str = "") -> MountSpec: ...

    def put(self, id: str) -> None: ...

    def metadata(self, id: str) -> dict[str, str]: ...

    def status(self) -> list[tuple[str, str]]: ...


class GetCounter:
    """Outstanding `get` calls per id (thread-safe), so `remove` can refuse a layer in use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def increment(self, id: str) -> int:
        with self._lock:
            self._counts[id] += 1
            return self._counts[id]

    def decrement(self, id: str) -> int:
        with self._lock:
            if self._counts[id] <= 1:
                self._counts.pop(id, None)
                return 0
            self._counts[id] -= 1
            return self._counts[id]

    def count(self, id: str) -> int:
        with self._lock:
            return self._counts[id]


# statfs magic -> the name dockerd shows as "Backing Filesystem" (daemon/internal/fstype).
_FS_NAMES = {
    0x61756673: "aufs",
    0x9123683E: "btrfs",
    0x28CD3D45: "cramfs",
    0xF15F: "ecryptfs",
    0xEF53: "extfs",
    0xF2F52010: "f2fs",
    0x65735546: "fuse",
    0x47504653: "gpfs",
    0x72B6: "jffs2",
    0x3153464A: "jfs",
    0x6969: "nfs",
    0x794C7630: "overlayfs",
    0x858458F6: "ramfs",
    0x52654973: "reiserfs",
    0x517B: "smb",
    0x73717368: "squashfs",
    0x01021994: "tmpfs",
    0xA501FCF5: "vxfs",
    0x58465342: "xfs",
    0x2FC12FC1: "zfs",
}
OVERLAY_MAGIC = 0x794C7630


def backing_fs_name(magic: int) -> str:
    """dockerd's name for a filesystem magic; "<unknown>" for others."""
    return _FS_NAMES.get(magic, "<unknown>")


def random_link_id(length: int = 26) -> str:
    """dockerd's overlay2 short link name: base32 (A-Z, 2-7) of random bytes, `length` chars."""
    raw = secrets.token_bytes((length * 5 + 7) // 8)
    return base64.b32encode(raw).decode()[:length]


def system_error(what: str, exc: OSError) -> errdefs.PymobyError:
    """Convert an OSError at a driver's edge: missing -> NotFound, anything else -> System."""
    text = exc.strerror or str(exc)
    if isinstance(exc, FileNotFoundError):
        return errdefs.NotFound(f"{what}: {text}")
    return errdefs.System(f"{what}: {text}")


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `path` through a temp name + rename, so readers see all of it or nothing.

    No fsync: durability is the caller's (the layer store syncs the filesystem once before it
    commits the row that makes a layer exist).
    """
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class Trash:
    """Removes directory trees off the caller's path: `discard` renames the tree into the
    trash directory (same filesystem: one rename) and a background thread deletes it. Trees a
    crash left there are deleted when the next Trash on that directory starts. Where the rename
    cannot be done (another filesystem), the tree is deleted at once."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self._queue: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.dir):
                self._enqueue(Path(entry.path))

    def discard(self, path: Path) -> None:
        """Make `path` disappear now (missing is fine); its contents go in the background."""
        target = self.dir / f"{path.name}-{secrets.token_hex(4)}"
        try:
            self.dir.mkdir(mode=0o700, exist_ok=True)
            os.rename(path, target)
        except FileNotFoundError:
            if path.exists() or path.is_symlink():
                remove_tree(path)
            return
        except OSError:
            remove_tree(path)
            return
        self._enqueue(target)

    def _enqueue(self, path: Path) -> None:
        with self._idle:
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="trash", daemon=True)
                self._thread.start()
        self._queue.put(path)

    def _run(self) -> None:
        while True:
            path = self._queue.get()
            if path is None:
                return
            try:
                remove_tree(path)
            except OSError as exc:  # stays in the trash; the next start tries again
                log.warning("cannot delete %s: %s", path, exc)
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything discarded so far is deleted; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)


def remove_tree(path: Path) -> None:
    """Remove a directory tree (or a file); a missing path is not an error."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path)
