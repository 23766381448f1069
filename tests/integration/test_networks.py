"""Networking end to end: the default bridge, published ports, user-defined networks, DNS.

Network safety: traffic goes only to loopback, to containers these tests made on the daemon's
own bridge and subnets (harness.TestNet), and to servers these tests run on the addresses of
those bridges. No test resolves or reaches an outside name or address: DNS forwarding is tested
with a tiny DNS server on the bridge's gateway address, passed with --dns.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import socket
import sqlite3
import struct
import threading
import time
import urllib.request
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from harness import Daemon

HTTPD = ["sh", "-c", "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && "
         "exec httpd -f -p 80 -h /www"]  # fmt: skip


def inspect(d: Daemon, name: str) -> dict:  # type: ignore[type-arg]
    return json.loads(d.docker("inspect", name).stdout)[0]  # type: ignore[no-any-return]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 5) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.read().decode()  # type: ignore[no-any-return]
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def fetch(d: Daemon, network: str, host: str, port: int = 80, *, check: bool = True) -> str:
    """GET / from a new container on `network` (busybox nc: its static wget crashes)."""
    script = f'printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 3 {host} {port}'
    res = d.docker("run", "--rm", "--network", network, "busybox", "sh", "-c", script, check=False)
    if check:
        assert res.returncode == 0, (network, host, res.stdout, res.stderr)
    return res.stdout if res.returncode == 0 else ""


def bridge_ports(bridge: str) -> list[str]:
    try:
        return sorted(os.listdir(f"/sys/class/net/{bridge}/brif"))
    except FileNotFoundError:
        return []


@pytest.fixture
def nets(dm: Daemon) -> Iterator[Daemon]:
    """The module's daemon; containers and user-defined networks are removed afterwards."""
    try:
        yield dm
    finally:
        dm.remove_containers()
        ids = dm.docker("network", "ls", "-q", "--filter", "type=custom", check=False)
        for nid in ids.stdout.split():
            dm.docker("network", "rm", nid, check=False)


# -- the default bridge ----------------------------------------------------------------------


def test_run_gets_an_address_of_the_bridge_subnet(nets: Daemon) -> None:
    out = nets.docker("run", "--rm", "busybox", "ip", "-4", "-o", "addr", "show", "eth0").stdout
    addr = out.split()[3]
    assert IPv4Address(addr.split("/")[0]) in IPv4Network(nets.net.subnet), out
    route = nets.docker("run", "--rm", "busybox", "ip", "route").stdout
    assert f"default via {nets.net.gateway} dev eth0" in route
    v6 = nets.docker("run", "--rm", "busybox", "ip", "-6", "addr", "show", "eth0").stdout
    assert "inet6" not in v6  # as dockerd: no IPv6 on a network without it


def test_inspect_shows_the_endpoint_and_the_files(nets: Daemon) -> None:
    nets.docker("run", "-d", "--name", "ep", "busybox", "sleep", "60")
    info = inspect(nets, "ep")
    settings = info["NetworkSettings"]
    ep = settings["Networks"]["bridge"]
    assert IPv4Address(ep["IPAddress"]) in IPv4Network(nets.net.subnet)
    assert ep["Gateway"] == nets.net.gateway and ep["IPPrefixLen"] == 24
    assert ep["MacAddress"] == "02:42:" + ":".join(
        f"{b:02x}" for b in IPv4Address(ep["IPAddress"]).packed
    )
    bridge = nets.json("/networks/bridge")
    assert ep["NetworkID"] == bridge["Id"]
    assert settings["SandboxKey"].startswith(str(nets.exec_root / "netns"))
    assert Path(settings["SandboxKey"]).name == settings["SandboxID"][:12]
    hosts = nets.docker("exec", "ep", "cat", "/etc/hosts").stdout
    assert f"{ep['IPAddress']}\t{info['Config']['Hostname']}" in hosts
    assert bridge["Containers"][info["Id"]]["IPv4Address"] == ep["IPAddress"] + "/24"
    old = nets.docker(
        "--log-level=error", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", "ep", check=False
    )
    assert old.returncode == 0
    nets.docker("stop", "-t", "0", "ep")
    stopped = inspect(nets, "ep")["NetworkSettings"]
    assert stopped["Networks"]["bridge"]["IPAddress"] == "" and stopped["SandboxKey"] == ""
    assert bridge_ports(nets.net.bridge) == []


