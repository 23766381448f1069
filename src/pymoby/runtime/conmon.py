"""The container runtime: conmon as the per-container shim, runc driven directly.

Rule: this is the daemon's only door to running containers. `create` starts a conmon that runs
`runc create` under it and stays as the container's monitor; `exec` forks the process through
the exec zygote (runtime/fastexec) when that reproduces `runc exec`, else it is a conmon running
`runc exec`; everything else is a runc command
(`start`, `kill`, `delete`, `pause`, `resume`, `state`, `list`, `ps`) or talks to conmon
through its files (attach socket, winsz FIFO, exit and OOM files). conmon survives the daemon:
`adopt` rebuilds what we know of a container from the files alone. Failures are errdefs
classes carrying runc's own message.

Layout under `exec_root` (one Runtime per exec root; runc's state lives in `state_root`):

    exits/<cid>                    exit status, written by conmon (--exit-dir), watched
    containers/<cid>/              conmon's --persist-dir and cwd
        conmon.json                how it was created (bundle, tty, stdin, log path)
        conmon.pid  pidfile        conmon's pid (-P) and the container's (-p)
        oci-log                    runc's JSON log (--log), read when create fails
        exit  oom                  conmon's copies of the exit status and the OOM marker
        exec/<exec id>/            one exec session: its bundle (-b) and persist dir,
                                   process.json, pidfile, conmon.pid, oci-log, exit,
                                   exits/<cid> (its own --exit-dir), attach ctl winsz
    <bundle>/attach ctl winsz      conmon's socket and FIFOs (--full-attach), removed on delete

conmon is started with --api-version 1, --full-attach, `-l k8s-file:<log>` (exec: `-l none`),
`--runtime-arg` for runc's --root/--log/--log-format, `-t` for a TTY, `-i` for stdin and
`--leave-stdin-open` unless stdin_once. `conmon_cgroup` (see kernel/cgroupfs) moves each conmon
out of the daemon's cgroup in the start-pipe window; None leaves it where it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal as _signal
import socket
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pymoby import errdefs
from pymoby.runtime import runcfast, shim
from pymoby.runtime.attach import AttachSession, reopen_log, resize
from pymoby.runtime.exits import ExitStatus, ExitWatcher, OnExit, read_exit_file
from pymoby.runtime.fastexec import FastExec, FastExecError, FastSession
from pymoby.runtime.procs import pid_is_conmon, read_pid, wait_pid_gone
from pymoby.runtime.runc import Runc, RuncNotFound, RuncState

log = logging.getLogger(__name__)

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")
_CONMON_FILES = ("attach", "ctl", "winsz")
DELETE_WAIT = 5.0


class CreateError(shim.ShimError):
    """The OCI runtime could not create the container (or exec process); runc's message."""


def _check_id(kind: str, value: str) -> None:
    if not _ID.match(value):
        raise errdefs.InvalidParameter(f"invalid {kind} {value!r}")


@dataclass(frozen=True)
class ContainerPaths:
    """Where one container's conmon files live (see the module docstring)."""

    dir: Path
    exit_file: Path

    @property
    def meta(self) -> Path:
        return self.dir / "conmon.json"

    @property
    def conmon_pidfile(self) -> Path:
        return self.dir / "conmon.pid"

    @property
    def pidfile(self) -> Path:
        return self.dir / "pidfile"

    @property
    def oci_log(self) -> Path:
        return self.dir / "oci-log"

    @property
    def oom(self) -> Path:
        return self.dir / "oom"

    @property
    def persist_exit(self) -> Path:
        return self.dir / "exit"

    def exec_dir(self, exec_id: str) -> Path:
        return self.dir / "exec" / exec_id


@dataclass(frozen=True)
class AdoptedState:
    """What a container is doing, rebuilt from conmon's files and runc after a restart.

    `status` "exited" comes with the exit code (None when conmon died before writing it);
    "gone" means runc and conmon know nothing of it. A live status with `conmon_alive` False
    is an orphan: the container runs but nobody will record its exit.
    """

    cid: str
    status: Literal["created", "running", "paused", "exited", "gone"]
    pid: int = 0
    exit_code: int | None = None
    oom: bool = False
    finished_at_ns: int = 0
    conmon_pid: int | None = None
    conmon_alive: bool = False
    bundle: Path | None = None
    tty: bool = False


