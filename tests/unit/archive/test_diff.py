"""changes / diff_layer in both modes: the layer tar, applied on the parent, gives the layer."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

from archive_testlib import build_tar, member, snapshot

from pymoby.archive import Change, ChangeKind, apply_layer, changes, diff_layer, directory_size

T = 1_650_000_000
A, C, D = ChangeKind.ADD, ChangeKind.MODIFY, ChangeKind.DELETE


def parent_tar() -> bytes:
    return build_tar(
        member("etc", tarfile.DIRTYPE, mtime=T),
        member("etc/hosts", data=b"127.0.0.1 localhost\n", mtime=T),
        member("etc/passwd", data=b"root:x:0:0\n", mtime=T),
        member("etc/mode", data=b"m", mtime=T, mode=0o644),
        member("var", tarfile.DIRTYPE, mtime=T),
        member("var/cache", tarfile.DIRTYPE, mtime=T),
        member("var/cache/a", data=b"a", mtime=T),
        member("var/cache/b", data=b"b", mtime=T),
        member("opt", tarfile.DIRTYPE, mtime=T),
        member("opt/file", data=b"f", mtime=T),
        member("same", data=b"same", mtime=T),
        member("bin", tarfile.DIRTYPE, mtime=T),
        member("bin/ping", data=b"ping", mtime=T),
    )


def make_parent(path: Path) -> None:
    path.mkdir()
    apply_layer(io.BytesIO(parent_tar()), path, whiteouts="delete")


def copy_tree(src: Path, dst: Path) -> None:
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)


def mutate(layer: Path) -> None:
    """What a container does to its filesystem."""
    (layer / "etc/hosts").write_bytes(b"127.0.0.1 localhost container\n")  # size + mtime
    os.chmod(layer / "etc/mode", 0o600)
    (layer / "etc/new.conf").write_bytes(b"new")
    (layer / "etc/passwd").unlink()
    shutil.rmtree(layer / "var/cache")
    (layer / "opt/file").unlink()
    (layer / "opt/file").mkdir()  # a file replaced by a directory
    (layer / "opt/file/inside").write_bytes(b"i")
    (layer / "newdir/sub").mkdir(parents=True)
    (layer / "newdir/sub/x").write_bytes(b"x")
    cap = bytes.fromhex("0000000200200000000000000000000000000000")
    os.setxattr(layer / "bin/ping", "security.capability", cap)  # only a capability change


EXPECTED = [
    Change("/bin", C),
    Change("/bin/ping", C),
    Change("/etc", C),
    Change("/etc/hosts", C),
    Change("/etc/mode", C),
    Change("/etc/new.conf", A),
    Change("/etc/passwd", D),
    Change("/newdir", A),
    Change("/newdir/sub", A),
    Change("/newdir/sub/x", A),
    Change("/opt", C),
    Change("/opt/file", C),
    Change("/opt/file/inside", A),
    Change("/var", C),
    Change("/var/cache", D),
]


def test_changes(tmp_path: Path) -> None:
    parent, layer = tmp_path / "parent", tmp_path / "layer"
    make_parent(parent)
    copy_tree(parent, layer)
    assert changes(layer, parent) == []
    mutate(layer)
    assert changes(layer, parent) == EXPECTED
    everything = changes(layer, None)
    assert all(c.kind == A for c in everything) and Change("/same", A) in everything


def test_changes_ignore_whole_second_truncation_and_shared_inodes(tmp_path: Path) -> None:
    parent, layer = tmp_path / "parent", tmp_path / "layer"
    make_parent(parent)
    copy_tree(parent, layer)
    ns = T * 10**9 + 123
    os.utime(layer / "same", ns=(ns, ns))  # same second, one side without nanoseconds
    os.unlink(layer / "etc/hosts")
    os.link(parent / "etc/hosts", layer / "etc/hosts")  # same inode: pruned
    assert changes(layer, parent) == []
    os.utime(layer / "same", ns=(ns + 10**9, ns + 10**9))
    assert changes(layer, parent) == [Change("/same", C)]


def test_vfs_diff_layer_applies_back_to_the_layer(tmp_path: Path) -> None:
    parent, layer, rebuilt = tmp_path / "parent", tmp_path / "layer", tmp_path / "rebuilt"
    make_parent(parent)
    copy_tree(parent, layer)
    mutate(layer)
    out = io.BytesIO()
    size = diff_layer(layer, out, mode="vfs", parent=parent)
    assert size == len(out.getvalue())
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        names = tar.getnames()
        whiteout = tar.getmember("etc/.wh.passwd")
    # one entry per change, in the order of the changed paths (dockerd's ExportChanges)
    assert names == [
        "bin",
        "bin/ping",
        "etc",
        "etc/hosts",
        "etc/mode",
        "etc/new.conf",
        "etc/.wh.passwd",
        "newdir",
        "newdir/sub",
        "newdir/sub/x",
        "opt",
        "opt/file",
        "opt/file/inside",
        "var",
        "var/.wh.cache",
    ]
    assert whiteout.mode == 0 and whiteout.size == 0
    assert whiteout.mtime == int(os.stat(layer / "etc").st_mtime)
    copy_tree(parent, rebuilt)
    apply_layer(io.BytesIO(out.getvalue()), rebuilt, whiteouts="delete")
    assert _no_ns(snapshot(rebuilt)) == _no_ns(snapshot(layer))
    assert os.getxattr(rebuilt / "bin/ping", "security.capability")[3] == 2
    again = io.BytesIO()
    diff_layer(layer, again, mode="vfs", parent=parent)
    assert again.getvalue() == out.getvalue()


def _no_ns(
    state: dict[str, tuple[int, int, int, object]],
) -> dict[str, tuple[int, int, int, object]]:
    return {k: (m, u, t // 10**9, c) for k, (m, u, t, c) in state.items()}


def test_vfs_diff_of_a_base_layer_is_the_whole_tree(tmp_path: Path) -> None:
    make_parent(tmp_path / "base")
    out = io.BytesIO()
    diff_layer(tmp_path / "base", out, mode="vfs")
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        assert len(tar.getnames()) == 13


def test_overlay_diff_layer(tmp_path: Path) -> None:
    """An overlay upper dir (whiteout devices, opaque dir) -> tar -> applied both ways."""
    parent, upper = tmp_path / "parent", tmp_path / "upper"
    make_parent(parent)
    upper.mkdir()
    (upper / "etc").mkdir()
    (upper / "etc/hosts").write_bytes(b"changed")
    os.mknod(upper / "etc/passwd", stat.S_IFCHR, 0)
    (upper / "var").mkdir()
    (upper / "var/cache").mkdir()
    os.setxattr(upper / "var/cache", "trusted.overlay.opaque", b"y")
    (upper / "var/cache/fresh").write_bytes(b"fresh")
    out = io.BytesIO()
    diff_layer(upper, out, mode="overlay")
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        assert tar.getnames() == [
            "etc",
            "etc/hosts",
            "etc/.wh.passwd",
            "var",
            "var/cache",
            "var/cache/.wh..wh..opq",
            "var/cache/fresh",
        ]
    merged = tmp_path / "merged"
    copy_tree(parent, merged)
    apply_layer(io.BytesIO(out.getvalue()), merged, whiteouts="delete")
    assert (merged / "etc/hosts").read_bytes() == b"changed"
    assert not (merged / "etc/passwd").exists()
    assert sorted(os.listdir(merged / "var/cache")) == ["fresh"]
    assert (merged / "same").exists()
    upper2 = tmp_path / "upper2"
    upper2.mkdir()
    apply_layer(io.BytesIO(out.getvalue()), upper2, whiteouts="overlay")
    assert os.lstat(upper2 / "etc/passwd").st_rdev == 0
    assert os.getxattr(upper2 / "var/cache", "trusted.overlay.opaque") == b"y"
    again = io.BytesIO()
    diff_layer(upper2, again, mode="overlay")
    assert again.getvalue() == out.getvalue()


def test_directory_size(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d/a").write_bytes(b"x" * 100)
    os.link(tmp_path / "d/a", tmp_path / "hard")
    (tmp_path / "b").write_bytes(b"y" * 10)
    os.symlink("d/a", tmp_path / "sym")  # a symlink's size is its target's length
    os.symlink("d", tmp_path / "dirsym")
    assert directory_size(tmp_path) == 100 + 10 + 3 + 1
