"""The event bus: every manager publishes here; GET /events subscribes with filters.

Rule (moby daemon/events): the bus keeps the last `EVENTS_LIMIT` (256) events in a ring buffer.
A subscription given `since` and/or `until` first replays the buffered events in that window
that match its filters, then receives live matching events (live events are not checked against
`since`). With `until` in the past it replays and ends; with `until` in the future it ends when
that time passes, even if no event arrives. Without `since` and `until` nothing is replayed.

Publishing never blocks and never fails. Each subscriber has a bounded queue of
`SUBSCRIBER_BUFFER` (1024, moby's pubsub buffer) events; moby's publisher waits up to 100 ms for
a full subscriber and then skips the event for it. We skip at once: a subscriber whose queue is
full loses the new event (counted in `Subscription.dropped`), other subscribers are unaffected.

`publish` may be called from any thread. A subscription is iterated on one event loop. A
subscription ends cleanly (and leaves the bus) when iteration stops, when `aclose()` is called,
or when it is garbage collected: the bus holds subscribers weakly.

Filters follow moby's daemon/events/filter.go exactly; see `EventFilter`. Like dockerd,
GET /events does not reject unknown filter names: they are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType

from pymoby.api.filters import Filters
from pymoby.api.types.events import Action, Actor, EventType, Message

__all__ = [
    "EVENTS_LIMIT",
    "SUBSCRIBER_BUFFER",
    "EventBus",
    "EventFilter",
    "Subscription",
]

log = logging.getLogger(__name__)

EVENTS_LIMIT = 256
"""Events kept for replay (moby `eventsLimit`)."""

SUBSCRIBER_BUFFER = 1024
"""Events queued per subscriber before new ones are dropped for it (moby `bufferSize`)."""

# `event=` values that switch the event filter to prefix matching (moby #25798), so that
# `event=exec_start` matches `exec_start: sh -c ...` and `event=health_status` matches
# `health_status: healthy`.
_PREFIX_ACTIONS = frozenset({"health_status", "exec_create", "exec_start"})

# Filters matched by prefix of Actor.ID or equality/prefix of the `name` attribute.
_NAMED_TYPES = (
    EventType.DAEMON,
    EventType.CONTAINER,
    EventType.PLUGIN,
    EventType.VOLUME,
    EventType.NETWORK,
    EventType.NODE,
    EventType.SERVICE,
    EventType.SECRET,
    EventType.CONFIG,
)


# -- image references (distribution/reference), only as far as the image filter needs ------------

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_DOMAIN_AND_PORT = rf"(?:{_DOMAIN_NAME}|\[(?:[a-fA-F0-9:]+)\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_REFERENCE = re.compile(
    rf"((?:{_DOMAIN_AND_PORT}/)?{_REMOTE_NAME})"
    r"(?::([\w][\w.-]{0,127}))?"
    r"(?:@([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}))?",
    re.ASCII,
)
_ANCHORED_NAME = re.compile(rf"(?:({_DOMAIN_AND_PORT})/)?({_REMOTE_NAME})", re.ASCII)
_IDENTIFIER = re.compile(r"[a-f0-9]{64}")
_DIGEST_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX = re.compile(r"[a-f0-9]+")
_NAME_TOTAL_LENGTH_MAX = 255


def _valid_digest(digest: str) -> bool:
    algorithm, _, encoded = digest.partition(":")
    expected = _DIGEST_HEX_LENGTH.get(algorithm)
    return expected is not None and len(encoded) == expected and _HEX.fullmatch(encoded) is not None


def _familiar_name(image: str) -> str | None:
    """reference.FamiliarName(ParseNormalizedNamed(image)); None when it does not parse."""
    if _IDENTIFIER.fullmatch(image):
        return None
    first, slash, rest = image.partition("/")
    if not slash:
        domain, remainder = "docker.io", "library/" + image
    elif first == "localhost":
        domain, remainder = first, rest
    elif first == "index.docker.io":
        domain, remainder = "docker.io", rest
    elif any(c in first for c in ".:") or first.lower() != first:
        domain, remainder = first, rest
    else:
        domain, remainder = "docker.io", image
    if domain == "docker.io" and "/" not in remainder:
        remainder = "library/" + remainder
    remote = remainder.partition(":")[0]
    if remote.lower() != remote:
        return None
    match = _REFERENCE.fullmatch(domain + "/" + remainder)
    if match is None or len(match.group(1)) > _NAME_TOTAL_LENGTH_MAX:
        return None
    if match.group(3) is not None and not _valid_digest(match.group(3)):
        return None
    name = _ANCHORED_NAME.fullmatch(match.group(1))
    if name is None:
        return None
    domain, path = name.group(1) or "", name.group(2)
    if domain != "docker.io":
        return f"{domain}/{path}" if domain else path
    if path.startswith("library/") and "/" not in path[len("library/") :]:
        return path[len("library/") :]
    return path


def _strip_tag(image: str) -> str:
    """The image name without tag or digest, familiar form; unchanged when it does not parse."""
    familiar = _familiar_name(image)
    return image if familiar is None else familiar


# -- filters --------------------------------------------------------------------------------------


class EventFilter:
    """moby's events.Filter: all of these must hold for an event to be included.

    - `event`: exact action; prefix match for every value when one value is `exec_create`,
      `exec_start` or `health_status`.
    - `type`, `scope`: exact.
    - `container`, `daemon`, `plugin`, `volume`, `network`, `node`, `service`, `secret`,
      `config`: a value equals or is a prefix of Actor.ID or of the `name` attribute. These apply
      to every event, whatever its type: `container=x` drops network events unless the network
      itself matches.
    - `image`: exact match of Actor.ID or the image name (`name` attribute for image events,
      `image` for others), each also without tag/digest (`ubuntu` matches `ubuntu:22.04`).
    - `label`: each `key` or `key=value` is present in Actor.Attributes.
    """

    __slots__ = ("_filters",)

    def __init__(self, filters: Filters) -> None:
        self._filters = filters

    @property
    def filters(self) -> Filters:
        return self._filters

    def include(self, msg: Message) -> bool:
        f = self._filters
        if not f:
            return True
        return (
            self._match_event(msg.action)
            and f.exact_match("type", msg.type)
            and f.exact_match("scope", msg.scope)
            and all(self._match_name(msg, kind) for kind in _NAMED_TYPES)
            and self._match_image(msg)
            and (not f.contains("label") or f.match_kv_list("label", msg.actor.attributes))
        )

    def _match_event(self, action: str) -> bool:
        f = self._filters
        if any(value in _PREFIX_ACTIONS for value in f.get("event")):
            return f.fuzzy_match("event", action)
        return f.exact_match("event", action)

    def _match_name(self, msg: Message, kind: str) -> bool:
        f = self._filters
        return f.fuzzy_match(kind, msg.actor.id) or f.fuzzy_match(
            kind, msg.actor.attributes.get("name", "")
        )

    def _match_image(self, msg: Message) -> bool:
        f = self._filters
        if not f.contains("image"):
            return True
        attribute = "name" if msg.type == EventType.IMAGE else "image"
        image_name = msg.actor.attributes.get(attribute, "")
        return (
            f.exact_match("image", msg.actor.id)
            or f.exact_match("image", image_name)
            or f.exact_match("image", _strip_tag(msg.actor.id))
            or f.exact_match("image", _strip_tag(image_name))
        )


# -- subscriptions --------------------------------------------------------------------------------


class Subscription:
    """An async iterator of events: the replayed ones, then live ones (see module docstring).

    Use `async for msg in sub`, or `async with bus.subscribe(...) as sub`; `aclose()` ends it.
    """

    def __init__(
        self,
        bus: EventBus,
        event_filter: EventFilter,
        *,
        replay: list[Message],
        until: int | None,
        live: bool,
        buffer: int,
    ) -> None:
        self._bus = bus
        self._filter = event_filter
        self._replay = deque(replay)
        self._until = until
        self._queue: deque[Message] = deque()
        self._buffer = buffer
        self._closed = not live
        self._waiter: asyncio.Future[None] | None = None
        self.dropped = 0
        """Live events skipped because this subscriber's queue was full."""

    @property
    def closed(self) -> bool:
        """True once no further live event will be queued."""
        return self._closed

    # Called by the bus with its lock held.
    def _offer(self, msg: Message) -> None:
        if self._closed or not self._filter.include(msg):
            return
        if len(self._queue) >= self._buffer:
            self.dropped += 1
            if self.dropped == 1:
                log.warning("events subscriber is too slow: dropping events")
            return
        self._queue.append(msg)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        loop = waiter.get_loop()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            waiter.set_result(None)
        else:
            # The loop may be closed already: the subscriber is gone, nothing to wake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, waiter)

    def _close_locked(self) -> None:
        if not self._closed:
            self._closed = True
            self._bus._subscribers.discard(self)
        self._wake()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        bus = self._bus
        while True:
            with bus._lock:
                if self._replay:
                    return self._replay.popleft()
                now = bus._clock()
                expired = self._until is not None and now >= self._until
                # After `until` has passed, queued events stamped up to `until` still go out.
                if self._queue and (not expired or self._queue[0].time_nano <= (self._until or 0)):
                    return self._queue.popleft()
                if self._closed or expired:
                    self._queue.clear()
                    self._close_locked()
                    raise StopAsyncIteration
                waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._waiter = waiter
            # Cancelling a pending __anext__ leaves the subscription open and its queue intact.
            try:
                if self._until is None:
                    await waiter
                else:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout((self._until - now) / 1e9):
                            await waiter
            finally:
                self._waiter = None

    async def aclose(self) -> None:
        """Stop receiving events and leave the bus; iteration then ends."""
        with self._bus._lock:
            self._replay.clear()
            self._queue.clear()
            self._close_locked()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


