"""overlay2 specifics: dockerd's layout, mount descriptions, probes, limits, crash leftovers."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from layer_testlib import mounted, unmount_all

from pymoby import errdefs
from pymoby.kernel import mount as kmount
from pymoby.store.graphdriver import MountSpec, NotSupportedError, Overlay2Driver


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "overlay2"
    assert unmount_all(tmp_path) == [], "a test left mounts behind"


def test_layout_is_dockerds(home: Path) -> None:
    d = Overlay2Driver.open(home)
    assert sorted(os.listdir(home)) == ["l"]
    assert (home.stat().st_mode & 0o777, (home / "l").stat().st_mode & 0o777) == (0o710, 0o700)
    d.create("a", None, rw=False)
    d.create("b", "a", rw=False)
    d.create("c", "b", rw=True)
    links = {}
    for id in "abc":
        link = (home / id / "link").read_text()
        assert re.fullmatch(r"[A-Z2-7]{26}", link)
        assert os.readlink(home / "l" / link) == f"../{id}/diff"
        links[id] = link
    assert not (home / "a" / "lower").exists() and not (home / "a" / "work").exists()
    assert (home / "b" / "lower").read_text() == f"l/{links['a']}"
    assert (home / "c" / "lower").read_text() == f"l/{links['b']}:l/{links['a']}"
    assert (home / "c" / "work").is_dir()
    # image layers and parents are committed (mounted read-only); the container layer is not
    assert [(home / id / "committed").exists() for id in "abc"] == [True, True, False]
    d.remove("c")
    assert sorted(os.listdir(home / "l")) == sorted([links["a"], links["b"]])


def test_get_describes_the_mount(home: Path) -> None:
    d = Overlay2Driver.open(home)
    d.create("a", None, rw=False)
    d.create("b", "a", rw=False)
    d.create("c", "b", rw=True)
    link = {id: (home / id / "link").read_text() for id in "abc"}
    index = ("index=off",) if os.path.exists("/sys/module/overlay/parameters/index") else ()
    try:
        assert d.get("a") == MountSpec.plain_dir(home / "a" / "diff")
        assert d.get("c", "system_u:object_r:container_file_t:s0:c1,c2") == MountSpec(
            fstype="overlay",
            source="overlay",
            target=f"{home}/c/merged",
            options=(*index, "context=system_u:object_r:container_file_t:s0:c1,c2"),
            lowerdirs=(f"l/{link['b']}", f"l/{link['a']}"),
            upperdir="c/diff",
            workdir="c/work",
            cwd=str(home),
        )
        readonly = d.get("b")  # committed: its own diff becomes the top lower dir, no upper
        assert readonly.lowerdirs == ("b/diff", f"l/{link['a']}")
        assert (readonly.upperdir, readonly.workdir) == ("", "")
        assert (home / "c" / "merged").is_dir()
    finally:
        for id in "acb":
            d.put(id)
    assert not (home / "c" / "merged").exists()  # put removes the mount point, like dockerd


def test_read_only_layer_mounts_read_only(home: Path) -> None:
    d = Overlay2Driver.open(home)
    d.create("a", None, rw=False)
    (d.diff_path("a") / "f").write_text("a")
    d.create("b", "a", rw=False)
    with mounted(d, "b") as root:
        assert (root / "f").read_text() == "a"
        with pytest.raises(OSError, match="Read-only"):
            (root / "g").write_text("x")


def test_open_cleans_crash_leftovers(home: Path) -> None:
    d = Overlay2Driver.open(home)
    d.create("a", None, rw=False)
    os.symlink("../gone/diff", home / "l" / "DANGLINGDANGLINGDANGLING12")
    probe = home / ".probe-overlay-dead"
    for sub in ("lower1", "lower2", "upper", "work", "merged"):
        (probe / sub).mkdir(parents=True)
    kmount.mount(
        MountSpec(
            fstype="overlay",
            target=str(probe / "merged"),
            lowerdirs=(str(probe / "lower1"),),
            upperdir=str(probe / "upper"),
            workdir=str(probe / "work"),
        )
    )
    Overlay2Driver.open(home)
    assert not probe.exists()
    assert sorted(os.listdir(home / "l")) == [(home / "a" / "link").read_text()]
    assert d.ids() == ["a"]


def test_not_supported_on_overlayfs(home: Path, tmp_path: Path) -> None:
    base = tmp_path / "ovl"
    for sub in ("lower", "upper", "work", "merged"):
        (base / sub).mkdir(parents=True)
    spec = MountSpec(
        fstype="overlay",
        target=str(base / "merged"),
        lowerdirs=(str(base / "lower"),),
        upperdir=str(base / "upper"),
        workdir=str(base / "work"),
    )
    kmount.mount(spec)
    try:
        with pytest.raises(NotSupportedError, match="overlayfs"):
            Overlay2Driver.open(base / "merged" / "overlay2")
        assert not (base / "merged" / "overlay2").exists()  # what open created is removed
    finally:
        kmount.unmount(spec.target)


class FailingMounter:
    def mount(self, spec: MountSpec) -> None:
        raise kmount.MountError(f"mount overlay on {spec.target}: No such device", 19)

    def unmount(self, target: str | Path, *, lazy: bool = False) -> None:
        raise AssertionError("nothing was mounted")

    def is_mountpoint(self, path: str | Path) -> bool:
        return False


def test_not_supported_when_overlay_cannot_mount(home: Path) -> None:
    with pytest.raises(NotSupportedError, match=r"overlay is not supported.*No such device"):
        Overlay2Driver.open(home, mounter=FailingMounter())
    assert not home.exists()


def test_options_are_refused(home: Path) -> None:
    with pytest.raises(errdefs.InvalidParameter, match=r"overlay2: unknown option overlay2\.size"):
        Overlay2Driver.open(home, options=["overlay2.size=10G"])


def test_classic_api_stops_at_dockerds_depth(home: Path) -> None:
    d = Overlay2Driver.open(home, api="classic")
    parent = None
    for i in range(129):  # the last one has 128 lower dirs: the most a page holds
        d.create(f"l{i}", parent, rw=False)
        parent = f"l{i}"
    with pytest.raises(errdefs.InvalidParameter, match="max depth exceeded"):
        d.create("one-too-many", parent, rw=True)
    assert not d.exists("one-too-many")
    assert len(os.listdir(home / "l")) == 129
    with mounted(d, "l128", "classic") as root:  # 129 dirs: own diff + 128 lowers
        assert root.is_dir()


def test_metadata_lists_lowers_top_first(home: Path) -> None:
    d = Overlay2Driver.open(home)
    d.create("a", None, rw=False)
    d.create("b", "a", rw=False)
    d.create("c", "b", rw=True)
    assert d.metadata("c")["LowerDir"] == f"{home}/b/diff:{home}/a/diff"


def test_remove_refuses_a_mount_made_elsewhere(home: Path) -> None:
    """A merged dir still mounted after a restart (no get count) still blocks remove."""
    d = Overlay2Driver.open(home)
    d.create("a", None, rw=False)
    d.create("b", "a", rw=True)
    spec = d.get("b")
    kmount.mount(spec)
    d2 = Overlay2Driver.open(home)  # a new daemon: knows nothing of the mount
    try:
        with pytest.raises(errdefs.Conflict, match="in use"):
            d2.remove("b")
    finally:
        kmount.unmount(spec.target)
        d.put("b")
    d2.remove("b")
