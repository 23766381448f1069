"""Start, stop, kill, restart, pause, unpause, wait: dockerd's semantics and messages.

Rule: a state change happens under the container's lock and is saved (one transaction) before
its event is published; waiting for an exit never holds the lock (the exit monitor needs it).
`start` runs, under the lock: runspec.prepare (mount, files, spec, bundle) -> runtime.create
(conmon + `runc create`; the attach socket now exists) -> the start hooks (attach before start)
-> runtime.start (`runc start`) -> status running. An exit can only be handled after that (the
monitor takes the same lock), so a waiter registered before start always sees this run's exit.
A failed start leaves nothing running or mounted, records the error and dockerd's exit code
(126 permission denied, 127 command not found, else 128) and honours AutoRemove.

Stop (dockerd containerStop): the stop signal (request > Config.StopSignal > SIGTERM), wait
`t` seconds (request > Config.StopTimeout > the daemon default, negative = forever), then
SIGKILL and wait 10 s more. Kill of a non-SIGKILL signal other than the stop signal does not
cancel the restart policy; any kill marks the container manually stopped (unless-stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal as _signal
import time

from pymoby import errdefs
from pymoby.daemon.containers import netsetup, runspec
from pymoby.daemon.containers.context import Deps, wrap_error
from pymoby.daemon.containers.model import Container, WaitResult
from pymoby.daemon.containers.signals import (
    parse_signal,
    stop_signal,
    valid_for_platform,
)
from pymoby.daemon.containers.state import Event, Status
from pymoby.runtime.conmon import CreateError
from pymoby.runtime.runc import RuncError

log = logging.getLogger("pymoby.containers")

SIGKILL = int(_signal.SIGKILL)
HOOK_TIMEOUT = 5.0
KILL_WAIT = 10.0
EXIT_CODE_EACCES, EXIT_CODE_NOT_FOUND, EXIT_CODE_UNKNOWN = 126, 127, 128


class NotRunning(errdefs.Conflict):
    def __init__(self, cid: str) -> None:
        super().__init__(f"container {cid} is not running")


class NoSuchProcess(errdefs.NotFound):
    def __init__(self, pid: int, sig: int) -> None:
        super().__init__(f"cannot kill process (pid={pid}) with signal {sig}: no such process")


class StartFailed(errdefs.InvalidParameter):
    """dockerd's startInvalidConfigError (the command cannot be run: 126/127)."""


# -- start -----------------------------------------------------------------------------------


async def start(d: Deps, name: str) -> None:
    """POST /containers/{id}/start."""
    c = d.store.get(name)
    if c.paused:
        raise errdefs.Conflict("cannot start a paused container, try unpause instead")
    if c.running:
        raise errdefs.NotModified("container is already running")
    if c.removing or c.dead:
        raise errdefs.Conflict("container is marked for removal and cannot be started")
    async with c.lock:
        if c.running:
            return
        if c.removing or c.dead:
            raise errdefs.Conflict("container is marked for removal and cannot be started")
        await start_locked(d, c, manual=True)


def classify_start_error(exc: BaseException) -> tuple[int, errdefs.PymobyError]:
    """setExitCodeFromError: the exit code and the error a failed runtime start reports."""
    message = exc.message if isinstance(exc, errdefs.PymobyError) else str(exc)
    lower = message.lower()
    if "permission denied" in lower:
        return EXIT_CODE_EACCES, StartFailed(message)
    if "is a directory" in lower:
        return EXIT_CODE_EACCES, StartFailed(message + ": permission denied")
    if "not a directory" in lower:
        return EXIT_CODE_NOT_FOUND, StartFailed(
            message + ": Are you trying to mount a directory onto a file (or vice-versa)? "
            "Check if the specified host path exists and is the expected type"
        )
    for text in (
        "executable file not found",
        "no such file or directory",
        "system cannot find the file specified",
        "failed to run runc create/exec call",
    ):
        if text in lower:
            return EXIT_CODE_NOT_FOUND, StartFailed(message)
    return EXIT_CODE_UNKNOWN, errdefs.System(message)


async def start_locked(d: Deps, c: Container, *, manual: bool) -> None:
    """Start `c` (its lock held; see the module rule)."""
    if manual:
        c.restart_count = 0
        c.manually_stopped = False
        c.restart_delay = 0.0
    c.restart_cancelled = False
    try:
        pid = await _run(d, c)
    except Exception as exc:
        await _start_failed(d, c, exc)
        raise _start_error(exc) from None
    event = Event.RESTART_START if c.state.status is Status.RESTARTING else Event.START
    c.apply(event)
    s = c.state
    s.pid, s.started_at, s.exit_code, s.error, s.oom_killed = pid, time.time_ns(), 0, "", False
    c.manually_restarted = False
    await d.store.save(c)
    d.event(c, "start")


def _is_runtime_error(exc: BaseException) -> bool:
    return isinstance(exc, CreateError | RuncError)


