#!/usr/bin/env python3
"""pymobyd against a reference engine, side by side, over the Docker Engine API.

What it measures, for each endpoint (default GET /_ping, /version, /info) and each engine:

  latency p50/p90/p99 ms   N sequential requests over ONE keep-alive connection.
                           Ratio pymoby/ref < 1 means pymoby answers faster.
  req/s                    C concurrent keep-alive connections for T seconds; completed
                           requests per second. Ratio pymoby/ref > 1 means pymoby serves more.
  cpu us/req               CPU time (user+sys) of the engine's process tree during the req/s
                           phase divided by the requests it served. The engine's pid comes from
                           SO_PEERCRED; the tree includes its children (dockerd's own containerd,
                           which /info calls) and children run and reaped meanwhile (`runc
                           --version`). Ratio < 1 means pymoby is cheaper. Needs /proc access
                           to the engine (same user or root), else "-".
  client cpu %             the benchmark client's own CPU during the req/s phase, in % of one
                           core. Near 100 % means the client, not the engine, limited req/s:
                           then trust cpu us/req and latency more than req/s.

How: both engines get the same minimal asyncio HTTP/1.1 client (raw requests on a unix socket,
Content-Length and chunked bodies; every response must be 200). Each endpoint is warmed up on
both engines, then measured in --rounds rounds whose engine order alternates (AB, BA, AB, ...),
so drift and machine noise hit both alike. Each value is the median of the rounds; "spread" is
the largest (max-min)/median over the rounds of either engine, a hint of how noisy it was.

Targets are loopback unix sockets only. Without --pymoby the script starts its own pymobyd in
a temporary directory and stops it (SIGTERM) at the end, also on errors and Ctrl-C. Without
--ref it measures pymobyd alone and says so. It is never pass/fail: it prints a table (and
--json FILE writes the raw per-round numbers).

    .venv/bin/python bench/bench.py --ref unix:///tmp/ref.sock
    make bench REF=unix:///tmp/ref.sock BENCH_ARGS="--rounds 5 --json /tmp/bench.json"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_REQUESTS = {"/_ping": 2000, "/version": 2000, "/info": 300}
OTHER_REQUESTS = 300
DEFAULT_ENDPOINTS = "/_ping,/version,/info"
WARMUP_REQUESTS = 200
WARMUP_SECONDS = 0.5
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A run that cannot give valid numbers: engine down, non-200 answer, timeout."""


# --------------------------------------------------------------------------- HTTP client


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


# --------------------------------------------------------------------------- engines


@dataclass
class Engine:
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


def unix_path(url: str) -> str:
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


