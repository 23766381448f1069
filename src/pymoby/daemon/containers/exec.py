"""Exec sessions: dockerd's ContainerExecCreate/Start/Resize/Inspect over the runtime's exec
(the exec zygote, or conmon + `runc exec` where the zygote does not reproduce runc).

Rules (daemon/exec.go, daemon/container/exec.go, daemon/monitor.go):
- create: the container must run (409 `container <id> is not running`, paused, restarting);
  `User` is resolved in the container's /etc/passwd at once (400 with moby/sys/user's text);
  detach keys must parse (`Invalid escape keys (x) provided`, a 500 as in dockerd). The exec
  gets Env = the daemon environment (PATH, HOSTNAME, TERM with a TTY) with the container's
  Env and then the exec's applied, and the container's User/WorkingDir when it names none.
  It is listed in the container's ExecIDs; event `exec_create: <cmd> <args...>` (with the
  trailing space of dockerd's join when there are no args) with attribute execID.
- start: once only (`exec command <id> has already run` / `is already running`, 409); event
  `exec_start: ...`. The process is the container's OCI process (its config.json) with the
  exec's args, env, cwd (default "/"), terminal and console size (start's, else create's),
  user (resolved again) and, when privileged, every capability. A runtime failure sets
  dockerd's exit code (126, 127, else 128) and is the error (`OCI runtime exec failed: ...`).
- streams: output until the process ends (the runtime ends the output once the process has
  exited and its last output is read); stdin's end closes the process's stdin without a TTY,
  with a TTY it ends the client's stream; a TTY's detach keys end it too (event
  `exec_detach`). A client that leaves does not stop the process. The start returns once
  the exit code is recorded (the CLI asks for it right after the stream ends), unless the
  client detached or left before.
- exit: ExitCode, Running false, event `exec_die` with execID and exitCode; the exec leaves
  the container's ExecIDs. Execs of a container that stops are forgotten at once if still
  listed; finished ones stay inspectable until the garbage collection (every 5 minutes, two
  rounds, as dockerd's execCommandGC).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgspec

from pymoby import errdefs
from pymoby.api.types.exec import ExecCreateRequest, ExecInspect
from pymoby.daemon.containers.attach import ConmonAttach, ContainerLookup, Events
from pymoby.daemon.containers.files import read_root_file
from pymoby.daemon.containers.lifecycle import NotRunning, classify_start_error
from pymoby.daemon.containers.model import Container
from pymoby.daemon.containers.stdio import DEFAULT_DETACH_KEYS, EscapeScanner, parse_detach_keys
from pymoby.runtime.conmon import CreateError
from pymoby.runtime.defaults import all_capabilities
from pymoby.runtime.merge import daemon_environment, replace_or_append_env
from pymoby.runtime.runc import RuncError
from pymoby.runtime.users import resolve_process_user
from pymoby.server.backends import StdioClient

log = logging.getLogger("pymoby.exec")

GC_INTERVAL = 300.0
RESIZE_WAIT = 10.0
STDOUT, STDERR = 1, 2


class ExecProcess(Protocol):
    """runtime.conmon.ExecSession or runtime.fastexec.FastSession."""

    @property
    def pid(self) -> int: ...

    @property
    def attach(self) -> ConmonAttach | None: ...

    async def wait(self) -> int: ...

    async def resize(self, height: int, width: int) -> None: ...

    def detach(self) -> None: ...

    async def close(self) -> None: ...


class ExecRuntime(Protocol):
    async def exec(
        self,
        cid: str,
        process_spec: dict[str, Any],
        *,
        tty: bool,
        stdin: bool,
        attach: bool,
        exec_id: str | None = None,
    ) -> ExecProcess: ...


class ExecNotFound(errdefs.NotFound):
    def __init__(self, exec_id: str) -> None:
        super().__init__(f"No such exec instance: {exec_id}")


@dataclass(eq=False)
class ExecConfig:
    """One exec (dockerd's container.ExecConfig)."""

    id: str
    container_id: str
    entrypoint: str
    args: list[str]
    env: list[str]
    user: str
    working_dir: str
    tty: bool = False
    privileged: bool = False
    open_stdin: bool = False
    open_stdout: bool = False
    open_stderr: bool = False
    detach_keys: bytes = b""
    console_size: tuple[int, int] | None = None
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    can_remove: bool = False
    process: ExecProcess | None = None
    streaming: bool = False
    started: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def command(self) -> str:
        return self.entrypoint + " " + " ".join(self.args)


def _exec_user(c: Container, user: str) -> dict[str, Any]:
    """The OCI `process.user` of `user` in `c`'s root filesystem (blocking)."""
    rootfs = Path(c.rootfs) if c.rootfs else None
    passwd = read_root_file(rootfs, "/etc/passwd") if rootfs else None
    group = read_root_file(rootfs, "/etc/group") if rootfs else None
    resolved = resolve_process_user(user, c.host_config.group_add, passwd, group)
    return {
        "uid": resolved.uid,
        "gid": resolved.gid,
        "additionalGids": list(resolved.additional_gids),
    }


class ExecService:
    """The execs of all containers (module docstring)."""

    def __init__(
        self,
        store: ContainerLookup,
        runtime: ExecRuntime,
        events: Events,
        *,
        host_capabilities: tuple[str, ...] | None = None,
        new_id: Callable[[], str] = lambda: secrets.token_hex(32),
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.events = events
        self.host_capabilities = host_capabilities
        self._new_id = new_id
        self._execs: dict[str, ExecConfig] = {}
        self._watched: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._gc: asyncio.Task[None] | None = None

    # -- lookups ----------------------------------------------------------------------------

    def _event(self, c: Container, action: str, attributes: dict[str, str]) -> None:
        self.events.publish_container_event(
            action, c.id, c.name, c.image, labels=c.config.labels, attributes=attributes
        )

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _active(self, c: Container, name: str) -> None:
        """dockerd's getActiveContainer checks (after the lookup)."""
        if not c.running:
            raise NotRunning(c.id)
        if c.paused:
            raise errdefs.Conflict(f"Container {name} is paused, unpause the container before exec")
        if c.restarting:
            raise errdefs.Conflict(
                f"Container {c.id} is restarting, wait until the container is running"
            )

    def _get(self, exec_id: str) -> tuple[ExecConfig, Container]:
        """dockerd's getExecConfig: the exec and its running container."""
        ec = self._execs.get(exec_id)
        if ec is None:
            raise ExecNotFound(exec_id)
        c = self.store.find(ec.container_id)
        if c is None:
            raise errdefs.NotFound(f"No such container: {exec_id}")
        if not c.running:
            raise NotRunning(c.id)
        if c.paused:
            raise errdefs.Conflict(f"Container {c.id} is paused, unpause the container before exec")
        if c.restarting:
            raise errdefs.Conflict(
                f"Container {c.id} is restarting, wait until the container is running"
            )
        return ec, c

    # -- the API ----------------------------------------------------------------------------

    async def create(self, name: str, request: ExecCreateRequest) -> str:
        c = self.store.get(name)
        self._active(c, name)
        if request.user:
            try:
                await asyncio.to_thread(_exec_user, c, request.user)
            except errdefs.PymobyError as exc:
                raise errdefs.InvalidParameter(exc.message) from None
        keys = b""
        if request.detach_keys:
            try:
                keys = parse_detach_keys(request.detach_keys)
            except ValueError:
                raise errdefs.System(
                    f"Invalid escape keys ({request.detach_keys}) provided"
                ) from None
        cmd = request.cmd or [""]
        size = request.console_size
        ec = ExecConfig(
            id=self._new_id(),
            container_id=c.id,
            entrypoint=cmd[0],
            args=list(cmd[1:]),
            env=replace_or_append_env(daemon_environment_for(c, request.tty), request.env or ()),
            user=request.user or c.config.user,
            working_dir=request.working_dir or c.config.working_dir,
            tty=request.tty,
            privileged=request.privileged,
            open_stdin=request.attach_stdin,
            open_stdout=request.attach_stdout,
            open_stderr=request.attach_stderr,
            detach_keys=keys,
            console_size=(size[0], size[1]) if size else None,
        )
        self._execs[ec.id] = ec
        c.exec_ids.append(ec.id)
        self._watch(c)
        self._event(c, "exec_create: " + ec.command, {"execID": ec.id})
        return ec.id

    async def check(self, exec_id: str) -> None:
        """dockerd's ExecExists."""
        self._get(exec_id)

    async def start(
        self,
        exec_id: str,
        client: StdioClient | None,
        console_size: tuple[int, int] | None = None,
    ) -> None:
        ec, c = self._get(exec_id)
        if ec.exit_code is not None:
            raise errdefs.Conflict(f"exec command {ec.id} has already run")
        if ec.running:
            raise errdefs.Conflict(f"exec command {ec.id} is already running")
        ec.running = True
        self._event(c, "exec_start: " + ec.command, {"execID": ec.id})
        attach = client is not None and (ec.open_stdin or ec.open_stdout or ec.open_stderr)
        try:
            spec = await self._process_spec(c, ec, console_size or ec.console_size)
            process = await self.runtime.exec(
                c.id, spec, tty=ec.tty, stdin=ec.open_stdin, attach=attach, exec_id=ec.id
            )
        except BaseException as exc:  # also a client that left: the runtime undid the start
            self._failed(c, ec, exc)
            if isinstance(exc, Exception):
                raise self._start_error(exc) from None
            raise
        ec.process = process
        ec.pid = process.pid
        ec.streaming = attach
        ec.started.set()
        reaper = self._spawn(self._reap(c, ec, process))
        if not attach or client is None:
            return
        try:
            if await self._stream(c, ec, process, client):
                await asyncio.shield(reaper)
        finally:
            ec.streaming = False
            if ec.exit_code is not None:
                await process.close()
            else:
                process.detach()  # the client left: the process must not block on its output

    async def resize(self, exec_id: str, height: int, width: int) -> None:
        ec, _ = self._get(exec_id)
        try:
            async with asyncio.timeout(RESIZE_WAIT):
                await ec.started.wait()
        except TimeoutError:
            raise errdefs.System("timeout waiting for exec session ready") from None
        if ec.process is None:
            raise errdefs.InvalidParameter("exec process is not started")
        if ec.tty:  # a pipe has no size (the runtime ignores it too)
            await ec.process.resize(height, width)

    async def inspect(self, exec_id: str) -> ExecInspect:
        ec = self._execs.get(exec_id)
        if ec is None or self.store.find(ec.container_id) is None:
            raise ExecNotFound(exec_id)
        return ExecInspect(
            id=ec.id,
            running=ec.running,
            exit_code=ec.exit_code,
            tty=ec.tty,
            entrypoint=ec.entrypoint,
            arguments=list(ec.args),
            privileged=ec.privileged,
            user=ec.user,
            open_stdin=ec.open_stdin,
            open_stderr=ec.open_stderr,
            open_stdout=ec.open_stdout,
            can_remove=ec.can_remove,
            container_id=ec.container_id,
            detach_keys=ec.detach_keys,
            pid=ec.pid,
        )

    # -- starting -----------------------------------------------------------------------------

    async def _process_spec(
        self, c: Container, ec: ExecConfig, size: tuple[int, int] | None
    ) -> dict[str, Any]:
        """The container's OCI process with the exec's settings (dockerd's ContainerExecStart
        and execSetPlatformOpt)."""

        def build() -> dict[str, Any]:
            doc = json.loads((c.bundle / "config.json").read_text())
            process = dict(doc.get("process") or {})
            process["args"] = [ec.entrypoint, *ec.args]
            process["env"] = list(ec.env)
            process["cwd"] = ec.working_dir or "/"
            process["terminal"] = ec.tty
            process.pop("consoleSize", None)
            if ec.tty and size is not None:
                process["consoleSize"] = {"height": size[0], "width": size[1]}
            if ec.user:
                user = dict(process.get("user") or {})
                user.update(_exec_user(c, ec.user))
                process["user"] = user
            if ec.privileged:
                caps = all_capabilities(self.host_capabilities)
                process["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
            return process

        return await asyncio.to_thread(build)

    def _failed(self, c: Container, ec: ExecConfig, exc: BaseException) -> None:
        ec.running = False
        if ec.exit_code is None:
            ec.exit_code = classify_start_error(exc)[0] if _runtime_error(exc) else 126
        with contextlib.suppress(ValueError):
            c.exec_ids.remove(ec.id)
        ec.started.set()

    @staticmethod
    def _start_error(exc: Exception) -> errdefs.PymobyError:
        if _runtime_error(exc):
            assert isinstance(exc, errdefs.PymobyError)
            text = f"OCI runtime exec failed: {exc.message}: unknown"
            return classify_start_error(errdefs.System(text))[1]
        if isinstance(exc, errdefs.PymobyError):
            return exc
        return errdefs.System(str(exc))

    async def _reap(self, c: Container, ec: ExecConfig, process: ExecProcess) -> None:
        try:
            code = await process.wait()
        except Exception as exc:
            log.error("waiting for exec %s: %s", ec.id, exc)
            code = -1
        ec.exit_code = code
        ec.running = False
        with contextlib.suppress(ValueError):
            c.exec_ids.remove(ec.id)
        self._event(c, "exec_die", {"execID": ec.id, "exitCode": str(code)})
        if not ec.streaming:
            await process.close()

    async def _stream(
        self, c: Container, ec: ExecConfig, process: ExecProcess, client: StdioClient
    ) -> bool:
        """Copy the streams; True when the output ended (the process exited)."""
        session = process.attach
        if session is None:
            return True
        loop = asyncio.get_running_loop()
        output = loop.create_task(self._pump_output(ec, session, client))
        gone = loop.create_task(client.wait_closed())
        tasks: set[asyncio.Task[Any]] = {output, gone}
        stdin: asyncio.Task[str] | None = None
        if ec.open_stdin:
            stdin = loop.create_task(self._pump_stdin(ec, session, client))
            tasks.add(stdin)
        try:
            while True:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                if output in done:
                    return output.exception() is None  # an error: the client is gone
                if gone in done:
                    return False
                if stdin is not None and stdin in done:
                    tasks.discard(stdin)
                    if stdin.result() == "detach":
                        self._event(c, "exec_detach", {"execID": ec.id})
                        return False
                    if ec.tty:
                        return False  # dockerd closes the client's output at stdin's end
        finally:
            for task in (output, gone, stdin):
                if task is not None:
                    task.cancel()
            for task in (output, gone, stdin):
                if task is not None:
                    with contextlib.suppress(BaseException):
                        await task

    @staticmethod
    async def _pump_output(ec: ExecConfig, session: ConmonAttach, client: StdioClient) -> None:
        wanted = {s for s, on in ((STDOUT, ec.open_stdout), (STDERR, ec.open_stderr)) if on}
        while (item := await session.read()) is not None:
            if item[0] in wanted:
                await client.write(*item)

    @staticmethod
    async def _pump_stdin(ec: ExecConfig, session: ConmonAttach, client: StdioClient) -> str:
        scanner = EscapeScanner(ec.detach_keys or DEFAULT_DETACH_KEYS) if ec.tty else None
        try:
            while data := await client.read():
                if scanner is not None:
                    data, detached = scanner.feed(data)
                    if data:
                        await session.write(data)
                    if detached:
                        return "detach"
                else:
                    await session.write(data)
            if scanner is not None and (held := scanner.flush()):
                await session.write(held)
        except (errdefs.PymobyError, OSError) as exc:
            log.debug("stdin of exec %s: %s", ec.id, exc)
        if not ec.tty:
            session.close_stdin()
        return "eof"

    # -- forgetting ---------------------------------------------------------------------------

    def _watch(self, c: Container) -> None:
        """Forget `c`'s unfinished execs when it stops (dockerd's cleanup)."""
        if c.id in self._watched:
            return
        self._watched.add(c.id)
        stopped = c.wait("next-exit")

        async def forget() -> None:
            try:
                await stopped
            finally:
                self._watched.discard(c.id)
            for exec_id in list(c.exec_ids):
                self._execs.pop(exec_id, None)
            c.exec_ids.clear()

        self._spawn(forget())

    def start_gc(self, interval: float = GC_INTERVAL) -> None:
        if self._gc is None:
            self._gc = asyncio.get_running_loop().create_task(self._gc_loop(interval))

    async def _gc_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.collect()

    def collect(self) -> int:
        """One round of dockerd's execCommandGC; returns how many execs were dropped."""
        live = {i for c in self.store.all() for i in c.exec_ids}
        dropped = 0
        for exec_id, ec in list(self._execs.items()):
            if ec.can_remove:
                del self._execs[exec_id]
                dropped += 1
            elif exec_id not in live:
                ec.can_remove = True
        return dropped

    async def close(self) -> None:
        """Stop watching. Running execs keep running; an attached one of the exec zygote loses
        its output's reader with the daemon (its next write gets EPIPE), as the streams of any
        attached session end with the daemon."""
        if self._gc is not None:
            self._gc.cancel()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task


def daemon_environment_for(c: Container, tty: bool) -> list[str]:
    """CreateDaemonEnvironment with the exec's TTY flag (TERM=xterm for a TTY exec)."""
    config = c.config
    if config.tty != tty:
        config = msgspec.structs.replace(config, tty=tty)
    return daemon_environment(config)


def _runtime_error(exc: BaseException) -> bool:
    return isinstance(exc, CreateError | RuncError)
