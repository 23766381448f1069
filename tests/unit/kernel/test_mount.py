"""kernel.mount: overlay through the new API and classic mount(2), binds, unmount, probes."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from pymoby import errdefs
from pymoby.kernel import mount as kmount
from pymoby.kernel.mount import MountError, MountSpec


def _mounts_under(path: Path) -> list[str]:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == real or p.startswith(real + "/")]


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    """The test's directory; anything still mounted under it at the end fails the test."""
    yield tmp_path
    left = _mounts_under(tmp_path)
    for point in sorted(left, key=len, reverse=True):
        kmount.unmount(point, lazy=True, missing_ok=True)
    assert left == [], "a test left mounts behind"


def _layers(root: Path, count: int, *, name: str = "layer") -> list[str]:
    """`count` lower dirs (top first), each with its own file; returns their names."""
    names = []
    for i in range(count):
        (root / f"{name}{i}").mkdir()
        (root / f"{name}{i}" / f"f{i}").write_text(str(i))
        names.append(f"{name}{i}")
    for d in ("upper", "work", "merged"):
        (root / d).mkdir()
    return list(reversed(names))


def _overlay(root: Path, lowers: list[str], *, relative: bool = False) -> MountSpec:
    def p(name: str) -> str:
        return name if relative else str(root / name)

    return MountSpec(
        fstype="overlay",
        source="overlay",
        target=str(root / "merged"),
        options=("index=off",),
        lowerdirs=tuple(p(n) for n in lowers),
        upperdir=p("upper"),
        workdir=p("work"),
        cwd=str(root) if relative else "",
    )


def test_new_api_is_there_on_this_kernel() -> None:
    assert kmount.new_api_available()  # 6.18 here; the classic path is tested explicitly


@pytest.mark.parametrize("api", ["new", "classic"])
def test_overlay_mount_and_unmount(root: Path, api: kmount.Api) -> None:
    spec = _overlay(root, _layers(root, 3))
    kmount.mount(spec, api=api)
    try:
        assert kmount.is_mountpoint(spec.target)
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            line = next(line for line in f if line.split()[4] == spec.target)
        assert line.split(" - ")[1].split()[:2] == ["overlay", "overlay"]  # type, source
        merged = root / "merged"
        assert sorted(os.listdir(merged)) == ["f0", "f1", "f2"]
        (merged / "new").write_text("n")
        assert (root / "upper" / "new").read_text() == "n"
        assert kmount.fs_magic(merged) == 0x794C7630
    finally:
        assert kmount.unmount(spec.target) is True
    assert not kmount.is_mountpoint(spec.target)


@pytest.mark.parametrize("api", ["new", "classic"])
def test_read_only_overlay(root: Path, api: kmount.Api) -> None:
    lowers = _layers(root, 2)
    spec = MountSpec(
        fstype="overlay",
        target=str(root / "merged"),
        lowerdirs=tuple(str(root / n) for n in lowers),
    )
    kmount.mount(spec, api=api)
    try:
        with pytest.raises(OSError) as info:
            (root / "merged" / "x").write_text("x")
        assert info.value.errno == errno.EROFS
    finally:
        kmount.unmount(spec.target)


@pytest.mark.parametrize("api", ["new", "classic"])
def test_relative_paths_resolve_from_cwd_without_moving_ours(root: Path, api: kmount.Api) -> None:
    cwd = os.getcwd()
    # deep names: absolute paths would not fit fsconfig (255 bytes) nor a 4 KiB option string
    deep = root / ("d" * 200) / ("e" * 200)
    deep.mkdir(parents=True)
    spec = _overlay(deep, _layers(deep, 60, name="x" * 40), relative=True)
    kmount.mount(spec, api=api)
    try:
        assert len(os.listdir(spec.target)) == 60
        assert os.getcwd() == cwd
    finally:
        kmount.unmount(spec.target)


def test_classic_option_string_too_long(root: Path) -> None:
    spec = _overlay(root, _layers(root, 200, name="y" * 30), relative=True)
    with pytest.raises(MountError) as info:
        kmount.mount(spec, api="classic")
    assert info.value.errno == errno.E2BIG
    assert "200 lower directories" in str(info.value) and spec.target in str(info.value)
    kmount.mount(spec, api="new")  # the new API takes them one by one
    try:
        assert len(os.listdir(spec.target)) == 200
    finally:
        kmount.unmount(spec.target)


