"""The userland proxy, daemon side: bind the host ports, start, stop and adopt the proxies.

Rule: the daemon binds every published host port itself (TCP: bound and listening, UDP: bound
with IP_PKTINFO, SCTP: listening), so a port another host process holds fails at once with
dockerd's text (`failed to bind host port 0.0.0.0:8080/tcp: address already in use`, an
errdefs.System) and nothing is left behind. Then ONE proxy process per container key
(`python -m pymoby.cmd.proxy --key KEY --map FD:proto:ip:port ...`) inherits the sockets, in its
own session so it outlives the daemon (live restore); connections and datagrams queue in the
sockets until it runs, so `start` does not wait for it, and the daemon closes its copies.
`stop` signals a pid only after /proc/<pid>/cmdline shows it is our proxy for that key.

As dockerd does, `allocate_and_bind` (allocator + bind, retrying another port up to 10 times
when an ephemeral/range port is busy on the host) binds with a drop-everything socket filter so
nothing is accepted before the DNAT rules exist; `start` detaches it before the hand-over, and
with --userland-proxy=false `hold` keeps the filtered sockets to reserve the ports.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import itertools
import logging
import os
import re
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from pymoby import errdefs
from pymoby.daemon.networks.portmap import (
    PortAllocator,
    PortBinding,
    PortRequest,
    binding_string,
    groups,
)
from pymoby.kernel.procattr import go_strerror
from pymoby.runtime.procs import wait_readable

log = logging.getLogger("pymoby.networks")

PROXY_MODULE = "pymoby.cmd.proxy"
ALLOCATE_ATTEMPTS = 10  # dockerd's maxAllocateAttempts
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
SO_DETACH_FILTER = getattr(socket, "SO_DETACH_FILTER", 27)
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# One cBPF instruction, BPF_RET|BPF_K 0: "drop the packet".
_DROP_ALL = array.array("B", struct.pack("=HBBI", 0x06, 0, 0, 0))


def go_errno(exc: OSError) -> str:
    """Go's syscall.Errno text of an OSError."""
    return go_strerror(exc.errno) if exc.errno else str(exc)


def _attach_drop_filter(sock: socket.socket) -> None:
    prog = struct.pack("@HP", 1, _DROP_ALL.buffer_info()[0])
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)


def detach_filter(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # ENOENT: no filter attached
        sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)


def bind_socket(b: PortBinding, *, drop: bool = False) -> socket.socket:
    """A socket bound (and listening, for tcp/sctp) on b's host address; errdefs.System."""
    where = f"{b.host_ip}:{b.host_port}/{b.proto}"
    kind, proto = {
        "tcp": (socket.SOCK_STREAM, socket.IPPROTO_TCP),
        "udp": (socket.SOCK_DGRAM, socket.IPPROTO_UDP),
        "sctp": (socket.SOCK_STREAM, socket.IPPROTO_SCTP),
    }.get(b.proto, (0, 0))
    if not kind:
        raise errdefs.System(f"protocol {b.proto} not supported")
    try:
        sock = socket.socket(socket.AF_INET, kind, proto)
    except OSError as exc:
        raise errdefs.System(f"failed to create socket for {where}: {go_errno(exc)}") from None
    try:
        if b.proto == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if drop:
            _attach_drop_filter(sock)
        if b.proto == "udp":
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        try:
            sock.bind((b.host_ip, b.host_port))
        except OSError as exc:
            raise errdefs.System(f"failed to bind host port {where}: {go_errno(exc)}") from None
        if kind == socket.SOCK_STREAM:
            try:
                sock.listen(65535)  # the kernel caps it to net.core.somaxconn
            except OSError as exc:
                raise errdefs.System(
                    f"failed to listen on {b.proto} socket: {go_errno(exc)}"
                ) from None
    except BaseException:
        sock.close()
        raise
    return sock


def bind_sockets(bindings: Sequence[PortBinding], *, drop: bool = False) -> list[socket.socket]:
    """`bind_socket` for each binding; all or nothing."""
    socks: list[socket.socket] = []
    try:
        for b in bindings:
            socks.append(bind_socket(b, drop=drop))
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def allocate_and_bind(
    allocator: PortAllocator, reqs: Sequence[PortRequest], *, drop: bool = True
) -> tuple[list[PortBinding], list[socket.socket]]:
    """Allocate and bind every request (dockerd's OSAllocator); all or nothing.

    A specific port fails at once; an ephemeral or range port busy on the host is released and
    another one tried, up to ALLOCATE_ATTEMPTS times (then the last error is raised).
    """
    bindings: list[PortBinding] = []
    socks: list[socket.socket] = []
    try:
        for group in groups(reqs):
            single = group[0].host_port_start and group[0].host_port_start == group[0].host_port_end
            for attempt in range(ALLOCATE_ATTEMPTS):
                got = allocator.allocate_group(group)
                try:
                    socks += bind_sockets(got, drop=drop)
                except errdefs.System as exc:
                    for b in got:
                        allocator.release(b)
                    if single or attempt == ALLOCATE_ATTEMPTS - 1:
                        raise
                    log.warning("Failed to allocate port: %s (attempt %d)", exc, attempt + 1)
                    continue
                bindings += got
                break
    except BaseException:
        for s in socks:
            s.close()
        for b in bindings:
            allocator.release(b)
        raise
    return bindings, socks


