"""networks.proxy: binding host ports, and real proxy processes, on loopback only.

The "container" is an echo server on 127.0.0.1; bindings use 127.0.0.1:<free port>. Every
process a test starts is killed at teardown, also on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import uvloop

from pymoby import errdefs
from pymoby.daemon.networks.portmap import PortAllocator, PortBinding, PortRequest
from pymoby.daemon.networks.proxy import (
    ProxyManager,
    allocate_and_bind,
    bind_socket,
    is_proxy_for,
)

LOCAL = "127.0.0.1"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((LOCAL, 0))
        port: int = s.getsockname()[1]
    return port


def proxies_with_key(key: str) -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and is_proxy_for(int(p), key)]


def spawn(argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, **kwargs)  # type: ignore[call-overload,no-any-return]


def gone(pid: int) -> bool:
    """Exited and reaped (not even a zombie left)."""
    return not Path(f"/proc/{pid}").exists()


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[ProxyManager]:
    m = ProxyManager(run_dir=tmp_path / "run", stop_timeout=2)
    yield m
    for pid in list(m._children):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        m._children[pid].wait(5)
    for key in list(m._held):
        m.release(key)


@pytest.fixture
def key(request: pytest.FixtureRequest) -> Iterator[str]:
    """A key unique to the test; any proxy left with it is killed."""
    k = f"t{os.getpid()}-{abs(hash(request.node.nodeid)) % 10**8}"
    yield k
    for pid in proxies_with_key(k):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.asynccontextmanager
async def echo_servers() -> AsyncIterator[tuple[int, int]]:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while data := await r.read(65536):
            w.write(data)
        w.close()

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t: asyncio.DatagramTransport = transport  # type: ignore[assignment]

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.t.sendto(b"echo:" + data, addr)

    server = await asyncio.start_server(handle, LOCAL, 0)
    udp, _ = await asyncio.get_running_loop().create_datagram_endpoint(Echo, local_addr=(LOCAL, 0))
    try:
        yield server.sockets[0].getsockname()[1], udp.get_extra_info("sockname")[1]
    finally:
        udp.close()
        server.close()


async def tcp_roundtrip(port: int, data: bytes = b"hello") -> bytes:
    r, w = await asyncio.open_connection(LOCAL, port)
    w.write(data)
    w.write_eof()
    got = await asyncio.wait_for(r.read(), 10)
    w.close()
    return got


async def udp_roundtrip(port: int, data: bytes = b"dgram") -> bytes:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
        c.setblocking(False)
        c.connect((LOCAL, port))
        await loop.sock_sendall(c, data)
        return await asyncio.wait_for(loop.sock_recv(c, 65536), 10)


# -- binding ------------------------------------------------------------------------------------


def test_bind_socket_kinds() -> None:
    tport, uport = free_port(), free_port(socket.SOCK_DGRAM)
    with bind_socket(PortBinding("tcp", 80, LOCAL, tport)) as t:
        assert t.type == socket.SOCK_STREAM and t.getsockname() == (LOCAL, tport)
        assert t.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        assert not t.get_inheritable()
    with bind_socket(PortBinding("udp", 53, LOCAL, uport)) as u:
        assert u.type == socket.SOCK_DGRAM and u.getsockname() == (LOCAL, uport)
    with pytest.raises(errdefs.System, match="protocol icmp not supported"):
        bind_socket(PortBinding("icmp", 1, LOCAL, 1))


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_bind_conflict_message(proto: str) -> None:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as held:
        held.bind((LOCAL, 0))
        port = held.getsockname()[1]
        if proto == "tcp":
            held.listen()
        with pytest.raises(errdefs.System) as err:
            bind_socket(PortBinding(proto, 80, LOCAL, port))
    assert err.value.message == (
        f"failed to bind host port {LOCAL}:{port}/{proto}: address already in use"
    )


def test_bind_unassignable_address_message() -> None:
    with pytest.raises(errdefs.System) as err:
        bind_socket(PortBinding("tcp", 80, "192.0.2.1", free_port()))  # TEST-NET-1, not ours
    assert err.value.message.endswith(": cannot assign requested address")


async def test_drop_filter_holds_the_port_without_accepting(
    manager: ProxyManager, key: str
) -> None:
    """--userland-proxy=false: the daemon keeps the ports, nothing is accepted on them."""
    alloc = PortAllocator((40000, 40001), reserved=())
    port = free_port()
    bindings, socks = allocate_and_bind(alloc, [PortRequest("tcp", 80, LOCAL, port, port)])
    manager.hold(key, socks)
    with socket.socket() as c:
        c.settimeout(0.3)
        with pytest.raises(TimeoutError):  # the SYN is dropped: never accepted
            c.connect((LOCAL, port))
    with pytest.raises(errdefs.System, match="address already in use"):
        bind_socket(bindings[0])
    manager.release(key)
    bind_socket(bindings[0]).close()


def test_allocate_and_bind_retries_busy_ephemeral_ports() -> None:
    with socket.socket() as busy:
        busy.bind((LOCAL, 0))
        busy.listen()
        port = busy.getsockname()[1]
        alloc = PortAllocator((port, port + 1), reserved=())
        reqs = [PortRequest("tcp", 80, LOCAL, 0, 0)]
        try:
            bindings, socks = allocate_and_bind(alloc, reqs)
        except errdefs.System:
            pytest.skip(f"port {port + 1} is busy on this host")
        assert bindings == [PortBinding("tcp", 80, LOCAL, port + 1)]
        assert not alloc.in_use(LOCAL, "tcp", port)  # released after the failed bind
        for s in socks:
            s.close()

        # A specific port fails at once, and the allocation is undone.
        with pytest.raises(errdefs.System) as err:
            allocate_and_bind(alloc, [PortRequest("tcp", 81, LOCAL, port, port)])
        assert err.value.message == (
            f"failed to bind host port {LOCAL}:{port}/tcp: address already in use"
        )
        assert not alloc.in_use(LOCAL, "tcp", port)

        # All attempts busy: the last bind error.
        solo = PortAllocator((port, port), reserved=())
        with pytest.raises(errdefs.System, match="address already in use"):
            allocate_and_bind(solo, reqs)
        assert not solo.in_use(LOCAL, "tcp", port)


def test_allocate_and_bind_all_or_nothing() -> None:
    free = free_port()
    with socket.socket() as busy:
        busy.bind((LOCAL, 0))
        busy.listen()
        taken = busy.getsockname()[1]
        alloc = PortAllocator((40000, 40001), reserved=())
        reqs = [
            PortRequest("tcp", 80, LOCAL, free, free),
            PortRequest("tcp", 81, LOCAL, taken, taken),
        ]
        with pytest.raises(errdefs.System):
            allocate_and_bind(alloc, reqs)
    assert not alloc.in_use(LOCAL, "tcp", free)
    bind_socket(PortBinding("tcp", 80, LOCAL, free)).close()  # its socket was closed


# -- proxy processes ----------------------------------------------------------------------------


async def test_start_forwards_then_stop(manager: ProxyManager, key: str) -> None:
    async with echo_servers() as (tcp_port, udp_port):
        bindings = [
            PortBinding("tcp", tcp_port, LOCAL, free_port()),
            PortBinding("udp", udp_port, LOCAL, free_port(socket.SOCK_DGRAM)),
        ]
        pid = await manager.start(key, LOCAL, bindings)
        assert pid > 0 and proxies_with_key(key) == [pid]
        assert manager.alive(key, pid) and not manager.alive("other", pid)
        assert not manager.alive(key, os.getpid()) and not manager.alive(key, 0)
        assert await tcp_roundtrip(bindings[0].host_port) == b"hello"
        assert await udp_roundtrip(bindings[1].host_port) == b"echo:dgram"
        assert manager.log_path(key).exists()

        await manager.stop(key, pid)
        assert gone(pid) and not manager.alive(key, pid)
        assert not manager.log_path(key).exists()
        for b in bindings:  # the daemon kept no copy: the ports are free again
            bind_socket(b).close()
        await manager.stop(key, pid)  # again: nothing to do


async def test_start_with_sockets_from_allocate_and_bind(manager: ProxyManager, key: str) -> None:
    async with echo_servers() as (tcp_port, _):
        alloc = PortAllocator((40000, 40001), reserved=())
        port = free_port()
        bindings, socks = allocate_and_bind(
            alloc, [PortRequest("tcp", tcp_port, LOCAL, port, port)]
        )
        pid = await manager.start(key, LOCAL, bindings, socks)
        assert all(s.fileno() == -1 for s in socks)  # handed over and closed
        assert await tcp_roundtrip(port, b"x" * 100000) == b"x" * 100000  # filter detached
        await manager.stop(key, pid)
        assert gone(pid)


async def test_bind_conflict_leaves_nothing(manager: ProxyManager, key: str) -> None:
    first = free_port()
    with socket.socket() as held:
        held.bind((LOCAL, 0))
        held.listen()
        taken = held.getsockname()[1]
        bindings = [PortBinding("tcp", 80, LOCAL, first), PortBinding("tcp", 81, LOCAL, taken)]
        with pytest.raises(errdefs.System) as err:
            await manager.start(key, "172.17.0.2", bindings)
    assert err.value.message == (
        f"failed to bind host port {LOCAL}:{taken}/tcp: address already in use"
    )
    assert proxies_with_key(key) == [] and manager._children == {}
    bind_socket(bindings[0]).close()  # the first socket was closed


async def test_spawn_failure_closes_sockets(tmp_path: Path, key: str) -> None:
    m = ProxyManager(python=str(tmp_path / "no-python"), run_dir=tmp_path)
    b = PortBinding("tcp", 80, LOCAL, free_port())
    with pytest.raises(errdefs.System) as err:
        await m.start(key, "172.17.0.2", [b])
    assert err.value.message.startswith(
        f"failed to start userland proxy for port mapping {LOCAL}:{b.host_port}:172.17.0.2:80/tcp: "
    )
    bind_socket(b).close()


async def test_start_without_bindings_and_bad_key(manager: ProxyManager) -> None:
    assert await manager.start("k", LOCAL, []) == 0
    with pytest.raises(errdefs.InvalidParameter):
        await manager.start("../x", LOCAL, [PortBinding("tcp", 80, LOCAL, free_port())])


async def test_early_exit_is_reaped(manager: ProxyManager, key: str) -> None:
    """A proxy that dies by itself does not stay a zombie."""
    async with echo_servers() as (tcp_port, _):
        pid = await manager.start(key, LOCAL, [PortBinding("tcp", tcp_port, LOCAL, free_port())])
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            await asyncio.sleep(0.02)
            if gone(pid):
                break
        assert gone(pid) and pid not in manager._children
        assert not manager.alive(key, pid)
        await manager.stop(key, pid)


async def test_stop_kills_a_proxy_ignoring_sigterm(tmp_path: Path, key: str) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    argv = [sys.executable, "-c", code, "pymoby.cmd.proxy", "--key", key]
    p = spawn(argv, start_new_session=True, stdout=subprocess.PIPE)
    try:
        assert p.stdout is not None
        assert await asyncio.to_thread(p.stdout.readline) == b"ready\n"
        m = ProxyManager(run_dir=tmp_path, stop_timeout=0.3)
        assert m.alive(key, p.pid)  # adopted: started by "another daemon"
        stopping = asyncio.create_task(m.stop(key, p.pid))
        await asyncio.sleep(0.1)
        assert p.poll() is None  # SIGTERM ignored
        await stopping
        assert p.wait(5) == -signal.SIGKILL
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
        if p.stdout is not None:
            p.stdout.close()


async def test_stop_leaves_other_processes_alone(tmp_path: Path, key: str) -> None:
    p = spawn([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        m = ProxyManager(run_dir=tmp_path, stop_timeout=0.3)
        assert not m.alive(key, p.pid)
        await m.stop(key, p.pid)
        assert p.poll() is None
        await m.stop(key, 0)
        await m.stop(key, 2**22 + 12345)  # no such pid
    finally:
        p.kill()
        p.wait(5)


def test_manager_on_uvloop(tmp_path: Path, key: str) -> None:
    """The daemon's loop: start, traffic, an early exit reaped, stop."""
    m = ProxyManager(run_dir=tmp_path, stop_timeout=2)

    async def body() -> None:
        async with echo_servers() as (tcp_port, udp_port):
            b = [
                PortBinding("tcp", tcp_port, LOCAL, free_port()),
                PortBinding("udp", udp_port, LOCAL, free_port(socket.SOCK_DGRAM)),
            ]
            pid = await m.start(key, LOCAL, b)
            assert await tcp_roundtrip(b[0].host_port) == b"hello"
            assert await udp_roundtrip(b[1].host_port) == b"echo:dgram"
            await m.stop(key, pid)
            assert gone(pid)
            pid = await m.start(key, LOCAL, b)
            os.kill(pid, signal.SIGKILL)
            for _ in range(100):
                await asyncio.sleep(0.02)
                if gone(pid):
                    break
            assert gone(pid) and m._children == {}

    try:
        uvloop.run(asyncio.wait_for(body(), 30))
    finally:
        for pid, proc in m._children.items():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            proc.wait(5)
