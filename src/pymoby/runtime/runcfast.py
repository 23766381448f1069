"""`runc start` without spawning runc, where runc's own work is one FIFO read.

Rule: for a container in runc's `created` state, `runc start` (runc 1.1, libcontainer's exec)
opens `<state dir>/exec.fifo` for reading, reads the "0" that the waiting `runc init` writes
once it has a reader, removes the FIFO, and returns; `runc init` then execs the container's
program. Spawning the runc binary for that costs ~12 ms on the `docker run` hot path, so
`start` does the same here. Whenever anything differs from that happy path (no FIFO: not
`created`; the init process gone; no byte), it returns False WITHOUT having consumed anything
it should not have, and the caller runs `runc start`, which reports the state in runc's words.
Our bundles define no hooks, so runc would run no poststart hook either.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

FIFO = "exec.fifo"
_POLL = 0.0005
_TIMEOUT = 10.0


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    state = stat.rsplit(b")", 1)[-1].split()[:1]
    return state not in ([b"Z"], [b"X"])


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
            if not _alive(init_pid) or time.monotonic() > deadline:
                return False
            await asyncio.sleep(_POLL)
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(fifo)
    return data == b"0"
