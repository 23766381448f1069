"""`runc start` and `runc delete` without spawning runc, where runc's own work is trivial.

Rule (start): for a container in runc's `created` state, `runc start` (runc 1.1, libcontainer's
exec) opens `<state dir>/exec.fifo` for reading, reads the "0" that the waiting `runc init` writes
once it has a reader, removes the FIFO, and returns; `runc init` then execs the container's
program. Spawning the runc binary for that costs ~12 ms on the `docker run` hot path, so
`start` does the same here. Whenever anything differs from that happy path (no FIFO: not
`created`; the init process gone; no byte), it returns False WITHOUT having consumed anything
it should not have, and the caller runs `runc start`, which reports the state in runc's words.
Our bundles define no hooks, so runc would run no poststart hook either.

Rule (delete): for a container whose init process is gone (runc's `stopped`) and that had its
own PID namespace (so no process of it can be left), `runc delete` removes the container's
cgroup directories and its state directory. `delete` does the same from state.json; anything
else (init still alive, a shared PID namespace, Intel RDT, a cgroup that stays busy) returns
False before anything is removed, and the caller runs `runc delete`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from pathlib import Path

from pymoby.kernel import cgroupfs
from pymoby.runtime.procs import pid_alive, start_time

FIFO = "exec.fifo"
_POLL = 0.0005
_TIMEOUT = 10.0


async def start(state_dir: Path, init_pid: int) -> bool:
    """Start a `created` container through its exec FIFO; False means "use runc start"."""
    fifo = state_dir / FIFO
    try:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        deadline = time.monotonic() + _TIMEOUT
        while True:
            try:
                data = os.read(fd, 16)
            except BlockingIOError:  # the writer is there, its byte not yet
                data = None
            if data:
                break
            if not pid_alive(init_pid) or time.monotonic() > deadline:
                # it may have started, run and exited between the read and the check (runc
                # looks for that too): the byte is then still in the FIFO
                try:
                    data = os.read(fd, 16)
                except BlockingIOError:
                    data = None
                if data:
                    break
                return False
            await asyncio.sleep(_POLL)
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(fifo)
    return data == b"0"


def _removable(state: dict[str, object]) -> list[str] | None:
    """The cgroup directories to remove, or None when this is not the plain stopped case."""
    pid, start = state.get("init_process_pid"), state.get("init_process_start")
    if not isinstance(pid, int) or not isinstance(start, int):
        return None
    if start_time(pid) == start:
        return None  # still running
    config = state.get("config")
    spaces = config.get("namespaces") if isinstance(config, dict) else None
    if not isinstance(spaces, list) or not any(
        isinstance(n, dict) and n.get("type") == "NEWPID" and not n.get("path") for n in spaces
    ):
        return None
    if state.get("intel_rdt_path"):
        return None
    paths = state.get("cgroup_paths")
    if not isinstance(paths, dict):
        return None
    return sorted({str(p) for p in paths.values() if p}, key=len, reverse=True)


def _delete(state_dir: Path) -> bool:
    try:
        state = json.loads((state_dir / "state.json").read_bytes())
    except (OSError, ValueError):
        return False
    cgroups = _removable(state) if isinstance(state, dict) else None
    if cgroups is None:
        return False
    if not cgroupfs.remove_dirs(cgroups):
        return False
    shutil.rmtree(state_dir, ignore_errors=True)
    return True


async def delete(state_dir: Path) -> bool:
    """Delete a stopped container's runc state (see the rule); False means "use runc delete"."""
    return await asyncio.to_thread(_delete, state_dir)
