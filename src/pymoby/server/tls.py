"""TLS done by hand through `ssl.MemoryBIO` + `SSLObject`, so half-close survives.

Rule: asyncio's own SSL transport drops half-close; here the peer's close_notify becomes the
inner protocol's `eof_received()` while our side may keep writing, and our `write_eof()` sends
close_notify. The inner HTTP protocol sees an ordinary transport and never knows about TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from pathlib import Path
from typing import Any, cast

log = logging.getLogger("pymoby.server")


def server_context(cert: Path, key: Path, ca: Path | None, *, verify: bool) -> ssl.SSLContext:
    """dockerd's TLS: the server's pair; with --tlsverify, client certificates signed by `ca`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    if verify:
        ctx.verify_mode = ssl.CERT_REQUIRED
        if ca is not None:
            ctx.load_verify_locations(str(ca))
    return ctx


class _TLSTransport(asyncio.Transport):
    """What the inner protocol writes to: plaintext in, TLS records out."""

    def __init__(self, outer: TLSProtocol) -> None:
        super().__init__()
        self._outer = outer

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._outer.send_plain(bytes(data))

    def write_eof(self) -> None:
        self._outer.send_close_notify()

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        self._outer.close()

    def abort(self) -> None:
        self._outer.abort()

    def is_closing(self) -> bool:
        return self._outer.is_closing()

    def pause_reading(self) -> None:
        self._outer.pause_reading()

    def resume_reading(self) -> None:
        self._outer.resume_reading()

    def is_reading(self) -> bool:
        return self._outer.is_reading()

    def get_write_buffer_size(self) -> int:
        return self._outer.get_write_buffer_size()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._outer.get_extra_info(name, default)


class TLSProtocol(asyncio.Protocol):
    """Wraps an inner protocol; owns the real transport and the SSL state machine."""

    def __init__(self, ctx: ssl.SSLContext, inner: asyncio.Protocol) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = ctx.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._inner = inner
        self._transport: asyncio.Transport | None = None
        self._handshaken = False
        self._pending: list[bytes] = []  # plaintext written before the handshake finished
        self._closing = False
        self._reading = True
        self._sent_close_notify = False
        self._peer_closed = False

    # -- real transport side --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._incoming.write(data)
        if not self._handshaken:
            try:
                self._ssl.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                return
            except ssl.SSLError as exc:
                log.debug("TLS handshake failed: %s", exc)
                self._flush()
                self.abort()
                return
            self._handshaken = True
            self._flush()
            self._inner.connection_made(_TLSTransport(self))
            for data_out in self._pending:
                self.send_plain(data_out)
            self._pending.clear()
        self._read_plain()

    def _read_plain(self) -> None:
        while not self._peer_closed:
            try:
                plain = self._ssl.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                plain = b""
            except ssl.SSLError as exc:
                log.debug("TLS read failed: %s", exc)
                self.abort()
                return
            if not plain:  # close_notify: the peer half-closed
                self._peer_closed = True
                self._flush()
                if not self._inner.eof_received():
                    self.close()
                return
            self._inner.data_received(plain)
        self._flush()

    def eof_received(self) -> bool:
        # TCP FIN without close_notify: treat as EOF all the same.
        if self._handshaken and not self._peer_closed:
            self._peer_closed = True
            return bool(self._inner.eof_received())
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._handshaken:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    # -- inner transport side -------------------------------------------------------------
    def send_plain(self, data: bytes) -> None:
        if not self._handshaken:
            self._pending.append(data)
            return
        if self._sent_close_notify or self._transport is None:
            return
        view = memoryview(data)
        while view:
            n = self._ssl.write(view)
            view = view[n:]
        self._flush()

    def send_close_notify(self) -> None:
        if self._sent_close_notify or not self._handshaken:
            return
        self._sent_close_notify = True
        with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLError):
            self._ssl.unwrap()
        self._flush()

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.abort()

    def is_closing(self) -> bool:
        return self._closing or self._transport is None or self._transport.is_closing()

    def pause_reading(self) -> None:
        self._reading = False
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._reading = True
        if self._transport is not None:
            self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._reading

    def get_write_buffer_size(self) -> int:
        return 0 if self._transport is None else self._transport.get_write_buffer_size()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._ssl
        if name == "peercert":
            return self._ssl.getpeercert()
        return default if self._transport is None else self._transport.get_extra_info(name, default)
