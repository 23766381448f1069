"""Kernel parameters under /proc/sys: the only code that reads or writes them.

Rule: a key is named as sysctl(8) does, with slashes ("net/ipv4/ip_forward") or dots
("net.ipv4.ip_forward"); values are strings without the trailing newline. A write that would not
change the value is skipped (no write, so no needless failure on a read-only /proc/sys). Every
failure is an `errdefs.System` naming the key and the errno text; OSError never leaves.
Values are read in the calling thread's network namespace (net/* keys are per namespace).
All calls block: callers use `asyncio.to_thread`.
"""

from __future__ import annotations

import errno
import os

from pymoby import errdefs

ROOT = "/proc/sys"


class SysctlError(errdefs.System):
    """Reading or writing a /proc/sys value failed; `errno` is the kernel's error number."""

    def __init__(self, message: str, err: int | None = None) -> None:
        super().__init__(message)
        self.errno = err


def path_of(key: str) -> str:
    """The /proc/sys file of `key` (dotted or slashed); a key leaving /proc/sys is refused."""
    name = key.strip().strip("/")
    if "/" not in name:
        name = name.replace(".", "/")
    parts = name.split("/")
    if not name or any(part in ("", ".", "..") for part in parts):
        raise errdefs.InvalidParameter(f"invalid sysctl key {key!r}")
    return f"{ROOT}/{name}"


def read(key: str) -> str:
    """The value of `key`, trailing newline removed."""
    path = path_of(key)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().rstrip("\n")
    except OSError as exc:
        raise SysctlError(f"read sysctl {key}: {exc.strerror}", exc.errno) from None


def write(key: str, value: str) -> None:
    """Set `key` to `value`; nothing is written when it already has that value."""
    path = path_of(key)
    try:
        if read(key) == value:
            return
    except SysctlError as exc:
        if exc.errno != errno.EACCES:  # write-only keys exist (e.g. vm/drop_caches)
            raise
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise SysctlError(f"write sysctl {key}={value}: {exc.strerror}", exc.errno) from None
