"""Exec without conmon and runc: processes forked into the container by the exec zygote.

Rule: `FastExec.exec` takes an exec only when it reproduces `runc exec` exactly (see
runtime/nsexec for the steps); anything else returns None and the caller runs conmon + `runc
exec`. Not taken: machines whose syscall numbers kernel/procattr lacks, user namespaces,
AppArmor or SELinux labels, a personality, time namespaces, seccomp profiles the compiler does
not reproduce (runtime/seccompbpf), unknown rlimits, and a detached exec with a TTY (its pty
master needs a holder that outlives the daemon: conmon).

The container's facts come from runc's own files: `state.json` (init pid and its start time,
the cgroup paths runc's exec joins: those that exist) and the bundle's config.json (namespaces,
seccomp; compiled once per distinct profile). The init is pinned with a pidfd whose /proc start time
matches runc's record, so a recycled pid is never entered.

The daemon holds the process's stdio: pipes (stdin a pipe with `stdin`, else /dev/null; without
`attach`, output goes to /dev/null) or the pty master sent back by the process. Output ends when
every pipe is at EOF or, once the process has exited, when nothing more is buffered (a
background child still holding the pipe does not keep the stream open: conmon's rule).
The exit code is 128 + signal for a signal, as conmon reports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import resource
import signal as _signal
import socket
import struct
import subprocess
import sys
import termios
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from pymoby import errdefs
from pymoby.kernel import cgroupfs, procattr
from pymoby.runtime import seccompbpf
from pymoby.runtime.attach import check_terminal_size
from pymoby.runtime.defaults import KNOWN_CAPABILITIES
from pymoby.runtime.nsexec import CLONE_NEWPID, ExecRequest, recv_fds
from pymoby.runtime.procs import start_time, wait_readable, wait_writable

log = logging.getLogger(__name__)

EXEC_PREFIX = "exec failed: unable to start container process: "
START_TIMEOUT = 60.0
_CHUNK = 65536
_FILTERS = 16  # compiled seccomp profiles kept
_NAMESPACES = {
    "pid": CLONE_NEWPID,
    "network": 0x40000000,
    "mount": 0x00020000,
    "ipc": 0x08000000,
    "uts": 0x04000000,
    "cgroup": 0x02000000,
}


class FastExecError(errdefs.System):
    """The process could not be started; `message` is runc's text for the same failure."""


@dataclass(frozen=True)
class _Container:
    """What an exec needs of one running container (cached per container)."""

    key: tuple[int, int]  # mtimes of config.json and state.json
    init_pid: int
    init_start: int
    namespaces: int  # without the PID namespace
    join_pid: bool
    cgroup_dirs: tuple[str, ...]
    cgroup_keys: tuple[str, ...]  # runc's subsystem names ("" alone: cgroup v2)
    seccomp: seccompbpf.Filter | None


def _pin(ctr: _Container) -> int | None:
    """A pidfd of the container's init, if it is still the process runc recorded."""
    try:
        pidfd = os.pidfd_open(ctr.init_pid)
    except OSError:
        return None
    if start_time(ctr.init_pid) != ctr.init_start:
        os.close(pidfd)
        return None
    return pidfd


