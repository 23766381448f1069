"""The container record: what the engine knows of one container, and its waiters.

Rule: one `Container` object per container lives in the ContainerStore (store.py) for the life
of the daemon; every manager (lifecycle, monitor, the stream side: attach, logs, exec) works on
that same object, on the event loop only. Changes to the persisted fields go through
`ContainerStore.save` (one SQLite transaction each); the status changes only through
`Container.apply(event)` (the TABLE in state.py). Fields marked *transient* are never persisted.

Times are integer nanoseconds since the epoch; 0 is Go's zero time ("0001-01-01T00:00:00Z" on
the wire). Names carry their leading slash, as in dockerd ("/festive_hopper").

Waiting (dockerd's State.Wait): `wait(condition)` returns a future resolved with a WaitResult:
- "not-running": at once when the process is not alive, else at the next stop;
- "next-exit":   at the next stop (an exit, or an exit the restart policy will undo);
- "removed":     when the container is removed (stop waiters are resolved then too).
A waiter registered before `start` therefore sees the exit of that start (`docker run` order).

Start hooks (for attach before start): `start_hooks` are awaited by `start` after the runtime
created the container (conmon's attach socket exists) and before the process is started, so an
attach made before start loses no output. A hook must return quickly (it is given a deadline).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from pymoby.api.types.containers import Config, EndpointSettings, HostConfig
from pymoby.daemon.containers.state import ALIVE, Event, Status, transition
from pymoby.daemon.networks.portmap import PortBinding

WAIT_CONDITIONS = ("not-running", "next-exit", "removed")

StartHook = Callable[["Container"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class WaitResult:
    """What a waiter learns: the exit code and the container's error ("" when none)."""

    exit_code: int
    error: str = ""


@dataclass(slots=True)
class State:
    """The persisted state fields (dockerd's container.State, minus Health for now)."""

    status: Status = Status.CREATED
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    oom_killed: bool = False
    started_at: int = 0  # ns; 0 = never started
    finished_at: int = 0  # ns; 0 = never finished


@dataclass(slots=True)
class MountPoint:
    """One entry of `Mounts` (container inspect and list)."""

    type: str
    source: str
    destination: str
    mode: str = ""
    rw: bool = True
    propagation: str = ""
    name: str = ""
    driver: str = ""