def test_published_port_reaches_the_container_and_survives_a_restart(own: Daemon) -> None:
    port = free_port()
    own.docker("run", "-d", "--name", "web", "-p", f"{port}:80", "busybox", *HTTPD)
    assert http_get(f"http://127.0.0.1:{port}/").startswith("hello-from-")
    out = own.docker("port", "web").stdout
    assert f"80/tcp -> 0.0.0.0:{port}" in out
    ports = inspect(own, "web")["NetworkSettings"]["Ports"]
    assert ports["80/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": str(port)}]
    clash = own.docker("run", "-d", "-p", f"{port}:80", "busybox", "sleep", "5", check=False)
    assert clash.returncode != 0
    assert f"Bind for 0.0.0.0:{port} failed: port is already allocated" in clash.stderr
    own.kill9()
    assert http_get(f"http://127.0.0.1:{port}/").startswith("hello-from-")  # no gap
    own.start()
    assert http_get(f"http://127.0.0.1:{port}/").startswith("hello-from-")
    assert own.docker("port", "web").stdout == out
    own.docker("rm", "-f", "web")
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)


def test_publish_all_takes_ephemeral_ports(nets: Daemon) -> None:
    nets.docker("run", "-d", "--name", "pa", "-P", "--expose", "80", "busybox", *HTTPD)
    bound = inspect(nets, "pa")["NetworkSettings"]["Ports"]["80/tcp"]
    low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    port = int(bound[0]["HostPort"])
    assert low <= port <= high
    assert http_get(f"http://127.0.0.1:{port}/").startswith("hello-from-")
    ps = nets.docker("ps", "--filter", f"publish={port}", "--format", "{{.Names}}").stdout
    assert ps.strip() == "pa"


# -- user-defined networks -------------------------------------------------------------------
def test_links_on_the_default_bridge_write_hosts_and_environment(nets: Daemon) -> None:
    nets.docker("run", "-d", "--name", "child", "-e", "SECRET=s3", "--expose", "80",
                "busybox", "sleep", "60")  # fmt: skip
    child = inspect(nets, "child")
    ip = child["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    out = nets.docker("run", "--rm", "--name", "parent", "--link", "child:db", "busybox",
                      "sh", "-c", "cat /etc/hosts; env").stdout  # fmt: skip
    assert f"{ip}\tdb {child['Config']['Hostname']} child" in out
    for var in ("DB_NAME=/parent/db", f"DB_PORT=tcp://{ip}:80", f"DB_PORT_80_TCP_ADDR={ip}",
                "DB_ENV_SECRET=s3"):  # fmt: skip
        assert var in out.splitlines(), var
    nodns = nets.docker("run", "--rm", "busybox", "nslookup", "child", check=False)
    assert ip not in nodns.stdout  # no names on the default bridge without a link
    nets.docker("stop", "-t", "0", "child")
    res = nets.docker("run", "--rm", "--link", "child:db", "busybox", "true", check=False)
    assert "Cannot link to a non running container: /child AS" in res.stderr
    res = nets.docker("create", "--link", "nobody:x", "busybox", check=False)
    assert res.returncode != 0 and "could not get container for nobody" in res.stderr


def test_static_address_link_alias_and_prune(nets: Daemon) -> None:
    nets.docker("network", "create", "--subnet", f"10.{nets.net.octet}.{nets.net.block + 9}.0/24",
                "--label", "keep=no", "staticnet")  # fmt: skip
    fixed = f"10.{nets.net.octet}.{nets.net.block + 9}.50"
    nets.docker("run", "-d", "--name", "pinned", "--network", "staticnet", "--ip", fixed,
                "busybox", "sleep", "60")  # fmt: skip
    got = inspect(nets, "pinned")["NetworkSettings"]["Networks"]["staticnet"]["IPAddress"]
    assert got == fixed
    out = nets.docker("run", "--rm", "--network", "staticnet", "--link", "pinned:pin",
                      "busybox", "nslookup", "pin").stdout  # fmt: skip
    assert fixed in out
    taken = nets.docker("run", "--rm", "--network", "staticnet", "--ip", fixed, "busybox",
                        "true", check=False)  # fmt: skip
    assert taken.returncode != 0 and "Address already in use" in taken.stderr
    nets.docker("rm", "-f", "pinned")
    nets.docker("network", "create", "--label", "keep=yes", "kept")
    pruned = nets.docker("network", "prune", "-f", "--filter", "label=keep=no").stdout
    assert "staticnet" in pruned and "kept" not in pruned
    names = nets.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert "kept" in names and "staticnet" not in names


