"""Attach: clients share one conmon attach session per container run (dockerd's stream config).

Rules:
- A container's `Hub` holds at most one connection to conmon's attach socket and fans the
  output out to every attached client; stdin from clients goes through one queue. conmon closes
  a container's stdin when *any* of its attach connections closes (unless created with
  --leave-stdin-open, i.e. without StdinOnce), so clients never get their own connection:
  stdin is closed only when dockerd closes it.
- A client attached to a container that is not running waits for its next start: the start
  hook (`ContainerStreams.start_hook`, run after conmon created the container and before the
  process starts) connects the hub, so no output of that run is lost; stdin sent before is
  queued and written then. A client attached to a running container sees output from now on.
  The run's end (conmon closes the connection after the last output) ends every client of it.
- The hub disconnects when its last client leaves, except for a StdinOnce container with
  stdin (closing would close that stdin); it then stays until the run ends.
- Per client, as dockerd's CopyStreams: with `logs` the log is replayed first (the client is
  subscribed before, so nothing is missed; a line may come twice); the `attach` event follows.
  Stdin is read only if the client asked for it and the container has OpenStdin. At stdin's
  end, a StdinOnce non-TTY container's stdin is closed and output keeps flowing; otherwise this
  client's attach ends. With a TTY the detach keys end the attach (`detach` event). A
  StdinOnce non-TTY attach returns only once the container stopped (or the client left).
- Checks before the hijack, with dockerd's messages: `Invalid detach keys (x) provided` (400),
  No such container (404), paused or restarting (409).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pymoby import errdefs
from pymoby.daemon.containers.logrotate import LogRotator, rotation_policy
from pymoby.daemon.containers.logs import LogService
from pymoby.daemon.containers.model import Container
from pymoby.daemon.containers.stdio import (
    DEFAULT_DETACH_KEYS,
    EscapeScanner,
    Outbox,
    StdinQueue,
    parse_detach_keys,
)
from pymoby.server.backends import AttachOptions, LogsOptions, LogStream, StdioClient

log = logging.getLogger("pymoby.attach")

STDOUT, STDERR = 1, 2
START_POLL = 0.25  # how often a waiting client looks whether the container started anyway


class ConmonAttach(Protocol):
    """runtime.attach.AttachSession: one connection to conmon's attach socket."""

    async def read(self) -> tuple[int, bytes] | None: ...

    async def write(self, data: bytes) -> None: ...

    def close_stdin(self) -> None: ...

    def close(self) -> None: ...


Connect = Callable[[str], Awaitable[ConmonAttach]]


class Subscriber:
    """One attached client's place in a hub."""

    def __init__(self, stdout: bool, stderr: bool) -> None:
        self.outbox = Outbox()
        self.streams = {s for s, on in ((STDOUT, stdout), (STDERR, stderr)) if on}


