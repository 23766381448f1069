"""Launching one conmon: its pipes, the start handshake, and reading its verdict.

Rule: this module speaks conmon 2.1's launch protocol (what podman's libpod does), and nothing
else; the Runtime decides the arguments.

- Three SOCK_SEQPACKET socketpairs (one message per write). The child ends are inherited and
  named in the environment: `_OCI_SYNCPIPE` (conmon -> us: JSON lines), `_OCI_STARTPIPE`
  (us -> conmon: one byte = go on), `_OCI_ATTACHPIPE` (exec with --exec-attach only).
- conmon blocks on its first start-pipe read before it forks anything, so the caller can move
  it into another cgroup first (`kernel.cgroupfs.place`), then sends the byte. Without --sync
  conmon then double-forks: the process we started writes the `-P` pidfile, exits 0, and the
  daemonized monitor (own session, stdio on /dev/null) carries on. A non-zero exit of the
  first process means conmon refused its arguments (its text is on our stdout/stderr pipe).
- With --api-version 1 every sync message is `{"data": N}` or `{"data": N, "message": "..."}`:
  the container (or exec) pid when N > 0, a runtime failure when N < 0 with the runtime's
  stderr as message. An exec session sends a second message with the exit code when the
  process ends. For exec with --exec-attach conmon first writes `{"data": 0}` on the attach
  pipe once its attach socket listens, then its runtime child waits for a *second* start byte
  before running `runc exec`, so no output is lost.
- The runtime's own message is best read from runc's JSON log (`--log <file> --log-format
  json`, passed as --runtime-arg): its last error line. The sync message (runc's stderr, which
  may be a logrus text line) and conmon's stderr are the fallbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymoby import errdefs
from pymoby.kernel import cgroupfs
from pymoby.runtime.runc import json_error_message, logrus_message

log = logging.getLogger(__name__)

LAUNCH_TIMEOUT = 30.0
_DROP_ENV = ("NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


class ShimError(errdefs.System):
    """conmon or the OCI runtime under it failed; `message` is the runtime's own text."""


def _pair() -> tuple[socket.socket, socket.socket]:
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    parent.setblocking(False)
    return parent, child


@dataclass
class Launched:
    """The parent ends of a running conmon's pipes."""

    sync: socket.socket
    start: socket.socket
    attach: socket.socket | None = None
    output: str = ""  # what conmon printed before it daemonized
    warnings: list[str] = field(default_factory=list)

    def close(self, *, keep_sync: bool = False) -> None:
        """Close our pipe ends (the sync pipe stays open with `keep_sync`: an exec's exit code
        arrives there)."""
        for sock in (None if keep_sync else self.sync, self.start, self.attach):
            if sock is not None:
                sock.close()


def conmon_env(fds: dict[str, int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV and not k.startswith("_OCI_")}
    env.update({name: str(fd) for name, fd in fds.items()})
    return env


def _spawn(conmon: str, args: list[str], fds: dict[str, int], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [conmon, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        pass_fds=tuple(fds.values()),
        close_fds=True,
        env=conmon_env(fds),
        cwd=cwd,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen[bytes], seconds: float) -> bytes:
    """Wait for conmon's first process (it exits once the monitor is daemonized)."""
    try:
        out, _ = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise ShimError(f"conmon did not start within {seconds:g}s") from None
    return out


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):
        proc.kill()
    proc.communicate()


async def launch(
    conmon: str,
    args: list[str],
    *,
    cwd: Path,
    cgroup: str | None,
    attach_pipe: bool = False,
    seconds: float = LAUNCH_TIMEOUT,
    ready: Coroutine[Any, Any, None] | None = None,
) -> Launched:
    """Start conmon, place it in `cgroup`, let it go, and wait for its first process to exit.

    `ready` is awaited between the placement and the go (see Runtime.create); it failing or
    the call being cancelled kills conmon.

    Raises ShimError when conmon itself fails (the runtime's verdict comes later, on the sync
    pipe: see `read_message`). conmon is spawned with subprocess.Popen in a worker thread, not
    the event loop's subprocess support: uvloop leaks the child's stdio descriptors under other
    numbers into the child, and the daemonized conmon would hold them (and our pipe) forever.
    """
    sync, sync_child = _pair()
    start, start_child = _pair()
    attach, attach_child = _pair() if attach_pipe else (None, None)
    fds = {"_OCI_SYNCPIPE": sync_child.fileno(), "_OCI_STARTPIPE": start_child.fileno()}
    if attach_child is not None:
        fds["_OCI_ATTACHPIPE"] = attach_child.fileno()
    launched = Launched(sync, start, attach)
    try:
        try:
            proc = await asyncio.to_thread(_spawn, conmon, args, fds, cwd)
        finally:
            for child in (sync_child, start_child, attach_child):
                if child is not None:
                    child.close()
        try:
            if cgroup:
                launched.warnings = await asyncio.to_thread(cgroupfs.place, proc.pid, cgroup)
                for w in launched.warnings:
                    log.warning("conmon cgroup %s: %s", cgroup, w)
            if ready is not None:
                await ready
                ready = None
            with contextlib.suppress(OSError):
                start.send(b"\0")
            out = await asyncio.to_thread(_finish, proc, seconds)
        except BaseException:
            await asyncio.shield(asyncio.to_thread(_kill, proc))
            raise
        launched.output = out.decode("utf-8", "replace").strip()
        if proc.returncode != 0:
            raise ShimError(launched.output or f"conmon exited with status {proc.returncode}")
    except BaseException:
        launched.close()
        raise
    finally:
        if ready is not None:
            ready.close()  # never awaited: the launch failed first
    return launched


async def read_message(sock: socket.socket, seconds: float) -> dict[str, Any] | None:
    """The next JSON message conmon wrote on a pipe; None when it closed the pipe first."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(seconds if seconds != float("inf") else None):
            raw = await loop.sock_recv(sock, 65536)
    except ConnectionResetError:
        return None
    if not raw:
        return None
    try:
        doc = json.loads(raw.split(b"\n", 1)[0])
    except ValueError:
        return {"data": -1, "message": raw.decode("utf-8", "replace")}
    return doc if isinstance(doc, dict) else None


def send_start(sock: socket.socket) -> None:
    """The second start byte of an exec with --exec-attach (run the runtime now)."""
    with contextlib.suppress(OSError):
        sock.send(b"\0")


def _oci_log_message(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return json_error_message(data)


def failure_message(message: dict[str, Any] | None, oci_log: Path, output: str) -> str:
    """Best text for a failed create/exec: runc's JSON log, the sync message, conmon's output."""
    text = _oci_log_message(oci_log)
    if not text and message is not None:
        text = logrus_message(str(message.get("message", "")))
    if not text:
        text = output
    return text.strip() or "conmon exited without reporting the container's pid"
