"""Live restore: at daemon start, take every container back from conmon, runc and the files.

Rule: containers outlive the daemon (conmon holds them). Before the API serves, `restore` loads
every row and, for each container our records say has a process (running or paused), asks the
runtime what became of it (`Runtime.adopt`: conmon's pid and exit file, `runc state`) under the
container's lock, with the exit watcher already running (so no exit falls between the two):
- still running or paused, conmon alive: adopted as is (pid, paused, the rootfs mount counted);
- exited while we were away: the true exit code, OOM flag and finish time are recorded as a
  normal exit (runtime cleaned, `die` published, AutoRemove and the restart policy applied);
- running without its conmon (nobody could record its exit) or only `created` in runc (the
  daemon died inside a start): killed and cleaned, recorded as exited 137 / 128 with an error;
- unknown to runc and without an exit file: recorded as exited 255 (dockerd's unknown code).
Then: `dead` containers (a removal was interrupted) are removed; containers whose restart
policy asks for it (dockerd's ShouldRestart: `always`, `unless-stopped` unless stopped by a
user, `on-failure` after a failure) are started; stopped AutoRemove containers are removed;
RW layers without a row (a crash inside create) and runc containers without a process in our
records (a crash inside create or start) go, with the mount such a start left. The network
sandboxes of adopted containers are re-adopted (proxies, DNS, port rules); endpoints and
namespaces of containers no longer running are swept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal as _signal
import time
from pathlib import Path

from pymoby import errdefs
from pymoby.daemon.containers import netsetup
from pymoby.daemon.containers.context import Deps
from pymoby.daemon.containers.lifecycle import start_locked
from pymoby.daemon.containers.model import Container
from pymoby.daemon.containers.monitor import record_exit_locked, should_restart
from pymoby.daemon.containers.state import Event, Status

log = logging.getLogger("pymoby.containers")

EXIT_UNKNOWN = 255
EXIT_KILLED = 128 + int(_signal.SIGKILL)
EXIT_START_INTERRUPTED = 128


async def restore(d: Deps) -> list[Container]:
    """Load and reconcile every container (see the module rule); returns them."""
    loaded = await d.store.load()
    for c in loaded:
        d.notify("created", c)
    await _remove_orphan_layers(d)
    await _remove_orphan_runtime_state(d)
    await asyncio.gather(*(_adopt(d, c) for c in loaded if c.has_process))
    if d.networks is not None:
        alive = [c for c in loaded if c.has_process]
        await d.networks.sweep(
            {c.id for c in alive}, {Path(c.sandbox_key).name for c in alive if c.sandbox_key}
        )
    for c in loaded:
        if c.has_process:
            d.notify("restored", c)
    for c in loaded:
        if c.dead:
            await _remove(d, c)
    for c in loaded:
        if d.store.by_id(c.id) is None or c.has_process:
            continue
        if c.state.status is Status.RESTARTING or (c.state.started_at != 0 and _policy_restarts(c)):
            d.spawn(_start_again(d, c), f"restart of {c.id} at daemon start")
        elif c.host_config.auto_remove and c.state.started_at != 0:
            d.schedule_remove(c)
    return loaded


def _policy_restarts(c: Container) -> bool:
    if c.host_config.restart_policy.name in ("", "no"):
        return False
    duration = max(0.0, (c.state.finished_at - c.state.started_at) / 1e9)
    restart, _ = should_restart(c, c.state.exit_code, duration)
    return restart


async def _adopt(d: Deps, c: Container) -> None:
    async with c.lock:
        try:
            adopted = await d.runtime.adopt(c.id)
        except errdefs.PymobyError as exc:
            log.error("restoring container %s: %s", c.id, exc)
            adopted = None
        c.in_runtime = True
        try:
            c.rootfs = str(await asyncio.to_thread(d.layers.mount, c.id))
        except errdefs.PymobyError as exc:
            log.error("restoring the root filesystem mount of %s: %s", c.id, exc)
        if adopted is None or adopted.status == "gone":
            c.state.error = "the container's process was lost while the daemon was down"
            await record_exit_locked(d, c, EXIT_UNKNOWN, False, time.time_ns())
            return
        if adopted.status == "exited":
            code = adopted.exit_code if adopted.exit_code is not None else EXIT_UNKNOWN
            await record_exit_locked(d, c, code, adopted.oom, adopted.finished_at_ns)
            return
        if adopted.status == "created" or not adopted.conmon_alive:
            await _kill_orphan(d, c, adopted.status == "created")
            return
        c.state.pid = adopted.pid
        if adopted.status == "paused" and c.state.status is Status.RUNNING:
            c.apply(Event.PAUSE)
        elif adopted.status == "running" and c.state.status is Status.PAUSED:
            c.apply(Event.UNPAUSE)
        await netsetup.restore(d, c)
        await d.store.save(c)
        log.info("restored container %s (%s, pid %d)", c.id, c.state.status.value, c.state.pid)


async def _kill_orphan(d: Deps, c: Container, starting: bool) -> None:
    with contextlib.suppress(errdefs.PymobyError):
        await d.runtime.kill(c.id, int(_signal.SIGKILL), all=True)
    if starting:
        c.state.error = "the daemon stopped while the container was starting"
        code = EXIT_START_INTERRUPTED
    else:
        c.state.error = "the container's monitor (conmon) was gone; the container was killed"
        code = EXIT_KILLED
    await record_exit_locked(d, c, code, False, time.time_ns())


async def _start_again(d: Deps, c: Container) -> None:
    async with c.lock:
        if (c.running and not c.restarting) or c.removing or c.dead:
            return
        try:
            await start_locked(d, c, manual=False)
        except errdefs.PymobyError as exc:
            log.error("failed to restart container %s at daemon start: %s", c.id, exc)


async def _remove(d: Deps, c: Container) -> None:
    if d.remover is None:
        return
    try:
        await d.remover(c)
    except errdefs.PymobyError as exc:
        log.error("removing dead container %s: %s", c.id, exc)


async def _remove_orphan_layers(d: Deps) -> None:
    known = set(d.store.ids())
    try:
        layers = await asyncio.to_thread(d.layers.all)
    except errdefs.PymobyError as exc:
        log.error("listing container layers: %s", exc)
        return
    for rw in layers:
        if rw.id in known:
            continue
        log.warning("removing the RW layer of %s: no such container (interrupted create)", rw.id)
        try:
            await asyncio.to_thread(d.layers.remove, rw.id)
        except errdefs.PymobyError as exc:
            log.error("removing orphan RW layer %s: %s", rw.id, exc)


async def _remove_orphan_runtime_state(d: Deps) -> None:
    """runc containers that no row knows, or whose row has no process (a create or start the
    daemon died inside of): killed, deleted, and their root filesystem unmounted."""
    try:
        states = await d.runtime.list()
    except errdefs.PymobyError as exc:
        log.error("listing the runtime's containers: %s", exc)
        return
    for st in states:
        c = d.store.by_id(st.id)
        if c is not None and c.has_process:
            continue
        log.warning("removing runtime state of %s: no container with a process", st.id)
        try:
            await d.runtime.delete(st.id, force=True)
        except errdefs.PymobyError as exc:
            log.error("removing the runtime state of %s: %s", st.id, exc)
        if c is not None:
            try:  # adopt the mount an interrupted start left (if any), then drop it
                await asyncio.to_thread(d.layers.mount, c.id)
                await asyncio.to_thread(d.layers.unmount, c.id)
            except errdefs.PymobyError as exc:
                log.error("unmounting the root filesystem of %s: %s", c.id, exc)
