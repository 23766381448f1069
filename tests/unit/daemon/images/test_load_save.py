"""docker load / docker save through the image service, on real stores (vfs, SQLite, archive)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest
from images_testlib import (
    FIXTURES,
    Env,
    Img,
    TarBuilder,
    chunks,
    docker_save,
    drain,
    layer_tar,
    oci_layout,
    sha256,
)

from pymoby import errdefs
from pymoby.api.filters import Filters
from pymoby.api.types.images import Platform
from pymoby.store.images import chain_id_of

BASE = layer_tar({"bin/sh": b"#!sh\n", "etc/os-release": b"ID=test\n"})
TOP = layer_tar({"data/file.txt": b"fixture\n"})


async def load(env: Env, data: bytes, *, quiet: bool = True, platform: Platform | None = None):  # type: ignore[no-untyped-def]
    return await drain(
        env.service.load(chunks(data), quiet=quiet, platforms=[platform] if platform else [])
    )


async def save(env: Env, *names: str) -> bytes:
    return b"".join([c async for c in env.service.save(list(names), [])])


async def tags(env: Env) -> dict[str, str]:
    return {t: record.id for record in await env.images.list() for t in record.repo_tags}


async def assert_nothing_loaded(env: Env) -> None:
    assert await env.images.list() == []
    assert env.layer_rows() == []
    assert env.leftovers() == []
    assert env.layers.driver.ids() == []


@pytest.mark.parametrize("layout", ["legacy", "oci"])
async def test_load_docker_save_formats(env: Env, layout: str) -> None:
    base = Img([BASE], tags=["me/base:1"])
    two = Img([BASE, TOP], tags=["me/two:1", "me/two:latest"], labels={"a": "b"})
    lines = await load(env, docker_save([base, two], layout=layout))
    assert [line["stream"] for line in lines] == [
        "Loaded image: me/base:1\n",
        "Loaded image: me/two:1\n",
        "Loaded image: me/two:latest\n",
    ]
    assert await tags(env) == {"me/base:1": base.id, "me/two:1": two.id, "me/two:latest": two.id}
    record = await env.images.get(two.id)
    assert record.config == two.config
    assert record.chain_id == chain_id_of([sha256(BASE), sha256(TOP)])
    assert len(env.layer_rows()) == 2  # the base layer is shared
    assert [a for a in env.event_actions() if a[0] == "load"] == [
        ("load", base.id),
        ("load", two.id),
    ]
    load_event = next(m for m in env.events.buffered() if m.actor.id == two.id)
    assert load_event.actor.attributes == {"a": "b", "name": two.id}
    assert env.leftovers() == []


async def test_load_fixture_legacy_archive(env: Env) -> None:
    data = (FIXTURES / "busybox-docker-save.tar").read_bytes()
    lines = await load(env, data)
    assert {line["stream"] for line in lines} == {
        "Loaded image: pymoby-fixture/busybox:two-layer\n",
        "Loaded image: pymoby-fixture/busybox:base\n",
    }
    found = await tags(env)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        for item in manifest:
            raw = tar.extractfile(item["Config"]).read()  # type: ignore[union-attr]
            assert found[item["RepoTags"][0]] == sha256(raw)
            record = await env.images.get(sha256(raw))
            assert record.decode_config().diff_ids == json.loads(raw)["rootfs"]["diff_ids"]


@pytest.mark.parametrize("fixture", ["busybox-oci-gzip.tar", "busybox-oci-zstd.tar"])
async def test_load_fixture_oci_layouts(env: Env, fixture: str) -> None:
    data = (FIXTURES / fixture).read_bytes()
    lines = await load(env, data)
    assert lines == [{"stream": "Loaded image: two-layer:latest\n"}]
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        manifest_hex = index["manifests"][0]["digest"].partition(":")[2]
        manifest = json.load(tar.extractfile(f"blobs/sha256/{manifest_hex}"))  # type: ignore[arg-type]
    assert (await tags(env))["two-layer:latest"] == manifest["config"]["digest"]


async def test_load_plain_oci_names(env: Env) -> None:
    named = Img([BASE], created="2024-01-01T00:00:00Z")
    full = Img([TOP], created="2024-01-01T00:00:01Z")
    unnamed = Img([BASE, TOP])
    bad = Img([TOP, BASE])
    data = oci_layout(
        [
            (named, {"org.opencontainers.image.ref.name": "v1.0"}),
            (full, {"io.containerd.image.name": "example.com/app:2"}),
            (unnamed, {}),
            (bad, {"org.opencontainers.image.ref.name": "Not-Valid"}),
        ]
    )
    lines = [line["stream"] for line in await load(env, data)]
    assert lines == [
        "Loaded image: v1.0:latest\n",
        "Loaded image: example.com/app:2\n",
        f"Loaded image ID: {unnamed.id}\n",
        f"Loaded image ID: {bad.id}\n",
    ]


async def test_load_reports_ids_when_the_last_image_has_no_tag(env: Env) -> None:
    first = Img([BASE], tags=["me/a:1"])
    last = Img([TOP])
    lines = [line["stream"] for line in await load(env, docker_save([first, last]))]
    assert lines == [
        "Loaded image: me/a:1\n",
        f"Loaded image ID: {first.id}\nLoaded image ID: {last.id}\n",
    ]


async def test_load_moves_a_tag_and_says_so(env: Env) -> None:
    old = Img([BASE], tags=["me/a:1"])
    new = Img([TOP], tags=["me/a:1"])
    await load(env, docker_save([old]))
    lines = [line["stream"] for line in await load(env, docker_save([new]))]
    assert lines == [
        f"The image me/a:1 already exists, renaming the old one with ID {old.id} to empty string\n",
        "Loaded image: me/a:1\n",
    ]
    assert (await tags(env))["me/a:1"] == new.id
    assert len(await env.images.list()) == 2  # the old one is dangling now


async def test_load_progress_unless_quiet(env: Env) -> None:
    big = layer_tar({"big": bytes(3 << 20)})
    lines = await load(env, docker_save([Img([big], tags=["me/big:1"])]), quiet=False)
    progress = [line for line in lines if line.get("status") == "Loading layer"]
    assert progress and progress[-1]["progressDetail"]["current"] == len(big)
    assert progress[-1]["id"] == sha256(big).partition(":")[2][:12]


async def test_load_gzip_compressed_archive_and_layers(env: Env) -> None:
    data = gzip.compress(docker_save([Img([BASE, TOP], tags=["me/z:1"])], compress=True))
    await load(env, data)
    assert "me/z:1" in await tags(env)


async def test_load_parent_links(env: Env) -> None:
    hist1 = [{"created": "2024-01-01T00:00:00Z", "created_by": "one"}]
    hist2 = [*hist1, {"created": "2024-01-01T00:00:01Z", "created_by": "two"}]
    from images_testlib import config

    parent = Img([BASE], config_bytes=config([BASE], history=hist1))
    child = Img([BASE, TOP], tags=["me/child:1"], config_bytes=config([BASE, TOP], history=hist2))
    child.parent = parent.id
    await load(env, docker_save([parent, child]))
    assert (await env.images.get(child.id)).parent == parent.id
    summaries = await env.service.images(Filters(), all=False, shared_size=False)
    assert [s.id for s in summaries] == [child.id]  # the untagged parent is an intermediate


async def test_load_platform_filter(env: Env) -> None:
    img = Img([BASE], tags=["me/a:1"])
    await load(env, docker_save([img]), platform=Platform(os="linux", architecture="arm64"))
    assert await env.images.list() == []
    await load(env, docker_save([img]), platform=Platform(os="linux", architecture="amd64"))
    assert "me/a:1" in await tags(env)


# -- bad archives: a clear error and nothing left -------------------------------------------------


async def expect_error(env: Env, data: bytes, message: str) -> None:
    with pytest.raises(errdefs.PymobyError) as err:
        await load(env, data)
    assert message in err.value.message, err.value.message
    await assert_nothing_loaded(env)


async def test_wrong_diff_id(env: Env) -> None:
    img = Img([BASE, TOP], tags=["me/a:1"])
    img.config_bytes = img.config.replace(sha256(TOP).encode(), sha256(b"other").encode())
    await expect_error(env, docker_save([img]), 'invalid diffID for layer 1: expected "sha256:')


async def test_wrong_blob_digest(env: Env) -> None:
    data = oci_layout([(Img([BASE, TOP]), {"org.opencontainers.image.ref.name": "x"})])
    # same uncompressed layer (right diff ID), other gzip bytes (another mtime): wrong digest
    good, other = gzip.compress(TOP, mtime=0), gzip.compress(TOP, mtime=1)
    assert len(good) == len(other) and good in data
    await expect_error(env, data.replace(good, other), "does not match its digest")


async def test_bad_manifest_json(env: Env) -> None:
    tb = TarBuilder()
    tb.file("manifest.json", b"[{")
    await expect_error(env, tb.bytes(), "invalid archive: failed to decode manifest.json")


async def test_null_manifest(env: Env) -> None:
    tb = TarBuilder()
    tb.file("manifest.json", b"null")
    await expect_error(env, tb.bytes(), "invalid manifest, manifest cannot be null")


async def test_bad_config_json(env: Env) -> None:
    img = Img([BASE], tags=["me/a:1"], config_bytes=b'{"rootfs": 1}')
    await expect_error(env, docker_save([img]), "invalid image JSON")


async def test_no_manifest(env: Env) -> None:
    tb = TarBuilder()
    tb.file("repositories", b"{}")
    await expect_error(env, tb.bytes(), "invalid archive: does not contain a manifest.json")


async def test_missing_layer(env: Env) -> None:
    img = Img([BASE, TOP], tags=["me/a:1"])
    tb = TarBuilder()
    tb.file("a/layer.tar", BASE)
    tb.file("cfg.json", img.config)
    manifest = [{"Config": "cfg.json", "RepoTags": ["me/a:1"], "Layers": ["a/layer.tar", "b/x"]}]
    tb.file("manifest.json", json.dumps(manifest).encode())
    await expect_error(env, tb.bytes(), "invalid archive: layer 'b/x' is missing")


async def test_layer_count_mismatch(env: Env) -> None:
    img = Img([BASE], tags=["me/a:1"])
    tb = TarBuilder()
    tb.file("a/layer.tar", BASE)
    tb.file("cfg.json", img.config)
    manifest = [{"config": "cfg.json", "layers": ["a/layer.tar", "a/layer.tar"]}]
    tb.file("manifest.json", json.dumps(manifest).encode())
    await expect_error(
        env, tb.bytes(), "invalid manifest, layers length mismatch: expected 2, got 1"
    )


async def test_truncated_archive(env: Env) -> None:
    data = docker_save([Img([layer_tar({"f": bytes(200_000)})], tags=["me/a:1"])])
    await expect_error(env, data[: len(data) // 2], "unexpected EOF")


async def test_outer_path_traversal(env: Env) -> None:
    tb = TarBuilder()
    tb.file("../../escape.txt", b"x")
    await expect_error(env, tb.bytes(), "is outside of the archive")
    assert not (env.root.parent / "escape.txt").exists()


async def test_symlink_escape_stays_inside(env: Env, tmp_path: Path) -> None:
    (tmp_path / "outside.json").write_text("[]")
    tb = TarBuilder()
    tb.symlink("manifest.json", "../../../../" + str(tmp_path / "outside.json"))
    await expect_error(env, tb.bytes(), "does not contain a manifest.json")


async def test_layer_with_breakout_entry(env: Env) -> None:
    evil = layer_tar({"../../evil": b"x"})
    await expect_error(env, docker_save([Img([BASE, evil], tags=["me/a:1"])]), "invalid entry name")


async def test_failed_load_keeps_existing_images(env: Env) -> None:
    good = Img([BASE], tags=["me/good:1"])
    await load(env, docker_save([good]))
    bad = Img([BASE, TOP], tags=["me/good:1"])
    bad.config_bytes = bad.config.replace(sha256(TOP).encode(), sha256(b"zz").encode())
    with pytest.raises(errdefs.InvalidParameter):
        await load(env, docker_save([bad]))
    assert await tags(env) == {"me/good:1": good.id}
    assert env.layer_rows() == [sha256(BASE)]
    assert env.leftovers() == []


# -- save ---------------------------------------------------------------------------------------


def members(data: bytes) -> dict[str, bytes]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            f = tar.extractfile(m)
            out[m.name] = f.read() if f else b""
    return out


async def test_save_layout_and_round_trip(env: Env, tmp_path: Path) -> None:
    base = Img([BASE], tags=["me/base:1"])
    two = Img([BASE, TOP], tags=["me/two:1", "me/two:2"])
    await load(env, docker_save([base, two]))
    data = await save(env, "me/two", "me/base:1")
    files = members(data)
    names = list(files)
    assert names[:2] == ["blobs", "blobs/sha256"] or names[:2] == ["blobs/", "blobs/sha256/"]
    assert names[-4:] == ["index.json", "manifest.json", "oci-layout", "repositories"]
    assert files["oci-layout"] == b'{"imageLayoutVersion": "1.0.0"}'
    assert files[f"blobs/sha256/{sha256(BASE)[7:]}"] == BASE  # byte for byte
    assert files[f"blobs/sha256/{sha256(TOP)[7:]}"] == TOP
    manifest = json.loads(files["manifest.json"])
    assert files["manifest.json"].endswith(b"\n")
    assert manifest[0]["RepoTags"] == ["me/two:1", "me/two:2"]
    assert manifest[1]["Config"] == "blobs/sha256/" + base.id[7:]
    assert json.loads(files["repositories"]) == {
        "me/base": {"1": sha256(BASE)[7:]},
        "me/two": {"1": sha256(TOP)[7:], "2": sha256(TOP)[7:]},
    }
    index = json.loads(files["index.json"])
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [m["annotations"]["io.containerd.image.name"] for m in index["manifests"]] == [
        "docker.io/me/two:1",
        "docker.io/me/two:2",
        "docker.io/me/base:1",
    ]
    oci = json.loads(files["blobs/sha256/" + index["manifests"][0]["digest"][7:]])
    assert [layer["digest"] for layer in oci["layers"]] == [sha256(BASE), sha256(TOP)]
    assert [a for a in env.event_actions() if a[0] == "save"] == [
        ("save", two.id),
        ("save", base.id),
    ]
    # round trip: the same IDs come back, into a fresh store
    from images_testlib import open_env

    other = open_env(tmp_path / "other")
    try:
        await load(other, data)
        assert await tags(other) == await tags(env)
        # and the OCI part alone loads too
        tb = TarBuilder()
        for name, content in files.items():
            legacy = name in ("manifest.json", "repositories")
            if not legacy and not name.endswith("/") and (content or name.startswith("blobs/")):
                tb.file(name, content)
        third = open_env(tmp_path / "third")
        try:
            lines = await load(third, tb.bytes())
            assert {line["stream"] for line in lines} == {
                "Loaded image: me/two:1\n",
                "Loaded image: me/two:2\n",
                "Loaded image: me/base:1\n",
            }
        finally:
            third.close()
    finally:
        other.close()


async def test_save_errors(env: Env) -> None:
    await load(env, docker_save([Img([BASE], tags=["me/a:1"])]))
    with pytest.raises(errdefs.NotFound, match="reference does not exist"):
        await save(env, "me/a:2")
    with pytest.raises(errdefs.NotFound, match="No such image: nothere"):
        await save(env, "nothere")
    with pytest.raises(errdefs.NotFound, match="No such image: sha256:abcd"):
        await save(env, "sha256:abcd")
    with pytest.raises(errdefs.InvalidParameter):
        await save(env, "Bad Name")


async def test_save_by_id_has_no_tags(env: Env) -> None:
    img = Img([BASE], tags=["me/a:1"])
    await load(env, docker_save([img]))
    files = members(await save(env, img.id[7:19]))
    assert json.loads(files["manifest.json"])[0]["RepoTags"] is None
    assert "repositories" not in files
    assert "annotations" not in json.loads(files["index.json"])["manifests"][0]


async def test_save_layer_sizes_without_the_cache(env: Env) -> None:
    img = Img([BASE, TOP], tags=["me/a:1"])
    await load(env, docker_save([img]))
    env.service.tar_sizes = type(env.service.tar_sizes)()  # cold cache: counted from tar-split
    files = members(await save(env, "me/a:1"))
    assert files[f"blobs/sha256/{sha256(TOP)[7:]}"] == TOP