@dataclass(slots=True, eq=False)
class Container:
    """One container. See the module docstring for the rules."""

    id: str
    name: str  # "/name"
    created: int  # ns
    path: str  # the process's executable (entrypoint or cmd[0])
    args: list[str]
    config: Config  # after the merge with the image's config
    host_config: HostConfig
    image_id: str  # "sha256:..." ("" for FROM scratch)
    root: Path  # <data-root>/containers/<id>: hostname, hosts, resolv.conf, the log
    bundle: Path  # <exec-root>/bundles/<id>: config.json for runc
    driver: str = ""  # graph driver name
    platform: str = "linux"
    endpoints: dict[str, EndpointSettings | None] = field(default_factory=dict)
    mounts: list[MountPoint] = field(default_factory=list)
    state: State = field(default_factory=State)
    restart_count: int = 0
    manually_stopped: bool = False  # docker stop/kill: unless-stopped does not restart it
    # The network sandbox while running (daemon.networks.sandbox): its ID, namespace path,
    # published ports and the pid of their userland proxy.
    sandbox_id: str = ""
    sandbox_key: str = ""
    ports: list[PortBinding] = field(default_factory=list)
    proxy_pid: int = 0
    # /etc/hostname, /etc/hosts, /etc/resolv.conf as bind-mounted: set by the first start (the
    # container's own files under `root`, or those of the container whose network it joins).
    hostname_path: str = ""
    hosts_path: str = ""
    resolv_conf_path: str = ""
    mount_label: str = ""
    process_label: str = ""
    app_armor_profile: str = ""
    # -- transient ---------------------------------------------------------------------------
    rootfs: str = ""  # the mounted root filesystem while mounted by us
    in_runtime: bool = False  # conmon/runc hold state for it (created until cleaned up)
    removing: bool = False  # removal in progress (State "removing")
    removed: bool = False
    manually_restarted: bool = False  # docker restart in progress: no AutoRemove on its exit
    exec_ids: list[str] = field(default_factory=list)  # maintained by the exec manager
    start_hooks: list[StartHook] = field(default_factory=list)
    restart_wakeup: asyncio.Future[None] | None = None  # resolved to cancel a pending restart
    restart_cancelled: bool = False  # dockerd's ExitOnNext: the next exit is not restarted
    restart_delay: float = 0.0  # the restart policy's current back-off, seconds
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _stop_waiters: list[asyncio.Future[WaitResult]] = field(default_factory=list)
    _remove_waiters: list[asyncio.Future[WaitResult]] = field(default_factory=list)

    # -- paths -------------------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        """conmon's k8s-file log of the container's output (read by the logs manager)."""
        return self.root / "container.log"

    @property
    def image(self) -> str:
        """The image as the user named it (Config.Image)."""
        return self.config.image

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.config.labels or {})

    # -- dockerd's State booleans ------------------------------------------------------------

    @property
    def running(self) -> bool:
        """dockerd's State.Running: true while running, paused or restarting."""
        return self.state.status in ALIVE

    @property
    def paused(self) -> bool:
        return self.state.status is Status.PAUSED

    @property
    def restarting(self) -> bool:
        return self.state.status is Status.RESTARTING

    @property
    def dead(self) -> bool:
        return self.state.status is Status.DEAD

    @property
    def has_process(self) -> bool:
        """The runtime holds a live process for it (running or paused)."""
        return self.state.status in (Status.RUNNING, Status.PAUSED)

    @property
    def state_name(self) -> str:
        """dockerd's State.State(): created, running, paused, restarting, removing, exited,
        dead."""
        status = self.state.status
        if status in ALIVE:
            return status.value
        if self.removing:
            return "removing"
        if status is Status.DEAD:
            return "dead"
        if self.state.started_at == 0:
            return "created"
        return "exited"

    def exit_on_next(self) -> None:
        """dockerd's ExitOnNext: no restart after the next exit; a pending restart is off."""
        self.restart_cancelled = True
        if self.restart_wakeup is not None and not self.restart_wakeup.done():
            self.restart_wakeup.set_result(None)

    # -- transitions -------------------------------------------------------------------------

    def apply(self, event: Event) -> Status:
        """Move the status along the table; returns the new status. Persisting is the caller's."""
        self.state.status = transition(self.state.status, event)
        return self.state.status

    # -- waiting -----------------------------------------------------------------------------

    def wait(self, condition: str) -> asyncio.Future[WaitResult]:
        """A future for `condition` (see the module docstring); resolved at once when met."""
        fut: asyncio.Future[WaitResult] = asyncio.get_running_loop().create_future()
        if (condition == "not-running" and not self.running) or (
            condition == "removed" and self.removed
        ):
            fut.set_result(self.result())
        elif condition == "removed":
            self._remove_waiters.append(fut)
            fut.add_done_callback(self._forget_waiter)
        else:
            self._stop_waiters.append(fut)
            fut.add_done_callback(self._forget_waiter)
        return fut

    def _forget_waiter(self, fut: asyncio.Future[WaitResult]) -> None:
        """A waiter given up (its client left) leaves the lists at once."""
        if fut.cancelled():
            for waiters in (self._stop_waiters, self._remove_waiters):
                if fut in waiters:
                    waiters.remove(fut)

    def result(self) -> WaitResult:
        return WaitResult(self.state.exit_code, self.state.error)

    def notify_stopped(self) -> None:
        """Resolve the stop waiters (after an exit, or an exit to be restarted)."""
        _resolve(self._stop_waiters, self.result())

    def notify_removed(self) -> None:
        """Mark removed; resolve the removal and stop waiters."""
        self.removed = True
        result = self.result()
        _resolve(self._remove_waiters, result)
        _resolve(self._stop_waiters, result)

    @property
    def waiter_count(self) -> int:
        return sum(not f.done() for f in (*self._stop_waiters, *self._remove_waiters))


def _resolve(waiters: list[asyncio.Future[WaitResult]], result: WaitResult) -> None:
    pending = list(waiters)
    waiters.clear()
    for fut in pending:
        if not fut.done():
            fut.set_result(result)
