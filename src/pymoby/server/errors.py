"""THE table from error class to HTTP status, and the `{"message": ...}` body.

Rule: this is the only place that picks a status code for an error. The most specific class in
an exception's MRO that the table names wins; anything not in it is a bug: 500, logged with
its traceback.
"""

from __future__ import annotations

import logging

from pymoby import errdefs
from pymoby.server.response import Response, error_response

log = logging.getLogger("pymoby.server")

STATUS: dict[type[errdefs.PymobyError], int] = {
    errdefs.InvalidParameter: 400,
    errdefs.Unauthorized: 401,
    errdefs.Forbidden: 403,
    errdefs.NotFound: 404,
    errdefs.Conflict: 409,
    errdefs.NotModified: 304,
    errdefs.Cancelled: 499,
    errdefs.System: 500,
    errdefs.DataLoss: 500,
    errdefs.NotImplementedErr: 501,
    errdefs.Unavailable: 503,
    errdefs.Deadline: 504,
}


def status_for(exc: BaseException) -> int:
    for cls in type(exc).__mro__:
        status = STATUS.get(cls)
        if status is not None:
            return status
    return 500


def to_response(exc: BaseException) -> Response:
    """The response for an exception a handler raised."""
    status = status_for(exc)
    if status == 500:
        log.error("handler failed: %s", exc, exc_info=exc)
    if status == 304:
        return Response(status=304)
    message = exc.message if isinstance(exc, errdefs.PymobyError) else str(exc)
    return error_response(status, message)
