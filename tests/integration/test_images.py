"""Images through the real docker CLI and docker-py against a real pymobyd, on overlay2 AND vfs.

import, load (every fixture, generated archives, broken ones), save | load round trips, images
with filters, inspect, history, tag, rmi (conflicts), prune; a kill -9 in the middle of a load;
a 120-layer image whose container layer is mounted through the layer store.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import os
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import DOCKER_CLI, FIXTURES, Daemon, missing_prerequisites

DRIVERS = ["overlay2", "vfs"]


# -- archives made here ----------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_of(entries: list[tuple[str, bytes | None, str]]) -> bytes:
    """(name, content, symlink target) entries -> tar bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content, link in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if link:
                info.type = tarfile.SYMTYPE
                info.linkname = link
                tar.addfile(info)
            else:
                data = content or b""
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def layer(files: dict[str, bytes]) -> bytes:
    return tar_of([(name, data, "") for name, data in sorted(files.items())])


def image_config(layers: list[bytes], **extra: Any) -> bytes:
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "created": extra.pop("created", "2024-01-02T03:04:05Z"),
        "config": {"Cmd": ["sh"], "Labels": extra.pop("labels", None)},
        "rootfs": {"type": "layers", "diff_ids": [sha256(data) for data in layers]},
        **extra,
    }
    return json.dumps(doc).encode()


def docker_save_archive(images: list[tuple[list[bytes], bytes, list[str]]]) -> bytes:
    """A legacy docker-save archive of (layers, config, tags)."""
    entries: list[tuple[str, bytes | None, str]] = []
    manifest = []
    seen: set[str] = set()
    for layers, config, tags in images:
        names = []
        for data in layers:
            name = hashlib.sha256(sha256(data).encode()).hexdigest() + "/layer.tar"
            if name not in seen:
                seen.add(name)
                entries.append((name, data, ""))
            names.append(name)
        config_name = sha256(config)[7:] + ".json"
        entries.append((config_name, config, ""))
        manifest.append({"Config": config_name, "RepoTags": tags or None, "Layers": names})
    entries.append(("manifest.json", json.dumps(manifest).encode(), ""))
    return tar_of(entries)


# -- daemons ------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=DRIVERS)
def d(request: pytest.FixtureRequest, prerequisites: None) -> Iterator[Daemon]:
    daemon = Daemon(["--storage-driver", request.param])
    try:
        daemon.start()
        daemon.driver = request.param  # type: ignore[attr-defined]
        yield daemon
    finally:
        daemon.cleanup()


@pytest.fixture
def clean(d: Daemon) -> Iterator[Daemon]:
    """The module's daemon, emptied of images after the test."""
    try:
        yield d
    finally:
        ids = d.docker("images", "-aq", "--no-trunc").stdout.split()
        if ids:
            d.docker("rmi", "-f", *sorted(set(ids)), check=False)


def docker_bytes(d: Daemon, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(d.dir),
        "DOCKER_HOST": d.host,
        "DOCKER_CONFIG": str(d.dir / "docker-config"),
    }
    return subprocess.run(
        [DOCKER_CLI, *args], input=stdin, capture_output=True, env=env, timeout=120, check=False
    )


def image_ids(d: Daemon) -> list[str]:
    return sorted(set(d.docker("images", "-aq", "--no-trunc").stdout.split()))


def staging_leftovers(d: Daemon) -> list[str]:
    tmp = d.data_root / "tmp"
    return sorted(os.listdir(tmp)) if tmp.exists() else []


def layer_dirs(d: Daemon, driver: str) -> list[str]:
    home = d.data_root / driver
    if driver == "vfs":
        home = home / "dir"
    if not home.exists():
        return []
    return sorted(n for n in os.listdir(home) if n not in ("l",) and not n.startswith("."))


def fixture_configs(path: Path) -> dict[str, bytes]:
    """tag (or "") -> config bytes of a fixture archive."""
    with tarfile.open(path) as tar:
        names = tar.getnames()
        if "manifest.json" in names:
            manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
            return {
                item["RepoTags"][0]: tar.extractfile(item["Config"]).read()  # type: ignore[union-attr]
                for item in manifest
            }
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        out = {}
        for desc in index["manifests"]:
            m = json.load(tar.extractfile("blobs/sha256/" + desc["digest"][7:]))  # type: ignore[arg-type]
            raw = tar.extractfile("blobs/sha256/" + m["config"]["digest"][7:]).read()  # type: ignore[union-attr]
            out[desc["annotations"]["org.opencontainers.image.ref.name"] + ":latest"] = raw
        return out


