"""Compression: detection by magic bytes, bounded streaming reads, errors, writers."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import struct

import pytest
import zstandard

from pymoby.archive import Compression, CompressionError, compressing_writer, decompress_stream
from pymoby.archive.compression import detect

DATA = os.urandom(50_000) + b"\x00" * 300_000 + b"tail"


class Trickle(io.RawIOBase):
    """A source that returns at most `step` bytes per read, like a socket."""

    def __init__(self, data: bytes, step: int = 7) -> None:
        self._data = data
        self._step = step

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        take = self._step if n < 0 else min(n, self._step)
        out, self._data = self._data[:take], self._data[take:]
        return out


def read_all(stream: io.RawIOBase | io.BytesIO, n: int = 65536) -> tuple[Compression, bytes]:
    d = decompress_stream(stream)
    parts = []
    while chunk := d.read(n):
        assert len(chunk) <= n
        parts.append(chunk)
    return d.compression, b"".join(parts)


COMPRESSORS = {
    Compression.GZIP: gzip.compress,
    Compression.BZIP2: bz2.compress,
    Compression.XZ: lzma.compress,
    Compression.ZSTD: zstandard.compress,
}


def test_detect() -> None:
    assert detect(b"\x1f\x8b\x08\x00") is Compression.GZIP
    assert detect(b"BZh91AY") is Compression.BZIP2
    assert detect(b"\xfd7zXZ\x00\x00") is Compression.XZ
    assert detect(b"\x28\xb5\x2f\xfd\x00") is Compression.ZSTD
    assert detect(struct.pack("<II", 0x184D2A5A, 0)) is Compression.ZSTD  # skippable frame
    assert detect(b"\x1f\x8b\x07") is Compression.NONE  # not deflate
    assert detect(b"bin/\x00\x00") is Compression.NONE
    assert detect(b"") is Compression.NONE


@pytest.mark.parametrize("kind", list(COMPRESSORS))
def test_roundtrip_with_small_source_reads(kind: Compression) -> None:
    blob = COMPRESSORS[kind](DATA)
    assert read_all(io.BytesIO(blob)) == (kind, DATA)
    assert read_all(Trickle(blob, 1000), 4096) == (kind, DATA)


def test_uncompressed_and_empty_pass_through() -> None:
    assert read_all(Trickle(DATA, 301)) == (Compression.NONE, DATA)
    assert read_all(io.BytesIO(b"")) == (Compression.NONE, b"")
    assert read_all(io.BytesIO(b"abc")) == (Compression.NONE, b"abc")


@pytest.mark.parametrize("kind", list(COMPRESSORS))
def test_concatenated_streams(kind: Compression) -> None:
    blob = COMPRESSORS[kind](b"first ") + COMPRESSORS[kind](b"second")
    assert read_all(Trickle(blob, 5)) == (kind, b"first second")


def test_zstd_skippable_frames() -> None:
    skip = struct.pack("<II", 0x184D2A50, 4) + b"meta"
    blob = skip + zstandard.compress(b"one") + skip + zstandard.compress(b"two")
    assert read_all(io.BytesIO(blob)) == (Compression.ZSTD, b"onetwo")


@pytest.mark.parametrize("kind", list(COMPRESSORS))
def test_truncated_streams_fail(kind: Compression) -> None:
    blob = COMPRESSORS[kind](os.urandom(200_000))
    for cut in (len(blob) // 2, len(blob) - 1):
        with pytest.raises(CompressionError):
            read_all(io.BytesIO(blob[:cut]))


@pytest.mark.parametrize("kind", list(COMPRESSORS))
def test_garbage_after_the_end_fails_but_zero_padding_is_fine(kind: Compression) -> None:
    blob = COMPRESSORS[kind](b"data")
    with pytest.raises(CompressionError):
        read_all(io.BytesIO(blob + b"garbage"))
    if kind is not Compression.ZSTD:
        assert read_all(io.BytesIO(blob + bytes(1000)))[1] == b"data"


def test_corrupt_data_fails() -> None:
    blob = bytearray(gzip.compress(os.urandom(10_000)))
    blob[100] ^= 0xFF
    with pytest.raises(CompressionError, match="gzip"):
        read_all(io.BytesIO(bytes(blob)))
    bad = b"\x28\xb5\x2f\xfd" + os.urandom(100)
    with pytest.raises(CompressionError, match="zstd"):
        read_all(io.BytesIO(bad))


@pytest.mark.parametrize("kind", list(COMPRESSORS))
def test_bombs_cost_no_memory(kind: Compression) -> None:
    """200 MB of zeros compress to little; each read still returns at most n bytes."""
    if kind is Compression.ZSTD:
        cctx = zstandard.ZstdCompressor()
        blob = cctx.compress(bytes(200 << 20))
    else:
        blob = COMPRESSORS[kind](bytes(20 << 20))
    d = decompress_stream(io.BytesIO(blob))
    for _ in range(50):
        assert 0 < len(d.read(4096)) <= 4096


def test_gzip_writer_is_deterministic_and_standard() -> None:
    outs = []
    for _ in range(2):
        buf = io.BytesIO()
        with compressing_writer(buf, Compression.GZIP) as w:
            w.write(DATA[:1000])
            w.write(memoryview(DATA[1000:]))
        outs.append(buf.getvalue())
    assert outs[0] == outs[1]
    assert outs[0][:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # mtime 0, OS unknown
    assert gzip.decompress(outs[0]) == DATA


def test_zstd_and_none_writers() -> None:
    buf = io.BytesIO()
    w = compressing_writer(buf, Compression.ZSTD, level=1)
    w.write(DATA)
    w.close()
    w.close()
    assert zstandard.ZstdDecompressor().stream_reader(io.BytesIO(buf.getvalue())).read() == DATA
    buf = io.BytesIO()
    with compressing_writer(buf, Compression.NONE) as w:
        w.write(b"plain")
    assert buf.getvalue() == b"plain"
    with pytest.raises(CompressionError, match=r"Unsupported compression format tar\.xz"):
        compressing_writer(io.BytesIO(), Compression.XZ)