def _start_error(exc: Exception) -> errdefs.PymobyError:
    if _is_runtime_error(exc):
        return classify_start_error(exc)[1]
    if isinstance(exc, errdefs.PymobyError):
        return exc
    return errdefs.System(str(exc))


async def _run(d: Deps, c: Container) -> int:
    # conmon is spawned and moved into its cgroup while the sandbox and the root filesystem
    # mount (independent of each other: side by side) and the bundle are made; it goes on
    # once they are ready
    if d.watcher is not None:
        d.watcher.forget(c.id)
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    creating = loop.create_task(
        d.runtime.create(
            c.id,
            c.bundle,
            tty=c.config.tty,
            stdin=c.config.open_stdin,
            stdin_once=c.config.stdin_once,
            log_path=c.log_path,
            ready=ready,
        )
    )
    try:
        made = await asyncio.gather(
            netsetup.attach(d, c), runspec.mount(d, c), return_exceptions=True
        )
        for result in made:
            if isinstance(result, BaseException):
                raise result
        await runspec.prepare(d, c)
    except BaseException:
        creating.cancel()
        with contextlib.suppress(BaseException):
            await creating
        await asyncio.shield(runspec.release(d, c))
        await asyncio.shield(netsetup.detach(d, c))
        raise
    ready.set_result(None)
    try:
        pid = await creating
        c.in_runtime = True
        try:
            await _run_hooks(c)
            await d.runtime.start(c.id)
        except BaseException:
            await asyncio.shield(_discard(d, c))
            raise
    except BaseException:
        await asyncio.shield(runspec.release(d, c))
        await asyncio.to_thread(runspec.remove_bundle, c.bundle)
        await asyncio.shield(netsetup.detach(d, c))
        raise
    return pid


async def _discard(d: Deps, c: Container) -> None:
    try:
        await d.runtime.delete(c.id, force=True)
        c.in_runtime = False
    except errdefs.PymobyError as exc:
        log.error("removing the runtime state of %s after a failed start: %s", c.id, exc)


async def _run_hooks(c: Container) -> None:
    hooks, c.start_hooks = list(c.start_hooks), []
    for hook in hooks:
        try:
            async with asyncio.timeout(HOOK_TIMEOUT):
                await hook(c)
        except Exception as exc:
            log.warning("start hook of %s failed: %s", c.id, exc)


async def _start_failed(d: Deps, c: Container, exc: BaseException) -> None:
    if _is_runtime_error(exc):
        c.state.exit_code, err = classify_start_error(exc)
        c.state.error = err.message
    else:
        c.state.exit_code = c.state.exit_code or EXIT_CODE_UNKNOWN
        c.state.error = exc.message if isinstance(exc, errdefs.PymobyError) else str(exc)
    c.apply(Event.START_FAILED)
    c.state.pid = 0
    await d.store.save(c)
    c.notify_stopped()
    if c.host_config.auto_remove:
        d.schedule_remove(c)


# -- kill and stop ---------------------------------------------------------------------------


async def kill_with_signal(d: Deps, c: Container, sig: int) -> None:
    """dockerd's killWithSignal (NotRunning when there is no process)."""
    async with c.lock:
        if not c.running:
            raise NotRunning(c.id)
        unpause = False
        if c.config.stop_signal and sig != SIGKILL:
            if stop_signal(c.config.stop_signal) == sig:
                c.exit_on_next()
                unpause = c.paused
        else:
            c.exit_on_next()
            unpause = c.paused
        if not d.shutting_down and not c.manually_stopped:
            c.manually_stopped = True
            await d.store.save(c)
        if c.restarting:
            return
        try:
            await d.runtime.kill(c.id, sig)
        except (errdefs.NotFound, errdefs.Conflict):
            # The process is gone; its exit is (or will be) reported by the exit watcher.
            if d.watcher is not None:
                d.spawn(d.watcher.check(c.id), f"exit check of {c.id}")
            raise NoSuchProcess(c.state.pid, sig) from None
        if unpause:
            try:
                await d.runtime.resume(c.id)
            except errdefs.PymobyError as exc:
                log.warning("cannot unpause container %s: %s", c.id, exc)
    d.event(c, "kill", {"signal": str(sig)})


async def _wait_stopped(fut: asyncio.Future[WaitResult], seconds: float | None) -> bool:
    try:
        await asyncio.wait_for(asyncio.shield(fut), seconds)
    except TimeoutError:
        return False
    return True