def _read_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]]


def is_proxy_for(pid: int, key: str) -> bool:
    """Whether /proc/<pid>/cmdline is our proxy's with `--key key` (a zombie's is empty)."""
    argv = _read_cmdline(pid)
    if PROXY_MODULE not in argv:
        return False
    return any(a == "--key" and v == key for a, v in itertools.pairwise(argv))


class ProxyManager:
    """Userland proxy processes, one per container key (see the rule)."""

    def __init__(
        self, *, python: str = sys.executable, run_dir: Path, stop_timeout: float = 5.0
    ) -> None:
        self.python = python
        self.run_dir = run_dir
        self.stop_timeout = stop_timeout
        self._children: dict[int, subprocess.Popen[bytes]] = {}  # started by this daemon
        self._stopping: set[int] = set()
        self._held: dict[str, list[socket.socket]] = {}

    def log_path(self, key: str) -> Path:
        """The proxy's stderr (its "Can't forward traffic ..." lines)."""
        return self.run_dir / f"proxy-{key}.log"

    async def start(
        self,
        key: str,
        container_ip: str,
        bindings: Sequence[PortBinding],
        sockets: Sequence[socket.socket] | None = None,
    ) -> int:
        """Spawn the proxy of `key` for `bindings` and return its pid (0 when there are none).

        `sockets` are the bound sockets of `bindings` (from `allocate_and_bind`); they are
        always closed here. Without them the sockets are bound here.
        """
        if sockets is None:
            _check_key(key)
            sockets = bind_sockets(bindings) if bindings else []
        try:
            _check_key(key)
            if not bindings:
                return 0
            if len(sockets) != len(bindings):
                raise ValueError("one socket per binding")
            argv = [self.python, "-m", PROXY_MODULE, "--key", key]
            for b, s in zip(bindings, sockets, strict=True):
                detach_filter(s)
                argv += ["--map", f"{s.fileno()}:{b.proto}:{container_ip}:{b.container_port}"]
            fds = [s.fileno() for s in sockets]
            try:
                proc = await asyncio.to_thread(self._spawn, key, argv, fds)
            except OSError as exc:
                raise errdefs.System(
                    f"failed to start userland proxy for port mapping "
                    f"{binding_string(bindings[0], container_ip)}: {exc}"
                ) from None
        finally:
            for s in sockets:
                s.close()
        self._children[proc.pid] = proc
        self._watch(proc)
        return proc.pid

    def _spawn(self, key: str, argv: list[str], fds: list[int]) -> subprocess.Popen[bytes]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path(key), "ab") as err:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                pass_fds=fds,
                start_new_session=True,
                cwd="/",
            )

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        """Reap our child when it exits (pidfd), logging an exit nobody asked for."""
        try:
            pidfd = os.pidfd_open(proc.pid)
        except OSError:
            return
        loop = asyncio.get_running_loop()

        def exited() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            proc.poll()
            self._children.pop(proc.pid, None)
            if proc.pid not in self._stopping:
                log.info(
                    "Userland proxy exited early (pid %d, status %s)", proc.pid, proc.returncode
                )
            self._stopping.discard(proc.pid)

        loop.add_reader(pidfd, exited)

    def alive(self, key: str, pid: int) -> bool:
        """At daemon restart: is `pid` still our proxy for `key`."""
        return pid > 0 and is_proxy_for(pid, key)

    async def stop(self, key: str, pid: int) -> None:
        """SIGTERM our proxy for `key` (if `pid` is it), wait up to stop_timeout, then SIGKILL."""
        if pid <= 0:
            return
        try:
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                return
            try:
                if not is_proxy_for(pid, key):  # gone (zombie), or the pid was reused
                    return
                self._stopping.add(pid)
                signal.pidfd_send_signal(pidfd, signal.SIGTERM)
                if not await wait_readable(pidfd, self.stop_timeout):
                    log.warning("userland proxy %d ignored SIGTERM, killing it", pid)
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                    await wait_readable(pidfd, self.stop_timeout)
            except ProcessLookupError:
                pass
            finally:
                os.close(pidfd)
        finally:
            proc = self._children.get(pid)
            if proc is not None and proc.poll() is not None:
                self._children.pop(pid, None)
            with contextlib.suppress(OSError):
                self.log_path(key).unlink()

    # -- --userland-proxy=false: the daemon holds the (filtered) sockets ---------------------

    def hold(self, key: str, sockets: Sequence[socket.socket]) -> None:
        """Keep `sockets` open for `key` to reserve their ports (no proxy)."""
        self.release(key)
        self._held[key] = list(sockets)

    def release(self, key: str) -> None:
        for s in self._held.pop(key, []):
            s.close()


def _check_key(key: str) -> None:
    if not _KEY.fullmatch(key):
        raise errdefs.InvalidParameter(f"invalid proxy key: {key!r}")
