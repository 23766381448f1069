"""Shared pieces of the benchmark: engines, HTTP clients, process CPU, rows of the result table.

Two HTTP clients, both on unix sockets only:

- `Conn`: asyncio, keep-alive, GET only; the request-rate benchmarks (http_endpoints.py).
- `request()`: blocking, one request per connection (``Connection: close``), streams a request
  body from a file with sendfile(2) and hands the response body to a sink chunk by chunk without
  keeping it; the bulk-transfer benchmarks (images.py) and cleanup calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import socket
import statistics
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
RECV_SIZE = 1 << 20


class BenchError(Exception):
    """A run that cannot give valid numbers: engine down, unexpected answer, timeout."""


# --------------------------------------------------------------------------- engines


@dataclass
class Engine:
    """One engine under test: its socket, and facts gathered while probing it."""

    name: str
    sock: str
    started_by_bench: bool = False
    pid: int | None = None
    version: dict[str, Any] = field(default_factory=dict)
    rss_kib: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"

    def describe(self) -> str:
        v = self.version
        server = v.get("Version", "?")
        bits = [f"{server}", f"API {v.get('ApiVersion', '?')}"]
        if v.get("GoVersion"):
            bits.append(str(v["GoVersion"]))
        bits.append(f"pid {self.pid}" if self.pid else "pid unknown")
        if self.rss_kib:
            bits.append(
                f"RSS {self.rss_kib['main'] / 1024:.0f} MiB"
                f" (tree {self.rss_kib['tree'] / 1024:.0f} MiB)"
            )
        started = " (started by bench)" if self.started_by_bench else ""
        return f"{self.url}{started}: {', '.join(bits)}"

    def record_rss(self) -> None:
        if self.pid:
            self.rss_kib = {
                "main": rss_kib(self.pid),
                "tree": sum(rss_kib(p) for p in process_tree(self.pid)),
            }

    def cpu_seconds(self) -> float | None:
        """CPU seconds used so far by the engine's process tree (None without /proc access)."""
        if not self.pid:
            return None
        return tree_cpu_seconds(process_tree(self.pid))


def unix_path(url: str) -> str:
    """argparse type: unix:///path.sock -> /path.sock; nothing else is accepted."""
    if not url.startswith("unix://") or len(url) <= len("unix://"):
        raise argparse.ArgumentTypeError(f"{url!r}: only unix:///path/to.sock targets are allowed")
    return url[len("unix://") :]


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def tree_cpu_seconds(pids: list[int]) -> float | None:
    """Summed user+sys CPU seconds of pids (whole thread groups and reaped children)."""
    total = 0
    for i, pid in enumerate(pids):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            if i == 0:
                return None
            continue  # a child that went away
        # utime, stime, cutime, cstime (fields 14-17): the c* part holds reaped children,
        # e.g. `runc --version` run per request
        total += sum(int(f) for f in fields[11:15])
    return total / CLK_TCK


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# --------------------------------------------------------------------------- asyncio GET client


class Conn:
    """One keep-alive HTTP/1.1 connection to a unix socket; GET only, sequential."""

    _requests: dict[str, bytes] = {}

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, sock: str) -> Conn:
        try:
            reader, writer = await asyncio.open_unix_connection(sock)
        except OSError as err:
            raise BenchError(f"cannot connect to unix://{sock}: {err}") from err
        return cls(reader, writer)

    def peer_pid(self) -> int | None:
        sock = self._writer.get_extra_info("socket")
        if sock is None:
            return None
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        except OSError:
            return None
        pid: int = struct.unpack("3i", raw)[0]
        return pid or None

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self._writer.wait_closed()

    async def get(self, path: str) -> bytes:
        """GET path; return the body. Raise BenchError unless the answer is 200 and kept alive."""
        req = self._requests.get(path)
        if req is None:
            text = f"GET {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: pymoby-bench\r\n\r\n"
            req = self._requests[path] = text.encode()
        self._writer.write(req)
        try:
            head = await self._reader.readuntil(b"\r\n\r\n")
            status_line, _, headers = head.partition(b"\r\n")
            proto, _, rest = status_line.partition(b" ")
            if not proto.startswith(b"HTTP/1."):
                raise BenchError(f"GET {path}: not an HTTP/1.x answer: {status_line[:80]!r}")
            status = int(rest[:3])
            length: int | None = None
            chunked = False
            close = False
            for line in headers.split(b"\r\n"):
                name, sep, value = line.partition(b":")
                if not sep:
                    continue
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif name == b"connection":
                    close = b"close" in value.lower()
            if chunked:
                body = await self._read_chunked()
            elif length is not None:
                body = await self._reader.readexactly(length)
            else:
                raise BenchError(f"GET {path}: no Content-Length and not chunked")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError) as err:
            raise BenchError(f"GET {path}: connection broken: {err!r}") from err
        if status != 200:
            raise BenchError(f"GET {path}: HTTP {status}: {body[:200]!r}")
        if close:
            raise BenchError(f"GET {path}: engine closed the keep-alive connection")
        return body

    async def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        reader = self._reader
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, if any
                    pass
                return b"".join(parts)
            parts.append((await reader.readexactly(size + 2))[:-2])


