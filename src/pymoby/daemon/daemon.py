"""The composition root: builds stores, managers and the API server from a Config; no logic.

Rule: nothing imports this module. Start order: locks (pidfile + data-root), directories,
metadata store (engine ID), event bus, managers, routes, listeners. Stop order is the reverse:
stop accepting, end streams, give in-flight requests `shutdown-timeout` seconds, close the
database. SIGTERM/SIGINT stop; SIGHUP reloads the reloadable keys and emits `daemon reload`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Collection, Coroutine
from pathlib import Path
from typing import Any, cast

import uvloop

import pymoby
from pymoby import archive, errdefs
from pymoby import log as logsetup
from pymoby.api import versions
from pymoby.api.types.system import DiskUsage, Info, Version
from pymoby.api.versions import ApiVersion
from pymoby.daemon import config as configmod
from pymoby.daemon.config import Config, ConfigError
from pymoby.daemon.container_env import open_containers
from pymoby.daemon.containers.service import ContainerService
from pymoby.daemon.events import EventBus
from pymoby.daemon.images.save import TarSizes
from pymoby.daemon.images.service import ImageService, image_users
from pymoby.daemon.network_api import NetworkAPI
from pymoby.daemon.network_env import NetworkLayer, open_networks
from pymoby.daemon.pidfile import AlreadyRunning, DaemonLock
from pymoby.daemon.stream_env import StreamManagers, StreamRuntime, open_streams
from pymoby.daemon.system import InfoCounts, SystemService
from pymoby.server import listeners
from pymoby.server.http import ConnectionTracker
from pymoby.server.middleware import ServerInfo, build_app
from pymoby.server.router import Router
from pymoby.server.routes import containers as container_routes
from pymoby.server.routes import images as image_routes
from pymoby.server.routes import networks as network_routes
from pymoby.server.routes import system as system_routes
from pymoby.server.tls import server_context
from pymoby.store import graphdriver
from pymoby.store.images import ImageStore
from pymoby.store.layers import LayerStore
from pymoby.store.meta import MetaStore

log = logging.getLogger("pymoby.daemon")

DB_NAME = "meta.db"


class _SystemBackend:
    """SystemBackend over SystemService, with the counts of the managers that exist."""

    def __init__(
        self, service: SystemService, images: ImageService, containers: ContainerService
    ) -> None:
        self._service = service
        self._images = images
        self._containers = containers

    async def version(self) -> Version:
        return await self._service.version()

    async def info(self) -> Info:
        n = self._containers.counts()
        counts = InfoCounts(
            containers_running=n.running,
            containers_paused=n.paused,
            containers_stopped=n.stopped,
            images=await self._images.count(),
        )
        return await self._service.info(counts)

    async def disk_usage(self, types: Collection[str], api: ApiVersion) -> DiskUsage:
        return await self._service.disk_usage(list(types), api)


class Daemon:
    """One running engine: what `run` starts and stops."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store: MetaStore | None = None
        self.engine_id = ""
        self.events = EventBus()
        self.system: SystemService | None = None
        self.images: ImageService | None = None
        self.containers: ContainerService | None = None
        self.networks: NetworkLayer | None = None
        self.streams: StreamManagers | None = None
        self.tracker = ConnectionTracker()
        self.servers: list[asyncio.Server] = []
        self.stopping = asyncio.Event()
        self._reloading: asyncio.Task[None] | None = None

    async def start(self) -> None:
        cfg = self.config
        await asyncio.to_thread(_make_dirs, cfg)
        self.store = await asyncio.to_thread(MetaStore.open, Path(cfg.data_root) / DB_NAME)
        self.engine_id = await asyncio.to_thread(self.store.engine_id)
        self.images = await open_images(cfg, self.store, self.events)
        self.networks = await open_networks(cfg, self.store, self.events)
        self.containers = await open_containers(
            cfg, self.store, self.events, self.images.layers, self.networks
        )
        self.images.in_use_by = image_users(self.containers.image_users)
        self.streams = open_streams(
            self.containers.store,
            cast(StreamRuntime, self.containers.deps.runtime),
            self.events,
            host_capabilities=self.containers.deps.env.host_capabilities,
        )
        self.containers.add_listener(self.streams.streams)  # before start: restored ones too
        await self.containers.start()  # watch exits, then live-restore every container
        driver = self.images.layers.driver
        self.system = SystemService(
            engine_id=self.engine_id,
            data_root=cfg.data_root,
            name=socket.gethostname(),
            labels=cfg.labels,
            debug=cfg.debug,
            experimental=cfg.experimental,
            live_restore=True,
            default_runtime=cfg.default_runtime,
            hosts=[str(h) for h in cfg.hosts],
            tls=cfg.tls or cfg.tlsverify,
            tls_verify=cfg.tlsverify,
            event_listeners=lambda: self.events.subscriber_count,
            storage_driver=driver.name,
            driver_status=driver.status(),
            usage={"image": self.images.disk_usage},
        )
        router = Router(
            [
                *system_routes.routes(
                    _SystemBackend(self.system, self.images, self.containers), self.events
                ),
                *image_routes.routes(self.images),
                *container_routes.routes(self.containers),
                *network_routes.routes(NetworkAPI(self.networks.service, self.containers)),
                *self.streams.routes(),
            ]
        )
        info = ServerInfo(
            version=pymoby.__version__,
            min_api=versions.MIN,
            max_api=versions.MAX,
            experimental=lambda: self.config.experimental,
            debug=lambda: self.config.debug,
        )
        tls = None
        if cfg.tls or cfg.tlsverify:
            tls = await asyncio.to_thread(
                server_context,
                Path(cfg.tlscert),
                Path(cfg.tlskey),
                Path(cfg.tlscacert) if cfg.tlsverify and cfg.tlscacert else None,
                verify=cfg.tlsverify,
            )
        for host, warning in configmod.insecure_tcp_warnings(cfg):
            log.warning("%s (%s)", warning, host)
        self.servers = await listeners.start(
            [listeners.Listen(h.scheme, h.address) for h in cfg.hosts],
            build_app(router, info),
            self.tracker,
            tls=tls,
            group=cfg.group,
        )
        log.info("Daemon has completed initialization")

    def install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)

    def _on_stop_signal(self, sig: int) -> None:
        log.info("Processing signal '%s'", signal.Signals(sig).name)
        self.stopping.set()

    def _on_reload_signal(self) -> None:
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.get_running_loop().create_task(self.reload())

    async def reload(self) -> None:
        """Re-read daemon.json; apply the reloadable keys; emit `daemon reload`."""
        try:
            new, changed = await asyncio.to_thread(configmod.reload, self.config)
        except ConfigError as exc:
            log.error("Error reconfiguring the daemon: %s", exc)
            return
        self.config = new
        logsetup.set_level(new.effective_log_level)
        if self.system is not None:
            self.system.debug = new.debug
            self.system.labels = list(new.labels)
        attributes = _reload_attributes(new)
        self.events.publish_reload(self.engine_id, attributes)
        log.info("Reloaded configuration: %s", json.dumps(changed, default=str, sort_keys=True))

    async def stop(self) -> None:
        await listeners.stop(self.servers)
        self.servers = []
        self.events.close()
        await self.tracker.shutdown(float(self.config.shutdown_timeout))
        if self.streams is not None:
            await self.streams.close()
            self.streams = None
        if self.containers is not None:  # containers keep running (live restore)
            await self.containers.close()
            self.containers = None
        if self.networks is not None:  # bridges, rules, proxies stay for the containers
            await self.networks.close()
            self.networks = None
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
            self.store = None
        log.info("Daemon shutdown complete")


