"""The conmon + runc runtime against the real binaries (root, runc, conmon, busybox).

Every test gets a private runc --root and exec root in a temp dir, unique container ids and a
conmon cgroup of its own below ours; teardown force-deletes every container of that runc root,
SIGKILLs any conmon still naming the temp dir, and removes the cgroup, also on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from pymoby import errdefs
from pymoby.kernel import cgroupfs
from pymoby.runtime.attach import STDERR, STDOUT, AttachSession, resize_message
from pymoby.runtime.conmon import CreateError, ExecSession, Runtime
from pymoby.runtime.fastexec import FastSession
from pymoby.runtime.k8slog import parse_log
from pymoby.runtime.procs import pid_alive
from pymoby.runtime.runc import RuncConflict, RuncNotFound

RUNC = shutil.which("runc") or "/usr/sbin/runc"
CONMON = shutil.which("conmon") or "/usr/bin/conmon"
BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "echo", "cat", "sleep", "true", "stty", "head", "tail", "seq")

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def base_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`runc spec` once, plus a busybox rootfs shared read-only by every bundle."""
    top = tmp_path_factory.mktemp("conmon-rootfs")
    rootfs = top / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    for d in ("proc", "dev", "sys", "tmp", "etc"):
        (rootfs / d).mkdir()
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for name in APPLETS:
        (rootfs / "bin" / name).symlink_to("busybox")
    subprocess.run([RUNC, "spec"], cwd=top, check=True)
    config: dict[str, Any] = json.loads((top / "config.json").read_text())
    config["root"] = {"path": str(rootfs), "readonly": True}
    config["hostname"] = "pymoby-test"
    return config


def _conmons_naming(text: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            argv
            and os.path.basename(argv[0]) == b"conmon"
            and any(text.encode() in a for a in argv)
        ):
            pids.append(int(entry))
    return pids


