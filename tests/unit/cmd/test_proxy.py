"""cmd.proxy: the userland proxy program, end to end on loopback only.

The "container" is a TCP/UDP echo server the test runs on 127.0.0.1; the proxy's listening
sockets are bound by the test on 127.0.0.1:<free port> and handed over as the daemon does.
In-process runs cover both event loops; one subprocess run covers the real program (fds, flags,
SIGTERM) and measures its startup.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import uvloop

from pymoby.cmd import proxy
from pymoby.cmd.proxy import Mapping, parse_args

LOCAL = "127.0.0.1"


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Callable[[], Awaitable[None]]], None]:
    factory = asyncio.new_event_loop if request.param == "asyncio" else uvloop.new_event_loop

    def runner(body: Callable[[], Awaitable[None]]) -> None:
        loop = factory()
        try:
            loop.run_until_complete(asyncio.wait_for(body(), 20))
        finally:
            loop.close()

    return runner


def listening(proto: str = "tcp") -> socket.socket:
    """A host socket as the daemon binds it, on 127.0.0.1:<free port>."""
    if proto == "tcp":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((LOCAL, 0))
        s.listen(128)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IP, proxy.IP_PKTINFO, 1)
        s.bind((LOCAL, 0))
    return s


def handover(sock: socket.socket) -> int:
    """The fd the proxy gets (a duplicate; the "daemon" keeps `sock` to learn its address)."""
    return os.dup(sock.fileno())


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        port: int = s.getsockname()[1]
    return port


async def tcp_echo(*, reply_at_eof: bool = False) -> tuple[asyncio.Server, int]:
    """Echo server; with reply_at_eof it answers everything it read once the client half-closed."""

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if reply_at_eof:
            w.write(b"got:" + await r.read())
        else:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        await w.drain()
        w.close()

    server = await asyncio.start_server(handle, LOCAL, 0)
    return server, server.sockets[0].getsockname()[1]


class _UDPEcho(asyncio.DatagramProtocol):
    """Replies "<source port>:<data>" so tests see which proxy flow carried a datagram."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(f"{addr[1]}:".encode() + data, addr)


async def udp_echo() -> tuple[asyncio.DatagramTransport, int]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_UDPEcho, local_addr=(LOCAL, 0))
    return transport, transport.get_extra_info("sockname")[1]


@contextlib.asynccontextmanager
async def serving(maps: list[Mapping], udp_timeout: float = 90.0) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()
    task = loop.create_task(proxy.serve(maps, udp_timeout, stop))
    await asyncio.sleep(0.05)
    assert not task.done()
    try:
        yield
    finally:
        stop.set_result(None)
        assert await task == 0


async def udp_ask(sock: socket.socket, data: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, data)
    return await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)


def udp_client(port: int) -> socket.socket:
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.setblocking(False)
    c.connect((LOCAL, port))
    return c


# -- the command line ---------------------------------------------------------------------------


