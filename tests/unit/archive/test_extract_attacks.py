"""apply_layer against hostile tars: each test proves nothing outside the root was written.

The `guard` fixture puts an `outside` directory (secret, dir/file) next to the extraction root;
`guard.untouched()` compares it with its snapshot. Absolute symlinks point at the real host path
of `outside`, so following one for real would be caught.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile

import pytest
from archive_testlib import Guard, build_tar, member

from pymoby import errdefs
from pymoby.archive import ArchiveError, BreakoutError, TarFormatError, apply_layer

REG, DIR, SYM, LNK = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE


def extract(data: bytes, guard: Guard, whiteouts: str = "delete", **kw: object) -> None:
    apply_layer(io.BytesIO(data), guard.root, whiteouts=whiteouts, **kw)  # type: ignore[arg-type]


def test_absolute_names_are_made_relative(guard: Guard) -> None:
    outside_secret = str(guard.outside / "secret")
    data = build_tar(member("/abs/file", data=b"a"), member(outside_secret, data=b"pwned"))
    extract(data, guard)
    assert (guard.root / "abs/file").read_bytes() == b"a"
    assert (guard.root / outside_secret.lstrip("/")).read_bytes() == b"pwned"
    guard.untouched()


@pytest.mark.parametrize("name", ["../outside/secret", "a/../../outside/secret", "/../x", ".."])
def test_dotdot_escape_is_refused(guard: Guard, name: str) -> None:
    data = build_tar(member("ok", data=b"1"), member(name, data=b"pwned"))
    with pytest.raises(BreakoutError) as info:
        extract(data, guard)
    assert str(info.value) == f'invalid entry name "{name}"'
    assert isinstance(info.value, errdefs.InvalidParameter)
    guard.untouched()


def test_dotdot_inside_the_root_is_fine(guard: Guard) -> None:
    extract(build_tar(member("a/../b", data=b"1")), guard)
    assert (guard.root / "b").read_bytes() == b"1"


def test_write_through_absolute_symlink_stays_inside(guard: Guard) -> None:
    data = build_tar(
        member("link", SYM, linkname=str(guard.outside)),
        member("link/secret", data=b"pwned"),
        member("link/dir/file", data=b"pwned"),
        member("link/new", data=b"new"),
    )
    extract(data, guard)
    inside = guard.root / str(guard.outside).lstrip("/")
    assert (inside / "secret").read_bytes() == b"pwned"
    assert (inside / "dir/file").read_bytes() == b"pwned"
    assert not (guard.outside / "new").exists()
    assert os.readlink(guard.root / "link") == str(guard.outside)  # created verbatim
    guard.untouched()


def test_write_through_relative_escaping_symlink_is_clamped(guard: Guard) -> None:
    data = build_tar(
        member("a/b", DIR),
        member("a/b/up", SYM, linkname="../../../../../../../../outside"),
        member("a/b/up/secret", data=b"pwned"),
    )
    extract(data, guard)
    assert (guard.root / "outside/secret").read_bytes() == b"pwned"
    guard.untouched()


def test_symlink_chain_to_outside(guard: Guard) -> None:
    data = build_tar(
        member("a", SYM, linkname="b"),
        member("b", SYM, linkname="c/../d"),
        member("d", SYM, linkname=str(guard.outside / "dir")),
        member("a/file", data=b"pwned"),
    )
    extract(data, guard)
    assert (guard.root / str(guard.outside).lstrip("/") / "dir/file").read_bytes() == b"pwned"
    guard.untouched()


def test_symlink_loop_is_refused(guard: Guard) -> None:
    data = build_tar(member("a", SYM, linkname="b"), member("b", SYM, linkname="a"))
    extract(data, guard)
    with pytest.raises(ArchiveError, match="too many levels of symbolic links"):
        extract(build_tar(member("a/x", data=b"1")), guard)
    guard.untouched()


def test_final_symlink_component_is_replaced_not_followed(guard: Guard) -> None:
    data = build_tar(
        member("x", SYM, linkname=str(guard.outside / "secret")),
        member("x", data=b"pwned", mode=0o777),
    )
    extract(data, guard)
    assert (guard.root / "x").read_bytes() == b"pwned"
    assert not (guard.root / "x").is_symlink()
    guard.untouched()


def test_file_and_dir_replacing_a_directory_symlink(guard: Guard) -> None:
    data = build_tar(
        member("d", SYM, linkname=str(guard.outside / "dir")),
        member("d", data=b"now a file"),
        member("e", SYM, linkname=str(guard.outside / "dir")),
        member("e", DIR, mode=0o777),
        member("e/file", data=b"pwned"),
    )
    extract(data, guard)
    assert (guard.root / "d").read_bytes() == b"now a file"
    assert (guard.root / "e").is_dir() and not (guard.root / "e").is_symlink()
    assert (guard.root / "e/file").read_bytes() == b"pwned"
    guard.untouched()


def test_hardlink_to_outside_is_refused(guard: Guard) -> None:
    data = build_tar(member("h", LNK, linkname="../outside/secret"))
    with pytest.raises(BreakoutError, match=r'invalid hardlink target "\.\./outside/secret"'):
        extract(data, guard)
    assert os.stat(guard.outside / "secret").st_nlink == 1
    guard.untouched()


def test_absolute_hardlink_target_is_resolved_in_the_root(guard: Guard) -> None:
    data = build_tar(member("h", LNK, linkname=str(guard.outside / "secret")))
    with pytest.raises(ArchiveError, match='failed to extract entry "h"'):
        extract(data, guard)
    assert os.stat(guard.outside / "secret").st_nlink == 1
    guard.untouched()


def test_hardlink_through_a_symlinked_dir(guard: Guard) -> None:
    data = build_tar(
        member("d", SYM, linkname=str(guard.outside)),
        member("h", LNK, linkname="d/secret"),
    )
    with pytest.raises(ArchiveError):
        extract(data, guard)
    assert os.stat(guard.outside / "secret").st_nlink == 1
    guard.untouched()
    # With the same path present inside the root, the link goes there.
    inside = guard.root / str(guard.outside).lstrip("/")
    inside.mkdir(parents=True)
    (inside / "secret").write_bytes(b"inside")
    extract(build_tar(member("h", LNK, linkname="d/secret")), guard)
    assert os.stat(guard.root / "h").st_ino == os.stat(inside / "secret").st_ino
    guard.untouched()


def test_hardlink_to_a_symlink_links_the_symlink(guard: Guard) -> None:
    data = build_tar(
        member("s", SYM, linkname=str(guard.outside / "secret")),
        member("h", LNK, linkname="s", mode=0o777, uid=1234),
    )
    extract(data, guard)
    assert (guard.root / "h").is_symlink()
    assert os.stat(guard.outside / "secret").st_nlink == 1
    guard.untouched()


def test_whiteouts_through_a_symlinked_dir_stay_inside(guard: Guard) -> None:
    for whiteouts in ("delete", "overlay"):
        data = build_tar(
            member("d", SYM, linkname=str(guard.outside)),
            member("d/.wh.secret"),
            member("d/dir/.wh..wh..opq"),
        )
        extract(data, guard, whiteouts)
        guard.untouched()


def test_devices_are_skipped_when_not_allowed(guard: Guard) -> None:
    data = build_tar(
        member("dev/mem", tarfile.CHRTYPE, devmajor=1, devminor=1),
        member("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0),
        member("dev/fifo", tarfile.FIFOTYPE),
    )
    extract(data, guard, allow_devices=False)
    assert not os.path.lexists(guard.root / "dev/mem")
    assert not os.path.lexists(guard.root / "dev/sda")
    assert stat.S_ISFIFO(os.lstat(guard.root / "dev/fifo").st_mode)


def test_truncated_tar_names_the_entry(guard: Guard) -> None:
    data = build_tar(member("first", data=b"x" * 2000), member("second", data=b"y" * 3000))
    with pytest.raises(TarFormatError, match=r"unexpected EOF in tar content.*'second'"):
        extract(data[: 2560 + 512 + 1000], guard)
    with pytest.raises(TarFormatError, match=r"unexpected EOF in tar header.*'first'"):
        extract(data[: 512 + 2048 + 100], guard)
    guard.untouched()


def test_garbage_is_an_invalid_header(guard: Guard) -> None:
    with pytest.raises(TarFormatError, match="invalid tar header"):
        extract(os.urandom(4096), guard)
    with pytest.raises(TarFormatError, match="invalid tar header"):
        extract(b"\x00" * 512 + b"junk" * 128, guard)
    assert os.listdir(guard.root) == []


def test_huge_header_records_are_refused(guard: Guard) -> None:
    huge = "a/" * (600 * 1024) + "x"
    with pytest.raises(TarFormatError, match="too large"):
        extract(build_tar(member(huge, data=b"1")), guard)
    with pytest.raises(TarFormatError, match="too large"):
        extract(build_tar(member(huge, data=b"1"), fmt=tarfile.GNU_FORMAT), guard)
    assert os.listdir(guard.root) == []


def test_overlong_name_component_is_an_archive_error(guard: Guard) -> None:
    with pytest.raises(ArchiveError, match="File name too long"):
        extract(build_tar(member("d/" + "n" * 300, data=b"1")), guard)


def test_invalid_whiteout_names_are_refused(guard: Guard) -> None:
    for name in ("d/.wh.", "d/.wh..", "d/.wh..."):
        with pytest.raises(ArchiveError, match="invalid whiteout entry"):
            extract(build_tar(member("d/keep", data=b"1"), member(name)), guard)
        assert (guard.root / "d/keep").exists()


def test_parent_that_is_a_file(guard: Guard) -> None:
    with pytest.raises(ArchiveError, match='failed to extract entry "f/x": Not a directory'):
        extract(build_tar(member("f", data=b"1"), member("f/x", data=b"2")), guard)


def test_unknown_entry_type_is_refused(guard: Guard) -> None:
    with pytest.raises(ArchiveError, match="unhandled tar header type 86"):
        extract(build_tar(member("label", b"V")), guard)


def test_absurdly_deep_trees_fail_cleanly(guard: Guard) -> None:
    deep = "a/" * 1500 + "f"
    data = build_tar(member(deep, data=b"1"), member(".wh.a"))
    try:
        with pytest.raises(ArchiveError, match="too deep"):
            extract(data, guard)
        guard.untouched()
    finally:
        subprocess.run(["rm", "-rf", str(guard.root / "a")], check=True)  # shutil recurses