class Env:
    def __init__(self, root: Path, base: dict[str, Any]) -> None:
        self.root = root
        self.base = base
        self.group = f"pymoby-test-conmon-{uuid.uuid4().hex[:8]}"
        self.runtime = self.new_runtime()

    def new_runtime(self, *, fast_exec: bool = False) -> Runtime:
        return Runtime(
            RUNC,
            CONMON,
            self.root / "state",
            self.root / "exec",
            conmon_cgroup=self.group,
            fast_exec=fast_exec,
        )

    def cid(self) -> str:
        return "pmt-" + uuid.uuid4().hex[:12]

    def bundle(
        self, cid: str, args: list[str], *, tty: bool = False, memory: int | None = None
    ) -> Path:
        b = self.root / "bundles" / cid
        b.mkdir(parents=True)
        config = json.loads(json.dumps(self.base))
        config["process"]["args"] = args
        config["process"]["terminal"] = tty
        if memory is not None:
            config["linux"]["resources"]["memory"] = {"limit": memory, "swap": memory}
        (b / "config.json").write_text(json.dumps(config))
        return b

    def log_path(self, cid: str) -> Path:
        return self.root / "logs" / f"{cid}.log"

    async def create(
        self,
        args: list[str],
        *,
        tty: bool = False,
        stdin: bool = False,
        once: bool = True,
        memory: int | None = None,
        log_max: int | None = None,
    ) -> tuple[str, int]:
        cid = self.cid()
        bundle = self.bundle(cid, args, tty=tty, memory=memory)
        self.log_path(cid).parent.mkdir(exist_ok=True)
        pid = await self.runtime.create(
            cid,
            bundle,
            tty=tty,
            stdin=stdin,
            stdin_once=once,
            log_path=self.log_path(cid),
            log_max_size=log_max,
        )
        return cid, pid

    def cleanup(self) -> None:
        state = str(self.root / "state")
        out = subprocess.run(
            [RUNC, "--root", state, "list", "--format", "json"], capture_output=True, check=False
        ).stdout
        for c in json.loads(out or b"null") or []:
            subprocess.run([RUNC, "--root", state, "delete", "-f", c["id"]], check=False)
        for pid in _conmons_naming(str(self.root)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if not cgroupfs.remove(self.group):
                break
            time.sleep(0.05)


@pytest.fixture
def env(tmp_path: Path, base_config: dict[str, Any]) -> Iterator[Env]:
    e = Env(tmp_path, base_config)
    try:
        yield e
    finally:
        e.cleanup()


class Exits:
    """What the exit watcher reported: (exit_code, oom, finished_at_ns) per container."""

    def __init__(self) -> None:
        self._futures: dict[str, asyncio.Future[tuple[int, bool, int]]] = {}

    def future(self, cid: str) -> asyncio.Future[tuple[int, bool, int]]:
        if cid not in self._futures:
            self._futures[cid] = asyncio.get_running_loop().create_future()
        return self._futures[cid]

    def on_exit(self, cid: str, code: int, oom: bool, finished: int) -> None:
        fut = self.future(cid)
        if not fut.done():
            fut.set_result((code, oom, finished))

    async def wait(self, cid: str, limit: float = 10.0) -> tuple[int, bool, int]:
        return await asyncio.wait_for(asyncio.shield(self.future(cid)), limit)


@pytest.fixture
async def exits(env: Env) -> AsyncIterator[Exits]:
    log = Exits()
    watcher = env.runtime.watcher(log.on_exit)
    await watcher.start()
    try:
        yield log
    finally:
        await watcher.close()


async def read_all(session: AttachSession, limit: float = 10.0) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    async with asyncio.timeout(limit):
        async for stream, data in session:
            out.append((stream, data))
    return out


async def read_until(
    session: AttachSession, needle: bytes, limit: float = 10.0
) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    async with asyncio.timeout(limit):
        while needle not in joined(out):
            frame = await session.read()
            assert frame is not None, joined(out)
            out.append(frame)
    return out


def joined(frames: list[tuple[int, bytes]], stream: int | None = None) -> bytes:
    return b"".join(d for s, d in frames if stream is None or s == stream)


async def test_echo_log_attach_and_exit(env: Env, exits: Exits) -> None:
    rt = env.runtime
    cid, pid = await env.create(["sh", "-c", "echo hello; echo oops >&2"])
    assert pid > 0
    st = await rt.state(cid)
    assert (st.status, st.pid, st.bundle) == ("created", pid, str(env.root / "bundles" / cid))
    assert st.created_ns > 0
    assert [s.id for s in await rt.list()] == [cid]
    assert await rt.conmon_pid(cid) is not None
    session = await rt.attach(cid)
    await rt.start(cid)
    frames = await read_all(session)
    assert joined(frames, STDOUT) == b"hello\n"
    assert joined(frames, STDERR) == b"oops\n"
    with pytest.raises(errdefs.Conflict):
        await session.write(b"too late")  # conmon closed its end after the exit
    session.close()
    code, oom, finished = await exits.wait(cid)
    assert (code, oom) == (0, False)
    assert abs(finished - time.time_ns()) < 30 * 10**9
    lines = parse_log(env.log_path(cid).read_bytes())
    assert [(line.stream, line.data) for line in lines] == [
        ("stdout", b"hello\n"),
        ("stderr", b"oops\n"),
    ]
    assert (await rt.state(cid)).status == "stopped"
    status = await rt.read_exit(cid)
    assert status is not None and status.exit_code == 0
    await rt.delete(cid)
    with pytest.raises(RuncNotFound):
        await rt.state(cid)
    assert not (env.root / "exec" / "containers" / cid).exists()
    assert not (env.root / "exec" / "exits" / cid).exists()
    assert not (env.root / "bundles" / cid / "attach").exists()
    assert not (env.root / "bundles" / cid / "ctl").exists()


async def test_exit_code_reported_by_watcher(env: Env, exits: Exits) -> None:
    cid, _ = await env.create(["sh", "-c", "exit 3"])
    await env.runtime.start(cid)
    code, oom, _ = await exits.wait(cid)
    assert (code, oom) == (3, False)
    await env.runtime.delete(cid)


async def test_stdin_half_close(env: Env, exits: Exits) -> None:
    rt = env.runtime
    cid, _ = await env.create(["cat"], stdin=True, once=True)
    session = await rt.attach(cid)
    await rt.start(cid)
    big = b"x" * 100_000 + b"\n"  # more than one conmon stdin message
    await session.write(b"line one\n")
    await session.write(big)
    session.close_stdin()
    with pytest.raises(errdefs.Conflict):
        await session.write(b"after half-close")
    frames = await read_all(session)
    assert joined(frames, STDOUT) == b"line one\n" + big
    assert (await exits.wait(cid))[0] == 0
    await rt.delete(cid)


async def test_tty_and_resize(env: Env, exits: Exits) -> None:
    rt = env.runtime
    script = "read -r _; stty size; read -r _; stty size"
    cid, _ = await env.create(["sh", "-c", script], tty=True, stdin=True, once=False)
    session = await rt.attach(cid)
    await rt.start(cid)
    # Two resizes queued before conmon reads them (conmon 2.1.6 would apply the first twice
    # if they were not padded to one read each): the last one wins.
    fd = os.open(env.root / "bundles" / cid / "winsz", os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, resize_message(30, 100) + resize_message(40, 120))
    os.close(fd)
    await asyncio.sleep(0.1)
    await session.write(b"go\r")
    first = await read_until(session, b"40 120")
    await rt.resize(cid, 50, 132)
    await asyncio.sleep(0.1)
    await session.write(b"go\r")
    frames = first + await read_all(session)
    assert {s for s, _ in frames} == {STDOUT}  # a TTY has one stream
    text = joined(frames).replace(b"\r", b"")
    assert b"40 120\n" in text and b"50 132\n" in text
    assert (await exits.wait(cid))[0] == 0
    await rt.delete(cid)


async def test_kill_and_stop(env: Env, exits: Exits) -> None:
    rt = env.runtime
    cid, pid = await env.create(["sleep", "60"])
    await rt.start(cid)
    assert (await rt.state(cid)).status == "running"
    assert pid in await rt.ps(cid)
    with pytest.raises(errdefs.Conflict):  # same id again: refused, the running one untouched
        await rt.create(cid, env.root / "bundles" / cid, tty=False, stdin=False,
                        stdin_once=True, log_path=env.log_path(cid))  # fmt: skip
    assert await rt.conmon_pid(cid) is not None
    await rt.pause(cid)
    assert (await rt.state(cid)).status == "paused"
    await rt.resume(cid)
    with pytest.raises(RuncConflict):
        await rt.resume(cid)
    with pytest.raises(RuncConflict):
        await rt.delete(cid)  # running: refused, nothing removed
    assert (await rt.state(cid)).status == "running"
    # "stop": SIGTERM is ignored by a pid 1 without a handler, then SIGKILL.
    await rt.kill(cid, signal.SIGTERM)
    with pytest.raises(TimeoutError):
        await exits.wait(cid, 0.3)
    await rt.kill(cid, "KILL")
    code, _, _ = await exits.wait(cid)
    assert code == 128 + signal.SIGKILL
    with pytest.raises(RuncConflict):
        await rt.kill(cid, signal.SIGKILL)
    await rt.delete(cid)
    assert not pid_alive(pid)
    with pytest.raises(RuncNotFound):
        await rt.kill(cid, signal.SIGKILL)


@pytest.mark.parametrize("fast", [False, True], ids=["conmon", "zygote"])
async def test_exec_exit_code_and_output(env: Env, fast: bool) -> None:
    rt = env.new_runtime(fast_exec=fast) if fast else env.runtime
    cid, _ = await env.create(["sleep", "60"])
    await rt.start(cid)
    proc = dict(env.base["process"])
    proc["args"] = ["sh", "-c", "echo out; echo err >&2; exit 7"]
    ex = await rt.exec(cid, proc, tty=False, stdin=False, attach=True)
    assert ex.pid > 0 and ex.attach is not None
    frames = await read_all(ex.attach)
    assert joined(frames, STDOUT) == b"out\n"
    assert joined(frames, STDERR) == b"err\n"
    assert await asyncio.wait_for(ex.wait(), 10) == 7
    await ex.close()
    assert fast != isinstance(ex, ExecSession)
    assert fast or not ex.dir.exists()  # type: ignore[union-attr]

    # stdin + half-close, and a TTY exec with resize
    proc["args"] = ["cat"]
    ex = await rt.exec(cid, proc, tty=False, stdin=True, attach=True)
    assert ex.attach is not None
    await ex.attach.write(b"to exec\n")
    ex.attach.close_stdin()
    assert joined(await read_all(ex.attach)) == b"to exec\n"
    assert await asyncio.wait_for(ex.wait(), 10) == 0
    await ex.close()

    proc["args"] = ["sh", "-c", "read -r _; stty size"]
    ex = await rt.exec(cid, proc, tty=True, stdin=True, attach=True)
    assert ex.attach is not None
    await ex.resize(25, 91)
    await asyncio.sleep(0.1)
    await ex.attach.write(b"go\r")
    assert b"25 91" in joined(await read_all(ex.attach))
    assert await asyncio.wait_for(ex.wait(), 10) == 0
    await ex.close()

    # detached: no attach socket client, exit code still comes back
    proc["args"] = ["sh", "-c", "exit 4"]
    ex = await rt.exec(cid, proc, tty=False, stdin=False, attach=False)
    assert ex.attach is None
    assert await asyncio.wait_for(ex.wait(), 10) == 4
    await ex.close()

    # a binary that is not there: runc's message, nothing left behind
    proc["args"] = ["no-such-binary"]
    bad = "bad" + uuid.uuid4().hex
    with pytest.raises(CreateError) as err:
        await rt.exec(cid, proc, tty=False, stdin=False, attach=True, exec_id=bad)
    assert 'exec: "no-such-binary": executable file not found in $PATH' in err.value.message
    assert not (env.root / "exec" / "containers" / cid / "exec" / bad).exists()
    assert _conmons_naming(bad) == []
    await rt.delete(cid, force=True)
    await rt.close()


async def test_missing_binary_leaves_nothing(env: Env) -> None:
    rt = env.runtime
    cid = env.cid()
    bundle = env.bundle(cid, ["no-such-binary"])
    with pytest.raises(CreateError) as err:
        await rt.create(
            cid, bundle, tty=False, stdin=False, stdin_once=False, log_path=env.root / "x.log"
        )
    assert 'exec: "no-such-binary": executable file not found in $PATH' in err.value.message
    assert isinstance(err.value, errdefs.System)
    assert await rt.list() == []
    assert _conmons_naming(cid) == []
    assert not (env.root / "exec" / "containers" / cid).exists()
    assert sorted(p.name for p in bundle.iterdir()) == ["config.json"]
    with pytest.raises(errdefs.InvalidParameter):
        await rt.create("../x", bundle, tty=False, stdin=False, stdin_once=False,
                        log_path=env.root / "x.log")  # fmt: skip


async def test_conmon_survives_daemon_restart(env: Env) -> None:
    cid, pid = await env.create(["cat"], stdin=True, once=False)
    first = await env.runtime.attach(cid)
    await env.runtime.start(cid)
    await first.write(b"before\n")
    assert await asyncio.wait_for(first.read(), 5) == (STDOUT, b"before\n")
    first.close()  # a detach: without stdin_once the container keeps its stdin
    conmon = await env.runtime.conmon_pid(cid)
    assert conmon is not None
    # The "daemon" goes away: every Python object of the runtime is dropped.
    del env.runtime
    rt = env.new_runtime()
    env.runtime = rt
    seen: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()
    watcher = rt.watcher(lambda c, code, oom, t: seen.done() or seen.set_result((c, code)))
    await watcher.start()
    try:
        adopted = await rt.adopt(cid)
        assert (adopted.status, adopted.pid, adopted.conmon_pid) == ("running", pid, conmon)
        assert adopted.conmon_alive and adopted.bundle == env.root / "bundles" / cid
        session = await rt.attach(cid)
        await session.write(b"still here\n")
        stream, data = await asyncio.wait_for(session.read(), 5) or (0, b"")
        assert (stream, data) == (STDOUT, b"still here\n")
        await rt.kill(cid, signal.SIGKILL)
        assert await asyncio.wait_for(seen, 10) == (cid, 137)
        session.close()
        after = await rt.adopt(cid)
        assert (after.status, after.exit_code, after.oom) == ("exited", 137, False)
        await rt.delete(cid)
        assert (await rt.adopt(cid)).status == "gone"
    finally:
        await watcher.close()


async def test_create_start_latency(env: Env, exits: Exits) -> None:
    rt = env.runtime
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        cid, _ = await env.create(["true"])
        await rt.start(cid)
        samples.append(time.perf_counter() - t0)
        await exits.wait(cid)
        await rt.delete(cid)
    median = statistics.median(samples)
    print(f"create+start median {median * 1000:.1f} ms")
    assert median < 2.0


def test_ids_are_checked(env: Env) -> None:
    for bad in ("a/b", "../x", "", "-x"):
        with pytest.raises(errdefs.InvalidParameter):
            env.runtime.paths(bad)


async def test_oom_marker(env: Env, exits: Exits) -> None:
    cid, _ = await env.create(["sh", "-c", "head -c 300000000 /dev/zero | tail"], memory=32 << 20)
    await env.runtime.start(cid)
    code, oom, _ = await exits.wait(cid, 30)
    assert (code, oom) == (137, True)
    adopted = await env.runtime.adopt(cid)
    assert (adopted.status, adopted.exit_code, adopted.oom) == ("exited", 137, True)
    await env.runtime.delete(cid)


async def test_log_max_size_truncates(env: Env, exits: Exits) -> None:
    cid, _ = await env.create(["seq", "1", "2000"], log_max=4096)
    await env.runtime.start(cid)
    await exits.wait(cid)
    data = env.log_path(cid).read_bytes()
    assert len(data) <= 4096
    lines = parse_log(data)
    assert lines[-1].data == b"2000\n" and len(lines) < 2000
    await env.runtime.delete(cid)


async def test_adopt_orphan_when_conmon_died(env: Env) -> None:
    rt = env.runtime
    cid, pid = await env.create(["sleep", "60"])
    await rt.start(cid)
    conmon = await rt.conmon_pid(cid)
    assert conmon is not None
    os.kill(conmon, signal.SIGKILL)
    for _ in range(100):
        if not pid_alive(conmon):
            break
        await asyncio.sleep(0.02)
    adopted = await rt.adopt(cid)
    assert (adopted.status, adopted.pid, adopted.conmon_alive) == ("running", pid, False)
    assert await rt.conmon_pid(cid) is None
    await rt.delete(cid, force=True)
    assert (await rt.adopt(cid)).status == "gone"


def test_runtime_on_uvloop(env: Env) -> None:
    """The daemon may run on uvloop: spawn, attach, exec and the watcher work there too."""
    import uvloop

    async def scenario() -> None:
        rt = env.new_runtime()
        fast = env.new_runtime(fast_exec=True)
        log = Exits()
        watcher = rt.watcher(log.on_exit)
        await watcher.start()
        try:
            cid, _ = await env.create(["sh", "-c", "read -r x; echo got $x; exit 5"], stdin=True)
            session = await rt.attach(cid)
            await rt.start(cid)
            proc = dict(env.base["process"], args=["echo", "exec"])
            for runtime in (rt, fast):
                ex = await runtime.exec(cid, proc, tty=False, stdin=False, attach=True)
                assert ex.attach is not None
                assert joined(await read_all(ex.attach)) == b"exec\n"
                assert await ex.wait() == 0
                await ex.close()
            assert isinstance(ex, FastSession)
            await session.write(b"in\n")
            assert joined(await read_all(session)) == b"got in\n"
            assert (await log.wait(cid))[0] == 5
            await rt.delete(cid)
        finally:
            await watcher.close()
            await fast.close()

    uvloop.run(scenario())
