"""tar_directory: dockerd's headers, sorted walk, hardlinks, xattrs, overlay whiteouts, includes."""

from __future__ import annotations

import io
import os
import socket
import stat
import tarfile
from pathlib import Path

from archive_testlib import snapshot

from pymoby.archive import apply_layer, tar_directory
from pymoby.archive.tarformat import TarHeader
from pymoby.archive.tarreader import TarReader

T = 1_650_000_000
CAP_V3 = bytes.fromhex("0000000300200000000000000000000000000000e8030000")  # rootid 1000
CAP_V2 = bytes.fromhex("0000000200200000000000000000000000000000")


def populate(root: Path) -> None:
    (root / "a").mkdir(mode=0o750)
    (root / "a/b").write_bytes(b"bee")
    (root / "a.txt").write_bytes(b"text")
    (root / "bin").mkdir()
    (root / "bin/ping").write_bytes(b"ping")
    os.chown(root / "bin/ping", 0, 11)  # chown drops capabilities: set them after
    os.chmod(root / "bin/ping", 0o4755)
    os.setxattr(root / "bin/ping", "security.capability", CAP_V3)
    os.setxattr(root / "bin/ping", "user.note", b"n")
    os.link(root / "a/b", root / "bin/hard")
    os.symlink("../a/b", root / "bin/sym")
    os.mkfifo(root / "fifo", 0o640)
    os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock"))
    sock.close()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.utime(
                os.path.join(dirpath, name),
                ns=(T * 10**9 + 5, T * 10**9 + 5),
                follow_symlinks=False,
            )


def tar_of(root: Path, **kw: object) -> bytes:
    out = io.BytesIO()
    size = tar_directory(root, out, **kw)  # type: ignore[arg-type]
    assert size == len(out.getvalue())
    return out.getvalue()


def raw_entries(data: bytes) -> list[TarHeader]:
    reader = TarReader(io.BytesIO(data))
    found = []
    while (hdr := reader.next()) is not None:
        found.append(hdr)
    return found


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


def test_headers_order_and_kinds(tmp_path: Path) -> None:
    populate(tmp_path)
    data = tar_of(tmp_path)
    got = {m.name: m for m in members(data)}
    assert [m.name for m in members(data)] == [
        "a",
        "a/b",
        "a.txt",
        "bin",
        "bin/hard",
        "bin/ping",
        "bin/sym",
        "fifo",
        "null",
    ]  # depth first, sorted per directory; the socket is skipped
    assert got["a"].isdir() and got["a"].mode == 0o750
    assert got["a/b"].isfile() and got["a/b"].size == 3
    assert got["bin/hard"].islnk() and got["bin/hard"].linkname == "a/b"
    ping = got["bin/ping"]
    assert (ping.mode, ping.uid, ping.gid, ping.mtime) == (0o4755, 0, 11, T)
    raw = {h.name: h for h in raw_entries(data)}
    assert raw["bin/ping"].xattrs == {"security.capability": CAP_V2}  # v3 written as v2
    assert "a/" in raw and "bin/" in raw  # directories end with "/"
    assert got["bin/sym"].issym() and got["bin/sym"].linkname == "../a/b"
    assert got["fifo"].isfifo() and got["fifo"].mode == 0o640
    assert got["null"].ischr() and (got["null"].devmajor, got["null"].devminor) == (1, 3)
    assert data.endswith(bytes(1024)) and len(data) % 512 == 0
    assert tar_of(tmp_path) == data  # deterministic


def test_roundtrip_through_apply_layer(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    populate(src)
    os.unlink(src / "sock")
    data = tar_of(src, xattrs="all")
    apply_layer(io.BytesIO(data), dst, whiteouts="none")
    assert snapshot(dst) == {
        k: (m, u, t - t % 10**9, c) for k, (m, u, t, c) in snapshot(src).items()
    }
    assert os.getxattr(dst / "bin/ping", "security.capability") == CAP_V2
    assert os.getxattr(dst / "bin/ping", "user.note") == b"n"
    assert os.stat(dst / "bin/hard").st_ino == os.stat(dst / "a/b").st_ino


def test_overlay_whiteouts_are_converted(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir(mode=0o751)
    os.setxattr(tmp_path / "etc", "trusted.overlay.opaque", b"y")
    (tmp_path / "etc/new").write_bytes(b"n")
    os.mknod(tmp_path / "gone", stat.S_IFCHR, 0)
    os.chown(tmp_path / "gone", 3, 4, follow_symlinks=False)
    os.mknod(tmp_path / "tty", stat.S_IFCHR | 0o600, os.makedev(5, 0))
    got = members(tar_of(tmp_path, whiteouts="overlay"))
    assert [m.name for m in got] == ["etc", "etc/.wh..wh..opq", "etc/new", ".wh.gone", "tty"]
    opq = got[1]
    assert opq.isfile() and (opq.mode, opq.size, opq.mtime) == (0o751, 0, 0)
    wh = got[3]
    assert wh.isfile() and (wh.mode, wh.uid, wh.gid, wh.size) == (0o600, 3, 4, 0)
    assert got[4].ischr()
    plain = [m.name for m in members(tar_of(tmp_path))]
    assert plain == ["etc", "etc/new", "gone", "tty"]


def test_include_and_rebase(tmp_path: Path) -> None:
    populate(tmp_path)
    names = [m.name for m in members(tar_of(tmp_path, include=["a"]))]
    assert names == ["a", "a/b"]
    rebased = members(tar_of(tmp_path, include=["a"], rebase={"a": "copy"}))
    assert [m.name for m in rebased] == ["copy", "copy/b"]
    single = members(tar_of(tmp_path, include=["a/b"], rebase={"a/b": "renamed"}))
    assert [(m.name, m.size) for m in single] == [("renamed", 3)]
    assert members(tar_of(tmp_path, include=["missing", "a.txt"]))[0].name == "a.txt"


def test_include_parents_resolve_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_bytes(b"inside")
    os.symlink("/etc", root / "link")
    got = members(tar_of(root, include=["link/hostname"]))
    assert [(m.name, m.size) for m in got] == [("link/hostname", 6)]
    # the final component is not followed
    assert members(tar_of(root, include=["link"]))[0].issym()