def test_containers_find_each_other_by_name_and_alias(nets: Daemon) -> None:
    nets.docker("network", "create", "appnet")
    nets.docker("network", "create", "othernet")
    nets.docker("run", "-d", "--name", "web", "--network", "appnet",
                "--network-alias", "www", "busybox", *HTTPD)  # fmt: skip
    for target in ("web", "www", "web.appnet"):
        assert "hello-from-" in fetch(nets, "appnet", target), target
    resolv = nets.docker("run", "--rm", "--network", "appnet", "busybox", "cat",
                         "/etc/resolv.conf").stdout  # fmt: skip
    assert "nameserver 127.0.0.11" in resolv and "options ndots:0" in resolv
    web_ip = inspect(nets, "web")["NetworkSettings"]["Networks"]["appnet"]["IPAddress"]
    assert "hello-from-" in fetch(nets, "appnet", web_ip)
    assert fetch(nets, "othernet", web_ip, check=False) == ""  # isolation between networks
    nodns = nets.docker("run", "--rm", "--network", "othernet", "busybox",
                        "nslookup", "web", check=False)  # fmt: skip
    assert web_ip not in nodns.stdout
    info = nets.json("/networks/appnet")
    assert [c["Name"] for c in info["Containers"].values()] == ["web"]


def test_connect_and_disconnect_a_running_container(nets: Daemon) -> None:
    nets.docker("network", "create", "n1")
    nets.docker("run", "-d", "--name", "cd", "busybox", "sleep", "60")
    nets.docker("network", "connect", "--alias", "cda", "n1", "cd")
    addrs = nets.docker("exec", "cd", "ip", "-4", "-o", "addr").stdout
    n1_ip = inspect(nets, "cd")["NetworkSettings"]["Networks"]["n1"]["IPAddress"]
    assert "eth1" in addrs and n1_ip in addrs
    got = nets.docker("run", "--rm", "--network", "n1", "busybox", "nslookup", "cda").stdout
    assert n1_ip in got
    again = nets.docker("network", "connect", "n1", "cd", check=False)
    assert again.returncode != 0 and "already exists in network n1" in again.stderr
    busy = nets.docker("network", "rm", "n1", check=False)
    assert busy.returncode != 0 and "has active endpoints" in busy.stderr
    nets.docker("network", "disconnect", "n1", "cd")
    assert "eth1" not in nets.docker("exec", "cd", "ip", "-o", "addr").stdout
    gone = nets.docker("network", "disconnect", "n1", "cd", check=False)
    assert gone.returncode != 0 and "is not connected to network n1" in gone.stderr
    nets.docker("network", "rm", "n1")


def test_network_events_and_a_given_mac_address(nets: Daemon) -> None:
    since = str(time.time() - 1)
    nets.docker("network", "create", "evnet")
    nets.docker("run", "-d", "--name", "ev", "--network", "evnet",
                "--mac-address", "02:aa:bb:cc:dd:ee", "busybox", "sleep", "60")  # fmt: skip
    ep = inspect(nets, "ev")["NetworkSettings"]["Networks"]["evnet"]
    assert ep["MacAddress"] == "02:aa:bb:cc:dd:ee"
    assert "02:aa:bb:cc:dd:ee" in nets.docker("exec", "ev", "ip", "link", "show", "eth0").stdout
    nets.docker("network", "disconnect", "evnet", "ev")
    nets.docker("rm", "-f", "ev")
    nets.docker("network", "rm", "evnet")
    until = str(time.time() + 1)
    out = nets.docker("events", "--since", since, "--until", until, "--filter", "type=network",
                      "--filter", "network=evnet", "--format", "{{.Action}}").stdout  # fmt: skip
    assert out.split() == ["create", "connect", "disconnect", "destroy"]


