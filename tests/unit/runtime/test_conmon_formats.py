"""conmon's and runc's formats without running them: k8s-file logs, runc errors and state,
inotify events, exit files and the watcher, resize messages, failure messages, cgroup paths."""

from __future__ import annotations

import asyncio
import os
import struct
import sys
from pathlib import Path

import pytest

from pymoby import errdefs
from pymoby.kernel import cgroupfs, inotify
from pymoby.kernel.cgroups import parse_mountinfo
from pymoby.runtime import attach, runc, shim
from pymoby.runtime.exits import ExitWatcher, read_exit_file
from pymoby.runtime.k8slog import LogJoiner, LogLine, parse_log, parse_record
from pymoby.runtime.procs import pid_alive, pid_is_conmon, read_pid, wait_pid_gone

T1 = "2026-11-27T18:10:43.824631952+00:00"
T2 = "2026-11-27T18:10:43.900000000+00:00"
T3 = "2026-11-27T18:10:44.000000001+00:00"

# -- k8s-file -------------------------------------------------------------------------------


def test_parse_record_full_and_partial() -> None:
    full = parse_record(f"{T1} stdout F hello\n".encode())
    assert full is not None
    assert (full.stream, full.partial, full.content) == ("stdout", False, b"hello\n")
    part = parse_record(f"{T1} stderr P abc".encode())
    assert part is not None and (part.partial, part.content) == (True, b"abc")
    empty = parse_record(f"{T1} stdout F ".encode())
    assert empty is not None and empty.content == b"\n"
    assert parse_record(b"garbage") is None
    assert parse_record(f"{T1} stdin F x".encode()) is None
    assert parse_record(f"{T1} stdout X x".encode()) is None


def test_partials_join_per_stream_and_keep_first_time() -> None:
    data = (
        f"{T1} stdout P aaa\n"
        f"{T2} stderr F err line\n"
        f"{T2} stdout P bbb\n"
        f"{T3} stdout F ccc\n"
        f"{T3} stdout F with spaces  and \r\n"
    ).encode()
    assert parse_log(data) == [
        LogLine(T2, "stderr", b"err line\n"),
        LogLine(T1, "stdout", b"aaabbbccc\n"),
        LogLine(T3, "stdout", b"with spaces  and \r\n"),
    ]


def test_trailing_partial_is_flushed_as_partial() -> None:
    lines = parse_log(f"{T1} stdout F one\n{T2} stdout P no newline\n".encode())
    assert lines[-1] == LogLine(T2, "stdout", b"no newline", partial=True)


def test_joiner_bounds_memory() -> None:
    j = LogJoiner(max_line=8)
    rec = parse_record(f"{T1} stdout P 12345".encode())
    assert rec is not None
    assert j.feed(rec) == []
    out = j.feed(rec)
    assert out == [LogLine(T1, "stdout", b"1234512345", partial=True)]
    j.feed(rec)
    j.reset()
    assert j.flush() == []


def test_log_times() -> None:
    line = parse_log(f"{T1} stdout F x\n".encode())[0]
    assert line.time_ns == 1795803043824631952
    assert runc.parse_rfc3339_ns("2026-11-27T20:10:43.824631952+02:00") == line.time_ns
    assert runc.parse_rfc3339_ns("2026-11-27T18:10:43Z") == 1795803043 * 10**9
    assert runc.parse_rfc3339_ns("nonsense") == 0


# -- runc -----------------------------------------------------------------------------------


def test_runc_error_messages_and_classes() -> None:
    js = b'{"level":"error","msg":"container does not exist","time":"2026-11-27T18:11:00Z"}\n'
    assert runc.error_message(js) == "container does not exist"
    text = b'time="2026-11-27T18:11:00Z" level=error msg="exec: \\"x\\": not found"\n'
    assert runc.error_message(text) == 'exec: "x": not found'
    assert runc.error_message(b"plain failure\n") == "plain failure"
    assert isinstance(runc.to_error("container does not exist", "state"), errdefs.NotFound)
    for msg in ("container not running", "cannot start an already running container",
                "cannot start a container that has stopped", "container not paused"):  # fmt: skip
        assert isinstance(runc.to_error(msg, "x"), runc.RuncConflict), msg
    err = runc.to_error("", "kill")
    assert isinstance(err, runc.RuncError) and err.message == "runc kill failed"


