"""Composition helper: the stream side of containers (attach, logs, resize, exec, rotation).

Rule: part of the composition root (only daemon/daemon.py calls it). It builds one shared
DirWatcher (one inotify descriptor for log followers and rotation), the log service, the log
rotator (rename, then ask conmon to reopen its log), ContainerStreams and ExecService,
and gives their routes. Wiring, in daemon.py:

    streams = open_streams(containers.store, runtime, events, host_capabilities=caps)
    containers.add_listener(streams.streams)   # before containers.start()
    ... *streams.routes() in the router ...
    await streams.close()                       # at shutdown, before containers.close()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pymoby.daemon.containers.attach import (
    AttachRuntime,
    ContainerLookup,
    ContainerStreams,
    Events,
)
from pymoby.daemon.containers.exec import ExecRuntime, ExecService
from pymoby.daemon.containers.logrotate import LogRotator
from pymoby.daemon.containers.logs import LogService
from pymoby.daemon.containers.logwatch import DirWatcher
from pymoby.server.router import Route
from pymoby.server.routes import container_streams
from pymoby.server.routes import exec as exec_routes


class StreamRuntime(AttachRuntime, ExecRuntime, Protocol):
    """runtime.conmon.Runtime as the stream side uses it."""

    async def reopen_log(self, cid: str) -> None: ...


@dataclass
class StreamManagers:
    watcher: DirWatcher
    logs: LogService
    rotator: LogRotator
    streams: ContainerStreams
    execs: ExecService

    def routes(self) -> list[Route]:
        return [*container_streams.routes(self.streams), *exec_routes.routes(self.execs)]

    async def close(self) -> None:
        await self.execs.close()
        await self.streams.close()
        await self.rotator.close()
        self.watcher.close()


def open_streams(
    store: ContainerLookup,
    runtime: StreamRuntime,
    events: Events,
    *,
    host_capabilities: tuple[str, ...] | None = None,
) -> StreamManagers:
    """Build the stream managers (call on the event loop, before the containers start)."""
    watcher = DirWatcher()
    logs = LogService(watcher)
    rotator = LogRotator(watcher, runtime.reopen_log)
    streams = ContainerStreams(store, runtime, events, logs, rotator=rotator)
    execs = ExecService(store, runtime, events, host_capabilities=host_capabilities)
    execs.start_gc()
    return StreamManagers(watcher, logs, rotator, streams, execs)