class Hub:
    """One container's shared stdio (module docstring)."""

    def __init__(self, cid: str, connect: Connect, *, keep_open: bool) -> None:
        self.cid = cid
        self._connect = connect
        self.keep_open = keep_open
        self.waiting: set[Subscriber] = set()
        self.active: set[Subscriber] = set()
        self.stdin = StdinQueue()
        self.session: ConmonAttach | None = None
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.on_idle: Callable[[Hub], None] = lambda hub: None

    @property
    def connected(self) -> bool:
        return self.session is not None

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.active and self.session is None

    def subscribe(self, stdout: bool, stderr: bool) -> Subscriber:
        sub = Subscriber(stdout, stderr)
        self.waiting.add(sub)
        return sub

    async def activate(self, sub: Subscriber) -> None:
        """`sub` joins the current run (connecting to conmon if needed)."""
        await self.connect()
        if sub in self.waiting and self.session is None:
            self.waiting.discard(sub)
            sub.outbox.end()  # no conmon to attach to: the run is over

    async def connect(self) -> None:
        """Connect to conmon now; waiting subscribers join this run."""
        async with self._lock:
            if self.session is None:
                try:
                    session = await self._connect(self.cid)
                except errdefs.PymobyError as exc:
                    log.debug("attach to %s: %s", self.cid, exc)
                    return
                self.session = session
                loop = asyncio.get_running_loop()
                self._reader = loop.create_task(self._read(session))
                self._writer = loop.create_task(self._write(session))
            self.active |= self.waiting
            self.waiting.clear()

    def unsubscribe(self, sub: Subscriber) -> None:
        sub.outbox.close()
        self.waiting.discard(sub)
        self.active.discard(sub)
        if self.waiting or self.active:
            return
        if self.session is not None and not self.keep_open:
            self._disconnect()
        self._check_idle()

    def _check_idle(self) -> None:
        if self.idle:
            self.on_idle(self)

    def _disconnect(self) -> None:
        for task in (self._reader, self._writer):
            if task is not None:
                task.cancel()
        self._reader = self._writer = None
        if self.session is not None:
            self.session.close()
            self.session = None
        self.stdin.reset()

    async def _read(self, session: ConmonAttach) -> None:
        try:
            while (item := await session.read()) is not None:
                stream, data = item
                for sub in list(self.active):
                    if stream in sub.streams:
                        await sub.outbox.put(stream, data)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reading the attach socket of %s", self.cid)
        if self.session is session:  # the run ended: its clients end with it
            for sub in self.active:
                sub.outbox.end()
            self.active.clear()
            if self._writer is not None:
                self._writer.cancel()
            self._reader = self._writer = None
            session.close()
            self.session = None
            self.stdin.reset()
            self._check_idle()

    async def _write(self, session: ConmonAttach) -> None:
        while True:
            data = await self.stdin.get()
            if data is None:
                session.close_stdin()
                return
            try:
                await session.write(data)
            except (errdefs.PymobyError, OSError) as exc:  # stdin closed: drop the input
                log.debug("stdin of %s: %s", self.cid, exc)


