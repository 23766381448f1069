"""Helpers of the layer and graph driver tests (imported as `layer_testlib`).

A tarfile-based fake of pymoby.archive's extraction (whiteouts in both modes, the raw tar kept as
the "tar-split"), tar builders, and a guard that unmounts everything left under a directory, so a
failing test never leaves a mount behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pymoby.kernel import mount as kmount
from pymoby.store.graphdriver import Driver

OPAQUE_XATTR = "trusted.overlay.opaque"


@dataclass(frozen=True)
class FakeStats:
    size: int
    diff_id: str


def fake_extract(stream: BinaryIO, root: Path, whiteouts: str, tarsplit_out: BinaryIO) -> FakeStats:
    """Extract a tar like pymoby.archive.apply_layer would (trusted input only: tests)."""
    data = stream.read()
    tarsplit_out.write(data)
    size = 0
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        for m in members:  # whiteouts first: in "delete" mode they act on the parent's copy
            parent, _, base = m.name.rstrip("/").rpartition("/")
            where = root / parent
            if base.startswith(".wh.") and whiteouts == "overlay":
                where.mkdir(parents=True, exist_ok=True)
            if base == ".wh..wh..opq":
                if whiteouts == "overlay":
                    os.setxattr(where, OPAQUE_XATTR, b"y")
                else:
                    for child in list(where.iterdir()):
                        remove(child)
            elif base.startswith(".wh."):
                target = where / base.removeprefix(".wh.")
                if whiteouts == "overlay":
                    os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0))
                else:
                    remove(target)
        regular = [
            m for m in members if not m.name.rstrip("/").rpartition("/")[2].startswith(".wh.")
        ]
        for m in regular:
            target = root / m.name
            if target.is_symlink() or (target.exists() and not target.is_dir()):
                target.unlink()
            size += m.size
        tar.extractall(root, members=regular, filter="fully_trusted")
    return FakeStats(size, "sha256:" + hashlib.sha256(data).hexdigest())


def fake_reassemble(tarsplit: BinaryIO, root: Path, out: BinaryIO) -> int:
    data = tarsplit.read()
    out.write(data)
    return len(data)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def make_tar(
    files: dict[str, bytes] | None = None,
    *,
    dirs: tuple[str, ...] = (),
    deletes: tuple[str, ...] = (),
    opaque: tuple[str, ...] = (),
) -> bytes:
    """A layer tar: `files` (parents created), whiteouts for `deletes`, opaque markers."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        seen: set[str] = set()

        def add_dir(name: str) -> None:
            parts = name.split("/")
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d and d not in seen:
                    seen.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1
                    tar.addfile(info)

        for d in (*dirs, *opaque):
            add_dir(d)
        for d in opaque:
            marker = tarfile.TarInfo(f"{d}/.wh..wh..opq")
            marker.mtime = 1
            tar.addfile(marker)
        for name in deletes:
            parent, _, base = name.rpartition("/")
            if parent:
                add_dir(parent)
            info = tarfile.TarInfo(f"{parent}/.wh.{base}" if parent else f".wh.{base}")
            info.mtime = 1
            tar.addfile(info)
        for name, content in (files or {}).items():
            parent = name.rpartition("/")[0]
            if parent:
                add_dir(parent)
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), 0o644, 1
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def diff_id_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- mounts ----------------------------------------------------------------------------------


def mounts_under(path: Path) -> list[str]:
    real = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if point == real or point.startswith(real + "/"):
                found.append(point)
    return found


def unmount_all(path: Path) -> list[str]:
    """Lazily unmount everything at or below `path`, deepest first; return what was mounted."""
    found = mounts_under(path)
    for point in sorted(found, key=len, reverse=True):
        kmount.unmount(point, lazy=True, missing_ok=True)
    return found


@contextlib.contextmanager
def mounted(driver: Driver, id: str, api: kmount.Api = "auto") -> Iterator[Path]:
    """The merged tree of layer `id` (mounted if the driver needs it); always cleaned up."""
    spec = driver.get(id)
    try:
        if spec.needs_mount:
            kmount.mount(spec, api=api)
        try:
            yield Path(spec.target)
        finally:
            if spec.needs_mount:
                kmount.unmount(spec.target)
    finally:
        driver.put(id)


def tree(root: Path) -> dict[str, str]:
    """Relative path -> 'dir', 'link:<target>' or the file's text, for comparing trees."""
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = f"link:{os.readlink(path)}"
            elif path.is_dir():
                found[rel] = "dir"
            elif stat.S_ISCHR(path.lstat().st_mode):
                found[rel] = "chardev"
            else:
                found[rel] = path.read_bytes().decode(errors="replace")
    return found
