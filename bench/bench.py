#!/usr/bin/env python3
"""pymobyd against a reference engine, side by side, over the Docker Engine API.

Benchmark groups (--groups, default all three; each module's docstring says what it measures):

  api         http_endpoints.py  latency, req/s and engine CPU per request of cheap GET
                                 endpoints (default /_ping, /version, /info)
  images      images.py          MB/s and engine CPU of POST /images/load and GET /images/get
                                 with a generated 5 x 40 MB image archive
  containers  containers.py      wall time of `docker run --rm <busybox> true` and
                                 `docker exec <c> true` through the real docker CLI

Every group warms up both engines, then measures in --rounds rounds whose engine order
alternates (AB, BA, AB, ...), so drift and machine noise hit both alike. Each value is the
median of the rounds; "spread" is the largest (max-min)/median over the rounds of either
engine, a hint of how noisy it was. Ratio = pymoby/ref: for ms, s and us it is < 1 when pymoby
is faster or cheaper, for req/s and MB/s it is > 1 when pymoby is faster. An engine that cannot
do what a group needs yet is shown as "n/a" with its message under the table.

Targets are loopback unix sockets only. Without --pymoby the script starts its own pymobyd in
a temporary directory and stops it (SIGTERM) at the end, also on errors and Ctrl-C. Without
--ref it measures pymobyd alone and says so. Whatever a group creates on an engine (images,
containers) is removed at the end, also on errors and Ctrl-C. It is never pass/fail: it prints
a table (and --json FILE writes the raw per-round numbers).

    .venv/bin/python bench/bench.py --ref unix:///tmp/ref.sock
    make bench REF=unix:///tmp/ref.sock BENCH_ARGS="--rounds 5 --groups images --json /tmp/b.json"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import containers
import http_endpoints
import images
from benchlib import (
    BenchError,
    Conn,
    Engine,
    GroupResult,
    fmt,
    probe,
    spread,
    unix_path,
)

GROUPS = ("api", "images", "containers")


# --------------------------------------------------------------------------- engines


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


# --------------------------------------------------------------------------- machine


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


# --------------------------------------------------------------------------- report


def report(
    args: argparse.Namespace,
    engines: list[Engine],
    facts: dict[str, Any],
    groups: list[GroupResult],
) -> str:
    """The header lines, one table for every group's rows, then the groups' notes."""
    names = [e.name for e in engines]
    compare = len(engines) == 2
    out = [
        f"pymoby bench, {facts['time']}",
        f"machine: {facts['nproc']} CPUs ({facts['cpus_usable']} usable), {facts['cpu_model']},"
        f" kernel {facts['kernel']}, load avg at start"
        f" {' '.join(f'{x:.2f}' for x in facts['loadavg'])}",
        f"client:  Python {facts['python']}, {facts['client_loop']}; {args.rounds} round(s) in"
        f" alternating engine order, median of rounds; groups: {', '.join(args.groups)}",
    ]
    if "api" in args.groups:
        out.append(f"api:     req/s with {args.concurrency} connections x {args.seconds:g}s")
    out += [f"{e.name + ':':8} {e.describe()}" for e in engines]
    if compare:
        out.append(
            "ratio = pymoby/ref. ms, s, cpu: < 1 means pymoby is faster/cheaper;"
            " req/s, MB/s: > 1 means pymoby is faster."
        )
    else:
        out.append("pymobyd alone (no --ref given): no comparison.")
    out.append("")

    header = ["group", "target", "measure", *names]
    if compare:
        header.append("ratio")
    header.append("spread")
    table = [header]
    for group in groups:
        for row in group.rows:
            meds = [row.median(name) for name in names]
            cells = [
                "n/a" if name in row.unavailable else fmt(m)
                for name, m in zip(names, meds, strict=True)
            ]
            line = [row.group, row.target, row.label, *cells]
            if compare:
                a, b = meds
                line.append(f"{a / b:.2f}" if row.ratio and a is not None and b else "")
            spreads = [
                s
                for s in (spread(row.values[n]) for n in names if n not in row.unavailable)
                if s is not None
            ]
            line.append(f"{max(spreads) * 100:.0f}%" if spreads and row.spread else "")
            table.append(line)
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for i, line in enumerate(table):
        cells = [
            cell.ljust(widths[j]) if j < 3 else cell.rjust(widths[j]) for j, cell in enumerate(line)
        ]
        out.append("  ".join(cells).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    notes = [f"{g.name}: {note}" for g in groups for note in g.notes]
    if notes:
        out.append("")
        out += [f"note: {note}" for note in notes]
    return "\n".join(out)


def as_json(
    args: argparse.Namespace,
    engines: list[Engine],
    facts: dict[str, Any],
    groups: list[GroupResult],
) -> dict[str, Any]:
    """Everything measured: results[group][target][measure key][engine] = rounds + median."""
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for group in groups:
        per_target = results.setdefault(group.name, {})
        for row in group.rows:
            per_target.setdefault(row.target, {})[row.key] = {
                "label": row.label,
                **{
                    name: (
                        {"unavailable": row.unavailable[name]}
                        if name in row.unavailable
                        else {"rounds": vals, "median": row.median(name)}
                    )
                    for name, vals in row.values.items()
                },
            }
    return {
        "machine": facts,
        "config": {
            "groups": list(args.groups),
            "rounds": args.rounds,
            **{g.name: g.config for g in groups},
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
        "results": results,
        "notes": {g.name: g.notes for g in groups},
    }


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


def parse_groups(text: str) -> list[str]:
    out = [g.strip() for g in text.split(",") if g.strip()]
    for g in out:
        if g not in GROUPS:
            raise argparse.ArgumentTypeError(f"{g!r}: groups are {', '.join(GROUPS)}")
    if not out:
        raise argparse.ArgumentTypeError("no groups")
    return sorted(set(out), key=GROUPS.index)


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
        "--groups",
        type=parse_groups,
        default=",".join(GROUPS),
        help=f"comma-separated benchmark groups out of {', '.join(GROUPS)}",
    )
    p.add_argument("--rounds", type=bounded(int, 1, 15), default=3, help="rounds per measure")
    p.add_argument(
        "--timeout",
        type=bounded(float, 1, 600),
        default=120.0,
        help="limit per phase / request / CLI call, seconds",
    )
    p.add_argument(
        "--start-timeout",
        type=bounded(float, 1, 120),
        default=30.0,
        help="wait this long for a self-started pymobyd",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the raw results here")

    api = p.add_argument_group("api group")
    api.add_argument(
        "--endpoints",
        type=parse_endpoints,
        default=http_endpoints.DEFAULT_ENDPOINTS,
        help="comma-separated GET paths, each optionally PATH:N for its latency request count",
    )
    api.add_argument(
        "--requests",
        type=bounded(int, 1, 100_000),
        help="latency requests per round for every endpoint"
        f" (default {http_endpoints.DEFAULT_REQUESTS}, else {http_endpoints.OTHER_REQUESTS})",
    )
    api.add_argument(
        "--concurrency", type=bounded(int, 1, 256), default=16, help="req/s connections"
    )
    api.add_argument(
        "--seconds", type=bounded(float, 0.1, 60), default=3.0, help="req/s phase length"
    )
    api.add_argument("--no-uvloop", action="store_true", help="plain asyncio loop for the client")

    img = p.add_argument_group("images group")
    img.add_argument(
        "--image-layers", type=bounded(int, 1, 50), default=5, help="layers of the test image"
    )
    img.add_argument(
        "--layer-mb", type=bounded(int, 1, 1000), default=40, help="MB of random data per layer"
    )

    ctr = p.add_argument_group("containers group")
    ctr.add_argument(
        "--container-runs",
        type=bounded(int, 1, 1000),
        default=10,
        help="timed `docker run` / `docker exec` calls per round and engine",
    )
    ctr.add_argument("--container-image", default=containers.DEFAULT_IMAGE, help="image to run")
    ctr.add_argument(
        "--fixture",
        type=Path,
        default=containers.DEFAULT_FIXTURE,
        help="docker-save archive holding --container-image, loaded where it is missing",
    )
    ctr.add_argument(
        "--docker-cli", metavar="PATH", help="docker CLI to time; unset: `docker` on PATH"
    )
    args = p.parse_args(argv)
    args.endpoints = [
        (
            path,
            n
            or args.requests
            or http_endpoints.DEFAULT_REQUESTS.get(path, http_endpoints.OTHER_REQUESTS),
        )
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


async def prepare(engines: list[Engine], starter: SelfStarted | None, limit: float) -> None:
    """Wait for a self-started pymobyd, then probe every engine."""
    if starter is not None:
        await starter.wait_ready(limit)
    for engine in engines:
        await probe(engine)


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started in the background
    facts = machine_facts()
    if args.no_uvloop:
        facts["client_loop"] = "asyncio"
    if "api" in args.groups:
        seconds = http_endpoints.estimate_seconds(args, 2 if args.ref else 1)
        print(f"api: req/s phases alone take ~{seconds:.0f}s, plus latency runs", file=sys.stderr)
    use_uvloop = not args.no_uvloop
    starter: SelfStarted | None = None
    groups: list[GroupResult] = []
    try:
        if args.pymoby is None:
            starter = SelfStarted(args.pymoby_arg)
        engines = [Engine("pymoby", args.pymoby)]
        if starter is not None:
            engines = [Engine("pymoby", starter.sock, started_by_bench=True)]
        if args.ref:
            engines.append(Engine("ref", args.ref))
        run_loop(prepare(engines, starter, args.start_timeout), use_uvloop)
        for name in args.groups:
            print(f"--- group {name}", file=sys.stderr)
            if name == "api":
                groups.append(run_loop(http_endpoints.run_group(args, engines), use_uvloop))
            elif name == "images":
                groups.append(images.run_group(args, engines))
            elif name == "containers":
                groups.append(containers.run_group(args, engines))
        for engine in engines:
            engine.record_rss()
    except BenchError as err:
        print(f"bench: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        if starter is not None:
            starter.stop()

    print(report(args, engines, facts, groups))
    if args.json:
        args.json.write_text(json.dumps(as_json(args, engines, facts, groups), indent=2) + "\n")
        print(f"raw results: {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
