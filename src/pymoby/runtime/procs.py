"""Process checks for conmon monitors we did not start in this daemon's lifetime.

Rule: a pid from a pidfile is trusted only after /proc says it is a live (not zombie) conmon
whose command line names the expected id, so a recycled pid is never signalled or waited on
by mistake. Waiting uses a pidfd (readable when the process exits, also for non-children and
zombies) registered on the event loop; where pidfd_open is missing it polls /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

_POLL = 0.02


def read_pid(path: Path) -> int | None:
    """The integer in a pidfile; None when missing or garbage. Blocking."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    try:
        pid = int(text)
    except ValueError:
        return None
    return pid if pid > 0 else None


def pid_alive(pid: int) -> bool:
    """True for a live process; a zombie counts as gone. Blocking (reads /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    # "pid (comm) S ...": the state follows the last ')'.
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X", b"x")


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks); None when gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            rest = f.read().rsplit(b")", 1)[-1].split()
    except OSError:
        return None
    if not rest or rest[0] in (b"Z", b"X"):
        return None
    return int(rest[19])


def pid_is_conmon(pid: int, ident: str) -> bool:
    """True when `pid` is a live conmon with `ident` (container or exec id) in its argv."""
    if pid <= 0 or not pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    if not argv or not os.path.basename(argv[0]).startswith(b"conmon"):
        return False
    return os.fsencode(ident) in argv


async def wait_pid_gone(pid: int, seconds: float) -> bool:
    """Wait until `pid` has exited (or is a zombie); False on timeout."""
    if pid <= 0:
        return True
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except (AttributeError, OSError):
        return await _poll_gone(pid, seconds)
    try:
        return await wait_readable(fd, seconds) or not await asyncio.to_thread(pid_alive, pid)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


async def wait_readable(fd: int, seconds: float | None) -> bool:
    """Wait until `fd` is readable (a pidfd: its process exited); False on timeout (None:
    no timeout)."""
    return await _wait_fd(fd, seconds, write=False)


async def wait_writable(fd: int, seconds: float | None) -> bool:
    """Wait until `fd` takes a write; False on timeout (None: no timeout)."""
    return await _wait_fd(fd, seconds, write=True)


async def _wait_fd(fd: int, seconds: float | None, *, write: bool) -> bool:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not done.done():
            done.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, ready)
    try:
        async with asyncio.timeout(seconds):
            await done
        return True
    except TimeoutError:
        return False
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


async def _poll_gone(pid: int, seconds: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while await asyncio.to_thread(pid_alive, pid):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(_POLL)
    return True
