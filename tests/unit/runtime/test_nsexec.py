"""The exec zygote's pure parts: Go's LookPath and environment, exit codes, descriptor passing,
and one whole exec into a namespace-less "container" (this process's own namespaces)."""

from __future__ import annotations

import os
import select
import signal
import socket
import stat
from pathlib import Path

import msgspec
import pytest

from pymoby.kernel import procattr
from pymoby.runtime import nsexec
from pymoby.runtime.nsexec import ExecFailed, ExecRequest, go_environment, look_path


def _exe(path: Path, mode: int = 0o755) -> Path:
    path.write_text("#!/bin/sh\n")
    path.chmod(mode)
    return path


def test_look_path_searches_path_in_order(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _exe(tmp_path / "b" / "tool")
    _exe(tmp_path / "a" / "tool", 0o644)  # not executable: skipped
    env = {"PATH": f"{tmp_path}/a:{tmp_path}/b"}
    assert look_path("tool", env) == f"{tmp_path}/b/tool"


def test_look_path_errors_are_go_texts(tmp_path: Path) -> None:
    with pytest.raises(ExecFailed, match=r'^exec: "nope": executable file not found in \$PATH$'):
        look_path("nope", {"PATH": str(tmp_path)})
    with pytest.raises(ExecFailed, match=r'^exec: "nope": executable file not found in \$PATH$'):
        look_path("nope", {})
    with pytest.raises(ExecFailed) as e:
        look_path("/nope/x", {})
    assert str(e.value) == 'exec: "/nope/x": stat /nope/x: no such file or directory'
    with pytest.raises(ExecFailed) as e:
        look_path(str(tmp_path), {})
    assert str(e.value) == f'exec: "{tmp_path}": permission denied'
    _exe(tmp_path / "rel")
    os.chdir(tmp_path)
    with pytest.raises(ExecFailed, match="cannot run executable found relative to current"):
        look_path("rel", {"PATH": ":/nonexistent"})
    assert look_path("./rel", {}) == "./rel"


def test_go_environment_keeps_first_place_and_last_value() -> None:
    env = go_environment(["A=1", "B=2", "A=3", "C="])
    assert list(env.items()) == [("A", "3"), ("B", "2"), ("C", "")]
    with pytest.raises(ExecFailed, match=r'^invalid environment variable: "NOEQ"$'):
        go_environment(["NOEQ"])
    with pytest.raises(ExecFailed, match="name can't be empty"):
        go_environment(["=x"])


def test_exit_codes_are_conmons() -> None:
    assert nsexec._exit_code(3 << 8) == 3
    assert nsexec._exit_code(signal.SIGKILL) == 137


def test_strerror_is_gos() -> None:
    assert procattr.go_strerror(2) == "no such file or directory"
    assert procattr.go_strerror(8) == "exec format error"


def test_received_descriptors_are_close_on_exec() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r, w = os.pipe()
    try:
        socket.send_fds(a, [b"x"], [r])
        data, fds = nsexec.recv_fds(b, 100, 4)
        assert data == b"x" and len(fds) == 1
        assert not os.get_inheritable(fds[0])
        assert stat.S_ISFIFO(os.fstat(fds[0]).st_mode)
        os.close(fds[0])
    finally:
        for s in (a, b):
            s.close()
        os.close(r)
        os.close(w)


def _own_caps() -> list[int]:
    """The capabilities this (root) test process holds: what a child can keep."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapPrm:"):
            bits = int(line.split()[1], 16)
            return [i for i in range(64) if bits >> i & 1]
    raise AssertionError("no CapPrm in /proc/self/status")


def _request(**kw: object) -> ExecRequest:
    caps = _own_caps()
    base: dict[str, object] = {
        "container_id": "unit",
        "args": ["sh", "-c", "echo $HOME $A; echo err >&2; exit 5"],
        "env": ["PATH=/usr/bin:/bin", "A=1"],
        "cwd": "/",
        "uid": 0,
        "gid": 0,
        "additional_gids": [],
        "bounding": caps,
        "effective": caps,
        "inheritable": [],
        "permitted": caps,
        "ambient": [],
        "no_new_privileges": False,
        "rlimits": [],
        "oom_score_adj": None,
        "namespaces": 0,
        "join_pid": False,
        "cgroup_dirs": [],
        "cgroup_fallback": None,
        "terminal": False,
        "console": None,
        "seccomp": b"",
        "seccomp_flags": 0,
        "cap_last": int(Path("/proc/sys/kernel/cap_last_cap").read_text()),
    }
    base.update(kw)
    return msgspec.convert(base, ExecRequest)


def _serve_one(
    req: ExecRequest, *, ack: bool = True
) -> tuple[list[dict[str, object]], bytes, bytes, list[object]]:
    """Run the zygote in a child, send one request, collect ctl messages, output, report."""
    zyg, zyg_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:  # the zygote
        zyg.close()
        try:
            nsexec.serve(zyg_child)
        finally:
            os._exit(0)
    zyg_child.close()
    ctl, ctl_c = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    rep, rep_c = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    null = os.open("/dev/null", os.O_RDWR)
    pidfd = os.pidfd_open(os.getpid())
    sent = [ctl_c.fileno(), rep_c.fileno(), pidfd, null, out_w, err_w]
    socket.send_fds(zyg, [msgspec.msgpack.encode(req)], sent)
    for s in (ctl_c, rep_c):
        s.close()
    for fd in (pidfd, null, out_w, err_w):
        os.close(fd)
    msgs = []
    while True:
        data, fds = nsexec.recv_fds(ctl, 65536, 4)
        if not data:
            break
        msgs.append(msgspec.msgpack.decode(data))
        if "pid" in msgs[-1]:
            assert len(fds) == 1  # the process's pidfd
            if not ack:  # the daemon leaves: the process must never run, and be gone
                ctl.close()
                assert select.select([fds[0]], [], [], 10)[0] == [fds[0]]
                os.close(fds[0])
                break
            os.close(fds[0])
            ctl.send(b"\1")  # the daemon's go-ahead
    reports = []
    while data := rep.recv(65536):
        reports.append(msgspec.msgpack.decode(data))
    out, err = os.read(out_r, 65536), os.read(err_r, 65536)
    zyg.close()
    os.waitpid(pid, 0)
    for fd in (out_r, err_r):
        os.close(fd)
    if ack:
        ctl.close()
    rep.close()
    return msgs, out, err, reports


def test_a_whole_exec_through_the_zygote() -> None:
    msgs, out, err, reports = _serve_one(_request())
    assert [list(m) for m in msgs] == [["pid"], ["exit"]]
    assert msgs[1] == {"exit": 5}
    assert (out, err, reports) == (b"/root 1\n", b"err\n", [])


def test_a_failed_exec_reports_runcs_text() -> None:
    _, _, _, reports = _serve_one(_request(args=["nope"]))
    assert reports == [{"error": 'exec: "nope": executable file not found in $PATH'}]
    _, _, _, reports = _serve_one(_request(cwd="/nonexistent"))
    assert reports == [
        {"error": 'chdir to cwd ("/nonexistent") set in config.json failed: '
                  "no such file or directory"}
    ]  # fmt: skip


def test_nothing_runs_without_the_daemons_go_ahead() -> None:
    msgs, out, err, reports = _serve_one(_request(), ack=False)
    assert [list(m) for m in msgs] == [["pid"]]
    assert (out, err, reports) == (b"", b"", [])
