"""Group "containers": what a user waits for in `docker run` and `docker exec`, per engine.

Timed with the real docker CLI (--docker-cli, default `docker` on PATH), run with DOCKER_HOST set
to the engine's socket and an empty temporary DOCKER_CONFIG, so both engines see exactly the
calls a user's CLI makes (ping, create, attach, wait, start, wait result, auto-remove; exec
create/start/inspect) and the CLI's own start-up cost is in both numbers alike:

  run --rm true (none) ms
                     wall time of `docker run --rm --network none --name <unique> <image> true`
                     (exit code must be 0), --container-runs times per round and engine;
                     p50 and p90 of those, then the median over rounds.
  run --rm true (default) ms
                     the same without `--network none`: `docker run --rm <image> true` as a
                     user types it, on the default bridge network (a namespace, a veth, an
                     address; dockerd spends ~70 ms on it here).
  exec true ms       a container `<image> sleep 3600` (--network none) is started per engine,
                     then `docker exec <it> true` is timed the same way.

Ratio pymoby/ref < 1 means pymoby is faster. Rounds alternate the engine order (AB, BA, ...).

The image (--container-image, default pymoby-fixture/busybox:base) is loaded from --fixture (the
checkout's ../shared/fixtures/busybox-docker-save.tar) into each engine that lacks it, with
POST /images/load, and at the end removed again only from the engines where the bench loaded it.
An engine that cannot do containers yet (404/501, or any failure of the untimed warm-up) is
reported "not available (<message>)" and the other engine is still measured. Every container
the bench names is force-removed at the end (also on errors and Ctrl-C); the notes say if one
was still there after `docker run --rm` had returned.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from benchlib import (
    BenchError,
    Engine,
    GroupResult,
    Row,
    alternate,
    now,
    percentile,
    request,
)

DEFAULT_IMAGE = "pymoby-fixture/busybox:base"
DEFAULT_FIXTURE = (
    Path(__file__).resolve().parent.parent.parent / "shared/fixtures/busybox-docker-save.tar"
)

Timer = Callable[[], tuple[float | None, str]]  # one timed call: (ms or None, error text)


def default_cli() -> str | None:
    return shutil.which("docker") or (
        "/usr/local/bin/docker" if os.access("/usr/local/bin/docker", os.X_OK) else None
    )


@dataclass
class EngineState:
    """What the bench did on one engine, so that it can undo exactly that."""

    engine: Engine
    env: dict[str, str]
    loaded_tags: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # every container name the bench used
    removed_by_rm: set[str] = field(default_factory=set)  # `docker run --rm` returned 0
    unavailable: str | None = None  # the whole group, e.g. no image or no container API


class Cli:
    """The docker CLI, one invocation per call, in its own session (Ctrl-C stays with us)."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout

    def __call__(self, state: EngineState, *argv: str) -> tuple[int, float, str]:
        """Run `docker argv...` against the engine: (exit code, wall seconds, error text)."""
        t0 = now()
        try:
            proc = subprocess.run(
                [self.path, *argv],
                env=state.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self.timeout,
                start_new_session=True,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return -1, now() - t0, f"`docker {' '.join(argv)}` took over {self.timeout:.0f}s"
        elapsed = now() - t0
        text = (proc.stderr or proc.stdout).decode(errors="replace").strip()
        lines = [line for line in text.splitlines() if line.strip()]
        return proc.returncode, elapsed, lines[-1] if lines else f"exit code {proc.returncode}"


def fixture_tags(fixture: Path) -> list[str]:
    """RepoTags of a docker-save archive's manifest.json."""
    with tarfile.open(fixture) as tar:
        member = tar.extractfile("manifest.json")
        if member is None:
            raise BenchError(f"{fixture}: no manifest.json")
        manifest = json.load(member)
    return [tag for entry in manifest for tag in entry.get("RepoTags") or []]


def _image_present(engine: Engine, ref: str, timeout: float) -> bool:
    resp = request(engine.sock, "GET", f"/images/{ref}/json", timeout=timeout)
    if resp.status not in (200, 404):
        raise BenchError(f"{engine.name}: GET /images/{ref}/json: HTTP {resp.status}")
    return resp.status == 200


def _prepare(state: EngineState, args: argparse.Namespace, tags: list[str]) -> None:
    """Make sure the image is there (load the fixture if not) and containers are served."""
    engine, image, timeout = state.engine, args.container_image, args.timeout
    resp = request(engine.sock, "GET", "/containers/json?all=1", timeout=timeout)
    if resp.status != 200:
        state.unavailable = f"GET /containers/json: HTTP {resp.status}: {resp.message()}"
        return
    if _image_present(engine, image, timeout):
        return
    if image not in tags:
        state.unavailable = f"image {image} is not there and not in {args.fixture}"
        return
    before = {tag: _image_present(engine, tag, timeout) for tag in tags}
    print(f"[containers] {engine.name}: loading {args.fixture.name}", file=sys.stderr)
    resp = request(
        engine.sock,
        "POST",
        "/images/load?quiet=1",
        timeout=timeout,
        body=args.fixture,
        content_type="application/x-tar",
    )
    state.loaded_tags = [t for t in tags if not before[t] and _image_present(engine, t, timeout)]
    if resp.status != 200 or b"errorDetail" in resp.body:
        state.unavailable = f"loading {args.fixture.name}: HTTP {resp.status}: {resp.message()}"
    elif image not in state.loaded_tags:
        state.unavailable = f"{image} not there after loading {args.fixture.name}"


def _cleanup(state: EngineState, timeout: float) -> int:
    """Force-remove every container the bench named, then the images it loaded.

    Returns how many containers of successful `docker run --rm` runs were still there.
    """
    engine, left = state.engine, 0
    for name in state.names:
        try:
            resp = request(
                engine.sock, "DELETE", f"/containers/{name}?force=1&v=1", timeout=timeout
            )
        except BenchError as err:
            print(f"[containers] cleanup {engine.name}: {err}", file=sys.stderr)
            continue
        if resp.status in (200, 204) and name in state.removed_by_rm:
            left += 1
        elif resp.status not in (200, 204, 404):
            print(
                f"[containers] cleanup {engine.name}: DELETE /containers/{name}:"
                f" HTTP {resp.status}: {resp.message()}",
                file=sys.stderr,
            )
    for tag in state.loaded_tags:
        try:
            resp = request(engine.sock, "DELETE", f"/images/{tag}", timeout=timeout)
        except BenchError as err:
            print(f"[containers] cleanup {engine.name}: {err}", file=sys.stderr)
            continue
        if resp.status not in (200, 404):
            print(
                f"[containers] cleanup {engine.name}: DELETE /images/{tag}:"
                f" HTTP {resp.status}: {resp.message()}",
                file=sys.stderr,
            )
    return left


def run_group(args: argparse.Namespace, engines: list[Engine]) -> GroupResult:
    """Warm up, then timed `docker run --rm` and `docker exec` rounds; clean up at the end."""
    n, image = args.container_runs, args.container_image
    group = GroupResult("containers", config={"image": image, "runs_per_round": n})
    target = image.rsplit("/", 1)[-1]

    def row(key: str, label: str) -> Row:
        return Row("containers", target, label, key, {e.name: [] for e in engines})

    rows = {
        "run_p50": row("run_p50", f"run --rm true (none) ms p50 (n={n})"),
        "run_p90": row("run_p90", "run --rm true (none) ms p90"),
        "bridge_p50": row("bridge_p50", f"run --rm true (default) ms p50 (n={n})"),
        "bridge_p90": row("bridge_p90", "run --rm true (default) ms p90"),
        "exec_p50": row("exec_p50", f"exec true ms p50 (n={n})"),
        "exec_p90": row("exec_p90", "exec true ms p90"),
    }
    group.rows += rows.values()
    run_rows, exec_rows = [rows["run_p50"], rows["run_p90"]], [rows["exec_p50"], rows["exec_p90"]]
    bridge_rows = [rows["bridge_p50"], rows["bridge_p90"]]

    def unavailable(engine: Engine, which: list[Row], why: str) -> None:
        for r in which:
            r.unavailable[engine.name] = why

    cli_path = args.docker_cli or default_cli()
    if cli_path is None:
        for engine in engines:
            unavailable(
                engine, run_rows + bridge_rows + exec_rows, "no docker CLI found (--docker-cli)"
            )
        group.notes.append("skipped: no docker CLI found (--docker-cli PATH)")
        return group
    cli = Cli(cli_path, args.timeout)
    group.config["cli"] = cli_path
    token = secrets.token_hex(4)
    config_dir = tempfile.mkdtemp(prefix="pymoby-bench-cli-")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    base_env |= {"DOCKER_CONFIG": config_dir, "DOCKER_CLI_HINTS": "false"}
    states = {e.name: EngineState(e, base_env | {"DOCKER_HOST": e.url}) for e in engines}
    counter = 0

    def next_name(state: EngineState, what: str) -> str:
        nonlocal counter
        counter += 1
        name = f"pymoby-bench-{token}-{what}{counter}"
        state.names.append(name)
        return name

    def time_run(state: EngineState, bridge: bool = False) -> tuple[float | None, str]:
        name = next_name(state, "run")
        net = [] if bridge else ["--network", "none"]
        rc, seconds, err = cli(state, "run", "--rm", *net, "--name", name, image, "true")
        if rc != 0:
            return None, err
        state.removed_by_rm.add(name)
        return seconds * 1000, ""

    def time_exec(state: EngineState, container: str) -> tuple[float | None, str]:
        rc, seconds, err = cli(state, "exec", container, "true")
        return (seconds * 1000, "") if rc == 0 else (None, err)

    def measure(which: list[Row], one: dict[str, Timer], what: str) -> None:
        """Rounds of n timed calls per engine; one[engine] is a zero-argument timer."""
        for r in range(args.rounds):
            for engine in alternate(engines, r):
                if engine.name in which[0].unavailable:
                    continue
                samples: list[float] = []
                for _ in range(n):
                    ms, err = one[engine.name]()
                    if ms is None:
                        unavailable(engine, which, f"failed in round {r + 1}: {err}")
                        break
                    samples.append(ms)
                else:
                    samples.sort()
                    which[0].values[engine.name].append(percentile(samples, 50))
                    which[1].values[engine.name].append(percentile(samples, 90))
            line = ", ".join(
                f"{e.name} {which[0].values[e.name][-1]:.0f}"
                if e.name not in which[0].unavailable and which[0].values[e.name]
                else f"{e.name} n/a"
                for e in engines
            )
            print(
                f"[containers] {what} p50 ms round {r + 1}/{args.rounds}: {line}", file=sys.stderr
            )

    try:
        tags = fixture_tags(args.fixture) if args.fixture.is_file() else []
        for state in states.values():
            _prepare(state, args, tags)
            if state.unavailable:
                unavailable(state.engine, run_rows + bridge_rows + exec_rows, state.unavailable)

        # docker run --rm: one untimed warm-up run per engine, then rounds
        for state in states.values():
            if state.engine.name not in rows["run_p50"].unavailable:
                ms, err = time_run(state)
                if ms is None:
                    unavailable(state.engine, run_rows, f"warm-up run failed: {err}")
        measure(run_rows, {name: partial(time_run, s) for name, s in states.items()}, "run")

        # the same on the default bridge network
        for state in states.values():
            if state.engine.name not in rows["bridge_p50"].unavailable:
                ms, err = time_run(state, True)
                if ms is None:
                    unavailable(state.engine, bridge_rows, f"warm-up run failed: {err}")
        measure(
            bridge_rows,
            {name: partial(time_run, s, True) for name, s in states.items()},
            "run (default)",
        )

        # docker exec: a sleeping container per engine, an untimed warm-up exec, then rounds
        sleepers: dict[str, str] = {}
        for state in states.values():
            if state.engine.name in rows["exec_p50"].unavailable:
                continue
            name = next_name(state, "exec")
            rc, _, err = cli(
                state, "run", "-d", "--network", "none", "--name", name, image, "sleep", "3600"
            )
            if rc != 0:
                unavailable(state.engine, exec_rows, f"starting `sleep 3600` failed: {err}")
                continue
            sleepers[state.engine.name] = name
            ms, err = time_exec(state, name)
            if ms is None:
                unavailable(state.engine, exec_rows, f"warm-up exec failed: {err}")
        measure(
            exec_rows,
            {name: partial(time_exec, s, sleepers.get(name, "")) for name, s in states.items()},
            "exec",
        )

        # the CLI's own start-up, engine-independent, for reading the numbers above
        some = next(iter(states.values()))
        own = [cli(some, "--version")[1] * 1000 for _ in range(5)]
        group.config["cli_startup_ms"] = statistics.median(own)
        group.notes.append(
            f"every number includes the docker CLI's own start-up: `docker --version`"
            f" takes {statistics.median(own):.0f} ms here ({cli_path})."
        )
    finally:
        for state in states.values():
            left = _cleanup(state, args.timeout)
            if left:
                group.notes.append(
                    f"{state.engine.name}: {left} container(s) still there after"
                    " `docker run --rm` had returned (removed by the bench)"
                )
        shutil.rmtree(config_dir, ignore_errors=True)
    for r in group.rows:
        for name, why in r.unavailable.items():
            what = "run" if r in run_rows else "exec"
            note = f"{name}: {what} not available ({why})"
            if note not in group.notes:
                group.notes.append(note)
    return group
