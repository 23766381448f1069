"""Live responses of /_ping, /version, /info, /events, /system/df against moby's swagger (1.41).

The spec is Debian's golang-github-docker-docker-dev copy of moby's api/swagger.yaml; a 1.41
client is what reads these, so the request is made at /v1.41.
"""

from __future__ import annotations

import json
import signal
import time

import pytest
from harness import Daemon

from swagger import default_swagger, validate


@pytest.mark.parametrize("method", ["get", "head"])
def test_ping_headers_per_swagger(daemon: Daemon, method: str) -> None:
    spec = default_swagger().doc["paths"]["/_ping"][method]["responses"][200]
    status, headers, body = daemon.request(method.upper(), "/v1.41/_ping")
    assert status == 200
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, header in spec.get("headers", {}).items():
        assert name.lower() in lowered, f"/_ping lacks header {name}"
        if header.get("type") == "string":
            assert isinstance(lowered[name.lower()], str)
    if method == "get":
        assert spec["schema"]["type"] == "string"
        assert body == b"OK"


def test_version_matches_swagger(daemon: Daemon) -> None:
    validate("GET /version", daemon.json("/v1.41/version"))


def test_info_matches_swagger(daemon: Daemon) -> None:
    validate("SystemInfo", daemon.json("/v1.41/info"))


def test_system_df_matches_swagger(daemon: Daemon) -> None:
    validate("GET /system/df", daemon.json("/v1.41/system/df"))


def test_events_match_swagger(fresh_daemon: Daemon) -> None:
    d = fresh_daemon.start()
    d.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "Reloaded configuration" not in d.log():
        assert time.monotonic() < deadline, d.log()
        time.sleep(0.05)
    now = int(time.time()) + 1
    status, headers, body = d.request("GET", f"/v1.41/events?since=0&until={now}")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    lines = [json.loads(line) for line in body.decode().splitlines() if line]
    assert lines, "no event replayed"
    for event in lines:
        validate("GET /events", event)
    status, headers, _ = d.request("GET", f"/v1.52/events?since=0&until={now}")
    assert headers["Content-Type"] == "application/jsonl"
