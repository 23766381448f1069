"""Secure layer extraction: `apply_layer` unpacks a (compressed) layer tar under a root.

Rule: nothing an archive says can create, change or follow anything outside `root`. Entry
names lose their leading "/" and are cleaned; a name that still climbs out ("../x") is refused
with dockerd's breakout error `invalid entry name "../x"`. Parent directories are resolved inside
the root with chroot semantics (`RootDir`: symlinks followed but never out, missing directories
created 0755), and the entry itself is created with *at(2) calls that never follow its last
component: an existing entry is removed first unless both are directories (then they merge),
so a file replacing a symlink replaces the symlink. Symlinks are created verbatim (their target
is only ever followed by `RootDir`). Hardlink targets are cleaned the same way (`invalid hardlink
target "../x"`), resolved in the root, and linked without following. Block and char devices are
made only with `allow_devices` (else skipped silently, as dockerd does in a user namespace);
fifos always. Metadata is dockerd's: lchown to the header's uid/gid, then every SCHILY.xattr
record (dockerd filters none; EPERM is ignored, ENOTSUP too with `best_effort_xattrs`), then the
mode with setuid/setgid/sticky (after chown, which clears them), then atime/mtime (atime never
before mtime; times before 1970 become 1970); directory times last, after their contents.

Whiteouts (`whiteouts=`): "delete" is dockerd's UnpackLayer (vfs and naive drivers): `.wh.x`
removes x, `.wh..wh..opq` empties its directory of everything not unpacked by this layer, other
top-level `.wh..wh.*` (AUFS metadata) are skipped except hardlink targets in `.wh..wh.plnk`.
"overlay" is what overlay2's ApplyDiff does: `.wh.x` becomes a 0/0 char device owned by the
header's uid/gid, `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory. "none" (for
`docker cp`) extracts `.wh.` names as ordinary files. `.wh.`, `.wh..` and `.wh...` are refused.

Errors: a bad archive raises an `ArchiveError` (InvalidParameter) naming the entry, a failing
host an `ArchiveSystemError`. Nothing is rolled back: on error the caller discards the whole
root (the layer store extracts into a temporary directory and renames it when done).

`LayerStats.size` is dockerd's ApplyLayer value: the sum of the size fields of all entries
(= bytes of regular-file content for any sane layer; dockerd's overlay2 reports the du-like
`diff.directory_size` of the layer directory instead). `diff_id` is the sha256 of the whole
uncompressed stream, read to its end, so the caller can check it without a second pass.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import posixpath
import shutil
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Literal

from pymoby.archive import tarformat as tf
from pymoby.archive.compression import Compression, Reader, decompress_stream
from pymoby.archive.errors import ArchiveError, ArchiveSystemError, BreakoutError, from_oserror
from pymoby.archive.rootdir import RootDir, chmod_at, proc_path, remove_all, split
from pymoby.archive.tarreader import TarReader
from pymoby.archive.tarsplit import TarSplitWriter
from pymoby.archive.whiteouts import (
    OVERLAY_OPAQUE_XATTR,
    WHITEOUT_LINK_DIR,
    WHITEOUT_META_PREFIX,
    WHITEOUT_OPAQUE_DIR,
    WHITEOUT_PREFIX,
)
from pymoby.log import go_quote

log = logging.getLogger("pymoby.archive")

Whiteouts = Literal["overlay", "delete", "none"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_DEV = (1 << 32) - 1


@dataclasses.dataclass(frozen=True)
class LayerStats:
    """What extraction measured (see the module docstring for `size`)."""

    size: int
    diff_id: str
    tar_size: int
    compression: Compression


def clean_name(name: str) -> str:
    """dockerd's entry-name normalisation: strip leading "/", then path.Clean."""
    return posixpath.normpath(name.lstrip("/")) if name.strip("/") else "."


def is_local(name: str) -> bool:
    return name not in ("", "..") and not name.startswith("../")


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def _bound_ns(ns: int) -> int:
    return ns if 0 <= ns < 1 << 63 else 0


