"""Tar-split: rebuild a layer's exact tar stream from its extracted directory.

Rule: while a layer is extracted, every byte of its uncompressed stream that is not the content
of a regular file written into the root (headers, PAX/GNU records, padding, skipped content such
as whiteout or device data, the end-of-archive blocks, trailing bytes) is recorded verbatim as a
segment, and each file's content as (real path below the root, size). `reassemble` replays the
record, copying file content from the root, so the output is byte-identical to the input and its
sha256 is the layer's diff ID (what `docker save` and push need). Whiteout files have no content
and are never read. The real path is where the content actually went (symlinked parents already
resolved), so a later symlink in the same layer cannot redirect the read.

The idea is vbatts/tar-split's (dockerd stores `tar-split.json.gz` per layer); the format is our
own: a zstd stream of `b"pymoby-tarsplit/1\\n"` then records `S <uvarint n> <n bytes>`,
`F <uvarint n> <n bytes of path> <uvarint size>`, and a final `E`. A file whose content changed
size since extraction is data loss (`errdefs.DataLoss`); callers verify the digest of the output
when they need to (the extraction's `LayerStats.diff_id` is the expected value).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from pymoby import errdefs
from pymoby.archive.compression import (
    CHUNK,
    Compression,
    Reader,
    compressing_writer,
    decompress_stream,
)
from pymoby.archive.errors import ArchiveError, ArchiveSystemError
from pymoby.archive.rootdir import RootDir
from pymoby.archive.tarformat import decode, encode

MAGIC = b"pymoby-tarsplit/1\n"
_SEGMENT_FLUSH = 1 << 20


class TarSplitCorrupt(errdefs.DataLoss):
    """The tar-split record is unreadable, or the layer directory no longer matches it."""


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class TarSplitWriter:
    """Records a tar stream's non-content bytes and file references into `out` (zstd)."""

    def __init__(self, out: BinaryIO) -> None:
        self._w = compressing_writer(out, Compression.ZSTD)
        self._w.write(MAGIC)
        self._pending = bytearray()

    def _flush(self) -> None:
        if self._pending:
            self._w.write(b"S" + _uvarint(len(self._pending)))
            self._w.write(self._pending)
            self._pending = bytearray()

    def segment(self, data: bytes) -> None:
        """Bytes of the stream that are not file content, in stream order."""
        self._pending += data
        if len(self._pending) >= _SEGMENT_FLUSH:
            self._flush()

    def file(self, path: str, size: int) -> None:
        """The next `size` bytes of the stream are the content of `path` below the root."""
        self._flush()
        raw = encode(path)
        self._w.write(b"F" + _uvarint(len(raw)) + raw + _uvarint(size))

    def close(self) -> None:
        """Finish the record (the output stream stays open)."""
        self._flush()
        self._w.write(b"E")
        self._w.close()


class _RecordReader:
    def __init__(self, raw: Reader) -> None:
        self._raw = raw
        self._buf = b""

    def exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            more = self._raw.read(max(CHUNK, n - len(self._buf)))
            if not more:
                raise TarSplitCorrupt("tar-split record is truncated")
            self._buf += more
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def uvarint(self) -> int:
        value = shift = 0
        while True:
            byte = self.exact(1)[0]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7
            if shift > 63:
                raise TarSplitCorrupt("tar-split record has a bad number")


def _copy_file(root: RootDir, path: str, size: int, out: BinaryIO) -> None:
    try:
        fd = root.open_regular(path)
    except (OSError, ArchiveError) as err:
        raise TarSplitCorrupt(f"tar-split: cannot open {path!r} in the layer: {err}") from None
    try:
        left = size
        while left:
            chunk = os.read(fd, min(left, CHUNK))
            if not chunk:
                raise TarSplitCorrupt(f"tar-split: {path!r} is shorter than {size} bytes")
            out.write(chunk)
            left -= len(chunk)
        if os.read(fd, 1):
            raise TarSplitCorrupt(f"tar-split: {path!r} is longer than {size} bytes")
    except OSError as err:
        raise ArchiveSystemError(f"tar-split: reading {path!r}: {err.strerror}") from None
    finally:
        os.close(fd)


def reassemble(tarsplit: BinaryIO, root: Path, out: BinaryIO) -> int:
    """Write the original tar stream of the layer extracted in `root`; return its size."""
    try:
        reader = _RecordReader(decompress_stream(tarsplit))
        if reader.exact(len(MAGIC)) != MAGIC:
            raise TarSplitCorrupt("not a pymoby tar-split record")
    except ArchiveError as err:
        raise TarSplitCorrupt(f"tar-split record is unreadable: {err}") from None
    total = 0
    with RootDir(root) as rootdir:
        while True:
            try:
                tag = reader.exact(1)
                if tag == b"E":
                    return total
                if tag == b"S":
                    left = reader.uvarint()
                    total += left
                    while left:
                        chunk = reader.exact(min(left, CHUNK))
                        out.write(chunk)
                        left -= len(chunk)
                elif tag == b"F":
                    path = decode(reader.exact(reader.uvarint()))
                    size = reader.uvarint()
                    _copy_file(rootdir, path, size, out)
                    total += size
                else:
                    raise TarSplitCorrupt(f"tar-split record has an unknown tag {tag!r}")
            except ArchiveError as err:
                raise TarSplitCorrupt(f"tar-split record is unreadable: {err}") from None
