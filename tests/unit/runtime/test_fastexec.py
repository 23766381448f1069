"""FastExec's daemon side: which execs it takes, and the stdio session's end rules."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest

from pymoby.runtime.fastexec import FastAttach, FastExec, _pin


def _container(tmp_path: Path, config: dict[str, Any], pid: int | None = None) -> FastExec:
    """A bundle and a runc state whose init is this test process."""
    pid = pid or os.getpid()
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    start = int(data[data.rfind(b")") + 2 :].split()[19])
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "config.json").write_text(json.dumps(config))
    (tmp_path / "state" / "c1").mkdir(parents=True)
    state = {"init_process_pid": pid, "init_process_start": start, "cgroup_paths": {}}
    (tmp_path / "state" / "c1" / "state.json").write_text(json.dumps(state))
    return FastExec(tmp_path / "state")


PROCESS: dict[str, Any] = {"args": ["true"], "env": ["PATH=/bin"], "cwd": "/"}
LINUX = {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "network"}]}


def _plan(fx: FastExec, tmp_path: Path, process: dict[str, Any], tty: bool = False) -> Any:
    planned = fx._plan("c1", tmp_path / "bundle", process, tty, True)
    return planned[0] if planned is not None else None


def test_plain_containers_are_taken(tmp_path: Path) -> None:
    req = _plan(_container(tmp_path, {"linux": LINUX}), tmp_path, PROCESS)
    assert req is not None
    assert req.join_pid and req.namespaces == 0x00020000 | 0x40000000
    assert req.args == ["true"] and req.cgroup_dirs == []


@pytest.mark.parametrize(
    ("linux", "process"),
    [
        ({"namespaces": [{"type": "user"}]}, {}),
        ({"namespaces": [{"type": "time"}]}, {}),
        (LINUX | {"personality": {"domain": "LINUX32"}}, {}),
        (LINUX | {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/x"}}, {}),
        (LINUX, {"apparmorProfile": "docker-default"}),
        (LINUX, {"selinuxLabel": "system_u:system_r:container_t:s0"}),
        (LINUX, {"rlimits": [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]}),
    ],
)
def test_what_only_runc_does_goes_to_runc(
    tmp_path: Path, linux: dict[str, Any], process: dict[str, Any]
) -> None:
    fx = _container(tmp_path, {"linux": linux})
    assert _plan(fx, tmp_path, PROCESS | process) is None


def test_a_recycled_init_pid_is_not_entered(tmp_path: Path) -> None:
    fx = _container(tmp_path, {"linux": LINUX})
    planned = fx._plan("c1", tmp_path / "bundle", PROCESS, False, True)
    assert planned is not None
    ctr = planned[1]
    pidfd = _pin(ctr)
    assert pidfd is not None
    os.close(pidfd)
    recycled = dataclasses.replace(ctr, init_start=ctr.init_start + 1)
    assert _pin(recycled) is None


def test_detached_tty_execs_go_to_conmon(tmp_path: Path) -> None:
    fx = _container(tmp_path, {"linux": LINUX})
    planned = fx._plan("c1", tmp_path / "bundle", PROCESS, True, False)
    assert planned is None


async def test_output_ends_at_eof_of_every_pipe() -> None:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    session = FastAttach({1: out_r, 2: err_r}, -1, exited, tty=False)
    os.write(out_w, b"out")
    os.write(err_w, b"err")
    os.close(out_w)
    os.close(err_w)
    got = [await session.read(), await session.read(), await session.read()]
    assert got == [(1, b"out"), (2, b"err"), None]


async def test_output_ends_after_exit_once_drained() -> None:
    """A background child holding the pipe does not keep the stream open (conmon's rule)."""
    out_r, out_w = os.pipe()
    exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    session = FastAttach({1: out_r}, -1, exited, tty=False)
    os.write(out_w, b"last words")
    reader = asyncio.ensure_future(session.read())
    assert await reader == (1, b"last words")
    pending = asyncio.ensure_future(session.read())
    await asyncio.sleep(0.05)
    assert not pending.done()  # still running: wait for more
    exited.set_result(0)
    assert await asyncio.wait_for(pending, 2) is None
    os.close(out_w)


async def test_stdin_half_close() -> None:
    in_r, in_w = os.pipe()
    exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    session = FastAttach({}, in_w, exited, tty=False)
    await session.write(b"hello")
    session.close_stdin()
    assert os.read(in_r, 100) == b"hello"
    assert os.read(in_r, 100) == b""  # EOF for the process
    os.close(in_r)
