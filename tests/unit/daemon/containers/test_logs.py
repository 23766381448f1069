"""Log reading over conmon's k8s-file records: joining, tail, since/until, follow, rotation."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from streams_testlib import append, make_container, record

from pymoby import errdefs
from pymoby.daemon.containers import logfile, logrotate
from pymoby.daemon.containers.logrotate import (
    LogRotator,
    RotationPolicy,
    ram_in_bytes,
    rotate_files,
    rotation_policy,
)
from pymoby.daemon.containers.logs import (
    LogService,
    extra_attributes,
    parse_tail,
    read_lines,
)
from pymoby.daemon.containers.logwatch import DirWatcher
from pymoby.daemon.containers.state import Status
from pymoby.runtime.k8slog import LogLine, iter_lines
from pymoby.server.backends import LogMessage, LogsOptions

T0 = 1_700_000_000_000_000_000


async def collect(it: AsyncIterator[list[LogLine]]) -> list[tuple[str, bytes]]:
    return [(line.stream, line.data) async for batch in it for line in batch]


def reference(paths: list[Path]) -> list[tuple[str, bytes]]:
    raw = b"".join(p.read_bytes() for p in paths if p.exists())
    parts = raw.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    return [(line.stream, line.data) for line in iter_lines(parts)]


# -- reading, joining, tail --------------------------------------------------------------------


async def test_joins_partial_records_across_rotated_files(tmp_path: Path) -> None:
    log = tmp_path / "container.log"
    rotated = tmp_path / "container.log.1"
    rotated.write_bytes(
        record("stdout", b"one", ns=T0)
        + record("stdout", b"tw", partial=True, ns=T0 + 1)
        + record("stderr", b"err", ns=T0 + 2)
    )
    log.write_bytes(record("stdout", b"o", ns=T0 + 3) + record("stdout", b"three", ns=T0 + 4))
    lines = [line async for batch in read_lines(log) for line in batch]
    assert [(x.stream, x.data) for x in lines] == [
        ("stdout", b"one\n"),
        ("stderr", b"err\n"),
        ("stdout", b"two\n"),
        ("stdout", b"three\n"),
    ]
    assert lines[2].time_ns == T0 + 1  # a joined line keeps its first record's time


async def test_missing_log_reads_empty(tmp_path: Path) -> None:
    assert await collect(read_lines(tmp_path / "nothing.log")) == []
    assert await collect(read_lines(tmp_path / "nothing.log", tail=3)) == []


async def test_unterminated_record_is_not_read_until_its_newline(tmp_path: Path) -> None:
    log = tmp_path / "container.log"
    log.write_bytes(record("stdout", b"done") + record("stdout", b"half")[:-3])
    assert await collect(read_lines(log)) == [("stdout", b"done\n")]


async def test_trailing_partial_line_comes_out_without_newline(tmp_path: Path) -> None:
    log = tmp_path / "container.log"
    log.write_bytes(record("stdout", b"a") + record("stdout", b"no newline", partial=True))
    assert await collect(read_lines(log)) == [("stdout", b"a\n"), ("stdout", b"no newline")]
    assert await collect(read_lines(log, tail=1)) == [("stdout", b"no newline")]


def _random_log(rng: random.Random, tmp_path: Path, files: int) -> list[Path]:
    paths = [tmp_path / f"container.log.{i}" for i in range(files - 1, 0, -1)]
    paths.append(tmp_path / "container.log")
    ns = T0
    for p in paths:
        data = b""
        for _ in range(rng.randint(0, 40)):
            ns += 1
            stream = rng.choice(("stdout", "stderr"))
            size = rng.choice((1, 3, 200, 70_000))
            content = bytes(rng.choice(b"abcdef") for _ in range(min(size, 8))) * (size // 8 + 1)
            data += record(stream, content[:size], partial=rng.random() < 0.4, ns=ns)
        p.write_bytes(data)
    return paths


@pytest.mark.parametrize("seed", range(12))
async def test_tail_matches_the_last_lines_of_a_full_read(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logfile, "TRAILING_SCAN", 1 << 40)
    rng = random.Random(seed)
    paths = _random_log(rng, tmp_path, rng.randint(1, 3))
    full = reference(paths)
    assert await collect(read_lines(paths[-1])) == full
    for n in [0, 1, 2, 3, 5, 8, len(full) - 1, len(full), len(full) + 3]:
        if n < 0:
            continue
        got = await collect(read_lines(paths[-1], tail=n))
        assert got == (full[-n:] if n else []), (seed, n)


def test_parse_tail() -> None:
    assert parse_tail("all") == -1
    assert parse_tail("") == -1
    assert parse_tail("-3") == -1
    assert parse_tail("0") == 0
    assert parse_tail("+7") == 7
    assert parse_tail(" 7") == -1  # Go's Atoi does not trim


# -- the service: options, filters, errors --------------------------------------------------------


async def messages(service: LogService, c: object, **opts: object) -> list[LogMessage]:
    options = LogsOptions(**{"stdout": True, "stderr": True, **opts})  # type: ignore[arg-type]
    stream = await service.logs(c, options)  # type: ignore[arg-type]
    return [m async for batch in stream.batches for m in batch]


async def test_since_until_and_streams(tmp_path: Path) -> None:
    c = make_container(tmp_path / "c")
    c.log_path.write_bytes(
        b"".join(
            record("stdout" if i % 2 else "stderr", f"l{i}".encode(), ns=T0 + i * 1000)
            for i in range(10)
        )
    )
    service = LogService()
    got = await messages(service, c, since=T0 + 3000, until=T0 + 6000)
    assert [m.line for m in got] == [b"l3\n", b"l4\n", b"l5\n", b"l6\n"]
    got = await messages(service, c, stderr=False, tail="4")
    assert [m.line for m in got] == [b"l7\n", b"l9\n"]  # tail first, then the stream filter
    got = await messages(service, c, tail="2", since=T0 + 9000)
    assert [m.line for m in got] == [b"l9\n"]
    assert got[0].time_ns == T0 + 9000


async def test_since_is_checked_until_the_first_line_passes(tmp_path: Path) -> None:
    c = make_container(tmp_path / "c")
    times = [5, 1, 7, 2, 9]
    c.log_path.write_bytes(b"".join(record("stdout", b"%d" % t, ns=T0 + t) for t in times))
    got = await messages(LogService(), c, since=T0 + 6)
    assert [m.line for m in got] == [b"7\n", b"2\n", b"9\n"]


async def test_details_attributes(tmp_path: Path) -> None:
    c = make_container(
        tmp_path / "c",
        log_opts={"labels": "a,missing", "env": "FOO", "env-regex": "^Z"},
        labels={"a": "1 2", "b": "x"},
        env=["FOO=bar", "ZED=z", "OTHER=o"],
    )
    c.log_path.write_bytes(record("stdout", b"x"))
    got = await messages(LogService(), c, details=True)
    assert got[0].attrs == (("FOO", "bar"), ("ZED", "z"), ("a", "1 2"))
    assert extra_attributes(None, None, None) == ()


async def test_errors(tmp_path: Path) -> None:
    c = make_container(tmp_path / "c")
    service = LogService()
    with pytest.raises(errdefs.InvalidParameter, match="You must choose at least one stream"):
        await service.logs(c, LogsOptions())
    c.removing = True
    with pytest.raises(errdefs.Conflict, match="dead or marked for removal"):
        await service.logs(c, LogsOptions(stdout=True))
    none = make_container(tmp_path / "n", log_type="none")
    with pytest.raises(errdefs.NotImplementedErr, match="does not support reading"):
        await service.logs(none, LogsOptions(stdout=True))


# -- following ------------------------------------------------------------------------------------


async def test_follow_reads_new_lines_and_ends_when_the_container_stops(tmp_path: Path) -> None:
    watcher = DirWatcher()
    try:
        c = make_container(tmp_path / "c")
        c.state.status = Status.RUNNING
        append(c.log_path, record("stdout", b"before"))
        stream = await LogService(watcher, poll=30).logs(
            c, LogsOptions(stdout=True, stderr=True, follow=True)
        )
        it = aiter(stream.batches)
        assert (await asyncio.wait_for(anext(it), 5))[0].line == b"before\n"
        start = time.monotonic()
        append(c.log_path, record("stderr", b"live"))
        (msg,) = await asyncio.wait_for(anext(it), 5)
        assert (msg.stream, msg.line) == ("stderr", b"live\n")
        assert time.monotonic() - start < 2  # woken by inotify, not by the 30 s poll
        append(c.log_path, record("stdout", b"last", partial=True))
        c.state.status = Status.EXITED
        c.notify_stopped()
        (msg,) = await asyncio.wait_for(anext(it), 5)
        assert msg.line == b"last"  # the open line is handed out at the end
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(it), 5)
        assert watcher.watched == 0
    finally:
        watcher.close()


async def test_follow_of_a_stopped_container_does_not_follow(tmp_path: Path) -> None:
    c = make_container(tmp_path / "c")
    append(c.log_path, record("stdout", b"x"))
    got = await asyncio.wait_for(messages(LogService(), c, follow=True), 5)
    assert [m.line for m in got] == [b"x\n"]


async def test_follow_with_tail_zero_sees_only_new_lines(tmp_path: Path) -> None:
    c = make_container(tmp_path / "c")
    c.state.status = Status.RUNNING
    append(c.log_path, record("stdout", b"old") + record("stdout", b"op", partial=True))
    stream = await LogService(None, poll=0.01).logs(
        c, LogsOptions(stdout=True, follow=True, tail="0")
    )
    it = aiter(stream.batches)
    first = asyncio.ensure_future(anext(it))  # the reader starts at the first iteration
    await asyncio.sleep(0.1)
    append(c.log_path, record("stdout", b"en"))
    assert (await asyncio.wait_for(first, 5))[0].line == b"open\n"
    await it.aclose()  # type: ignore[attr-defined]


class FakeConmon:
    """Writes records the way conmon does; `reopen` is conmon's reopen (tmp + rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self.lock = threading.Lock()
        self.reopens = 0

    def write(self, data: bytes) -> None:
        with self.lock:
            os.write(self.fd, data)

    async def reopen(self, cid: str) -> None:
        with self.lock:
            os.close(self.fd)
            tmp = self.path.with_name(self.path.name + ".tmp")
            self.fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o600)
            os.rename(tmp, self.path)
            self.reopens += 1

    def close(self) -> None:
        os.close(self.fd)


