"""MetaStore across processes: SIGKILL at random moments, and two processes on one file."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from pymoby import errdefs
from pymoby.store.meta import MetaStore

SRC = Path(__file__).resolve().parents[3] / "src"

# Each transaction bumps crash.a, rewrites one of 50 ~6 KiB blob rows (so the WAL grows and
# auto-checkpoints happen under the kill too) and bumps crash.b: a == b always, and the blob
# row n % 50 starts with "n:". The child prints n after each COMMIT returned.
WRITER = r"""
import sys
from pathlib import Path
from pymoby.store.meta import MetaStore

store = MetaStore.open(Path(sys.argv[1]))
print("id", store.engine_id(), flush=True)
blob = "x" * 6000

def step(conn):
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('crash.a', '0'), ('crash.b', '0') "
        "ON CONFLICT (key) DO NOTHING"
    )
    (n,) = conn.execute(
        "SELECT CAST(value AS INTEGER) + 1 FROM meta WHERE key = 'crash.a'"
    ).fetchone()
    conn.execute("UPDATE meta SET value = ? WHERE key = 'crash.a'", (str(n),))
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (f"crash.blob.{n % 50}", f"{n}:{blob}"),
    )
    conn.execute("UPDATE meta SET value = ? WHERE key = 'crash.b'", (str(n),))
    return n

while True:
    print(store.write_sync(step), flush=True)
"""

# Holds a write transaction open until a line arrives on stdin.
HOLDER = r"""
import sys
from pathlib import Path
from pymoby.store.meta import MetaStore

def hold(conn):
    conn.execute("INSERT INTO meta (key, value) VALUES ('held', 'yes')")
    print("locked", flush=True)
    sys.stdin.readline()

with MetaStore.open(Path(sys.argv[1])) as store:
    store.write_sync(hold)
print("done", flush=True)
"""

# Increments a counter N times, each a read-check-write transaction.
INCREMENTER = r"""
import sys
from pathlib import Path
from pymoby.store.meta import MetaStore

def increment(conn):
    row = conn.execute("SELECT value FROM meta WHERE key = 'count'").fetchone()
    value = int(row[0]) + 1 if row else 1
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('count', ?)", (str(value),))

with MetaStore.open(Path(sys.argv[1])) as store:
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(int(sys.argv[2])):
        store.write_sync(increment)
"""


def _spawn(script: str, args: Sequence[str]) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def _state(conn: sqlite3.Connection) -> tuple[str, int, int, dict[int, int], str | None]:
    rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    blobs = {
        int(k.rsplit(".", 1)[1]): int(v.split(":", 1)[0])
        for k, v in rows.items()
        if k.startswith("crash.blob.")
    }
    check = str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    a, b = int(rows.get("crash.a", 0)), int(rows.get("crash.b", 0))
    return check, a, b, blobs, rows.get("engine_id")


def test_sigkill_at_random_moments_leaves_a_consistent_db(tmp_path: Path) -> None:
    path = tmp_path / "meta.db"
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    engine_id: str | None = None
    committed = 0
    for round_ in range(6):
        child = _spawn(WRITER, [str(path)])
        assert child.stdout is not None
        if round_ == 0:  # anywhere: during start-up, migration, engine ID creation or writes
            time.sleep(rng.uniform(0.0, 0.3))
        else:
            line = child.stdout.readline().split()
            assert line[:1] == ["id"]
            assert engine_id is None or line[1] == engine_id
            engine_id = line[1]
            time.sleep(rng.uniform(0.0, 0.2))
        child.send_signal(signal.SIGKILL)
        out = child.communicate(timeout=10)[0]
        assert child.returncode == -signal.SIGKILL
        acknowledged = [int(x) for x in out.split("\n")[:-1] if x.isdigit()]  # complete lines
        context = f"seed={seed} round={round_}"

        if not path.exists():  # killed before it created anything
            continue
        with MetaStore.open(path) as store:
            check, a, b, blobs, stored_id = store.read_sync(_state)
        assert check == "ok", context
        assert a == b, context  # both rows of every transaction, or neither
        assert a >= committed, context  # nothing committed is lost ...
        if acknowledged:
            assert a in (acknowledged[-1], acknowledged[-1] + 1), context  # ... nor invented
        assert all(n % 50 == i and n <= a for i, n in blobs.items()), context
        if a:
            assert blobs[a % 50] == a, context
        if stored_id is not None:
            assert engine_id in (None, stored_id), context
            engine_id = stored_id
        committed = a

    assert committed > 0
    with MetaStore.open(path) as store:
        assert store.engine_id() == engine_id


def test_second_process_waits_for_the_write_lock_or_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "meta.db"
    MetaStore.open(path).close()
    holder = _spawn(HOLDER, [str(path)])
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "locked"
        with MetaStore.open(path, busy_timeout=0.1) as store:
            with pytest.raises(errdefs.Unavailable, match=str(path)):
                store.write_sync(lambda c: c.execute("INSERT INTO meta VALUES ('mine', '1')"))
            assert store.read_sync(lambda c: c.execute("SELECT count(*) FROM meta").fetchone()) == (
                0,
            )
            holder.stdin.write("\n")
            holder.stdin.flush()
            assert holder.stdout.readline().strip() == "done"
            store.write_sync(lambda c: c.execute("INSERT INTO meta VALUES ('mine', '1')"))
            rows = store.read_sync(
                lambda c: c.execute("SELECT key FROM meta ORDER BY key").fetchall()
            )
            assert rows == [("held",), ("mine",)]
            assert store.read_sync(lambda c: c.execute("PRAGMA integrity_check").fetchone()) == (
                "ok",
            )
    finally:
        holder.kill()
        holder.communicate(timeout=10)


def test_two_processes_writing_at_once_lose_no_update(tmp_path: Path) -> None:
    path = tmp_path / "meta.db"
    children = [_spawn(INCREMENTER, [str(path), "100"]) for _ in range(2)]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        for child in children:
            child.communicate(timeout=30)
            assert child.returncode == 0
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                child.communicate()
    with MetaStore.open(path) as store:
        count = store.read_sync(lambda c: c.execute("SELECT value FROM meta").fetchall())
        assert count == [("200",)]
        assert store.read_sync(lambda c: c.execute("PRAGMA integrity_check").fetchone()) == ("ok",)