class ExecSession:
    """A process started in a running container by its own conmon (`runc exec`).

    `wait()` gives the exit code; `close()` releases the session and, once the process has
    ended, its files (a running exec keeps them: `Runtime.delete` removes them with the rest).
    """

    def __init__(
        self,
        *,
        cid: str,
        exec_id: str,
        pid: int,
        directory: Path,
        tty: bool,
        sync: socket.socket,
        attach: AttachSession | None,
    ) -> None:
        self.cid = cid
        self.exec_id = exec_id
        self.pid = pid
        self.dir = directory
        self.tty = tty
        self.attach = attach
        self._sync = sync
        self._exit: int | None = None
        self._waiter: asyncio.Task[int] | None = None
        try:  # a pidfd, so a signal never reaches a recycled pid
            self._pidfd = os.pidfd_open(pid)
        except OSError:
            self._pidfd = -1

    @property
    def exit_code(self) -> int | None:
        return self._exit

    async def wait(self) -> int:
        """The exit code (conmon's second sync message; its exit file as the fallback)."""
        if self._exit is not None:
            return self._exit
        if self._waiter is None:
            self._waiter = asyncio.ensure_future(self._wait())
        return await asyncio.shield(self._waiter)

    async def _wait(self) -> int:
        msg = await shim.read_message(self._sync, float("inf"))
        code: int | None = None
        if msg is not None and isinstance(msg.get("data"), int):
            code = int(msg["data"])
        if code is None:
            st = await asyncio.to_thread(read_exit_file, self.dir / "exit", self.cid, None)
            code = st.exit_code if st is not None else -1
        self._exit = code
        return code

    async def resize(self, height: int, width: int) -> None:
        await resize(self.dir, height, width)

    def detach(self) -> None:
        """The client left while the process runs: conmon goes on reading its output."""
        if self.attach is not None:
            self.attach.close()

    def kill(self, sig: int = _signal.SIGKILL) -> None:
        """Signal the exec'd process (runc has no per-process kill)."""
        if self._exit is None and self._pidfd >= 0:
            with contextlib.suppress(ProcessLookupError):
                _signal.pidfd_send_signal(self._pidfd, sig)

    async def close(self) -> None:
        if self.attach is not None:
            self.attach.close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.cancel()
            with contextlib.suppress(BaseException):
                await self._waiter
        self._sync.close()
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1
        if self._exit is not None:
            await asyncio.to_thread(shutil.rmtree, self.dir, True)


