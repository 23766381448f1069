"""Exits: record them, clean the runtime up, apply the restart policy and AutoRemove.

Rule (dockerd's handleContainerExit + restartmanager): the runtime's ExitWatcher reports each
exit at once with conmon's exit code, OOM marker and finish time; `handle_exit` then, under the
container's lock: deletes the runtime state (`runc delete`, conmon gone), unmounts the root
filesystem, records the exit (`oom` event first when the OOM killer struck), saves (one
transaction), publishes `die` {exitCode, execDuration}, and resolves the stop waiters. An exit
of a container that has no process in our records (a duplicate, a late report) is ignored.

Restart policy: `no` never; `always` always; `unless-stopped` unless stopped by a user;
`on-failure[:n]` on a non-zero code while fewer than n restarts were made (n=0: unlimited).
A kill/stop cancels the next restart (ExitOnNext). The delay starts at 100 ms and doubles up
to one minute; a run of 10 s or more resets it. While waiting the status is `restarting`; a
cancelled or failed restart makes it `exited` (stop waiters resolved, AutoRemove applied).
AutoRemove removes the container after an exit that is not restarted, unless a `docker
restart` is in progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from pymoby import errdefs
from pymoby.daemon.containers import netsetup, runspec
from pymoby.daemon.containers.context import Deps
from pymoby.daemon.containers.lifecycle import start_locked
from pymoby.daemon.containers.model import Container
from pymoby.daemon.containers.state import Event, Status

log = logging.getLogger("pymoby.containers")

BACKOFF_START = 0.1
BACKOFF_MAX = 60.0
RESET_AFTER = 10.0


def should_restart(c: Container, exit_code: int, duration_s: float) -> tuple[bool, float]:
    """(restart?, delay in seconds) as dockerd's RestartManager.ShouldRestart decides."""
    policy = c.host_config.restart_policy
    if policy.name in ("", "no") or c.restart_cancelled:
        return False, 0.0
    delay = c.restart_delay
    if duration_s >= RESET_AFTER:
        delay = 0.0
    delay = BACKOFF_START if delay == 0 else min(delay * 2, BACKOFF_MAX)
    c.restart_delay = delay
    if policy.name == "always":
        return True, delay
    if policy.name == "unless-stopped":
        return not c.manually_stopped, delay
    if policy.name == "on-failure":
        limit = policy.maximum_retry_count
        if limit == 0 or c.restart_count < limit:
            return exit_code != 0, delay
    return False, delay


async def cleanup_runtime(d: Deps, c: Container) -> None:
    """Remove what a run left: runc's state and conmon, the bundle, the rootfs mount, the
    network sandbox. The process is gone (exited, or stopped before): these are independent of
    each other, so side by side."""
    await asyncio.gather(_runtime(d, c), _mount(d, c), netsetup.detach(d, c))


async def _runtime(d: Deps, c: Container) -> None:
    if c.in_runtime:
        try:
            await d.runtime.delete(c.id, force=True)
            c.in_runtime = False
        except errdefs.PymobyError as exc:
            log.error("%s cleanup: failed to delete the container from the runtime: %s", c.id, exc)


async def _mount(d: Deps, c: Container) -> None:
    try:
        await runspec.release(d, c)
    except errdefs.PymobyError as exc:
        log.error("%s cleanup: failed to unmount the root filesystem: %s", c.id, exc)
    await asyncio.to_thread(runspec.remove_bundle, c.bundle)


async def on_exit(d: Deps, cid: str, exit_code: int, oom: bool, finished_ns: int) -> None:
    """The ExitWatcher's callback."""
    c = d.store.by_id(cid)
    if c is None:
        return
    await handle_exit(d, c, exit_code, oom, finished_ns)


async def handle_exit(d: Deps, c: Container, exit_code: int, oom: bool, finished_ns: int) -> None:
    """Record one exit of `c` (see the module rule)."""
    async with c.lock:
        await record_exit_locked(d, c, exit_code, oom, finished_ns)


async def record_exit_locked(
    d: Deps, c: Container, exit_code: int, oom: bool, finished_ns: int
) -> None:
    """`handle_exit` with the container's lock already held."""
    if not c.has_process:
        return
    await cleanup_runtime(d, c)
    now = time.time_ns()
    duration = max(0.0, ((finished_ns or now) - c.state.started_at) / 1e9)
    restart, delay = should_restart(c, exit_code, duration)
    if oom:
        c.state.oom_killed = True
        d.event(c, "oom")
    s = c.state
    s.pid, s.exit_code, s.finished_at = 0, exit_code, finished_ns or now
    if restart:
        c.restart_count += 1
        c.apply(Event.EXIT_RESTART)
    else:
        c.apply(Event.EXIT)
    await d.store.save(c)
    d.event(c, "die", {"exitCode": str(exit_code), "execDuration": str(int(duration))})
    c.notify_stopped()
    if restart:
        c.restart_wakeup = asyncio.get_running_loop().create_future()
        d.spawn(restart_later(d, c, delay, c.restart_wakeup), f"restart of {c.id}")
    elif c.host_config.auto_remove and not c.manually_restarted:
        d.schedule_remove(c)


async def restart_later(d: Deps, c: Container, delay: float, wakeup: asyncio.Future[None]) -> None:
    """Start `c` again after `delay`, unless the restart is cancelled first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(wakeup), delay)
    async with c.lock:
        if c.state.status is not Status.RESTARTING:
            return
        if c.restart_cancelled or wakeup.done() or d.shutting_down:
            c.apply(Event.RESTART_CANCEL)
            await d.store.save(c)
            c.notify_stopped()
            if c.host_config.auto_remove:
                d.schedule_remove(c)
            return
        try:
            await start_locked(d, c, manual=False)
        except errdefs.PymobyError as exc:
            log.error("restart of container %s failed: %s", c.id, exc)
