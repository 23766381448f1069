"""The embedded DNS server: Docker's 127.0.0.11 resolver inside each container's netns.

Rule: one UDP socket and one TCP listener per sandbox, bound to `address:port` *inside* the
sandbox's network namespace (sockets are made by the injected factory, in a thread); everything
else -- answering, forwarding, timeouts -- runs on the daemon's event loop, and forwarded queries
leave from the daemon's own (host) namespace. Names the sandbox's `SandboxDNS.lookup` knows are
answered here, as libnetwork/resolver.go does:

- A: every address, shuffled, TTL 600; a known name with no address -> NOERROR, no answers.
- AAAA and MX of a known name -> NOERROR with no answers (so clients do not wait on upstreams).
- PTR for `d.c.b.a.in-addr.arpa` that `reverse` knows -> the name (made fully qualified).
- Anything else goes to the first `MAX_UPSTREAMS` upstream servers in order, UDP for UDP
  queries and TCP for TCP ones, each with `timeout`; an upstream that times out, fails to
  connect or answers SERVFAIL/REFUSED is skipped. No usable answer -> SERVFAIL.
  More than `max_concurrent` forwards in flight for `timeout` -> REFUSED.

The lookup callbacks are called on the event loop: they must be quick, in-memory reads. A
callback that raises yields SERVFAIL. A bad packet never stops a server (see dnswire's rule:
drop, FORMERR or NOTIMP; a TCP frame shorter than a header closes its connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address
from pathlib import Path
from typing import cast

from pymoby import errdefs
from pymoby.daemon.networks import dnswire
from pymoby.daemon.networks.dnswire import QType, RCode
from pymoby.kernel import netns as knetns

log = logging.getLogger("pymoby.dns")

Lookup = Callable[[str], list[IPv4Address] | None]
ReverseLookup = Callable[[IPv4Address], str | None]
SocketFactory = Callable[[Path, int, int], socket.socket]

RESP_TTL = 600
DNS_PORT = 53
MAX_UPSTREAMS = 3


@dataclass(frozen=True, slots=True)
class SandboxDNS:
    """What one sandbox's resolver answers from, and where it forwards the rest."""

    lookup: Lookup
    reverse: ReverseLookup
    upstreams: Sequence[str]


def parse_upstream(server: str) -> tuple[str, int]:
    """'1.2.3.4', '1.2.3.4:5353', '::1' or '[::1]:5353' -> (ip, port); ValueError otherwise."""
    text = server.strip()
    host, port = text, DNS_PORT
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"invalid DNS server address {server!r}")
        if rest:
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"invalid DNS server port in {server!r}")
    return str(ip_address(host)), port


def _parse_upstreams(servers: Sequence[str]) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for server in servers:
        try:
            out.append(parse_upstream(server))
        except ValueError:
            log.warning("[resolver] ignoring invalid external DNS server %r", server)
    return out


class _Sandbox:
    """One sandbox's listeners, its current SandboxDNS and its in-flight work."""

    def __init__(self, key: str, netns: Path, dns: SandboxDNS, max_concurrent: int) -> None:
        self.key = key
        self.netns = netns
        self.dns = dns
        self.upstreams = _parse_upstreams(dns.upstreams)
        self.forwards = asyncio.Semaphore(max_concurrent)
        self.udp: asyncio.DatagramTransport | None = None
        self.udp_closed: asyncio.Future[None] | None = None
        self.tcp: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()  # forwards in flight
        self.handlers: set[asyncio.Task[None]] = set()  # TCP connections
        self.conns: set[asyncio.StreamWriter] = set()

    def set_dns(self, dns: SandboxDNS) -> None:
        self.upstreams = _parse_upstreams(dns.upstreams)
        self.dns = dns

    def spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task


