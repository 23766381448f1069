"""The event bus: replay, live delivery, until, unsubscribe, ring buffer, slow subscribers,
and every event filter as moby's daemon/events/filter.go defines it."""

from __future__ import annotations

import asyncio
import gc
import itertools
import threading
import time
from collections.abc import Callable

import pytest

from pymoby.api.filters import Filters
from pymoby.api.types.events import Action, Actor, EventType, Message
from pymoby.daemon.events import (
    EVENTS_LIMIT,
    SUBSCRIBER_BUFFER,
    EventBus,
    EventFilter,
    Subscription,
    _familiar_name,
)

S = 1_000_000_000


def step_clock(start: int = 1_000 * S, step: int = S) -> Callable[[], int]:
    """A clock that advances by `step` on every reading."""
    counter = itertools.count(start, step)
    return lambda: next(counter)


async def take(sub: Subscription, n: int, timeout: float = 1.0) -> list[Message]:
    out: list[Message] = []
    async with asyncio.timeout(timeout):
        async for msg in sub:
            out.append(msg)
            if len(out) == n:
                break
    return out


async def drain(sub: Subscription, timeout: float = 1.0) -> list[Message]:
    async with asyncio.timeout(timeout):
        return [msg async for msg in sub]


def actions(msgs: list[Message]) -> list[str]:
    return [m.action for m in msgs]


def test_moby_limits() -> None:
    assert EVENTS_LIMIT == 256
    assert SUBSCRIBER_BUFFER == 1024


class TestPublish:
    def test_message_fields(self) -> None:
        bus = EventBus(clock=lambda: 1_700_000_000_123_456_789)
        attrs = {"name": "web"}
        msg = bus.publish(EventType.CONTAINER, Action.START, "abc", attrs)
        attrs["name"] = "changed"
        assert msg == Message(
            type="container",
            action="start",
            actor=Actor(id="abc", attributes={"name": "web"}),
            scope="local",
            time=1_700_000_000,
            time_nano=1_700_000_000_123_456_789,
        )
        assert type(msg.type) is str
        assert bus.buffered() == [msg]

    def test_default_clock_is_now(self) -> None:
        before = time.time_ns()
        msg = EventBus().publish("volume", "create", "v1", scope="swarm")
        assert before <= msg.time_nano <= time.time_ns()
        assert msg.time == msg.time_nano // S
        assert msg.scope == "swarm"
        assert msg.actor.attributes == {}

    def test_ring_buffer_keeps_the_newest(self) -> None:
        bus = EventBus(limit=3, clock=step_clock())
        for i in range(5):
            bus.publish("volume", f"a{i}", "v")
        assert actions(bus.buffered()) == ["a2", "a3", "a4"]

    def test_container_event_attributes(self) -> None:
        bus = EventBus()
        msg = bus.publish_container_event(
            Action.START,
            "c1",
            "/web",
            "busybox:latest",
            labels={"com.x": "1", "image": "label-loses"},
            attributes={"exitCode": "0", "com.x": "attr-loses"},
        )
        assert msg.type == "container"
        assert msg.actor.attributes == {
            "exitCode": "0",
            "com.x": "1",
            "image": "busybox:latest",
            "name": "web",
        }
        no_image = bus.publish_container_event(Action.DIE, "c1", "web", "")
        assert no_image.actor.attributes == {"name": "web"}

    def test_network_plugin_daemon_events(self) -> None:
        bus = EventBus()
        net = bus.publish_network_event(
            Action.CONNECT, "n1", "mynet", "bridge", attributes={"container": "c1"}
        )
        assert net.actor.attributes == {"container": "c1", "name": "mynet", "type": "bridge"}
        plugin = bus.publish_plugin_event(Action.ENABLE, "p1", "vieux/sshfs:latest")
        assert plugin.type == "plugin"
        assert plugin.actor.attributes == {"name": "vieux/sshfs:latest"}
        reload = bus.publish_daemon_event(
            Action.RELOAD, "ENGINE-ID", {"debug": "true"}, hostname="host1"
        )
        assert reload.type == "daemon"
        assert reload.action == "reload"
        assert reload.actor.id == "ENGINE-ID"
        assert reload.actor.attributes == {"debug": "true", "name": "host1"}
        nameless = bus.publish_daemon_event(Action.RELOAD, "E", hostname="")
        assert nameless.actor.attributes == {}
        default_host = bus.publish_reload("E", {"labels": "[]"})
        assert default_host.actor.attributes["labels"] == "[]"
        assert "name" in default_host.actor.attributes


