"""A real pymobyd for tests: own socket, data-root, exec-root, pidfile; CLI and docker-py helpers.

Rule: every daemon a test starts is stopped, and everything it made is removed, also when the
test fails (`stop()` is idempotent and `cleanup()` runs from the fixture's finally).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import docker

from pymoby.kernel.iptables import Iptables

DOCKER_CLI = os.environ.get("DOCKER_CLI", "/usr/local/bin/docker")
# ../shared/fixtures beside the checkout (as in CI); PYMOBY_FIXTURES overrides.
FIXTURES = Path(
    os.environ.get(
        "PYMOBY_FIXTURES", str(Path(__file__).resolve().parents[3] / "shared" / "fixtures")
    )
)
BUSYBOX_TAR = FIXTURES / "busybox-docker-save.tar"
REQUIRED_TOOLS = ("runc", "conmon", "iptables", "ip")
_SEQ = iter(range(1 << 30))


class TestNet:
    """The daemon's own networking: a bridge made here (dockerd wants a non-default -b bridge
    made by its owner), a /20 of 10.0.0.0/8 for it and the user-defined networks, and an
    iptables chain prefix. `remove` deletes every link holding an address of the block (the
    bridge, the user-defined networks' bridges) and every chain with the prefix."""

    def __init__(self) -> None:
        n = next(_SEQ)
        pid = os.getpid()
        self.octet = 100 + pid % 100
        self.block = 16 * (n % 16)
        self.bridge = f"pmt{pid % 4096:03x}{n % 16:x}"
        self.gateway = f"10.{self.octet}.{self.block}.1"
        self.subnet = f"10.{self.octet}.{self.block}.0/24"
        self.pool = f"10.{self.octet}.{self.block}.0/20"
        self.prefix = f"T{(pid + n) % 256:02x}-"

    def make(self) -> None:
        self.remove()
        subprocess.run(["ip", "link", "add", self.bridge, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge], check=True)

    def args(self) -> list[str]:
        return ["--bridge", self.bridge, "--default-address-pool", f"base={self.pool},size=24"]

    def links(self) -> list[str]:
        """Links with an IPv4 address in the block, and the bridge itself."""
        out = subprocess.run(
            ["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=False
        ).stdout
        names = {self.bridge} if _link_exists(self.bridge) else set()
        base = f"10.{self.octet}."
        for line in out.splitlines():
            words = line.split()
            if len(words) > 3 and words[3].startswith(base):
                third = int(words[3].split(".")[2])
                if self.block <= third < self.block + 16:
                    names.add(words[1].split("@")[0])
        return sorted(names)

    def chains(self) -> list[str]:
        saved = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False)
        return [line for line in saved.stdout.splitlines() if self.prefix in line]

    def remove(self) -> None:
        for link in self.links():
            subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)
        _remove_chains(self.prefix)


def _link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def _remove_chains(prefix: str) -> None:
    """Delete every chain named with `prefix` and every jump or tagged rule of it."""
    Iptables(prefix=prefix).clear()


