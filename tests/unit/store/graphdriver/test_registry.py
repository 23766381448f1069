"""Choosing a graph driver: by name, by prior state, by priority; dockerd's messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from pymoby import errdefs
from pymoby.store.graphdriver import NotSupportedError, new_driver


def test_default_is_overlay2_here(tmp_path: Path) -> None:
    driver = new_driver("", tmp_path)
    assert driver.name == "overlay2"
    assert driver.home == tmp_path / "overlay2"


def test_named_driver(tmp_path: Path) -> None:
    driver = new_driver(" vfs ", tmp_path)
    assert driver.name == "vfs"
    assert (tmp_path / "vfs" / "dir").is_dir()


def test_prior_state_wins_over_priority(tmp_path: Path) -> None:
    vfs = new_driver("vfs", tmp_path)
    assert new_driver("", tmp_path).name == "overlay2"  # an empty vfs skeleton is no state
    vfs.create("layer", None, rw=False)
    assert new_driver("", tmp_path).name == "vfs"


def test_several_prior_drivers_are_refused(tmp_path: Path) -> None:
    new_driver("vfs", tmp_path).create("x", None, rw=False)
    new_driver("overlay2", tmp_path).create("y", None, rw=False)
    with pytest.raises(NotSupportedError) as info:
        new_driver("", tmp_path)
    assert str(info.value) == (
        f"{tmp_path} contains several valid graphdrivers: overlay2, vfs; "
        "cleanup or explicitly choose storage driver (-s <DRIVER>)"
    )


@pytest.mark.parametrize("name", ["aufs", "devicemapper", "overlay"])
def test_removed_drivers(tmp_path: Path, name: str) -> None:
    with pytest.raises(NotSupportedError) as info:
        new_driver(name, tmp_path)
    assert str(info.value) == (
        f"[graphdriver] ERROR: the {name} storage-driver has been deprecated and removed; "
        "visit https://docs.docker.com/go/storage-driver/ for more information"
    )


def test_unknown_driver(tmp_path: Path) -> None:
    with pytest.raises(NotSupportedError, match=r"^driver not supported: btrfs$"):
        new_driver("btrfs", tmp_path)
    assert isinstance(NotSupportedError("x"), errdefs.System)


def test_options_reach_the_driver(tmp_path: Path) -> None:
    with pytest.raises(errdefs.InvalidParameter, match="unknown option size for vfs"):
        new_driver("vfs", tmp_path, options=["size=1G"])
