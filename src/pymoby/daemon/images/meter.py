"""A reader that counts, optionally hashes and reports progress of the bytes passing through.

Rule: what dockerd's progress.NewProgressReader does for `Loading layer` / `Importing` lines:
a progress callback at most every 512 KiB and once at the end (EOF), with `current` and the
expected `total` (0 when unknown). The hash (when asked for) covers exactly the bytes read, so
a caller that reads the stream to its end can compare it with a digest afterwards.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from pymoby.archive.compression import Reader

UPDATE_EVERY = 512 << 10

Progress = Callable[[int, int], None]  # (current, total)


class MeteredReader:
    def __init__(
        self,
        raw: Reader,
        *,
        total: int = 0,
        progress: Progress | None = None,
        algorithm: str | None = None,
    ) -> None:
        self._raw = raw
        self.total = total
        self._progress = progress
        self._hash = hashlib.new(algorithm) if algorithm else None
        self.count = 0
        self._reported = 0
        self._ended = False

    def read(self, n: int = -1, /) -> bytes:
        data = self._raw.read(n)
        if data:
            self.count += len(data)
            if self._hash is not None:
                self._hash.update(data)
            if self._progress is not None and self.count - self._reported >= UPDATE_EVERY:
                self._reported = self.count
                self._progress(self.count, self.total)
        elif not self._ended:
            self._ended = True
            if self._progress is not None and self._reported != self.count:
                self._reported = self.count
                self._progress(self.count, self.total)
        return data

    def drain(self) -> None:
        """Read what is left (so the hash covers the whole stream)."""
        while self.read(1 << 20):
            pass

    def digest(self) -> str:
        assert self._hash is not None, "MeteredReader made without an algorithm"
        return f"{self._hash.name}:{self._hash.hexdigest()}"
