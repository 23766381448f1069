"""What the container manager needs from below, as Protocols, and the host facts it is given.

Rule: the container manager reaches the runtime (conmon + runc), the layer store and the image
store only through these Protocols; daemon/daemon.py passes the real ones (runtime.conmon.Runtime,
store.rwlayers.RWLayerStore, store.images.ImageStore), unit tests pass fakes. `HostEnv` holds the
daemon settings and host facts used at create and start; nothing in daemon/containers probes the
host itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pymoby.api.types.containers import EndpointSettings
from pymoby.daemon.networks.sandbox import SandboxRequest, SandboxState
from pymoby.runtime.conmon import AdoptedState
from pymoby.runtime.exits import ExitStatus, OnExit
from pymoby.runtime.runc import RuncState
from pymoby.runtime.validate import DaemonDefaults, HostLimits
from pymoby.store.images import ImageRecord
from pymoby.store.rwlayers import InitFunc, RWLayer


class ExitWatch(Protocol):
    """runtime.exits.ExitWatcher: reports each exit once, at once."""

    async def start(self) -> None: ...

    async def check(self, cid: str) -> ExitStatus | None: ...

    def forget(self, cid: str) -> None: ...

    async def close(self) -> None: ...


class Networking(Protocol):
    """daemon.networks.sandbox.Sandboxes: sandboxes of running containers."""

    def network_name(self, term: str) -> str: ...

    async def setup(
        self, req: SandboxRequest
    ) -> tuple[SandboxState, dict[str, EndpointSettings]]: ...

    async def teardown(self, container_id: str, state: SandboxState) -> None: ...

    async def restore(
        self, container_id: str, state: SandboxState, dns_servers: Sequence[str]
    ) -> None: ...

    async def connect(
        self, req: SandboxRequest, state: SandboxState, term: str, settings: EndpointSettings
    ) -> tuple[str, EndpointSettings]: ...

    async def disconnect(self, container_id: str, term: str) -> str: ...

    async def sweep(self, running: set[str], keep: set[str]) -> None: ...


class Runtime(Protocol):
    """runtime.conmon.Runtime: containers under conmon + runc (the subset used here)."""

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
    ) -> int: ...

    async def start(self, cid: str) -> None: ...

    async def kill(self, cid: str, signal: int | str = 15, *, all: bool = False) -> None: ...

    async def pause(self, cid: str) -> None: ...

    async def resume(self, cid: str) -> None: ...

    async def delete(self, cid: str, force: bool = False) -> None: ...

    async def read_exit(self, cid: str) -> ExitStatus | None: ...

    async def adopt(self, cid: str) -> AdoptedState: ...

    def watcher(self, on_exit: OnExit) -> ExitWatch: ...

    async def list(self) -> list[RuncState]: ...

    async def prepare(self) -> None: ...

    async def close(self) -> None: ...


class Layers(Protocol):
    """store.rwlayers.RWLayerStore (blocking: called in a worker thread)."""

    def create(
        self, container_id: str, parent: str | None, *, init: InitFunc | None = None
    ) -> RWLayer: ...

    def mount(self, container_id: str) -> Path: ...

    def unmount(self, container_id: str) -> None: ...

    def remove(self, container_id: str) -> None: ...

    def metadata(self, container_id: str) -> dict[str, str]: ...

    def all(self) -> list[RWLayer]: ...

    def diff_paths(self, container_id: str) -> tuple[Path, Path | None]: ...


class Images(Protocol):
    """The image store: what `docker run x` names, and the size of an image's layers."""

    async def resolve(self, ref_or_id: str) -> ImageRecord: ...

    async def get(self, image_id: str) -> ImageRecord: ...


@dataclass(frozen=True)
class HostEnv:
    """Daemon settings and host facts for create-time checks and the OCI spec."""

    data_root: Path
    exec_root: Path
    limits: HostLimits
    defaults: DaemonDefaults = field(default_factory=DaemonDefaults)
    goarch: str = "amd64"
    kernel: tuple[int, int] = (5, 10)
    seccomp_enabled: bool = True
    host_capabilities: tuple[str, ...] | None = None
    init_path: str | None = None  # docker-init on the host, for --init
    cgroup_parent: str = ""
    systemd_cgroup: bool = False
    storage_driver: str = ""
    changes_mode: str = "overlay"  # the graph driver's ("overlay" or "compare")
    stop_timeout: int = 10  # dockerd's DefaultStopTimeout
    hostname: Callable[[], str] = field(default=lambda: "localhost")
    time_namespace: bool = False
    rro_error: str | None = None  # why recursive read-only mounts are unavailable (None: they are)
    chain_size: Callable[[str], int] | None = None  # bytes of an image chain (SizeRootFs)
    dns: tuple[str, ...] = ()  # the daemon's --dns, --dns-search, --dns-opt
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    host_gateway: Callable[[], str] = field(default=lambda: "")  # --add-host x:host-gateway