def test_internal_network_has_no_way_out(nets: Daemon) -> None:
    server = _HostHTTP(nets.net.gateway)
    try:
        nets.docker("network", "create", "--internal", "closed")
        nets.docker("network", "create", "open")
        assert "host-says-hi" in fetch(nets, "open", nets.net.gateway, server.port)
        assert fetch(nets, "closed", nets.net.gateway, server.port, check=False) == ""
        route = nets.docker("run", "--rm", "--network", "closed", "busybox", "ip", "route").stdout
        assert "default" not in route
    finally:
        server.close()


def test_embedded_dns_forwards_to_the_dns_servers(nets: Daemon) -> None:
    dns = _TinyDNS(nets.net.gateway, {"answer.pymoby.test": "10.9.8.7"})
    try:
        nets.docker("network", "create", "dnsnet")
        out = nets.docker("run", "--rm", "--network", "dnsnet", "--dns", nets.net.gateway,
                          "busybox", "nslookup", "answer.pymoby.test").stdout  # fmt: skip
        assert "10.9.8.7" in out
        assert dns.queries >= 1
    finally:
        dns.close()


def test_bad_input_gets_dockerds_errors(nets: Daemon) -> None:
    nets.docker("network", "create", "--subnet", "10.77.1.0/24", "taken", check=False)
    overlap = "Pool overlaps with other one on this address space"
    for args, text in (
        (["--subnet", "10.77.1.0/25", "x1"], overlap),
        (["--subnet", "10.77.2/24", "x2"], "invalid"),
        (["--subnet", "10.77.3.0/24", "--gateway", "10.77.4.1", "x3"], "gateway"),
        (["-d", "nosuchdriver", "x4"], "not found"),
        (["taken"], "network with name taken already exists"),
    ):
        res = nets.docker("network", "create", *args, check=False)
        assert res.returncode != 0 and text.lower() in res.stderr.lower(), (args, res.stderr)
    bad_port = nets.docker("run", "--rm", "-p", "70000:80", "busybox", "true", check=False)
    assert bad_port.returncode != 0 and "70000" in bad_port.stderr
    missing = nets.docker("run", "--rm", "--network", "nope", "busybox", "true", check=False)
    assert missing.returncode != 0 and "network nope not found" in missing.stderr
    builtin = nets.docker("network", "rm", "bridge", check=False)
    assert builtin.returncode != 0 and "pre-defined network" in builtin.stderr
    status, _, body = nets.request("DELETE", "/networks/taken")
    assert status == 204, body


def test_nothing_is_left_after_everything_is_removed(own: Daemon) -> None:
    own.docker("network", "create", "leftnet")
    port = free_port()
    own.docker("run", "-d", "--name", "la", "--network", "leftnet", "-p", f"{port}:80",
               "busybox", *HTTPD)  # fmt: skip
    own.docker("run", "-d", "--name", "lb", "busybox", "sleep", "60")
    bridge = "br-" + own.json("/networks/leftnet")["Id"][:12]
    assert Path(f"/sys/class/net/{bridge}").exists()
    assert str(port) in "\n".join(own.net.chains())
    own.docker("rm", "-f", "la", "lb")
    own.docker("network", "rm", "leftnet")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and bridge_ports(own.net.bridge):
        time.sleep(0.05)
    assert bridge_ports(own.net.bridge) == []
    assert not Path(f"/sys/class/net/{bridge}").exists()
    assert list((own.exec_root / "netns").iterdir()) == []
    assert str(port) not in "\n".join(own.net.chains())
    assert own.net.links() == [own.net.bridge]
    own.stop()
    with contextlib.closing(sqlite3.connect(own.data_root / "meta.db")) as db:
        assert db.execute("SELECT count(*) FROM endpoints").fetchone() == (0,)


# -- servers of the tests' own, on the test bridge's gateway ---------------------------------


