"""`docker exec` through the exec zygote is `runc exec`: the same probes, two daemons.

One daemon execs with the zygote (the default), the other with conmon + `runc exec`
(PYMOBY_EXEC_RUNC=1). Each runs the same container and the same execs; what the exec'd
process sees of itself (capabilities, no_new_privs, seccomp, ids, groups, limits, namespaces,
cgroups, session, signals, open descriptors, environment, cwd, terminal settings) and every
failure text must be the same on both. The fast daemon's exec processes must really come from
the zygote (their parent is its child, not a conmon).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator

import pytest
from harness import DOCKER_CLI, Daemon
from test_container_streams import cli_env

NONE = "--network=none"

STATUS = r'grep -E "^(Cap|NoNewPrivs|Seccomp|Uid|Gid|Groups|Sig(Blk|Ign))" /proc/$$/status'
SAME_NS = (
    "for n in /proc/$$/ns/*; do b=${n##*/}; "
    '[ "$(readlink $n)" = "$(readlink /proc/1/ns/$b)" ] && echo same $b || echo diff $b; done'
)
PROBES: list[list[str]] = [
    ["sh", "-c", STATUS],
    ["-u", "nobody", "sh", "-c", STATUS],
    ["-u", "1000:1000", "sh", "-c", STATUS + "; id"],
    ["--privileged", "sh", "-c", STATUS],
    ["sh", "-c", "grep -v 'open files' /proc/$$/limits; cat /proc/$$/oom_score_adj; umask"],
    ["sh", "-c", '[ "$(cat /proc/$$/limits)" = "$(cat /proc/1/limits)" ] && echo init limits'],
    ["sh", "-c", SAME_NS],
    ["sh", "-c", '[ "$(cat /proc/$$/cgroup)" = "$(cat /proc/1/cgroup)" ] && echo same cgroups'],
    ["sh", "-c", 'set -- $(cat /proc/$$/stat); [ "$6" = "$$" ] && echo session leader'],
    ["sh", "-c", "ls /proc/$$/fd"],
    ["-w", "/tmp", "-e", "A=1", "-e", "HOME=", "sh", "-c", "pwd; env | sort"],
    ["-u", "nobody", "sh", "-c", "env | sort"],
    ["-t", "sh", "-c", "stty -a; tty; echo tty"],
    ["sh", "-c", "unshare -U true; echo $?"],
    ["--privileged", "sh", "-c", "unshare -U true; echo $?"],
    ["nope"],
    ["/etc"],
    ["/nope"],
    ["./sh"],
    ["-w", "/nope", "true"],
    ["-w", "/etc/passwd", "true"],
    ["-u", "nobody", "-w", "/root", "true"],
    ["sh", "-c", "exit 7"],
    ["sh", "-c", "kill -9 $$"],
]


def _normalize(text: str, cid: str) -> str:
    text = text.replace(cid, "<cid>").replace(cid[:12], "<cid>")
    return re.sub(r"HOSTNAME=\w+", "HOSTNAME=<h>", text)


@pytest.fixture(scope="module")
def pair(prerequisites: None) -> Iterator[tuple[Daemon, Daemon]]:
    fast, slow = Daemon(), Daemon(env={"PYMOBY_EXEC_RUNC": "1"})
    try:
        for d in (fast, slow):
            d.start()
            d.load_busybox()
        yield fast, slow
    finally:
        for d in (fast, slow):
            d.cleanup()


def _probe(d: Daemon, run_args: list[str]) -> list[tuple[int, str, str]]:
    d.docker("run", "-d", "--name", "probe", NONE, *run_args, "busybox", "sleep", "300")
    cid = d.docker("inspect", "-f", "{{.Id}}", "probe").stdout.strip()
    try:
        out = []
        for probe in PROBES:
            i = _split(probe)
            res = d.docker("exec", *probe[:i], "probe", *probe[i:], check=False)
            out.append((res.returncode, _normalize(res.stdout, cid), _normalize(res.stderr, cid)))
        return out
    finally:
        d.docker("rm", "-f", "probe", check=False)


def _split(probe: list[str]) -> int:
    """Index of the command in a probe (after its exec options)."""
    i = 0
    while i < len(probe) and probe[i].startswith("-"):
        i += 1 if probe[i] in ("-t", "--privileged") else 2
    return i


@pytest.mark.parametrize(
    "run_args",
    [
        [],
        [
            "--cap-add",
            "NET_ADMIN",
            "--cap-drop",
            "CHOWN",
            "--ulimit",
            "nofile=1024:2048",
            "--oom-score-adj",
            "100",
            "-u",
            "1000:1000",
            "--group-add",
            "10",
        ],
        ["--security-opt", "no-new-privileges", "--read-only"],
        ["--security-opt", "seccomp=unconfined", "--pid", "host"],
    ],
    ids=["defaults", "caps-limits-user", "no-new-privileges", "unconfined-host-pid"],
)
def test_exec_is_runc_exec(pair: tuple[Daemon, Daemon], run_args: list[str]) -> None:
    fast, slow = pair
    got, want = _probe(fast, run_args), _probe(slow, run_args)
    for probe, g, w in zip(PROBES, got, want, strict=True):
        if "init limits" in probe[-1]:
            # runc 1.1.5 (built with Go 1.19) leaves RLIMIT_NOFILE's soft limit raised to the
            # hard one by the Go runtime (fixed in later runc); the zygote's exec keeps the
            # container's limits, as its init has them
            if "--pid" not in run_args:  # with the host's PID namespace, 1 is the host's init
                assert g == (0, "init limits\n", ""), g
            continue
        assert g == w, (probe, g, w)


def test_fast_exec_processes_come_from_the_zygote(pair: tuple[Daemon, Daemon]) -> None:
    fast, _ = pair
    fast.docker("run", "-d", "--name", "zyg", NONE, "busybox", "sleep", "300")
    try:
        headers = {"Content-Type": "application/json"}
        body = json.dumps({"Cmd": ["sleep", "100"]}).encode()
        status, _, out = fast.request("POST", "/containers/zyg/exec", body, headers)
        assert status == 201, out
        exec_id = json.loads(out)["Id"]
        body = json.dumps({"Detach": True}).encode()
        status, _, out = fast.request("POST", f"/exec/{exec_id}/start", body, headers)
        assert status == 200, out
        pid = fast.json(f"/exec/{exec_id}/json")["Pid"]
        parent = _ppid(pid)
        with open(f"/proc/{parent}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        assert b"pymoby.runtime.nsexec" in argv, argv
    finally:
        fast.docker("rm", "-f", "zyg", check=False)


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("PPid:"):
                return int(line.split()[1])
    raise AssertionError(f"no PPid for {pid}")


def test_no_helper_outlives_its_exec(pair: tuple[Daemon, Daemon]) -> None:
    fast, _ = pair
    fast.docker("run", "-d", "--name", "short", NONE, "busybox", "sleep", "300")
    try:
        for _ in range(3):
            assert fast.docker("exec", "short", "true").returncode == 0
        root = str(fast.dir).encode()
        helpers = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/cmdline", "rb") as f:
                        argv = f.read()
                except OSError:
                    continue
                if b"pymoby.runtime.nsexec" in argv and root in argv:
                    helpers.append(int(entry))
        assert len(helpers) == 1, helpers  # the zygote only
    finally:
        fast.docker("rm", "-f", "short", check=False)


@pytest.mark.parametrize("which", ["zygote", "runc"])
def test_an_exec_whose_client_left_is_not_blocked_by_its_output(
    pair: tuple[Daemon, Daemon], which: str
) -> None:
    d = pair[0] if which == "zygote" else pair[1]
    d.docker("run", "-d", "--name", "talker", NONE, "busybox", "sleep", "300")
    try:
        script = "sleep 2; head -c 1000000 /dev/zero; echo done > /tmp/mark"
        res = subprocess.run(
            ["timeout", "-s", "KILL", "1", DOCKER_CLI, "exec", "talker", "sh", "-c", script],
            env=cli_env(d),
            capture_output=True,
            check=False,
        )
        assert res.returncode in (-9, 137), res  # the client is gone
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if d.docker("exec", "talker", "cat", "/tmp/mark", check=False).stdout == "done\n":
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the exec stayed blocked on its output")
    finally:
        d.docker("rm", "-f", "talker", check=False)


def test_concurrent_execs_keep_their_own_streams(pair: tuple[Daemon, Daemon]) -> None:
    fast, _ = pair
    fast.docker("run", "-d", "--name", "busy", NONE, "busybox", "sleep", "300")
    try:
        procs = [
            subprocess.Popen(
                [DOCKER_CLI, "exec", "-i", "busy", "sh", "-c", f"cat; echo {i} >&2; exit {i}"],
                env=cli_env(fast),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for i in range(12)
        ]
        for i, p in enumerate(procs):
            out, err = p.communicate(f"input {i}\n".encode() * 1000, timeout=60)
            assert (p.returncode, out, err) == (
                i,
                f"input {i}\n".encode() * 1000,
                f"{i}\n".encode(),
            )
    finally:
        fast.docker("rm", "-f", "busy", check=False)
