"""Streaming tar reader that accounts for every byte of the uncompressed stream.

Rule: every byte read from the stream is hashed (sha256, the layer's diff ID) and is either
content of a regular file that the caller consumes (`copy_content`) or is handed to the `meta`
callback: header blocks, PAX and GNU long-name records, padding, content the caller skipped,
the end-of-archive blocks and anything after them up to the end of the stream (`finish`). That
split is what tar-split needs to rebuild the stream byte for byte. Nothing is ever seeked; memory
is bounded by one read chunk plus one special record (<= 1 MiB).

End of archive is Go's: EOF before a header, or an all-zero block followed by EOF or by a
second all-zero block; an all-zero block followed by anything else is an invalid header.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

from pymoby.archive import tarformat as tf
from pymoby.archive.compression import CHUNK, Reader
from pymoby.archive.errors import TarFormatError


class Source:
    """Buffered view of the uncompressed stream; hashes and counts everything it reads."""

    def __init__(self, raw: Reader) -> None:
        self._raw = raw
        self._buf = memoryview(b"")
        self._sha = hashlib.sha256()
        self._eof = False
        self.total = 0

    def read(self, n: int) -> memoryview:
        """Up to `n` bytes (empty at the end of the stream), without copying."""
        if not self._buf:
            if self._eof:
                return self._buf
            data = self._raw.read(CHUNK)
            if not data:
                self._eof = True
                return memoryview(b"")
            self._sha.update(data)
            self.total += len(data)
            self._buf = memoryview(data)
        out = self._buf[:n]
        self._buf = self._buf[n:]
        return out

    def read_exact(self, n: int) -> bytes:
        """`n` bytes, or fewer at the end of the stream."""
        parts: list[memoryview] = []
        need = n
        while need:
            chunk = self.read(need)
            if not chunk:
                break
            parts.append(chunk)
            need -= len(chunk)
        return b"".join(parts)

    @property
    def consumed(self) -> int:
        """Bytes handed out so far (the offset of the next byte in the stream)."""
        return self.total - len(self._buf)

    def digest(self) -> str:
        return "sha256:" + self._sha.hexdigest()


def _noop(_: bytes) -> None:
    return None


class TarReader:
    """Iterate the entries of an uncompressed tar stream (see the module rule)."""

    def __init__(self, raw: Reader, meta: Callable[[bytes], None] | None = None) -> None:
        self.source = Source(raw)
        self._meta = meta or _noop
        self._remaining = 0  # content bytes of the current entry not yet consumed
        self._pad = 0  # padding after the current entry's content
        self._done = False
        self._last = "(start of archive)"

    def _fail(self, problem: str) -> TarFormatError:
        return TarFormatError(
            f"{problem} (after entry {self._last!r}, offset {self.source.consumed})"
        )

    def _skip(self, n: int) -> None:
        while n:
            chunk = self.source.read(min(n, CHUNK))
            if not chunk:
                raise self._fail("unexpected EOF in tar content")
            self._meta(bytes(chunk))
            n -= len(chunk)

    def _block(self) -> bytes | None:
        block = self.source.read_exact(tf.BLOCK)
        if not block:
            return None
        if len(block) < tf.BLOCK:
            raise self._fail("unexpected EOF in tar header")
        self._meta(block)
        return block

    def _special(self, hdr: tf.TarHeader) -> bytes:
        if hdr.size > tf.MAX_SPECIAL_SIZE:
            raise self._fail(
                f"archive/tar: {hdr.typeflag!r} record of {hdr.size} bytes is too large"
            )
        data = self.source.read_exact(hdr.size)
        if len(data) < hdr.size:
            raise self._fail("unexpected EOF in tar header record")
        self._meta(data)
        self._skip(-hdr.size % tf.BLOCK)
        return data

    def next(self) -> tf.TarHeader | None:
        """The next entry, skipping what is left of the current one; None at the end."""
        if self._done:
            return None
        self._skip(self._remaining + self._pad)
        self._remaining = self._pad = 0
        pax: dict[str, bytes] | None = None
        long_name: str | None = None
        long_link: str | None = None
        while True:
            block = self._block()
            if block is None:
                if pax is not None or long_name is not None or long_link is not None:
                    raise self._fail("unexpected EOF after an extended header")
                self._done = True
                return None
            if block == tf.ZERO_BLOCK:
                second = self._block()
                if second is not None and second != tf.ZERO_BLOCK:
                    raise self._fail("archive/tar: invalid tar header")
                self._done = True
                return None
            try:
                hdr = tf.parse_block(block)
            except TarFormatError as err:
                raise self._fail(str(err)) from None
            kind = hdr.typeflag
            if kind == tf.PAX_LOCAL:
                pax = tf.parse_pax(self._special(hdr))
                continue
            if kind == tf.GNU_LONGNAME:
                long_name = tf.decode(self._special(hdr).split(b"\x00", 1)[0])
                continue
            if kind == tf.GNU_LONGLINK:
                long_link = tf.decode(self._special(hdr).split(b"\x00", 1)[0])
                continue
            if kind == tf.PAX_GLOBAL:
                self._special(hdr)
                hdr.size = hdr.data_size = 0
                self._last = hdr.name
                return hdr
            if long_name is not None:
                hdr.name = long_name
            if long_link is not None:
                hdr.linkname = long_link
            if pax is not None:
                try:
                    tf.apply_pax(hdr, pax)
                except TarFormatError as err:
                    raise self._fail(str(err)) from None
            if kind == tf.AREG:
                hdr.typeflag = tf.DIR if hdr.name.endswith("/") else tf.REG
            if hdr.typeflag == tf.GNU_SPARSE:
                raise self._fail(f"archive/tar: sparse file {hdr.name!r} is not supported")
            hdr.data_size = 0 if hdr.typeflag in tf.HEADER_ONLY else hdr.size
            self._remaining = hdr.data_size
            self._pad = -hdr.data_size % tf.BLOCK
            self._last = hdr.name
            return hdr

    def copy_content(self, fd: int, *, record: bool = False) -> None:
        """Write the current entry's content to `fd`; reported to `meta` only with `record`."""
        while self._remaining:
            chunk = self.source.read(min(self._remaining, CHUNK))
            if not chunk:
                raise self._fail("unexpected EOF in tar content")
            self._remaining -= len(chunk)
            if record:
                self._meta(bytes(chunk))
            while chunk:
                written = os.write(fd, chunk)
                chunk = chunk[written:]

    def finish(self) -> None:
        """After the last entry: consume the rest of the stream (trailing bytes go to meta)."""
        while self.next() is not None:
            pass
        while chunk := self.source.read(CHUNK):
            self._meta(bytes(chunk))