def test_errors_name_the_target_and_errno(root: Path) -> None:
    spec = _overlay(root, _layers(root, 1))
    missing = MountSpec(
        fstype="overlay",
        target=str(root / "nowhere"),
        lowerdirs=spec.lowerdirs,
        upperdir=spec.upperdir,
        workdir=spec.workdir,
    )
    apis: tuple[kmount.Api, ...] = ("new", "classic")
    for api in apis:
        with pytest.raises(MountError, match=re.escape(f"{root}/nowhere: No such file")):
            kmount.mount(missing, api=api)
    bad = MountSpec(
        fstype="overlay", target=spec.target, options=("nonsense=1",), lowerdirs=spec.lowerdirs
    )
    with pytest.raises(MountError, match=r"Invalid argument.*Unknown parameter 'nonsense'") as info:
        kmount.mount(bad, api="new")  # the kernel's own message from the fs context
    assert isinstance(info.value, errdefs.System) and info.value.errno == errno.EINVAL
    with pytest.raises(errdefs.InvalidParameter):
        kmount.mount(MountSpec.plain_dir(root))


def test_unmount(root: Path) -> None:
    with pytest.raises(MountError, match=re.escape(f"unmount {root}: Invalid argument")):
        kmount.unmount(root)
    assert kmount.unmount(root, missing_ok=True) is False
    assert kmount.unmount(root / "missing", missing_ok=True) is False
    spec = _overlay(root, _layers(root, 1))
    kmount.mount(spec)
    busy = os.open(Path(spec.target) / "f0", os.O_RDONLY)
    try:
        with pytest.raises(MountError) as info:
            kmount.unmount(spec.target)
        assert info.value.errno == errno.EBUSY
        assert kmount.unmount(spec.target, lazy=True) is True  # detached while still open
        assert not kmount.is_mountpoint(spec.target)
    finally:
        os.close(busy)


def test_bind_mounts(root: Path) -> None:
    (root / "src").mkdir()
    (root / "src" / "f").write_text("f")
    (root / "dst").mkdir()
    spec = MountSpec(fstype="bind", source=str(root / "src"), target=str(root / "dst"),
                     options=("rbind", "ro", "nosuid", "rprivate"))  # fmt: skip
    kmount.mount(spec)
    try:
        assert kmount.is_mountpoint(root / "dst")
        assert (root / "dst" / "f").read_text() == "f"
        with pytest.raises(OSError) as info:
            (root / "dst" / "g").write_text("g")
        assert info.value.errno == errno.EROFS
    finally:
        kmount.unmount(root / "dst")
    with pytest.raises(errdefs.InvalidParameter):
        kmount.mount(MountSpec(fstype="bind", source="/x", target="/y", options=("size=1",)))


def test_other_filesystems(root: Path) -> None:
    spec = MountSpec(fstype="tmpfs", source="shm", target=str(root), options=("size=1m", "nodev"))
    kmount.mount(spec)
    try:
        assert kmount.fs_magic(root) == 0x01021994
    finally:
        kmount.unmount(root)


def test_is_mountpoint() -> None:
    assert kmount.is_mountpoint("/")
    assert kmount.is_mountpoint("/proc")
    assert not kmount.is_mountpoint("/proc/self/fd")
    assert not kmount.is_mountpoint("/does/not/exist")
    assert kmount._in_mountinfo("/proc") and not kmount._in_mountinfo("/proc/self")


def test_filesystem_facts(tmp_path: Path) -> None:
    assert kmount.fs_magic(tmp_path) == 0xEF53  # ext4 root here
    assert kmount.supports_d_type(tmp_path) is True
    assert list(tmp_path.iterdir()) == []  # the probe cleans up
    kmount.syncfs(tmp_path)
    with pytest.raises(MountError, match="No such file"):
        kmount.fs_magic(tmp_path / "missing")
    with pytest.raises(MountError, match="No such file"):
        kmount.syncfs(tmp_path / "missing")


def test_mounter_object(root: Path) -> None:
    spec = _overlay(root, _layers(root, 2))
    mounter = kmount.Mounter("classic")
    mounter.mount(spec)
    try:
        assert mounter.is_mountpoint(spec.target)
    finally:
        mounter.unmount(spec.target)
    assert not mounter.is_mountpoint(spec.target)