# -- load, import, save -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fixture", ["busybox-docker-save.tar", "busybox-oci-gzip.tar", "busybox-oci-zstd.tar"]
)
def test_load_fixture(clean: Daemon, fixture: str) -> None:
    out = clean.docker("load", "-i", str(FIXTURES / fixture)).stdout
    for tag, config in fixture_configs(FIXTURES / fixture).items():
        assert f"Loaded image: {tag}" in out
        inspect = json.loads(clean.docker("image", "inspect", tag).stdout)[0]
        assert inspect["Id"] == sha256(config)
        assert inspect["RootFS"]["Layers"] == json.loads(config)["rootfs"]["diff_ids"]
        assert inspect["GraphDriver"]["Name"] == clean.driver  # type: ignore[attr-defined]
    assert staging_leftovers(clean) == []


def test_import_with_changes_and_events(clean: Daemon) -> None:
    start = time.time()
    with tarfile.open(FIXTURES / "busybox-docker-save.tar") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        base = next(m for m in manifest if m["RepoTags"] == ["pymoby-fixture/busybox:base"])
        rootfs = tar.extractfile(base["Layers"][0]).read()  # type: ignore[union-attr]
    res = docker_bytes(
        clean,
        "import",
        "-c",
        'ENV A=1 B="two words"',
        "-c",
        "CMD echo hi",
        "-c",
        "EXPOSE 80",
        "-m",
        "from the test",
        "-",
        "me/imported:v1",
        stdin=gzip.compress(rootfs),
    )
    assert res.returncode == 0, res.stderr
    image_id = res.stdout.decode().strip()
    inspect = json.loads(clean.docker("image", "inspect", "me/imported:v1").stdout)[0]
    assert inspect["Id"] == image_id and inspect["Comment"] == "from the test"
    assert inspect["Config"]["Env"] == ["A=1", "B=two words"]
    assert inspect["Config"]["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert inspect["Config"]["ExposedPorts"] == {"80/tcp": {}}
    assert inspect["RootFS"]["Layers"] == [sha256(rootfs)]
    history = clean.docker("history", "--no-trunc", "--format", "{{.Comment}}", image_id)
    assert history.stdout.split("\n")[0] == "from the test"
    events = clean.docker(
        "events",
        "--since",
        str(int(start) - 1),
        "--until",
        str(int(time.time()) + 1),
        "--filter",
        "type=image",
        "--format",
        "{{.Action}} {{.Actor.ID}}",
    ).stdout.splitlines()
    assert [e for e in events if image_id in e] == [f"tag {image_id}", f"import {image_id}"]
    bad = docker_bytes(clean, "import", "-c", "RUN echo", "-", stdin=rootfs)
    assert bad.returncode != 0
    assert b"run is not a valid change command" in bad.stderr


def test_import_from_url(clean: Daemon) -> None:
    body = gzip.compress(layer({"etc/hello": b"hi\n"}))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/rootfs.tar.gz"
        out = clean.docker("import", url, "me/fromurl:1").stdout.splitlines()
        assert out[0] == f"Downloading from {url}" and out[-1].startswith("sha256:")
        assert clean.docker("images", "-q", "me/fromurl:1").stdout.strip()
    finally:
        server.shutdown()
        server.server_close()


def test_save_load_round_trip(clean: Daemon, tmp_path: Path) -> None:
    clean.docker("load", "-i", str(FIXTURES / "busybox-docker-save.tar"))
    before = {
        t: clean.docker("image", "inspect", "-f", "{{.Id}}", t).stdout.strip()
        for t in ("pymoby-fixture/busybox:base", "pymoby-fixture/busybox:two-layer")
    }
    saved = tmp_path / "saved.tar"
    clean.docker("save", "-o", str(saved), "pymoby-fixture/busybox")
    with tarfile.open(saved) as tar, tarfile.open(FIXTURES / "busybox-docker-save.tar") as fixture:
        names = tar.getnames()
        assert {"index.json", "manifest.json", "oci-layout", "repositories"} <= set(names)
        for name in fixture.getnames():
            if name.endswith("/layer.tar") and fixture.getmember(name).isfile():
                data = fixture.extractfile(name).read()  # type: ignore[union-attr]
                assert tar.extractfile("blobs/sha256/" + sha256(data)[7:]).read() == data  # type: ignore[union-attr]
    clean.docker("rmi", *before)
    assert image_ids(clean) == []
    out = clean.docker("load", "-i", str(saved)).stdout
    assert "Loaded image: pymoby-fixture/busybox:two-layer" in out
    after = {t: clean.docker("image", "inspect", "-f", "{{.Id}}", t).stdout.strip() for t in before}
    assert after == before
    # a pipe, as users do it: docker save | docker load
    piped = subprocess.run(
        f"{DOCKER_CLI} save pymoby-fixture/busybox:base | {DOCKER_CLI} load",
        shell=True,
        env={**os.environ, "DOCKER_HOST": clean.host},
        capture_output=True,
        text=True,
        check=False,
    )
    assert piped.returncode == 0 and "Loaded image: pymoby-fixture/busybox:base" in piped.stdout


# -- list, inspect, history, tag, rmi, prune -----------------------------------------------------


def test_images_filters_tag_history(clean: Daemon) -> None:
    l1, l2 = layer({"a": b"1"}), layer({"b": b"2" * 1000})
    old = image_config([l1], labels={"tier": "old"}, created="2020-01-01T00:00:00Z")
    new = image_config(
        [l1, l2],
        labels={"tier": "new"},
        created="2023-01-01T00:00:00Z",
        history=[{"created_by": "one"}, {"created_by": "two"}],
    )
    dangling = image_config([l2], created="2022-01-01T00:00:00Z")
    archive = docker_save_archive(
        [([l1], old, ["me/old:1"]), ([l1, l2], new, ["me/new:1"]), ([l2], dangling, [])]
    )
    res = docker_bytes(clean, "load", stdin=archive)
    assert res.returncode == 0, res.stderr

    def q(*filters: str) -> list[str]:
        args = [a for f in filters for a in ("--filter", f)]
        return clean.docker("images", "-q", "--no-trunc", *args).stdout.split()

    assert q() == [sha256(new), sha256(dangling), sha256(old)]
    assert q("dangling=true") == [sha256(dangling)]
    assert q("label=tier=old") == [sha256(old)]
    assert q("reference=me/n*") == [sha256(new)]
    assert q("before=me/new:1") == [sha256(dangling), sha256(old)]
    assert q("since=me/old:1", "dangling=false") == [sha256(new)]
    assert q("until=2021-01-01T00:00:00Z") == [sha256(old)]
    clean.docker("tag", "me/old:1", "me/other:2")
    table = clean.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    # the CLI groups an image's tags by repository in a Go map: their order is random
    assert table[:2] == ["me/new:1", "<none>:<none>"]
    assert sorted(table[2:]) == ["me/old:1", "me/other:2"]
    inspect = json.loads(clean.docker("image", "inspect", "me/other:2").stdout)[0]
    assert inspect["RepoTags"] == ["me/old:1", "me/other:2"]
    assert inspect["Metadata"]["LastTagTime"] != "0001-01-01T00:00:00Z"
    hist = clean.docker("history", "--no-trunc", "--format", "{{.ID}} {{.CreatedBy}}", "me/new:1")
    assert hist.stdout.splitlines() == [f"{sha256(new)} two", "<missing> one"]
    bad = clean.docker("image", "inspect", "nothere:1", check=False)
    assert bad.returncode != 0 and "No such image: nothere:1" in bad.stderr


def test_rmi_conflicts_and_prune(clean: Daemon) -> None:
    l1, l2 = layer({"x": b"1"}), layer({"y": b"2"})
    a = image_config([l1], created="2024-01-01T00:00:00Z")
    b = image_config([l2], created="2024-01-01T00:00:01Z")
    c = image_config([l1, l2], created="2024-01-01T00:00:02Z")
    archive = docker_save_archive(
        [([l1], a, ["me/a:1", "other/a:1"]), ([l2], b, []), ([l1, l2], c, ["me/c:1"])]
    )
    assert docker_bytes(clean, "load", stdin=archive).returncode == 0
    res = clean.docker("rmi", sha256(a)[7:19], check=False)
    assert res.returncode != 0
    assert (
        f"conflict: unable to delete {sha256(a)[7:19]} (must be forced) - "
        "image is referenced in multiple repositories"
    ) in res.stderr
    out = clean.docker("rmi", "other/a:1").stdout
    assert out.strip() == "Untagged: other/a:1"
    missing = clean.docker("rmi", "nothere", check=False)
    assert "No such image: nothere:latest" in missing.stderr
    pruned = clean.docker("image", "prune", "-f").stdout
    assert f"deleted: {sha256(b)}" in pruned and "Total reclaimed space" in pruned
    assert sha256(b) not in image_ids(clean)
    pruned = clean.docker("image", "prune", "-a", "-f").stdout
    assert "untagged: me/a:1" in pruned and "untagged: me/c:1" in pruned
    assert image_ids(clean) == []
    assert layer_dirs(clean, clean.driver) == []  # type: ignore[attr-defined]


def test_docker_py(clean: Daemon, tmp_path: Path) -> None:
    client = clean.client()
    try:
        with open(FIXTURES / "busybox-oci-zstd.tar", "rb") as f:
            loaded = client.images.load(f.read())
        assert [img.tags for img in loaded] == [["two-layer:latest"]]
        image = client.images.get("two-layer")
        assert image.tag("me/py", "1")
        assert sorted(client.images.get("me/py:1").tags) == ["me/py:1", "two-layer:latest"]
        assert [i.id for i in client.images.list(name="me/py")] == [image.id]
        data = b"".join(image.save(named=True))
        client.images.remove("me/py:1")
        client.images.remove(image.id, force=True)
        assert client.images.list() == []
        again = client.images.load(data)
        assert again[0].id == image.id
        assert client.images.prune(filters={"dangling": False})["ImagesDeleted"]
        assert client.api.history(image.id) if client.images.list() else True
    finally:
        client.close()


# -- broken input: a clear error, nothing half-loaded -------------------------------------------


def _broken_archives() -> dict[str, tuple[bytes, str]]:
    l1 = layer({"ok": b"fine"})
    good = docker_save_archive([([l1], image_config([l1]), ["me/bad:1"])])
    wrong = image_config([layer({"other": b"x"})])
    return {
        "traversal": (tar_of([("../../../../tmp/pymoby-escape", b"x", "")]), "is outside of"),
        "layer-breakout": (
            docker_save_archive(
                [
                    (
                        [l1, layer({"../../evil": b"x"})],
                        image_config([l1, layer({"../../evil": b"x"})]),
                        ["me/bad:1"],
                    )
                ]
            ),
            "invalid entry name",
        ),
        "symlink-escape": (
            tar_of([("manifest.json", None, "../../../../etc/hostname")]),
            "does not contain a manifest.json",
        ),
        "truncated": (good[: len(good) // 2], "unexpected EOF"),
        "wrong-digest": (
            docker_save_archive([([l1], wrong, ["me/bad:1"])]),  # config names another layer
            "invalid diffID for layer 0",
        ),
        "bad-json": (tar_of([("manifest.json", b"[{nope", "")]), "failed to decode manifest.json"),
        "missing-layer": (
            tar_of(
                [
                    ("c.json", image_config([l1]), ""),
                    ("manifest.json", b'[{"Config":"c.json","Layers":["gone/layer.tar"]}]', ""),
                ]
            ),
            "layer 'gone/layer.tar' is missing",
        ),
    }


@pytest.mark.parametrize("case", sorted(_broken_archives()))
def test_broken_loads_leave_nothing(clean: Daemon, case: str) -> None:
    data, message = _broken_archives()[case]
    res = docker_bytes(clean, "load", stdin=data)
    assert res.returncode != 0
    assert message in res.stderr.decode() + res.stdout.decode()
    assert image_ids(clean) == []
    assert staging_leftovers(clean) == []
    assert layer_dirs(clean, clean.driver) == []  # type: ignore[attr-defined]
    assert not Path("/tmp/pymoby-escape").exists()


# -- crash safety -------------------------------------------------------------------------------


def _many_layers(count: int, size: int) -> bytes:
    layers = [layer({f"layer{i}/data": os.urandom(size)}) for i in range(count)]
    return docker_save_archive([(layers, image_config(layers), ["me/big:1"])])


def _post_load(d: Daemon, data: bytes, *, quiet: bool) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(d.sock)
    head = (
        f"POST /v1.52/images/load?quiet={int(quiet)} HTTP/1.1\r\nHost: docker\r\n"
        f"Content-Type: application/x-tar\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    sock.sendall(head.encode())
    return sock


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("when", ["upload", "registration"])
def test_kill9_during_load_leaves_nothing(prerequisites: None, driver: str, when: str) -> None:
    d = Daemon(["--storage-driver", driver])
    try:
        d.start()
        data = _many_layers(12, 2 << 20)
        sock = _post_load(d, data, quiet=False)
        if when == "upload":
            sock.sendall(data[: len(data) // 2])
            deadline = time.monotonic() + 10
            while not staging_leftovers(d) and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.2)
        else:
            sock.sendall(data)
            buf = b""
            sock.settimeout(30)
            while b"Loading layer" not in buf:
                chunk = sock.recv(65536)
                assert chunk, buf
                buf += chunk
        assert staging_leftovers(d)  # the load was under way
        d.kill9()
        sock.close()
        d.start()
        assert image_ids(d) == []
        assert staging_leftovers(d) == []
        assert layer_dirs(d, driver) == []
        assert d.docker("load", "-i", str(FIXTURES / "busybox-docker-save.tar")).returncode == 0
    finally:
        d.cleanup()


# -- a deep image whose container layer mounts --------------------------------------------------


def test_120_layer_image_loads_and_mounts(d: Daemon, tmp_path: Path) -> None:
    layers = [layer({f"l/{i:03d}": str(i).encode(), "top": str(i).encode()}) for i in range(120)]
    config = image_config(layers)
    res = docker_bytes(d, "load", stdin=docker_save_archive([(layers, config, ["me/deep:1"])]))
    assert res.returncode == 0, res.stderr
    inspect = json.loads(d.docker("image", "inspect", "me/deep:1").stdout)[0]
    assert len(inspect["RootFS"]["Layers"]) == 120
    driver = d.driver  # type: ignore[attr-defined]
    d.stop()
    try:
        mounted = _mount_rw_layer(d.data_root, driver, inspect["RootFS"]["Layers"])
        assert mounted["l/000"] == b"0" and mounted["l/119"] == b"119"
        assert mounted["top"] == b"119"
        assert len([k for k in mounted if k.startswith("l/")]) == 120
    finally:
        d.start()
    d.docker("rmi", "me/deep:1")
    assert layer_dirs(d, driver) == []


def _mount_rw_layer(data_root: Path, driver_name: str, diff_ids: list[str]) -> dict[str, bytes]:
    """Open the daemon's stores (daemon stopped), mount a container layer on the chain."""
    from pymoby import archive
    from pymoby.store import graphdriver
    from pymoby.store.layers import LayerStore, chain_id
    from pymoby.store.meta import MetaStore
    from pymoby.store.rwlayers import RWLayerStore

    with MetaStore.open(data_root / "meta.db") as meta:
        driver = graphdriver.new_driver(driver_name, data_root)
        layers = LayerStore.open(
            meta,
            driver,
            data_root / "image" / driver_name,
            extractor=lambda s, t, w, ts: archive.apply_layer(s, t, whiteouts=w, tarsplit_out=ts),  # type: ignore[arg-type, misc]
            reassembler=archive.reassemble,
        )
        top: str | None = None
        for diff_id in diff_ids:
            top = chain_id(top, diff_id)
        rw = RWLayerStore(layers)
        rw.create("c" * 64, top)
        try:
            root = rw.mount("c" * 64)
            try:
                found = {}
                for path in sorted(root.rglob("*")):
                    if path.is_file():
                        found[str(path.relative_to(root))] = path.read_bytes()
                (root / "written-by-container").write_text("x")
                return found
            finally:
                rw.unmount("c" * 64)
        finally:
            rw.remove("c" * 64)


def test_prerequisites_are_met() -> None:
    assert missing_prerequisites() == []
