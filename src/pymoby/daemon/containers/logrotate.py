"""Size-based rotation of a running container's log by the daemon, without losing a line.

Rule: conmon 2.1 only knows how to *truncate* its log (`--log-size-max`, or a reopen request:
it closes its descriptor, creates `<log>.tmp` and renames it over `<log>`), so conmon is never
given a size limit. The daemon rotates instead, as dockerd's json-file driver does
(`max-size`, `max-file`), in three steps:

1. shift the rotated files: `<log>.{max-file - 1}` is deleted, `<log>.i` becomes `<log>.i+1`;
2. rename `<log>` to `<log>.1` (with max-file 1 to a hidden `.<log>.rotating` name);
3. ask conmon to reopen (`Runtime.reopen_log`: message 2 on its ctl FIFO): conmon syncs and
   closes its descriptor, which still points at the renamed file, and creates a new `<log>`.

Between 2 and 3 conmon keeps appending to the renamed file, so no record is lost; readers
follow the rename (logfile.Cursor reads the old file to its end before the new one). With
max-file 1 the renamed file is deleted after step 3 (dockerd truncates in that case).

A rotation is triggered by a size check after the log was written (an IN_MODIFY from the
shared DirWatcher), at most once per CHECK_INTERVAL per container: a file can overshoot
max-size by what the container wrote in that interval (dockerd rotates before the write that
would overflow). While no daemon runs, conmon keeps writing; `watch` checks at once, so a
restored container's oversized log is rotated when the daemon is back.

Options (dockerd's json-file and local drivers): `max-size` is units.RAMInBytes (`10m`,
`1.5g`, `100k`, binary multiples); `max-file` an integer >= 1, counted only with max-size. The
`local` driver defaults to 20m and 5 files; `compress` is not implemented (files stay plain).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pymoby.daemon.containers.logfile import rotated_files
from pymoby.daemon.containers.logwatch import DirWatcher

log = logging.getLogger("pymoby.logs")

CHECK_INTERVAL = 0.05
LOCAL_DEFAULT_SIZE = 20 * 1024 * 1024
LOCAL_DEFAULT_FILES = 5

_SIZE = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}

Reopen = Callable[[str], Awaitable[None]]


def ram_in_bytes(text: str) -> int:
    """go-units RAMInBytes: a number with an optional binary unit; ValueError otherwise."""
    m = _SIZE.match(text)
    if m is None:
        raise ValueError(f"invalid size: '{text}'")
    if m.group(1).count(".") > 1:  # the pattern allows it, Go's ParseFloat does not
        raise ValueError(f"invalid size: '{text}'")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


@dataclass(frozen=True)
class RotationPolicy:
    max_size: int
    max_file: int


def rotation_policy(log_type: str, opts: Mapping[str, str] | None) -> RotationPolicy | None:
    """The rotation a container's LogConfig asks for; None when its log is not rotated."""
    opts = opts or {}
    if log_type == "local":
        size, files = LOCAL_DEFAULT_SIZE, LOCAL_DEFAULT_FILES
    elif log_type in ("", "json-file", "k8s-file"):
        size, files = -1, 1
    else:
        return None
    try:
        if opts.get("max-size"):
            size = ram_in_bytes(opts["max-size"])
        if opts.get("max-file"):
            files = int(opts["max-file"], 10)
    except ValueError:
        return None  # refused at create; an old record with a bad value is not rotated
    if size <= 0 or files < 1:
        return None
    return RotationPolicy(size, files)


def rotate_files(path: Path, max_file: int) -> Path:
    """Steps 1 and 2 of the module docstring (blocking); returns where `path` went."""
    for old in rotated_files(path):
        n = int(old.name.rsplit(".", 1)[1])
        if n >= max_file - 1 or max_file < 2:
            old.unlink(missing_ok=True)
    for n in range(max_file - 2, 0, -1):
        src = path.with_name(f"{path.name}.{n}")
        with contextlib.suppress(FileNotFoundError):
            os.rename(src, path.with_name(f"{path.name}.{n + 1}"))
    target = path.with_name(f"{path.name}.1" if max_file >= 2 else f".{path.name}.rotating")
    os.rename(path, target)
    return target


def _restore(target: Path, path: Path) -> None:
    if not path.exists():
        with contextlib.suppress(OSError):
            os.rename(target, path)


@dataclass
class _Watch:
    cid: str
    path: Path
    policy: RotationPolicy
    unsubscribe: Callable[[], None] = lambda: None
    last_check: float = 0.0
    scheduled: asyncio.TimerHandle | None = None
    rotating: asyncio.Task[None] | None = None
    rotations: int = 0


class LogRotator:
    """Rotates the logs of the containers it watches (see the module docstring)."""

    def __init__(self, watcher: DirWatcher, reopen: Reopen) -> None:
        self._watcher = watcher
        self._reopen = reopen
        self._watches: dict[str, _Watch] = {}

    def watch(self, cid: str, path: Path, policy: RotationPolicy | None) -> None:
        """Rotate `cid`'s log at `path` while it runs (idempotent); checks its size now."""
        if policy is None or cid in self._watches:
            return
        w = _Watch(cid, path, policy)
        try:
            w.unsubscribe = self._watcher.subscribe(path.parent, lambda name: self._event(w, name))
        except OSError as e:
            log.warning("cannot watch the log of %s for rotation: %s", cid, e)
            return
        self._watches[cid] = w
        self._check(w)

    def unwatch(self, cid: str) -> None:
        w = self._watches.pop(cid, None)
        if w is None:
            return
        w.unsubscribe()
        if w.scheduled is not None:
            w.scheduled.cancel()

    def rotations(self, cid: str) -> int:
        w = self._watches.get(cid)
        return w.rotations if w is not None else 0

    def _event(self, w: _Watch, name: str) -> None:
        if name not in ("", w.path.name) or w.scheduled is not None:
            return
        wait = w.last_check + CHECK_INTERVAL - time.monotonic()
        if wait <= 0:
            self._check(w)
        else:
            w.scheduled = asyncio.get_running_loop().call_later(wait, self._check, w)

    def _check(self, w: _Watch) -> None:
        w.scheduled = None
        w.last_check = time.monotonic()
        if w.rotating is not None or self._watches.get(w.cid) is not w:
            return
        try:
            size = os.stat(w.path).st_size  # metadata of a file being written: cached, cheap
        except OSError:
            return
        if size >= w.policy.max_size:
            w.rotating = asyncio.get_running_loop().create_task(self._rotate(w))

    async def _rotate(self, w: _Watch) -> None:
        try:
            target = await asyncio.to_thread(rotate_files, w.path, w.policy.max_file)
        except OSError as e:
            log.error("rotating the log of %s: %s", w.cid, e)
            w.rotating = None
            return
        try:
            await self._reopen(w.cid)
        except Exception as e:  # no conmon any more (the container stopped): put the file back
            log.warning("conmon of %s did not reopen its log: %s", w.cid, e)
            await asyncio.to_thread(_restore, target, w.path)
            w.rotating = None
            return
        w.rotations += 1
        w.rotating = None
        if w.policy.max_file < 2:
            await asyncio.to_thread(target.unlink, True)
        self._check(w)  # written past max-size again while we rotated?

    async def close(self) -> None:
        for cid in list(self._watches):
            w = self._watches[cid]
            self.unwatch(cid)
            if w.rotating is not None:
                with contextlib.suppress(BaseException):
                    await w.rotating