class TestReplay:
    def setup_bus(self) -> EventBus:
        bus = EventBus(clock=step_clock(start=10 * S))  # events at 10s, 11s, 12s, 13s
        for name in ("a", "b", "c", "d"):
            bus.publish("volume", "create", name, {"name": name})
        return bus

    async def test_no_since_no_until_replays_nothing(self) -> None:
        bus = self.setup_bus()
        sub = bus.subscribe()
        bus.publish("volume", "create", "e")
        assert [m.actor.id for m in await take(sub, 1)] == ["e"]

    async def test_since_replays_then_goes_live(self) -> None:
        bus = self.setup_bus()
        sub = bus.subscribe(since=11 * S)
        bus.publish("volume", "create", "live")
        got = await take(sub, 4)
        assert [m.actor.id for m in got] == ["b", "c", "d", "live"]

    async def test_until_in_the_past_replays_and_ends(self) -> None:
        bus = self.setup_bus()
        sub = bus.subscribe(since=11 * S, until=12 * S)
        assert [m.actor.id for m in await drain(sub)] == ["b", "c"]
        assert bus.subscriber_count == 0

    async def test_until_alone_replays_everything_up_to_it(self) -> None:
        bus = self.setup_bus()
        sub = bus.subscribe(until=12 * S)
        assert [m.actor.id for m in await drain(sub)] == ["a", "b", "c"]

    async def test_until_zero_has_no_upper_bound(self) -> None:
        # dockerd: until=0 is in the past (replay only) but does not cap the replay
        bus = self.setup_bus()
        assert len(await drain(bus.subscribe(until=0))) == 4

    async def test_replay_is_filtered(self) -> None:
        bus = self.setup_bus()
        sub = bus.subscribe(Filters({"volume": ["c"]}), since=0, until=13 * S)
        assert [m.actor.id for m in await drain(sub)] == ["c"]

    async def test_replay_of_evicted_events_is_gone(self) -> None:
        bus = EventBus(limit=2, clock=step_clock(start=10 * S))
        for name in ("a", "b", "c"):
            bus.publish("volume", "create", name)
        assert [m.actor.id for m in await drain(bus.subscribe(since=0, until=0))] == ["b", "c"]


