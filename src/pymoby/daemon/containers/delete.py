"""DELETE /containers/{id}: dockerd's containerRm + cleanupContainer.

Rule: one removal at a time per container (`removing`, State "removing"). A running container
needs `force` (then SIGKILL and wait); anything left of a run is cleaned (runtime state, mount,
bundle). The status becomes `dead` and is saved BEFORE files go, so a crash mid-removal leaves a
dead container that the next start removes (restore.py). Then the RW layer, the container's
directory, the row (one transaction); the name is released, removal waiters resolved, and
`destroy` published. A failure after `dead` records the error and leaves the container dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil

from pymoby import errdefs
from pymoby.daemon.containers import links, runspec
from pymoby.daemon.containers.context import Deps
from pymoby.daemon.containers.lifecycle import NotRunning, kill_container, stop_container
from pymoby.daemon.containers.model import Container
from pymoby.daemon.containers.monitor import cleanup_runtime
from pymoby.daemon.containers.state import Event

log = logging.getLogger("pymoby.containers")


async def remove(d: Deps, name: str, *, force: bool, volumes: bool, link: bool) -> None:
    """DELETE /containers/{id}?force=&v=&link=."""
    if link:
        await links.remove_link(d, name)
        return
    c = d.store.get(name)
    if c.removing:
        raise errdefs.Conflict(f"removal of container {name} is already in progress")
    await remove_container(d, c, force=force, name=name)


async def remove_container(d: Deps, c: Container, *, force: bool, name: str = "") -> None:
    """Remove `c` (see the module rule); `name` is what the user called it, for messages."""
    if c.removing or c.removed:
        return
    c.removing = True
    try:
        await _cleanup(d, c, force=force, name=name or c.id)
    finally:
        c.removing = False


async def _cleanup(d: Deps, c: Container, *, force: bool, name: str) -> None:
    if c.running:
        if not force:  # current dockerd's wording (daemon/delete.go)
            raise errdefs.Conflict(
                f"container is {c.state_name}: stop the container before removing or force remove"
            )
        try:
            await kill_container(d, c)
        except NotRunning:
            pass
        except errdefs.PymobyError as exc:
            raise errdefs.System(f"Could not kill running container {c.id}, cannot remove - "
                                 f"{exc.message}") from None  # fmt: skip
    await stop_container(d, c, seconds=3)
    async with c.lock:
        await cleanup_runtime(d, c)
        c.apply(Event.MARK_DEAD)
        await d.store.save(c)
    try:
        await asyncio.to_thread(_remove_files, d, c)
    except (errdefs.PymobyError, OSError) as exc:
        message = exc.message if isinstance(exc, errdefs.PymobyError) else str(exc)
        c.state.error = message
        await d.store.save(c)
        raise errdefs.System(f"cannot remove container {name!r}: {message}") from None
    await d.store.remove(c)
    c.notify_removed()
    d.notify("removed", c)
    d.event(c, "destroy")


def _remove_files(d: Deps, c: Container) -> None:
    with contextlib.suppress(errdefs.NotFound):
        d.layers.remove(c.id)
    shutil.rmtree(c.root, ignore_errors=True)
    runspec.remove_bundle(c.bundle)
    if c.root.exists():
        raise errdefs.System(f"unable to remove filesystem: {c.root} still exists")
