"""What every part of the container manager shares: the store, the Protocols, the event bus.

Rule: one `Deps` per daemon, built by the service facade; the operation modules (create,
lifecycle, monitor, delete, restore) are functions of it, so they share state without
importing each other in circles. Events are published here, with dockerd's attributes (the
container's labels, `image` as the user named it, `name` without the slash).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pymoby import errdefs
from pymoby.daemon.containers.model import Container
from pymoby.daemon.containers.ports import (
    ExitWatch,
    HostEnv,
    Images,
    Layers,
    Networking,
    Runtime,
)
from pymoby.daemon.containers.store import ContainerStore
from pymoby.daemon.events import EventBus

log = logging.getLogger("pymoby.containers")


class Listener(Protocol):
    """Another manager that follows containers (e.g. the stream side: attach hubs, log rotation).

    `created` is called for each new container and for each container loaded at daemon start
    (before its process is adopted), `restored` for a container found running or paused at
    daemon start, `removed` after a container is gone. Calls are synchronous and must not fail.
    """

    def created(self, c: Container) -> None: ...

    def restored(self, c: Container) -> None: ...

    def removed(self, c: Container) -> None: ...


@dataclass
class Deps:
    store: ContainerStore
    runtime: Runtime
    layers: Layers
    images: Images
    events: EventBus
    env: HostEnv
    watcher: ExitWatch | None = None
    networks: Networking | None = None  # None: the daemon runs without a network layer
    # Removes a container (force): set by the service; used for AutoRemove.
    remover: Callable[[Container], Awaitable[None]] | None = None
    shutting_down: bool = False
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    listeners: list[Listener] = field(default_factory=list)

    def notify(self, what: str, c: Container) -> None:
        """Tell every listener (`created`, `restored` or `removed`); a failure is logged."""
        for listener in self.listeners:
            try:
                getattr(listener, what)(c)
            except Exception:
                log.exception("container listener %s(%s) failed", what, c.id)

    def event(self, c: Container, action: str, attributes: Mapping[str, str] | None = None) -> None:
        self.events.publish_container_event(
            action, c.id, c.name, c.image, labels=c.config.labels, attributes=attributes
        )

    def schedule_remove(self, c: Container) -> None:
        """AutoRemove: remove `c` in the background (errors logged)."""
        if self.remover is not None:
            self.spawn(self.remover(c), f"auto-remove of {c.id}")

    def spawn(
        self, coro: Coroutine[Any, Any, Any] | Awaitable[Any], what: str
    ) -> asyncio.Task[Any]:
        """Run `coro` in the background, kept alive and logged when it fails."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self.tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("%s failed: %s", what, t.exception(), exc_info=t.exception())

        task.add_done_callback(done)
        return task


def wrap_error(exc: errdefs.PymobyError, prefix: str) -> errdefs.PymobyError:
    """errors.Wrapf: the same errdefs kind, the message prefixed."""
    for cls in type(exc).__mro__:
        if cls.__module__ == errdefs.__name__ and issubclass(cls, errdefs.PymobyError):
            return cls(f"{prefix}: {exc.message}")
    return errdefs.System(f"{prefix}: {exc.message}")
