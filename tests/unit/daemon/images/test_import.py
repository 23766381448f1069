"""docker import: `-c` changes, the config dockerd writes, stdin and URL sources, failures."""

from __future__ import annotations

import gzip
import http.server
import json
import threading
from collections.abc import Iterator

import msgspec
import pytest
from images_testlib import Env, chunks, drain, layer_tar, sha256

from pymoby import errdefs
from pymoby.api import reference as refs
from pymoby.api.types.images import ContainerConfig, Platform, container_config_wire
from pymoby.daemon.images.changes import apply_changes

ROOTFS = layer_tar({"bin/sh": b"#!", "etc/hostname": b"x\n"})


def test_changes_as_the_reference_dockerd_applies_them() -> None:
    """The config a dockerd 20.10 wrote for these changes (observed), minus 20.10's OnBuild."""
    cfg = apply_changes(
        ContainerConfig(),
        [
            'ENV A=1 B="two words"',
            "ENV C $A-x",
            "EXPOSE 80 443/udp 8000-8001",
            "CMD echo hi",
            'ENTRYPOINT ["/bin/sh"]',
            "VOLUME /data /x",
            "WORKDIR rel",
            "WORKDIR sub",
            "USER nobody",
            'LABEL a=b c="d e"',
            "ONBUILD run echo",
            "HEALTHCHECK --interval=5s CMD true",
        ],
    )
    wire = container_config_wire(cfg)
    assert json.dumps(wire, separators=(",", ":")) == (
        '{"Hostname":"","Domainname":"","User":"nobody","AttachStdin":false,"AttachStdout":false,'
        '"AttachStderr":false,"ExposedPorts":{"443/udp":{},"80/tcp":{},"8000/tcp":{},'
        '"8001/tcp":{}},"Tty":false,"OpenStdin":false,"StdinOnce":false,'
        '"Env":["A=1","B=two words","C=1-x"],"Cmd":["/bin/sh","-c","echo hi"],'
        '"Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":5000000000},"Image":"",'
        '"Volumes":{"/data":{},"/x":{}},"WorkingDir":"/rel/sub","Entrypoint":["/bin/sh"],'
        '"OnBuild":["run echo"],"Labels":{"a":"b","c":"d e"}}'
    )


def test_entrypoint_resets_an_earlier_cmd_only_when_not_set_here() -> None:
    base = ContainerConfig(cmd=["old"])
    assert apply_changes(base, ["ENTRYPOINT x"]).cmd is None
    assert apply_changes(base, ['CMD ["a"]', "ENTRYPOINT x"]).cmd == ["a"]
    assert apply_changes(base, []).cmd == ["old"]