@pytest.mark.parametrize("max_file", [1, 3])
async def test_rotation_under_a_follower_loses_nothing(tmp_path: Path, max_file: int) -> None:
    watcher = DirWatcher()
    c = make_container(tmp_path / "c")
    c.state.status = Status.RUNNING
    conmon = FakeConmon(c.log_path)
    rotator = LogRotator(watcher, conmon.reopen)
    rotator.watch(c.id, c.log_path, RotationPolicy(max_size=4096, max_file=max_file))
    total = 3000
    try:
        stream = await LogService(watcher, poll=0.2).logs(
            c, LogsOptions(stdout=True, stderr=True, follow=True)
        )

        async def produce() -> None:
            for i in range(total):
                conmon.write(record("stdout", b"line %05d" % i))
                if i % 20 == 0:
                    await asyncio.sleep(0.005)
            c.state.status = Status.EXITED
            c.notify_stopped()

        producer = asyncio.create_task(produce())
        got = [m.line async for batch in stream.batches for m in batch]
        await producer
        assert got == [b"line %05d\n" % i for i in range(total)]
        assert rotator.rotations(c.id) >= 3 and conmon.reopens == rotator.rotations(c.id)
        names = sorted(p.name for p in c.root.iterdir())
        rotated = [n for n in names if n.startswith("container.log.")]
        assert len(rotated) <= max_file - 1
        assert not [n for n in names if n.endswith(".rotating")]
        if max_file > 1:  # what is kept on disk is whole and in order
            kept = await collect(read_lines(c.log_path))
            assert kept[-1] == ("stdout", b"line %05d\n" % (total - 1))
            first = int(kept[0][1].split()[1])
            assert kept == [("stdout", b"line %05d\n" % i) for i in range(first, total)]
    finally:
        await rotator.close()
        conmon.close()
        watcher.close()