def missing_prerequisites() -> list[str]:
    """What the integration tests need and this machine lacks (empty when all is there)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("integration tests must run as root")
    for tool in REQUIRED_TOOLS:
        if shutil.which(tool) is None:
            problems.append(f"{tool} not found on PATH (make setup installs it)")
    if not os.access(DOCKER_CLI, os.X_OK):
        problems.append(f"the docker CLI is needed at {DOCKER_CLI} (or set DOCKER_CLI)")
    return problems


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class Daemon:
    """One pymobyd process with its own directories under a fresh temp dir."""

    def __init__(
        self,
        extra_args: Sequence[str] = (),
        config: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ):
        self.dir = Path(tempfile.mkdtemp(prefix="pymoby-it-", dir="/tmp"))
        self.sock = str(self.dir / "api.sock")
        self.data_root = self.dir / "data"
        self.exec_root = self.dir / "exec"
        self.pidfile = self.dir / "pymobyd.pid"
        self.config_file = self.dir / "daemon.json"
        self.log_path = self.dir / "pymobyd.log"
        self.config_file.write_text(json.dumps(config or {}))
        self.extra_args = list(extra_args)
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.net = TestNet()
        self.net_made = False

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    def args(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pymoby",
            "--host",
            self.host,
            "--data-root",
            str(self.data_root),
            "--exec-root",
            str(self.exec_root),
            "--pidfile",
            str(self.pidfile),
            "--config-file",
            str(self.config_file),
            *self.net.args(),
            *self.extra_args,
        ]

    def start(self, timeout: float = 20) -> Daemon:
        if not self.net_made:
            self.net.make()
            self.net_made = True
        log = self.log_path.open("ab")
        env = {**os.environ, "PYMOBY_IPTABLES_PREFIX": self.net.prefix, **self.extra_env}
        self.proc = subprocess.Popen(self.args(), stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pymobyd exited with {self.proc.returncode}:\n{self.log()}")
            try:
                status, _, body = self.request("GET", "/_ping", timeout=1)
                if status == 200 and body == b"OK":
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"pymobyd did not answer /_ping in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = UnixHTTPConnection(self.sock, timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def json(self, path: str) -> Any:
        status, _, body = self.request("GET", path)
        assert status == 200, (status, body)
        return json.loads(body)

    def docker(
        self, *args: str, check: bool = True, timeout: float = 60, input: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.dir),
            "DOCKER_HOST": self.host,
            "DOCKER_CONFIG": str(self.dir / "docker-config"),
        }
        res = subprocess.run(
            [DOCKER_CLI, *args],
            env=env,
            capture_output=True,
            timeout=timeout,
            input=input.decode() if input is not None else None,
            text=True,
            check=False,
        )
        if check and res.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
            )
        return res

    def client(self, version: str = "auto") -> docker.DockerClient:
        return docker.DockerClient(base_url=self.host, version=version, timeout=30)

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 20) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM, then SIGKILL if it lingers; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def load_busybox(self) -> None:
        """The fixture images, plus `busybox` as a name for the base one."""
        self.docker("load", "-i", str(BUSYBOX_TAR))
        self.docker("tag", "pymoby-fixture/busybox:base", "busybox")

    def remove_containers(self) -> None:
        """`docker rm -f` every container of this daemon, while it still answers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        ids = self.docker("ps", "-aq", check=False).stdout.split()
        if ids:
            self.docker("rm", "-f", *ids, check=False)

    def sweep(self) -> None:
        """What the API could not remove: runc containers, conmons and mounts of this daemon.

        Containers outlive pymobyd (live restore), so this runs after it has stopped.
        """
        state = self.exec_root / "runc"
        if state.is_dir():
            for cid in os.listdir(state):
                subprocess.run(
                    ["runc", "--root", str(state), "delete", "--force", cid],
                    capture_output=True,
                    check=False,
                )
        for pid in conmons_under(str(self.dir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in [*proxies_of(self), *exec_helpers_under(str(self.dir))]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for target in mounts_under(str(self.dir)):
            subprocess.run(["umount", "-l", target], capture_output=True, check=False)
        if self.net_made:
            self.net.remove()

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.remove_containers()
        self.stop()
        self.sweep()
        shutil.rmtree(self.dir, ignore_errors=True)


def _processes() -> list[tuple[int, list[bytes]]]:
    """(pid, argv) of every process we can read."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                out.append((int(entry), f.read().split(b"\0")))
        except OSError:
            continue
    return out


def exec_helpers_under(root: str) -> list[int]:
    """pids of exec zygotes (and their first children) of a daemon whose state is under `root`."""
    return [
        pid
        for pid, argv in _processes()
        if b"pymoby.runtime.nsexec" in argv and root.encode() in b" ".join(argv)
    ]


def conmons_under(root: str) -> list[int]:
    """pids of conmon processes whose command line names a path under `root`."""
    return [
        pid
        for pid, argv in _processes()
        if argv and argv[0].endswith(b"conmon") and root.encode() in b" ".join(argv)
    ]


def proxies_of(d: Daemon) -> list[int]:
    """pids of userland proxies of that daemon's containers (`--key <container ID>`)."""
    try:
        ids = {name.encode() for name in os.listdir(d.data_root / "containers")}
    except OSError:
        return []
    return [
        pid for pid, argv in _processes() if b"pymoby.cmd.proxy" in argv and ids.intersection(argv)
    ]


def mounts_under(root: str) -> list[str]:
    """Mount points below `root`, deepest first."""
    with open("/proc/self/mountinfo") as f:
        targets = [line.split()[4] for line in f if line.split()[4].startswith(root)]
    return sorted(targets, key=len, reverse=True)
