"""A container's life cycle as data: the persisted statuses, the events, the transition TABLE.

Rule: a container's `status` changes only through `transition(status, event)`, which looks the
pair up in `TRANSITIONS`; a pair that is not in the table is a bug of the caller (StateError).
The statuses are the ones dockerd reports (api/types/container/state.go) minus `removing`, which
is a transient flag on the record (never persisted): dockerd derives `State` as running, paused
or restarting while the process is alive, else removing, dead, created (never started), exited.

    created ──START──────────────> running <──UNPAUSE── paused
       │  └─START_FAILED─> created    │  └──PAUSE──────────^
       │                              ├──EXIT────────────> exited ──START──> running
       │                              └──EXIT_RESTART────> restarting
       │                                   restarting ──RESTART_START──> running
       │                                   restarting ──RESTART_CANCEL─> exited
       └──MARK_DEAD──> dead  (from any stopped status: removal started, files may be half gone)

`exited` -> START_FAILED stays `exited` (a failed restart of a stopped container); `paused` ->
EXIT / EXIT_RESTART is an exit while frozen (a SIGKILL, or the OOM killer).
"""

from __future__ import annotations

import enum

from pymoby import errdefs


class Status(enum.StrEnum):
    """The persisted status (`State.Status` on the wire, except the transient `removing`)."""

    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    EXITED = "exited"
    DEAD = "dead"


class Event(enum.StrEnum):
    START = "start"  # the runtime started the process
    START_FAILED = "start_failed"  # create or start failed; nothing runs
    PAUSE = "pause"
    UNPAUSE = "unpause"
    EXIT = "exit"  # the process ended and stays ended
    EXIT_RESTART = "exit_restart"  # the process ended; the restart policy will start it again
    RESTART_START = "restart_start"  # the restart policy started it again
    RESTART_CANCEL = "restart_cancel"  # the restart was cancelled (stop, kill, rm, failure)
    MARK_DEAD = "mark_dead"  # removal began


S, E = Status, Event

TRANSITIONS: dict[tuple[Status, Event], Status] = {
    (S.CREATED, E.START): S.RUNNING,
    (S.CREATED, E.START_FAILED): S.CREATED,
    (S.CREATED, E.MARK_DEAD): S.DEAD,
    (S.EXITED, E.START): S.RUNNING,
    (S.EXITED, E.START_FAILED): S.EXITED,
    (S.EXITED, E.MARK_DEAD): S.DEAD,
    (S.RUNNING, E.PAUSE): S.PAUSED,
    (S.RUNNING, E.EXIT): S.EXITED,
    (S.RUNNING, E.EXIT_RESTART): S.RESTARTING,
    (S.PAUSED, E.UNPAUSE): S.RUNNING,
    (S.PAUSED, E.EXIT): S.EXITED,
    (S.PAUSED, E.EXIT_RESTART): S.RESTARTING,
    (S.RESTARTING, E.RESTART_START): S.RUNNING,
    (S.RESTARTING, E.START): S.RUNNING,
    (S.RESTARTING, E.START_FAILED): S.EXITED,
    (S.RESTARTING, E.RESTART_CANCEL): S.EXITED,
    (S.RESTARTING, E.MARK_DEAD): S.DEAD,
    (S.DEAD, E.MARK_DEAD): S.DEAD,
}

# Statuses in which the container's process exists (dockerd's State.Running is true).
ALIVE = frozenset((S.RUNNING, S.PAUSED, S.RESTARTING))
# Statuses from which the runtime still holds a process to watch or kill.
HAS_PROCESS = frozenset((S.RUNNING, S.PAUSED))

# Every value `status=` accepts (ValidateContainerState), in dockerd's order.
VALID_STATES = ("created", "running", "paused", "restarting", "removing", "exited", "dead")


class StateError(errdefs.System):
    """A transition the table does not allow: a bug in the caller, reported as a 500."""


def transition(status: Status, event: Event) -> Status:
    """The status after `event` in `status` (StateError when the table has no such pair)."""
    try:
        return TRANSITIONS[(status, event)]
    except KeyError:
        raise StateError(f"container state {status.value}: {event.value} is not allowed") from None


def allowed(status: Status, event: Event) -> bool:
    return (status, event) in TRANSITIONS