async def test_rotation_without_conmon_puts_the_file_back(tmp_path: Path) -> None:
    watcher = DirWatcher()

    attempts: list[str] = []

    async def refuse(cid: str) -> None:
        attempts.append(cid)
        raise errdefs.Conflict("container is not running (no conmon to reopen)")

    c = make_container(tmp_path / "c")
    c.log_path.write_bytes(record("stdout", b"x" * 100))
    rotator = LogRotator(watcher, refuse)
    try:
        rotator.watch(c.id, c.log_path, RotationPolicy(max_size=10, max_file=1))
        async with asyncio.timeout(5):
            while not attempts or not c.log_path.exists():
                await asyncio.sleep(0.01)
        assert c.log_path.exists()
        assert not [p for p in c.root.iterdir() if p.name.endswith(".rotating")]
        assert await collect(read_lines(c.log_path)) == [("stdout", b"x" * 100 + b"\n")]
    finally:
        await rotator.close()
        watcher.close()


def test_rotate_files_shifts_and_drops_the_oldest(tmp_path: Path) -> None:
    log = tmp_path / "container.log"
    for name, text in [
        ("container.log", "cur"),
        ("container.log.1", "one"),
        ("container.log.2", "two"),
    ]:
        (tmp_path / name).write_text(text)
    rotate_files(log, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["container.log.1", "container.log.2"]
    assert (tmp_path / "container.log.1").read_text() == "cur"
    assert (tmp_path / "container.log.2").read_text() == "one"


def test_size_and_policy_parsing() -> None:
    assert ram_in_bytes("10m") == 10 << 20
    assert ram_in_bytes("1.5k") == 1536
    assert ram_in_bytes("100") == 100
    assert ram_in_bytes("2GiB") == 2 << 30
    for bad in ("", "m", "1.2.3k", "-1m", "10x"):
        with pytest.raises(ValueError):
            ram_in_bytes(bad)
    assert rotation_policy("json-file", {}) is None
    assert rotation_policy("json-file", {"max-file": "3"}) is None
    assert rotation_policy("json-file", {"max-size": "1k", "max-file": "3"}) == RotationPolicy(
        1024, 3
    )
    assert rotation_policy("", {"max-size": "1k"}) == RotationPolicy(1024, 1)
    assert rotation_policy("local", None) == RotationPolicy(
        logrotate.LOCAL_DEFAULT_SIZE, logrotate.LOCAL_DEFAULT_FILES
    )
    assert rotation_policy("syslog", {"max-size": "1k"}) is None
    assert rotation_policy("json-file", {"max-size": "junk"}) is None


def test_a_follower_two_rotations_behind_reads_every_file(tmp_path: Path) -> None:
    log = tmp_path / "container.log"
    append(log, record("stdout", b"a"))
    cursor = logfile.Cursor(log, logfile.snapshot(log), 0, 0)
    try:
        assert [r.rsplit(b" ", 1)[-1] for r in cursor.read(follow=True)] == [b"a"]
        # two rotations while the follower sleeps (max-file 3): a -> .1 -> .2, b -> .1, c new
        os.rename(log, log.with_name("container.log.1"))
        append(log, record("stdout", b"b"))
        os.rename(log.with_name("container.log.1"), log.with_name("container.log.2"))
        os.rename(log, log.with_name("container.log.1"))
        append(log, record("stdout", b"c"))
        got: list[bytes] = []
        for _ in range(6):
            got += [r.rsplit(b" ", 1)[-1] for r in cursor.read(follow=True)]
        assert got == [b"b", b"c"]
    finally:
        cursor.close()
