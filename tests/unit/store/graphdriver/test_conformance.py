"""One conformance suite for every graph driver: overlay2 (new mount API and classic) and vfs.

Real directories and real mounts (we run as root); every mount under the test's directory is
removed at teardown, and a test fails if one was left behind.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from layer_testlib import OPAQUE_XATTR, mounted, tree, unmount_all

from pymoby import errdefs
from pymoby.kernel import mount as kmount
from pymoby.store.graphdriver import Driver, Overlay2Driver, VfsDriver


@dataclass
class Harness:
    driver: Driver
    api: kmount.Api

    def mounted(self, id: str) -> AbstractContextManager[Path]:
        return mounted(self.driver, id, self.api)

    def apply(
        self,
        id: str,
        files: dict[str, str] | None = None,
        *,
        deletes: tuple[str, ...] = (),
        opaque: tuple[str, ...] = (),
    ) -> None:
        """Write a layer's changes into its diff dir the way extraction would for this driver."""
        root = self.driver.diff_path(id)
        for d in opaque:
            (root / d).mkdir(parents=True, exist_ok=True)
            if self.driver.whiteout_mode == "overlay":
                os.setxattr(root / d, OPAQUE_XATTR, b"y")
            else:
                for child in (root / d).iterdir():
                    child.unlink()
        for name in deletes:
            target = root / name
            if self.driver.whiteout_mode == "overlay":
                target.parent.mkdir(parents=True, exist_ok=True)
                os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0))
            else:
                target.unlink()
        for name, text in (files or {}).items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)


@pytest.fixture(params=["overlay2-new", "overlay2-classic", "vfs"])
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    kind: str = request.param
    if kind == "vfs":
        harness = Harness(VfsDriver.open(tmp_path / "vfs"), "auto")
    else:
        api: kmount.Api = "new" if kind == "overlay2-new" else "classic"
        harness = Harness(Overlay2Driver.open(tmp_path / "overlay2", api=api), api)
    yield harness
    assert unmount_all(tmp_path) == [], "a test left mounts behind"


def test_names_and_modes(h: Harness) -> None:
    d = h.driver
    assert isinstance(d, Driver)
    assert d.name in ("overlay2", "vfs")
    assert (d.whiteout_mode, d.changes_mode) == (
        ("overlay", "overlay") if d.name == "overlay2" else ("delete", "compare")
    )
    assert d.home.is_dir()
    expected_depth = 125 if h.api == "classic" else 497
    assert d.max_depth == expected_depth


def test_create_exists_ids_remove(h: Harness) -> None:
    d = h.driver
    assert d.ids() == [] and not d.exists("a")
    d.create("a", None, rw=False)
    d.create("b", "a", rw=True)
    assert d.exists("a") and d.exists("b")
    assert d.ids() == ["a", "b"]
    assert d.diff_path("a").is_dir()
    with pytest.raises(errdefs.Conflict):
        d.create("a", None, rw=False)
    d.remove("b")
    d.remove("a")
    d.remove("a")  # already gone: not an error
    assert d.ids() == [] and not d.exists("a")


def test_bad_ids_and_missing_layers(h: Harness) -> None:
    d = h.driver
    for bad in ("", "..", "../x", "a/b", ".hidden"):
        with pytest.raises(errdefs.InvalidParameter):
            d.create(bad, None, rw=False)
    with pytest.raises(errdefs.NotFound):
        d.create("child", "missing", rw=False)
    assert not d.exists("child")
    with pytest.raises(errdefs.NotFound):
        d.get("missing")
    with pytest.raises(errdefs.NotFound):
        d.metadata("missing")


def test_parent_chain_merges_top_first(h: Harness) -> None:
    d = h.driver
    d.create("a", None, rw=False)
    h.apply("a", {"base": "a", "shared": "from a", "dir/x": "x"})
    d.create("b", "a", rw=False)
    h.apply("b", {"shared": "from b", "dir/y": "y"})
    d.create("c", "b", rw=True)
    with h.mounted("c") as root:
        assert tree(root) == {
            "base": "a",
            "shared": "from b",
            "dir": "dir",
            "dir/x": "x",
            "dir/y": "y",
        }


def test_whiteouts_hide_files_and_opaque_dirs(h: Harness) -> None:
    d = h.driver
    d.create("a", None, rw=False)
    h.apply("a", {"keep": "k", "gone": "g", "opq/old1": "1", "opq/old2": "2", "d/f": "f"})
    d.create("b", "a", rw=False)
    h.apply("b", {"opq/new": "n"}, deletes=("gone", "d/f"), opaque=("opq",))
    d.create("c", "b", rw=True)
    with h.mounted("c") as root:
        assert tree(root) == {"keep": "k", "opq": "dir", "opq/new": "n", "d": "dir"}


