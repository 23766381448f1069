"""Error classes as data: what kind of failure, never which HTTP status.

Concrete errors subclass one of these where they are raised and carry Docker's exact message.
`server/errors.py` is the only place that maps a class to a status code.
"""

from __future__ import annotations


class PymobyError(Exception):
    """Base of every error the daemon reports to a client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidParameter(PymobyError):
    """The client sent something malformed or out of range (400)."""


class NotFound(PymobyError):
    """The named object does not exist (404)."""


class Conflict(PymobyError):
    """The request conflicts with the current state (409)."""


class Unauthorized(PymobyError):
    """Authentication is missing or wrong (401)."""


class Forbidden(PymobyError):
    """The request is understood but not allowed (403)."""


class NotModified(PymobyError):
    """Nothing to do: the object is already in the requested state (304)."""


class NotImplementedErr(PymobyError):
    """The feature is not implemented by this engine (501)."""


class Unavailable(PymobyError):
    """A dependency is not available right now (503)."""


class System(PymobyError):
    """An internal failure of the daemon or the host (500)."""


class Cancelled(PymobyError):
    """The operation was cancelled (499 in dockerd's mapping)."""


class Deadline(PymobyError):
    """The operation ran out of time (504)."""


class DataLoss(PymobyError):
    """Stored data is corrupt or lost (500)."""
