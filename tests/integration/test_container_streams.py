"""Attach, logs, resize and exec end to end: the real docker CLI and docker-py against pymobyd.

Every test removes its containers; the daemons are swept afterwards (conmon processes, runc
state, mounts under their temp dirs), since containers outlive the daemon by design. TTY tests
run the CLI under `script` (a pty of a known size); `script` gets a stdin that stays open, or it
would type its EOF character (a NUL) into the pty. Every container uses `--network none`.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import time
from pathlib import Path

import pytest
from harness import DOCKER_CLI, Daemon

NONE = "--network=none"


@pytest.fixture
def d(clean: Daemon) -> Daemon:
    return clean


def cli_env(d: Daemon) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(d.dir),
        "DOCKER_HOST": d.host,
        "DOCKER_CONFIG": str(d.dir / "docker-config"),
    }


def under_pty(d: Daemon, command: str, rows: int, cols: int, timeout: float = 30) -> str:
    """Run a docker command line in a pty of `rows` x `cols` (util-linux `script`)."""
    inner = f"stty rows {rows} cols {cols}; {command}"
    holder = subprocess.Popen(["sleep", str(timeout)], stdout=subprocess.PIPE)
    try:
        res = subprocess.run(
            ["script", "-qec", inner, "/dev/null"],
            stdin=holder.stdout,
            capture_output=True,
            env=cli_env(d),
            timeout=timeout,
            check=False,
        )
    finally:
        holder.kill()
        holder.wait()
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    return res.stdout.decode(errors="replace")


def wait_for(predicate: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


# -- run, attach, logs -------------------------------------------------------------------------


def test_stdin_through_run_i(d: Daemon) -> None:
    res = d.docker("run", "-i", "--rm", "busybox", "cat", input=b"hello\n")
    assert res.stdout == "hello\n"
    res = d.docker("run", "--rm", NONE, "pymoby-fixture/busybox:two-layer")
    assert res.stdout == "fixture\n"
    res = d.docker(
        "run", "--rm", NONE, "busybox", "sh", "-c", "echo out; echo err >&2", check=False
    )
    assert (res.stdout, res.stderr) == ("out\n", "err\n")


def test_start_attaches_before_the_process_starts(d: Daemon) -> None:
    d.docker("create", "--name", "later", NONE, "busybox", "sh", "-c", "echo hi; echo bye >&2")
    res = d.docker("start", "-a", "later")
    assert (res.stdout, res.stderr) == ("hi\n", "bye\n")
    d.docker("create", "-i", "--name", "asker", NONE, "busybox", "sh", "-c", "read x; echo got $x")
    res = d.docker("start", "-ai", "asker", input=b"answer\n")
    assert res.stdout == "got answer\n"


def test_tty_run_gets_the_terminal_size(d: Daemon) -> None:
    out = under_pty(d, f"docker run -it --rm {NONE} busybox stty size", 21, 77)
    assert out.strip().endswith("21 77")


def test_detached_logs_follow_attach_exec(d: Daemon) -> None:
    d.docker(
        "run", "-d", "--name", "ticker", NONE, "busybox", "sh", "-c",
        "i=0; while [ $i -lt 400 ]; do echo tick $i; echo err $i >&2; i=$((i+1)); sleep 0.02; done",
    )  # fmt: skip
    wait_for(lambda: "tick 5" in d.docker("logs", "ticker").stdout)
    follow = subprocess.Popen(
        [DOCKER_CLI, "logs", "-f", "--tail", "3", "ticker"],
        env=cli_env(d),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    attach = subprocess.Popen(
        [DOCKER_CLI, "attach", "ticker"],
        env=cli_env(d),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        res = d.docker(
            "exec", "ticker", "sh", "-c", "echo from exec; echo to err >&2; exit 3", check=False
        )
        assert (res.returncode, res.stdout, res.stderr) == (3, "from exec\n", "to err\n")
        out, err = follow.communicate(timeout=60)  # ends when the container exits
        assert follow.returncode == 0
        lines = out.decode().splitlines()
        first = int(lines[0].split()[1])
        assert lines == [f"tick {i}" for i in range(first, 400)]  # nothing lost, no repeat
        assert err.decode().splitlines()[-1] == "err 399"
        a_out, _ = attach.communicate(timeout=30)
        assert attach.returncode == 0
        assert a_out.decode().splitlines()[-1] == "tick 399"
    finally:
        for p in (follow, attach):
            if p.poll() is None:
                p.kill()
                p.wait()
    res = d.docker("exec", "ticker", "true", check=False)
    cid = d.docker("inspect", "-f", "{{.Id}}", "ticker").stdout.strip()
    assert res.returncode != 0
    assert f"container {cid} is not running" in res.stderr
    logs = d.docker("logs", "--tail", "2", "-t", "ticker")
    stamp = logs.stdout.split()[0]
    assert stamp.endswith("Z") and len(stamp) == len("2006-01-02T15:04:05.000000000Z")
    assert logs.stdout.split()[1:] == ["tick", "399"] and logs.stderr.split()[1:] == ["err", "399"]


def test_exec_it_under_a_pty(d: Daemon) -> None:
    d.docker("run", "-d", "--name", "idle", NONE, "busybox", "sleep", "300")
    out = under_pty(d, "docker exec -it idle sh -c 'stty size; tty; echo $TERM'", 33, 111)
    assert out.replace("\r", "").split() == ["33", "111", "/dev/pts/0", "xterm"]
    res = d.docker("exec", "-i", "idle", "sh", "-c", "cat; echo done", input=b"piped\n")
    assert res.stdout == "piped\ndone\n"
    res = d.docker("exec", "-u", "nobody", "-w", "/tmp", "-e", "X=1", "idle", "sh", "-c",
                   "id -u; pwd; echo $X")  # fmt: skip
    assert res.stdout.split() == ["65534", "/tmp", "1"]
    res = d.docker("exec", "idle", "nope", check=False)
    assert res.returncode == 127
    # dockerd writes a failed start onto the stream (stdout), as here
    assert 'exec: "nope": executable file not found in $PATH: unknown' in res.stdout


def test_attach_detach_keys_and_resize(d: Daemon) -> None:
    d.docker("run", "-dit", "--name", "shell", NONE, "busybox", "sh")
    cid = d.docker("inspect", "-f", "{{.Id}}", "shell").stdout.strip()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(d.sock)
    try:
        sock.sendall(
            f"POST /v1.45/containers/{cid}/attach?stream=1&stdin=1&stdout=1&detachKeys=ctrl-x "
            "HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 101 UPGRADED\r\n")
        assert b"Content-Type: application/vnd.docker.raw-stream\r\n" in head
        status, _, _ = d.request("POST", f"/containers/{cid}/resize?h=42&w=99")
        assert status == 200
        sock.sendall(b"stty size\n")
        got = head.partition(b"\r\n\r\n")[2]
        while b"42 99" not in got:
            got += sock.recv(4096)
        sock.sendall(b"\x18")  # ctrl-x: detach
        while data := sock.recv(4096):
            got += data
    finally:
        sock.close()
    assert d.docker("inspect", "-f", "{{.State.Running}}", "shell").stdout.strip() == "true"
    since = str(int(time.time()) - 60)
    events = d.docker(
        "events", "--since", since, "--until", str(int(time.time()) + 1),
        "--filter", f"container={cid}", "--format", "{{.Action}}",
    ).stdout.split()  # fmt: skip
    assert "attach" in events and "detach" in events and "resize" in events


def test_docker_py(d: Daemon) -> None:
    client = d.client()
    out = client.containers.run(
        "busybox", ["sh", "-c", "echo out; echo err >&2"], remove=True, network_mode="none"
    )
    assert out == b"out\n"
    c = client.containers.run(
        "busybox", ["sh", "-c", "echo first; sleep 1.2; echo second; sleep 300"],
        detach=True, network_mode="none", name="pyc",
    )  # fmt: skip
    try:
        wait_for(lambda: b"second" in c.logs())
        result = c.exec_run(["sh", "-c", "echo e1; echo e2 >&2; exit 4"])
        assert (result.exit_code, result.output) == (4, b"e1\ne2\n")
        result = c.exec_run(["sh", "-c", "echo o; echo e >&2"], demux=True)
        assert result.output == (b"o\n", b"e\n")
        assert c.attach(stdout=True, stderr=True, logs=True, stream=False) == b"first\nsecond\n"
        stamped = c.logs(timestamps=True).decode().splitlines()
        second_at = stamped[1].split()[0]
        assert c.logs(tail=1) == b"second\n"
        epoch = time.mktime(time.strptime(second_at[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        assert c.logs(since=int(epoch)) in (b"second\n", b"first\nsecond\n")
        assert c.logs(until=int(epoch) - 1) in (b"first\n", b"")
        exec_id = client.api.exec_create(c.id, ["sleep", "0.2"])["Id"]
        client.api.exec_start(exec_id, detach=True)
        assert client.api.exec_inspect(exec_id)["Running"] is True
        wait_for(lambda: client.api.exec_inspect(exec_id)["ExitCode"] == 0)
    finally:
        c.remove(force=True)


def test_exec_latency(d: Daemon) -> None:
    d.docker("run", "-d", "--name", "fast", NONE, "busybox", "sleep", "300")
    times = []
    for _ in range(10):
        start = time.perf_counter()
        d.docker("exec", "fast", "true")
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"docker exec fast true: median {median * 1000:.1f} ms")
    assert median < 1.0


# -- logs across a daemon crash and rotation ---------------------------------------------------


def test_logs_have_no_gap_across_a_daemon_kill9(own: Daemon) -> None:
    own.docker(
        "run", "-d", "--name", "counter", NONE, "busybox", "sh", "-c",
        "i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); sleep 0.01; done; sleep 300",
    )  # fmt: skip
    wait_for(lambda: "line 20" in own.docker("logs", "counter").stdout)
    own.kill9()
    time.sleep(1)  # the container keeps writing while no daemon runs
    own.start()
    wait_for(lambda: "line 299" in own.docker("logs", "counter").stdout, timeout=30)
    lines = own.docker("logs", "counter").stdout.splitlines()
    assert lines == [f"line {i}" for i in range(300)]
    res = own.docker("exec", "counter", "echo", "alive")
    assert res.stdout == "alive\n"


def test_max_size_rotation_keeps_every_line_while_following(d: Daemon) -> None:
    d.docker(
        "run", "-d", "--name", "rot", NONE, "--log-opt", "max-size=8k", "--log-opt", "max-file=3",
        "busybox", "sh", "-c",
        "sleep 1; i=0; while [ $i -lt 2000 ]; do echo row $i; i=$((i+1)); done; sleep 1",
    )  # fmt: skip
    follow = subprocess.run(
        [DOCKER_CLI, "logs", "-f", "rot"],
        env=cli_env(d),
        capture_output=True,
        timeout=60,
        check=True,
    )
    lines = follow.stdout.decode().splitlines()
    assert lines == [f"row {i}" for i in range(2000)]
    log_path = Path(json.loads(d.docker("inspect", "rot").stdout)[0]["LogPath"])
    names = sorted(p.name for p in log_path.parent.iterdir() if p.name.startswith(log_path.name))
    assert 2 <= len(names) <= 3, names
    kept = d.docker("logs", "rot").stdout.splitlines()
    assert kept[-1] == "row 1999"
    first = int(kept[0].split()[1])
    assert kept == [f"row {i}" for i in range(first, 2000)]
