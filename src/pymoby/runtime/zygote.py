"""The daemon's side of the zygote (runtime/nsexec): start it, place it, hand it requests.

Rule: one zygote per Runtime, started with the daemon, living in conmon's cgroup (`cgroup`),
so that what it forks is born there: exec processes (runtime/fastexec) and conmon itself
(`spawn`: no cgroup move of conmon, which on cgroup v1 costs an RCU grace period of 5-15 ms
per container start). A request is one SOCK_SEQPACKET message with its descriptors; the zygote
is restarted once when it has gone away. `in_group` is False when the zygote could not be
placed: callers then spawn conmon themselves and move it.

`spawn(argv, env, cwd, fds)` is subprocess.Popen's job for conmon: new session, stdin
/dev/null, stdout and stderr one pipe (`Spawned.finish` reads it), `fds` at 3, 4, 5, ...,
nothing else inherited, signals at their defaults. The zygote's first child waits for the
program and reports its pid (with a pidfd) and its exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec

from pymoby.kernel import cgroupfs
from pymoby.runtime.nsexec import SpawnRequest, recv_fds
from pymoby.runtime.procs import wait_readable, wait_writable

log = logging.getLogger(__name__)

_CHUNK = 65536


class Zygote:
    """One zygote process and the socket to it (module docstring)."""

    def __init__(self, label: Path, *, cgroup: str | None = None) -> None:
        self.label = Path(label)  # on its command line, to tell whose zygote it is
        self.cgroup = cgroup
        self.placed = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._lock = asyncio.Lock()

    @property
    def in_group(self) -> bool:
        """Running, and placed in `cgroup` without a warning."""
        return self._sock is not None and self.placed

    def _start(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            src = str(Path(__file__).resolve().parents[2])
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": src}
            argv = [sys.executable, "-P", "-s", "-m", "pymoby.runtime.nsexec"]
            self._proc = subprocess.Popen(
                [*argv, str(child.fileno()), str(self.label)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(child.fileno(),),
                close_fds=True,
                env=env,
                cwd="/",
                start_new_session=True,
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        parent.setblocking(False)
        self._sock = parent
        self.placed = False
        if self.cgroup:
            warnings = cgroupfs.place(self._proc.pid, self.cgroup)
            for warning in warnings:
                log.warning("zygote cgroup %s: %s", self.cgroup, warning)
            self.placed = not warnings

    async def start(self) -> None:
        async with self._lock:
            if self._sock is None:
                await asyncio.to_thread(self._start)

    async def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        proc, self._proc = self._proc, None
        if proc is not None:
            await asyncio.to_thread(_reap, proc)

    async def request(self, data: bytes, fds: list[int]) -> bool:
        """Hand one request over (the zygote restarted once if it is gone); False when it
        cannot take it (too big for one message, or no zygote)."""
        for attempt in (0, 1):
            await self.start()
            sock = self._sock
            assert sock is not None
            try:
                while True:
                    try:
                        socket.send_fds(sock, [data], fds)
                        return True
                    except BlockingIOError:
                        await wait_writable(sock.fileno(), None)
            except OSError as exc:
                if attempt or exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                    log.warning("the zygote cannot take this request: %s", exc)
                    return False
                log.warning("the zygote is gone (%s); starting it again", exc)
                await self.close()
        return False

    async def spawn(self, argv: list[str], env: list[str], cwd: Path, fds: list[int]) -> Spawned:
        """Run a program from the zygote (module docstring); `fds` become 3, 4, ... there.
        Raises OSError when the zygote cannot take it."""
        ctl, ctl_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        targets = list(range(3, 3 + len(fds)))
        req = SpawnRequest(argv=argv, env=env, cwd=str(cwd), targets=targets)
        try:
            data = msgspec.msgpack.encode(req)
            sent = await self.request(data, [ctl_child.fileno(), out_w, *fds])
        except BaseException:
            ctl.close()
            os.close(out_r)
            raise
        finally:
            ctl_child.close()
            os.close(out_w)
        if not sent:
            ctl.close()
            os.close(out_r)
            raise OSError(errno.EAGAIN, "the zygote did not take the request")
        spawned = Spawned(ctl, out_r)
        try:
            await spawned.started()
        except BaseException:
            spawned.close()
            raise
        return spawned


async def recv_message(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """One message (and its descriptors) from a zygote child; (None, []) at EOF."""
    sock.setblocking(False)
    while True:
        try:
            data, fds = recv_fds(sock, _CHUNK, 4)
        except BlockingIOError:
            await wait_readable(sock.fileno(), None)
            continue
        except ConnectionResetError:
            return None, []
        if not data:
            return None, fds
        try:
            doc = msgspec.msgpack.decode(data)
        except msgspec.DecodeError:
            doc = {"error": "unreadable message from the zygote"}
        return (doc if isinstance(doc, dict) else {}), fds


class Spawned:
    """A program the zygote started: its pid, output and exit status (Popen's part)."""

    def __init__(self, ctl: socket.socket, out: int) -> None:
        self._ctl = ctl
        self._out = out
        self.pid = 0
        self._pidfd = -1
        self.returncode: int | None = None

    async def started(self) -> None:
        doc, fds = await recv_message(self._ctl)
        if fds:
            self._pidfd = fds.pop(0)
        for fd in fds:
            os.close(fd)
        if doc is None or not isinstance(doc.get("pid"), int):
            raise OSError(errno.ECHILD, str((doc or {}).get("error") or "the zygote's child died"))
        self.pid = int(doc["pid"])

    async def finish(self, seconds: float) -> bytes:
        """All it printed, once it has exited (`returncode`); TimeoutError after `seconds`."""
        os.set_blocking(self._out, False)
        chunks: list[bytes] = []
        async with asyncio.timeout(seconds):
            while True:
                try:
                    data = os.read(self._out, _CHUNK)
                except BlockingIOError:
                    await wait_readable(self._out, None)
                    continue
                if not data:
                    break
                chunks.append(data)
            doc, fds = await recv_message(self._ctl)
        for fd in fds:
            os.close(fd)
        code = (doc or {}).get("exit")
        self.returncode = code if isinstance(code, int) else -1
        return b"".join(chunks)

    def kill(self) -> None:
        if self._pidfd >= 0 and self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    def close(self) -> None:
        self._ctl.close()
        for fd in (self._out, self._pidfd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._out = self._pidfd = -1


def _reap(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
