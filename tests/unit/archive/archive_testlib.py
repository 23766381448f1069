"""Archive test helpers: tars built with Python's tarfile, a guarded outside directory, and the
layers of the image fixtures made by real tools (docker save, skopeo).

Imported by the archive tests as `archive_testlib` (conftest.py puts this directory on sys.path,
as tests/integration does).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

# ../shared/fixtures beside the checkout (as in CI); PYMOBY_FIXTURES overrides.
FIXTURES = Path(
    os.environ.get(
        "PYMOBY_FIXTURES", str(Path(__file__).resolve().parents[4] / "shared" / "fixtures")
    )
)

Member = tuple[tarfile.TarInfo, bytes | None]


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **attrs: object) -> Member:
    """One tar member: `kind` is a tarfile type; `attrs` set TarInfo fields (linkname, mode...)."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mtime = 1_700_000_000
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    for key, value in attrs.items():
        setattr(info, key, value)
    if kind in (tarfile.REGTYPE, tarfile.AREGTYPE):
        info.size = len(data)
        return info, data
    return info, None


def build_tar(*members: Member, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def snapshot(path: Path) -> dict[str, tuple[int, int, int, bytes | str | None]]:
    """Everything below `path`: mode, uid, mtime and content/target of each entry."""
    state: dict[str, tuple[int, int, int, bytes | str | None]] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            content: bytes | str | None = None
            if os.path.islink(full):
                content = os.readlink(full)
            elif os.path.isfile(full):
                content = Path(full).read_bytes()
            state[os.path.relpath(full, path)] = (st.st_mode, st.st_uid, st.st_mtime_ns, content)
    return state


@dataclasses.dataclass
class Guard:
    """An extraction root next to an `outside` directory that nothing may change."""

    root: Path
    outside: Path
    before: dict[str, tuple[int, int, int, bytes | str | None]]

    def untouched(self) -> None:
        assert snapshot(self.outside) == self.before


@dataclasses.dataclass(frozen=True)
class FixtureLayer:
    label: str
    blob: bytes  # as stored in the image archive (uncompressed, gzip or zstd)
    diff_id: str


def _legacy_layers() -> Iterator[FixtureLayer]:
    with tarfile.open(FIXTURES / "busybox-docker-save.tar") as tar:

        def read(name: str) -> bytes:
            f = tar.extractfile(name)
            assert f is not None
            return f.read()

        seen: set[str] = set()
        for image in json.loads(read("manifest.json")):
            diff_ids = json.loads(read(image["Config"]))["rootfs"]["diff_ids"]
            for path, diff_id in zip(image["Layers"], diff_ids, strict=True):
                if diff_id in seen:  # the base image's layer.tar is a symlink to the same layer
                    continue
                seen.add(diff_id)
                yield FixtureLayer(f"docker-save:{path[:12]}", read(path), diff_id)


def _oci_layers(archive: str) -> Iterator[FixtureLayer]:
    with tarfile.open(FIXTURES / archive) as tar:

        def blob(digest: str) -> bytes:
            f = tar.extractfile("blobs/sha256/" + digest.removeprefix("sha256:"))
            assert f is not None
            return f.read()

        index = json.loads(blob_path(tar, "index.json"))
        for desc in index["manifests"]:
            manifest = json.loads(blob(desc["digest"]))
            diff_ids = json.loads(blob(manifest["config"]["digest"]))["rootfs"]["diff_ids"]
            for layer, diff_id in zip(manifest["layers"], diff_ids, strict=True):
                label = f"{archive}:{layer['digest'][7:19]}"
                yield FixtureLayer(label, blob(layer["digest"]), diff_id)


def blob_path(tar: tarfile.TarFile, name: str) -> bytes:
    f = tar.extractfile(name)
    assert f is not None
    return f.read()


def all_fixture_layers() -> list[FixtureLayer]:
    layers = list(_legacy_layers())
    layers += _oci_layers("busybox-oci-gzip.tar")
    layers += _oci_layers("busybox-oci-zstd.tar")
    return layers