class AttachSession:
    """One client's attach to one container (the AttachStream the route runs)."""

    def __init__(
        self,
        streams: ContainerStreams,
        c: Container,
        options: AttachOptions,
        keys: bytes,
    ) -> None:
        self._streams = streams
        self._c = c
        self._options = options
        self._keys = keys

    @property
    def tty(self) -> bool:
        return self._c.config.tty

    async def run(self, client: StdioClient) -> None:
        c, opts = self._c, self._options
        hub: Hub | None = None
        sub: Subscriber | None = None
        if opts.stream:
            hub = self._streams.hub(c)
            sub = hub.subscribe(opts.stdout, opts.stderr)
        try:
            if hub is not None and sub is not None and c.has_process:
                await hub.activate(sub)  # output queues up while the log is replayed
            if opts.logs:
                await self._replay(client)
            self._streams.event(c, "attach")
            if hub is None or sub is None:
                return
            await self._stream(client, hub, sub)
        finally:
            if hub is not None and sub is not None:
                hub.unsubscribe(sub)
        if opts.stream and c.config.stdin_once and not c.config.tty and c.running:
            stopped: asyncio.Future[Any] = c.wait("not-running")
            gone: asyncio.Future[Any] = asyncio.ensure_future(client.wait_closed())
            try:
                await asyncio.wait([stopped, gone], return_when=asyncio.FIRST_COMPLETED)
            finally:
                gone.cancel()
                stopped.cancel()

    async def _replay(self, client: StdioClient) -> None:
        wanted = {"stdout": STDOUT if self._options.stdout else 0}
        wanted["stderr"] = STDERR if self._options.stderr else 0
        self._streams.log_service.check(self._c)  # `none` driver: "Error attaching: ..."
        batches = self._streams.log_service.lines(self._c)
        try:
            async for batch in batches:
                for line in batch:
                    number = wanted.get(line.stream, 0)
                    if number:
                        await client.write(number, line.data)
        finally:
            await batches.aclose()  # type: ignore[attr-defined]

    async def _stream(self, client: StdioClient, hub: Hub, sub: Subscriber) -> None:
        c = self._c
        loop = asyncio.get_running_loop()
        output = loop.create_task(self._pump_output(client, sub))
        gone = loop.create_task(client.wait_closed())
        removed = c.wait("removed")
        tasks: set[asyncio.Future[Any]] = {output, gone, removed}
        stdin: asyncio.Task[str] | None = None
        if self._options.stdin and c.config.open_stdin:
            stdin = loop.create_task(self._pump_stdin(client, hub))
            tasks.add(stdin)
        starter = loop.create_task(self._watch_start(hub, sub))
        try:
            while True:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                if output in done or gone in done or removed in done:
                    return
                if stdin is not None and stdin in done:
                    tasks.discard(stdin)
                    how = stdin.result()
                    if how == "detach":
                        self._streams.event(c, "detach")
                        return
                    if not (c.config.stdin_once and not c.config.tty):
                        return  # dockerd closes this client's output when its stdin ends
        finally:
            for task in (output, gone, starter, stdin):
                if task is not None:
                    task.cancel()
            removed.cancel()  # not left waiting in the container's list
            for task in (output, gone, starter, stdin):
                if task is not None:
                    with contextlib.suppress(BaseException):
                        await task

    async def _pump_output(self, client: StdioClient, sub: Subscriber) -> None:
        while (item := await sub.outbox.get()) is not None:
            await client.write(*item)

    async def _pump_stdin(self, client: StdioClient, hub: Hub) -> str:
        c = self._c
        scanner = EscapeScanner(self._keys) if c.config.tty else None
        while data := await client.read():
            if scanner is not None:
                data, detached = scanner.feed(data)
                if data:
                    await hub.stdin.put(data)
                if detached:
                    return "detach"
            else:
                await hub.stdin.put(data)
        if scanner is not None and (held := scanner.flush()):
            await hub.stdin.put(held)
        if c.config.stdin_once and not c.config.tty:
            hub.stdin.close_stdin()
        return "eof"

    async def _watch_start(self, hub: Hub, sub: Subscriber) -> None:
        """A waiting client whose container started without the hook: connect late."""
        while sub in hub.waiting:
            await asyncio.sleep(START_POLL)
            if sub in hub.waiting and self._c.has_process:
                await hub.activate(sub)


class AttachRuntime(Protocol):
    """What attach, resize and rotation need from runtime.conmon.Runtime."""

    async def attach(self, cid: str) -> ConmonAttach: ...

    async def resize(self, cid: str, height: int, width: int) -> None: ...


class Events(Protocol):
    def publish_container_event(
        self,
        action: str,
        container_id: str,
        name: str,
        image: str,
        *,
        labels: Any = None,
        attributes: Any = None,
    ) -> Any: ...


class ContainerLookup(Protocol):
    """daemon.containers.store.ContainerStore (lookups only)."""

    def get(self, name_or_id: str) -> Container: ...

    def find(self, name_or_id: str) -> Container | None: ...

    def all(self) -> list[Container]: ...


