"""The outer archive: spooling, in-archive symlink resolution, layout detection and checks."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from images_testlib import Img, TarBuilder, docker_save, layer_tar, oci_layout, sha256

from pymoby import errdefs
from pymoby.api.types.images import Platform
from pymoby.daemon.images.formats import read_plan
from pymoby.daemon.images.spool import InvalidArchive, Spool

L1 = layer_tar({"a": b"1"})
L2 = layer_tar({"b": b"2"})


def spool(tmp_path: Path, data: bytes) -> Spool:
    staging = tmp_path / "staging"
    staging.mkdir(exist_ok=True)
    return Spool.read(io.BytesIO(data), staging)


def test_spool_files_are_numbered_and_names_only_indexed(tmp_path: Path) -> None:
    tb = TarBuilder()
    tb.file("dir/one", b"1")
    tb.file("/abs/two", b"2")
    s = spool(tmp_path, tb.bytes())
    assert sorted(p.name for p in (tmp_path / "staging").iterdir()) == ["1", "2"]
    assert s.read_document("dir/one") == b"1"
    assert s.read_document("abs/two") == b"2"
    assert s.lookup("dir") is None and s.lookup("nothing") is None


def test_symlinks_resolve_inside_the_archive(tmp_path: Path) -> None:
    tb = TarBuilder()
    tb.file("real/layer.tar", b"L")
    tb.symlink("a/layer.tar", "../real/layer.tar")
    tb.symlink("b", "/real")
    tb.symlink("up", "../../../../real/layer.tar")
    tb.symlink("loop", "loop")
    s = spool(tmp_path, tb.bytes())
    assert s.read_document("a/layer.tar") == b"L"
    assert s.read_document("b/layer.tar") == b"L"
    assert s.read_document("up") == b"L"  # `..` never climbs above the archive root
    with pytest.raises(InvalidArchive, match="too many links"):
        s.lookup("loop")


def test_breakout_names_are_refused(tmp_path: Path) -> None:
    tb = TarBuilder()
    tb.file("a/../../x", b"x")
    with pytest.raises(InvalidArchive, match=r"entry 'a/../../x' is outside of the archive"):
        spool(tmp_path, tb.bytes())


def test_hard_links_share_the_spooled_file(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("x")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"X"))
        link = tarfile.TarInfo("y")
        link.type = tarfile.LNKTYPE
        link.linkname = "x"
        tar.addfile(link)
        bad = tarfile.TarInfo("z")
        bad.type = tarfile.LNKTYPE
        bad.linkname = "nope"
        tar.addfile(bad)
    with pytest.raises(InvalidArchive, match="hard link 'z' to missing file 'nope'"):
        spool(tmp_path, buf.getvalue())


def test_truncated_tar_is_an_archive_error(tmp_path: Path) -> None:
    tb = TarBuilder()
    tb.file("x", bytes(5000))
    with pytest.raises(errdefs.InvalidParameter, match="unexpected EOF"):
        spool(tmp_path, tb.bytes()[:2000])


def test_docker_manifest_keys_are_case_insensitive(tmp_path: Path) -> None:
    img = Img([L1], tags=["me/a:1"])
    tb = TarBuilder()
    tb.file("l.tar", L1)
    tb.file("c.json", img.config)
    tb.file(
        "manifest.json",
        json.dumps([{"config": "c.json", "LAYERS": ["l.tar"], "repotags": ["me/a:1"]}]).encode(),
    )
    plan = read_plan(spool(tmp_path, tb.bytes()), None)
    assert plan.kind == "docker"
    (image,) = plan.images
    assert image.image_id == img.id and [str(t) for t in image.tags] == ["docker.io/me/a:1"]
    assert image.layers[0].diff_id == sha256(L1)


def test_legacy_config_name_must_match_its_digest(tmp_path: Path) -> None:
    img = Img([L1])
    data = docker_save([img]).replace(img.config, img.config.replace(b'"sh"', b'"xx"'))
    with pytest.raises(InvalidArchive, match="does not match its digest"):
        read_plan(spool(tmp_path, data), None)


@pytest.mark.parametrize(
    "tag,message",
    [("me/a", 'invalid tag "me/a"'), ("Me/A:1", "must be lowercase")],
)
def test_repo_tags_must_be_name_and_tag(tmp_path: Path, tag: str, message: str) -> None:
    data = docker_save([Img([L1], tags=[tag])])
    with pytest.raises(errdefs.InvalidParameter, match=message):
        read_plan(spool(tmp_path, data), None)


def test_windows_images_are_refused(tmp_path: Path) -> None:
    from images_testlib import config

    img = Img([L1], config_bytes=config([L1], os_name="windows"))
    with pytest.raises(errdefs.InvalidParameter, match="cannot load windows image on linux"):
        read_plan(spool(tmp_path, docker_save([img])), None)


def test_platform_skips_other_images(tmp_path: Path) -> None:
    from images_testlib import config

    arm = Img([L1], config_bytes=config([L1], arch="arm64"))
    amd = Img([L2])
    plan = read_plan(
        spool(tmp_path, docker_save([arm, amd])), Platform(os="linux", architecture="arm64")
    )
    assert [i.image_id for i in plan.images] == [arm.id]


def test_oci_nested_index_picks_the_platform(tmp_path: Path) -> None:
    from images_testlib import config

    amd = Img([L1])
    arm = Img([L2], config_bytes=config([L2], arch="arm64"))
    data = oci_layout([(amd, {}), (arm, {})])
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            files[m.name] = tar.extractfile(m).read()  # type: ignore[union-attr]
    index = json.loads(files["index.json"])
    for desc, arch in zip(index["manifests"], ("amd64", "arm64"), strict=True):
        desc["platform"] = {"os": "linux", "architecture": arch}
    nested = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": index["manifests"],
        }
    ).encode()
    files["blobs/sha256/" + sha256(nested)[7:]] = nested
    files["index.json"] = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.index.v1+json",
                    "digest": sha256(nested),
                    "size": len(nested),
                    "annotations": {"io.containerd.image.name": "docker.io/library/multi:1"},
                }
            ],
        }
    ).encode()
    tb = TarBuilder()
    for name, content in files.items():
        tb.file(name, content)
    plan = read_plan(spool(tmp_path, tb.bytes()), None)
    (image,) = plan.images
    assert image.image_id == amd.id and [str(t) for t in image.tags] == [
        "docker.io/library/multi:1"
    ]
    (tmp_path / "staging").rename(tmp_path / "old")
    plan = read_plan(spool(tmp_path, tb.bytes()), Platform(os="linux", architecture="arm64"))
    assert [i.image_id for i in plan.images] == [arm.id]


def test_oci_descriptor_size_must_match(tmp_path: Path) -> None:
    data = oci_layout([(Img([L1]), {})])
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            files[m.name] = tar.extractfile(m).read()  # type: ignore[union-attr]
    index = json.loads(files["index.json"])
    index["manifests"][0]["size"] += 1
    files["index.json"] = json.dumps(index).encode()
    tb = TarBuilder()
    for name, content in files.items():
        tb.file(name, content)
    with pytest.raises(InvalidArchive, match="descriptor says"):
        read_plan(spool(tmp_path, tb.bytes()), None)