# -- the bus --------------------------------------------------------------------------------------


class EventBus:
    """Publish/subscribe for engine events with a replay ring buffer."""

    def __init__(
        self,
        limit: int = EVENTS_LIMIT,
        subscriber_buffer: int = SUBSCRIBER_BUFFER,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._events: deque[Message] = deque(maxlen=limit)
        self._subscriber_buffer = subscriber_buffer
        self._clock = clock
        self._lock = threading.Lock()
        self._subscribers: weakref.WeakSet[Subscription] = weakref.WeakSet()
        self._closed = False

    # -- publishing ----------------------------------------------------------------------------

    def publish(
        self,
        type: str,
        action: str,
        actor_id: str,
        attributes: Mapping[str, str] | None = None,
        scope: str = "local",
    ) -> Message:
        """Record an event stamped now and fan it out; returns the message."""
        now = self._clock()
        msg = Message(
            type=str(type),
            action=str(action),
            actor=Actor(id=actor_id, attributes=dict(attributes or {})),
            scope=scope,
            time=now // 1_000_000_000,
            time_nano=now,
        )
        self.publish_message(msg)
        return msg

    def publish_message(self, msg: Message) -> None:
        """Record a ready-made message (e.g. a cluster event with its own time) and fan it out."""
        with self._lock:
            self._events.append(msg)
            for subscriber in list(self._subscribers):
                subscriber._offer(msg)

    def publish_daemon_event(
        self,
        action: str,
        daemon_id: str,
        attributes: Mapping[str, str] | None = None,
        hostname: str | None = None,
    ) -> Message:
        """A `daemon` event (e.g. `reload`): Actor.ID is the engine ID, `name` the hostname."""
        attrs = dict(attributes or {})
        name = socket.gethostname() if hostname is None else hostname
        if name:
            attrs["name"] = name
        return self.publish(EventType.DAEMON, action, daemon_id, attrs)

    def publish_container_event(
        self,
        action: str,
        container_id: str,
        name: str,
        image: str,
        *,
        labels: Mapping[str, str] | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> Message:
        """A `container` event with moby's default attributes.

        The given attributes, overridden by the container's labels, then `image` (when set)
        and `name` (without its leading "/").
        """
        attrs = dict(attributes or {})
        attrs.update(labels or {})
        if image:
            attrs["image"] = image
        attrs["name"] = name.removeprefix("/")
        return self.publish(EventType.CONTAINER, action, container_id, attrs)

    def publish_network_event(
        self,
        action: str,
        network_id: str,
        name: str,
        driver: str,
        attributes: Mapping[str, str] | None = None,
    ) -> Message:
        """A `network` event with moby's default attributes `name` and `type` (the driver)."""
        attrs = dict(attributes or {})
        attrs["name"] = name
        attrs["type"] = driver
        return self.publish(EventType.NETWORK, action, network_id, attrs)

    def publish_plugin_event(self, action: str, plugin_id: str, ref_name: str) -> Message:
        """A `plugin` event: attribute `name` is the plugin reference."""
        return self.publish(EventType.PLUGIN, action, plugin_id, {"name": ref_name})

    def publish_reload(self, daemon_id: str, attributes: Mapping[str, str]) -> Message:
        """The `daemon reload` event; `attributes` describe the reloaded configuration."""
        return self.publish_daemon_event(Action.RELOAD, daemon_id, attributes)

    # -- subscribing ---------------------------------------------------------------------------

    def subscribe(
        self,
        filters: Filters | None = None,
        since: int | None = None,
        until: int | None = None,
    ) -> Subscription:
        """Events matching `filters`: buffered ones in [since, until], then live ones.

        `since` / `until` are ns since the epoch, None when not given (see the module rule).
        The subscription is registered before this returns: no event falls between the replay
        and the live stream.
        """
        event_filter = EventFilter(filters or Filters())
        with self._lock:
            replay = self._replay(event_filter, since, until)
            only_past = until is not None and until < self._clock()
            live = not (only_past or self._closed)
            sub = Subscription(
                self,
                event_filter,
                replay=replay,
                until=until,
                live=live,
                buffer=self._subscriber_buffer,
            )
            if live:
                self._subscribers.add(sub)
        return sub

    def _replay(
        self, event_filter: EventFilter, since: int | None, until: int | None
    ) -> list[Message]:
        """moby's loadBufferedEvents (walks back from the newest, stops before `since`)."""
        if since is None and until is None:
            return []
        lower = 0 if since is None else since
        upper = 0 if until is None else until
        found: list[Message] = []
        for msg in reversed(self._events):
            if msg.time_nano < lower:
                break
            if upper > 0 and msg.time_nano > upper:
                continue
            if event_filter.include(msg):
                found.append(msg)
        found.reverse()
        return found

    # -- state ---------------------------------------------------------------------------------

    def buffered(self) -> list[Message]:
        """The events kept for replay, oldest first."""
        with self._lock:
            return list(self._events)

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def close(self) -> None:
        """End every subscription (queued events are still delivered); later ones replay only."""
        with self._lock:
            self._closed = True
            for subscriber in list(self._subscribers):
                subscriber._close_locked()
