"""The container manager's facade: what the routes (ContainerBackend) and other managers call.

Rule: no logic of its own. It builds the shared `Deps`, starts the exit watcher BEFORE the
live restore (so no exit is missed between adopting and watching), and forwards each API call
to its module (create, lifecycle, delete, listing, inspect). Other managers use `get`
(dockerd's GetContainer), `image_users` (the image service's in-use hook) and `counts`
(GET /info). `close` leaves every container running (live restore is the default): it only
stops watching and cancels pending restarts and background tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

from pymoby import errdefs
from pymoby.api.filters import Filters
from pymoby.api.types.container_responses import ContainerInspect, ContainerSummary
from pymoby.api.types.containers import Config, EndpointSettings, HostConfig
from pymoby.api.types.images import Platform
from pymoby.daemon.containers import create as create_mod
from pymoby.daemon.containers import (
    delete,
    inspect,
    lifecycle,
    listing,
    monitor,
    names,
    netconnect,
    restore,
)
from pymoby.daemon.containers.context import Deps, Listener, wrap_error
from pymoby.daemon.containers.model import Container
from pymoby.daemon.containers.ports import HostEnv, Images, Layers, Networking, Runtime
from pymoby.daemon.containers.store import ContainerStore
from pymoby.daemon.events import EventBus

log = logging.getLogger("pymoby.containers")


@dataclass(frozen=True)
class Counts:
    running: int
    paused: int
    stopped: int


class ContainerService:
    """See the module docstring."""

    def __init__(
        self,
        store: ContainerStore,
        *,
        runtime: Runtime,
        layers: Layers,
        images: Images,
        events: EventBus,
        env: HostEnv,
        networks: Networking | None = None,
    ) -> None:
        self.store = store
        self.deps = Deps(store, runtime, layers, images, events, env, networks=networks)
        self.deps.remover = self._auto_remove

    # -- life of the manager -----------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Follow containers (call before `start`, so loaded containers are reported)."""
        self.deps.listeners.append(listener)

    async def start(self) -> None:
        """Watch exits, then restore every container (before the API serves)."""
        d = self.deps
        await d.runtime.prepare()
        watcher = d.runtime.watcher(self._on_exit)
        await watcher.start()
        d.watcher = watcher
        await restore.restore(d)

    def _on_exit(self, cid: str, code: int, oom: bool, finished_ns: int) -> Awaitable[None]:
        return monitor.on_exit(self.deps, cid, code, oom, finished_ns)

    async def close(self) -> None:
        """Stop watching; containers keep running (live restore)."""
        d = self.deps
        d.shutting_down = True
        for c in self.store.all():
            if c.restart_wakeup is not None and not c.restart_wakeup.done():
                c.restart_wakeup.set_result(None)
        if d.watcher is not None:
            await d.watcher.close()
            d.watcher = None
        tasks = list(d.tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        await d.runtime.close()

    async def _auto_remove(self, c: Container) -> None:
        await delete.remove_container(self.deps, c, force=True)

    # -- for other managers ------------------------------------------------------------------

    def get(self, name_or_id: str) -> Container:
        """dockerd's GetContainer (errors: `No such container: x`, ...)."""
        return self.store.get(name_or_id)

    def image_users(self, image_id: str) -> list[tuple[str, bool]]:
        """(container ID, running) of the containers of an image; thread-safe."""
        return self.store.image_users(image_id)

    def counts(self) -> Counts:
        running = paused = stopped = 0
        for c in self.store.all():
            if c.paused:
                paused += 1
            elif c.running:
                running += 1
            else:
                stopped += 1
        return Counts(running, paused, stopped)

    # -- ContainerBackend --------------------------------------------------------------------

    async def create(
        self,
        name: str,
        config: Config,
        host_config: HostConfig,
        endpoints: dict[str, EndpointSettings | None],
        platform: Platform | None,
    ) -> tuple[str, list[str]]:
        params = create_mod.CreateParams(name, config, host_config, endpoints, platform)
        return await create_mod.create(self.deps, params)

    async def start_container(self, name: str) -> None:
        await lifecycle.start(self.deps, name)

    async def stop(self, name: str, signal: str, seconds: int | None) -> None:
        await lifecycle.stop(self.deps, name, signal, seconds)

    async def kill(self, name: str, signal: str) -> None:
        await lifecycle.kill(self.deps, name, signal)

    async def restart(self, name: str, signal: str, seconds: int | None) -> None:
        await lifecycle.restart(self.deps, name, signal, seconds)

    async def pause(self, name: str) -> None:
        await lifecycle.pause(self.deps, name)

    async def unpause(self, name: str) -> None:
        await lifecycle.unpause(self.deps, name)

    async def wait(self, name: str, condition: str) -> Awaitable[tuple[int, str]]:
        fut = lifecycle.wait(self.deps, name, condition)

        async def result() -> tuple[int, str]:
            try:
                res = await fut
            except asyncio.CancelledError:
                fut.cancel()
                raise
            return res.exit_code, res.error

        return result()

    async def remove(self, name: str, *, force: bool, volumes: bool, link: bool) -> None:
        await delete.remove(self.deps, name, force=force, volumes=volumes, link=link)

    async def containers(
        self, filters: Filters, *, all: bool, limit: int, size: bool
    ) -> Sequence[ContainerSummary]:
        return await listing.list_containers(self.deps, filters, all=all, limit=limit, size=size)

    async def inspect(self, name: str, *, size: bool) -> ContainerInspect:
        return await inspect.inspect(self.deps, name, size=size)

    async def connect_network(
        self, term: str, container: str, settings: EndpointSettings | None
    ) -> None:
        await netconnect.connect(self.deps, term, container, settings)

    async def disconnect_network(self, term: str, container: str, *, force: bool) -> None:
        await netconnect.disconnect(self.deps, term, container, force=force)

    def network_users(self, network_name: str) -> list[str]:
        return netconnect.users_of(self.deps, network_name)

    async def rename(self, name: str, new_name: str) -> None:
        """POST /containers/{id}/rename (dockerd's ContainerRename, without links)."""
        old_text, new_text = name.strip(), new_name.strip()
        if not old_text.removeprefix("/") or not new_text.removeprefix("/"):
            raise errdefs.InvalidParameter("Neither old nor new names may be empty")
        c = self.store.get(old_text)
        async with c.lock:
            wanted = new_text if new_text.startswith("/") else "/" + new_text
            if c.name == wanted:
                raise errdefs.InvalidParameter(
                    "Renaming a container with the same name as its current name"
                )
            try:
                normalized = names.normalize(new_text)
                old = await self.store.rename(c, normalized)
            except errdefs.PymobyError as exc:
                raise wrap_error(exc, "Error when allocating new name") from None
        self.deps.event(c, "rename", {"oldName": old})