async def probe(engine: Engine) -> None:
    """Check /_ping, fetch /version and the engine's pid."""
    conn = await Conn.open(engine.sock)
    try:
        body = await conn.get("/_ping")
        if body != b"OK":
            raise BenchError(f"{engine.name}: /_ping answered {body[:80]!r}, not OK")
        engine.version = json.loads(await conn.get("/version"))
        engine.pid = conn.peer_pid()
    finally:
        await conn.close()


# --------------------------------------------------------------------------- blocking client


@dataclass
class Response:
    """A response whose body went to a sink; `body` holds it only when no sink was given."""

    status: int
    headers: dict[str, str]
    length: int
    body: bytes = b""

    def message(self) -> str:
        """The engine's error text ({"message": ...}) or the start of the body."""
        with contextlib.suppress(ValueError, AttributeError):
            return str(json.loads(self.body)["message"])
        return self.body[:200].decode(errors="replace").strip() or f"HTTP {self.status}"


class _Reader:
    """Buffered reads from a blocking socket; large bodies bypass the buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def _more(self) -> None:
        data = self._sock.recv(RECV_SIZE)
        if not data:
            raise BenchError("connection closed in the middle of a response")
        self._buf = self._buf[self._pos :] + data
        self._pos = 0

    def line(self) -> bytes:
        while (end := self._buf.find(b"\r\n", self._pos)) < 0:
            if len(self._buf) - self._pos > 65536:
                raise BenchError("response line over 64 KiB")
            self._more()
        out = self._buf[self._pos : end]
        self._pos = end + 2
        return out

    def take(self, n: int, sink: Callable[[memoryview], None]) -> None:
        """Pass exactly n bytes to sink."""
        have = min(n, len(self._buf) - self._pos)
        if have:
            sink(memoryview(self._buf)[self._pos : self._pos + have])
            self._pos += have
            n -= have
        while n > 0:
            data = self._sock.recv(min(n, RECV_SIZE))
            if not data:
                raise BenchError("connection closed in the middle of a response body")
            sink(memoryview(data))
            n -= len(data)

    def rest(self, sink: Callable[[memoryview], None]) -> int:
        """Pass everything until EOF to sink; return its length."""
        total = len(self._buf) - self._pos
        if total:
            sink(memoryview(self._buf)[self._pos :])
        self._buf, self._pos = b"", 0
        while data := self._sock.recv(RECV_SIZE):
            sink(memoryview(data))
            total += len(data)
        return total


def request(
    sock_path: str,
    method: str,
    path: str,
    *,
    timeout: float,
    body: Path | bytes | None = None,
    content_type: str = "application/json",
    sink: Callable[[memoryview], None] | None = None,
) -> Response:
    """One HTTP/1.1 request on its own connection; the body of the answer goes to sink.

    A Path body is sent with sendfile(2) and a Content-Length. timeout bounds every socket
    operation (connect, each send and recv), not the whole request.
    """
    kept: list[bytes] = []
    out = sink if sink is not None else (lambda mv: kept.append(bytes(mv)))
    head = [f"{method} {path} HTTP/1.1", "Host: docker", "User-Agent: pymoby-bench"]
    size = 0
    if isinstance(body, Path):
        size = body.stat().st_size
    elif body is not None:
        size = len(body)
    if body is not None:
        head += [f"Content-Type: {content_type}", f"Content-Length: {size}"]
    head += ["Connection: close", "", ""]
    what = f"{method} {path}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(sock_path)
        except OSError as err:
            raise BenchError(f"cannot connect to unix://{sock_path}: {err}") from err
        send_error: OSError | None = None
        try:
            s.sendall("\r\n".join(head).encode())
            if isinstance(body, Path):
                with body.open("rb") as f:
                    s.sendfile(f)
            elif body:
                s.sendall(body)
        except TimeoutError as err:
            raise BenchError(f"{what}: sending the request took over {timeout:.0f}s") from err
        except OSError as err:  # the engine may have answered early (an error) and closed
            send_error = err
        try:
            resp = _read_response(_Reader(s), method, out)
        except TimeoutError as err:
            raise BenchError(f"{what}: no answer within {timeout:.0f}s") from err
        except (OSError, BenchError, ValueError) as err:
            why = f"{err}" + (f" (sending failed: {send_error})" if send_error else "")
            raise BenchError(f"{what}: {why}") from err
    if sink is None:
        resp.body = b"".join(kept)
    return resp


def _read_response(reader: _Reader, method: str, sink: Callable[[memoryview], None]) -> Response:
    status_line = reader.line()
    proto, _, rest = status_line.partition(b" ")
    if not proto.startswith(b"HTTP/1."):
        raise BenchError(f"not an HTTP/1.x answer: {status_line[:80]!r}")
    status = int(rest[:3])
    headers: dict[str, str] = {}
    while line := reader.line():
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return Response(status, headers, 0)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        total = 0
        while True:
            size = int(reader.line().split(b";", 1)[0].strip(), 16)
            if size == 0:
                while reader.line():  # trailers, if any
                    pass
                return Response(status, headers, total)
            reader.take(size, sink)
            total += size
            if reader.line():
                raise BenchError("bad chunked framing")
    if "content-length" in headers:
        length = int(headers["content-length"])
        reader.take(length, sink)
        return Response(status, headers, length)
    return Response(status, headers, reader.rest(sink))


def api_ok(
    engine: Engine, method: str, path: str, timeout: float, ok: tuple[int, ...] = (200,)
) -> Response:
    """request() that raises BenchError unless the status is in ok."""
    resp = request(engine.sock, method, path, timeout=timeout)
    if resp.status not in ok:
        raise BenchError(f"{engine.name}: {method} {path}: HTTP {resp.status}: {resp.message()}")
    return resp


# --------------------------------------------------------------------------- numbers and rows


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    k = max(0, math.ceil(p / 100 * len(sorted_values)) - 1)
    return sorted_values[k]


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """No client GC pauses inside a measured phase (same for both engines)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def median(values: list[float | None]) -> float | None:
    real = [v for v in values if v is not None]
    return statistics.median(real) if real else None


def spread(values: list[float | None]) -> float | None:
    """(max - min) / median of the rounds, None with fewer than two."""
    real = [v for v in values if v is not None]
    mid = statistics.median(real) if real else 0
    if len(real) < 2 or not mid:
        return None
    return (max(real) - min(real)) / mid


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


@dataclass
class Row:
    """One line of the table: a measure of one target, per engine the value of every round.

    An engine listed in `unavailable` has no values (its cell reads n/a); `ratio` says whether
    pymoby/ref is meaningful for this measure, `spread` whether the round spread is shown.
    """

    group: str
    target: str
    label: str
    key: str
    values: dict[str, list[float | None]]
    ratio: bool = True
    spread: bool = True
    unavailable: dict[str, str] = field(default_factory=dict)

    def median(self, engine: str) -> float | None:
        if engine in self.unavailable:
            return None
        return median(self.values.get(engine, []))


@dataclass
class GroupResult:
    """Rows of one benchmark group plus notes printed under the table."""

    name: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)


def alternate(engines: list[Engine], round_index: int) -> list[Engine]:
    """Engine order of a round: AB, BA, AB, ..."""
    return engines if round_index % 2 == 0 else engines[::-1]


def now() -> float:
    return time.perf_counter()
