"""The embedded resolver, over real UDP and TCP on loopback, on both event loops.

The socket factory is injected (plain host sockets on 127.0.0.1:<free port> instead of
127.0.0.11:53 in a netns); upstreams are fake DNS servers the test runs on 127.0.0.1.
No traffic leaves loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import uvloop

from pymoby import errdefs
from pymoby.daemon.networks.dns import Resolver, SandboxDNS, parse_upstream

NETNS = Path("/run/netns/test-sandbox")
A, PTR, MX, AAAA, TXT = 1, 12, 15, 28, 16
NOERROR, FORMERR, SERVFAIL, NOTIMP, REFUSED = 0, 1, 2, 4, 5
QR, TC, RA = 0x8000, 0x0200, 0x0080


# -- event loops ----------------------------------------------------------------------------


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Callable[[], Awaitable[None]]], None]:
    factory = asyncio.new_event_loop if request.param == "asyncio" else uvloop.new_event_loop

    def runner(body: Callable[[], Awaitable[None]]) -> None:
        async def main() -> None:
            await body()

        with asyncio.Runner(loop_factory=factory) as r:
            r.run(main())

    return runner


# -- wire helpers (hand-written, independent of dnswire) ------------------------------------


def encode_name(name: str) -> bytes:
    out = b""
    for label in [p for p in name.split(".") if p]:
        out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def make_query(name: str, qtype: int = A, qid: int = 0x4242, *, edns: int | None = None) -> bytes:
    ar = 1 if edns is not None else 0
    data = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, ar)
    data += encode_name(name) + struct.pack(">HH", qtype, 1)
    if edns is not None:
        data += b"\x00" + struct.pack(">HHIH", 41, edns, 0, 0)
    return data


def read_name(data: bytes, off: int) -> tuple[str, int]:
    labels: list[str] = []
    end = None
    while True:
        n = data[off]
        if n & 0xC0 == 0xC0:
            end = off + 2 if end is None else end
            off = ((n & 0x3F) << 8) | data[off + 1]
            continue
        if n == 0:
            return ".".join(labels), (off + 1 if end is None else end)
        labels.append(data[off + 1 : off + 1 + n].decode())
        off += 1 + n


@dataclass
class Answer:
    name: str
    rtype: int
    ttl: int
    rdata: bytes
    target: str = ""


@dataclass
class Response:
    raw: bytes
    id: int
    flags: int
    qname: str
    qtype: int
    answers: list[Answer] = field(default_factory=list)

    @property
    def rcode(self) -> int:
        return self.flags & 0xF

    @property
    def addresses(self) -> list[str]:
        return [str(IPv4Address(a.rdata)) for a in self.answers if a.rtype == A]


def parse_response(data: bytes) -> Response:
    qid, flags, qd, an, _, _ = struct.unpack_from(">HHHHHH", data)
    assert flags & QR
    assert qd == 1
    qname, off = read_name(data, 12)
    qtype, _ = struct.unpack_from(">HH", data, off)
    off += 4
    resp = Response(data, qid, flags, qname, qtype)
    for _ in range(an):
        name, off = read_name(data, off)
        rtype, _, ttl, rdlen = struct.unpack_from(">HHIH", data, off)
        off += 10
        ans = Answer(name, rtype, ttl, data[off : off + rdlen])
        if rtype == PTR:
            ans.target, _ = read_name(data, off)
        resp.answers.append(ans)
        off += rdlen
    assert off == len(data)
    return resp


def header_only(data: bytes) -> tuple[int, int, list[int]]:
    qid, flags, *counts = struct.unpack(">HHHHHH", data[:12])
    return qid, flags, counts


# -- sockets ---------------------------------------------------------------------------------


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = int(t.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait(data)


async def udp_ask(port: int, data: bytes, timeout: float = 2.0) -> bytes | None:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Client, remote_addr=("127.0.0.1", port))
    try:
        transport.sendto(data)
        try:
            return await asyncio.wait_for(proto.queue.get(), timeout)
        except TimeoutError:
            return None
    finally:
        transport.close()


async def tcp_ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> bytes:
    writer.write(len(data).to_bytes(2, "big") + data)
    await writer.drain()
    return await tcp_read(reader)


async def tcp_read(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(3):
        size = int.from_bytes(await reader.readexactly(2), "big")
        return await reader.readexactly(size)


# -- a fake upstream DNS server on loopback ------------------------------------------------------


class Upstream:
    """Answers every query with A 9.9.9.9 (or stays silent / fails, per `mode`)."""

    def __init__(self, mode: str = "answer", delay: float = 0.0) -> None:
        self.mode = mode
        self.delay = delay
        self.port = 0
        self.seen: list[tuple[str, bytes]] = []
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def reply(self, query: bytes) -> bytes | None:
        if self.mode == "silent":
            return None
        qid = query[:2]
        question = query[12:]  # our test queries carry nothing after the question
        if self.mode in ("servfail", "refused"):
            rcode = SERVFAIL if self.mode == "servfail" else REFUSED
            return qid + struct.pack(">HHHHH", 0x8180 | rcode, 1, 0, 0, 0) + question
        rr = b"\xc0\x0c" + struct.pack(">HHIH", A, 1, 30, 4) + bytes([9, 9, 9, 9])
        return qid + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0) + question + rr

    async def __aenter__(self) -> Upstream:
        loop = asyncio.get_running_loop()
        self.port = free_port()
        upstream = self

        class Proto(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport: Any = transport

            def datagram_received(self, data: bytes, addr: Any) -> None:
                upstream.seen.append(("udp", data))
                answer = upstream.reply(data)
                if answer is not None:
                    loop.call_later(upstream.delay, self.transport.sendto, answer, addr)

        self._udp, _ = await loop.create_datagram_endpoint(
            Proto, local_addr=("127.0.0.1", self.port)
        )

        async def on_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while True:
                    data = await tcp_read(reader)
                    self.seen.append(("tcp", data))
                    answer = self.reply(data)
                    if answer is not None:
                        await asyncio.sleep(self.delay)
                        writer.write(len(answer).to_bytes(2, "big") + answer)
                        await writer.drain()
            writer.close()

        self._tcp = await asyncio.start_server(on_tcp, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._udp is not None and self._tcp is not None
        self._udp.close()
        self._tcp.close()


# -- the resolver under test --------------------------------------------------------------------

NAMES = {
    "web": [IPv4Address("10.0.0.2")],
    "web.mynet": [IPv4Address("10.0.0.2")],
    "db": [IPv4Address(f"10.0.1.{i}") for i in range(1, 6)],
    "many": [IPv4Address(f"10.1.{i // 250}.{i % 250 + 1}") for i in range(100)],
    "nov4": [],
}
REVERSE = {IPv4Address("10.0.0.2"): "web.mynet"}


@dataclass
class Calls:
    lookups: list[str] = field(default_factory=list)
    reverses: list[IPv4Address] = field(default_factory=list)
    factory: list[tuple[Path, int, int]] = field(default_factory=list)


def sandbox_dns(calls: Calls, upstreams: list[str], names: dict[str, Any] = NAMES) -> SandboxDNS:
    def lookup(name: str) -> list[IPv4Address] | None:
        calls.lookups.append(name)
        found = names.get(name)
        return None if found is None else list(found)

    def reverse(addr: IPv4Address) -> str | None:
        calls.reverses.append(addr)
        return REVERSE.get(addr)

    return SandboxDNS(lookup=lookup, reverse=reverse, upstreams=upstreams)


@contextlib.asynccontextmanager
async def resolver(
    upstreams: list[str], *, timeout: float = 0.5, calls: Calls | None = None
) -> AsyncIterator[tuple[Resolver, int, Calls]]:
    calls = calls or Calls()

    def factory(path: Path, family: int, type_: int) -> socket.socket:
        calls.factory.append((path, family, type_))
        return socket.socket(family, type_)

    port = free_port()
    r = Resolver(socket_factory=factory, address="127.0.0.1", port=port, timeout=timeout)
    await r.serve("sb1", NETNS, sandbox_dns(calls, upstreams))
    try:
        yield r, port, calls
    finally:
        await r.close()


Run = Callable[[Callable[[], Coroutine[Any, Any, None]]], None]


# -- local answers ----------------------------------------------------------------------------


def test_a_record_for_known_name(run: Run) -> None:
    async def body() -> None:
        async with Upstream() as up, resolver([up.addr]) as (_, port, calls):
            resp = parse_response(await udp_ask(port, make_query("web", qid=7)) or b"")
            assert resp.id == 7
            assert resp.rcode == NOERROR
            assert resp.flags & RA
            assert (resp.qname, resp.qtype) == ("web", A)
            assert resp.addresses == ["10.0.0.2"]
            assert [(a.name, a.ttl) for a in resp.answers] == [("web", 600)]
            assert calls.factory == [
                (NETNS, socket.AF_INET, socket.SOCK_DGRAM),
                (NETNS, socket.AF_INET, socket.SOCK_STREAM),
            ]
            assert up.seen == []

    run(body)


def test_names_are_case_insensitive_and_trailing_dot_free(run: Run) -> None:
    async def body() -> None:
        async with resolver([]) as (_, port, calls):
            resp = parse_response(await udp_ask(port, make_query("WeB.MyNet.")) or b"")
            assert resp.addresses == ["10.0.0.2"]
            assert resp.qname == "WeB.MyNet"  # the question and answer keep the client's case
            assert resp.answers[0].name == "WeB.MyNet"
            assert calls.lookups == ["web.mynet"]

    run(body)


def test_all_addresses_in_shuffled_order(run: Run) -> None:
    async def body() -> None:
        async with resolver([]) as (_, port, _calls):
            orders = set()
            for i in range(20):
                resp = parse_response(await udp_ask(port, make_query("db", qid=i)) or b"")
                assert sorted(resp.addresses) == [f"10.0.1.{i}" for i in range(1, 6)]
                orders.add(tuple(resp.addresses))
            assert len(orders) > 1

    run(body)


def test_known_name_without_ipv4_is_empty_noerror(run: Run) -> None:
    async def body() -> None:
        async with Upstream() as up, resolver([up.addr]) as (_, port, _calls):
            resp = parse_response(await udp_ask(port, make_query("nov4")) or b"")
            assert (resp.rcode, resp.answers) == (NOERROR, [])
            assert up.seen == []

    run(body)


@pytest.mark.parametrize("qtype", [AAAA, MX])
def test_aaaa_and_mx_of_known_name_are_empty_noerror(run: Run, qtype: int) -> None:
    async def body() -> None:
        async with Upstream() as up, resolver([up.addr]) as (_, port, _calls):
            resp = parse_response(await udp_ask(port, make_query("Web", qtype)) or b"")
            assert (resp.rcode, resp.qtype, resp.answers) == (NOERROR, qtype, [])
            assert resp.flags & RA
            assert up.seen == []
            # ... while an unknown name's AAAA goes upstream
            await udp_ask(port, make_query("example.org", qtype))
            assert len(up.seen) == 1

    run(body)


def test_ptr_for_known_address(run: Run) -> None:
    async def body() -> None:
        async with Upstream() as up, resolver([up.addr]) as (_, port, calls):
            q = make_query("2.0.0.10.in-addr.arpa", PTR)
            resp = parse_response(await udp_ask(port, q) or b"")
            assert resp.rcode == NOERROR
            assert [(a.rtype, a.ttl, a.target) for a in resp.answers] == [(PTR, 600, "web.mynet")]
            assert resp.answers[0].name == "2.0.0.10.in-addr.arpa"
            assert calls.reverses == [IPv4Address("10.0.0.2")]
            assert up.seen == []
            # an address nobody here has is forwarded
            resp = parse_response(await udp_ask(port, make_query("9.0.0.10.in-addr.arpa", PTR)))
            assert up.seen and up.seen[0][0] == "udp"
            assert resp.addresses == ["9.9.9.9"]

    run(body)


def test_udp_truncation_follows_edns_size_and_tcp_gets_all(run: Run) -> None:
    async def body() -> None:
        async with resolver([]) as (_, port, _calls):
            raw = await udp_ask(port, make_query("many"))
            assert raw is not None and len(raw) <= 512
            resp = parse_response(raw)
            assert resp.flags & TC
            assert 0 < len(resp.addresses) < 100
            resp = parse_response(await udp_ask(port, make_query("many", edns=4096)) or b"")
            assert not resp.flags & TC
            assert len(resp.addresses) == 100
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            resp = parse_response(await tcp_ask(reader, writer, make_query("many")))
            assert not resp.flags & TC
            assert len(resp.addresses) == 100
            writer.close()

    run(body)


def test_failing_callback_gives_servfail(run: Run) -> None:
    async def body() -> None:
        async with resolver([]) as (r, port, calls):

            def boom(name: str) -> list[IPv4Address] | None:
                raise RuntimeError("backend broke")

            r.update("sb1", SandboxDNS(boom, lambda a: None, []))
            resp = parse_response(await udp_ask(port, make_query("web")) or b"")
            assert (resp.rcode, resp.answers) == (SERVFAIL, [])
            # the server lives on
            r.update("sb1", sandbox_dns(calls, []))
            resp = parse_response(await udp_ask(port, make_query("web")) or b"")
            assert resp.addresses == ["10.0.0.2"]

    run(body)


# -- forwarding -------------------------------------------------------------------------------


def test_unknown_names_are_forwarded_verbatim_over_udp(run: Run) -> None:
    async def body() -> None:
        async with Upstream() as up, resolver([up.addr]) as (_, port, _calls):
            q = make_query("example.org", TXT, qid=0xBEEF)
            raw = await udp_ask(port, q)
            assert up.seen == [("udp", q)]
            assert raw == up.reply(q)

    run(body)


def test_tcp_queries_are_forwarded_over_tcp_several_per_connection(run: Run) -> None:
    async def body() -> None:
        async with Upstream() as up, resolver([up.addr]) as (_, port, _calls):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            q1 = make_query("example.org", A, qid=1)
            resp = parse_response(await tcp_ask(reader, writer, q1))
            assert (resp.id, resp.addresses) == (1, ["9.9.9.9"])
            resp = parse_response(await tcp_ask(reader, writer, make_query("WEB", A, qid=2)))
            assert (resp.id, resp.addresses) == (2, ["10.0.0.2"])
            q3 = make_query("other.example", A, qid=3)
            assert parse_response(await tcp_ask(reader, writer, q3)).id == 3
            assert up.seen == [("tcp", q1), ("tcp", q3)]
            writer.close()

    run(body)


def test_silent_upstream_gives_servfail_after_timeout(run: Run) -> None:
    async def body() -> None:
        async with Upstream("silent") as up, resolver([up.addr], timeout=0.3) as (_, port, _):
            start = time.monotonic()
            resp = parse_response(await udp_ask(port, make_query("example.org", qid=11)) or b"")
            assert 0.25 < time.monotonic() - start < 1.5
            assert (resp.id, resp.rcode, resp.qname, resp.answers) == (
                11,
                SERVFAIL,
                "example.org",
                [],
            )
            assert not resp.flags & RA
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            resp = parse_response(await tcp_ask(reader, writer, make_query("example.org")))
            assert resp.rcode == SERVFAIL
            writer.close()

    run(body)


def test_no_upstreams_gives_servfail(run: Run) -> None:
    async def body() -> None:
        async with resolver([]) as (_, port, _calls):
            resp = parse_response(await udp_ask(port, make_query("example.org")) or b"")
            assert resp.rcode == SERVFAIL

    run(body)


@pytest.mark.parametrize("first", ["silent", "servfail", "refused", "closed"])
def test_next_upstream_is_tried_in_order(run: Run, first: str) -> None:
    async def body() -> None:
        async with (
            Upstream("silent" if first == "closed" else first) as bad,
            Upstream() as good,
            resolver([bad.addr, good.addr], timeout=0.3) as (_, port, _calls),
        ):
            if first == "closed":  # nothing listens there: ICMP unreachable / RST
                await bad.__aexit__()
            resp = parse_response(await udp_ask(port, make_query("example.org")) or b"")
            assert (resp.rcode, resp.addresses) == (NOERROR, ["9.9.9.9"])
            assert len(bad.seen) == (0 if first == "closed" else 1)
            assert len(good.seen) == 1

    run(body)


def test_only_three_upstreams_are_tried(run: Run) -> None:
    async def body() -> None:
        async with (
            Upstream("servfail") as u1,
            Upstream("servfail") as u2,
            Upstream("servfail") as u3,
            Upstream() as u4,
            resolver([u1.addr, u2.addr, u3.addr, u4.addr]) as (_, port, _calls),
        ):
            resp = parse_response(await udp_ask(port, make_query("example.org")) or b"")
            assert resp.rcode == SERVFAIL
            assert [len(u.seen) for u in (u1, u2, u3, u4)] == [1, 1, 1, 0]

    run(body)


def test_slow_upstream_does_not_block_other_queries(run: Run) -> None:
    async def body() -> None:
        async with (
            Upstream(delay=0.6) as slow,
            resolver([slow.addr], timeout=2.0) as (_, port, _calls),
        ):
            slow_udp = asyncio.create_task(udp_ask(port, make_query("example.org", qid=1)))
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for q in (make_query("x.org", qid=2), make_query("web", qid=3)):
                writer.write(len(q).to_bytes(2, "big") + q)
            await asyncio.sleep(0.1)
            start = time.monotonic()
            resp = parse_response(await udp_ask(port, make_query("web", qid=4)) or b"")
            assert resp.addresses == ["10.0.0.2"]
            # the TCP connection answers its later, local query first
            assert parse_response(await tcp_read(reader)).id == 3
            assert time.monotonic() - start < 0.3
            assert not slow_udp.done()
            assert parse_response(await tcp_read(reader)).id == 2
            assert parse_response(await slow_udp or b"").addresses == ["9.9.9.9"]
            writer.close()

    run(body)


# -- bad input --------------------------------------------------------------------------------


def test_malformed_udp_packets_never_stop_the_server(run: Run) -> None:
    async def body() -> None:
        async with Upstream() as up, resolver([up.addr]) as (_, port, _calls):
            assert await udp_ask(port, b"\x01\x02\x03", timeout=0.2) is None  # no header
            response = make_query("web")[:2] + b"\x81\x80" + make_query("web")[4:]
            assert await udp_ask(port, response, timeout=0.2) is None  # a response: dropped
            bad = make_query("web", qid=0x99)[:-3]  # truncated question
            qid, flags, counts = header_only(await udp_ask(port, bad) or b"")
            assert (qid, flags & QR, flags & 0xF, counts) == (0x99, QR, FORMERR, [0, 0, 0, 0])
            two = bytearray(make_query("web", qid=0x98))
            two[5] = 2  # QDCOUNT 2
            _, flags, _ = header_only(await udp_ask(port, bytes(two)) or b"")
            assert flags & 0xF == FORMERR
            update = bytearray(make_query("web"))
            update[2] = 0x28  # opcode 5
            _, flags, _ = header_only(await udp_ask(port, bytes(update)) or b"")
            assert flags & 0xF == NOTIMP
            assert up.seen == []
            resp = parse_response(await udp_ask(port, make_query("web")) or b"")
            assert resp.addresses == ["10.0.0.2"]

    run(body)


def test_malformed_tcp_frame_closes_the_connection(run: Run) -> None:
    async def body() -> None:
        async with resolver([]) as (_, port, _calls):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"\x00\x03abc")
            async with asyncio.timeout(2):
                assert await reader.read() == b""
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            resp = parse_response(await tcp_ask(reader, writer, make_query("web")))
            assert resp.addresses == ["10.0.0.2"]
            writer.close()

    run(body)


def test_idle_tcp_connections_are_closed(run: Run) -> None:
    async def body() -> None:
        async with resolver([]) as (r, port, _calls):
            r.tcp_read_timeout = 0.2
            r.tcp_idle_timeout = 0.3
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            start = time.monotonic()
            async with asyncio.timeout(2):
                assert await reader.read() == b""
            assert time.monotonic() - start < 1
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await tcp_ask(reader, writer, make_query("web"))
            writer.write(b"\x00")  # half a length prefix, then nothing
            start = time.monotonic()
            async with asyncio.timeout(2):
                assert await reader.read() == b""
            assert 0.25 < time.monotonic() - start < 1
            writer.close()

    run(body)


# -- lifecycle --------------------------------------------------------------------------------


def test_serve_again_replaces_the_sandbox_dns_and_update_too(run: Run) -> None:
    async def body() -> None:
        calls = Calls()
        async with Upstream() as up, resolver([], calls=calls) as (r, port, _):
            assert parse_response(await udp_ask(port, make_query("x.org")) or b"").rcode == SERVFAIL
            await r.serve("sb1", NETNS, sandbox_dns(calls, [up.addr], {"new": NAMES["web"]}))
            assert len(calls.factory) == 2  # no new sockets
            resp = parse_response(await udp_ask(port, make_query("x.org")) or b"")
            assert resp.addresses == ["9.9.9.9"]
            resp = parse_response(await udp_ask(port, make_query("new")) or b"")
            assert resp.addresses == ["10.0.0.2"]
            r.update("sb1", sandbox_dns(calls, []))
            assert parse_response(await udp_ask(port, make_query("x.org")) or b"").rcode == SERVFAIL
            r.update("unknown-sandbox", sandbox_dns(calls, []))  # ignored

    run(body)


def test_stop_closes_the_sockets(run: Run) -> None:
    async def body() -> None:
        async with Upstream("silent") as up, resolver([up.addr], timeout=5) as (r, port, _):
            pending = asyncio.create_task(udp_ask(port, make_query("x.org"), timeout=1))
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await asyncio.sleep(0.1)
            start = time.monotonic()
            await r.stop("sb1")
            assert time.monotonic() - start < 1  # in-flight forwards are dropped
            async with asyncio.timeout(2):
                assert await reader.read() == b""
            assert await pending is None
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                with socket.socket(socket.AF_INET, kind) as s:
                    # the port is free again (the closed TCP connection is in TIME_WAIT)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind(("127.0.0.1", port))
            await r.stop("sb1")
            await r.stop("never-served")
            writer.close()

    run(body)


def test_two_sandboxes_are_independent(run: Run) -> None:
    async def body() -> None:
        calls = Calls()
        async with resolver([], calls=calls) as (_, port, _):
            port2 = free_port()
            r2 = Resolver(
                socket_factory=lambda p, f, t: socket.socket(f, t),
                address="127.0.0.1",
                port=port2,
            )
            await r2.serve("a", NETNS, sandbox_dns(calls, [], {"only-a": NAMES["web"]}))
            resp = parse_response(await udp_ask(port2, make_query("only-a")) or b"")
            assert resp.addresses == ["10.0.0.2"]
            resp = parse_response(await udp_ask(port, make_query("only-a")) or b"")
            assert resp.rcode == SERVFAIL
            await r2.close()
            await r2.close()

    run(body)


def test_socket_errors_raise_system(run: Run) -> None:
    async def body() -> None:
        def refuse(path: Path, family: int, type_: int) -> socket.socket:
            raise FileNotFoundError(2, "No such file or directory", str(path))

        r = Resolver(socket_factory=refuse, address="127.0.0.1", port=free_port())
        with pytest.raises(errdefs.System, match="error in opening name server socket"):
            await r.serve("sb", NETNS, sandbox_dns(Calls(), []))

        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            opened: list[socket.socket] = []

            def plain(path: Path, family: int, type_: int) -> socket.socket:
                opened.append(socket.socket(family, type_))
                return opened[-1]

            r = Resolver(socket_factory=plain, address="127.0.0.1", port=port)
            with pytest.raises(errdefs.System, match="TCP server socket"):
                await r.serve("sb", NETNS, sandbox_dns(Calls(), []))
            assert all(s.fileno() == -1 for s in opened)  # nothing leaks
            await r.stop("sb")

    run(body)


def test_parse_upstream() -> None:
    assert parse_upstream("8.8.8.8") == ("8.8.8.8", 53)
    assert parse_upstream("10.0.0.1:5353") == ("10.0.0.1", 5353)
    assert parse_upstream("::1") == ("::1", 53)
    assert parse_upstream("[2001:db8::1]:54") == ("2001:db8::1", 54)
    assert parse_upstream("[::1]") == ("::1", 53)
    for bad in ("", "nameserver", "1.2.3.4:0", "1.2.3.4:x", "[::1", "1.2.3.4:70000"):
        with pytest.raises(ValueError):
            parse_upstream(bad)