async def kill_container(d: Deps, c: Container) -> None:
    """dockerd's kill: SIGKILL, then wait for the exit (10 s, then 2 s after a kill --all)."""
    if not c.running:
        raise NotRunning(c.id)
    fut = c.wait("not-running")
    try:
        await kill_with_signal(d, c, SIGKILL)
    except NoSuchProcess:
        return
    except errdefs.PymobyError:
        pass
    if await _wait_stopped(fut, KILL_WAIT):
        return
    log.warning("container %s did not exit within %gs of SIGKILL", c.id, KILL_WAIT)
    try:
        await d.runtime.kill(c.id, SIGKILL, all=True)
    except (errdefs.NotFound, errdefs.Conflict):
        return
    if not await _wait_stopped(fut, 2.0):
        raise errdefs.System("tried to kill container, but did not receive an exit event")


async def stop_container(
    d: Deps, c: Container, signal_text: str = "", seconds: int | None = None
) -> None:
    """dockerd's containerStop (see the module rule); publishes `stop` when stopped."""
    if not c.running:
        return
    sig = stop_signal(c.config.stop_signal)
    if seconds is None:
        seconds = c.config.stop_timeout
    if seconds is None:
        seconds = d.env.stop_timeout
    if signal_text:
        sig = parse_signal(signal_text)
    wait: float | None = float(seconds) if seconds >= 0 else None
    fut = c.wait("not-running")
    error: errdefs.PymobyError | None = None
    try:
        await kill_with_signal(d, c, sig)
    except errdefs.PymobyError as exc:
        error = exc
        wait = 2.0
    if await _wait_stopped(fut, wait):
        d.event(c, "stop")
        return
    if error is not None:
        log.error("error sending stop (signal %d) to container %s: %s", sig, c.id, error)
    if seconds < 0:
        if error is not None:
            raise error
        return
    log.info("container %s failed to exit within %ss of signal %d - using the force",
             c.id, seconds, sig)  # fmt: skip
    await kill_container(d, c)
    d.event(c, "stop")


async def stop(d: Deps, name: str, signal_text: str, seconds: int | None) -> None:
    """POST /containers/{id}/stop."""
    c = d.store.get(name)
    if not c.running:
        raise errdefs.NotModified("container is already stopped")
    try:
        await stop_container(d, c, signal_text, seconds)
    except errdefs.InvalidParameter:
        raise
    except errdefs.PymobyError as exc:
        raise errdefs.System(f"cannot stop container: {name}: {exc.message}") from None


async def kill(d: Deps, name: str, signal_text: str) -> None:
    """POST /containers/{id}/kill (every error prefixed `cannot kill container: <name>`)."""
    try:
        sig = SIGKILL
        if signal_text:
            sig = parse_signal(signal_text)
            if not valid_for_platform(sig):
                raise errdefs.InvalidParameter(f"the linux daemon does not support signal {sig}")
        c = d.store.get(name)
        if sig == SIGKILL:
            await kill_container(d, c)
        else:
            await kill_with_signal(d, c, sig)
    except errdefs.PymobyError as exc:
        raise wrap_error(exc, f"cannot kill container: {name}") from None


async def restart(d: Deps, name: str, signal_text: str, seconds: int | None) -> None:
    """POST /containers/{id}/restart: stop (if running), start; `restart` event."""
    c = d.store.get(name)
    try:
        if c.running:
            c.manually_restarted = True
            await stop_container(d, c, signal_text, seconds)
        async with c.lock:
            if c.removing or c.dead:
                raise errdefs.Conflict("container is marked for removal and cannot be started")
            if not c.running:
                await start_locked(d, c, manual=True)
    except errdefs.PymobyError as exc:
        c.manually_restarted = False
        raise errdefs.System(f"Cannot restart container {name}: {exc.message}") from None
    d.event(c, "restart")


# -- pause -----------------------------------------------------------------------------------


async def pause(d: Deps, name: str) -> None:
    c = d.store.get(name)
    async with c.lock:
        if not c.running:
            raise NotRunning(c.id)
        if c.paused:
            raise errdefs.Conflict(f"container {c.id} is already paused")
        if c.restarting:
            raise errdefs.Conflict(
                f"Container {c.id} is restarting, wait until the container is running"
            )
        try:
            await d.runtime.pause(c.id)
        except errdefs.PymobyError as exc:
            raise errdefs.System(f"cannot pause container {c.id}: {exc.message}") from None
        c.apply(Event.PAUSE)
        await d.store.save(c)
    d.event(c, "pause")


async def unpause(d: Deps, name: str) -> None:
    c = d.store.get(name)
    async with c.lock:
        if not c.paused:
            raise errdefs.System(f"Container {c.id} is not paused")
        try:
            await d.runtime.resume(c.id)
        except errdefs.PymobyError as exc:
            raise errdefs.System(f"Cannot unpause container {c.id}: {exc.message}") from None
        c.apply(Event.UNPAUSE)
        await d.store.save(c)
    d.event(c, "unpause")


# -- wait ------------------------------------------------------------------------------------


def wait(d: Deps, name: str, condition: str) -> asyncio.Future[WaitResult]:
    """POST /containers/{id}/wait: the lookup happens now, the result comes later."""
    return d.store.get(name).wait(condition)