class Runtime:
    """conmon + runc for one state root and exec root."""

    def __init__(
        self,
        runc_path: str,
        conmon_path: str,
        state_root: Path,
        exec_root: Path,
        *,
        conmon_cgroup: str | None = None,
        conmon_log_level: str = "warning",
        create_timeout: float = 120.0,
        fast_exec: bool = True,
    ) -> None:
        self.runc = Runc(runc_path, Path(state_root))
        self.fast = FastExec(Path(state_root), cgroup=conmon_cgroup) if fast_exec else None
        self.conmon_path = conmon_path
        self.exec_root = Path(exec_root)
        self.exit_dir = self.exec_root / "exits"
        self.conmon_cgroup = conmon_cgroup
        self.conmon_log_level = conmon_log_level
        self.create_timeout = create_timeout

    def paths(self, cid: str) -> ContainerPaths:
        _check_id("container id", cid)
        return ContainerPaths(self.exec_root / "containers" / cid, self.exit_dir / cid)

    def watcher(self, on_exit: OnExit) -> ExitWatcher:
        """The exit directory watcher (call `await w.start()` before adopting containers)."""
        containers = self.exec_root / "containers"
        return ExitWatcher(self.exit_dir, on_exit, oom_marker=lambda cid: containers / cid / "oom")

    def _runtime_args(self, oci_log: Path) -> list[str]:
        out: list[str] = []
        for arg in [*self.runc.global_args(), "--log", str(oci_log)]:
            out += ["--runtime-arg", arg]
        return out

    def _common_args(
        self, cid: str, cuuid: str, bundle: Path, d: Path, exit_dir: Path
    ) -> list[str]:
        return [
            "--api-version", "1",
            "-c", cid, "-u", cuuid, "-n", cid,
            "-r", self.runc.path,
            "-b", str(bundle),
            "-p", str(d / "pidfile"),
            "-P", str(d / "conmon.pid"),
            "--exit-dir", str(exit_dir),
            "--persist-dir", str(d),
            "--full-attach",
            "--log-level", self.conmon_log_level,
            "--syslog",
            *self._runtime_args(d / "oci-log"),
        ]  # fmt: skip

    # -- create ------------------------------------------------------------------------------

    async def create(
        self,
        cid: str,
        bundle: Path,
        *,
        tty: bool,
        stdin: bool,
        stdin_once: bool,
        log_path: Path,
        log_max_size: int | None = None,
        ready: Awaitable[None] | None = None,
    ) -> int:
        """Create the container under a new conmon; returns the container's pid.

        The container is `created` (runc init waits for `start`). On failure nothing is left:
        no conmon, no runc state, no files; the error carries runc's message. A container
        that runc still knows (not deleted since its last run) is a Conflict, left untouched.

        With `ready`, conmon is spawned and moved into its cgroup at once and told to go on
        only when `ready` is done: the bundle may be written meanwhile (the move's cost, an
        RCU grace period on cgroup v1, then overlaps the caller's work). Cancel the call to
        abandon it.
        """
        p = self.paths(cid)
        bundle = Path(bundle)
        if not bundle.is_absolute():
            raise errdefs.InvalidParameter(f"bundle path must be absolute: {bundle}")
        meta = {
            "bundle": str(bundle),
            "tty": tty,
            "stdin": stdin,
            "stdin_once": stdin_once,
            "log_path": str(log_path),
        }
        await asyncio.to_thread(self._prepare, p, bundle, meta, ready is None)
        args = self._common_args(cid, cid, bundle, p.dir, self.exit_dir)
        args += ["-l", f"k8s-file:{log_path}"]
        if log_max_size and log_max_size > 0:
            args += ["--log-size-max", str(log_max_size)]
        if tty:
            args.append("-t")
        if stdin:
            args.append("-i")
            if not stdin_once:
                args.append("--leave-stdin-open")
        launched: shim.Launched | None = None

        async def go_on() -> None:
            if ready is not None:
                await ready
                await asyncio.to_thread(self._check_bundle, bundle)

        try:
            launched = await shim.launch(
                self.conmon_path, args, cwd=p.dir, cgroup=self.conmon_cgroup, ready=go_on()
            )
            return await self._verdict(launched.sync, p.oci_log, launched.output)
        except BaseException:
            await asyncio.shield(self._discard(cid, p, bundle))
            raise
        finally:
            if launched is not None:
                launched.close()

    async def _read(self, sock: socket.socket) -> dict[str, Any] | None:
        try:
            return await shim.read_message(sock, self.create_timeout)
        except TimeoutError:
            raise errdefs.Deadline(
                f"conmon did not report within {self.create_timeout:g}s"
            ) from None

    async def _verdict(self, sync: socket.socket, oci_log: Path, output: str) -> int:
        """The pid conmon reports on the sync pipe, or CreateError with runc's message."""
        msg = await self._read(sync)
        pid = int(msg.get("data", -1)) if msg is not None else -1
        if pid <= 0:
            text = await asyncio.to_thread(shim.failure_message, msg, oci_log, output)
            raise CreateError(text)
        return pid

    def _prepare(
        self, p: ContainerPaths, bundle: Path, meta: dict[str, Any], check_bundle: bool
    ) -> None:
        if check_bundle:
            self._check_bundle(bundle)
        if (self.runc.root / p.dir.name).exists():  # runc keeps <root>/<id>/state.json
            raise errdefs.Conflict(f"container {p.dir.name} already exists in the runtime")
        self.exit_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(p.dir, ignore_errors=True)
        p.dir.mkdir(parents=True, mode=0o700)
        p.exit_file.unlink(missing_ok=True)
        p.meta.write_text(json.dumps(meta))

    @staticmethod
    def _check_bundle(bundle: Path) -> None:
        """The bundle is complete, and holds no conmon files of an earlier run."""
        if not (bundle / "config.json").is_file():
            raise errdefs.InvalidParameter(f"bundle {bundle} has no config.json")
        for name in _CONMON_FILES:
            (bundle / name).unlink(missing_ok=True)

    async def _discard(
        self, cid: str, p: ContainerPaths, bundle: Path | None, *, runc_delete: bool = True
    ) -> None:
        """Remove every trace of a container: runc state, its conmon, and the files."""
        if runc_delete:
            with contextlib.suppress(errdefs.PymobyError):
                await self.runc.delete(cid, force=True)
        conmon_pid = await asyncio.to_thread(read_pid, p.conmon_pidfile)
        if conmon_pid:
            await self._reap_conmon(conmon_pid, cid)
        await asyncio.to_thread(self._remove_files, p, bundle)

    @staticmethod
    async def _reap_conmon(pid: int, ident: str) -> None:
        """Wait for a conmon (verified by `ident`) to finish; SIGKILL it if it does not."""
        if not await asyncio.to_thread(pid_is_conmon, pid, ident):
            return
        if not await wait_pid_gone(pid, DELETE_WAIT):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, _signal.SIGKILL)
            await wait_pid_gone(pid, DELETE_WAIT)

    def _remove_files(self, p: ContainerPaths, bundle: Path | None) -> None:
        bundle = bundle or self._meta(p).get("bundle_path")
        shutil.rmtree(p.dir, ignore_errors=True)
        p.exit_file.unlink(missing_ok=True)
        if bundle is not None:
            for name in _CONMON_FILES:
                with contextlib.suppress(OSError):
                    (bundle / name).unlink()

    @staticmethod
    def _meta(p: ContainerPaths) -> dict[str, Any]:
        try:
            doc = json.loads(p.meta.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(doc, dict):
            return {}
        if doc.get("bundle"):
            doc["bundle_path"] = Path(doc["bundle"])
        return doc

    # -- runc commands -----------------------------------------------------------------------

    async def start(self, cid: str) -> None:
        """Start a created container: through its exec FIFO (runtime/runcfast.py), or with
        `runc start` when that is not the plain case."""
        pid = await asyncio.to_thread(read_pid, self.paths(cid).pidfile)
        if pid and await runcfast.start(self.runc.root / cid, pid):
            return
        await self.runc.start(cid)

    async def kill(
        self, cid: str, signal: int | str = _signal.SIGTERM, *, all: bool = False
    ) -> None:
        """`runc kill` (`all`: every process of the container, not only its init)."""
        await self.runc.kill(cid, int(signal) if isinstance(signal, int) else signal, all=all)

    async def pause(self, cid: str) -> None:
        await self.runc.pause(cid)

    async def resume(self, cid: str) -> None:
        await self.runc.resume(cid)

    async def state(self, cid: str) -> RuncState:
        return await self.runc.state(cid)

    async def ps(self, cid: str) -> list[int]:
        return await self.runc.ps(cid)

    async def delete(self, cid: str, force: bool = False) -> None:
        """`runc delete [--force]`, then wait for conmon to finish and remove its files.

        Idempotent: a container runc does not know is fine. Without `force` a running
        container is a Conflict and nothing is removed; runc's other failures propagate.
        """
        p = self.paths(cid)
        if self.fast is not None:
            self.fast.forget(cid)
        if not await runcfast.delete(self.runc.root / cid):
            with contextlib.suppress(RuncNotFound):
                await self.runc.delete(cid, force=force)
        await self._discard(cid, p, None, runc_delete=False)

    # -- attach, resize, exits ---------------------------------------------------------------

    async def _bundle(self, cid: str) -> Path:
        meta = await asyncio.to_thread(self._meta, self.paths(cid))
        bundle = meta.get("bundle_path")
        if not isinstance(bundle, Path):
            raise errdefs.NotFound(f"no conmon for container {cid}")
        return bundle

    async def attach(self, cid: str) -> AttachSession:
        """Connect to the container's attach socket (output from now on; stdin)."""
        return await AttachSession.connect(await self._bundle(cid) / "attach")

    async def resize(self, cid: str, height: int, width: int) -> None:
        await resize(await self._bundle(cid), height, width)

    async def reopen_log(self, cid: str) -> None:
        """conmon reopens the container's log path (the daemon renamed the old file away)."""
        await reopen_log(await self._bundle(cid))

    async def read_exit(self, cid: str) -> ExitStatus | None:
        """The container's exit status if conmon wrote one (also after a daemon restart)."""
        p = self.paths(cid)

        def read() -> ExitStatus | None:
            return read_exit_file(p.exit_file, cid, p.oom) or read_exit_file(
                p.persist_exit, cid, p.oom
            )

        return await asyncio.to_thread(read)

    async def conmon_pid(self, cid: str) -> int | None:
        """The pid of the container's conmon while it runs."""
        p = self.paths(cid)
        pid = await asyncio.to_thread(read_pid, p.conmon_pidfile)
        if pid and await asyncio.to_thread(pid_is_conmon, pid, cid):
            return pid
        return None

    # -- reconcile ---------------------------------------------------------------------------

    async def adopt(self, cid: str) -> AdoptedState:
        """What became of a container while no daemon watched it (see AdoptedState)."""
        p = self.paths(cid)
        meta = await asyncio.to_thread(self._meta, p)
        bundle = meta.get("bundle_path")
        tty = bool(meta.get("tty"))
        conmon_pid = await asyncio.to_thread(read_pid, p.conmon_pidfile)
        alive = bool(conmon_pid) and await asyncio.to_thread(pid_is_conmon, conmon_pid or 0, cid)
        try:
            st: RuncState | None = await self.runc.state(cid)
        except RuncNotFound:
            st = None
        exited = await self.read_exit(cid)
        if exited is None and alive and (st is None or st.status == "stopped"):
            # conmon is writing the exit file right now: give it a moment.
            await wait_pid_gone(conmon_pid or 0, 2.0)
            alive = await asyncio.to_thread(pid_is_conmon, conmon_pid or 0, cid)
            exited = await self.read_exit(cid)
        common: dict[str, Any] = {
            "conmon_pid": conmon_pid,
            "conmon_alive": alive,
            "bundle": bundle,
            "tty": tty,
        }
        if exited is not None:
            return AdoptedState(
                cid,
                "exited",
                exit_code=exited.exit_code,
                oom=exited.oom,
                finished_at_ns=exited.finished_at_ns,
                **common,
            )
        if st is None:
            return AdoptedState(cid, "gone", **common)
        if st.status in ("created", "running", "paused"):
            return AdoptedState(cid, st.status, pid=st.pid, **common)  # type: ignore[arg-type]
        oom = await asyncio.to_thread(p.oom.exists)
        return AdoptedState(cid, "exited", oom=oom, **common)

    async def prepare(self) -> None:
        """Start the exec zygote (so the first exec does not wait for it)."""
        if self.fast is not None:
            await self.fast.start()

    async def close(self) -> None:
        """Stop the exec zygote (running execs and containers carry on)."""
        if self.fast is not None:
            await self.fast.close()

    async def list(self) -> list[RuncState]:
        """Every container in the runc state root."""
        return await self.runc.list()

    # -- exec --------------------------------------------------------------------------------

    async def exec(
        self,
        cid: str,
        process_spec: dict[str, Any],
        *,
        tty: bool,
        stdin: bool,
        attach: bool,
        exec_id: str | None = None,
    ) -> ExecSession | FastSession:
        """Run an OCI process (`process` object of config.json) in a running container.

        The exec zygote starts it when it can (runtime/fastexec), else a conmon running `runc
        exec`. With `attach`, the output is connected before the process starts, so none is
        lost. A process that cannot start raises CreateError with runc's message.
        """
        if self.fast is not None:
            bundle = await self._bundle(cid)
            try:
                fast = await self.fast.exec(
                    cid, bundle, dict(process_spec), tty=tty, stdin=stdin, attach=attach
                )
            except FastExecError as exc:
                raise CreateError(exc.message) from None
            if fast is not None:
                return fast
        p = self.paths(cid)
        exec_id = exec_id or uuid.uuid4().hex
        _check_id("exec id", exec_id)
        d = p.exec_dir(exec_id)
        spec = dict(process_spec)
        spec["terminal"] = tty
        await asyncio.to_thread(self._prepare_exec, p, d, spec)
        args = self._common_args(cid, exec_id, d, d, d / "exits")
        args += ["-l", "none", "-e", "--exec-attach"]
        args += ["--exec-process-spec", str(d / "process.json")]
        if tty:
            args.append("-t")
        if stdin:
            args.append("-i")
        launched: shim.Launched | None = None
        session: AttachSession | None = None
        try:
            launched = await shim.launch(
                self.conmon_path, args, cwd=d, cgroup=self.conmon_cgroup, attach_pipe=True
            )
            assert launched.attach is not None
            ready = await self._read(launched.attach)
            if ready is None or ready.get("data", -1) != 0:
                await self._verdict(launched.sync, d / "oci-log", launched.output)
                raise CreateError("conmon did not open the exec session's attach socket")
            if attach:
                session = await AttachSession.connect(d / "attach")
            shim.send_start(launched.start)
            pid = await self._verdict(launched.sync, d / "oci-log", launched.output)
        except BaseException:
            if session is not None:
                session.close()
            if launched is not None:
                launched.close()
            await asyncio.shield(self._discard_exec(d, exec_id))
            raise
        launched.close(keep_sync=True)
        return ExecSession(
            cid=cid,
            exec_id=exec_id,
            pid=pid,
            directory=d,
            tty=tty,
            sync=launched.sync,
            attach=session,
        )

    def _prepare_exec(self, p: ContainerPaths, d: Path, spec: dict[str, Any]) -> None:
        if not p.meta.exists():
            raise errdefs.NotFound(f"no conmon for container {p.dir.name}")
        shutil.rmtree(d, ignore_errors=True)
        (d / "exits").mkdir(parents=True, mode=0o700)
        (d / "process.json").write_text(json.dumps(spec))

    async def _discard_exec(self, d: Path, exec_id: str) -> None:
        pid = await asyncio.to_thread(read_pid, d / "conmon.pid")
        if pid:
            await self._reap_conmon(pid, exec_id)
        await asyncio.to_thread(shutil.rmtree, d, True)
