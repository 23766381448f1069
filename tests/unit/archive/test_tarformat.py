"""Tar headers: Go's parsing rules (formats, numbers, PAX, GNU, end of archive) and writing."""

from __future__ import annotations

import io
import tarfile

import pytest
from archive_testlib import build_tar, member

from pymoby.archive import TarFormatError
from pymoby.archive import tarformat as tf
from pymoby.archive.tarreader import TarReader


def entries(data: bytes) -> list[tf.TarHeader]:
    reader = TarReader(io.BytesIO(data))
    found = []
    while (hdr := reader.next()) is not None:
        found.append(hdr)
    reader.finish()
    return found


def with_checksum(block: bytearray) -> bytes:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


def test_gnu_base256_numbers_and_long_names() -> None:
    long = "a" * 120 + "/" + "b" * 120
    data = build_tar(
        member(long, data=b"x", uid=1 << 30, gid=3),
        member("l", tarfile.SYMTYPE, linkname="t" * 300),
        fmt=tarfile.GNU_FORMAT,
    )
    first, second = entries(data)
    assert (first.name, first.uid, first.gid, first.size) == (long, 1 << 30, 3, 1)
    assert second.linkname == "t" * 300
    assert tf.parse_number(b"\xff" * 8, "x") == -1  # two's complement base-256


def test_pax_records_override_the_header() -> None:
    data = build_tar(
        member("ünï/" + "p" * 200, data=b"abc", uid=1 << 40, mtime=1_600_000_000.5),
        member("l", tarfile.SYMTYPE, linkname="ü" * 80),
    )
    first, second = entries(data)
    assert first.name == "ünï/" + "p" * 200
    assert first.uid == 1 << 40
    assert first.mtime_ns == 1_600_000_000_500_000_000
    assert second.linkname == "ü" * 80


def test_ustar_prefix_v7_and_legacy_directories() -> None:
    long = "d" * 90 + "/" + "f" * 90
    (ustar,) = entries(build_tar(member(long, data=b"1"), fmt=tarfile.USTAR_FORMAT))
    assert ustar.name == long
    block = bytearray(tf.format_header(tf.TarHeader("old/", typeflag="\x00", mode=0o755)))
    block[257:265] = bytes(8)  # no magic: V7
    (v7,) = entries(with_checksum(block) + bytes(1024))
    assert (v7.name, v7.typeflag, v7.uname) == ("old/", tf.DIR, "")


def test_header_only_types_have_no_content_blocks() -> None:
    """Go reads no data for links, devices, fifos and directories, whatever their size says."""
    dir_hdr = bytearray(tf.format_header(tf.TarHeader("d/", typeflag=tf.DIR)))
    dir_hdr[124:136] = b"%011o\x00" % 512
    data = with_checksum(dir_hdr) + tf.format_header(tf.TarHeader("f", size=0)) + bytes(1024)
    first, second = entries(data)
    assert (first.size, first.data_size, second.name) == (512, 0, "f")


def test_checksum_is_verified_signed_or_unsigned() -> None:
    block = bytearray(tf._raw_block(b"\xff", tf.REG))  # a raw high byte, as old tars have
    signed = sum(b - 256 if b & 0x80 else b for b in block[:148] + block[156:]) + 256
    block[148:156] = b"%06o\x00 " % signed
    assert entries(bytes(block) + bytes(1024))[0].name == tf.decode(b"\xff")
    block[0] ^= 1
    with pytest.raises(TarFormatError, match="checksum"):
        entries(bytes(block))


def test_end_of_archive_variants() -> None:
    data = build_tar(member("a", data=b"1"))
    body = data.rstrip(b"\x00")
    body += bytes(-len(body) % 512)
    assert len(entries(body)) == 1  # no end blocks at all
    assert len(entries(body + bytes(512))) == 1  # a single zero block
    with pytest.raises(TarFormatError, match="invalid tar header"):
        entries(body + bytes(512) + data[:512])
    with pytest.raises(TarFormatError, match="unexpected EOF in tar header"):
        entries(body + bytes(100))


def test_pax_errors() -> None:
    for bad in (b"5 a=b\n", b"x a=b\n", b"6 a=b", b"9 path=\x00\n", b"6 =ab\n"):
        with pytest.raises(TarFormatError):
            tf.parse_pax(bad)
    assert tf.parse_pax(b"6 a=b\n\x00\x00") == {"a": b"b"}
    with pytest.raises(TarFormatError, match="sparse"):
        tf.apply_pax(tf.TarHeader("x"), {"GNU.sparse.major": b"1"})
    with pytest.raises(TarFormatError, match="bad PAX uid"):
        tf.apply_pax(tf.TarHeader("x"), {"uid": b"-1"})


def test_sparse_files_are_refused() -> None:
    data = tf.format_header(tf.TarHeader("s", typeflag="S", size=0)) + bytes(1024)
    with pytest.raises(TarFormatError, match="sparse file 's' is not supported"):
        entries(data)


def test_written_headers_read_back_with_tarfile() -> None:
    cases = [
        tf.TarHeader("short", mode=0o644, uid=1, gid=2, mtime_ns=10**18, size=3),
        tf.TarHeader("d" * 90 + "/" + "f" * 90, mode=0o600, size=3),  # USTAR prefix
        tf.TarHeader("x/" * 200 + "long", size=3),  # PAX path
        tf.TarHeader("ünïcode", size=3, uname="üser"),
        tf.TarHeader("neg", size=3, mtime_ns=-5 * 10**9, uid=1 << 22),
        tf.TarHeader("l", typeflag=tf.SYMLINK, linkname="t/" * 80),
        tf.TarHeader("c", typeflag=tf.CHAR, devmajor=4, devminor=64, mode=0o620),
        tf.TarHeader("x", size=3, xattrs={"user.a": b"1", "security.capability": b"\x01\xff"}),
    ]
    data = b""
    for hdr in cases:
        size = 3 if hdr.typeflag == tf.REG else 0
        data += tf.format_header(hdr) + b"abc"[:size] + tf.padding(size)
    data += bytes(1024)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        got = tar.getmembers()
    assert [m.name for m in got] == [h.name for h in cases]
    assert got[0].uid == 1 and got[0].gid == 2 and got[0].mtime == 10**9
    assert got[3].uname == "üser"
    assert got[4].mtime == -5 and got[4].uid == 1 << 22
    assert got[5].linkname == "t/" * 80
    assert (got[6].devmajor, got[6].devminor, got[6].mode) == (4, 64, 0o620)
    assert got[7].pax_headers["SCHILY.xattr.user.a"] == "1"
    # and our reader agrees, binary xattr values included
    ours = entries(data)
    assert [h.name for h in ours] == [h.name for h in cases]
    assert ours[7].xattrs == {"user.a": b"1", "security.capability": b"\x01\xff"}
    assert ours[4].mtime_ns == -5 * 10**9


def test_pax_header_names_follow_go() -> None:
    data = tf.format_header(tf.TarHeader("a/b/" + "é", size=0))
    assert data[:16] == b"a/b/PaxHeaders.0"
    assert data[156:157] == b"x"
