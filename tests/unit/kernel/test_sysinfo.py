"""Host facts: parsers with dockerd's edge cases, a fake /proc + /etc tree, and this host."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pymoby.kernel import sysinfo


@pytest.mark.parametrize(
    ("release", "expected"),
    [
        ("6.1.0-13-amd64", "6.1.0-13-amd64"),
        ("6.18.44-fc-v595", "6.18.44-fc-v595"),
        ("4.1.2-generic", "4.1.2-generic"),
        ("6.18", "6.18.0"),
        ("5.4-rc1", "5.4.0-rc1"),
        ("3.12.25-gentoo", "3.12.25-gentoo"),
        ("3.8.0-19-generic #29-Ubuntu", "3.8.0-19-generic"),
        ("not-a-kernel", ""),
        ("6", ""),
    ],
)
def test_format_kernel_release(release: str, expected: str) -> None:
    assert sysinfo.format_kernel_release(release) == expected


def test_parse_os_release() -> None:
    text = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_ID="12"\n# c=1\nID=debian\n'
    values = sysinfo.parse_os_release(text)
    assert values["PRETTY_NAME"] == "Debian GNU/Linux 12 (bookworm)"
    assert values["VERSION_ID"] == "12"
    assert values["ID"] == "debian"
    assert "# c" not in values
    assert sysinfo.parse_os_release("NAME='Alpine Linux' \nNAME=Other")["NAME"] == "Other"


def test_parse_meminfo_total() -> None:
    assert sysinfo.parse_meminfo_total("MemFree: 1 kB\nMemTotal:  2048 kB\n") == 2048 * 1024
    assert sysinfo.parse_meminfo_total("MemFree: 1 kB\n") == 0


def test_is_containerized() -> None:
    assert not sysinfo.is_containerized("0::/\n")
    assert not sysinfo.is_containerized("0::/init.scope\n1:name=systemd:/\n")
    assert sysinfo.is_containerized("0::/docker/abc\n")


@pytest.mark.parametrize(
    ("machine", "goarch"),
    [
        ("x86_64", "amd64"),
        ("aarch64", "arm64"),
        ("armv7l", "arm"),
        ("i686", "386"),
        ("ppc64le", "ppc64le"),
        ("s390x", "s390x"),
        ("riscv64", "riscv64"),
        ("weird", "weird"),
    ],
)
def test_go_arch(machine: str, goarch: str) -> None:
    assert sysinfo.go_arch(machine) == goarch


def write(root: Path, path: str, text: str) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def test_fake_tree(tmp_path: Path) -> None:
    write(tmp_path, "/etc/os-release", 'PRETTY_NAME="Fake OS 1"\nVERSION_ID="1.2"\n')
    write(tmp_path, "/proc/1/cgroup", "0::/\n")
    write(tmp_path, "/proc/meminfo", "MemTotal: 1000 kB\n")
    write(tmp_path, "/proc/sys/net/ipv4/ip_forward", "0\n")
    write(tmp_path, "/proc/sys/net/bridge/bridge-nf-call-iptables", "1\n")
    write(tmp_path, "/proc/self/mountinfo", "")
    write(tmp_path, "/proc/self/cgroup", "")
    probe = sysinfo.HostProbe(str(tmp_path))
    facts = probe.static_facts()
    assert facts.operating_system == "Fake OS 1"
    assert facts.os_version == "1.2"
    assert facts.mem_total == 1000 * 1024
    assert not facts.apparmor and not facts.selinux and not facts.cgroup_namespaces
    assert probe.static_facts() is facts  # cached
    live = probe.live_facts()
    assert live.ipv4_forwarding is False
    assert live.bridge_nf_iptables is True
    assert live.bridge_nf_ip6tables is False  # absent file


def test_os_release_fallback_and_containerized(tmp_path: Path) -> None:
    probe = sysinfo.HostProbe(str(tmp_path))
    assert probe.operating_system() == " (error determining if containerized)"
    write(tmp_path, "/usr/lib/os-release", "ID=x\n")
    write(tmp_path, "/proc/1/cgroup", "0::/kubepods/pod1\n")
    assert probe.operating_system() == "Linux (containerized)"  # no PRETTY_NAME
    assert probe.os_release() == {"ID": "x"}


def test_apparmor_and_selinux_detection(tmp_path: Path) -> None:
    probe = sysinfo.HostProbe(str(tmp_path))
    (tmp_path / "sys/kernel/security/apparmor").mkdir(parents=True)
    assert not probe.apparmor_enabled()  # no readable profiles file
    write(tmp_path, "/sys/kernel/security/apparmor/profiles", "docker-default (enforce)\n")
    assert probe.apparmor_enabled()
    write(
        tmp_path,
        "/proc/self/mountinfo",
        "20 1 0:19 / /sys/fs/selinux rw - selinuxfs selinuxfs rw\n",
    )
    write(tmp_path, "/proc/self/attr/current", "kernel\x00")
    assert not probe.selinux_enabled()
    write(tmp_path, "/proc/self/attr/current", "system_u:system_r:unconfined_t:s0\x00")
    assert probe.selinux_enabled()


def test_this_host() -> None:
    probe = sysinfo.HostProbe()
    facts = probe.static_facts()
    uname = os.uname()
    assert facts.kernel_version == sysinfo.format_kernel_release(uname.release)
    assert facts.kernel_version.split(".")[:2] == uname.release.split(".")[:2]
    assert facts.architecture == uname.machine
    assert facts.ncpu == len(os.sched_getaffinity(0)) >= 1
    assert facts.mem_total > 0 and facts.mem_total % 1024 == 0
    status = Path("/proc/self/status").read_text()
    if "Seccomp:" in status:
        assert facts.seccomp  # every kernel dockerd supports has seccomp filters with it
    os_release = Path("/etc/os-release").read_text()
    pretty = sysinfo.parse_os_release(os_release).get("PRETTY_NAME", "Linux")
    assert facts.operating_system.startswith(pretty)
    live = probe.live_facts()
    forward = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"
    assert live.ipv4_forwarding is forward
    assert live.hostname == uname.nodename


def test_open_fd_count_tracks_opens() -> None:
    before = sysinfo.open_fd_count()
    assert before == len(os.listdir("/proc/self/fd")) - 1
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        assert sysinfo.open_fd_count() == before + 1
    finally:
        os.close(fd)
