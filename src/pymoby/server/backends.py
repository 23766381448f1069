"""The narrow Protocols the routes consume; the composition root passes real managers in.

Rule: server/ never imports a manager. Each area's routes take one Protocol from here, so unit
tests drive the routes with in-memory fakes and the daemon wires the real thing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from pymoby.api.filters import Filters
from pymoby.api.reference import Reference
from pymoby.api.types.container_responses import ContainerInspect, ContainerSummary
from pymoby.api.types.containers import Config, EndpointSettings, HostConfig
from pymoby.api.types.events import Message
from pymoby.api.types.exec import ExecCreateRequest, ExecInspect
from pymoby.api.types.images import (
    DeleteResponse,
    HistoryResponseItem,
    ImageInspect,
    ImagesPruneReport,
    ImageSummary,
    Platform,
)
from pymoby.api.types.networks import (
    NetworkCreateRequest,
    NetworkCreateResponse,
    NetworkResource,
)
from pymoby.api.types.system import DiskUsage, Info, Version
from pymoby.api.versions import ApiVersion


class SystemBackend(Protocol):
    """GET /version, /info, /system/df."""

    async def version(self) -> Version: ...

    async def info(self) -> Info: ...

    async def disk_usage(self, types: Collection[str], api: ApiVersion) -> DiskUsage: ...


class EventsBackend(Protocol):
    """GET /events: replay from the ring buffer within [since, until], then live."""

    def subscribe(
        self, filters: Filters, since: int | None, until: int | None
    ) -> AsyncIterator[Message]: ...


class ImageBackend(Protocol):
    """The /images routes (graph-driver image store; pull, push and search come later).

    Streams (`import_image`, `load`) yield progress lines already encoded (api/types/progress);
    `save` yields the bytes of the tar. An error raised by an iterator before its first item is
    an HTTP error, after it an in-band one (the route applies dockerd's rule per endpoint).
    Names are what the user typed (reference, ID or ID prefix); platforms are OCI platforms.
    """

    async def images(
        self, filters: Filters, *, all: bool, shared_size: bool
    ) -> list[ImageSummary]: ...

    async def inspect(self, name: str, platform: Platform | None) -> ImageInspect: ...

    async def history(self, name: str, platform: Platform | None) -> list[HistoryResponseItem]: ...

    async def tag(self, name: str, ref: Reference) -> None: ...

    async def delete(self, name: str, *, force: bool, prune: bool) -> list[DeleteResponse]: ...

    async def prune(self, filters: Filters) -> ImagesPruneReport: ...

    def import_image(
        self,
        source: AsyncIterator[bytes] | str,
        ref: Reference | None,
        message: str,
        changes: Sequence[str],
        platform: Platform | None,
    ) -> AsyncIterator[bytes]: ...

    def load(
        self, body: AsyncIterator[bytes], *, quiet: bool, platforms: Sequence[Platform]
    ) -> AsyncIterator[bytes]: ...

    def save(self, names: Sequence[str], platforms: Sequence[Platform]) -> AsyncIterator[bytes]: ...


# -- container streams: attach, logs, resize, exec ------------------------------------------------


class StdioClient(Protocol):
    """The client's end of a hijacked attach or exec stream, as a backend sees it.

    `read` gives stdin (b"" once the client half-closed or left); `write` sends output of one
    stream (1 stdout, 2 stderr: the route frames it when the stream is multiplexed) and raises
    errdefs.Cancelled once the client has left; `wait_closed` returns when the client has left.
    """

    async def read(self) -> bytes: ...

    async def write(self, stream: int, data: bytes) -> None: ...

    async def wait_closed(self) -> None: ...


@dataclass(frozen=True, slots=True)
class AttachOptions:
    """POST /containers/{id}/attach query parameters."""

    stdin: bool = False
    stdout: bool = False
    stderr: bool = False
    logs: bool = False
    stream: bool = False
    detach_keys: str = ""


class AttachStream(Protocol):
    """An attach that passed its checks; `run` streams until the attach ends."""

    @property
    def tty(self) -> bool: ...

    async def run(self, client: StdioClient) -> None: ...


@dataclass(frozen=True, slots=True)
class LogsOptions:
    """GET /containers/{id}/logs query parameters; times are ns since the epoch."""

    stdout: bool = False
    stderr: bool = False
    follow: bool = False
    timestamps: bool = False
    details: bool = False
    since: int | None = None
    until: int | None = None
    tail: str = ""


@dataclass(frozen=True, slots=True)
class LogMessage:
    """One log line: `stream` "stdout" or "stderr", `attrs` the details (sorted by key)."""

    stream: str
    line: bytes
    time_ns: int
    attrs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class LogStream:
    """The answer of `logs`: the container's TTY flag (raw vs multiplexed) and the lines, in
    batches as they were read (a batch goes to the client as one chunk)."""

    tty: bool
    batches: AsyncIterator[Sequence[LogMessage]]


class ContainerStreamsBackend(Protocol):
    """POST /containers/{id}/attach, GET /containers/{id}/logs, POST /containers/{id}/resize.

    `attach` and `logs` raise before anything is streamed (HTTP errors); a failure while
    streaming is the backend's to report in-band (attach) or raised from the iterator (logs).
    """

    async def attach(self, name: str, options: AttachOptions) -> AttachStream: ...

    async def logs(self, name: str, options: LogsOptions) -> LogStream: ...

    async def resize(self, name: str, height: int, width: int) -> None: ...


class ExecBackend(Protocol):
    """The exec routes. `check` is dockerd's ExecExists (404/409 before the hijack); `start`
    with a client streams until the process ends, without one (Detach) returns once the
    process runs."""

    async def create(self, name: str, request: ExecCreateRequest) -> str: ...

    async def check(self, exec_id: str) -> None: ...

    async def start(
        self, exec_id: str, client: StdioClient | None, console_size: tuple[int, int] | None
    ) -> None: ...

    async def resize(self, exec_id: str, height: int, width: int) -> None: ...

    async def inspect(self, exec_id: str) -> ExecInspect: ...


class ContainerBackend(Protocol):
    """The container routes: create, life cycle, wait, remove, list, inspect, rename.

    Names are what the user typed (name, ID or unique ID prefix). `wait` looks the container
    up at once (an unknown one is an error before any header is sent) and returns an
    awaitable of (exit code, error text) resolved when the condition is met.
    """

    async def create(
        self,
        name: str,
        config: Config,
        host_config: HostConfig,
        endpoints: dict[str, EndpointSettings | None],
        platform: Platform | None,
    ) -> tuple[str, list[str]]: ...

    async def start_container(self, name: str) -> None: ...

    async def stop(self, name: str, signal: str, seconds: int | None) -> None: ...

    async def kill(self, name: str, signal: str) -> None: ...

    async def restart(self, name: str, signal: str, seconds: int | None) -> None: ...

    async def pause(self, name: str) -> None: ...

    async def unpause(self, name: str) -> None: ...

    async def wait(self, name: str, condition: str) -> Awaitable[tuple[int, str]]: ...

    async def remove(self, name: str, *, force: bool, volumes: bool, link: bool) -> None: ...

    async def containers(
        self, filters: Filters, *, all: bool, limit: int, size: bool
    ) -> Sequence[ContainerSummary]: ...

    async def inspect(self, name: str, *, size: bool) -> ContainerInspect: ...

    async def rename(self, name: str, new_name: str) -> None: ...


class NetworkBackend(Protocol):
    """The /networks routes. `term` is what the user typed (ID, name or unique ID prefix).

    `list_networks` validates the filters (daemon/networks/filters.validate_list_filters) and
    returns every matching network WITH its `containers` filled (the encoder drops them from
    API 1.28, older clients get them); `inspect_network` looks up like dockerd's getNetwork
    (only networks of `scope` when it is set); `prune_networks` returns the removed networks'
    names. `create_network` gets the decoded body after the route's version rules (Driver ""
    already "bridge", EnableIPv4 None below 1.48, Name not blank).
    """

    async def create_network(self, req: NetworkCreateRequest) -> NetworkCreateResponse: ...

    async def list_networks(self, filters: Filters) -> list[NetworkResource]: ...

    async def inspect_network(self, term: str, *, verbose: bool, scope: str) -> NetworkResource: ...

    async def remove_network(self, term: str) -> None: ...

    async def prune_networks(self, filters: Filters) -> list[str]: ...

    async def connect(self, term: str, container: str, config: EndpointSettings | None) -> None: ...

    async def disconnect(self, term: str, container: str, *, force: bool) -> None: ...