def test_rw_writes_stay_in_the_rw_layer(h: Harness) -> None:
    d = h.driver
    d.create("a", None, rw=False)
    h.apply("a", {"old": "o", "edit": "before", "dir/f": "f"})
    before = tree(d.diff_path("a"))
    d.create("rw", "a", rw=True)
    with h.mounted("rw") as root:
        (root / "new").write_text("n")
        (root / "edit").write_text("after")
        (root / "old").unlink()
        (root / "dir" / "f").unlink()
        assert tree(root) == {"new": "n", "edit": "after", "dir": "dir"}
    assert tree(d.diff_path("a")) == before
    changes = tree(d.diff_path("rw"))
    assert changes["new"] == "n" and changes["edit"] == "after"
    if d.changes_mode == "overlay":  # only the changes, deletions as whiteouts
        assert changes["old"] == "chardev" and changes["dir/f"] == "chardev"
    else:  # the full tree
        assert "old" not in changes and "dir/f" not in changes


def test_rw_layer_without_parent(h: Harness) -> None:
    d = h.driver
    d.create("scratch", None, rw=True)
    spec = d.get("scratch")
    try:
        assert not spec.needs_mount  # nothing to stack: the layer's directory is the tree
        assert Path(spec.target) == d.diff_path("scratch")
    finally:
        d.put("scratch")


def test_attributes_survive_the_layer_below(h: Harness) -> None:
    """Owners, modes, xattrs, hardlinks, symlinks and device nodes look the same one layer up."""
    d = h.driver
    d.create("a", None, rw=False)
    root = d.diff_path("a")
    (root / "f").write_text("data")
    os.chown(root / "f", 1234, 5678)
    os.chmod(root / "f", 0o4751)
    os.setxattr(root / "f", "user.note", b"hello")
    os.link(root / "f", root / "hard")
    os.symlink("f", root / "sym")
    os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mkfifo(root / "fifo")
    d.create("b", "a", rw=True)
    with h.mounted("b") as merged:
        st = (merged / "f").lstat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, 0o4751)
        assert os.getxattr(merged / "f", "user.note") == b"hello"
        assert (merged / "hard").lstat().st_ino == st.st_ino
        assert st.st_nlink == 2
        assert os.readlink(merged / "sym") == "f"
        null = (merged / "null").lstat()
        assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
        assert stat.S_ISFIFO((merged / "fifo").lstat().st_mode)


def test_remove_while_in_use_is_a_conflict(h: Harness) -> None:
    d = h.driver
    d.create("a", None, rw=False)
    d.create("b", "a", rw=True)
    with h.mounted("b"):
        with pytest.raises(errdefs.Conflict):
            d.remove("b")
        assert d.exists("b")
    d.remove("b")
    assert not d.exists("b")


def test_metadata_keys(h: Harness) -> None:
    d = h.driver
    d.create("a", None, rw=False)
    d.create("b", "a", rw=True)
    if d.name == "vfs":
        assert d.metadata("b") == {"SourceDir": str(d.home / "dir" / "b")}
        return
    home = d.home
    assert d.metadata("a") == {
        "MergedDir": f"{home}/a/merged",
        "UpperDir": f"{home}/a/diff",
        "WorkDir": f"{home}/a/work",
    }
    assert d.metadata("b") == {
        "LowerDir": f"{home}/a/diff",
        "MergedDir": f"{home}/b/merged",
        "UpperDir": f"{home}/b/diff",
        "WorkDir": f"{home}/b/work",
    }


def test_status(h: Harness) -> None:
    status = h.driver.status()
    if h.driver.name == "vfs":
        assert status == []
        return
    assert [k for k, _ in status] == [
        "Backing Filesystem",
        "Supports d_type",
        "Using metacopy",
        "Native Overlay Diff",
        "userxattr",
    ]
    values = dict(status)
    assert values["Backing Filesystem"] == "extfs"  # this host's root filesystem is ext4
    assert values["Supports d_type"] == "true"
    assert all(v in ("true", "false") for k, v in status if k != "Backing Filesystem")


def test_deep_chain(h: Harness) -> None:
    """A chain as deep as the driver allows mounts and shows every layer's file."""
    d = h.driver
    depth = min(d.max_depth, 130)
    parent = None
    for i in range(depth):
        d.create(f"l{i}", parent, rw=False)
        (d.diff_path(f"l{i}") / f"f{i}").write_text(str(i))
        parent = f"l{i}"
    d.create("top", parent, rw=True)
    with h.mounted("top") as root:
        assert sorted(os.listdir(root)) == sorted(f"f{i}" for i in range(depth))
        (root / "written").write_text("w")
    assert (d.diff_path("top") / "written").read_text() == "w"
