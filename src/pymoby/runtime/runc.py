"""The runc command line: state, list, start, kill, delete, pause, resume, ps.

Rule: every call is `runc --root <state root> --log-format json <command> ...` run as an
asyncio subprocess (never a thread blocked on it); runc's JSON log lines on stderr become
errdefs classes at this edge, carrying runc's own `msg`:

- "container does not exist"                                -> RuncNotFound (NotFound)
- "... not running", "already running", "has stopped",
  "not paused", "not stopped", "is paused"                   -> RuncConflict (Conflict)
- anything else (or a timeout)                               -> RuncError (System)

Facts this relies on (runc 1.1): `state` prints one JSON object (ociVersion, id, pid, status
created|running|paused|stopped, bundle, rootfs, created RFC 3339 nano, owner, annotations);
`list --format json` prints `null` when empty; `delete --force` of a missing container exits 0;
`ps --format json` prints a JSON array of host pids.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymoby import errdefs
from pymoby.runtime.binaries import run_tool

DEFAULT_TIMEOUT = 60.0

_CONFLICT = re.compile(
    r"not running|already running|has stopped|not paused|not stopped|is paused|"
    r"is not created|cannot start|container is stopped"
)
_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|z|[+-]\d\d:\d\d)$"
)


class RuncError(errdefs.System):
    """runc failed; `message` is runc's own text (its last error log line)."""


class RuncNotFound(errdefs.NotFound):
    """runc has no container with this id."""


class RuncConflict(errdefs.Conflict):
    """The container is in the wrong state for the command."""


def parse_rfc3339_ns(value: str) -> int:
    """RFC 3339 (nano) -> integer nanoseconds since the epoch; 0 when unparsable."""
    m = _RFC3339.match(value.strip())
    if not m:
        return 0
    y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
    frac = (m.group(7) or "")[:9].ljust(9, "0")
    secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    zone = m.group(8)
    if zone not in ("Z", "z"):
        sign = -1 if zone[0] == "-" else 1
        secs -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return secs * 1_000_000_000 + int(frac)


@dataclass(frozen=True)
class RuncState:
    """`runc state` of one container."""

    id: str
    status: str  # created | running | paused | stopped
    pid: int
    bundle: str
    rootfs: str = ""
    created: str = ""  # as runc prints it (RFC 3339 nano, UTC)
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def created_ns(self) -> int:
        return parse_rfc3339_ns(self.created)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> RuncState:
        return cls(
            id=str(doc.get("id", "")),
            status=str(doc.get("status", "")),
            pid=int(doc.get("pid") or 0),
            bundle=str(doc.get("bundle", "")),
            rootfs=str(doc.get("rootfs", "")),
            created=str(doc.get("created", "")),
            annotations=dict(doc.get("annotations") or {}),
        )


def json_error_message(stderr: bytes) -> str:
    """The last error `msg` of runc's JSON log lines (`--log-format json`); "" when none."""
    message = ""
    for raw in stderr.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if not line.startswith("{"):
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("level") in ("error", "fatal", "panic"):
            message = str(doc.get("msg", ""))
    return message


def error_message(stderr: bytes) -> str:
    """runc's error text: its last JSON error line, else a logrus text line, else the text."""
    return json_error_message(stderr) or logrus_message(stderr.decode("utf-8", "replace"))


def logrus_message(text: str) -> str:
    """`msg="..."` out of a logrus text line (`time=... level=error msg="..."`), else the text."""
    m = re.search(r'level=(?:error|fatal)\s+msg="((?:[^"\\]|\\.)*)"', text)
    if m is None:
        return text.strip()
    try:
        return str(json.loads('"' + m.group(1) + '"'))
    except ValueError:
        return m.group(1)


def to_error(message: str, what: str) -> errdefs.PymobyError:
    """The errdefs class for a runc failure message."""
    if "container does not exist" in message:
        return RuncNotFound(message)
    if _CONFLICT.search(message):
        return RuncConflict(message)
    return RuncError(message or f"runc {what} failed")


class Runc:
    """One runc binary with one state directory (`--root`)."""

    def __init__(self, path: str, root: Path, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = path
        self.root = Path(root)
        self.timeout = timeout

    def global_args(self) -> list[str]:
        """Options every runc call gets (also handed to conmon as --runtime-arg)."""
        return ["--root", str(self.root), "--log-format", "json"]

    async def run(self, *args: str) -> bytes:
        """Run a runc command; stdout on success, a mapped errdefs error otherwise."""
        try:
            async with asyncio.timeout(self.timeout):
                code, out, err = await run_tool(self.path, *self.global_args(), *args)
        except TimeoutError:
            raise RuncError(f"runc {args[0]} timed out after {self.timeout:g}s") from None
        except OSError as e:
            raise RuncError(f"runc {args[0]}: {e.strerror or e}") from e
        if code != 0:
            raise to_error(error_message(err), args[0])
        return out

    async def state(self, cid: str) -> RuncState:
        out = await self.run("state", cid)
        try:
            return RuncState.from_json(json.loads(out))
        except (ValueError, TypeError) as e:
            raise RuncError(f"runc state: bad output: {e}") from e

    async def start(self, cid: str) -> None:
        await self.run("start", cid)

    async def kill(self, cid: str, signal: int | str, *, all: bool = False) -> None:
        args = ["kill"]
        if all:
            args.append("--all")
        await self.run(*args, cid, str(signal))

    async def delete(self, cid: str, *, force: bool = False) -> None:
        await self.run("delete", *(["--force"] if force else []), cid)

    async def pause(self, cid: str) -> None:
        await self.run("pause", cid)

    async def resume(self, cid: str) -> None:
        await self.run("resume", cid)

    async def ps(self, cid: str) -> list[int]:
        out = await self.run("ps", "--format", "json", cid)
        try:
            return [int(p) for p in json.loads(out or b"[]") or []]
        except (ValueError, TypeError) as e:
            raise RuncError(f"runc ps: bad output: {e}") from e

    async def list(self) -> list[RuncState]:
        out = await self.run("list", "--format", "json")
        try:
            docs = json.loads(out or b"null")
        except ValueError as e:
            raise RuncError(f"runc list: bad output: {e}") from e
        return [RuncState.from_json(d) for d in docs or []]
