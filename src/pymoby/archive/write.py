"""Writing tars from directories: `TarWriter`, `tar_directory` (docker cp, export, diffs).

Rule: headers are what dockerd's tarAppender writes -- built from lstat without user/group name
lookups: mode = permission + setuid/setgid/sticky bits, mtime truncated to whole seconds, no
atime/ctime, directories named with a trailing "/", a second path to an already written inode
(nlink > 1) as a hardlink to the first name, sockets skipped, and of the xattrs only
`security.capability` (a v3 capability is written as v2, as dockerd does) unless
`xattrs="all"`. Directories are walked depth first, each directory's entries sorted by their
bytes, so equal trees give equal tars. The walk uses directory fds and never follows a symlink
(not even one swapped in while a container runs); a file that shrinks while being read is padded
with zeros and one that grows is cut, so the tar stays well-formed. The end is Go's: two zero
blocks, no padding to a record size.

With `whiteouts="overlay"` the overlay upper-dir encoding is converted to the tar one, as
overlay2's Diff does: a 0/0 char device `x` becomes an empty regular file `.wh.x` (mode 0600,
its owner and mtime kept); a directory with `trusted.overlay.opaque=y` is followed by an empty
`<dir>/.wh..wh..opq` (the directory's permission bits and owner, mtime 0).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO, Literal

from pymoby.archive import tarformat as tf
from pymoby.archive.compression import CHUNK
from pymoby.archive.errors import from_oserror
from pymoby.archive.rootdir import RootDir, proc_path
from pymoby.archive.whiteouts import OVERLAY_OPAQUE_XATTR, WHITEOUT_OPAQUE_DIR, WHITEOUT_PREFIX

XattrPolicy = Literal["capability", "all"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CAPABILITY = "security.capability"


class TarWriter:
    """Writes entries to `out`; `close()` writes the end-of-archive blocks (not closing `out`)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.written = 0

    def _write(self, data: bytes | memoryview) -> None:
        self._out.write(data)
        self.written += len(data)

    def add(self, hdr: tf.TarHeader, content_fd: int | None = None) -> None:
        """Write `hdr`, then `hdr.size` bytes of content read from `content_fd` (if a file)."""
        self._write(tf.format_header(hdr))
        size = hdr.size if hdr.typeflag in (tf.REG, tf.AREG) else 0
        if not size:
            return
        left = size
        if content_fd is not None:
            while left:
                chunk = os.read(content_fd, min(left, CHUNK))
                if not chunk:
                    break
                self._write(chunk)
                left -= len(chunk)
        while left:
            step = min(left, CHUNK)
            self._write(bytes(step))
            left -= step
        self._write(tf.padding(size))

    def close(self) -> None:
        self._write(bytes(2 * tf.BLOCK))


def read_capability(dirfd: int, name: str) -> bytes | None:
    """security.capability of `name` (not followed), v3 converted to v2 as dockerd does."""
    try:
        cap = os.getxattr(proc_path(dirfd, name), _CAPABILITY, follow_symlinks=False)
    except OSError:
        return None
    if len(cap) > 3 and cap[3] == 3:
        cap = cap[:3] + b"\x02" + cap[4:20]
    return cap


