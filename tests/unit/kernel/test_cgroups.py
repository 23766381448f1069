"""Cgroup mode and capability detection on fake v1, hybrid and v2 trees, and on this host."""

from __future__ import annotations

import os
from pathlib import Path

from pymoby.kernel import cgroups

V1_MOUNTINFO = """\
22 28 0:21 / /sys rw,nosuid - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
"""
V1_PROC_CGROUP = """\
9:name=systemd:/
8:pids:/
7:blkio:/
5:devices:/
4:memory:/user.slice
3:cpuset:/
1:cpu,cpuacct:/
0::/
"""
V1_FILES = {
    "cpu,cpuacct": ["cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.rt_period_us"],
    "memory": [
        "memory.limit_in_bytes",
        "memory.memsw.limit_in_bytes",
        "memory.soft_limit_in_bytes",
        "memory.oom_control",
        "memory.swappiness",
    ],
    "blkio": ["blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device"],
    "cpuset": ["cpuset.cpus"],
    "pids": [],
    "devices": [],
    "systemd": [],
}


def write(root: Path, path: str, text: str = "") -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def v1_tree(root: Path, *, hybrid: bool = False, skip: tuple[str, ...] = ()) -> None:
    mountinfo = V1_MOUNTINFO
    if hybrid:
        mountinfo += "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
    write(root, "/proc/self/mountinfo", mountinfo)
    write(root, "/proc/self/cgroup", V1_PROC_CGROUP)
    for directory, files in V1_FILES.items():
        (root / "sys/fs/cgroup" / directory).mkdir(parents=True, exist_ok=True)
        for name in files:
            if name not in skip:
                write(root, f"/sys/fs/cgroup/{directory}/{name}")


def v2_tree(root: Path, controllers: str, *, own_group: str = "/system.slice/d.service") -> None:
    write(
        root,
        "/proc/self/mountinfo",
        "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
    )
    write(root, "/proc/self/cgroup", f"0::{own_group}\n")
    write(root, "/sys/fs/cgroup/cgroup.controllers", controllers + "\n")
    write(root, f"/sys/fs/cgroup{own_group}/memory.swap.max", "max\n")
    write(root, "/proc/self/uid_map", "         0          0 4294967295\n")


def test_parse_mountinfo_fields_and_escapes() -> None:
    mounts = cgroups.parse_mountinfo(
        "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw,errors\n"
        "garbage line\n"
    )
    assert mounts == [cgroups.Mount("/mnt/with space", "ext3", "/dev/root", ("rw", "errors"))]


def test_parse_proc_cgroup() -> None:
    subsystems, unified = cgroups.parse_proc_cgroup(V1_PROC_CGROUP)
    assert subsystems["cpuacct"] == "/"
    assert subsystems["memory"] == "/user.slice"
    assert subsystems["name=systemd"] == "/"
    assert unified == "/"
    assert cgroups.parse_proc_cgroup("0::/a/b\n") == ({}, "/a/b")


def test_v1_capabilities(tmp_path: Path) -> None:
    v1_tree(tmp_path)
    info = cgroups.probe(str(tmp_path))
    assert info.mode == "legacy"
    assert info.version == "1"
    assert info.memory_limit and info.swap_limit and info.oom_kill_disable
    assert info.cpu_shares and info.cpu_cfs and info.cpu_realtime
    assert info.cpuset and info.pids_limit and info.devices
    assert info.blkio_read_bps_device and info.blkio_write_bps_device
    assert not info.blkio_weight and not info.blkio_read_iops_device
    assert info.mountpoints["cpu"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert info.mountpoints["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert info.mountpoints["systemd"] == "/sys/fs/cgroup/systemd"
    assert "Your kernel does not support cgroup blkio weight" in info.warnings
    assert "Your kernel does not support cgroup blkio throttle.read_iops_device" in info.warnings


def test_v1_without_swap_accounting(tmp_path: Path) -> None:
    v1_tree(tmp_path, hybrid=True, skip=("memory.memsw.limit_in_bytes", "cpu.cfs_quota_us"))
    info = cgroups.probe(str(tmp_path))
    assert info.mode == "hybrid"
    assert info.version == "1"
    assert info.memory_limit and not info.swap_limit
    assert not info.cpu_cfs
    assert "Your kernel does not support swap memory limit" in info.warnings
    assert "Your kernel does not support CPU CFS scheduler" in info.warnings


def test_v1_missing_memory_hierarchy(tmp_path: Path) -> None:
    v1_tree(tmp_path)
    write(
        tmp_path,
        "/proc/self/mountinfo",
        "".join(line + "\n" for line in V1_MOUNTINFO.splitlines() if "memory" not in line),
    )
    info = cgroups.probe(str(tmp_path))
    assert not info.memory_limit and not info.swap_limit and not info.oom_kill_disable
    assert "Your kernel does not support cgroup memory limit" in info.warnings


def test_v2_capabilities(tmp_path: Path) -> None:
    v2_tree(tmp_path, "cpuset cpu io memory hugetlb pids rdma misc")
    info = cgroups.probe(str(tmp_path))
    assert info.mode == "unified"
    assert info.version == "2"
    assert info.memory_limit and info.swap_limit and info.memory_reservation
    assert not info.oom_kill_disable  # never on v2
    assert info.cpu_shares and info.cpu_cfs and not info.cpu_realtime
    assert info.cpuset and info.pids_limit and info.devices
    assert info.blkio_weight and info.blkio_write_iops_device
    assert info.controllers == frozenset(
        {"cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"}
    )
    assert info.warnings == ()


def test_v2_missing_controllers_and_swap(tmp_path: Path) -> None:
    v2_tree(tmp_path, "memory")
    (tmp_path / "sys/fs/cgroup/system.slice/d.service/memory.swap.max").unlink()
    write(tmp_path, "/proc/self/uid_map", "0 100000 65536\n")
    info = cgroups.probe(str(tmp_path))
    assert info.memory_limit and not info.swap_limit
    assert not (info.cpu_shares or info.cpu_cfs or info.cpuset or info.pids_limit)
    assert not info.blkio_weight
    assert not info.devices  # inside a user namespace
    assert info.warnings == (
        "Unable to find cpu controller",
        "Unable to find io controller",
        "Unable to find cpuset controller",
        "Unable to find pids controller",
    )


def test_unavailable_without_cgroup_dir(tmp_path: Path) -> None:
    write(tmp_path, "/proc/self/mountinfo", "")
    write(tmp_path, "/proc/self/cgroup", "")
    info = cgroups.probe(str(tmp_path))
    assert info.mode == "unavailable"
    assert info.version == "1"
    assert not info.memory_limit


def test_is_running_systemd(tmp_path: Path) -> None:
    assert not cgroups.is_running_systemd(str(tmp_path))
    (tmp_path / "run/systemd/system").mkdir(parents=True)
    assert cgroups.is_running_systemd(str(tmp_path))


def test_this_host_matches_its_mounts() -> None:
    info = cgroups.probe()
    mounts = cgroups.parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    top = [m for m in mounts if m.mountpoint == "/sys/fs/cgroup"]
    if top and top[-1].fstype == "cgroup2":
        assert info.mode == "unified"
        controllers = Path("/sys/fs/cgroup/cgroup.controllers").read_text().split()
        assert info.controllers == frozenset(controllers)
    else:
        assert info.mode in ("hybrid", "legacy")
        memory = info.mountpoints.get("memory")
        assert info.memory_limit is (memory is not None)
        if memory is not None:
            memsw = os.path.exists(os.path.join(memory, "memory.memsw.limit_in_bytes"))
            assert info.swap_limit is memsw