class ContainerStreams:
    """Attach, logs and resize for the routes (server.backends.ContainerStreamsBackend); the
    hubs of all containers; log rotation while containers run (see the module docstring).

    It follows containers as a containers Listener: `created(c)` (created or loaded) puts
    `start_hook` in `c.start_hooks`, which then runs between the runtime's create and start of
    every run (it connects waiting clients and starts rotating the log); `restored(c)` (found
    running at daemon start) resumes rotation; `removed(c)` ends waiting clients.
    """

    def __init__(
        self,
        store: ContainerLookup,
        runtime: AttachRuntime,
        events: Events,
        log_service: LogService,
        *,
        rotator: LogRotator | None = None,
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.events = events
        self.log_service = log_service
        self.rotator = rotator
        self._hubs: dict[str, Hub] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def event(self, c: Container, action: str, attributes: dict[str, str] | None = None) -> None:
        self.events.publish_container_event(
            action, c.id, c.name, c.image, labels=c.config.labels, attributes=attributes
        )

    def hub(self, c: Container) -> Hub:
        hub = self._hubs.get(c.id)
        if hub is None:
            keep = c.config.open_stdin and c.config.stdin_once
            hub = Hub(c.id, self.runtime.attach, keep_open=keep)
            hub.on_idle = self._forget
            self._hubs[c.id] = hub
        self.install(c)
        return hub

    def install(self, c: Container) -> None:
        """Have `start_hook` run at `c`'s starts (the lifecycle runs hooks once per start: the
        hook puts itself back each time)."""
        if self.start_hook not in c.start_hooks:
            c.start_hooks.append(self.start_hook)

    def _forget(self, hub: Hub) -> None:
        if self._hubs.get(hub.cid) is hub:
            del self._hubs[hub.cid]

    async def start_hook(self, c: Container) -> None:
        """After conmon created the container, before its process starts."""
        self.install(c)
        hub = self._hubs.get(c.id)
        if hub is not None and (hub.waiting or hub.stdin.pending):
            await hub.connect()
        self._rotate(c)

    def created(self, c: Container) -> None:
        """A container created or loaded at daemon start (a containers Listener)."""
        self.install(c)

    def restored(self, c: Container) -> None:
        """A container found running at daemon start: its log rotation resumes."""
        self._rotate(c)

    def _rotate(self, c: Container) -> None:
        if self.rotator is None:
            return
        log_config = c.host_config.log_config
        policy = rotation_policy(log_config.type, log_config.config)
        if policy is None:
            return
        rotator = self.rotator
        rotator.unwatch(c.id)
        rotator.watch(c.id, c.log_path, policy)
        stopped = c.wait("next-exit")

        async def unwatch() -> None:
            with contextlib.suppress(asyncio.CancelledError):
                await stopped
            rotator.unwatch(c.id)

        task = asyncio.get_running_loop().create_task(unwatch())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def removed(self, c: Container) -> None:
        hub = self._hubs.pop(c.id, None)
        if hub is not None:
            for sub in [*hub.waiting, *hub.active]:
                sub.outbox.end()
            hub.waiting.clear()
            hub.active.clear()
            if hub.session is not None:
                hub._disconnect()

    async def attach(self, name: str, options: AttachOptions) -> AttachSession:
        keys = DEFAULT_DETACH_KEYS
        if options.detach_keys:
            try:
                keys = parse_detach_keys(options.detach_keys)
            except ValueError:
                raise errdefs.InvalidParameter(
                    f"Invalid detach keys ({options.detach_keys}) provided"
                ) from None
        c = self.store.get(name)
        if c.paused:
            raise errdefs.Conflict(
                f"container {name} is paused, unpause the container before attach"
            )
        if c.restarting:
            raise errdefs.Conflict(
                f"container {name} is restarting, wait until the container is running"
            )
        return AttachSession(self, c, options, keys)

    async def logs(self, name: str, options: LogsOptions) -> LogStream:
        if not options.stdout and not options.stderr:
            raise errdefs.InvalidParameter("You must choose at least one stream")
        return await self.log_service.logs(self.store.get(name), options)

    async def resize(self, name: str, height: int, width: int) -> None:
        c = self.store.get(name)
        if not c.has_process:
            raise errdefs.Conflict(f"container {c.id} is not running")
        if c.config.tty:  # a pipe has no size: dockerd's runtime ignores it too
            await self.runtime.resize(c.id, height, width)
        self.event(c, "resize", {"height": str(height), "width": str(width)})

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for hub in list(self._hubs.values()):
            for sub in [*hub.waiting, *hub.active]:
                sub.outbox.end()
            hub._disconnect()
        self._hubs.clear()