class _Extractor:
    def __init__(
        self,
        root: RootDir,
        reader: TarReader,
        tarsplit: TarSplitWriter | None,
        *,
        whiteouts: Whiteouts,
        allow_devices: bool,
        best_effort_xattrs: bool,
        no_overwrite_dir_nondir: bool,
    ) -> None:
        self.root = root
        self.reader = reader
        self.tarsplit = tarsplit
        self.whiteouts = whiteouts
        self.allow_devices = allow_devices
        self.best_effort_xattrs = best_effort_xattrs
        self.no_overwrite_dir_nondir = no_overwrite_dir_nondir
        self.size = 0
        self.dirs: list[tuple[str, int, int]] = []
        self.unpacked: set[str] = set()
        # One cached parent directory: (unresolved parent, fd, real path); dropped whenever
        # anything is removed, the only way an already resolved path can change meaning.
        self._cache: tuple[str, int, str] | None = None
        self._stale = False
        self._plnk_dir: str | None = None
        self._plnk: dict[str, tf.TarHeader] = {}

    def close(self) -> None:
        if self._cache is not None:
            os.close(self._cache[1])
            self._cache = None
        if self._plnk_dir is not None:
            shutil.rmtree(self._plnk_dir, ignore_errors=True)

    # -- entries ------------------------------------------------------------------------------

    def run(self) -> None:
        while (hdr := self.reader.next()) is not None:
            self.size += hdr.size
            if hdr.typeflag == tf.PAX_GLOBAL:
                continue
            name = clean_name(hdr.name)
            if name == ".":
                continue
            if not is_local(name):
                raise BreakoutError(f"invalid entry name {go_quote(hdr.name)}")
            try:
                self._entry(name, hdr)
            except OSError as err:
                raise from_oserror(err, f"failed to extract entry {go_quote(hdr.name)}") from None
        self._restore_dir_times()

    def _entry(self, name: str, hdr: tf.TarHeader) -> None:
        if self.whiteouts != "none" and name.startswith(WHITEOUT_META_PREFIX):
            if name.startswith(WHITEOUT_LINK_DIR + "/") and hdr.typeflag == tf.REG:
                self._save_plnk(name, hdr)
            if name != WHITEOUT_OPAQUE_DIR:
                return
        parent, base = split(name)
        dirfd, parent_real = self._parent("/".join(parent))
        if self.whiteouts != "none" and base.startswith(WHITEOUT_PREFIX):
            self._whiteout(dirfd, parent_real, base, hdr)
            return
        real = _join(parent_real, base)
        try:
            existing: os.stat_result | None = os.stat(base, dir_fd=dirfd, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None:
            is_dir = stat.S_ISDIR(existing.st_mode)
            if self.no_overwrite_dir_nondir and is_dir != (hdr.typeflag == tf.DIR):
                if is_dir:
                    msg = f"cannot overwrite directory {go_quote(name)} with non-directory"
                else:
                    msg = f"cannot overwrite non-directory {go_quote(name)} with directory"
                raise ArchiveError(f"{msg} {go_quote(str(self.root.path))}")
            if not (is_dir and hdr.typeflag == tf.DIR):
                remove_all(dirfd, base)
                self._stale = True
        merge = existing is not None and stat.S_ISDIR(existing.st_mode) and hdr.typeflag == tf.DIR
        self._create(dirfd, base, real, hdr, merge=merge)
        if self.whiteouts == "delete":
            self.unpacked.add(real)

    def _parent(self, parent: str) -> tuple[int, str]:
        cache = self._cache
        if cache is not None and cache[0] == parent and not self._stale:
            return cache[1], cache[2]
        fd, names = self.root.resolve_dir(parent.split("/") if parent else [], create=True)
        if cache is not None:
            os.close(cache[1])
        self._cache = (parent, fd, "/".join(names))
        self._stale = False
        return fd, self._cache[2]

    def _create(self, dirfd: int, base: str, real: str, hdr: tf.TarHeader, *, merge: bool) -> None:
        kind = hdr.typeflag
        mode = hdr.mode & 0o7777
        atime, mtime = self._times(hdr)
        if kind == tf.DIR:
            if not merge:
                os.mkdir(base, 0o700, dir_fd=dirfd)
            fd = os.open(base, _DIR_FLAGS, dir_fd=dirfd)
            try:
                self._fd_metadata(fd, hdr, mode)
            finally:
                os.close(fd)
            self.dirs.append((real, atime, mtime))
            return
        if kind == tf.REG:
            fd = os.open(base, _NEW_FILE_FLAGS, 0o600, dir_fd=dirfd)
            try:
                if self.tarsplit is not None and hdr.data_size:
                    self.tarsplit.file(real, hdr.data_size)
                self.reader.copy_content(fd)
                self._fd_metadata(fd, hdr, mode)
                os.utime(fd, ns=(atime, mtime))
            finally:
                os.close(fd)
            return
        if kind == tf.LINK:
            self._hardlink(dirfd, base, hdr, mode, (atime, mtime))
            return
        if kind == tf.SYMLINK:
            os.symlink(hdr.linkname, base, dir_fd=dirfd)
            os.chown(base, hdr.uid, hdr.gid, dir_fd=dirfd, follow_symlinks=False)
            self._path_xattrs(dirfd, base, hdr)
            os.utime(base, ns=(atime, mtime), dir_fd=dirfd, follow_symlinks=False)
            return
        if kind in (tf.CHAR, tf.BLOCKDEV, tf.FIFO):
            if kind == tf.FIFO:
                os.mkfifo(base, 0o600, dir_fd=dirfd)
            else:
                if not self.allow_devices:
                    log.debug("skipping device node %s", go_quote(hdr.name))
                    return
                if not (0 <= hdr.devmajor <= _MAX_DEV and 0 <= hdr.devminor <= _MAX_DEV):
                    raise ArchiveError(
                        f"device number {hdr.devmajor}:{hdr.devminor} for"
                        f" {go_quote(hdr.name)} out of range"
                    )
                ifmt = stat.S_IFCHR if kind == tf.CHAR else stat.S_IFBLK
                dev = os.makedev(hdr.devmajor, hdr.devminor)
                os.mknod(base, ifmt | 0o600, dev, dir_fd=dirfd)
            os.chown(base, hdr.uid, hdr.gid, dir_fd=dirfd, follow_symlinks=False)
            self._path_xattrs(dirfd, base, hdr)
            chmod_at(dirfd, base, mode)
            os.utime(base, ns=(atime, mtime), dir_fd=dirfd, follow_symlinks=False)
            return
        raise ArchiveError(f"unhandled tar header type {ord(kind)} for {go_quote(hdr.name)}")

    def _hardlink(
        self, dirfd: int, base: str, hdr: tf.TarHeader, mode: int, times: tuple[int, int]
    ) -> None:
        link = hdr.linkname
        target = clean_name(link)
        if self.whiteouts != "none" and target.startswith(WHITEOUT_LINK_DIR + "/"):
            self._plnk_copy(dirfd, base, target)
            return
        if target == "." or not is_local(target):
            raise BreakoutError(f"invalid hardlink target {go_quote(link)}")
        tdir, _, tbase = self.root.open_parent(target)
        try:
            os.link(tbase, base, src_dir_fd=tdir, dst_dir_fd=dirfd, follow_symlinks=False)
            target_is_link = stat.S_ISLNK(
                os.stat(tbase, dir_fd=tdir, follow_symlinks=False).st_mode
            )
        finally:
            os.close(tdir)
        os.chown(base, hdr.uid, hdr.gid, dir_fd=dirfd, follow_symlinks=False)
        self._path_xattrs(dirfd, base, hdr)
        if not target_is_link:
            chmod_at(dirfd, base, mode)
            os.utime(base, ns=times, dir_fd=dirfd, follow_symlinks=False)

    # -- metadata -----------------------------------------------------------------------------

    @staticmethod
    def _times(hdr: tf.TarHeader) -> tuple[int, int]:
        mtime = hdr.mtime_ns
        atime = max(hdr.atime_ns if hdr.atime_ns is not None else mtime, mtime)
        return _bound_ns(atime), _bound_ns(mtime)

    def _fd_metadata(self, fd: int, hdr: tf.TarHeader, mode: int) -> None:
        os.fchown(fd, hdr.uid, hdr.gid)
        for key, value in hdr.xattrs.items():
            try:
                os.setxattr(fd, key, value)
            except OSError as err:
                self._xattr_failed(err, key, hdr)
        os.fchmod(fd, mode)

    def _path_xattrs(self, dirfd: int, base: str, hdr: tf.TarHeader) -> None:
        for key, value in hdr.xattrs.items():
            try:
                os.setxattr(proc_path(dirfd, base), key, value, follow_symlinks=False)
            except OSError as err:
                self._xattr_failed(err, key, hdr)

    def _xattr_failed(self, err: OSError, key: str, hdr: tf.TarHeader) -> None:
        unsupported = err.errno in (errno.ENOTSUP, errno.EOPNOTSUPP)
        if err.errno == errno.EPERM or (unsupported and self.best_effort_xattrs):
            log.warning("ignored xattr %s of %s: %s", key, go_quote(hdr.name), err.strerror)
            return
        raise err

    def _restore_dir_times(self) -> None:
        for real, atime, mtime in self.dirs:
            try:
                dirfd, _, base = self.root.open_parent(real)
            except OSError:
                continue  # removed or replaced later in the layer
            try:
                st = os.stat(base, dir_fd=dirfd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    os.utime(base, ns=(atime, mtime), dir_fd=dirfd, follow_symlinks=False)
            except FileNotFoundError:
                pass
            finally:
                os.close(dirfd)

    # -- whiteouts ----------------------------------------------------------------------------

    def _whiteout(self, dirfd: int, parent_real: str, base: str, hdr: tf.TarHeader) -> None:
        if base in (".wh.", ".wh..", ".wh..."):
            raise ArchiveError(f"invalid whiteout entry {go_quote(hdr.name)}")
        self._stale = True
        if base == WHITEOUT_OPAQUE_DIR:
            if self.whiteouts == "overlay":
                os.setxattr(dirfd, OVERLAY_OPAQUE_XATTR, b"y")
            else:
                self._empty_lower(dirfd, parent_real)
            return
        original = base[len(WHITEOUT_PREFIX) :]
        remove_all(dirfd, original)
        if self.whiteouts == "overlay":
            os.mknod(original, stat.S_IFCHR, 0, dir_fd=dirfd)
            os.chown(original, hdr.uid, hdr.gid, dir_fd=dirfd, follow_symlinks=False)

    def _empty_lower(self, dirfd: int, dir_real: str) -> None:
        """Opaque directory, delete mode: remove what this layer did not unpack, recursively."""
        for entry in list(os.scandir(dirfd)):
            real = _join(dir_real, entry.name)
            if real not in self.unpacked:
                remove_all(dirfd, entry.name)
            elif entry.is_dir(follow_symlinks=False):
                sub = os.open(entry.name, _DIR_FLAGS, dir_fd=dirfd)
                try:
                    self._empty_lower(sub, real)
                finally:
                    os.close(sub)

    # -- AUFS hardlink targets (.wh..wh.plnk), as dockerd's UnpackLayer ---------------------------

    def _save_plnk(self, name: str, hdr: tf.TarHeader) -> None:
        if self._plnk_dir is None:
            self._plnk_dir = tempfile.mkdtemp(prefix="pymoby-plnk-")
        key = posixpath.basename(name)
        fd = os.open(os.path.join(self._plnk_dir, key), _NEW_FILE_FLAGS & ~os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, 0)
            self.reader.copy_content(fd, record=True)
        finally:
            os.close(fd)
        self._plnk[key] = hdr

    def _plnk_copy(self, dirfd: int, base: str, target: str) -> None:
        key = posixpath.basename(target)
        src = self._plnk.get(key)
        if src is None or self._plnk_dir is None:
            raise ArchiveError("invalid aufs hardlink")
        fd = os.open(base, _NEW_FILE_FLAGS, 0o600, dir_fd=dirfd)
        try:
            with open(os.path.join(self._plnk_dir, key), "rb") as f:
                while chunk := f.read(1 << 20):
                    os.write(fd, chunk)
            self._fd_metadata(fd, src, src.mode & 0o7777)
            os.utime(fd, ns=self._times(src))
        finally:
            os.close(fd)


def apply_layer(
    stream: Reader | BinaryIO,
    root: Path,
    *,
    whiteouts: Whiteouts,
    tarsplit_out: BinaryIO | None = None,
    allow_devices: bool = True,
    best_effort_xattrs: bool = False,
    no_overwrite_dir_nondir: bool = False,
) -> LayerStats:
    """Extract the layer tar in `stream` (uncompressed, gzip, zstd, bzip2 or xz) under `root`.

    `root` must be an existing directory. With `tarsplit_out`, the tar-split record of the
    uncompressed stream is written there (see `tarsplit.reassemble`). Synchronous: run it in a
    thread. See the module docstring for the rules, errors and the meaning of the result.
    """
    decompressed = decompress_stream(stream)
    tarsplit = TarSplitWriter(tarsplit_out) if tarsplit_out is not None else None
    reader = TarReader(decompressed, tarsplit.segment if tarsplit is not None else None)
    try:
        rootdir = RootDir(root)
    except OSError as err:
        raise ArchiveSystemError(f"cannot open extraction root {str(root)!r}: {err}") from None
    with rootdir:
        extractor = _Extractor(
            rootdir,
            reader,
            tarsplit,
            whiteouts=whiteouts,
            allow_devices=allow_devices,
            best_effort_xattrs=best_effort_xattrs,
            no_overwrite_dir_nondir=no_overwrite_dir_nondir,
        )
        try:
            extractor.run()
        except RecursionError:
            raise ArchiveError("directory tree of the layer is too deep") from None
        finally:
            extractor.close()
    reader.finish()
    if tarsplit is not None:
        tarsplit.close()
    return LayerStats(
        size=extractor.size,
        diff_id=reader.source.digest(),
        tar_size=reader.source.total,
        compression=decompressed.compression,
    )