class Appender:
    """Turns files into tar entries (see the module rule); remembers inodes for hardlinks."""

    def __init__(
        self, writer: TarWriter, *, whiteouts: Literal["overlay"] | None, xattrs: XattrPolicy
    ) -> None:
        self.writer = writer
        self.overlay = whiteouts == "overlay"
        self.xattrs = xattrs
        self._seen: dict[tuple[int, int], str] = {}

    def _xattrs(self, dirfd: int, base: str) -> dict[str, bytes]:
        if self.xattrs == "capability":
            cap = read_capability(dirfd, base)
            return {_CAPABILITY: cap} if cap is not None else {}
        path = proc_path(dirfd, base)
        found: dict[str, bytes] = {}
        try:
            names = os.listxattr(path, follow_symlinks=False)
        except OSError:
            return found
        for key in sorted(names):
            if key.startswith(("trusted.overlay.", "user.overlay.")):
                continue
            try:
                found[key] = os.getxattr(path, key, follow_symlinks=False)
            except OSError:
                continue
        if _CAPABILITY in found:
            found[_CAPABILITY] = read_capability(dirfd, base) or found[_CAPABILITY]
        return found

    def add(self, dirfd: int, base: str, name: str, st: os.stat_result) -> None:
        """Add the file `base` of directory `dirfd` (already lstat-ed) as `name`."""
        mode = st.st_mode
        hdr = tf.TarHeader(
            name=name,
            mode=mode & 0o7777,
            uid=st.st_uid,
            gid=st.st_gid,
            mtime_ns=(st.st_mtime_ns // 1_000_000_000) * 1_000_000_000,
        )
        if stat.S_ISSOCK(mode):
            return  # Go's FileInfoHeader refuses sockets; dockerd logs and skips them
        if self.overlay and stat.S_ISCHR(mode) and st.st_rdev == 0:
            head, _, tail = name.rpartition("/")
            hdr.name = f"{head}/{WHITEOUT_PREFIX}{tail}" if head else WHITEOUT_PREFIX + tail
            hdr.mode = 0o600
            self.writer.add(hdr)
            return
        if stat.S_ISDIR(mode):
            hdr.typeflag = tf.DIR
            hdr.name = name if name.endswith("/") else name + "/"
        elif stat.S_ISLNK(mode):
            hdr.typeflag = tf.SYMLINK
            hdr.linkname = os.readlink(base, dir_fd=dirfd)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            hdr.typeflag = tf.CHAR if stat.S_ISCHR(mode) else tf.BLOCKDEV
            hdr.devmajor = os.major(st.st_rdev)
            hdr.devminor = os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            hdr.typeflag = tf.FIFO
        else:
            hdr.size = st.st_size
        hdr.xattrs = self._xattrs(dirfd, base)
        if not stat.S_ISDIR(mode) and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            first = self._seen.get(key)
            if first is not None:
                hdr.typeflag, hdr.linkname, hdr.size = tf.LINK, first, 0
            else:
                self._seen[key] = name
        if hdr.typeflag == tf.REG and hdr.size:
            fd = os.open(base, _READ_FLAGS, dir_fd=dirfd)
            try:
                self.writer.add(hdr, fd)
            finally:
                os.close(fd)
        else:
            self.writer.add(hdr)
        if self.overlay and hdr.typeflag == tf.DIR and self._opaque(dirfd, base):
            marker = tf.TarHeader(
                name=hdr.name + WHITEOUT_OPAQUE_DIR, mode=mode & 0o777, uid=hdr.uid, gid=hdr.gid
            )
            self.writer.add(marker)

    @staticmethod
    def _opaque(dirfd: int, base: str) -> bool:
        try:
            value = os.getxattr(proc_path(dirfd, base), OVERLAY_OPAQUE_XATTR, follow_symlinks=False)
        except OSError:
            return False
        return value == b"y"

    def walk(self, dirfd: int, prefix: str) -> None:
        """Add everything below `dirfd`, depth first in sorted order, names under `prefix`."""
        stack: list[tuple[int, str, list[str]]] = []
        names = sorted(os.listdir(dirfd), key=tf.encode, reverse=True)
        stack.append((os.dup(dirfd), prefix, names))
        try:
            while stack:
                fd, pre, todo = stack[-1]
                if not todo:
                    os.close(fd)
                    stack.pop()
                    continue
                base = todo.pop()
                name = f"{pre}/{base}" if pre else base
                try:
                    st = os.stat(base, dir_fd=fd, follow_symlinks=False)
                    self.add(fd, base, name, st)
                    if not stat.S_ISDIR(st.st_mode):
                        continue
                    sub = os.open(base, _DIR_FLAGS, dir_fd=fd)
                except (FileNotFoundError, NotADirectoryError):
                    continue  # vanished or swapped while walking (a running container)
                try:
                    children = sorted(os.listdir(sub), key=tf.encode, reverse=True)
                except OSError:
                    os.close(sub)
                    raise
                stack.append((sub, name, children))
        finally:
            for fd, _, _ in stack:
                os.close(fd)


def tar_directory(
    root: Path,
    out: BinaryIO,
    *,
    include: Sequence[str] | None = None,
    rebase: Mapping[str, str] | None = None,
    whiteouts: Literal["overlay"] | None = None,
    xattrs: XattrPolicy = "capability",
) -> int:
    """Write a tar of `root` (or of the `include` paths below it) to `out`; return its size.

    Each include is a relative path resolved inside `root` (parents with chroot semantics, the
    last component not followed); it is written with its contents under its own name, or under
    `rebase[include]` when given (docker cp's RebaseNames). Missing includes are skipped, as by
    dockerd. The root directory itself is never an entry. Synchronous: run it in a thread.
    """
    writer = TarWriter(out)
    appender = Appender(writer, whiteouts=whiteouts, xattrs=xattrs)
    try:
        with RootDir(root) as rootdir:
            for inc in include or ["."]:
                clean = os.path.normpath(inc.lstrip("/")) if inc.strip("/") else "."
                if clean == ".":
                    appender.walk(rootdir.fd, "")
                    continue
                try:
                    dirfd, _, base = rootdir.open_parent(clean)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                target = clean
                if rebase is not None:
                    new = rebase.get(inc, rebase.get(clean))
                    target = target if new is None else new.strip("/")
                try:
                    _add_include(appender, dirfd, base, target)
                finally:
                    os.close(dirfd)
        writer.close()
    except OSError as err:
        raise from_oserror(err, f"failed to archive {str(root)!r}") from None
    return writer.written


def _add_include(appender: Appender, dirfd: int, base: str, name: str) -> None:
    try:
        st = os.stat(base, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if name:
        appender.add(dirfd, base, name, st)
    if stat.S_ISDIR(st.st_mode):
        sub = os.open(base, _DIR_FLAGS, dir_fd=dirfd)
        try:
            appender.walk(sub, name.rstrip("/"))
        finally:
            os.close(sub)