class _HostHTTP:
    def __init__(self, host: str) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b"host-says-hi"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _TinyDNS:
    """Answers A queries for the names it knows (UDP, port 53 on `host`)."""

    def __init__(self, host: str, names: dict[str, str]) -> None:
        self.names = names
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 53))
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                data, addr = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            with contextlib.suppress(Exception):
                self.sock.sendto(self._answer(data), addr)

    def _answer(self, q: bytes) -> bytes:
        self.queries += 1
        qid, _flags, _qd, _an, _ns, _ar = struct.unpack("!6H", q[:12])
        labels, i = [], 12
        while q[i]:
            labels.append(q[i + 1 : i + 1 + q[i]].decode())
            i += q[i] + 1
        question = q[12 : i + 5]
        qtype = struct.unpack("!H", q[i + 1 : i + 3])[0]
        ip = self.names.get(".".join(labels).lower())
        if ip is None or qtype != 1:
            rcode = 0 if ip is not None else 3
            return struct.pack("!6H", qid, 0x8180 | rcode, 1, 0, 0, 0) + question
        answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + IPv4Address(ip).packed
        return struct.pack("!6H", qid, 0x8180, 1, 1, 0, 0) + question + answer

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join(2)


def test_icc_false_and_no_userland_proxy(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    d.extra_args += ["--icc=false", "--userland-proxy=false"]
    d.start()
    d.load_busybox()
    try:
        port = free_port()
        d.docker("run", "-d", "--name", "srv", "-p", f"{port}:80", "busybox", *HTTPD)
        ip = inspect(d, "srv")["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        assert "hello-from-" in http_get(f"http://{ip}/")  # the host reaches it
        assert fetch(d, "bridge", ip, check=False) == ""  # another container does not
        assert not any(b"pymoby.cmd.proxy" in _cmdline(p) for p in _pids())  # no proxy runs
        saved = "\n".join(d.net.chains())
        assert f"-i {d.net.bridge} -o {d.net.bridge} -j DROP" in saved
    finally:
        d.remove_containers()


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_dns_and_endpoints_survive_a_daemon_kill(own: Daemon) -> None:
    own.docker("network", "create", "keepnet")
    own.docker("run", "-d", "--name", "old", "--network", "keepnet", "busybox", *HTTPD)
    old_ip = inspect(own, "old")["NetworkSettings"]["Networks"]["keepnet"]["IPAddress"]
    own.kill9()
    own.start()
    assert "hello-from-" in fetch(own, "keepnet", "old")  # a new container finds the old one
    own.docker("run", "-d", "--name", "new", "--network", "keepnet", "busybox", "sleep", "60")
    new_ip = inspect(own, "new")["NetworkSettings"]["Networks"]["keepnet"]["IPAddress"]
    assert new_ip != old_ip  # the old one's address stayed taken
    got = own.docker("exec", "old", "nslookup", "new").stdout  # the restored DNS answers
    assert new_ip in got
    own.docker("rm", "-f", "old", "new")
    own.docker("network", "rm", "keepnet")


def test_connect_a_created_container_before_its_start(nets: Daemon) -> None:
    nets.docker("network", "create", "later")
    nets.docker("create", "--name", "two", "busybox", "sleep", "60")
    nets.docker("network", "connect", "later", "two")
    nets.docker("start", "two")
    networks = inspect(nets, "two")["NetworkSettings"]["Networks"]
    assert set(networks) == {"bridge", "later"}
    addrs = nets.docker("exec", "two", "ip", "-4", "-o", "addr").stdout
    assert networks["bridge"]["IPAddress"] in addrs and networks["later"]["IPAddress"] in addrs


def test_port_ranges_a_host_address_and_udp(nets: Daemon) -> None:
    base = free_port()
    while base > 60000:
        base = free_port()
    spec = f"127.0.0.1:{base}-{base + 5}:80"
    nets.docker("run", "-d", "--name", "rng", "-p", spec, "-p", f"{base + 10}:53/udp",
                "busybox", *HTTPD)  # fmt: skip
    ports = inspect(nets, "rng")["NetworkSettings"]["Ports"]
    [tcp] = ports["80/tcp"]
    assert tcp["HostIp"] == "127.0.0.1" and base <= int(tcp["HostPort"]) <= base + 5
    assert ports["53/udp"] == [{"HostIp": "0.0.0.0", "HostPort": str(base + 10)}]
    assert "hello-from-" in http_get(f"http://127.0.0.1:{tcp['HostPort']}/")
    shown = nets.docker("port", "rng", "53/udp").stdout
    assert f"0.0.0.0:{base + 10}" in shown
