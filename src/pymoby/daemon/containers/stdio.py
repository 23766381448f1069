"""Detach keys and the two bounded queues that carry a container's stdio inside the daemon.

Rules:
- Detach keys are moby/term's ToBytes: a comma-separated list of `ctrl-<x>` (x one of `@`,
  `a`..`z`, `[`, `\\`, `]`, `^`, `_`), `DEL`, or one character each; anything else is
  `Unknown character: '<key>'`. The default is ctrl-p,ctrl-q. They only apply to a TTY.
- `EscapeScanner` removes the sequence from stdin and reports it. Bytes that could start the
  sequence are held back until the next bytes decide; at the end of stdin they are passed on.
  (moby/term only matches single-byte reads, as typed on a terminal; matching across any
  chunking finds every sequence it finds, and a pasted one too.)
- `Outbox` (output to one client) and `StdinQueue` (input to the container) hold at most about
  `limit` bytes; a producer waits for room, so a slow consumer slows its producer instead of
  growing memory, as dockerd's bytes pipes do. Closing the consumer side makes `put` return at
  once (a client that left never blocks the others).
"""

from __future__ import annotations

import asyncio
from collections import deque

DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p, ctrl-q
QUEUE_LIMIT = 1 << 20

_CTRL = "@abcdefghijklmnopqrstuvwxyz[\\]^_"


def parse_detach_keys(keys: str) -> bytes:
    """moby/term ToBytes; ValueError("Unknown character: '<key>'") for a bad key."""
    out = bytearray()
    for key in keys.split(","):
        raw = key.encode("utf-8", "surrogateescape")
        if len(raw) == 1:  # Go counts bytes: one byte is that byte
            out += raw
            continue
        if key.startswith("ctrl-") and len(key) == 6 and key[5] in _CTRL:
            out.append(_CTRL.index(key[5]))
        elif key == "DEL":
            out.append(127)
        else:
            raise ValueError(f"Unknown character: '{key}'")
    return bytes(out)


class EscapeScanner:
    """Finds the detach sequence in a byte stream (see the module docstring)."""

    def __init__(self, keys: bytes = DEFAULT_DETACH_KEYS) -> None:
        self.keys = keys or DEFAULT_DETACH_KEYS
        self._held = bytearray()

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to pass on, whether the sequence was completed); after a detach the bytes
        that followed the sequence are dropped."""
        if not self._held and self.keys[0] not in data:
            return data, False
        out = bytearray()
        keys = self.keys
        for byte in data:
            self._held.append(byte)
            while self._held and not keys.startswith(self._held):
                out.append(self._held.pop(0))
            if len(self._held) == len(keys):
                self._held.clear()
                return bytes(out), True
        return bytes(out), False

    def flush(self) -> bytes:
        """What was held back when stdin ends."""
        held, self._held = bytes(self._held), bytearray()
        return held


class Outbox:
    """Output for one client: (stream, bytes) items, then the end."""

    def __init__(self, limit: int = QUEUE_LIMIT) -> None:
        self._items: deque[tuple[int, bytes]] = deque()
        self._size = 0
        self._limit = limit
        self._ended = False
        self._closed = False
        self._readable = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    async def put(self, stream: int, data: bytes) -> None:
        while self._size >= self._limit and not self._closed:
            self._room.clear()
            await self._room.wait()
        if self._closed or self._ended:
            return
        self._items.append((stream, data))
        self._size += len(data)
        self._readable.set()

    def end(self) -> None:
        """No more output (the run ended); items already queued are still delivered."""
        self._ended = True
        self._readable.set()

    def close(self) -> None:
        """The consumer is gone: drop everything, never block a producer again."""
        self._closed = True
        self._items.clear()
        self._size = 0
        self._room.set()
        self._readable.set()

    @property
    def ended(self) -> bool:
        return self._ended

    async def get(self) -> tuple[int, bytes] | None:
        """The next item; None at the end."""
        while not self._items:
            if self._ended or self._closed:
                return None
            self._readable.clear()
            await self._readable.wait()
        item = self._items.popleft()
        self._size -= len(item[1])
        if self._size < self._limit:
            self._room.set()
        return item


class StdinQueue:
    """Input for the container: byte chunks, then maybe the close of stdin (None)."""

    def __init__(self, limit: int = QUEUE_LIMIT) -> None:
        self._items: deque[bytes | None] = deque()
        self._size = 0
        self._limit = limit
        self._closing = False
        self._readable = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    async def put(self, data: bytes) -> None:
        while self._size >= self._limit:
            self._room.clear()
            await self._room.wait()
        if self._closing or not data:
            return
        self._items.append(data)
        self._size += len(data)
        self._readable.set()

    def close_stdin(self) -> None:
        """Close the container's stdin once what is queued was written."""
        if not self._closing:
            self._closing = True
            self._items.append(None)
            self._readable.set()

    def reset(self) -> None:
        """A new run gets a new stdin: forget what was queued and whether it was closed."""
        self._items.clear()
        self._size = 0
        self._closing = False
        self._room.set()

    @property
    def pending(self) -> bool:
        return bool(self._items)

    async def get(self) -> bytes | None:
        """The next chunk, or None: close stdin now."""
        while not self._items:
            self._readable.clear()
            await self._readable.wait()
        item = self._items.popleft()
        if item is not None:
            self._size -= len(item)
            if self._size < self._limit:
                self._room.set()
        return item
