"""kernel.netns (persistent network namespaces) and kernel.sysctl, for real, as root.

Every namespace lives in the test's own directory and is unmounted at the end even when the test
fails; a test that leaves an nsfs mount behind fails. Nothing here touches the host's network.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from nstestlib import clear_namespaces, nsfs_mounts_under

from pymoby import errdefs
from pymoby.kernel import mount as kmount
from pymoby.kernel import netns, sysctl

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

T = TypeVar("T")


@pytest.fixture
def nsdir(tmp_path: Path) -> Iterator[Path]:
    """A directory for namespace files; whatever is left in it is unmounted and removed."""
    d = tmp_path / "netns"
    d.mkdir()
    yield d
    assert clear_namespaces(d) == [], "a test left namespaces mounted"


def _own_ns() -> str:
    return os.readlink("/proc/thread-self/ns/net")


def _in_thread(fn: Callable[[], T]) -> T:
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["v"] = fn()
        except BaseException as exc:
            box["e"] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "e" in box:
        raise box["e"]  # type: ignore[misc]
    return box["v"]  # type: ignore[return-value]


def _lo_flags() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        out = fcntl.ioctl(s.fileno(), 0x8913, struct.pack("16sH22x", b"lo", 0))
        return int(struct.unpack("16sH22x", out)[1])


# -- create / remove / is_netns ----------------------------------------------------------------


def test_create_makes_a_new_namespace_with_lo_up_and_remove_drops_it(nsdir: Path) -> None:
    path = nsdir / "a"
    before = _own_ns()
    netns.create(path)
    assert _own_ns() == before, "the calling thread must stay in its namespace"
    assert path.is_file()
    assert netns.is_netns(path)
    assert nsfs_mounts_under(nsdir) == [str(path)]
    assert f"net:[{path.stat().st_ino}]" != before
    with netns.entered(path):
        assert _own_ns() == f"net:[{path.stat().st_ino}]"
        assert [name for _, name in socket.if_nameindex()] == ["lo"]
        assert _lo_flags() & 0x1, "lo must be up"
    netns.remove(path)
    assert not path.exists()
    assert nsfs_mounts_under(nsdir) == []


def test_two_namespaces_are_distinct(nsdir: Path) -> None:
    netns.create(nsdir / "a")
    netns.create(nsdir / "b")
    assert (nsdir / "a").stat().st_ino != (nsdir / "b").stat().st_ino
    netns.remove(nsdir / "a")
    netns.remove(nsdir / "b")


def test_create_on_an_existing_path_fails_and_leaves_it_alone(nsdir: Path) -> None:
    path = nsdir / "taken"
    path.write_text("keep")
    with pytest.raises(netns.NetnsError, match="taken") as info:
        netns.create(path)
    assert isinstance(info.value, errdefs.System)
    assert info.value.errno == errno.EEXIST
    assert path.read_text() == "keep"
    assert not netns.is_netns(path)
    netns.create(nsdir / "ns")
    with pytest.raises(netns.NetnsError):
        netns.create(nsdir / "ns")
    assert netns.is_netns(nsdir / "ns")
    netns.remove(nsdir / "ns")


def test_create_without_parent_directory_fails(nsdir: Path) -> None:
    with pytest.raises(netns.NetnsError, match="No such file"):
        netns.create(nsdir / "missing" / "ns")
    assert list(nsdir.iterdir()) == []


def test_create_failing_at_mount_leaves_nothing(
    nsdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(spec: kmount.MountSpec) -> None:
        raise kmount.MountError(f"mount bind on {spec.target}: Permission denied", errno.EPERM)

    monkeypatch.setattr(kmount, "mount", broken)
    before = _own_ns()
    with pytest.raises(netns.NetnsError, match="Permission denied"):
        netns.create(nsdir / "ns")
    assert _own_ns() == before
    assert list(nsdir.iterdir()) == []


def test_create_failing_after_mount_unmounts_and_removes(
    nsdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> None:
        raise OSError(errno.EIO, "lo: Input/output error")

    monkeypatch.setattr(netns, "_lo_up", broken)
    with pytest.raises(netns.NetnsError, match="Input/output"):
        netns.create(nsdir / "ns")
    assert list(nsdir.iterdir()) == []
    assert nsfs_mounts_under(nsdir) == []


def test_remove_is_fine_with_missing_and_unmounted_paths(nsdir: Path) -> None:
    netns.remove(nsdir / "never")
    plain = nsdir / "plain"
    plain.touch()
    netns.remove(plain)
    assert not plain.exists()
    netns.create(nsdir / "ns")
    netns.remove(nsdir / "ns")
    netns.remove(nsdir / "ns")


def test_is_netns(nsdir: Path) -> None:
    (nsdir / "file").touch()
    assert not netns.is_netns(nsdir / "file")
    assert not netns.is_netns(nsdir / "missing")
    assert not netns.is_netns(nsdir)
    netns.create(nsdir / "ns")
    assert netns.is_netns(nsdir / "ns")
    netns.remove(nsdir / "ns")
    assert not netns.is_netns(nsdir / "ns")


# -- entered / socket_in ---------------------------------------------------------------------


def test_entered_restores_the_thread_also_on_error(nsdir: Path) -> None:
    path = nsdir / "ns"
    netns.create(path)
    before = _own_ns()
    with pytest.raises(RuntimeError, match="boom"), netns.entered(path):
        assert _own_ns() != before
        raise RuntimeError("boom")
    assert _own_ns() == before
    netns.remove(path)


def test_entered_refuses_what_is_not_a_namespace(nsdir: Path) -> None:
    (nsdir / "file").touch()
    before = _own_ns()
    with (
        pytest.raises(netns.NetnsError, match="not a network namespace"),
        netns.entered(nsdir / "file"),
    ):
        pytest.fail("must not run")
    with pytest.raises(netns.NetnsError, match="No such file"), netns.entered(nsdir / "gone"):
        pytest.fail("must not run")
    assert _own_ns() == before


def test_entered_that_cannot_restore_is_fatal(nsdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = nsdir / "ns"
    netns.create(path)
    real = netns._setns
    calls: list[int] = []

    def setns(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:  # the way back
            raise OSError(errno.ENOMEM, "Cannot allocate memory")
        real(fd)

    def run() -> None:  # in its own thread: that thread ends stuck in the namespace
        with netns.entered(path):
            pass

    monkeypatch.setattr(netns, "_setns", setns)
    with pytest.raises(netns.NetnsFatal, match="cannot return"):
        _in_thread(run)
    assert not isinstance(netns.NetnsFatal("x"), Exception), "must escape `except Exception`"
    netns.remove(path)


def test_socket_in_binds_the_socket_to_the_namespace(nsdir: Path) -> None:
    path = nsdir / "ns"
    netns.create(path)
    before = _own_ns()
    server = netns.socket_in(path, socket.AF_INET, socket.SOCK_STREAM)
    client = netns.socket_in(path, socket.AF_INET, socket.SOCK_STREAM)
    outsider = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        assert _own_ns() == before
        assert not os.get_inheritable(server.fileno())
        assert fcntl.fcntl(server.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client.connect(("127.0.0.1", port))  # same namespace: reachable
        conn, _ = server.accept()
        conn.close()
        outsider.settimeout(2)
        with pytest.raises(ConnectionRefusedError):  # the host's loopback is another one
            outsider.connect(("127.0.0.1", port))
    finally:
        for s in (server, client, outsider):
            s.close()
        netns.remove(path)


def test_socket_in_a_missing_namespace_fails(nsdir: Path) -> None:
    with pytest.raises(netns.NetnsError):
        netns.socket_in(nsdir / "gone", socket.AF_INET, socket.SOCK_DGRAM)


# -- sysctl (per-namespace keys, so the host is never changed) ---------------------------------


def test_sysctl_reads_and_writes_per_namespace(nsdir: Path) -> None:
    path = nsdir / "ns"
    netns.create(path)
    host = sysctl.read("net/ipv4/ip_forward")
    want = "0" if host == "1" else "1"
    try:
        with netns.entered(path):
            sysctl.write("net.ipv4.ip_forward", want)
            assert sysctl.read("net/ipv4/ip_forward") == want
            assert sysctl.read("net.ipv4.conf.lo.forwarding") == want
        assert sysctl.read("net.ipv4.ip_forward") == host
    finally:
        netns.remove(path)


def test_sysctl_write_skips_an_equal_value_and_reports_failures() -> None:
    release = sysctl.read("kernel.osrelease")
    assert release == os.uname().release
    sysctl.write("kernel/osrelease", release)  # read-only key, same value: nothing written
    with pytest.raises(sysctl.SysctlError, match="kernel/osrelease") as info:
        sysctl.write("kernel/osrelease", "other")
    assert isinstance(info.value, errdefs.System)
    with pytest.raises(errdefs.System, match="No such file"):
        sysctl.read("net.ipv4.no_such_key")
    for bad in ("", "..", "net/../../etc/passwd", "net//ipv4"):
        with pytest.raises(errdefs.InvalidParameter):
            sysctl.read(bad)


def test_write_sysctl_changes_only_that_namespace(nsdir: Path) -> None:
    path = nsdir / "ns"
    netns.create(path)
    host = sysctl.read("net/ipv4/ip_forward")
    want = "0" if host == "1" else "1"
    try:
        netns.write_sysctl(path, "net/ipv4/ip_forward", want)
        with netns.entered(path):
            assert sysctl.read("net/ipv4/ip_forward") == want
        assert sysctl.read("net/ipv4/ip_forward") == host
        with pytest.raises(netns.NetnsError, match="no_such_key"):
            netns.write_sysctl(path, "net/ipv4/no_such_key", "1")
    finally:
        netns.remove(path)