class SelfStarted:
    """A pymobyd started by the bench in a temporary directory."""

    def __init__(self, extra_args: list[str]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pymoby-bench-"))
        self.sock = str(self.dir / "api.sock")
        self.log = self.dir / "log"
        self.reported = False  # its log tail was already shown
        (self.dir / "daemon.json").write_text("{}\n")
        cmd = [
            sys.executable,
            "-m",
            "pymoby",
            "--host",
            f"unix://{self.sock}",
            "--data-root",
            str(self.dir / "data"),
            "--exec-root",
            str(self.dir / "exec"),
            "--pidfile",
            str(self.dir / "pid"),
            "--config-file",
            str(self.dir / "daemon.json"),
            *extra_args,
        ]
        print(f"starting: {' '.join(cmd)}", file=sys.stderr)
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C goes to the bench, which stops it in order
            )

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    async def wait_ready(self, limit: float) -> None:
        deadline = time.monotonic() + limit
        last = "not started"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.reported = True
                raise BenchError(
                    f"pymobyd exited with {self.proc.returncode} before answering /_ping;"
                    f" log:\n{self.log_tail()}"
                )
            if os.path.exists(self.sock):
                conn = None
                try:
                    conn = await Conn.open(self.sock)
                    if await conn.get("/_ping") == b"OK":
                        return
                except BenchError as err:
                    last = str(err)
                finally:
                    if conn is not None:
                        await conn.close()
            await asyncio.sleep(0.1)
        raise BenchError(f"pymobyd not ready after {limit:.0f}s ({last}); log:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                print("pymobyd ignored SIGTERM for 20s; killing it", file=sys.stderr)
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.returncode not in (0, -signal.SIGTERM) and not self.reported:
            print(
                f"pymobyd exited with {self.proc.returncode}; log:\n{self.log_tail()}",
                file=sys.stderr,
            )
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------- measures


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    k = max(0, math.ceil(p / 100 * len(sorted_values)) - 1)
    return sorted_values[k]


@contextlib.contextmanager
def quiet_gc() -> Any:
    """No client GC pauses inside a measured phase (same for both engines)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def latency(engine: Engine, path: str, n: int, limit: float) -> dict[str, float]:
    conn = await Conn.open(engine.sock)
    samples = [0.0] * n
    clock = time.perf_counter_ns
    try:
        async with asyncio.timeout(limit):
            with quiet_gc():
                for i in range(n):
                    t0 = clock()
                    await conn.get(path)
                    samples[i] = (clock() - t0) / 1e6
    except TimeoutError as err:
        raise BenchError(f"{engine.name} GET {path}: latency phase over {limit:.0f}s") from err
    finally:
        await conn.close()
    samples.sort()
    return {f"p{p}": percentile(samples, p) for p in (50, 90, 99)}


async def throughput(
    engine: Engine, path: str, concurrency: int, seconds: float, limit: float
) -> dict[str, float | None]:
    conns = await asyncio.gather(*(Conn.open(engine.sock) for _ in range(concurrency)))
    pids = process_tree(engine.pid) if engine.pid else []
    counts = [0] * concurrency
    try:
        with quiet_gc():
            cpu0 = tree_cpu_seconds(pids) if pids else None
            client0 = time.process_time()
            t0 = time.perf_counter()
            deadline = t0 + seconds

            async def worker(i: int) -> None:
                conn, n, clock = conns[i], 0, time.perf_counter
                while clock() < deadline:
                    await conn.get(path)
                    n += 1
                counts[i] = n

            try:
                async with asyncio.timeout(seconds + limit), asyncio.TaskGroup() as tg:
                    for i in range(concurrency):
                        tg.create_task(worker(i))
            except* BenchError as group:
                raise group.exceptions[0] from None
            except* TimeoutError:
                raise BenchError(f"{engine.name} GET {path}: req/s phase timed out") from None
            elapsed = time.perf_counter() - t0
            client = time.process_time() - client0
            cpu1 = tree_cpu_seconds(pids) if pids else None
    finally:
        for conn in conns:
            await conn.close()
    total = sum(counts)
    cpu_us = None
    if cpu0 is not None and cpu1 is not None and total:
        cpu_us = (cpu1 - cpu0) / total * 1e6
    return {"rps": total / elapsed, "cpu_us": cpu_us, "client_pct": client / elapsed * 100}


async def warm_up(engine: Engine, path: str, n: int, concurrency: int, limit: float) -> None:
    await latency(engine, path, min(n, WARMUP_REQUESTS), limit)
    await throughput(engine, path, concurrency, WARMUP_SECONDS, limit)


# --------------------------------------------------------------------------- run and report

# key, label, which way is better (for the header), has a meaningful ratio
METRICS: list[tuple[str, str, bool]] = [
    ("p50", "latency p50 ms", True),
    ("p90", "latency p90 ms", True),
    ("p99", "latency p99 ms", True),
    ("rps", "req/s", True),
    ("cpu_us", "cpu us/req", True),
    ("client_pct", "client cpu %", False),
]

Results = dict[str, dict[str, dict[str, list[float | None]]]]  # path -> metric -> engine -> rounds


async def run(args: argparse.Namespace, engines: list[Engine], starter: SelfStarted | None) -> Any:
    if starter is not None:
        await starter.wait_ready(args.start_timeout)
    for engine in engines:
        await probe(engine)

    results: Results = {}
    for path, n in args.endpoints:
        res = results[path] = {m: {e.name: [] for e in engines} for m, _, _ in METRICS}
        for engine in engines:
            await warm_up(engine, path, n, args.concurrency, args.timeout)
        for r in range(args.rounds):
            order = engines if r % 2 == 0 else engines[::-1]
            for engine in order:
                lat = await latency(engine, path, n, args.timeout)
                for key, value in lat.items():
                    res[key][engine.name].append(value)
            line = ", ".join(f"{e.name} p50 {res['p50'][e.name][-1]:.3f} ms" for e in engines)
            print(f"[{path}] latency   round {r + 1}/{args.rounds}: {line}", file=sys.stderr)
        for r in range(args.rounds):
            order = engines if r % 2 == 0 else engines[::-1]
            for engine in order:
                thr = await throughput(engine, path, args.concurrency, args.seconds, args.timeout)
                for key, maybe in thr.items():
                    res[key][engine.name].append(maybe)
            line = ", ".join(f"{e.name} {res['rps'][e.name][-1]:.0f} req/s" for e in engines)
            print(f"[{path}] req/s     round {r + 1}/{args.rounds}: {line}", file=sys.stderr)

    for engine in engines:
        if engine.pid:
            engine.rss_kib = {
                "main": rss_kib(engine.pid),
                "tree": sum(rss_kib(p) for p in process_tree(engine.pid)),
            }
    return results


def median(values: list[float | None]) -> float | None:
    real = [v for v in values if v is not None]
    return statistics.median(real) if real else None


def spread(values: list[float | None]) -> float | None:
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


def machine_facts() -> dict[str, Any]:
    cpu_model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    try:
        import uvloop

        loop = f"uvloop {getattr(uvloop, '__version__', '?')}"
    except ImportError:
        loop = "asyncio"
    return {
        "time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "loadavg": os.getloadavg(),
        "python": platform.python_version(),
        "client_loop": loop,
    }


def report(
    args: argparse.Namespace, engines: list[Engine], facts: dict[str, Any], results: Results
) -> str:
    names = [e.name for e in engines]
    compare = len(engines) == 2
    out = [
        f"pymoby bench, {facts['time']}",
        f"machine: {facts['nproc']} CPUs ({facts['cpus_usable']} usable), {facts['cpu_model']},"
        f" kernel {facts['kernel']}, load avg at start"
        f" {' '.join(f'{x:.2f}' for x in facts['loadavg'])}",
        f"client:  Python {facts['python']}, {facts['client_loop']}; {args.rounds} round(s) in"
        f" alternating engine order, median of rounds; req/s with {args.concurrency}"
        f" connections x {args.seconds:g}s",
    ]
    out += [f"{e.name + ':':8} {e.describe()}" for e in engines]
    if compare:
        out.append(
            "ratio = pymoby/ref. latency and cpu us/req: < 1 means pymoby is faster/cheaper;"
            " req/s: > 1 means pymoby is faster."
        )
    else:
        out.append("pymobyd alone (no --ref given): no comparison.")
    out.append("")

    header = ["endpoint", "measure", *names]
    if compare:
        header.append("ratio")
    header.append("spread")
    rows = [header]
    for path, n in args.endpoints:
        for key, label, has_ratio in METRICS:
            per = results[path][key]
            meds = [median(per[name]) for name in names]
            shown = f"{label} (n={n})" if key.startswith("p") else label
            row = [path, shown, *(fmt(m) for m in meds)]
            if compare:
                a, b = meds
                row.append(f"{a / b:.2f}" if has_ratio and a is not None and b else "")
            spreads = [s for s in (spread(per[name]) for name in names) if s is not None]
            row.append(f"{max(spreads) * 100:.0f}%" if spreads and has_ratio else "")
            rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        cells = [
            cell.ljust(widths[j]) if j < 2 else cell.rjust(widths[j]) for j, cell in enumerate(row)
        ]
        out.append("  ".join(cells).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    client = [
        v
        for path, _ in args.endpoints
        for rounds in results[path]["client_pct"].values()
        for v in rounds
        if v is not None
    ]
    client_max = max(client, default=0.0)
    if client_max >= 90:
        out.append(
            f"\nnote: the client used up to {client_max:.0f}% of a core during req/s: req/s is"
            " (partly) client-bound there; cpu us/req and latency compare the engines better."
        )
    return "\n".join(out)


# --------------------------------------------------------------------------- command line


def bounded(kind: Callable[[str], Any], low: float, high: float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text}: must be between {low:g} and {high:g}")
        return value

    return parse


def parse_endpoints(text: str) -> list[tuple[str, int | None]]:
    out: list[tuple[str, int | None]] = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        path, sep, count = item.rpartition(":")
        if not sep or not count.isdigit():
            path, sep = item, ""
        if not path.startswith("/") or any(c in path for c in " \r\n"):
            raise argparse.ArgumentTypeError(f"{item!r}: an endpoint is a path like /info[:N]")
        out.append((path, bounded(int, 1, 100_000)(count) if sep else None))
    if not out:
        raise argparse.ArgumentTypeError("no endpoints")
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark pymobyd against a reference engine (see the module docstring).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--ref", type=unix_path, help="reference engine, unix:///path.sock")
    p.add_argument(
        "--pymoby", type=unix_path, help="running pymobyd, unix:///path.sock (default: start one)"
    )
    p.add_argument(
        "--pymoby-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra flag for the self-started pymobyd (repeatable, e.g. --pymoby-arg=--debug)",
    )
    p.add_argument(
        "--endpoints",
        type=parse_endpoints,
        default=DEFAULT_ENDPOINTS,
        help="comma-separated GET paths, each optionally PATH:N for its latency request count",
    )
    p.add_argument(
        "--requests",
        type=bounded(int, 1, 100_000),
        help="latency requests per round for every endpoint"
        f" (default {DEFAULT_REQUESTS}, else {OTHER_REQUESTS})",
    )
    p.add_argument("--concurrency", type=bounded(int, 1, 256), default=16, help="req/s connections")
    p.add_argument(
        "--seconds", type=bounded(float, 0.1, 60), default=3.0, help="req/s phase length"
    )
    p.add_argument("--rounds", type=bounded(int, 1, 15), default=3, help="rounds per measure")
    p.add_argument(
        "--timeout", type=bounded(float, 1, 600), default=120.0, help="limit per phase, seconds"
    )
    p.add_argument(
        "--start-timeout",
        type=bounded(float, 1, 120),
        default=30.0,
        help="wait this long for a self-started pymobyd",
    )
    p.add_argument("--no-uvloop", action="store_true", help="plain asyncio loop for the client")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the raw results here")
    args = p.parse_args(argv)
    args.endpoints = [
        (path, n or args.requests or DEFAULT_REQUESTS.get(path, OTHER_REQUESTS))
        for path, n in args.endpoints
    ]
    return args


def run_loop(coro: Coroutine[Any, Any, Any], use_uvloop: bool) -> Any:
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if use_uvloop:
        try:
            import uvloop

            factory = uvloop.new_event_loop
        except ImportError:
            pass
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started in the background
    facts = machine_facts()
    if args.no_uvloop:
        facts["client_loop"] = "asyncio"
    per_endpoint = args.rounds * (2 if args.ref else 1) * args.seconds + 2 * WARMUP_SECONDS
    print(
        f"req/s phases alone take ~{per_endpoint * len(args.endpoints):.0f}s, plus latency runs",
        file=sys.stderr,
    )
    starter: SelfStarted | None = None
    try:
        if args.pymoby is None:
            starter = SelfStarted(args.pymoby_arg)
        engines = [Engine("pymoby", args.pymoby)]
        if starter is not None:
            engines = [Engine("pymoby", starter.sock, started_by_bench=True)]
        if args.ref:
            engines.append(Engine("ref", args.ref))
        results = run_loop(run(args, engines, starter), not args.no_uvloop)
    except BenchError as err:
        print(f"bench: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        if starter is not None:
            starter.stop()

    print(report(args, engines, facts, results))
    if args.json:
        data = {
            "machine": facts,
            "config": {
                "endpoints": dict(args.endpoints),
                "concurrency": args.concurrency,
                "seconds": args.seconds,
                "rounds": args.rounds,
            },
            "engines": {
                e.name: {
                    "url": e.url,
                    "started_by_bench": e.started_by_bench,
                    "pid": e.pid,
                    "rss_kib": e.rss_kib,
                    "version": e.version,
                }
                for e in engines
            },
            "results": {
                path: {
                    metric: {
                        name: {"rounds": vals, "median": median(vals)} for name, vals in d.items()
                    }
                    for metric, d in per.items()
                }
                for path, per in results.items()
            },
        }
        args.json.write_text(json.dumps(data, indent=2) + "\n")
        print(f"raw results: {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
