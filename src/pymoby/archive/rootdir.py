"""Paths resolved inside a root directory as if it were "/" -- the security boundary.

Rule: every path an archive names is resolved by `RootDir` one component at a time with
`openat(O_NOFOLLOW | O_DIRECTORY)` relative to the previous directory's fd; nothing ever passes a
joined host path to the kernel. A symlink met on the way is read (`readlinkat`) and expanded by
us with chroot semantics: an absolute target restarts at the root, and ".." never climbs above
the root. This is what dockerd gets by chroot(2)-ing into the layer directory before unpacking
(pkg/chrootarchive; the newest go-archive does the same for absolute links via os.Root), and it
is how the container will see the same paths. The last component of an entry is never
followed: callers act on it with the *at(2) calls and a directory fd (`mkdirat`, `symlinkat`,
`mknodat`, `linkat` without AT_SYMLINK_FOLLOW, `fchownat`/`utimensat` with
AT_SYMLINK_NOFOLLOW, `open(O_CREAT | O_EXCL | O_NOFOLLOW)`).

".." is taken by the kernel from the current directory fd and checked against the (dev, inode)
we recorded on the way down, so a directory moved concurrently (a running container, during
`docker cp`) fails the walk instead of leading out of the root. At most 255 symlinks are
followed per path (dockerd's limit); missing directories can be created on the way (mode 0755,
owner of the process -- dockerd's implied directories).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path

from pymoby.archive.errors import ArchiveError

MAX_LINKS = 255
IMPLIED_DIR_MODE = 0o755
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def split(path: str) -> tuple[list[str], str]:
    """("a/b/c") -> (["a", "b"], "c"); the path must be clean and relative."""
    parent, _, base = path.rpartition("/")
    return (parent.split("/") if parent else []), base


class RootDir:
    """An open directory in which archive paths are resolved (see the module rule)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        st = os.fstat(self.fd)
        self._ident = (st.st_dev, st.st_ino)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> RootDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def resolve_dir(self, parts: list[str], *, create: bool = False) -> tuple[int, list[str]]:
        """Open the directory named by `parts`, following symlinks inside the root.

        Returns a new fd (the caller closes it) and the real path components of that
        directory below the root. Raises FileNotFoundError (create=False) or
        NotADirectoryError when a component is missing or not a directory.
        """
        todo = list(reversed(parts))
        names: list[str] = []
        idents = [self._ident]
        links = 0
        cur = os.dup(self.fd)
        try:
            while todo:
                comp = todo.pop()
                if comp in ("", "."):
                    continue
                if comp == "..":
                    if names:
                        up = os.open("..", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=cur)
                        st = os.fstat(up)
                        if (st.st_dev, st.st_ino) != idents[-2]:
                            os.close(up)
                            raise ArchiveError(
                                f"directory {'/'.join(names)!r} moved while being resolved"
                            )
                        os.close(cur)
                        cur = up
                        names.pop()
                        idents.pop()
                    continue
                try:
                    nxt = os.open(comp, _DIR_FLAGS, dir_fd=cur)
                except FileNotFoundError:
                    if not create:
                        raise
                    nxt = self._mkdir(cur, comp)
                except OSError as err:
                    # A symlink fails with ELOOP or (with O_DIRECTORY) ENOTDIR.
                    if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    try:
                        target = os.readlink(comp, dir_fd=cur)
                    except OSError:
                        raise err from None
                    links += 1
                    if links > MAX_LINKS:
                        raise ArchiveError(
                            f"too many levels of symbolic links in {'/'.join(parts)!r}"
                        ) from None
                    if target.startswith("/"):
                        os.close(cur)
                        cur = os.dup(self.fd)
                        names.clear()
                        del idents[1:]
                    todo.extend(reversed(target.split("/")))
                    continue
                st = os.fstat(nxt)
                os.close(cur)
                cur = nxt
                names.append(comp)
                idents.append((st.st_dev, st.st_ino))
        except BaseException:
            os.close(cur)
            raise
        return cur, names

    @staticmethod
    def _mkdir(dirfd: int, name: str) -> int:
        try:
            os.mkdir(name, IMPLIED_DIR_MODE, dir_fd=dirfd)
        except FileExistsError:
            return os.open(name, _DIR_FLAGS, dir_fd=dirfd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=dirfd)
        os.fchmod(fd, IMPLIED_DIR_MODE)  # mkdir(2) applied the umask
        return fd

    def open_parent(self, path: str, *, create: bool = False) -> tuple[int, str, str]:
        """(fd of the parent directory, real path of the entry below the root, base name)."""
        parts, base = split(path)
        fd, names = self.resolve_dir(parts, create=create)
        names.append(base)
        return fd, "/".join(names), base

    def open_regular(self, path: str) -> int:
        """Open an existing regular file for reading; its last component is not followed."""
        dirfd, _, base = self.open_parent(path)
        try:
            fd = os.open(
                base, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dirfd
            )
        finally:
            os.close(dirfd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ArchiveError(f"{path!r} is not a regular file")
        return fd


def remove_all(dirfd: int, name: str) -> None:
    """Remove `name` in `dirfd` and everything below it, never following symlinks."""
    try:
        os.unlink(name, dir_fd=dirfd)
    except FileNotFoundError:
        return
    except IsADirectoryError:
        shutil.rmtree(name, dir_fd=dirfd)


def proc_path(dirfd: int, name: str) -> str:
    """A path naming `name` in `dirfd` through /proc, for calls without an *at(2) form."""
    return f"/proc/self/fd/{dirfd}/{name}"


def chmod_at(dirfd: int, name: str, mode: int) -> None:
    """chmod a non-symlink `name` in `dirfd` without following a symlink swapped in."""
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        if stat.S_ISLNK(os.fstat(fd).st_mode):
            return
        os.chmod(f"/proc/self/fd/{fd}", mode)
    finally:
        os.close(fd)