@pytest.mark.parametrize(
    "change,message",
    [
        ("RUN echo", "run is not a valid change command"),
        ("FROM x", "from is not a valid change command"),
        ("EXPOSE 80/xyz", "invalid proto: xyz"),
        ("EXPOSE abc", "invalid containerPort: abc"),
        ("STOPSIGNAL SIGNOPE", "Invalid signal: SIGNOPE"),
        ("ONBUILD ONBUILD x", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
        ("VOLUME", "VOLUME requires at least one argument"),
        ("ENV", "ENV requires at least one argument"),
    ],
)
def test_bad_changes(change: str, message: str) -> None:
    with pytest.raises(errdefs.InvalidParameter) as err:
        apply_changes(ContainerConfig(), [change])
    assert err.value.message == message


def test_more_changes() -> None:
    cfg = apply_changes(
        ContainerConfig(env=["HOME=/root"]),
        [
            "STOPSIGNAL SIGTERM",
            "WORKDIR /abs/../x",
            'VOLUME ["/a", "/b"]',
            "LABEL legacy value with spaces",
            "HEALTHCHECK NONE",
            "# a comment",
            "ENV PATH=$HOME/bin:${MISSING:-/usr/bin}",
        ],
    )
    assert cfg.stop_signal == "SIGTERM" and cfg.working_dir == "/x"
    assert cfg.volumes == {"/a": {}, "/b": {}}
    assert cfg.labels == {"legacy": "value with spaces"}
    assert cfg.healthcheck is not None and cfg.healthcheck.test == ["NONE"]
    assert cfg.env == ["HOME=/root", "PATH=/root/bin:/usr/bin"]


async def do_import(env: Env, data: bytes, **kw):  # type: ignore[no-untyped-def]
    ref = kw.pop("ref", None)
    return await drain(
        env.service.import_image(
            chunks(data),
            refs.parse_normalized_named(ref) if ref else None,
            kw.pop("message", "Imported from -"),
            kw.pop("changes", []),
            kw.pop("platform", None),
        )
    )


async def test_import_from_the_body(env: Env) -> None:
    lines = await do_import(
        env, gzip.compress(ROOTFS), ref="me/imported:1", changes=['CMD ["sh"]', "ENV A=1"]
    )
    image_id = lines[-1]["status"]
    record = await env.images.get(image_id)
    assert image_id == sha256(record.config)
    assert record.repo_tags == ["me/imported:1"] and record.last_tag_time is not None
    doc = json.loads(record.config)
    assert list(doc) == sorted(doc)
    assert doc["comment"] == "Imported from -" and doc["history"][0]["comment"] == "Imported from -"
    assert doc["rootfs"] == {"type": "layers", "diff_ids": [sha256(ROOTFS)]}
    assert doc["config"]["Cmd"] == ["sh"] and doc["config"]["Env"] == ["A=1"]
    assert doc["os"] == "linux" and doc["created"] == doc["history"][0]["created"]
    assert env.event_actions() == [("tag", image_id), ("import", image_id)]
    tag_event = env.events.buffered()[0]
    assert tag_event.actor.attributes == {"name": "me/imported:1"}


async def test_import_platform_and_message(env: Env) -> None:
    lines = await do_import(
        env,
        ROOTFS,
        message="hello",
        platform=Platform(os="linux", architecture="arm", variant="v7"),
    )
    doc = json.loads((await env.images.get(lines[-1]["status"])).config)
    assert (doc["architecture"], doc["variant"], doc["comment"]) == ("arm", "v7", "hello")
    with pytest.raises(errdefs.InvalidParameter, match="operating system is not supported"):
        await do_import(env, ROOTFS, platform=Platform(os="windows", architecture="amd64"))


async def test_bad_change_fails_before_reading(env: Env) -> None:
    with pytest.raises(errdefs.InvalidParameter, match="run is not a valid change command"):
        await do_import(env, ROOTFS, changes=["RUN x"])
    assert await env.images.list() == []


async def test_broken_tar_leaves_nothing(env: Env) -> None:
    with pytest.raises(errdefs.InvalidParameter):
        await do_import(env, gzip.compress(ROOTFS)[:-20])
    assert await env.images.list() == [] and env.layer_rows() == []
    assert env.layers.driver.ids() == []


@pytest.fixture
def http_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/rootfs.tar.gz":
                body = gzip.compress(ROOTFS)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_response(404)
                self.end_headers()
                self.wfile.write(b"not here\n")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_import_from_a_url(env: Env, http_server: str) -> None:
    stream = env.service.import_image(f"{http_server}/rootfs.tar.gz", None, "m", [], None)
    lines = await drain(stream)
    assert lines[0] == {"status": f"Downloading from http://{http_server}/rootfs.tar.gz"}
    assert any(line.get("status") == "Importing" for line in lines)
    record = await env.images.get(lines[-1]["status"])
    assert record.decode_config().diff_ids == [sha256(ROOTFS)]


async def test_import_url_errors(env: Env, http_server: str) -> None:
    with pytest.raises(errdefs.NotFound) as err:
        await drain(env.service.import_image(f"http://{http_server}/missing", None, "m", [], None))
    assert err.value.message == (
        f"failed to GET http://{http_server}/missing with status 404 Not Found: not here"
    )
    with pytest.raises(errdefs.System):
        await drain(env.service.import_image("http://127.0.0.1:1/x", None, "m", [], None))


def test_config_struct_is_not_modified_in_place() -> None:
    base = ContainerConfig(env=["A=1"], labels={"x": "y"})
    before = msgspec.json.encode(base)
    apply_changes(base, ["ENV B=2", "LABEL z=1"])
    assert msgspec.json.encode(base) == before
