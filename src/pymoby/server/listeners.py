"""API listeners: unix sockets (0660, group docker), TCP (with or without TLS), systemd fds.

Rule: every listener serves the same app through `HttpConnection`; TCP with a TLS context goes
through the MemoryBIO adapter (tls.py). A stale unix socket file is replaced; a path held by a
live listener is not (binding fails with a message naming it).
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import socket
import ssl
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pymoby import errdefs
from pymoby.server.http import App, ConnectionTracker, HttpConnection
from pymoby.server.tls import TLSProtocol

log = logging.getLogger("pymoby.server")


@dataclass(frozen=True, slots=True)
class Listen:
    """One `-H` address: scheme `unix`, `tcp` or `fd`; address is a path, host:port or fd."""

    scheme: str
    address: str


def _factory(
    app: App, tracker: ConnectionTracker, tls: ssl.SSLContext | None
) -> Callable[[], asyncio.Protocol]:
    if tls is None:
        return lambda: HttpConnection(app, tracker)
    return lambda: TLSProtocol(tls, HttpConnection(app, tracker))


def _socket_in_use(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _clear_unix_path(path: str) -> None:
    p = Path(path)
    if p.exists() or p.is_symlink():
        if not stat.S_ISSOCK(p.lstat().st_mode):
            raise errdefs.InvalidParameter(f"can't create unix socket {path}: is not a socket")
        if _socket_in_use(path):
            raise errdefs.Conflict(f"can't create unix socket {path}: address already in use")
        p.unlink()
    p.parent.mkdir(parents=True, exist_ok=True)


def _set_socket_owner(path: str, group: str) -> None:
    gid = 0
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            log.warning("could not change group %s to %s: group %s not found", path, group, group)
    os.chown(path, 0, gid)
    os.chmod(path, 0o660)


async def _listen_unix(
    path: str, factory: Callable[[], asyncio.Protocol], group: str
) -> asyncio.Server:
    _clear_unix_path(path)
    server = await asyncio.get_running_loop().create_unix_server(factory, path=path)
    _set_socket_owner(path, group)
    return server


def _split_hostport(address: str) -> tuple[str | None, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise errdefs.InvalidParameter(f"invalid TCP address {address!r}")
    host = host.strip("[]")
    return (host or None), int(port)


def _activation_fds() -> list[int]:
    """File descriptors handed over by systemd socket activation (LISTEN_FDS)."""
    if os.environ.get("LISTEN_PID", str(os.getpid())) != str(os.getpid()):
        return []
    count = int(os.environ.get("LISTEN_FDS", "0") or 0)
    return list(range(3, 3 + count))


async def start(
    addresses: list[Listen],
    app: App,
    tracker: ConnectionTracker,
    *,
    tls: ssl.SSLContext | None = None,
    group: str = "docker",
) -> list[asyncio.Server]:
    """Bind every address; on any failure close what was bound and raise."""
    loop = asyncio.get_running_loop()
    servers: list[asyncio.Server] = []
    try:
        for where in addresses:
            if where.scheme == "unix":
                servers.append(
                    await _listen_unix(where.address, _factory(app, tracker, None), group)
                )
            elif where.scheme == "tcp":
                host, port = _split_hostport(where.address)
                servers.append(
                    await loop.create_server(
                        _factory(app, tracker, tls), host, port, reuse_address=True
                    )
                )
            elif where.scheme == "fd":
                fds = _activation_fds()
                if where.address:
                    fds = [int(where.address)]
                if not fds:
                    raise errdefs.InvalidParameter("no sockets found via socket activation")
                for fd in fds:
                    sock = socket.socket(fileno=fd)
                    if sock.family == socket.AF_UNIX:
                        servers.append(
                            await loop.create_unix_server(_factory(app, tracker, None), sock=sock)
                        )
                    else:
                        servers.append(
                            await loop.create_server(_factory(app, tracker, tls), sock=sock)
                        )
            else:
                raise errdefs.InvalidParameter(f"invalid protocol {where.scheme!r}")
            log.info("API listen on %s", where.address)
    except OSError as exc:
        await stop(servers)
        raise errdefs.System(f"failed to listen: {exc}") from exc
    except Exception:
        await stop(servers)
        raise
    return servers


async def stop(servers: list[asyncio.Server]) -> None:
    """Stop accepting; connections already open are the tracker's to finish."""
    for server in servers:
        sockname = server.sockets[0].getsockname() if server.sockets else None
        server.close()
        if isinstance(sockname, str) and sockname:
            with contextlib.suppress(OSError):
                os.unlink(sockname)
