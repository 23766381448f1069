"""runcfast.start: the exec FIFO handshake of `runc start`, against a stand-in `runc init`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pymoby.runtime import runcfast

# What runc init does at the end of `runc create`: open the FIFO for writing (blocking until a
# reader comes), write "0", then exec the user's program.
_INIT = "import os,sys; fd=os.open(sys.argv[1], os.O_WRONLY); os.write(fd, b'0'); os.close(fd)"


async def test_start_reads_the_fifo_and_removes_it(tmp_path: Path) -> None:
    fifo = tmp_path / "exec.fifo"
    os.mkfifo(fifo, 0o622)
    init = subprocess.Popen([sys.executable, "-c", _INIT, str(fifo)])  # noqa: ASYNC220
    try:
        assert await runcfast.start(tmp_path, init.pid) is True
        assert init.wait(10) == 0  # the "init" got its reader and went on
    finally:
        init.kill()
    assert not fifo.exists()


async def test_no_fifo_means_not_created(tmp_path: Path) -> None:
    assert await runcfast.start(tmp_path, os.getpid()) is False


async def test_a_dead_init_is_left_to_runc(tmp_path: Path) -> None:
    fifo = tmp_path / "exec.fifo"
    os.mkfifo(fifo, 0o622)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])  # noqa: ASYNC220
    gone.wait()
    assert await runcfast.start(tmp_path, gone.pid) is False
    assert fifo.exists()  # untouched: runc start reports the state in its own words


def _state(tmp: Path, pid: int, start: int, *, pid_ns: str = "") -> tuple[Path, list[Path]]:
    state_dir = tmp / "runc" / "c1"
    state_dir.mkdir(parents=True)
    groups = [tmp / "cg" / "memory" / "c1", tmp / "cg" / "pids" / "c1"]
    for g in groups:
        g.mkdir(parents=True)
    doc = {
        "init_process_pid": pid,
        "init_process_start": start,
        "config": {
            "namespaces": [{"type": "NEWNS", "path": ""}, {"type": "NEWPID", "path": pid_ns}]
        },
        "cgroup_paths": {"memory": str(groups[0]), "pids": str(groups[1]), "": ""},
        "intel_rdt_path": "",
    }
    (state_dir / "state.json").write_text(json.dumps(doc))
    return state_dir, groups


async def test_delete_of_a_stopped_container_removes_cgroups_and_state(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])  # noqa: ASYNC220
    gone.wait()
    state_dir, groups = _state(tmp_path, gone.pid, 12345)
    assert await runcfast.delete(state_dir) is True
    assert not state_dir.exists() and not any(g.exists() for g in groups)


async def test_delete_leaves_live_or_shared_pid_containers_to_runc(tmp_path: Path) -> None:
    me = os.getpid()
    start = int(Path(f"/proc/{me}/stat").read_text().rsplit(")", 1)[1].split()[19])
    state_dir, groups = _state(tmp_path, me, start)  # "init" still running: this process
    assert await runcfast.delete(state_dir) is False
    assert state_dir.exists() and all(g.exists() for g in groups)
    shared = tmp_path / "other"
    shared.mkdir()
    state2, groups2 = _state(shared, 999999, 1, pid_ns="/proc/1/ns/pid")
    assert await runcfast.delete(state2) is False
    assert state2.exists() and all(g.exists() for g in groups2)
