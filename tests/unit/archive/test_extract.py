"""apply_layer: metadata, entry kinds, whiteouts in both modes, sizes and digests."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
from archive_testlib import build_tar, member

from pymoby.archive import (
    ArchiveError,
    ArchiveSystemError,
    Compression,
    apply_layer,
    compressing_writer,
)
from pymoby.archive.extract import LayerStats
from pymoby.archive.tarformat import TarHeader, format_header, padding

REG, DIR, SYM, LNK = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
T = 1_600_000_000


def extract(data: bytes, root: Path, whiteouts: str = "delete", **kw: object) -> LayerStats:
    return apply_layer(io.BytesIO(data), root, whiteouts=whiteouts, **kw)  # type: ignore[arg-type]


def test_metadata_owner_mode_mtime_setuid(tmp_path: Path) -> None:
    data = build_tar(
        member("bin", DIR, mode=0o750, uid=7, gid=8, mtime=T),
        member("bin/su", data=b"su", mode=0o4755, uid=0, gid=0, mtime=T + 1),
        member("bin/sg", data=b"sg", mode=0o2711, uid=5, gid=6, mtime=T + 2),
        member("tmp", DIR, mode=0o1777, mtime=T + 3),
        member("lnk", SYM, linkname="bin/su", uid=9, gid=10, mtime=T + 4),
    )
    extract(data, tmp_path)
    st = os.stat(tmp_path / "bin")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime) == (0o750, 7, 8, T)
    st = os.stat(tmp_path / "bin/su")
    assert (stat.S_IMODE(st.st_mode), st.st_mtime) == (0o4755, T + 1)
    st = os.stat(tmp_path / "bin/sg")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o2711, 5, 6)
    assert stat.S_IMODE(os.stat(tmp_path / "tmp").st_mode) == 0o1777
    st = os.lstat(tmp_path / "lnk")
    assert (st.st_uid, st.st_gid, st.st_mtime) == (9, 10, T + 4)
    assert os.readlink(tmp_path / "lnk") == "bin/su"


def test_directory_mtime_is_set_after_its_contents(tmp_path: Path) -> None:
    data = build_tar(
        member("d", DIR, mtime=T), member("d/a", data=b"1"), member("d/b/c", data=b"2")
    )
    extract(data, tmp_path)
    assert os.stat(tmp_path / "d").st_mtime == T


def test_implied_directories_are_0755(tmp_path: Path) -> None:
    extract(build_tar(member("x/y/z", data=b"1")), tmp_path)
    assert stat.S_IMODE(os.stat(tmp_path / "x").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(tmp_path / "x/y").st_mode) == 0o755


def test_pre_epoch_times_become_epoch_and_atime_is_not_before_mtime(tmp_path: Path) -> None:
    old = member("old", data=b"1", mtime=-100)
    pax = member("pax", data=b"1", mtime=T, pax_headers={"atime": str(T - 50)})
    extract(build_tar(old, pax), tmp_path)
    assert os.stat(tmp_path / "old").st_mtime == 0
    st = os.stat(tmp_path / "pax")
    assert (st.st_atime, st.st_mtime) == (T, T)


def test_existing_directory_is_merged_and_others_replaced(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d/lower").write_bytes(b"lower")
    (tmp_path / "f").mkdir()
    (tmp_path / "f/inner").write_bytes(b"x")
    (tmp_path / "g").write_bytes(b"file")
    data = build_tar(
        member("d", DIR, mode=0o700), member("f", data=b"now a file"), member("g", DIR)
    )
    extract(data, tmp_path)
    assert (tmp_path / "d/lower").read_bytes() == b"lower"
    assert stat.S_IMODE(os.stat(tmp_path / "d").st_mode) == 0o700
    assert (tmp_path / "f").read_bytes() == b"now a file"
    assert (tmp_path / "g").is_dir()


def test_no_overwrite_dir_nondir(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(ArchiveError, match='cannot overwrite directory "d" with non-directory'):
        extract(build_tar(member("d", data=b"1")), tmp_path, no_overwrite_dir_nondir=True)
    (tmp_path / "f").write_bytes(b"1")
    with pytest.raises(ArchiveError, match='cannot overwrite non-directory "f" with directory'):
        extract(build_tar(member("f", DIR)), tmp_path, no_overwrite_dir_nondir=True)


def test_hardlinks(tmp_path: Path) -> None:
    data = build_tar(
        member("a", data=b"shared", mode=0o640),
        member("sub/b", LNK, linkname="a", mode=0o640),
        member("c", LNK, linkname="/a", mode=0o640),  # absolute target, kaniko style
    )
    extract(data, tmp_path)
    ino = os.stat(tmp_path / "a").st_ino
    assert os.stat(tmp_path / "sub/b").st_ino == ino == os.stat(tmp_path / "c").st_ino
    assert os.stat(tmp_path / "a").st_nlink == 3


def test_fifos_and_devices(tmp_path: Path) -> None:
    data = build_tar(
        member("p", tarfile.FIFOTYPE, mode=0o640, uid=3),
        member("null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
        member("loop9", tarfile.BLKTYPE, devmajor=7, devminor=9, mode=0o660, gid=6),
    )
    extract(data, tmp_path)
    st = os.lstat(tmp_path / "p")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640 and st.st_uid == 3
    st = os.lstat(tmp_path / "null")
    assert stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)
    assert stat.S_IMODE(st.st_mode) == 0o666
    st = os.lstat(tmp_path / "loop9")
    assert stat.S_ISBLK(st.st_mode) and os.minor(st.st_rdev) == 9 and st.st_gid == 6


def go_tar(*entries: tuple[TarHeader, bytes]) -> bytes:
    """A tar written with our Go-style header formatter (binary PAX values, as Go writes)."""
    out = b""
    for hdr, data in entries:
        hdr.size = len(data)
        out += format_header(hdr) + data + padding(len(data))
    return out + bytes(1024)


def test_xattrs_including_capabilities(tmp_path: Path) -> None:
    cap = bytes.fromhex("0000000200200000000000000000000000000000")  # v2, cap_net_raw
    xattrs = {"security.capability": cap, "user.note": b"hello", "trusted.mark": b"\x00\xff"}
    data = go_tar(
        (TarHeader("ping", mode=0o755, xattrs=xattrs), b"elf"),
        (TarHeader("d/", typeflag="5", mode=0o755, xattrs={"user.dir": b"yes"}), b""),
        (TarHeader("s", typeflag="2", linkname="ping", xattrs={"trusted.l": b"1"}), b""),
    )
    extract(data, tmp_path)
    assert os.getxattr(tmp_path / "ping", "security.capability") == cap
    assert os.getxattr(tmp_path / "ping", "user.note") == b"hello"
    assert os.getxattr(tmp_path / "ping", "trusted.mark") == b"\x00\xff"
    assert os.getxattr(tmp_path / "d", "user.dir") == b"yes"
    assert os.getxattr(tmp_path / "s", "trusted.l", follow_symlinks=False) == b"1"


def test_unsupported_xattrs_fail_unless_best_effort(tmp_path: Path) -> None:
    data = go_tar((TarHeader("f", mode=0o644, xattrs={"bogus.ns": b"1"}), b"x"))
    # The host cannot store it: a host failure (500), not the client's (dockerd: ENOTSUP).
    with pytest.raises(ArchiveSystemError, match='entry "f": Operation not supported'):
        extract(data, tmp_path)
    (tmp_path / "b").mkdir()
    extract(data, tmp_path / "b", best_effort_xattrs=True)
    assert (tmp_path / "b/f").read_bytes() == b"x"


def test_whiteouts_delete_mode(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/vi").write_bytes(b"vi")
    (tmp_path / "bin/sh").write_bytes(b"sh")
    (tmp_path / "gone").mkdir()
    (tmp_path / "gone/deep").write_bytes(b"x")
    data = build_tar(member("bin/.wh.vi"), member(".wh.gone"), member(".wh.never-existed"))
    stats = extract(data, tmp_path)
    assert sorted(os.listdir(tmp_path / "bin")) == ["sh"]
    assert not (tmp_path / "gone").exists()
    assert stats.size == 0


def test_whiteouts_overlay_mode(tmp_path: Path) -> None:
    data = build_tar(member("bin", DIR), member("bin/.wh.vi", uid=5, gid=6), member(".wh.gone"))
    extract(data, tmp_path, "overlay")
    for path, owner in ((tmp_path / "bin/vi", (5, 6)), (tmp_path / "gone", (0, 0))):
        st = os.lstat(path)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
        assert (st.st_uid, st.st_gid) == owner
    assert not (tmp_path / "bin/.wh.vi").exists()


def test_opaque_directory_delete_mode(tmp_path: Path) -> None:
    (tmp_path / "etc/sub").mkdir(parents=True)
    (tmp_path / "etc/lower").write_bytes(b"lower")
    (tmp_path / "etc/sub/lower").write_bytes(b"lower")
    (tmp_path / "keep").write_bytes(b"k")
    data = build_tar(
        member("etc", DIR),
        member("etc/sub", DIR),
        member("etc/sub/new", data=b"new"),
        member("etc/.wh..wh..opq"),
        member("etc/later", data=b"later"),
    )
    extract(data, tmp_path)
    assert sorted(os.listdir(tmp_path / "etc")) == ["later", "sub"]
    assert os.listdir(tmp_path / "etc/sub") == ["new"]
    assert (tmp_path / "keep").exists()


def test_opaque_directory_overlay_mode(tmp_path: Path) -> None:
    data = build_tar(member("etc", DIR), member("etc/.wh..wh..opq"), member("etc/f", data=b"1"))
    extract(data, tmp_path, "overlay")
    assert os.getxattr(tmp_path / "etc", "trusted.overlay.opaque") == b"y"
    assert os.listdir(tmp_path / "etc") == ["f"]


def test_whiteouts_none_mode_extracts_them_as_files(tmp_path: Path) -> None:
    extract(build_tar(member("d/.wh.x", data=b"w"), member(".wh..wh..opq")), tmp_path, "none")
    assert (tmp_path / "d/.wh.x").read_bytes() == b"w"
    assert (tmp_path / ".wh..wh..opq").exists()


def test_aufs_metadata_and_plnk_hardlinks(tmp_path: Path) -> None:
    data = build_tar(
        member(".wh..wh.plnk", DIR),
        member(".wh..wh.plnk/1234.5678", data=b"linked", mode=0o600, uid=4),
        member(".wh..wh.aufs", data=b"meta"),
        member("usr/x", LNK, linkname=".wh..wh.plnk/1234.5678"),
    )
    extract(data, tmp_path)
    assert os.listdir(tmp_path) == ["usr"]
    st = os.stat(tmp_path / "usr/x")
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, 4)
    assert (tmp_path / "usr/x").read_bytes() == b"linked"
    with pytest.raises(ArchiveError, match="invalid aufs hardlink"):
        extract(build_tar(member("y", LNK, linkname=".wh..wh.plnk/nope")), tmp_path)


def test_entries_naming_the_root_and_global_headers_are_ignored(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o711)
    glob = io.BytesIO()
    with tarfile.open(fileobj=glob, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.pax_headers = {"comment": "global"}
        tar.addfile(member("./", DIR, mode=0o777)[0])
        tar.addfile(*_file("./a", b"1"))
    extract(glob.getvalue(), tmp_path)
    assert stat.S_IMODE(os.stat(tmp_path).st_mode) == 0o711
    assert (tmp_path / "a").read_bytes() == b"1"


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info, _ = member(name, data=data)
    return info, io.BytesIO(data)


def test_size_digest_and_compression(tmp_path: Path) -> None:
    data = build_tar(
        member("a", data=b"x" * 1000),
        member("d", DIR),
        member("l", SYM, linkname="a"),
        member("b", data=b"y" * 24),
    )
    for kind in (Compression.NONE, Compression.GZIP, Compression.ZSTD):
        buf = io.BytesIO()
        with compressing_writer(buf, kind) as w:
            w.write(data)
        root = tmp_path / kind.name
        root.mkdir()
        stats = extract(buf.getvalue(), root)
        assert stats == LayerStats(
            size=1024,
            diff_id="sha256:" + hashlib.sha256(data).hexdigest(),
            tar_size=len(data),
            compression=kind,
        )


def test_trailing_bytes_are_part_of_the_digest(tmp_path: Path) -> None:
    data = build_tar(member("a", data=b"1")) + b"trailing junk after the end"
    stats = extract(data, tmp_path)
    assert stats.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert stats.tar_size == len(data)


def test_empty_stream_is_an_empty_layer(tmp_path: Path) -> None:
    stats = extract(b"", tmp_path)
    assert stats.size == 0 and stats.tar_size == 0
    assert stats.diff_id == "sha256:" + hashlib.sha256(b"").hexdigest()
