"""vfs specifics: the copy of a parent, its failures, dockerd's layout."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pymoby import errdefs
from pymoby.store.graphdriver import VfsDriver, vfs


def test_layout_and_copy_of_the_layer_root(tmp_path: Path) -> None:
    d = VfsDriver.open(tmp_path / "vfs")
    assert (tmp_path / "vfs" / "dir").is_dir()
    d.create("a", None, rw=False)
    assert d.diff_path("a") == tmp_path / "vfs" / "dir" / "a"
    os.chmod(d.diff_path("a"), 0o700)
    os.chown(d.diff_path("a"), 12, 34)
    (d.diff_path("a") / "sparse").write_bytes(b"")
    os.truncate(d.diff_path("a") / "sparse", 1 << 30)
    d.create("b", "a", rw=True)
    st = d.diff_path("b").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o700, 12, 34)
    copy = (d.diff_path("b") / "sparse").stat()
    assert copy.st_size == 1 << 30 and copy.st_blocks == 0  # holes stay holes


def test_failed_copy_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = VfsDriver.open(tmp_path / "vfs")
    d.create("a", None, rw=False)
    (d.diff_path("a") / "f").write_text("x")
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    with pytest.raises(errdefs.System, match="cp is not installed"):
        d.create("b", "a", rw=False)
    assert d.ids() == ["a"]


def test_copy_error_names_the_reason(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(errdefs.System, match="No such file or directory"):
        vfs.copy_tree(tmp_path / "missing", dest)