async def open_images(cfg: Config, store: MetaStore, events: EventBus) -> ImageService:
    """Graph driver, layer store (extraction and tar-split from pymoby.archive), image service."""
    sizes = TarSizes()

    def extract(stream: Any, target: Path, whiteouts: Any, tarsplit: Any) -> archive.LayerStats:
        stats = archive.apply_layer(stream, target, whiteouts=whiteouts, tarsplit_out=tarsplit)
        sizes.record(stats.diff_id, stats.tar_size)
        if whiteouts == "overlay":  # overlay2 sizes a layer like du (symlinks count), as dockerd
            stats = dataclasses.replace(stats, size=archive.directory_size(target))
        return stats

    def open_layers() -> LayerStore:
        data_root = Path(cfg.data_root)
        driver = graphdriver.new_driver(cfg.storage_driver, data_root)
        root = data_root / "image" / driver.name
        return LayerStore.open(
            store, driver, root, extractor=extract, reassembler=archive.reassemble
        )

    layers = await asyncio.to_thread(open_layers)
    tmp_root = Path(cfg.data_root) / "tmp"
    service = ImageService(ImageStore(store), layers, events, tmp_root=tmp_root, tar_sizes=sizes)
    await service.start()
    return service


def _make_dirs(cfg: Config) -> None:
    os.makedirs(cfg.data_root, mode=0o711, exist_ok=True)
    os.makedirs(cfg.exec_root, mode=0o700, exist_ok=True)


def _reload_attributes(cfg: Config) -> dict[str, str]:
    """The attributes of the `daemon reload` event, as dockerd reports the reloadable keys."""
    return {
        "debug": "true" if cfg.debug else "false",
        "labels": json.dumps(list(cfg.labels), separators=(",", ":")),
        "live-restore": "true",
        "default-runtime": cfg.default_runtime,
        "shutdown-timeout": str(cfg.shutdown_timeout),
    }


async def serve(config: Config) -> int:
    daemon = Daemon(config)
    try:
        await daemon.start()
    except errdefs.PymobyError as exc:
        log.error("failed to start daemon: %s", exc)
        await daemon.stop()
        return 1
    daemon.install_signals()
    await daemon.stopping.wait()
    await daemon.stop()
    return 0


def _run_loop(main: Coroutine[Any, Any, int]) -> int:
    """The event loop is uvloop's (a pinned dependency; DESIGN: measured faster)."""
    result: int = uvloop.run(main)
    return result


def run(config: Config) -> int:
    """Hold the locks, serve until a stop signal; the process exit status."""
    lock = DaemonLock(config.pidfile, config.data_root)
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        print(f"failed to start daemon: {exc}", file=sys.stderr)
        return 1
    try:
        with contextlib.suppress(KeyboardInterrupt):
            return _run_loop(serve(config))
        return 0
    finally:
        lock.release()
