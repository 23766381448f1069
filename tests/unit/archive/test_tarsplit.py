"""Tar-split: extract, reassemble from the layer directory, get the identical bytes back."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest
from archive_testlib import FixtureLayer, build_tar, member

from pymoby import errdefs
from pymoby.archive import Compression, apply_layer, decompress_stream, reassemble
from pymoby.archive.tarsplit import TarSplitCorrupt

REG, DIR, SYM, LNK = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE


def roundtrip(data: bytes, root: Path, whiteouts: str = "delete", **kw: object) -> bytes:
    record = io.BytesIO()
    stats = apply_layer(
        io.BytesIO(data),
        root,
        whiteouts=whiteouts,  # type: ignore[arg-type]
        tarsplit_out=record,
        **kw,  # type: ignore[arg-type]
    )
    record.seek(0)
    out = io.BytesIO()
    size = reassemble(record, root, out)
    assert size == len(out.getvalue()) == stats.tar_size
    assert stats.diff_id == "sha256:" + hashlib.sha256(out.getvalue()).hexdigest()
    return out.getvalue()


@pytest.mark.parametrize("whiteouts", ["delete", "overlay"])
def test_fixture_layers_reassemble_to_their_diff_id(
    fixture_layers: list[FixtureLayer], tmp_path: Path, whiteouts: str
) -> None:
    kinds = set()
    for i, layer in enumerate(fixture_layers):
        root = tmp_path / f"{whiteouts}-{i}"
        root.mkdir()
        record = io.BytesIO()
        stats = apply_layer(
            io.BytesIO(layer.blob),
            root,
            whiteouts=whiteouts,  # type: ignore[arg-type]
            tarsplit_out=record,
        )
        kinds.add(stats.compression)
        assert stats.diff_id == layer.diff_id, layer.label
        record.seek(0)
        digest = hashlib.sha256()
        out = io.BytesIO()
        reassemble(record, root, out)
        digest.update(out.getvalue())
        assert "sha256:" + digest.hexdigest() == layer.diff_id, layer.label
        # the record is small next to the layer: only headers, not content
        assert len(record.getvalue()) < stats.tar_size // 100 + 1024
    assert kinds == {Compression.NONE, Compression.GZIP, Compression.ZSTD}


def test_fixture_whiteout_layer_in_both_modes(
    fixture_layers: list[FixtureLayer], tmp_path: Path
) -> None:
    base, top = fixture_layers[0], fixture_layers[1]
    assert top.diff_id.startswith("sha256:e8766f51")
    apply_layer(io.BytesIO(base.blob), tmp_path, whiteouts="delete")
    assert (tmp_path / "bin/vi").exists()
    apply_layer(io.BytesIO(top.blob), tmp_path, whiteouts="delete")
    assert not os.path.lexists(tmp_path / "bin/vi")
    assert (tmp_path / "data/file.txt").read_bytes() == b"fixture\n"
    upper = tmp_path / "upper"
    upper.mkdir()
    apply_layer(io.BytesIO(top.blob), upper, whiteouts="overlay")
    assert os.lstat(upper / "bin/vi").st_rdev == 0 and not (upper / "bin/.wh.vi").exists()


def test_headers_records_padding_and_trailer_are_kept(tmp_path: Path) -> None:
    long = "d/" + "x" * 150 + "/" + "y" * 120
    gnu = build_tar(
        member(long, data=b"gnu long name"),
        member("l", SYM, linkname="t" * 200),
        fmt=tarfile.GNU_FORMAT,
    )
    pax = build_tar(
        member("d", DIR),
        member("d/ünï", data=b"pax name", pax_headers={"comment": "kept"}),
        member(long + "2", data=b"z" * 5000),
        member("h", LNK, linkname=long + "2"),
        member("d/.wh.gone", data=b"whiteout content is not in the root"),
        member("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3),
        member("empty", data=b""),
    )
    for i, data in enumerate((gnu, pax, pax + b"trailing garbage", pax[:-1024])):
        for whiteouts in ("delete", "overlay"):
            root = tmp_path / f"{i}{whiteouts}"
            root.mkdir()
            assert roundtrip(data, root, whiteouts, allow_devices=False) == data


def test_content_written_through_a_symlinked_parent_is_found(tmp_path: Path) -> None:
    data = build_tar(
        member("usr/lib", DIR),
        member("lib", SYM, linkname="/usr/lib"),
        member("lib/libc.so", data=b"libc"),
    )
    assert roundtrip(data, tmp_path) == data
    assert (tmp_path / "usr/lib/libc.so").read_bytes() == b"libc"


def test_compressed_layers_reassemble_to_the_uncompressed_stream(tmp_path: Path) -> None:
    data = build_tar(member("a", data=os.urandom(70_000)), member("b", data=b"b"))
    for kind in ("gzip", "zstd"):
        import gzip

        import zstandard

        blob = gzip.compress(data) if kind == "gzip" else zstandard.compress(data)
        root = tmp_path / kind
        root.mkdir()
        record = io.BytesIO()
        apply_layer(io.BytesIO(blob), root, whiteouts="delete", tarsplit_out=record)
        record.seek(0)
        out = io.BytesIO()
        reassemble(record, root, out)
        assert out.getvalue() == data


def test_record_is_zstd(tmp_path: Path) -> None:
    record = io.BytesIO()
    apply_layer(
        io.BytesIO(build_tar(member("a", data=b"1"))),
        tmp_path,
        whiteouts="delete",
        tarsplit_out=record,
    )
    assert decompress_stream(io.BytesIO(record.getvalue())).compression is Compression.ZSTD


def test_changed_layer_directory_is_data_loss(tmp_path: Path) -> None:
    data = build_tar(member("a", data=b"12345"), member("b", data=b"x"))
    record = io.BytesIO()
    apply_layer(io.BytesIO(data), tmp_path, whiteouts="delete", tarsplit_out=record)
    for change, message in (
        (lambda: (tmp_path / "a").write_bytes(b"123"), "shorter than 5 bytes"),
        (lambda: (tmp_path / "a").write_bytes(b"1234567"), "longer than 5 bytes"),
        ((tmp_path / "a").unlink, "cannot open 'a'"),
    ):
        change()
        record.seek(0)
        with pytest.raises(TarSplitCorrupt, match=message) as info:
            reassemble(record, tmp_path, io.BytesIO())
        assert isinstance(info.value, errdefs.DataLoss)


def test_corrupt_record_is_data_loss(tmp_path: Path) -> None:
    for blob in (b"", b"not a record", b"\x28\xb5\x2f\xfd" + b"\x00" * 10):
        with pytest.raises(TarSplitCorrupt):
            reassemble(io.BytesIO(blob), tmp_path, io.BytesIO())
    record = io.BytesIO()
    apply_layer(
        io.BytesIO(build_tar(member("a", data=b"1"))),
        tmp_path,
        whiteouts="delete",
        tarsplit_out=record,
    )
    truncated = decompress_stream(io.BytesIO(record.getvalue())).read()[:-1]
    import zstandard

    with pytest.raises(TarSplitCorrupt, match="truncated"):
        reassemble(io.BytesIO(zstandard.compress(truncated)), tmp_path, io.BytesIO())
