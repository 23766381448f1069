"""The outer tar of `docker load`, spooled once to a staging directory and read by path.

Rule: the archive is read ONCE, as a stream (its order is arbitrary: manifest.json usually comes
last), and every regular file is copied to `<staging>/<n>` -- files named by a counter, never by
the archive's own names, so nothing the archive says can reach outside the staging directory.
The archive's names live only in an in-memory index (name -> spooled file, symlink target or
hard link), and `open`/`read` resolve a name the way dockerd's `safePath` does after untarring
into a temp dir: symlinks are followed with chroot semantics inside the archive (an absolute or
`..`-climbing target stays inside), at most 255 of them. An entry whose name climbs out of the
archive (`../x`) is refused, as dockerd's untar refuses it. Bad tar bytes raise the archive
package's errors (InvalidParameter). The caller owns the staging directory and removes it.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pymoby import errdefs
from pymoby.archive import tarformat as tf
from pymoby.archive.compression import Reader
from pymoby.archive.tarreader import TarReader

MAX_SYMLINKS = 255
MAX_DOCUMENT = 64 << 20  # JSON documents (manifests, configs) read into memory


class InvalidArchive(errdefs.InvalidParameter):
    """`invalid archive: ...`: the load input is not what docker save writes."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"invalid archive: {problem}")


@dataclass(frozen=True, slots=True)
class Entry:
    """One name of the archive: a spooled file, a symlink or a directory."""

    kind: str  # "file", "symlink", "dir"
    path: Path | None = None  # the spooled file
    size: int = 0
    target: str = ""  # symlink target, as written


def clean(name: str) -> str:
    """An archive name as a relative, normalised path ("" for the root)."""
    cleaned = posixpath.normpath("/" + name).lstrip("/")
    return "" if cleaned == "." else cleaned


class Spool:
    """The index of a spooled archive; build it with `Spool.read(stream, staging)`."""

    def __init__(self, staging: Path) -> None:
        self.staging = staging
        self.entries: dict[str, Entry] = {}
        self.size = 0

    @classmethod
    def read(cls, stream: Reader, staging: Path) -> Spool:
        """Copy every regular file of the tar in `stream` to `staging`; index the names."""
        spool = cls(staging)
        reader = TarReader(stream)
        counter = 0
        while (hdr := reader.next()) is not None:
            if hdr.typeflag in (tf.PAX_GLOBAL,):
                continue
            name = _checked_name(hdr.name)
            if not name:
                continue
            kind = hdr.typeflag
            if kind == tf.REG:
                counter += 1
                path = staging / str(counter)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                try:
                    reader.copy_content(fd)
                finally:
                    os.close(fd)
                spool._add_parents(name)
                spool.entries[name] = Entry("file", path, hdr.size)
            elif kind == tf.DIR:
                spool._add_parents(name)
                spool.entries[name] = Entry("dir")
            elif kind == tf.SYMLINK:
                spool._add_parents(name)
                spool.entries[name] = Entry("symlink", target=hdr.linkname)
            elif kind == tf.LINK:
                target = _checked_name(hdr.linkname)
                found = spool.entries.get(target)
                if found is None or found.kind != "file":
                    raise InvalidArchive(f"hard link {hdr.name!r} to missing file {hdr.linkname!r}")
                spool._add_parents(name)
                spool.entries[name] = found
            # devices, fifos: nothing a load needs; dockerd's untar creates them, we ignore them
        reader.finish()
        spool.size = reader.source.total
        return spool

    def _add_parents(self, name: str) -> None:
        parent = posixpath.dirname(name)
        while parent and parent not in self.entries:
            self.entries[parent] = Entry("dir")
            parent = posixpath.dirname(parent)

    # -- lookups -------------------------------------------------------------------------

    def resolve(self, name: str) -> str:
        """`name` with every symlink followed inside the archive (moby's FollowSymlinkInScope)."""
        todo = [p for p in name.split("/") if p]
        done: list[str] = []
        links = 0
        while todo:
            part = todo.pop(0)
            if part == ".":
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            current = "/".join([*done, part])
            entry = self.entries.get(current)
            if entry is not None and entry.kind == "symlink":
                links += 1
                if links > MAX_SYMLINKS:
                    raise InvalidArchive(f"too many links resolving {name!r}")
                target = entry.target
                if target.startswith("/"):
                    done = []
                todo = [p for p in target.split("/") if p] + todo
                continue
            done.append(part)
        return "/".join(done)

    def lookup(self, name: str) -> Entry | None:
        """The regular file `name` leads to, or None."""
        entry = self.entries.get(self.resolve(name))
        return entry if entry is not None and entry.kind == "file" else None

    def exists(self, name: str) -> bool:
        return self.lookup(name) is not None

    def path(self, name: str, what: str = "") -> Path:
        """The spooled file of `name`; InvalidArchive naming it when there is none."""
        entry = self.lookup(name)
        if entry is None or entry.path is None:
            raise InvalidArchive(f"{what or 'file'} {name!r} is missing")
        return entry.path

    def open(self, name: str, what: str = "") -> BinaryIO:
        return open(self.path(name, what), "rb")

    def read_document(self, name: str, what: str = "") -> bytes:
        """A small file's bytes (JSON documents); refuses anything above MAX_DOCUMENT."""
        entry = self.lookup(name)
        if entry is None or entry.path is None:
            raise InvalidArchive(f"{what or 'file'} {name!r} is missing")
        if entry.size > MAX_DOCUMENT:
            raise InvalidArchive(f"{what or 'file'} {name!r} is too large ({entry.size} bytes)")
        return entry.path.read_bytes()


def _checked_name(name: str) -> str:
    """dockerd's untar breakout check: a name that leaves the archive root is refused."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    depth = 0
    for part in parts:
        depth = depth - 1 if part == ".." else depth + 1
        if depth < 0:
            raise InvalidArchive(f"entry {name!r} is outside of the archive")
    return clean(name)
