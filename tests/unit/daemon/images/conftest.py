"""Fixtures of the image service tests; the helpers live in images_testlib.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from images_testlib import Env, open_env


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = open_env(tmp_path)
    try:
        yield e
    finally:
        e.close()