class TestLive:
    async def test_until_in_the_future_ends_without_events(self) -> None:
        bus = EventBus()
        start = time.monotonic()
        sub = bus.subscribe(until=time.time_ns() + 50_000_000)
        assert await drain(sub) == []
        assert time.monotonic() - start < 0.5
        assert bus.subscriber_count == 0

    async def test_until_delivers_events_before_it(self) -> None:
        bus = EventBus()
        sub = bus.subscribe(until=time.time_ns() + 100_000_000)
        bus.publish("volume", "create", "v1")
        assert [m.actor.id for m in await drain(sub)] == ["v1"]

    async def test_queued_events_after_until_are_not_delivered(self) -> None:
        clock_value = [100 * S]
        bus = EventBus(clock=lambda: clock_value[0])
        sub = bus.subscribe(until=101 * S)
        bus.publish("volume", "create", "before")
        clock_value[0] = 102 * S
        bus.publish("volume", "create", "after")
        assert [m.actor.id for m in await drain(sub)] == ["before"]

    async def test_live_filtering(self) -> None:
        bus = EventBus()
        sub = bus.subscribe(Filters({"type": ["network"]}))
        bus.publish("volume", "create", "v1")
        bus.publish("network", "create", "n1")
        assert [m.actor.id for m in await take(sub, 1)] == ["n1"]

    async def test_waiting_consumer_is_woken(self) -> None:
        bus = EventBus()
        sub = bus.subscribe()
        task = asyncio.create_task(take(sub, 2))
        await asyncio.sleep(0.01)
        bus.publish("volume", "create", "v1")
        await asyncio.sleep(0)
        bus.publish("volume", "create", "v2")
        assert [m.actor.id for m in await task] == ["v1", "v2"]

    async def test_publish_from_another_thread(self) -> None:
        bus = EventBus()
        sub = bus.subscribe()
        task = asyncio.create_task(take(sub, 1))
        await asyncio.sleep(0.01)
        thread = threading.Thread(target=bus.publish, args=("volume", "create", "t1"))
        thread.start()
        thread.join()
        assert [m.actor.id for m in await task] == ["t1"]

    async def test_no_gap_between_replay_and_live(self) -> None:
        bus = EventBus(clock=step_clock())
        bus.publish("volume", "create", "old")
        sub = bus.subscribe(since=0)  # registered at once, before the first __anext__
        bus.publish("volume", "create", "new")
        assert [m.actor.id for m in await take(sub, 2)] == ["old", "new"]

    async def test_cancelled_wait_keeps_the_subscription(self) -> None:
        bus = EventBus()
        sub = bus.subscribe()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await sub.__anext__()
        assert not sub.closed
        bus.publish("volume", "create", "v1")
        assert [m.actor.id for m in await take(sub, 1)] == ["v1"]


class TestUnsubscribe:
    async def test_aclose(self) -> None:
        bus = EventBus()
        sub = bus.subscribe()
        assert bus.subscriber_count == 1
        await sub.aclose()
        assert bus.subscriber_count == 0
        bus.publish("volume", "create", "v1")
        assert await drain(sub) == []

    async def test_aclose_wakes_a_waiting_consumer(self) -> None:
        bus = EventBus()
        sub = bus.subscribe()
        task = asyncio.create_task(drain(sub))
        await asyncio.sleep(0.01)
        await sub.aclose()
        assert await task == []

    async def test_context_manager(self) -> None:
        bus = EventBus()
        async with bus.subscribe() as sub:
            bus.publish("volume", "create", "v1")
            assert len(await take(sub, 1)) == 1
        assert bus.subscriber_count == 0

    async def test_abandoned_subscription_leaves_the_bus(self) -> None:
        bus = EventBus()

        async def consume_one() -> None:
            async for _ in bus.subscribe():
                break

        task = asyncio.create_task(consume_one())
        await asyncio.sleep(0.01)
        bus.publish("volume", "create", "v1")
        await task
        gc.collect()
        assert bus.subscriber_count == 0

    async def test_bus_close_delivers_queued_then_ends(self) -> None:
        bus = EventBus()
        sub = bus.subscribe()
        bus.publish("volume", "create", "v1")
        bus.close()
        assert [m.actor.id for m in await drain(sub)] == ["v1"]
        bus.publish("volume", "create", "v2")
        late = bus.subscribe(since=0)
        assert [m.actor.id for m in await drain(late)] == ["v1", "v2"]


class TestSlowSubscriber:
    async def test_full_queue_drops_new_events_for_that_subscriber_only(self) -> None:
        bus = EventBus(subscriber_buffer=2)
        slow = bus.subscribe()
        fast = bus.subscribe()
        fast_got: list[str] = []
        for i in range(5):
            bus.publish("volume", "create", f"v{i}")  # never blocks
            fast_got.extend(m.actor.id for m in await take(fast, 1))
        assert fast_got == ["v0", "v1", "v2", "v3", "v4"]
        assert slow.dropped == 3
        assert fast.dropped == 0
        assert [m.actor.id for m in await take(slow, 2)] == ["v0", "v1"]
        bus.publish("volume", "create", "v5")
        assert [m.actor.id for m in await take(slow, 1)] == ["v5"]

    async def test_memory_stays_bounded(self) -> None:
        bus = EventBus(subscriber_buffer=SUBSCRIBER_BUFFER)
        sub = bus.subscribe()
        for i in range(SUBSCRIBER_BUFFER + 500):
            bus.publish("volume", "create", str(i))
        assert sub.dropped == 500
        assert len(bus.buffered()) == EVENTS_LIMIT