def test_runc_state_from_json() -> None:
    doc = {
        "ociVersion": "1.0.2-dev",
        "id": "c1",
        "pid": 16922,
        "status": "created",
        "bundle": "/b",
        "rootfs": "/b/rootfs",
        "created": "2026-11-27T18:00:40.640280069Z",
        "owner": "",
    }
    st = runc.RuncState.from_json(doc)
    assert (st.id, st.pid, st.status, st.bundle, st.annotations) == ("c1", 16922, "created",
                                                                     "/b", {})  # fmt: skip
    assert st.created_ns == 1795802440640280069


async def test_runc_errors_from_the_binary(tmp_path: Path) -> None:
    r = runc.Runc("/usr/sbin/runc", tmp_path / "state")
    with pytest.raises(runc.RuncNotFound) as err:
        await r.state("nope")
    assert err.value.message == "container does not exist"
    assert await r.list() == []
    await r.delete("nope", force=True)  # a forced delete of nothing is fine
    missing = runc.Runc(str(tmp_path / "no-runc"), tmp_path)
    with pytest.raises(runc.RuncError):
        await missing.state("x")


# -- failure messages -----------------------------------------------------------------------


def test_failure_message_prefers_runc_json_log(tmp_path: Path) -> None:
    log = tmp_path / "oci-log"
    sync = {"data": -1, "message": 'time="x" level=error msg="from stderr"\n'}
    assert shim.failure_message(sync, log, "conmon said") == "from stderr"
    assert shim.failure_message(None, log, "conmon said") == "conmon said"
    assert "without reporting" in shim.failure_message(None, log, "")
    log.write_text(
        '{"level":"warning","msg":"meh"}\n{"level":"error","msg":"runc create failed: boom"}\n'
    )
    assert shim.failure_message(sync, log, "x") == "runc create failed: boom"


def test_conmon_env_drops_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("_OCI_SYNCPIPE", "99")
    env = shim.conmon_env({"_OCI_SYNCPIPE": 5})
    assert "NOTIFY_SOCKET" not in env and env["_OCI_SYNCPIPE"] == "5"


# -- resize ---------------------------------------------------------------------------------


def test_resize_message_is_one_conmon_read() -> None:
    msg = attach.resize_message(24, 80)
    assert len(msg) == 199 and msg.endswith(b"\n") and msg.split() == [b"24", b"80"]
    with pytest.raises(errdefs.InvalidParameter):
        attach.resize_message(-1, 80)


async def test_resize_without_conmon(tmp_path: Path) -> None:
    with pytest.raises(errdefs.Conflict):
        await attach.resize(tmp_path, 24, 80)  # no FIFO
    os.mkfifo(tmp_path / "winsz")
    with pytest.raises(errdefs.Conflict):
        await attach.resize(tmp_path, 24, 80)  # a FIFO nobody reads


async def test_attach_to_missing_socket(tmp_path: Path) -> None:
    with pytest.raises(errdefs.NotFound):
        await attach.AttachSession.connect(tmp_path / "attach")
    long_dir = tmp_path / ("d" * 100)
    long_dir.mkdir()
    with pytest.raises(errdefs.NotFound):
        await attach.AttachSession.connect(long_dir / "attach")


# -- inotify and exit files -----------------------------------------------------------------


def test_parse_inotify_events() -> None:
    raw = struct.pack("iIII", 1, inotify.IN_MOVED_TO, 7, 16) + b"abc".ljust(16, b"\0")
    raw += struct.pack("iIII", 1, inotify.IN_Q_OVERFLOW, 0, 0)
    events = inotify.parse_events(raw)
    assert events[0] == inotify.Event(1, inotify.IN_MOVED_TO, 7, "abc")
    assert events[1].overflow and not events[0].overflow


def test_inotify_sees_rename(tmp_path: Path) -> None:
    with inotify.Inotify() as ino:
        ino.add_watch(tmp_path, inotify.IN_MOVED_TO)
        assert ino.read_events() == []
        (tmp_path / "c1.tmp").write_text("0")
        os.rename(tmp_path / "c1.tmp", tmp_path / "c1")
        assert [e.name for e in ino.read_events()] == ["c1"]
        with pytest.raises(OSError):
            ino.add_watch(tmp_path / "missing", inotify.IN_MOVED_TO)
    assert ino.closed


def test_read_exit_file(tmp_path: Path) -> None:
    (tmp_path / "c1").write_text("137")
    (tmp_path / "oom").touch()
    st = read_exit_file(tmp_path / "c1", "c1", tmp_path / "oom")
    assert st is not None and (st.exit_code, st.oom) == (137, True)
    assert st.finished_at_ns == (tmp_path / "c1").stat().st_mtime_ns
    (tmp_path / "c2").write_text("")
    assert read_exit_file(tmp_path / "c2", "c2", None) is None
    assert read_exit_file(tmp_path / "c3", "c3", None) is None


