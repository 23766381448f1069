"""Fixtures of the archive tests; the helpers live in archive_testlib.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from archive_testlib import FixtureLayer, Guard, all_fixture_layers, snapshot


@pytest.fixture
def guard(tmp_path: Path) -> Guard:
    """An empty extraction root next to a populated `outside` directory."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    (outside / "dir").mkdir(parents=True)
    (outside / "secret").write_bytes(b"do not touch\n")
    (outside / "dir" / "file").write_bytes(b"inner\n")
    return Guard(root, outside, snapshot(outside))


@pytest.fixture(scope="session")
def fixture_layers() -> list[FixtureLayer]:
    layers = all_fixture_layers()
    assert len(layers) == 6, [layer.label for layer in layers]
    return layers
