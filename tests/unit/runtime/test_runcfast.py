"""runcfast.start: the exec FIFO handshake of `runc start`, against a stand-in `runc init`."""

from __future__ import annotations

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
