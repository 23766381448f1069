"""Trash: a discarded tree is gone at once and deleted in the background; leftovers of a crash
are deleted by the next Trash; another filesystem falls back to deleting in place."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pymoby.store.graphdriver import base
from pymoby.store.graphdriver.base import Trash


def _tree(root: Path) -> Path:
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f").write_text("x")
    (root / "a" / "link").symlink_to("/nonexistent")
    return root / "a"


def test_discard_is_immediate_and_deleted_later(tmp_path: Path) -> None:
    trash = Trash(tmp_path / ".trash")
    tree = _tree(tmp_path)
    trash.discard(tree)
    assert not tree.exists()
    assert trash.flush(10)
    assert list((tmp_path / ".trash").iterdir()) == []
    trash.discard(tmp_path / "missing")  # nothing there: fine


def test_leftovers_are_deleted_by_the_next_trash(tmp_path: Path) -> None:
    left = tmp_path / ".trash" / "layer-1234"
    _tree(tmp_path / ".trash" / "layer-1234")
    assert left.exists()
    trash = Trash(tmp_path / ".trash")
    assert trash.flush(10)
    assert list((tmp_path / ".trash").iterdir()) == []


def test_a_rename_that_fails_deletes_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def exdev(src: object, dst: object) -> None:
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(base.os, "rename", exdev)
    trash = Trash(tmp_path / ".trash")
    tree = _tree(tmp_path)
    trash.discard(tree)
    assert not tree.exists()