class _UDPServer(asyncio.DatagramProtocol):
    def __init__(self, resolver: Resolver, sandbox: _Sandbox) -> None:
        self.resolver = resolver
        self.sandbox = sandbox
        self.transport: asyncio.DatagramTransport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sandbox.udp_closed = self.closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            answer, query = self.resolver._local_reply(self.sandbox, data, tcp=False)
        except Exception:
            log.exception("[resolver] failed to handle a UDP query")
            return
        if answer is not None:
            self._send(answer, addr)
        elif query is not None:
            self.sandbox.spawn(self._forward(query, data, addr))

    async def _forward(
        self, query: dnswire.Query, data: bytes, addr: tuple[str | int, ...]
    ) -> None:
        try:
            answer = await self.resolver._forward(self.sandbox, query, data, tcp=False)
        except Exception:
            log.exception("[resolver] failed to forward a UDP query")
            return
        self._send(answer, addr)

    def _send(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("[resolver] UDP socket error: %s", exc)


class _UpstreamUDP(asyncio.DatagramProtocol):
    """Waits for the reply with our query's ID on a connected UDP socket."""

    def __init__(self, query_id: int, reply: asyncio.Future[bytes | None]) -> None:
        self.query_id = query_id
        self.reply = reply

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if self.reply.done() or len(data) < dnswire.HEADER_SIZE:
            return
        header = dnswire.parse_header(data)
        if header.id == self.query_id and header.is_response:
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable
        if not self.reply.done():
            self.reply.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.reply.done():
            self.reply.set_result(None)


class Resolver:
    """Embedded DNS servers, one per sandbox key."""

    max_upstreams = MAX_UPSTREAMS
    max_concurrent = 1024  # forwards in flight per sandbox
    tcp_read_timeout = 2.0  # for a connection's first query (miekg/dns's read timeout)
    tcp_idle_timeout = 8.0  # between later queries
    tcp_max_queries = 128  # per connection

    def __init__(
        self,
        *,
        socket_factory: SocketFactory | None = None,
        address: str = "127.0.0.11",
        port: int = DNS_PORT,
        timeout: float = 4.0,
    ) -> None:
        self._factory = socket_factory
        self.address = address
        self.port = port
        self.timeout = timeout
        self._family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self._sandboxes: dict[str, _Sandbox] = {}
        self._lock = asyncio.Lock()

    async def serve(self, key: str, netns: Path, dns: SandboxDNS) -> None:
        """Listen on address:port (UDP and TCP) in `netns` for sandbox `key`.

        Serving a key again only replaces its SandboxDNS (or moves it, if `netns` changed).
        """
        async with self._lock:
            current = self._sandboxes.get(key)
            if current is not None:
                if current.netns == netns:
                    current.set_dns(dns)
                    return
                del self._sandboxes[key]
                await self._stop(current)
            sandbox = _Sandbox(key, netns, dns, self.max_concurrent)
            udp_sock, tcp_sock = await asyncio.to_thread(self._open_sockets, netns)
            loop = asyncio.get_running_loop()
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _UDPServer(self, sandbox), sock=udp_sock
                )
                sandbox.udp = transport
                sandbox.tcp = await asyncio.start_server(
                    lambda r, w: self._serve_tcp(sandbox, r, w), sock=tcp_sock
                )
            except OSError as e:
                if sandbox.udp is None:
                    udp_sock.close()
                if sandbox.tcp is None:
                    tcp_sock.close()
                await self._stop(sandbox)
                raise errdefs.System(f"error starting DNS server in {netns}: {e}") from e
            self._sandboxes[key] = sandbox

    def update(self, key: str, dns: SandboxDNS) -> None:
        """Replace what sandbox `key` answers from; a key not being served is ignored."""
        sandbox = self._sandboxes.get(key)
        if sandbox is None:
            log.debug("[resolver] update for sandbox %s, which has no DNS server", key)
            return
        sandbox.set_dns(dns)

    async def stop(self, key: str) -> None:
        """Close sandbox `key`'s sockets and drop its in-flight queries."""
        async with self._lock:
            sandbox = self._sandboxes.pop(key, None)
            if sandbox is not None:
                await self._stop(sandbox)

    async def close(self) -> None:
        async with self._lock:
            sandboxes = list(self._sandboxes.values())
            self._sandboxes.clear()
            for sandbox in sandboxes:
                await self._stop(sandbox)

    # -- sockets -------------------------------------------------------------------------

    def _open_sockets(self, netns: Path) -> tuple[socket.socket, socket.socket]:
        """Runs in a thread: both sockets, made in `netns` and bound there."""
        factory = self._factory or knetns.socket_in
        where = f"{self.address}:{self.port} in {netns}"
        try:
            udp = factory(netns, self._family, socket.SOCK_DGRAM)
        except OSError as e:
            raise errdefs.System(f"error in opening name server socket {where}: {e}") from e
        try:
            udp.bind((self.address, self.port))
            udp.setblocking(False)
        except OSError as e:
            udp.close()
            raise errdefs.System(f"error in opening name server socket {where}: {e}") from e
        try:
            tcp = factory(netns, self._family, socket.SOCK_STREAM)
        except BaseException as e:
            udp.close()
            if isinstance(e, OSError):
                msg = f"error in opening name TCP server socket {where}: {e}"
                raise errdefs.System(msg) from e
            raise
        try:
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((self.address, self.port))
            tcp.listen(128)
            tcp.setblocking(False)
        except OSError as e:
            udp.close()
            tcp.close()
            raise errdefs.System(f"error in opening name TCP server socket {where}: {e}") from e
        return udp, tcp

    async def _stop(self, sandbox: _Sandbox) -> None:
        if sandbox.udp is not None:
            sandbox.udp.close()
        if sandbox.tcp is not None:
            sandbox.tcp.close()
        for writer in list(sandbox.conns):
            writer.close()
        tasks = list(sandbox.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Closed connections end their handlers; cancelling those makes asyncio's streams log.
        handlers = list(sandbox.handlers)
        if handlers:
            _, stuck = await asyncio.wait(handlers, timeout=1.0)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)
        if sandbox.tcp is not None:
            with contextlib.suppress(OSError):
                await sandbox.tcp.wait_closed()
        if sandbox.udp is not None and sandbox.udp_closed is not None:
            # The socket is really closed (port free again) once connection_lost ran.
            await asyncio.wait([sandbox.udp_closed], timeout=1.0)

    # -- TCP -----------------------------------------------------------------------------

    async def _serve_tcp(
        self, sandbox: _Sandbox, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            sandbox.handlers.add(cast("asyncio.Task[None]", task))
        sandbox.conns.add(writer)
        pending: set[asyncio.Task[None]] = set()
        try:
            timeout = self.tcp_read_timeout
            for _ in range(self.tcp_max_queries):
                try:
                    async with asyncio.timeout(timeout):
                        size = int.from_bytes(await reader.readexactly(2), "big")
                        data = await reader.readexactly(size)
                except (TimeoutError, asyncio.IncompleteReadError, OSError):
                    break
                if len(data) < dnswire.HEADER_SIZE:
                    break
                timeout = self.tcp_idle_timeout
                answer, query = self._local_reply(sandbox, data, tcp=True)
                if answer is not None:
                    await self._write_tcp(writer, answer)
                elif query is not None:
                    fwd = sandbox.spawn(self._forward_tcp_reply(sandbox, query, data, writer))
                    pending.add(fwd)
                    fwd.add_done_callback(pending.discard)
            if pending:
                await asyncio.wait(pending)
        except Exception:
            log.exception("[resolver] TCP connection failed")
        finally:
            sandbox.conns.discard(writer)
            writer.close()
            if task is not None:
                sandbox.handlers.discard(cast("asyncio.Task[None]", task))

    async def _forward_tcp_reply(
        self, sandbox: _Sandbox, query: dnswire.Query, data: bytes, writer: asyncio.StreamWriter
    ) -> None:
        try:
            answer = await self._forward(sandbox, query, data, tcp=True)
            await self._write_tcp(writer, answer)
        except Exception:
            log.exception("[resolver] failed to forward a TCP query")

    @staticmethod
    async def _write_tcp(writer: asyncio.StreamWriter, data: bytes) -> None:
        if writer.is_closing():
            return
        writer.write(len(data).to_bytes(2, "big") + data)
        with contextlib.suppress(OSError):
            await writer.drain()

    # -- answering -----------------------------------------------------------------------

    def _local_reply(
        self, sandbox: _Sandbox, data: bytes, *, tcp: bool
    ) -> tuple[bytes | None, dnswire.Query | None]:
        """(answer, None) if answered here, (None, query) to forward, (None, None) to drop."""
        try:
            query = dnswire.parse_query(data)
        except dnswire.FormatError as e:
            if e.header is None:
                return None, None
            return dnswire.error_reply(e.header, e.rcode), None
        udp_size = max(dnswire.MIN_UDP_SIZE, query.udp_size or 0)
        max_size = dnswire.MAX_MSG_SIZE if tcp else udp_size
        try:
            answers = self._answers(sandbox.dns, query)
        except Exception:
            log.exception("[resolver] failed to handle query: %s (%d)", query.name, query.qtype)
            return dnswire.reply(query, RCode.SERVFAIL, ra=False), None
        if answers is None:
            return None, query
        return dnswire.reply(query, RCode.NOERROR, answers, max_size=max_size), None

    @staticmethod
    def _answers(dns: SandboxDNS, query: dnswire.Query) -> list[bytes] | None:
        """Answer records for a name we know; None if the query is not ours."""
        name = query.name.lower()
        if not name:
            return None
        if query.qtype == QType.A:
            addresses = dns.lookup(name)
            if addresses is None:
                return None
            shuffled = list(addresses)
            random.shuffle(shuffled)
            return [dnswire.a_record(a, RESP_TTL) for a in shuffled if isinstance(a, IPv4Address)]
        if query.qtype in (QType.AAAA, QType.MX):
            return None if dns.lookup(name) is None else []
        if query.qtype == QType.PTR:
            address = dnswire.ptr_address(name)
            host = dns.reverse(address) if address is not None else None
            return [dnswire.ptr_record(host, RESP_TTL)] if host else None
        return None

    # -- forwarding ----------------------------------------------------------------------

    async def _forward(
        self, sandbox: _Sandbox, query: dnswire.Query, data: bytes, *, tcp: bool
    ) -> bytes:
        """The first usable upstream answer, verbatim; SERVFAIL (or REFUSED) otherwise."""
        for host, port in sandbox.upstreams[: self.max_upstreams]:
            try:
                async with asyncio.timeout(self.timeout):
                    await sandbox.forwards.acquire()
            except TimeoutError:
                log.error("[resolver] more than %d concurrent queries", self.max_concurrent)
                return dnswire.reply(query, RCode.REFUSED, ra=False)
            try:
                if tcp:
                    answer = await self._exchange_tcp(data, query.header.id, host, port)
                else:
                    answer = await self._exchange_udp(data, query.header.id, host, port)
            finally:
                sandbox.forwards.release()
            if answer is None:
                continue
            rcode = dnswire.parse_header(answer).rcode
            if rcode in (RCode.SERVFAIL, RCode.REFUSED):
                log.debug("[resolver] external DNS %s:%d returned rcode %d", host, port, rcode)
                continue
            return answer
        return dnswire.reply(query, RCode.SERVFAIL, ra=False)

    async def _exchange_udp(self, data: bytes, query_id: int, host: str, port: int) -> bytes | None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect((host, port))  # UDP connect: no traffic, filters the replies' source
        except OSError as e:
            sock.close()
            log.warning("[resolver] connect to external DNS %s:%d failed: %s", host, port, e)
            return None
        reply: asyncio.Future[bytes | None] = loop.create_future()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UpstreamUDP(query_id, reply), sock=sock
            )
        except OSError as e:
            sock.close()
            log.warning("[resolver] connect to external DNS %s:%d failed: %s", host, port, e)
            return None
        try:
            transport.sendto(data)
            async with asyncio.timeout(self.timeout):
                answer = await reply
        except (TimeoutError, OSError) as e:
            log.warning("[resolver] failed to query external DNS %s:%d: %r", host, port, e)
            return None
        finally:
            transport.close()
        if answer is None:
            log.warning("[resolver] failed to query external DNS %s:%d", host, port)
        return answer

    async def _exchange_tcp(self, data: bytes, query_id: int, host: str, port: int) -> bytes | None:
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(len(data).to_bytes(2, "big") + data)
                await writer.drain()
                while True:
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    answer = await reader.readexactly(size)
                    if len(answer) < dnswire.HEADER_SIZE:
                        return None
                    header = dnswire.parse_header(answer)
                    if header.id == query_id and header.is_response:
                        return answer
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as e:
            log.warning("[resolver] failed to query external DNS tcp:%s:%d: %r", host, port, e)
            return None
        finally:
            if writer is not None:
                writer.close()
