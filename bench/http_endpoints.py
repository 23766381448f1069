"""Group "api": request latency and rate of cheap GET endpoints (default /_ping, /version, /info).

For each endpoint and engine:

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

Each endpoint is warmed up on both engines, then measured in rounds of alternating engine order;
every response must be 200 on a kept-alive connection.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from benchlib import (
    BenchError,
    Conn,
    Engine,
    GroupResult,
    Row,
    alternate,
    percentile,
    process_tree,
    quiet_gc,
    tree_cpu_seconds,
)

DEFAULT_REQUESTS = {"/_ping": 2000, "/version": 2000, "/info": 300}
OTHER_REQUESTS = 300
DEFAULT_ENDPOINTS = "/_ping,/version,/info"
WARMUP_REQUESTS = 200
WARMUP_SECONDS = 0.5

# key, label, ratio pymoby/ref is meaningful
METRICS: list[tuple[str, str, bool]] = [
    ("p50", "latency p50 ms", True),
    ("p90", "latency p90 ms", True),
    ("p99", "latency p99 ms", True),
    ("rps", "req/s", True),
    ("cpu_us", "cpu us/req", True),
    ("client_pct", "client cpu %", False),
]


async def latency(engine: Engine, path: str, n: int, limit: float) -> dict[str, float]:
    """p50/p90/p99 in ms of n sequential GETs on one keep-alive connection."""
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
    """Requests per second over `concurrency` connections, engine CPU per request, client CPU."""
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


def estimate_seconds(args: argparse.Namespace, engines: int) -> float:
    """Length of the req/s phases alone (latency runs come on top)."""
    per_endpoint = args.rounds * engines * args.seconds + 2 * WARMUP_SECONDS
    return float(per_endpoint * len(args.endpoints))


async def run_group(args: argparse.Namespace, engines: list[Engine]) -> GroupResult:
    """Warm up, then latency rounds and req/s rounds per endpoint, engines interleaved."""
    group = GroupResult("api", config={"endpoints": dict(args.endpoints)})
    group.config |= {"concurrency": args.concurrency, "seconds": args.seconds}
    for path, n in args.endpoints:
        rows = {
            key: Row(
                "api",
                path,
                f"{label} (n={n})" if key.startswith("p") else label,
                key,
                {e.name: [] for e in engines},
                ratio=has_ratio,
                spread=has_ratio,
            )
            for key, label, has_ratio in METRICS
        }
        group.rows += rows.values()
        for engine in engines:
            await warm_up(engine, path, n, args.concurrency, args.timeout)
        for r in range(args.rounds):
            for engine in alternate(engines, r):
                lat = await latency(engine, path, n, args.timeout)
                for key, value in lat.items():
                    rows[key].values[engine.name].append(value)
            line = ", ".join(
                f"{e.name} p50 {rows['p50'].values[e.name][-1]:.3f} ms" for e in engines
            )
            print(f"[{path}] latency   round {r + 1}/{args.rounds}: {line}", file=sys.stderr)
        for r in range(args.rounds):
            for engine in alternate(engines, r):
                thr = await throughput(engine, path, args.concurrency, args.seconds, args.timeout)
                for key, maybe in thr.items():
                    rows[key].values[engine.name].append(maybe)
            line = ", ".join(
                f"{e.name} {rows['rps'].values[e.name][-1]:.0f} req/s" for e in engines
            )
            print(f"[{path}] req/s     round {r + 1}/{args.rounds}: {line}", file=sys.stderr)

    client = [
        v
        for row in group.rows
        if row.key == "client_pct"
        for rounds in row.values.values()
        for v in rounds
        if v is not None
    ]
    client_max = max(client, default=0.0)
    if client_max >= 90:
        group.notes.append(
            f"the client used up to {client_max:.0f}% of a core during req/s: req/s is"
            " (partly) client-bound there; cpu us/req and latency compare the engines better."
        )
    return group