# -- filters ------------------------------------------------------------------------------------


def msg(type: str, action: str, actor_id: str, scope: str = "local", **attributes: str) -> Message:
    return Message(
        type=type,
        action=action,
        actor=Actor(id=actor_id, attributes=attributes),
        scope=scope,
    )


def include(filters: dict[str, list[str]], message: Message) -> bool:
    return EventFilter(Filters(filters)).include(message)


CONTAINER = msg("container", "start", "4a5b6c7d", name="web", image="nginx:1.25", env="prod")
NETWORK = msg("network", "connect", "9f9f9f", name="backend", container="4a5b6c7d")
IMAGE = msg("image", "pull", "sha256:" + "a" * 64, name="docker.io/library/ubuntu:22.04")


class TestEventFilter:
    def test_no_filters_includes_everything(self) -> None:
        assert include({}, CONTAINER)
        assert EventFilter(Filters()).filters == Filters()

    def test_unknown_filter_names_are_ignored(self) -> None:
        assert include({"bogus": ["x"]}, CONTAINER)

    def test_type(self) -> None:
        assert include({"type": ["container"]}, CONTAINER)
        assert include({"type": ["image", "container"]}, CONTAINER)
        assert not include({"type": ["network"]}, CONTAINER)

    def test_event_exact(self) -> None:
        assert include({"event": ["start"]}, CONTAINER)
        assert not include({"event": ["sta"]}, CONTAINER)
        assert not include({"event": ["die"]}, CONTAINER)

    def test_event_prefix_for_exec_and_health(self) -> None:
        exec_start = msg("container", "exec_start: sh -c 'echo hi'", "c1")
        health = msg("container", "health_status: healthy", "c1")
        assert include({"event": ["exec_start"]}, exec_start)
        assert not include({"event": ["exec_create"]}, exec_start)
        assert include({"event": ["health_status"]}, health)
        assert not include({"event": ["exec_die"]}, exec_start)
        # once prefix mode is on, every value matches by prefix (moby's behaviour)
        assert include({"event": ["exec_start", "heal"]}, health)
        # without one of the three keywords, `exec_start: ...` needs the whole action
        assert not include({"event": ["exec_start: sh"]}, exec_start)
        assert include({"event": ["exec_start: sh -c 'echo hi'"]}, exec_start)

    def test_scope(self) -> None:
        assert include({"scope": ["local"]}, CONTAINER)
        assert not include({"scope": ["swarm"]}, CONTAINER)
        assert include({"scope": ["swarm"]}, msg("service", "create", "s1", scope="swarm"))

    def test_container_by_id_prefix_or_name(self) -> None:
        assert include({"container": ["4a5b6c7d"]}, CONTAINER)
        assert include({"container": ["4a5b"]}, CONTAINER)
        assert include({"container": ["web"]}, CONTAINER)
        assert include({"container": ["we"]}, CONTAINER)  # prefix of the name too
        assert not include({"container": ["db"]}, CONTAINER)

    def test_container_filter_applies_to_other_types(self) -> None:
        # a network event about this container is still dropped: only the actor is compared
        assert not include({"container": ["4a5b"]}, NETWORK)
        assert not include({"container": ["web"], "type": ["network"]}, NETWORK)

    @pytest.mark.parametrize(
        "kind, actor_id, name",
        [
            ("daemon", "ABCD:EFGH", "host1"),
            ("plugin", "p0123", "vieux/sshfs:latest"),
            ("volume", "v0123", "data"),
            ("network", "n0123", "backend"),
            ("node", "node0123", "worker-1"),
            ("service", "svc0123", "api"),
            ("secret", "sec0123", "db-pass"),
            ("config", "cfg0123", "nginx-conf"),
        ],
    )
    def test_name_or_id_filters(self, kind: str, actor_id: str, name: str) -> None:
        event = msg(kind, "create", actor_id, name=name)
        assert include({kind: [actor_id]}, event)
        assert include({kind: [actor_id[:3]]}, event)
        assert include({kind: [name]}, event)
        assert not include({kind: ["zzz"]}, event)
        assert not include({kind: [actor_id]}, CONTAINER)

    def test_image_on_container_events(self) -> None:
        assert include({"image": ["nginx:1.25"]}, CONTAINER)
        assert include({"image": ["nginx"]}, CONTAINER)
        assert not include({"image": ["nginx:1.24"]}, CONTAINER)
        assert not include({"image": ["ngin"]}, CONTAINER)

    def test_image_on_image_events_uses_name_attribute(self) -> None:
        assert include({"image": ["ubuntu"]}, IMAGE)
        assert include({"image": ["docker.io/library/ubuntu:22.04"]}, IMAGE)
        assert include({"image": ["sha256:" + "a" * 64]}, IMAGE)
        assert not include({"image": ["ubuntu:22.04"]}, IMAGE)
        assert not include({"image": ["debian"]}, IMAGE)

    def test_image_by_actor_id_reference(self) -> None:
        tag = msg("image", "tag", "busybox:latest", name="busybox:latest")
        assert include({"image": ["busybox"]}, tag)
        assert include({"image": ["busybox:latest"]}, tag)

    def test_image_filter_drops_unrelated_types(self) -> None:
        assert not include({"image": ["nginx"]}, NETWORK)

    def test_label(self) -> None:
        assert include({"label": ["env"]}, CONTAINER)
        assert include({"label": ["env=prod"]}, CONTAINER)
        assert include({"label": ["env=prod", "name=web"]}, CONTAINER)
        assert not include({"label": ["env=dev"]}, CONTAINER)
        assert not include({"label": ["team"]}, CONTAINER)
        assert not include({"label": ["env"]}, msg("volume", "create", "v"))

    def test_filters_combine_with_and(self) -> None:
        assert include({"type": ["container"], "event": ["start"], "label": ["env"]}, CONTAINER)
        assert not include({"type": ["container"], "event": ["stop"]}, CONTAINER)


