"""Changes of a read-write layer against its parent, and the layer tar that carries them.

Rule: `diff_layer(mode="overlay")` is overlay2's Diff: the upper directory already holds exactly
the changes, so it is archived whole with whiteouts converted (`write.tar_directory`,
`whiteouts="overlay"`). `diff_layer(mode="vfs")` is the naive driver's: `changes()` compares the
layer directory with its parent's and `export_changes` writes one entry per change, sorted by
path, deletions as empty `.wh.<name>` files (mode 0, owner 0:0; their mtime is the parent
directory's in the layer, where dockerd uses the wall clock, so equal trees give equal tars).

`changes()` follows dockerd's changes.go: a path only in the layer is added (with everything
below it), only in the parent deleted (only the top of a deleted subtree is reported); in both,
it is modified when mode (type included), uid, gid or rdev differ, or for non-directories
size or mtime (equal when the nanoseconds agree, or the seconds agree and one side has none --
tar keeps whole seconds), or when `security.capability` differs. Paths with the same device
and inode on both sides are pruned without looking inside. A directory with changes below it
is reported as modified itself (before them) so its metadata is carried along. Paths are
absolute ("/etc/passwd"), as in `docker diff`; the list is sorted by path.

`directory_size` is dockerd's directory.Size (overlay2's layer size): the sizes of all
non-directories, hardlinked inodes counted once.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import stat
from pathlib import Path
from typing import BinaryIO, Literal

from pymoby.archive import tarformat as tf
from pymoby.archive.errors import ArchiveError, from_oserror
from pymoby.archive.rootdir import RootDir
from pymoby.archive.whiteouts import WHITEOUT_PREFIX
from pymoby.archive.write import Appender, TarWriter, XattrPolicy, read_capability, tar_directory

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class ChangeKind(enum.IntEnum):
    """dockerd's archive.ChangeType values (the `Kind` of GET /containers/{id}/changes)."""

    MODIFY = 0
    ADD = 1
    DELETE = 2


@dataclasses.dataclass(frozen=True)
class Change:
    path: str
    kind: ChangeKind


def _same_time(a_ns: int, b_ns: int) -> bool:
    if a_ns == b_ns:
        return True
    a_s, a_frac = divmod(a_ns, 1_000_000_000)
    b_s, b_frac = divmod(b_ns, 1_000_000_000)
    return a_s == b_s and (a_frac == 0 or b_frac == 0)


def _stat_different(old: os.stat_result, new: os.stat_result) -> bool:
    if (
        old.st_mode != new.st_mode
        or old.st_uid != new.st_uid
        or old.st_gid != new.st_gid
        or old.st_rdev != new.st_rdev
    ):
        return True
    if stat.S_ISDIR(old.st_mode):
        return False
    return not _same_time(old.st_mtime_ns, new.st_mtime_ns) or old.st_size != new.st_size


def _listdir(fd: int | None) -> list[str]:
    return os.listdir(fd) if fd is not None else []


def _compare(new_fd: int, old_fd: int | None, path: str) -> list[Change]:
    """Changes below the directory `path` (new side `new_fd`, old side `old_fd` or none)."""
    found: list[Change] = []
    old_names = set(_listdir(old_fd))
    for name in sorted(os.listdir(new_fd), key=tf.encode):
        child = f"{path}/{name}"
        new_st = os.stat(name, dir_fd=new_fd, follow_symlinks=False)
        old_st = None
        if old_fd is not None and name in old_names:
            old_names.discard(name)
            old_st = os.stat(name, dir_fd=old_fd, follow_symlinks=False)
            if (old_st.st_dev, old_st.st_ino) == (new_st.st_dev, new_st.st_ino):
                continue
        recorded = True
        if old_st is None or old_fd is None:
            found.append(Change(child, ChangeKind.ADD))
        elif _stat_different(old_st, new_st) or (
            read_capability(old_fd, name) != read_capability(new_fd, name)
        ):
            found.append(Change(child, ChangeKind.MODIFY))
        else:
            recorded = False
        if not stat.S_ISDIR(new_st.st_mode):
            continue
        sub_new = os.open(name, _DIR_FLAGS, dir_fd=new_fd)
        sub_old = None
        try:
            if old_st is not None and stat.S_ISDIR(old_st.st_mode) and old_fd is not None:
                sub_old = os.open(name, _DIR_FLAGS, dir_fd=old_fd)
            inside = _compare(sub_new, sub_old, child)
        finally:
            os.close(sub_new)
            if sub_old is not None:
                os.close(sub_old)
        if inside and not recorded:
            found.append(Change(child, ChangeKind.MODIFY))
        found.extend(inside)
    found.extend(Change(f"{path}/{name}", ChangeKind.DELETE) for name in old_names)
    return found


def changes(layer: Path, parent: Path | None) -> list[Change]:
    """The changes of directory `layer` against `parent` (None: everything is added)."""
    try:
        with RootDir(layer) as new:
            if parent is None:
                found = _compare(new.fd, None, "")
            else:
                with RootDir(parent) as old:
                    found = _compare(new.fd, old.fd, "")
    except OSError as err:
        raise from_oserror(err, f"failed to compute changes of {str(layer)!r}") from None
    except RecursionError:
        raise ArchiveError(f"directory tree of {str(layer)!r} is too deep") from None
    return sorted(found, key=lambda c: tf.encode(c.path))


def export_changes(
    layer: Path, found: list[Change], out: BinaryIO, *, xattrs: XattrPolicy = "capability"
) -> int:
    """Write a layer tar carrying `found` (from `changes`) out of `layer`; return its size."""
    writer = TarWriter(out)
    appender = Appender(writer, whiteouts=None, xattrs=xattrs)
    try:
        with RootDir(layer) as root:
            for change in sorted(found, key=lambda c: tf.encode(c.path)):
                rel = change.path.lstrip("/")
                try:
                    dirfd, _, base = root.open_parent(rel)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                try:
                    if change.kind == ChangeKind.DELETE:
                        head, _, _ = rel.rpartition("/")
                        mtime = os.fstat(dirfd).st_mtime_ns // 1_000_000_000 * 1_000_000_000
                        name = f"{head}/{WHITEOUT_PREFIX}{base}" if head else WHITEOUT_PREFIX + base
                        writer.add(tf.TarHeader(name=name, mtime_ns=mtime))
                        continue
                    try:
                        st = os.stat(base, dir_fd=dirfd, follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # changed again since `changes` ran
                    appender.add(dirfd, base, rel, st)
                finally:
                    os.close(dirfd)
        writer.close()
    except OSError as err:
        raise from_oserror(err, f"failed to export changes of {str(layer)!r}") from None
    return writer.written


def diff_layer(
    layer: Path,
    out: BinaryIO,
    *,
    mode: Literal["overlay", "vfs"],
    parent: Path | None = None,
    xattrs: XattrPolicy = "capability",
) -> int:
    """Write the layer tar of a read-write layer to `out` (uncompressed); return its size.

    overlay: `layer` is the overlay upper directory (`parent` is not needed). vfs: `layer` is
    the layer's full directory and `parent` its parent's (None for a base layer: everything).
    """
    if mode == "overlay" or parent is None:
        whiteouts: Literal["overlay"] | None = "overlay" if mode == "overlay" else None
        return tar_directory(layer, out, whiteouts=whiteouts, xattrs=xattrs)
    return export_changes(layer, changes(layer, parent), out, xattrs=xattrs)


def directory_size(path: Path) -> int:
    """Sum of the sizes of the non-directories below `path`, each inode once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            if not st.st_size:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += st.st_size
    return total
