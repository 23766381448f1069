"""Errors of the archive package: a bad archive is the client's fault, a failing host is not.

Rule: anything wrong with the bytes of an archive -- a broken or truncated tar or compressed
stream, a bad header, an entry that would escape the extraction root -- raises an `ArchiveError`
(an `errdefs.InvalidParameter`) whose message names the entry. Failures of the host while
extracting or writing (no space, I/O error, permission denied) raise `ArchiveSystemError` (an
`errdefs.System`). Foreign exceptions (OSError, zlib.error, ...) never leave this package.
"""

from __future__ import annotations

import errno

from pymoby import errdefs


class ArchiveError(errdefs.InvalidParameter):
    """The archive is malformed or asks for something that is not allowed."""


class TarFormatError(ArchiveError):
    """The tar stream is truncated or has an invalid header."""


class CompressionError(ArchiveError):
    """The compressed stream is corrupt, truncated or of an unsupported kind."""


class BreakoutError(ArchiveError):
    """An entry would be created, or would point, outside the extraction root.

    dockerd calls these "breakout" errors; the messages are dockerd's
    (`invalid entry name "../x"`, `invalid hardlink target "../x"`).
    """


class ArchiveSystemError(errdefs.System):
    """The host failed while reading or writing files (no space, I/O error, ...)."""


# errno values that a hostile or inconsistent archive can provoke on a healthy host: these are
# the archive's fault, everything else is the host's.
_ARCHIVE_ERRNOS = frozenset(
    {
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EEXIST,
        errno.ELOOP,
        errno.ENAMETOOLONG,
        errno.ENOENT,
        errno.ENOTEMPTY,
        errno.EINVAL,
        errno.EMLINK,
        errno.EXDEV,
        errno.EPERM,  # link(2) to a directory, chmod of a whiteout, ...
    }
)


def from_oserror(err: OSError, what: str) -> errdefs.PymobyError:
    """Convert an OSError raised while handling `what` (e.g. `entry "bin/sh"`)."""
    detail = err.strerror or str(err)
    message = f"{what}: {detail}"
    if err.errno in _ARCHIVE_ERRNOS:
        return ArchiveError(message)
    return ArchiveSystemError(message)