def _v2_fallback(ctr: _Container) -> str | None:
    """cgroup v2: the init's own cgroup directory (runc joins it when the recorded one is
    busy); None on v1 or when unreadable."""
    if list(ctr.cgroup_keys) != [""]:
        return None
    try:
        with open(f"/proc/{ctr.init_pid}/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return "/sys/fs/cgroup" + line[3:].strip()
    except OSError:
        pass
    return None


def _cap_last() -> int:
    """The kernel's last capability (gocapability reads the same file)."""
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return len(KNOWN_CAPABILITIES) - 1


def _caps(names: Any) -> list[int] | None:
    if names is None:
        return []
    if not isinstance(names, list):
        return None
    index = {name: i for i, name in enumerate(KNOWN_CAPABILITIES)}
    return [index[n] for n in names if n in index]  # runc ignores unknown ones


def _rlimits(items: Any) -> list[tuple[int, int, int]] | None:
    out: list[tuple[int, int, int]] = []
    for item in items or ():
        number = getattr(resource, str(item.get("type", "")), None)
        if not isinstance(number, int):
            return None
        out.append((number, int(item.get("soft", 0)), int(item.get("hard", 0))))
    return out


class FastExec:
    """The exec zygote and the containers it can enter (module docstring)."""

    def __init__(self, state_root: Path, *, cgroup: str | None = None) -> None:
        self.state_root = Path(state_root)
        self.cgroup = cgroup  # where the zygote and its children live (conmon's group)
        self._containers: dict[str, _Container] = {}
        self._filters: dict[bytes, seccompbpf.Filter] = {}
        self._filters_lock = threading.Lock()
        self._zygote: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._lock = asyncio.Lock()
        self._cap_last = _cap_last()

    # -- the zygote ---------------------------------------------------------------------------

    def _spawn(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            src = str(Path(__file__).resolve().parents[2])
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": src}
            argv = [sys.executable, "-P", "-s", "-m", "pymoby.runtime.nsexec"]
            self._zygote = subprocess.Popen(
                [*argv, str(child.fileno()), str(self.state_root)],
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
        if self.cgroup:
            for warning in cgroupfs.place(self._zygote.pid, self.cgroup):
                log.warning("exec zygote cgroup %s: %s", self.cgroup, warning)

    async def start(self) -> None:
        """Start the zygote now (otherwise the first exec does)."""
        async with self._lock:
            if self._sock is None:
                await asyncio.to_thread(self._spawn)

    async def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        zygote, self._zygote = self._zygote, None
        if zygote is not None:
            await asyncio.to_thread(_reap, zygote)

    async def _request(self, data: bytes, fds: list[int]) -> bool:
        """Hand one request to the zygote (restarted once if it is gone); False when it cannot
        take this one (too big for one message, or no zygote), so runc's path runs it."""
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
                    log.warning("the exec zygote cannot take this exec (%s): runc runs it", exc)
                    return False
                log.warning("the exec zygote is gone (%s); starting it again", exc)
                await self.close()
        return False

    def forget(self, cid: str) -> None:
        self._containers.pop(cid, None)

    # -- what a container allows --------------------------------------------------------------

    def _container(self, cid: str, bundle: Path) -> _Container | None:
        config_path, state_path = bundle / "config.json", self.state_root / cid / "state.json"
        try:
            key = (config_path.stat().st_mtime_ns, state_path.stat().st_mtime_ns)
        except OSError:
            return None
        cached = self._containers.get(cid)
        if cached is not None and cached.key == key:
            return cached
        try:
            config = msgspec.json.decode(config_path.read_bytes())
            state = msgspec.json.decode(state_path.read_bytes())
        except (OSError, msgspec.DecodeError):
            return None
        linux = config.get("linux") or {}
        if linux.get("personality") or linux.get("mountLabel") or state.get("intel_rdt_path"):
            return None
        flags, join_pid = 0, False
        for ns in linux.get("namespaces") or ():
            kind = ns.get("type")
            if kind == "pid":
                join_pid = True
            elif kind in _NAMESPACES:
                flags |= _NAMESPACES[kind]
            else:
                return None  # user, time: runc's path
        seccomp: seccompbpf.Filter | None = None
        if linux.get("seccomp") is not None:
            try:
                seccomp = self._filter(linux["seccomp"])
            except seccompbpf.SeccompUnsupported as exc:
                log.debug("exec in %s goes through runc: %s", cid, exc)
                return None
        paths = state.get("cgroup_paths") or {}
        dirs = tuple(sorted({str(p) for p in paths.values() if p}))
        keys = tuple(sorted(str(k) for k in paths))
        found = _Container(
            key=key,
            init_pid=int(state.get("init_process_pid") or 0),
            init_start=int(state.get("init_process_start") or 0),
            namespaces=flags,
            join_pid=join_pid,
            cgroup_dirs=dirs,
            cgroup_keys=keys,
            seccomp=seccomp,
        )
        self._containers[cid] = found
        return found

    def _filter(self, profile: Any) -> seccompbpf.Filter:
        """The compiled filter of a profile; containers mostly share one, compiled once."""
        key = msgspec.json.encode(profile)
        with self._filters_lock:  # plans run in worker threads
            found = self._filters.get(key)
            if found is None:
                found = seccompbpf.compile_filter(profile)
                if len(self._filters) >= _FILTERS:
                    self._filters.pop(next(iter(self._filters)))
                self._filters[key] = found
            return found

    def _plan(
        self, cid: str, bundle: Path, process: dict[str, Any], tty: bool, attach: bool
    ) -> tuple[ExecRequest, _Container] | None:
        """The request and its container, or None for runc's path. Blocking."""
        if (tty and not attach) or not procattr.supported():
            return None
        if process.get("apparmorProfile") or process.get("selinuxLabel"):
            return None
        if process.get("scheduler") or process.get("ioPriority") or process.get("execCPUAffinity"):
            return None
        ctr = self._container(cid, bundle)
        if ctr is None or ctr.init_pid <= 0:
            return None
        caps = process.get("capabilities") or {}
        sets = {
            k: _caps(caps.get(k))
            for k in ("bounding", "effective", "inheritable", "permitted", "ambient")
        }
        rlimits = _rlimits(process.get("rlimits"))
        user = process.get("user") or {}
        args = process.get("args") or []
        if rlimits is None or any(v is None for v in sets.values()) or not args:
            return None
        if user.get("umask") is not None:
            return None
        size = process.get("consoleSize") or {}
        console = (int(size.get("height", 0)), int(size.get("width", 0))) if size else None
        req = ExecRequest(
            container_id=cid,
            args=[str(a) for a in args],
            env=[str(e) for e in process.get("env") or ()],
            cwd=str(process.get("cwd") or "/"),
            uid=int(user.get("uid", 0)),
            gid=int(user.get("gid", 0)),
            additional_gids=[int(g) for g in user.get("additionalGids") or ()],
            bounding=sets["bounding"] or [],
            effective=sets["effective"] or [],
            inheritable=sets["inheritable"] or [],
            permitted=sets["permitted"] or [],
            ambient=sets["ambient"] or [],
            no_new_privileges=bool(process.get("noNewPrivileges")),
            rlimits=rlimits,
            oom_score_adj=process.get("oomScoreAdj"),
            namespaces=ctr.namespaces,
            join_pid=ctr.join_pid,
            cgroup_dirs=list(ctr.cgroup_dirs),
            cgroup_fallback=_v2_fallback(ctr),
            terminal=tty,
            console=console if tty else None,
            seccomp=ctr.seccomp.program if ctr.seccomp else b"",
            seccomp_flags=ctr.seccomp.flags if ctr.seccomp else 0,
            cap_last=self._cap_last,
        )
        return req, ctr

    # -- one exec -----------------------------------------------------------------------------

    async def exec(
        self,
        cid: str,
        bundle: Path,
        process: dict[str, Any],
        *,
        tty: bool,
        stdin: bool,
        attach: bool,
    ) -> FastSession | None:
        """Start `process` in container `cid`; None when runc's path must do it."""
        try:
            planned = await asyncio.to_thread(self._plan, cid, bundle, process, tty, attach)
        except (ValueError, TypeError, AttributeError) as exc:  # a spec this path cannot read
            log.debug("exec in %s goes through runc: %s", cid, exc)
            return None
        if planned is None:
            return None
        req, ctr = planned
        pidfd = _pin(ctr)
        if pidfd is None:
            return None
        mine: list[int] = []  # our ends
        theirs: list[int] = [pidfd]  # closed once sent
        ctl, ctl_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        report, report_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        theirs[:0] = [ctl_child.detach(), report_child.detach()]
        stdio: dict[int, int] = {}
        stdin_w = -1
        try:
            if not tty:
                if stdin:
                    r, stdin_w = os.pipe2(os.O_CLOEXEC)
                    theirs.append(r)
                    mine.append(stdin_w)
                else:
                    theirs.append(os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC))
                for stream in (1, 2):
                    if attach:
                        r, w = os.pipe2(os.O_CLOEXEC)
                        mine.append(r)
                        stdio[stream] = r
                        theirs.append(w)
                    else:
                        theirs.append(os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC))
            sent = await self._request(msgspec.msgpack.encode(req), theirs)
        except BaseException:
            for fd in mine:
                os.close(fd)
            ctl.close()
            report.close()
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        if not sent:
            for fd in mine:
                os.close(fd)
            ctl.close()
            report.close()
            return None
        session = FastSession(ctl, stdio, stdin_w)
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await session.started(report)
        except BaseException:
            await asyncio.shield(session.abandon())
            raise
        finally:
            report.close()
        return session


def _reap(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def _recv(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """One message (and its descriptors) from a child; (None, []) at EOF."""
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
            return None, list(fds)
        try:
            doc = msgspec.msgpack.decode(data)
        except msgspec.DecodeError:
            doc = {"error": "unreadable message from the exec helper"}
        return (doc if isinstance(doc, dict) else {}), list(fds)


class FastSession:
    """One process started by the zygote: its pid, stdio, exit code (ExecProcess)."""

    def __init__(self, ctl: socket.socket, stdio: dict[int, int], stdin_w: int) -> None:
        self._ctl = ctl
        self._pid = 0
        self._pidfd = -1
        self._exit: int | None = None
        self._exited = asyncio.get_running_loop().create_future()
        self._waiter: asyncio.Task[None] | None = None
        self._stdio = stdio
        self._stdin = stdin_w
        self._master = -1
        self.attach: FastAttach | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def exit_code(self) -> int | None:
        return self._exit

    async def started(self, report: socket.socket) -> None:
        """Wait for the pid, the pty and the execve (or the failure)."""
        doc, fds = await _recv(self._ctl)
        if doc is None or "pid" not in doc:
            for fd in fds:
                os.close(fd)
            text = (doc or {}).get("error") or "the exec helper ended before the process started"
            raise FastExecError(EXEC_PREFIX + str(text))
        self._pid = int(doc["pid"])
        if fds:
            self._pidfd = fds.pop(0)
        for fd in fds:
            os.close(fd)
        self._ctl.send(b"\1")  # go on (without it the first child kills the process)
        self._waiter = asyncio.get_running_loop().create_task(self._wait_exit())
        while True:
            doc, fds = await _recv(report)
            if doc is not None and doc.get("pty") and fds:
                self._master = fds.pop(0)
                for fd in fds:
                    os.close(fd)
                os.set_blocking(self._master, False)
                continue
            for fd in fds:
                os.close(fd)
            if doc is None:
                break  # execve closed it
            raise FastExecError(EXEC_PREFIX + str(doc.get("error", "unknown failure")))
        if self._master >= 0:
            self.attach = FastAttach({1: self._master}, self._master, self._exited, tty=True)
        elif self._stdio or self._stdin >= 0:
            self.attach = FastAttach(self._stdio, self._stdin, self._exited, tty=False)

    async def _wait_exit(self) -> None:
        code = -1
        while True:
            doc, fds = await _recv(self._ctl)
            for fd in fds:
                os.close(fd)
            if doc is None:
                break
            if "exit" in doc:
                code = int(doc["exit"])
                break
        self._exit = code
        if not self._exited.done():
            self._exited.set_result(code)

    async def wait(self) -> int:
        code: int = await asyncio.shield(self._exited)
        return code

    async def resize(self, height: int, width: int) -> None:
        check_terminal_size(height, width)
        if self._master >= 0:
            with contextlib.suppress(OSError):
                fcntl.ioctl(
                    self._master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0)
                )

    def detach(self) -> None:
        """The client left while the process runs: read and drop its output from now on, so a
        full pipe or pty never blocks it (conmon does the same); close() ends that."""
        if self.attach is not None and self._drain is None:
            self._drain = asyncio.get_running_loop().create_task(self.attach.discard())

    def kill(self, sig: int = _signal.SIGKILL) -> None:
        if self._exit is None and self._pidfd >= 0:
            with contextlib.suppress(ProcessLookupError):
                _signal.pidfd_send_signal(self._pidfd, sig)

    async def abandon(self) -> None:
        """A start that failed or was cancelled: no process is left behind."""
        self.kill()
        if self._waiter is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await asyncio.shield(self._exited)
        await self.close()

    async def close(self) -> None:
        for task in (self._drain, self._waiter):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if self.attach is not None:
            self.attach.close()
        else:
            for fd in [*self._stdio.values(), self._stdin, self._master]:
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
        self._stdio, self._stdin, self._master = {}, -1, -1
        self._ctl.close()
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1


class FastAttach:
    """The daemon's ends of an exec's stdio, as an attach session (read/write/close_stdin)."""

    def __init__(
        self, outputs: dict[int, int], stdin: int, exited: asyncio.Future[int], *, tty: bool
    ) -> None:
        self._out = dict(outputs)
        self._stdin = stdin
        self._exited = exited
        self._tty = tty
        self._loop = asyncio.get_running_loop()
        for fd in self._out.values():
            os.set_blocking(fd, False)
        if stdin >= 0:
            os.set_blocking(stdin, False)

    async def read(self) -> tuple[int, bytes] | None:
        while self._out:
            for stream, fd in list(self._out.items()):
                try:
                    data = os.read(fd, _CHUNK)
                except BlockingIOError:
                    continue
                except OSError:  # EIO: a pty whose other side is closed
                    data = b""
                if data:
                    return stream, data
                self._drop(stream)
            if not self._out:
                break
            if self._exited.done():  # nothing buffered and the process is gone
                self._drop_all()
                break
            await self._readable()
        return None

    async def discard(self) -> None:
        """Read until the output ends, dropping it."""
        while await self.read() is not None:
            pass

    def __aiter__(self) -> FastAttach:
        return self

    async def __anext__(self) -> tuple[int, bytes]:
        item = await self.read()
        if item is None:
            raise StopAsyncIteration
        return item

    async def _readable(self) -> None:
        ready: asyncio.Future[None] = self._loop.create_future()

        def wake(*_: object) -> None:
            if not ready.done():
                ready.set_result(None)

        fds = list(self._out.values())
        for fd in fds:
            self._loop.add_reader(fd, wake)
        self._exited.add_done_callback(wake)
        try:
            await ready
        finally:
            for fd in fds:
                self._loop.remove_reader(fd)
            self._exited.remove_done_callback(wake)

    def _drop(self, stream: int) -> None:
        fd = self._out.pop(stream)
        if fd != self._stdin:
            os.close(fd)

    def _drop_all(self) -> None:
        for stream in list(self._out):
            self._drop(stream)

    async def write(self, data: bytes) -> None:
        if self._stdin < 0:
            raise errdefs.Conflict("stdin of this exec is closed")
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._stdin, view)
            except BlockingIOError:
                await wait_writable(self._stdin, None)
                continue
            except (BrokenPipeError, OSError):
                raise errdefs.Conflict("the exec's stdin is closed") from None
            view = view[n:]

    def close_stdin(self) -> None:
        if self._stdin >= 0 and not self._tty:
            os.close(self._stdin)
            self._stdin = -1

    def close(self) -> None:
        self._drop_all()
        if self._stdin >= 0:
            with contextlib.suppress(OSError):
                os.close(self._stdin)
            self._stdin = -1