class TestFamiliarName:
    @pytest.mark.parametrize(
        "reference, expected",
        [
            ("ubuntu", "ubuntu"),
            ("ubuntu:22.04", "ubuntu"),
            ("docker.io/library/ubuntu:22.04", "ubuntu"),
            ("index.docker.io/library/ubuntu", "ubuntu"),
            ("docker.io/myorg/app:1", "myorg/app"),
            ("library/ubuntu", "ubuntu"),
            ("localhost:5000/app:dev", "localhost:5000/app"),
            ("localhost/app", "localhost/app"),
            ("quay.io/org/app@sha256:" + "b" * 64, "quay.io/org/app"),
            ("[::1]:5000/app", "[::1]:5000/app"),
            ("sha256:" + "a" * 64, "sha256"),  # parses as name "sha256", tag "<hex>"
        ],
    )
    def test_parses(self, reference: str, expected: str) -> None:
        assert _familiar_name(reference) == expected

    @pytest.mark.parametrize(
        "reference",
        [
            "a" * 64,  # a bare image ID
            "Ubuntu",
            "",
            "ubuntu:bad tag",
            "app@sha256:short",
            "app@md5:" + "c" * 32,
            "a/" * 130 + "b",
        ],
    )
    def test_rejects(self, reference: str) -> None:
        assert _familiar_name(reference) is None
