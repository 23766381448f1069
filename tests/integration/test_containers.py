"""Containers end to end: the real docker CLI and docker-py against pymobyd, conmon and runc.

Every test removes its containers; each module/daemon is swept afterwards (conmon processes,
runc state, mounts under its temp dir), since containers outlive the daemon by design.
Most containers use `--network none` (networking has its own module, test_networks.py).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import docker
import pytest
from harness import Daemon, conmons_under, mounts_under

TWO_LAYER = "pymoby-fixture/busybox:two-layer"
NONE = "--network=none"


def leftovers(d: Daemon) -> tuple[list[int], list[str]]:
    root = str(d.dir)
    return conmons_under(root), mounts_under(root)


# -- helpers ---------------------------------------------------------------------------------


def inspect(d: Daemon, name: str) -> dict:  # type: ignore[type-arg]
    return json.loads(d.docker("inspect", name).stdout)[0]  # type: ignore[no-any-return]


def log_text(d: Daemon, name: str) -> str:
    """The container's output from conmon's k8s-file log (`<time> <stream> <P|F> <text>`)."""
    path = Path(inspect(d, name)["LogPath"])
    lines, current = [], ""
    for record in path.read_text().splitlines():
        _, _, tag, *rest = record.split(" ", 3)
        current += rest[0] if rest else ""
        if tag == "F":
            lines.append(current)
            current = ""
    return "\n".join(lines)


def status(d: Daemon, name: str) -> str:
    return d.docker(
        "ps", "-a", "--filter", f"name=^{name}$", "--format", "{{.Status}}"
    ).stdout.strip()


# -- tests -----------------------------------------------------------------------------------


def test_run_detached_then_wait_and_the_log(clean: Daemon) -> None:
    cid = clean.docker("run", "-d", NONE, "--name", "fix", TWO_LAYER).stdout.strip()
    assert clean.docker("wait", "fix").stdout.strip() == "0"
    assert log_text(clean, "fix") == "fixture"
    info = inspect(clean, "fix")
    assert info["Id"] == cid and info["Name"] == "/fix"
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 0
    assert info["Config"]["WorkingDir"] == "/data" and info["Config"]["Labels"] == {
        "org.example.fixture": "two-layer"
    }
    assert info["GraphDriver"]["Name"] == info["Driver"]
    assert Path(info["HostsPath"]).read_text().startswith("127.0.0.1\tlocalhost")


def test_run_rm_prints_fixture(clean: Daemon) -> None:
    res = clean.docker("run", "--rm", TWO_LAYER)  # on the default bridge network
    assert res.stdout == "fixture\n"
    assert clean.docker("ps", "-aq").stdout.strip() == ""


def test_exit_code_of_docker_run(clean: Daemon) -> None:
    res = clean.docker("run", "busybox", "sh", "-c", "exit 3", check=False)
    assert res.returncode == 3, res.stderr
    res = clean.docker("run", NONE, "busybox", "sh", "-c", "exit 4", check=False)
    assert res.returncode == 4, res.stderr


def test_detached_stop_kill_wait_rm_and_filters(clean: Daemon) -> None:
    d = clean
    d.docker(
        "run", "-d", NONE, "--name", "sleeper", "--label", "role=sleep", "busybox", "sleep", "300"
    )
    trap = "trap 'exit 7' USR1; while true; do sleep 0.1; done"
    d.docker("run", "-d", NONE, "--name", "trapper", "busybox", "sh", "-c", trap)
    assert status(d, "sleeper").startswith("Up ")
    names = d.docker("ps", "--filter", "label=role=sleep", "--format", "{{.Names}}").stdout.split()
    assert names == ["sleeper"]
    started = time.monotonic()
    d.docker("stop", "-t", "1", "sleeper")  # sleep as PID 1 ignores SIGTERM: SIGKILL after 1 s
    assert 0.9 < time.monotonic() - started < 8
    assert inspect(d, "sleeper")["State"]["ExitCode"] == 137
    assert status(d, "sleeper").startswith("Exited (137) ")
    time.sleep(0.3)  # let the trap be installed
    d.docker("kill", "-s", "USR1", "trapper")
    assert d.docker("wait", "trapper").stdout.strip() == "7"
    exited = d.docker("ps", "-a", "--filter", "exited=7", "--format", "{{.Names}}").stdout.split()
    assert exited == ["trapper"]
    by_status = d.docker("ps", "-a", "--filter", "status=exited", "--format", "{{.Names}}")
    assert sorted(by_status.stdout.split()) == ["sleeper", "trapper"]
    assert d.docker("ps", "-q").stdout.strip() == ""
    res = d.docker("kill", "trapper", check=False)
    assert res.returncode != 0 and "is not running" in res.stderr
    d.docker("start", "sleeper")
    res = d.docker("rm", "sleeper", check=False)
    assert "container is running: stop the container before removing or force remove" in res.stderr
    d.docker("rm", "-f", "sleeper", "trapper")
    res = d.docker("inspect", "sleeper", check=False)
    assert res.returncode != 0 and "No such object: sleeper" in res.stderr


def test_pause_restart_rename_with_docker_py(clean: Daemon) -> None:
    client = clean.client()
    try:
        c = client.containers.run(
            "busybox", ["sleep", "300"], detach=True, network_mode="none", name="pyc"
        )
        c.reload()
        assert c.status == "running"
        c.pause()
        c.reload()
        assert c.status == "paused"
        c.unpause()
        pid = c.attrs["State"]["Pid"]
        c.restart(timeout=1)
        c.reload()
        assert c.status == "running" and c.attrs["State"]["Pid"] != pid
        c.rename("pyc2")
        assert client.containers.get("pyc2").id == c.id
        c.kill()
        assert c.wait(timeout=10)["StatusCode"] == 137
        c.remove()
        with pytest.raises(docker.errors.NotFound):
            client.containers.get("pyc2")
    finally:
        client.close()


def test_wait_registered_before_start_sees_the_exit(clean: Daemon) -> None:
    body = json.dumps(
        {"Image": "busybox", "Cmd": ["sh", "-c", "exit 4"], "HostConfig": {"NetworkMode": "none"}}
    )
    st, _, out = clean.request(
        "POST",
        "/containers/create?name=waited",
        body.encode(),
        {"Content-Type": "application/json"},
    )
    assert st == 201, out
    result: dict[str, object] = {}

    def waiter() -> None:
        result["wait"] = clean.request(
            "POST", "/containers/waited/wait?condition=next-exit", timeout=30
        )

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.2)
    st, _, _ = clean.request("POST", "/containers/waited/start")
    assert st == 204
    t.join(30)
    status_code, _, payload = result["wait"]  # type: ignore[misc]
    assert status_code == 200 and json.loads(payload) == {"StatusCode": 4}


def test_pids_limit_stops_a_fork_loop(clean: Daemon) -> None:
    # 16, not fewer: `runc init` (a Go program, several threads) runs in the cgroup before the
    # process does, and a very low limit can starve it of threads before it execs
    script = "for i in $(seq 30); do sleep 5 & done; wait"
    clean.docker(
        "run", "-d", NONE, "--name", "forky", "--pids-limit", "16", "busybox", "sh", "-c", script
    )
    assert clean.docker("wait", "forky").stdout.strip() != "0"
    assert "can't fork" in log_text(clean, "forky")
    assert inspect(clean, "forky")["HostConfig"]["PidsLimit"] == 16


def test_memory_limit_oom_kills(clean: Daemon) -> None:
    clean.docker(
        "run", "-d", NONE, "--name", "hog", "-m", "10m", "busybox", "sh", "-c", "tail /dev/zero"
    )
    assert clean.docker("wait", "hog").stdout.strip() == "137"
    state = inspect(clean, "hog")["State"]
    assert state["OOMKilled"] is True and state["ExitCode"] == 137
    assert inspect(clean, "hog")["HostConfig"]["Memory"] == 10 * 1024 * 1024


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_cpu_limit_throttles_a_busy_loop(clean: Daemon) -> None:
    """--cpus 0.1: a spinning shell gets about a tenth of a core, not a whole one."""
    clean.docker(
        "run", "-d", NONE, "--name", "spin", "--cpus", "0.1", "busybox", "sh", "-c",
        "while :; do :; done",
    )  # fmt: skip
    try:
        pid = inspect(clean, "spin")["State"]["Pid"]
        start = _cpu_seconds(pid)
        time.sleep(2)
        used = _cpu_seconds(pid) - start
        assert used < 0.6, f"{used:.2f} s of CPU in 2 s with --cpus 0.1"
        assert inspect(clean, "spin")["HostConfig"]["NanoCpus"] == 100_000_000
    finally:
        clean.docker("rm", "-f", "spin", check=False)


def test_failed_creates_and_starts_leave_nothing(clean: Daemon) -> None:
    d = clean
    before = sorted(os.listdir(d.data_root / "overlay2"))
    res = d.docker("create", NONE, "--name", "bad/name", "busybox", check=False)
    assert (
        "Invalid container name (bad/name), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        in res.stderr
    )
    res = d.docker("create", NONE, "--pull", "never", "nosuchimage", check=False)
    assert "No such image: nosuchimage:latest" in res.stderr
    d.docker("create", "--network", "nosuchnet", "--name", "nonet", "busybox")
    res = d.docker("start", "nonet", check=False)
    assert res.returncode != 0 and "network nosuchnet not found" in res.stderr
    d.docker("create", NONE, "--name", "taken", "busybox")
    cid = inspect(d, "taken")["Id"]
    res = d.docker("create", NONE, "--name", "taken", "busybox", check=False)
    assert (
        f'Conflict. The container name "/taken" is already in use by container "{cid}". You '
        "have to remove (or rename) that container to be able to reuse that name."
    ) in res.stderr
    d.docker("create", NONE, "--name", "nocmd", "busybox", "/no/such/binary")
    res = d.docker("start", "nocmd", check=False)
    assert res.returncode != 0 and "no such file or directory" in res.stderr
    state = inspect(d, "nocmd")["State"]
    assert state["Status"] == "created" and state["ExitCode"] == 127
    assert sorted(d.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()) == [
        "nocmd",
        "nonet",
        "taken",
    ]
    conmons, mounts = leftovers(d)
    assert conmons == [] and [m for m in mounts if "/overlay2/" in m and "merged" in m] == []
    assert [m for m in mounts if "/netns/" in m] == []
    d.docker("rm", "taken", "nocmd", "nonet")
    assert sorted(os.listdir(d.data_root / "overlay2")) == before
    assert not list((d.exec_root / "bundles").iterdir())


def test_conmon_leaves_the_daemons_cgroup(clean: Daemon) -> None:
    cid = clean.docker("run", "-d", NONE, "busybox", "sleep", "60").stdout.strip()
    [conmon] = [p for p in conmons_under(str(clean.dir)) if cid.encode() in _cmdline(p)]
    assert clean.proc is not None
    daemon_groups = Path(f"/proc/{clean.proc.pid}/cgroup").read_text().splitlines()
    conmon_groups = Path(f"/proc/{conmon}/cgroup").read_text().splitlines()
    assert conmon_groups != daemon_groups
    assert all(line.endswith(":/pymoby-conmon") for line in conmon_groups), conmon_groups


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def test_kill9_of_the_daemon_keeps_containers(own: Daemon) -> None:
    d = own
    d.docker("run", "-d", NONE, "--name", "survivor", "busybox", "sleep", "300")
    d.docker("run", "-d", NONE, "--name", "quitter", "busybox", "sh", "-c", "sleep 1; exit 5")
    pid = inspect(d, "survivor")["State"]["Pid"]
    d.kill9()
    time.sleep(2.5)  # quitter exits while no daemon watches
    os.kill(pid, 0)  # still alive
    d.start()
    assert status(d, "survivor").startswith("Up ")
    assert inspect(d, "survivor")["State"]["Pid"] == pid
    info = inspect(d, "quitter")["State"]
    assert info["Status"] == "exited" and info["ExitCode"] == 5
    d.docker("stop", "-t", "1", "survivor")
    assert inspect(d, "survivor")["State"]["ExitCode"] == 137
    d.docker("rm", "survivor", "quitter")
    conmons, mounts = leftovers(d)
    assert conmons == [] and [m for m in mounts if "merged" in m] == []


def test_a_clean_daemon_stop_also_leaves_containers_running(own: Daemon) -> None:
    d = own
    d.docker("run", "-d", NONE, "--name", "stays", "busybox", "sleep", "300")
    assert d.stop() == 0
    d.start()
    assert status(d, "stays").startswith("Up ")
    d.docker("rm", "-f", "stays")
