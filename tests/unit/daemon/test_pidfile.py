"""daemon.pidfile: flock-held pidfile + data-root lock; second daemon refused; stale taken over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from pymoby import errdefs
from pymoby.daemon.pidfile import LOCK_NAME, AlreadyRunning, DaemonLock, read_pid

HOLDER = textwrap.dedent(
    """
    import sys
    from pymoby.daemon.pidfile import DaemonLock
    with DaemonLock(sys.argv[1], sys.argv[2]):
        print("locked", flush=True)
        sys.stdin.read()
    """
)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding <tmp>/run/a.pid and <tmp>/root."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "run" / "a.pid"), str(tmp_path / "root")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_acquire_writes_pid_and_release_removes_pidfile(tmp_path: Path) -> None:
    pidfile, root = tmp_path / "run" / "d.pid", tmp_path / "root"
    with DaemonLock(str(pidfile), str(root)) as lock:
        assert lock.held
        assert pidfile.read_text() == str(os.getpid())
        assert (root / LOCK_NAME).read_text() == str(os.getpid())
        assert oct(root.stat().st_mode & 0o777) == "0o711"
        assert read_pid(str(pidfile)) == os.getpid()
    assert not pidfile.exists() and not lock.held
    assert (root / LOCK_NAME).exists()
    assert read_pid(str(pidfile)) is None
    lock.release()  # twice is fine


def test_second_daemon_same_pidfile_refused(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    pidfile = tmp_path / "run" / "a.pid"
    with pytest.raises(AlreadyRunning) as info:
        DaemonLock(str(pidfile), str(tmp_path / "other-root")).acquire()
    assert isinstance(info.value, errdefs.Conflict)
    assert str(info.value) == (
        f"failed to start daemon, ensure pymobyd is not running or delete {pidfile}:"
        f" process with PID {holder.pid} is still running"
    )
    assert (info.value.path, info.value.pid) == (str(pidfile), holder.pid)
    assert pidfile.read_text() == str(holder.pid)  # untouched
    assert read_pid(str(pidfile)) == holder.pid


def test_second_daemon_same_data_root_refused(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    other_pidfile = tmp_path / "run" / "b.pid"
    root = tmp_path / "root"
    with pytest.raises(AlreadyRunning) as info:
        DaemonLock(str(other_pidfile), str(root)).acquire()
    assert str(info.value) == (
        f"failed to start daemon: another pymobyd is using data-root {root}"
        f" (process with PID {holder.pid} is still running; lock {root / LOCK_NAME})"
    )
    assert not other_pidfile.exists()


def test_killed_daemon_is_taken_over(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    pidfile = tmp_path / "run" / "a.pid"
    assert pidfile.read_text() == str(holder.pid)  # stale file left behind
    assert read_pid(str(pidfile)) is None
    with DaemonLock(str(pidfile), str(tmp_path / "root")):
        assert pidfile.read_text() == str(os.getpid())


def test_stale_pidfile_with_any_content_taken_over(tmp_path: Path) -> None:
    pidfile = tmp_path / "d.pid"
    pidfile.write_text("1\n")  # pid 1 is alive, but holds no lock: stale
    with DaemonLock(str(pidfile), str(tmp_path / "root"), pid=4242):
        assert pidfile.read_text() == "4242"


def test_same_process_twice_refused_and_failure_releases_data_root(tmp_path: Path) -> None:
    pidfile, root = str(tmp_path / "d.pid"), str(tmp_path / "root")
    with DaemonLock(pidfile, root):
        with pytest.raises(AlreadyRunning):
            DaemonLock(pidfile, str(tmp_path / "root2")).acquire()
        # root2's lock must not stay held after the failed acquire
        with DaemonLock("", str(tmp_path / "root2")) as lock:
            assert lock.held


def test_no_pidfile_and_invalid_pid(tmp_path: Path) -> None:
    with DaemonLock("", str(tmp_path / "root")) as lock:
        assert lock.held
    with pytest.raises(errdefs.InvalidParameter, match=r"invalid PID \(0\)"):
        DaemonLock("", str(tmp_path / "root"), pid=0).acquire()