def test_parse_args() -> None:
    key, maps, timeout = parse_args(
        ["--key", "abc", "--map", "3:tcp:172.17.0.2:80", "--map=4:udp:172.17.0.2:53"]
    )
    assert (key, timeout) == ("abc", 90.0)
    assert maps == [Mapping(3, "tcp", "172.17.0.2", 80), Mapping(4, "udp", "172.17.0.2", 53)]
    assert parse_args(["--key=k", "--map", "5:sctp:10.0.0.1:9", "--udp-timeout", "1.5"])[2] == 1.5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--key", "k"], "--key and at least one --map are required"),
        (["--map", "3:tcp:1.2.3.4:80"], "--key and at least one --map are required"),
        (["--key"], "flag needs an argument: --key"),
        (["--key", "k", "--map", "3:icmp:1.2.3.4:80"], "invalid --map: 3:icmp:1.2.3.4:80"),
        (["--key", "k", "--map", "3:tcp:1.2.3:80"], "invalid --map: 3:tcp:1.2.3:80"),
        (["--key", "k", "--map", "3:tcp:1.2.3.4:0"], "invalid --map: 3:tcp:1.2.3.4:0"),
        (["--key", "k", "--map", "3:tcp:1.2.3.4"], "invalid --map: 3:tcp:1.2.3.4"),
        (["--key", "k", "-v"], "unknown flag: -v"),
        (["--key", "k", "--map", "3:udp:1.2.3.4:5", "--udp-timeout", "0"], "invalid --udp-timeout"),
    ],
)
def test_parse_args_errors(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_args(argv)


def test_main_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert proxy.main(["--key", "k"]) == 2
    assert "usage: python -m pymoby.cmd.proxy" in capsys.readouterr().err


# -- TCP ----------------------------------------------------------------------------------------


def test_tcp_forwarding_both_ways(run: Callable[[Callable[[], Awaitable[None]]], None]) -> None:
    async def body() -> None:
        server, port = await tcp_echo()
        lsock = listening()
        front = lsock.getsockname()[1]
        async with server, serving([Mapping(handover(lsock), "tcp", LOCAL, port)]):
            clients = [await asyncio.open_connection(LOCAL, front) for _ in range(3)]
            big = os.urandom(3 * 1024 * 1024)  # more than the buffers: flow control works
            for i, (r, w) in enumerate(clients):
                payload = big if i == 0 else b"ping %d" % i
                w.write(payload)
                await w.drain()
                assert await r.readexactly(len(payload)) == payload
            for _, w in clients:
                w.close()
        lsock.close()

    run(body)


def test_tcp_half_close_from_client(run: Callable[[Callable[[], Awaitable[None]]], None]) -> None:
    """The client's EOF reaches the container, whose answer still comes back."""

    async def body() -> None:
        server, port = await tcp_echo(reply_at_eof=True)
        lsock = listening()
        async with server, serving([Mapping(handover(lsock), "tcp", LOCAL, port)]):
            r, w = await asyncio.open_connection(*lsock.getsockname())
            w.write(b"hello")
            w.write_eof()
            assert await asyncio.wait_for(r.read(), 5) == b"got:hello"
            w.close()
        lsock.close()

    run(body)


def test_tcp_half_close_from_container(
    run: Callable[[Callable[[], Awaitable[None]]], None],
) -> None:
    """The container's EOF reaches the client, which can still send."""

    async def body() -> None:
        received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.write(b"banner")
            w.write_eof()
            received.set_result(await r.read())
            w.close()

        server = await asyncio.start_server(handle, LOCAL, 0)
        lsock = listening()
        target = Mapping(handover(lsock), "tcp", LOCAL, server.sockets[0].getsockname()[1])
        async with server, serving([target]):
            r, w = await asyncio.open_connection(*lsock.getsockname())
            assert await asyncio.wait_for(r.read(), 5) == b"banner"  # EOF seen
            w.write(b"after eof")
            w.write_eof()
            assert await asyncio.wait_for(received, 5) == b"after eof"
            w.close()
        lsock.close()

    run(body)


def test_tcp_backend_refused_closes_client(
    run: Callable[[Callable[[], Awaitable[None]]], None], capsys: pytest.CaptureFixture[str]
) -> None:
    async def body() -> None:
        lsock = listening()
        dead = free_port()
        async with serving([Mapping(handover(lsock), "tcp", LOCAL, dead)]):
            r, w = await asyncio.open_connection(*lsock.getsockname())
            assert await asyncio.wait_for(r.read(), 5) == b""
            w.close()
        lsock.close()

    run(body)
    err = capsys.readouterr().err
    assert f"Can't forward traffic to backend tcp/{LOCAL}:" in err
    assert "Connect call failed" in err or "refused" in err.lower()


def test_tcp_container_reset_reaches_client(
    run: Callable[[Callable[[], Awaitable[None]]], None],
) -> None:
    async def body() -> None:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await r.readexactly(1)
            sock = w.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            w.transport.abort()  # RST

        server = await asyncio.start_server(handle, LOCAL, 0)
        lsock = listening()
        target = Mapping(handover(lsock), "tcp", LOCAL, server.sockets[0].getsockname()[1])
        async with server, serving([target]):
            r, w = await asyncio.open_connection(*lsock.getsockname())
            w.write(b"x")
            with contextlib.suppress(ConnectionResetError):
                assert await asyncio.wait_for(r.read(), 5) == b""
            w.close()
        lsock.close()

    run(body)


# -- UDP ----------------------------------------------------------------------------------------


def test_udp_flows_per_client(run: Callable[[Callable[[], Awaitable[None]]], None]) -> None:
    async def body() -> None:
        echo, port = await udp_echo()
        lsock = listening("udp")
        front = lsock.getsockname()[1]
        a, b = udp_client(front), udp_client(front)
        async with serving([Mapping(handover(lsock), "udp", LOCAL, port)]):
            ra1 = await udp_ask(a, b"one")
            rb1 = await udp_ask(b, b"two")
            ra2 = await udp_ask(a, b"three")
            flow_a, flow_b = ra1.split(b":")[0], rb1.split(b":")[0]
            assert ra1 == flow_a + b":one" and ra2 == flow_a + b":three"  # one flow per client
            assert rb1 == flow_b + b":two" and flow_a != flow_b
            big = os.urandom(60000)
            assert (await udp_ask(b, big)).endswith(big)
        a.close()
        b.close()
        echo.close()
        lsock.close()

    run(body)


def test_udp_idle_flow_expires(run: Callable[[Callable[[], Awaitable[None]]], None]) -> None:
    async def body() -> None:
        echo, port = await udp_echo()
        lsock = listening("udp")
        a = udp_client(lsock.getsockname()[1])
        async with serving([Mapping(handover(lsock), "udp", LOCAL, port)], udp_timeout=0.5):
            first = (await udp_ask(a, b"x")).split(b":")[0]
            await asyncio.sleep(0.1)
            assert (await udp_ask(a, b"x")).split(b":")[0] == first  # still alive: traffic
            await asyncio.sleep(1.0)
            assert (await udp_ask(a, b"x")).split(b":")[0] != first  # expired: a new flow
        a.close()
        echo.close()
        lsock.close()

    run(body)


def test_udp_nothing_listening_then_listening(
    run: Callable[[Callable[[], Awaitable[None]]], None],
) -> None:
    """ICMP port unreachable from the container does not kill the flow (dockerd's rule)."""

    async def body() -> None:
        port = free_port()
        lsock = listening("udp")
        a = udp_client(lsock.getsockname()[1])
        loop = asyncio.get_running_loop()
        async with serving([Mapping(handover(lsock), "udp", LOCAL, port)]):
            await loop.sock_sendall(a, b"lost")
            await asyncio.sleep(0.1)
            transport, _ = await loop.create_datagram_endpoint(_UDPEcho, local_addr=(LOCAL, port))
            await loop.sock_sendall(a, b"lost again")  # may meet the queued ICMP error
            for _ in range(20):
                with contextlib.suppress(TimeoutError):
                    got = await asyncio.wait_for(udp_ask(a, b"found"), 0.25)
                    if got.endswith(b"found"):
                        break
            else:
                pytest.fail("no reply through the proxy")
            transport.close()
        a.close()
        lsock.close()

    run(body)


def test_pktinfo_reply_source() -> None:
    data = proxy._PKTINFO.pack(3, socket.inet_aton("10.0.0.1"), socket.inet_aton("127.0.0.5"))
    flow = proxy._Flow(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), ("1.2.3.4", 5), data[8:])
    assert flow.ancillary == [
        (
            socket.IPPROTO_IP,
            proxy.IP_PKTINFO,
            b"\0\0\0\0" + socket.inet_aton("127.0.0.5") + bytes(4),
        )
    ]
    flow.sock.close()


