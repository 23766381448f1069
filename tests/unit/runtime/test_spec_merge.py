"""The image config merged into the request, Entrypoint/Cmd to argv, environment rules."""

from __future__ import annotations

import pytest

from pymoby import errdefs
from pymoby.api.types.containers import Config, HealthConfig
from pymoby.runtime import merge

IMAGE = Config(
    user="app",
    exposed_ports={"80/tcp": {}},
    env=["PATH=/app/bin:/usr/bin", "LANG=C.UTF-8"],
    labels={"maintainer": "x", "version": "1"},
    cmd=["serve"],
    entrypoint=["/entry.sh"],
    healthcheck=HealthConfig(test=["CMD", "true"], interval=30_000_000_000, retries=3),
    working_dir="/app",
    volumes={"/data": {}},
    stop_signal="SIGQUIT",
)


def test_image_fills_what_the_request_left_empty() -> None:
    got = merge.merge_image_config(Config(image="img"), IMAGE)
    assert got.user == "app" and got.working_dir == "/app" and got.stop_signal == "SIGQUIT"
    assert got.entrypoint == ["/entry.sh"] and got.cmd == ["serve"]
    assert got.env == ["PATH=/app/bin:/usr/bin", "LANG=C.UTF-8"]
    assert got.labels == {"maintainer": "x", "version": "1"}
    assert got.exposed_ports == {"80/tcp": {}} and got.volumes == {"/data": {}}
    assert got.healthcheck == IMAGE.healthcheck


def test_request_values_win_and_maps_merge() -> None:
    req = Config(
        user="root",
        env=["LANG=en_US", "EXTRA=1"],
        labels={"version": "2"},
        exposed_ports={"443/tcp": {}},
        volumes={"/logs": {}},
        healthcheck=HealthConfig(timeout=5_000_000_000),
    )
    got = merge.merge_image_config(req, IMAGE)
    assert got.user == "root"
    assert got.env == ["LANG=en_US", "EXTRA=1", "PATH=/app/bin:/usr/bin"]
    assert got.labels == {"version": "2", "maintainer": "x"}
    assert got.exposed_ports == {"443/tcp": {}, "80/tcp": {}}
    assert got.volumes == {"/logs": {}, "/data": {}}
    assert got.healthcheck == HealthConfig(
        test=["CMD", "true"], interval=30_000_000_000, timeout=5_000_000_000, retries=3
    )
    assert req.env == ["LANG=en_US", "EXTRA=1"]  # the request itself is not modified


@pytest.mark.parametrize(
    ("entrypoint", "cmd", "want_entrypoint", "want_cmd"),
    [
        (None, None, ["/entry.sh"], ["serve"]),
        (None, ["sh"], ["/entry.sh"], ["sh"]),  # cmd replaces the image's, entrypoint kept
        (["/other"], None, ["/other"], None),  # a new entrypoint drops the image's cmd
        ([""], ["id"], None, ["id"]),  # [""] resets the entrypoint
        ([], None, [], ["serve"]),  # an explicit empty list keeps no entrypoint
    ],
)
def test_entrypoint_and_cmd(
    entrypoint: list[str] | None,
    cmd: list[str] | None,
    want_entrypoint: list[str] | None,
    want_cmd: list[str] | None,
) -> None:
    got = merge.merge_image_config(Config(entrypoint=entrypoint, cmd=cmd), IMAGE)
    assert (got.entrypoint, got.cmd) == (want_entrypoint, want_cmd)


def test_no_command() -> None:
    with pytest.raises(errdefs.InvalidParameter, match=r"^no command specified$"):
        merge.merge_image_config(Config(), None)
    with pytest.raises(errdefs.InvalidParameter, match=r"^no command specified$"):
        merge.merge_image_config(Config(entrypoint=[""]), Config())
    # `docker run --entrypoint= image`: the image's Cmd is not used either, as in dockerd
    with pytest.raises(errdefs.InvalidParameter, match=r"^no command specified$"):
        merge.merge_image_config(Config(entrypoint=[""]), IMAGE)


def test_entrypoint_and_args() -> None:
    assert merge.entrypoint_and_args(None, ["a", "b"]) == ("a", ["b"])
    assert merge.entrypoint_and_args(["e", "-x"], ["a"]) == ("e", ["-x", "a"])


@pytest.mark.parametrize(
    ("defaults", "overrides", "env"),
    [
        (["A=1", "B=2"], ["B=3", "C=4"], ["A=1", "B=3", "C=4"]),
        (["A=1", "B=2"], ["A"], ["B=2"]),  # a bare key unsets
        (["A=1"], ["Z"], ["A=1"]),  # unsetting an unknown key does nothing
        (["A=1"], ["C=1", "C=2"], ["A=1", "C=1", "C=2"]),  # appended values are not deduplicated
        (["A=1"], ["A", "A=5"], ["A=5"]),
    ],
)
def test_replace_or_append_env(defaults: list[str], overrides: list[str], env: list[str]) -> None:
    assert merge.replace_or_append_env(defaults, overrides) == env
