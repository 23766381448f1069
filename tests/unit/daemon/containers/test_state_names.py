"""The state TABLE, names and IDs."""

from __future__ import annotations

import re

import pytest

from pymoby import errdefs
from pymoby.daemon.containers import names
from pymoby.daemon.containers.state import (
    TRANSITIONS,
    Event,
    StateError,
    Status,
    allowed,
    transition,
)


def test_every_status_is_reachable_from_created() -> None:
    seen, todo = {Status.CREATED}, [Status.CREATED]
    while todo:
        current = todo.pop()
        for (src, _), dst in TRANSITIONS.items():
            if src is current and dst not in seen:
                seen.add(dst)
                todo.append(dst)
    assert seen == set(Status)


@pytest.mark.parametrize(
    ("status", "event", "after"),
    [
        (Status.CREATED, Event.START, Status.RUNNING),
        (Status.CREATED, Event.START_FAILED, Status.CREATED),
        (Status.EXITED, Event.START_FAILED, Status.EXITED),
        (Status.RUNNING, Event.EXIT, Status.EXITED),
        (Status.PAUSED, Event.EXIT, Status.EXITED),
        (Status.RUNNING, Event.EXIT_RESTART, Status.RESTARTING),
        (Status.RESTARTING, Event.RESTART_START, Status.RUNNING),
        (Status.RESTARTING, Event.RESTART_CANCEL, Status.EXITED),
        (Status.EXITED, Event.MARK_DEAD, Status.DEAD),
    ],
)
def test_transitions(status: Status, event: Event, after: Status) -> None:
    assert transition(status, event) is after


@pytest.mark.parametrize(
    ("status", "event"),
    [
        (Status.RUNNING, Event.START),
        (Status.CREATED, Event.PAUSE),
        (Status.EXITED, Event.EXIT),
        (Status.RUNNING, Event.MARK_DEAD),
        (Status.PAUSED, Event.PAUSE),
        (Status.DEAD, Event.START),
    ],
)
def test_illegal_transitions_are_refused(status: Status, event: Event) -> None:
    assert not allowed(status, event)
    with pytest.raises(StateError, match=f"{status.value}: {event.value} is not allowed"):
        transition(status, event)


@pytest.mark.parametrize("name", ["ab", "/web", "a.b-c_d", "0x"])
def test_valid_names_get_a_slash(name: str) -> None:
    assert names.normalize(name) == "/" + name.removeprefix("/")


@pytest.mark.parametrize("name", ["a", "-ab", "a/b", "a b", "_x", "/"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(errdefs.InvalidParameter) as err:
        names.normalize(name)
    assert err.value.message == (
        f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
    )


def test_generated_names_have_dockerds_format() -> None:
    for retry in range(3):
        name = names.generate_name(retry)
        pattern = r"/[a-z]+_[a-z]+" + (r"[0-9]" if retry else "")
        assert re.fullmatch(pattern, name), name
    assert names.normalize(names.generate_name(0)[1:])


def test_ids_are_hex_and_never_all_digits() -> None:
    for _ in range(200):
        cid = names.new_id()
        assert re.fullmatch("[0-9a-f]{64}", cid)
        assert not cid[:12].isdigit()


def test_conflict_message_is_dockerds() -> None:
    err = names.NameConflict("/x", "abc")
    assert isinstance(err, errdefs.Conflict)
    assert err.message == (
        'Conflict. The container name "/x" is already in use by container "abc". You have '
        "to remove (or rename) that container to be able to reuse that name."
    )
