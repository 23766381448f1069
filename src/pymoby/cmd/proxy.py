"""The userland proxy: forwards published ports from inherited sockets to a container.

Usage: python -m pymoby.cmd.proxy --key KEY --map FD:PROTO:CONTAINER_IP:CONTAINER_PORT ...
       [--udp-timeout SECONDS]

Rule: the daemon binds every host port (TCP and SCTP listening, UDP bound with IP_PKTINFO) and
passes the sockets by fd; this program never binds a host port. TCP (and SCTP): accept, connect to
the container, copy both ways with flow control; an EOF from one side is passed on as a
half-close (shutdown of writing) and both are closed once both sides ended, at once on an error.
UDP: one socket towards the container per client address (dockerd's conntrack-like map),
dropped after --udp-timeout seconds (90, dockerd's) without traffic either way; replies go back
to the client from the address it wrote to. The socket is not connect()ed: a connected one gets
ICMP port-unreachable as a socket error, which libuv (uvloop) turns into a dead reader; so it
sends with sendto() and keeps only datagrams from the container's address.
SIGTERM/SIGINT: exit 0 at once.
Errors are logged to stderr in Go's log format ("2006/01/02 15:04:05 msg"), at most 1000 lines.

Startup matters (the first connection waits for it): import only the standard library pieces
asyncio needs and uvloop (when importable) -- nothing from pymoby.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

UDP_TIMEOUT = 90.0  # dockerd's DefaultConnTrackTimeout
UDP_BUF = 65507  # dockerd's UDPBufSize
MAX_LOG_LINES = 1000
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
_PKTINFO = struct.Struct("=I4s4s")  # struct in_pktinfo: ifindex, spec_dst, addr
_CMSG_SPACE = socket.CMSG_SPACE(_PKTINFO.size)
USAGE = (
    "usage: python -m pymoby.cmd.proxy --key KEY --map FD:PROTO:CONTAINER_IP:CONTAINER_PORT ... "
    "[--udp-timeout SECONDS]"
)

_logged = 0


def log(msg: str) -> None:
    """One line on stderr, Go's log.Printf format; quiet after MAX_LOG_LINES."""
    global _logged
    _logged += 1
    if _logged > MAX_LOG_LINES + 1:
        return
    if _logged > MAX_LOG_LINES:
        msg = "too many errors, not logging any more"
    stamp = time.strftime("%Y/%m/%d %H:%M:%S")
    try:
        sys.stderr.write(f"{stamp} {msg}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class Mapping(NamedTuple):
    """One --map: an inherited socket and the container address it forwards to."""

    fd: int
    proto: str
    ip: str
    port: int


def parse_map(spec: str) -> Mapping:
    fd, proto, ip, port = spec.split(":")
    if proto not in ("tcp", "udp", "sctp"):
        raise ValueError(f"unsupported protocol {proto}")
    ip = socket.inet_ntoa(socket.inet_pton(socket.AF_INET, ip))  # as recvfrom() spells it
    mapping = Mapping(int(fd), proto, ip, int(port))
    if mapping.fd < 0 or not 0 < mapping.port < 65536:
        raise ValueError(spec)
    return mapping


def parse_args(argv: list[str]) -> tuple[str, list[Mapping], float]:
    """(key, mappings, udp timeout); ValueError on a bad command line."""
    key, maps, timeout = "", [], UDP_TIMEOUT
    args = iter(argv)
    for arg in args:
        name, eq, value = arg.partition("=")
        if name not in ("--key", "--map", "--udp-timeout"):
            raise ValueError(f"unknown flag: {arg}")
        if not eq:
            given = next(args, None)
            if given is None:
                raise ValueError(f"flag needs an argument: {name}")
            value = given
        if name == "--key":
            key = value
        elif name == "--map":
            try:
                maps.append(parse_map(value))
            except (ValueError, OSError):
                raise ValueError(f"invalid --map: {value}") from None
        else:
            timeout = float(value)
            if not timeout > 0:
                raise ValueError(f"invalid --udp-timeout: {value}")
    if not key or not maps:
        raise ValueError("--key and at least one --map are required")
    return key, maps, timeout


# -- TCP ----------------------------------------------------------------------------------------


class _Side(asyncio.Protocol):
    """One end of a proxied connection; `peer` is the other end."""

    def __init__(self, peer: _Side | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer = peer
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if isinstance(self.peer, _Client):  # the container side: link the client to it
            self.peer.link(self)

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is None or peer.transport is None or peer.transport.is_closing():
            return False
        if peer.eof:  # both directions ended
            peer.transport.close()
            return False
        if peer.transport.can_write_eof():
            peer.transport.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.transport.is_closing():
            if exc is None:
                peer.transport.close()
            else:
                peer.transport.abort()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class _Client(_Side):
    """An accepted connection. Until the container connection is up, what the client sends
    (and its EOF) is kept, then passed on first; reading pauses when too much is kept (uvloop
    starts reading after connection_made, so pausing there is not enough)."""

    KEEP = 256 * 1024

    def __init__(self, target: tuple[str, int], tasks: set[asyncio.Task[None]]) -> None:
        super().__init__()
        self.target = target
        self.tasks = tasks
        self.kept: list[bytes] = []
        self.kept_size = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.pause_reading()  # type: ignore[attr-defined]
        task = asyncio.get_running_loop().create_task(self._connect())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def link(self, backend: _Side) -> None:
        """The container connection is made: send what was kept, then forward directly."""
        assert backend.transport is not None
        self.peer = backend
        for chunk in self.kept:
            backend.transport.write(chunk)
        self.kept = []
        if self.eof and backend.transport.can_write_eof():
            backend.transport.write_eof()

    def data_received(self, data: bytes) -> None:
        if self.peer is not None:
            super().data_received(data)
            return
        self.kept.append(data)
        self.kept_size += len(data)
        if self.kept_size > self.KEEP and self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        if self.peer is not None:
            return super().eof_received()
        self.eof = True
        return True  # passed on by link()

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        ip, port = self.target
        assert self.transport is not None
        try:
            backend, _ = await loop.create_connection(lambda: _Side(self), ip, port)
        except OSError as exc:
            log(f"Can't forward traffic to backend tcp/{ip}:{port}: {exc}")
            self.transport.close()
            return
        if self.transport.is_closing():
            backend.close()
            return
        if not self.eof:
            self.transport.resume_reading()


# -- UDP ----------------------------------------------------------------------------------------


class _Flow:
    """One client address: its socket towards the container."""

    __slots__ = ("ancillary", "client", "last", "sock")

    def __init__(self, sock: socket.socket, client: tuple[str, int], dst: bytes | None) -> None:
        self.sock = sock
        self.client = client
        self.last = time.monotonic()
        # Replies leave from the address the client wrote to (IP_PKTINFO's ipi_spec_dst).
        self.ancillary = (
            [(socket.IPPROTO_IP, IP_PKTINFO, _PKTINFO.pack(0, dst, b"\0\0\0\0"))] if dst else []
        )


class _UDPForwarder:
    def __init__(self, sock: socket.socket, target: tuple[str, int], timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.sock = sock
        self.target = target
        self.timeout = timeout
        self.flows: dict[tuple[str, int], _Flow] = {}
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        self.loop.add_reader(sock.fileno(), self._readable)

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        for flow in list(self.flows.values()):
            self._drop(flow)
        self.sock.close()

    def _readable(self) -> None:
        for _ in range(256):  # then let other sockets run
            try:
                data, anc, _flags, client = self.sock.recvmsg(UDP_BUF, _CMSG_SPACE)
            except BlockingIOError:
                return
            except OSError:
                continue  # e.g. a queued ICMP error of an earlier reply
            flow = self.flows.get(client) or self._open(client, anc)
            if flow is not None:
                self._send(flow, data)

    def _open(self, client: tuple[str, int], anc: list[tuple[int, int, bytes]]) -> _Flow | None:
        dst = None
        for level, kind, data in anc:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= _PKTINFO.size:
                dst = _PKTINFO.unpack_from(data)[2]
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind(("0.0.0.0", 0))
        except OSError as exc:
            sock.close()
            log(f"Can't proxy a datagram to udp/{self.target[0]}:{self.target[1]}: {exc}")
            return None
        flow = self.flows[client] = _Flow(sock, client, dst)
        self.loop.add_reader(sock.fileno(), self._reply, flow)
        self.loop.call_later(self.timeout, self._expire, flow)
        return flow

    def _send(self, flow: _Flow, data: bytes) -> None:
        try:
            flow.sock.sendto(data, self.target)
        except BlockingIOError:
            pass  # full: dropped, as a router would
        except OSError as exc:
            log(f"Can't proxy a datagram to udp/{self.target[0]}:{self.target[1]}: {exc}")
        flow.last = time.monotonic()

    def _reply(self, flow: _Flow) -> None:
        for _ in range(256):
            try:
                data, source = flow.sock.recvfrom(UDP_BUF)
            except BlockingIOError:
                return
            except OSError:
                self._drop(flow)
                return
            if source != self.target:
                continue  # not from the container
            flow.last = time.monotonic()
            try:
                self.sock.sendmsg([data], flow.ancillary, 0, flow.client)
            except BlockingIOError:
                pass
            except OSError:
                self._drop(flow)
                return

    def _expire(self, flow: _Flow) -> None:
        if self.flows.get(flow.client) is not flow:
            return
        idle = time.monotonic() - flow.last
        if idle >= self.timeout:
            self._drop(flow)
        else:
            self.loop.call_later(self.timeout - idle, self._expire, flow)

    def _drop(self, flow: _Flow) -> None:
        if self.flows.get(flow.client) is flow:
            del self.flows[flow.client]
        if flow.sock.fileno() >= 0:
            self.loop.remove_reader(flow.sock.fileno())
            flow.sock.close()


# -- SCTP (a byte stream, like TCP) -------------------------------------------------------------


async def _sctp_serve(listener: socket.socket, target: tuple[str, int]) -> None:
    loop = asyncio.get_running_loop()
    pairs: set[asyncio.Task[None]] = set()
    try:
        while True:
            conn, _ = await loop.sock_accept(listener)
            task = loop.create_task(_sctp_pair(conn, target))
            pairs.add(task)
            task.add_done_callback(pairs.discard)
    finally:
        for task in pairs:
            task.cancel()


async def _sctp_pair(conn: socket.socket, target: tuple[str, int]) -> None:
    loop = asyncio.get_running_loop()
    backend = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    with conn, backend:
        conn.setblocking(False)
        backend.setblocking(False)
        try:
            await loop.sock_connect(backend, target)
        except OSError as exc:
            log(f"Can't forward traffic to backend sctp/{target[0]}:{target[1]}: {exc}")
            return
        copies = [
            loop.create_task(_sctp_copy(conn, backend)),
            loop.create_task(_sctp_copy(backend, conn)),
        ]
        try:
            await asyncio.wait(copies, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in copies:
                task.cancel()
            await asyncio.gather(*copies, return_exceptions=True)  # before the sockets close


async def _sctp_copy(src: socket.socket, dst: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    while data := await loop.sock_recv(src, 65536):
        await loop.sock_sendall(dst, data)
    dst.shutdown(socket.SHUT_WR)


# -- main ---------------------------------------------------------------------------------------


def _client_factory(
    target: tuple[str, int], tasks: set[asyncio.Task[None]]
) -> Callable[[], _Client]:
    return lambda: _Client(target, tasks)


async def serve(
    maps: list[Mapping],
    udp_timeout: float = UDP_TIMEOUT,
    stop: asyncio.Future[None] | None = None,
) -> int:
    """Forward every mapping until `stop` is done (default: SIGTERM/SIGINT); 1 on a bad fd."""
    loop = asyncio.get_running_loop()
    if stop is None:
        stop = loop.create_future()
        done = stop

        def stopping() -> None:
            if not done.done():
                done.set_result(None)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping)
    closers: list[Callable[[], object]] = []
    tasks: set[asyncio.Task[None]] = set()
    try:
        for m in maps:
            target = (m.ip, m.port)
            try:
                sock = socket.socket(fileno=m.fd)
            except OSError as exc:
                log(f"fd {m.fd}: {exc}")
                return 1
            sock.setblocking(False)
            if m.proto == "tcp":
                server = await loop.create_server(
                    _client_factory(target, tasks), sock=sock, backlog=65535
                )
                closers.append(server.close)
            elif m.proto == "udp":
                closers.append(_UDPForwarder(sock, target, udp_timeout).close)
            else:
                task = loop.create_task(_sctp_serve(sock, target))
                closers.append(task.cancel)
        await stop
        return 0
    finally:
        for close in closers:
            close()


def main(argv: list[str] | None = None) -> int:
    try:
        _key, maps, udp_timeout = parse_args(sys.argv[1:] if argv is None else argv)
    except ValueError as exc:
        sys.stderr.write(f"{exc}\n{USAGE}\n")
        return 2
    try:
        import uvloop  # noqa: PLC0415 -- optional, and only the proxy pays for it
    except ImportError:
        return asyncio.run(serve(maps, udp_timeout))
    result: int = uvloop.run(serve(maps, udp_timeout))
    return result


if __name__ == "__main__":
    sys.exit(main())