def test_bad_fd_exits_1(run: Callable[[Callable[[], Awaitable[None]]], None]) -> None:
    async def body() -> None:
        assert await proxy.serve([Mapping(987, "tcp", LOCAL, 80)], 1, asyncio.Future()) == 1

    run(body)


# -- the real program ---------------------------------------------------------------------------


def spawn(argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, **kwargs)  # type: ignore[call-overload,no-any-return]


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait(5)


def test_program_end_to_end(procs: list[subprocess.Popen[bytes]]) -> None:
    """Spawned as the daemon does: fds inherited, new session; SIGTERM exits 0 at once."""

    async def body() -> None:
        server, tport = await tcp_echo()
        echo, uport = await udp_echo()
        tsock, usock = listening(), listening("udp")
        argv = [sys.executable, "-m", "pymoby.cmd.proxy", "--key", "k1"]
        argv += ["--map", f"{tsock.fileno()}:tcp:{LOCAL}:{tport}"]
        argv += ["--map", f"{usock.fileno()}:udp:{LOCAL}:{uport}"]
        began = time.perf_counter()
        p = spawn(
            argv,
            pass_fds=[tsock.fileno(), usock.fileno()],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(p)
        front = tsock.getsockname()
        tsock.close()  # the daemon closes its copies; the queue keeps the connection
        r, w = await asyncio.open_connection(*front)
        w.write(b"first")
        assert await asyncio.wait_for(r.readexactly(5), 10) == b"first"
        startup = time.perf_counter() - began
        print(f"proxy startup to first forwarded byte: {startup * 1000:.0f} ms")
        assert startup < 5
        c = udp_client(usock.getsockname()[1])
        usock.close()
        assert (await udp_ask(c, b"dgram")).endswith(b":dgram")
        c.close()
        w.close()
        p.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(p.wait, 5) == 0
        server.close()
        echo.close()

    asyncio.run(body())
