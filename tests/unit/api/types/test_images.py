"""Image config / manifest parsing and the per-version wire shapes of the /images endpoints."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from tests import swagger

from pymoby import errdefs
from pymoby.api.types import images as t
from pymoby.api.versions import ApiVersion

V = ApiVersion
DIFF = "sha256:" + "1" * 64

# A config as the legacy builder wrote it: container.Config with nulls, container_config, parent.
DOCKER_CONFIG = json.dumps(
    {
        "architecture": "amd64",
        "config": {
            "Hostname": "",
            "Domainname": "",
            "User": "",
            "AttachStdin": False,
            "Tty": False,
            "Env": ["PATH=/bin"],
            "Cmd": ["sh"],
            "Image": "sha256:abc",
            "Volumes": None,
            "WorkingDir": "",
            "Entrypoint": None,
            "OnBuild": None,
            "Labels": {"b": "2", "a": "1"},
            "ExposedPorts": {"80/tcp": {}, "443/tcp": {}},
        },
        "container": "c0ffee",
        "container_config": {"Hostname": "c0ffee", "Cmd": ["/bin/sh", "-c", "#(nop) CMD"]},
        "created": "2024-05-01T10:20:30.123456789Z",
        "docker_version": "20.10.7",
        "history": [
            {"created": "2024-05-01T10:20:29Z", "created_by": "ADD file", "comment": "c1"},
            {"created": "2024-05-01T10:20:30Z", "created_by": "CMD", "empty_layer": True},
        ],
        "os": "linux",
        "parent": "sha256:" + "9" * 64,
        "rootfs": {"type": "layers", "diff_ids": [DIFF]},
    }
).encode()

OCI_CONFIG = (
    b'{"architecture":"arm64","variant":"v8","os":"linux","os.version":"1",'
    b'"config":{"Env":["A=1"],"Entrypoint":["/x"],"StopSignal":"SIGTERM","ArgsEscaped":true,'
    b'"Healthcheck":{"Test":["CMD","true"],"Interval":1000000000},"Shell":["/bin/sh"]},'
    b'"rootfs":{"type":"layers","diff_ids":[]},"history":[{"created_by":"x","empty_layer":true}]}'
)


def test_decode_docker_config() -> None:
    cfg = t.decode_image_config(DOCKER_CONFIG)
    assert cfg.diff_ids == [DIFF]
    assert cfg.config is not None and cfg.config.env == ["PATH=/bin"]
    assert cfg.config.volumes is None and cfg.config.labels == {"b": "2", "a": "1"}
    assert cfg.container_config is not None and cfg.container_config.hostname == "c0ffee"
    assert (cfg.container, cfg.docker_version, cfg.parent) == (
        "c0ffee",
        "20.10.7",
        "sha256:" + "9" * 64,
    )
    assert cfg.history is not None and cfg.history[1].empty_layer
    assert t.image_comment(cfg) == ""  # the last history entry has none


def test_decode_oci_config() -> None:
    cfg = t.decode_image_config(OCI_CONFIG)
    assert (cfg.architecture, cfg.variant, cfg.os_version) == ("arm64", "v8", "1")
    assert cfg.diff_ids == [] and cfg.created is None
    assert cfg.config is not None and cfg.config.healthcheck is not None
    assert cfg.config.healthcheck.interval == 1_000_000_000


def test_image_comment_falls_back_to_the_last_history_entry() -> None:
    cfg = t.ImageConfig(history=[t.HistoryDoc(comment="a"), t.HistoryDoc(comment="b")])
    assert t.image_comment(cfg) == "b"
    assert t.image_comment(msgspec.structs.replace(cfg, comment="top")) == "top"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"architecture":"amd64"}', "invalid image JSON, no RootFS key"),
        (b"", "invalid image JSON"),
        (b"[]", "invalid image JSON"),
        (b'{"rootfs":{"type":"layers"},"created":"yesterday"}', 'parsing time "yesterday"'),
        (b'{"rootfs":{},"history":[{"created":"2024-02-30T00:00:00Z"}]}', "parsing time"),
        (b'{"rootfs":{"diff_ids":"x"}}', "invalid image JSON"),
    ],
)
def test_decode_config_errors(data: bytes, message: str) -> None:
    with pytest.raises(errdefs.InvalidParameter, match=message):
        t.decode_image_config(data)


@pytest.mark.parametrize(
    ("text", "ns", "offset", "formatted"),
    [
        ("1970-01-01T00:00:00Z", 0, 0, "1970-01-01T00:00:00Z"),
        ("2024-05-01T10:20:30.120Z", 1714558830_120000000, 0, "2024-05-01T10:20:30.12Z"),
        ("2024-05-01T12:20:30.5+02:00", 1714558830_500000000, 7200, "2024-05-01T12:20:30.5+02:00"),
        ("2024-05-01T05:50:30-04:30", 1714558830_000000000, -16200, "2024-05-01T05:50:30-04:30"),
        (
            "2024-05-01T10:20:30.1234567891Z",
            1714558830_123456789,
            0,
            "2024-05-01T10:20:30.123456789Z",
        ),
        ("0001-01-01T00:00:00Z", -62135596800_000000000, 0, "0001-01-01T00:00:00Z"),
    ],
)
def test_rfc3339_as_go_reads_and_writes_it(text: str, ns: int, offset: int, formatted: str) -> None:
    assert t.parse_rfc3339(text) == (ns, offset)
    assert t.format_rfc3339_nano(ns, offset) == formatted


def test_rfc3339_errors_and_zero_time() -> None:
    assert t.format_rfc3339_nano(None) == "0001-01-01T00:00:00Z"
    for bad in (
        "2024-05-01 10:20:30Z",
        "2024-05-01T10:20:30",
        "2024-13-01T00:00:00Z",
        "2024-05-01T24:00:00Z",
        "2024-05-01T00:00:00+24:00",
        "2024-05-01t00:00:00z",
    ):
        with pytest.raises(errdefs.InvalidParameter, match="parsing time"):
            t.parse_rfc3339(bad)


def test_manifest_and_index_documents() -> None:
    docker = t.Manifest.__struct_config__  # the Struct is usable as a decode type
    assert docker is not None
    m = msgspec.json.decode(
        b'{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",'
        b'"config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":7,'
        b'"digest":"sha256:aa"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.'
        b'diff.tar.gzip","size":9,"digest":"sha256:bb","urls":["http://x"]}]}',
        type=t.Manifest,
    )
    assert m.media_type in t.MANIFEST_MEDIA_TYPES and m.config.media_type in t.CONFIG_MEDIA_TYPES
    assert m.layers[0].media_type == t.MEDIA_TYPE_DOCKER_LAYER_GZIP and m.layers[0].urls == [
        "http://x"
    ]
    index = msgspec.json.decode(
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":'
        b'[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:cc",'
        b'"size":3,"platform":{"architecture":"arm","os":"linux","variant":"v7",'
        b'"os.features":["f"]},"annotations":{"k":"v"},"data":"e30="}]}',
        type=t.Index,
    )
    entry = index.manifests[0]
    assert index.media_type in t.INDEX_MEDIA_TYPES
    assert entry.platform is not None and (entry.platform.variant, entry.platform.os_features) == (
        "v7",
        ["f"],
    )
    assert entry.data == b"{}" and entry.annotations == {"k": "v"}
    assert json.loads(msgspec.json.encode(entry.platform)) == {
        "architecture": "arm", "os": "linux", "os.features": ["f"], "variant": "v7",
    }  # fmt: skip


# -- GET /images/json ------------------------------------------------------------------------------


def summary(**kw: Any) -> t.ImageSummary:
    base: dict[str, Any] = {
        "containers": 2,
        "created": 1714558830,
        "id": "sha256:" + "a" * 64,
        "labels": {"z": "1", "a": "2"},
        "size": 100,
    }
    return t.ImageSummary(**{**base, **kw})


def wire_list(items: list[t.ImageSummary], api: ApiVersion) -> Any:
    return json.loads(t.encode_image_list(items, api))


def test_summary_at_1_52_is_gos_shape() -> None:
    s = summary(repo_tags=["busybox:latest"], repo_digests=None)
    [d] = wire_list([s], V(1, 52))
    assert list(d) == [
        "Containers", "Created", "Id", "Labels", "ParentId", "RepoDigests", "RepoTags",
        "SharedSize", "Size",
    ]  # fmt: skip
    assert d["RepoDigests"] == [] and d["Containers"] == 2 and d["SharedSize"] == -1
    assert list(d["Labels"]) == ["a", "z"]  # Go writes maps with sorted keys
    assert wire_list([summary(labels=None)], V(1, 52))[0]["Labels"] is None


def test_summary_per_version() -> None:
    untagged = summary()
    assert wire_list([untagged], V(1, 51))[0]["Containers"] == 2
    assert wire_list([untagged], V(1, 50))[0]["Containers"] == -1
    at43 = wire_list([untagged], V(1, 43))[0]
    assert (at43["RepoTags"], at43["RepoDigests"], at43["VirtualSize"]) == ([], [], 100)
    assert list(at43) == sorted(at43)  # compat-wrapped: a Go map
    assert "VirtualSize" not in wire_list([untagged], V(1, 44))[0]
    at42 = wire_list([untagged], V(1, 42))[0]
    assert (at42["RepoTags"], at42["RepoDigests"]) == (["<none>:<none>"], ["<none>@<none>"])
    digest_only = wire_list([summary(repo_digests=["x@sha256:1"])], V(1, 42))[0]
    assert (digest_only["RepoTags"], digest_only["RepoDigests"]) == (None, ["x@sha256:1"])


@pytest.mark.parametrize("api", [V(1, 41), V(1, 42), V(1, 43), V(1, 44), V(1, 52)])
def test_summary_matches_the_swagger(api: ApiVersion) -> None:
    body = wire_list([summary(repo_tags=["a:b"], repo_digests=["a@sha256:1"])], api)
    optional = {} if api < V(1, 44) else {"ImageSummary": ["VirtualSize"]}
    swagger.validate("GET /images/json", body, api=api, optional=optional)


# -- GET /images/{name}/json -----------------------------------------------------------------------


def inspect(**kw: Any) -> t.ImageInspect:
    cfg = t.decode_image_config(DOCKER_CONFIG)
    base: dict[str, Any] = {
        "id": "sha256:" + "a" * 64,
        "repo_tags": ["busybox:latest"],
        "created": "2024-05-01T10:20:30.123456789Z",
        "config": cfg.config,
        "architecture": "amd64",
        "os": "linux",
        "size": 4096,
        "graph_driver": t.GraphDriverData(
            data={"UpperDir": "/u", "LowerDir": "/l"}, name="overlay2"
        ),
        "root_fs_type": "layers",
        "root_fs_layers": [DIFF],
        "container": cfg.container,
        "container_config": cfg.container_config,
    }
    return t.ImageInspect(**{**base, **kw})


def wire_inspect(i: t.ImageInspect, api: ApiVersion) -> Any:
    return json.loads(t.encode_image_inspect(i, api))


def test_inspect_at_1_52() -> None:
    d = wire_inspect(inspect(), V(1, 52))
    assert list(d) == [
        "Id", "RepoTags", "RepoDigests", "Created", "Config", "Architecture", "Os", "Size",
        "GraphDriver", "RootFS", "Metadata",
    ]  # fmt: skip
    assert d["Config"] == {
        "ExposedPorts": {"443/tcp": {}, "80/tcp": {}},
        "Env": ["PATH=/bin"],
        "Cmd": ["sh"],
        "Labels": {"a": "1", "b": "2"},
    }
    assert list(d["Config"]) == ["ExposedPorts", "Env", "Cmd", "Labels"]  # Go's field order
    assert d["GraphDriver"] == {"Data": {"LowerDir": "/l", "UpperDir": "/u"}, "Name": "overlay2"}
    assert d["RootFS"] == {"Type": "layers", "Layers": [DIFF]}
    assert d["Metadata"] == {"LastTagTime": "0001-01-01T00:00:00Z"}
    assert d["RepoDigests"] == []


def test_inspect_config_omitempty_fields() -> None:
    oci = t.decode_image_config(OCI_CONFIG)
    d = wire_inspect(inspect(config=oci.config, variant="v8", os_version="1"), V(1, 52))
    assert d["Config"] == {
        "Env": ["A=1"],
        "Entrypoint": ["/x"],
        "StopSignal": "SIGTERM",
        "ArgsEscaped": True,
        "Healthcheck": {"Test": ["CMD", "true"], "Interval": 1000000000},
        "Shell": ["/bin/sh"],
    }
    assert (d["Variant"], d["OsVersion"]) == ("v8", "1")
    empty = wire_inspect(inspect(config=None, root_fs_layers=[], graph_driver=None), V(1, 52))
    assert empty["Config"] == {} and empty["RootFS"] == {"Type": "layers"}
    assert "GraphDriver" not in empty


def test_inspect_at_1_52_adds_parent_and_docker_version_only_when_set() -> None:
    d = wire_inspect(inspect(parent="sha256:" + "9" * 64, docker_version="20.10.7"), V(1, 52))
    assert d["Parent"] == "sha256:" + "9" * 64 and d["DockerVersion"] == "20.10.7"
    assert "Comment" not in d and "Author" not in d
    assert list(d) == sorted(d)  # compat-wrapped
    assert "Parent" not in wire_inspect(inspect(comment="c", author="me"), V(1, 52))


def test_inspect_before_1_52() -> None:
    d = wire_inspect(inspect(), V(1, 51))
    assert (d["Parent"], d["Comment"], d["DockerVersion"], d["Author"]) == ("", "", "", "")
    assert d["Config"]["Entrypoint"] is None and d["Config"]["WorkingDir"] == ""
    assert d["Config"]["Cmd"] == ["sh"] and "Hostname" not in d["Config"]
    assert list(d) == sorted(d) and list(d["Config"]) == sorted(d["Config"])
    at49 = wire_inspect(inspect(), V(1, 49))
    assert at49["Config"]["Hostname"] == "" and at49["Config"]["Image"] == ""  # never the config's
    assert at49["Config"]["AttachStdin"] is False and "Container" not in at49
    at44 = wire_inspect(inspect(), V(1, 44))
    assert at44["Container"] == "c0ffee"
    assert at44["ContainerConfig"]["Hostname"] == "c0ffee"
    assert at44["ContainerConfig"]["Env"] is None and at44["ContainerConfig"]["Labels"] is None
    assert "VirtualSize" not in at44
    at43 = wire_inspect(inspect(created=""), V(1, 43))
    assert at43["VirtualSize"] == 4096 and at43["Created"] == "0001-01-01T00:00:00Z"
    assert "Created" not in wire_inspect(inspect(created=""), V(1, 44))


def test_container_config_is_the_full_go_shape() -> None:
    d = t.container_config_wire(None)
    assert list(d) == [
        "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "Tty",
        "OpenStdin", "StdinOnce", "Env", "Cmd", "Image", "Volumes", "WorkingDir", "Entrypoint",
        "Labels",
    ]  # fmt: skip
    full = t.container_config_wire(
        t.ContainerConfig(
            network_disabled=True, stop_timeout=3, on_build=["RUN x"], volumes={"/v": None}
        )
    )
    assert full["NetworkDisabled"] is True and full["StopTimeout"] == 3
    assert full["OnBuild"] == ["RUN x"] and full["Volumes"] == {"/v": {}}


# -- history, delete, prune ------------------------------------------------------------------------


def test_history_delete_and_prune_shapes() -> None:
    history = json.loads(
        t.encode_history(
            [
                t.HistoryResponseItem(
                    id="sha256:" + "a" * 64, created=5, created_by="CMD", tags=["a:b"]
                ),
                t.HistoryResponseItem(created=4, created_by="ADD", size=10, comment="c"),
            ]
        )
    )
    assert list(history[0]) == ["Comment", "Created", "CreatedBy", "Id", "Size", "Tags"]
    assert history[1]["Id"] == "<missing>" and history[1]["Tags"] is None
    # dockerd sends `"Tags": null` for untagged rows (a Go nil slice); 1.41's swagger says array.
    swagger.validate("GET /images/{name}/history", history[:1])
    deleted = [t.DeleteResponse(untagged="busybox:latest"), t.DeleteResponse(deleted="sha256:1")]
    body = json.loads(t.encode_delete(deleted))
    assert body == [{"Untagged": "busybox:latest"}, {"Deleted": "sha256:1"}]
    either = {"ImageDeleteResponseItem": ["Deleted", "Untagged"]}  # omitempty: one of the two
    swagger.validate("DELETE /images/{name}", body, optional=either)
    assert json.loads(t.encode_prune_report(t.ImagesPruneReport())) == {
        "ImagesDeleted": None,
        "SpaceReclaimed": 0,
    }
    report = json.loads(
        t.encode_prune_report(t.ImagesPruneReport(images_deleted=deleted, space_reclaimed=7))
    )
    assert report["ImagesDeleted"][1] == {"Deleted": "sha256:1"}
    swagger.validate("POST /images/prune", report, optional=either)