def _write_exit(d: Path, cid: str, code: int) -> None:
    tmp = d / f"{cid}.AB12CD"  # g_file_set_contents: a temporary, renamed into place
    tmp.write_text(str(code))
    os.rename(tmp, d / cid)


async def test_exit_watcher(tmp_path: Path) -> None:
    d = tmp_path / "exits"
    seen: asyncio.Queue[tuple[str, int, bool]] = asyncio.Queue()

    async def on_exit(cid: str, code: int, oom: bool, finished: int) -> None:
        assert finished > 0
        await seen.put((cid, code, oom))

    (tmp_path / "oom-c2").touch()
    w = ExitWatcher(d, on_exit, oom_marker=lambda cid: tmp_path / f"oom-{cid}")
    await w.start()
    try:
        _write_exit(d, "c1", 3)
        assert await asyncio.wait_for(seen.get(), 5) == ("c1", 3, False)
        _write_exit(d, "c2", 137)
        assert await asyncio.wait_for(seen.get(), 5) == ("c2", 137, True)
        # the same file again is not a new exit; a new file (next run) is
        assert await w.check("c1") is not None
        _write_exit(d, "c1", 0)
        assert await asyncio.wait_for(seen.get(), 5) == ("c1", 0, False)
        assert seen.empty()
        w.forget("c1")
        await w.check("c1")
        assert seen.get_nowait() == ("c1", 0, False)
    finally:
        await w.close()


# -- processes and cgroups ------------------------------------------------------------------


async def test_pid_helpers(tmp_path: Path) -> None:
    (tmp_path / "pid").write_text("garbage")
    assert read_pid(tmp_path / "pid") is None
    (tmp_path / "pid").write_text(f"{os.getpid()}\n")
    assert read_pid(tmp_path / "pid") == os.getpid()
    assert pid_alive(os.getpid())
    assert not pid_is_conmon(os.getpid(), "x")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(0.2)"
    )
    try:
        assert not await wait_pid_gone(proc.pid, 0.01)
        assert await wait_pid_gone(proc.pid, 5)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    assert not pid_alive(proc.pid)


MOUNTINFO = """\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
35 30 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
"""
PROC_CGROUP = "5:memory:/daemon\n4:cpu,cpuacct:/\n1:name=systemd:/x\n3:pids:/\n0::/daemon\n"


def test_cgroup_hierarchies_and_targets() -> None:
    h = cgroupfs.hierarchies(PROC_CGROUP, parse_mountinfo(MOUNTINFO))
    assert h == [
        ("memory", "/sys/fs/cgroup/memory", "/daemon"),
        ("cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct", "/"),
        ("name=systemd", "/sys/fs/cgroup/systemd", "/x"),
        ("", "/sys/fs/cgroup/unified", "/daemon"),
    ]
    assert cgroupfs._target("/m", "/daemon", "/pymoby-conmon") == "/m/pymoby-conmon"
    assert cgroupfs._target("/m", "/daemon", "conmon") == "/m/daemon/conmon"


def test_cgroup_place_reports_instead_of_raising(tmp_path: Path) -> None:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text(PROC_CGROUP)
    (tmp_path / "proc/self/mountinfo").write_text(MOUNTINFO)
    memory = tmp_path / "sys/fs/cgroup/memory/daemon"
    memory.mkdir(parents=True)
    warnings = cgroupfs.place(1234, "conmon", root=str(tmp_path))
    assert (memory / "conmon" / "cgroup.procs").read_text() == "1234"
    assert len(warnings) == 3  # the other hierarchies are not there in this fake tree
    assert cgroupfs.procs("conmon", root=str(tmp_path)) == {1234}
    (tmp_path / "sys/fs/cgroup/systemd").mkdir(parents=True)
    assert len(cgroupfs.place(99, "/abs", root=str(tmp_path))) == 2
    assert (tmp_path / "sys/fs/cgroup/memory/abs/cgroup.procs").read_text() == "99"
    assert (tmp_path / "sys/fs/cgroup/systemd/abs/cgroup.procs").read_text() == "99"
    assert cgroupfs.remove("/abs", root=str(tmp_path)) != []  # fake dirs hold files: EBUSY-like
    assert cgroupfs.place(1, "x", root=str(tmp_path / "nowhere")) != []
