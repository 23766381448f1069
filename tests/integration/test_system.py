"""System endpoints through the real docker CLI and docker-py against a real pymobyd."""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import subprocess
import threading
import time

import docker
import pytest
from harness import Daemon


def test_docker_version_shows_server_api_range(daemon: Daemon) -> None:
    out = daemon.docker(
        "version", "--format", "{{.Server.APIVersion}} {{.Server.MinAPIVersion}} {{.Server.Os}}"
    ).stdout.split()
    assert out == ["1.52", "1.24", "linux"]
    comps = json.loads(daemon.docker("version", "--format", "{{json .Server.Components}}").stdout)
    names = [c["Name"] for c in comps]
    assert names[:3] == ["Engine", "runc", "conmon"]
    runc = subprocess.run(["runc", "--version"], capture_output=True, text=True, check=True)
    assert comps[1]["Version"] in runc.stdout.splitlines()[0]


def test_docker_info_prints_real_values(daemon: Daemon) -> None:
    info = json.loads(daemon.docker("info", "--format", "{{json .}}").stdout)
    assert info["KernelVersion"] == platform.release()
    assert info["NCPU"] == len(os.sched_getaffinity(0))
    assert info["DockerRootDir"] == str(daemon.data_root)
    assert info["OSType"] == "linux"
    assert info["Containers"] == 0
    assert info["Images"] == 0
    assert info["ServerVersion"]
    assert info["Name"] == socket.gethostname()
    with open("/proc/meminfo") as f:
        total_kb = int(f.readline().split()[1])
    assert info["MemTotal"] == total_kb * 1024
    assert info["ID"] == daemon.json("/info")["ID"]
    text = daemon.docker("info").stdout
    assert "Server Version:" in text
    assert f"Docker Root Dir: {daemon.data_root}" in text


def test_docker_system_df_answers(daemon: Daemon) -> None:
    out = daemon.docker("system", "df").stdout
    assert out.splitlines()[0].split()[:2] == ["TYPE", "TOTAL"]
    assert "Images" in out and "Containers" in out


def test_docker_py_version_and_info(daemon: Daemon) -> None:
    client = daemon.client()
    try:
        assert client.version()["ApiVersion"] == "1.52"
        assert client.info()["ID"] == daemon.json("/info")["ID"]
        assert client.ping() is True
    finally:
        client.close()


def test_old_client_1_24(daemon: Daemon) -> None:
    client = daemon.client(version="1.24")
    try:
        assert client.version()["MinAPIVersion"] == "1.24"
        assert "ID" in client.info()
    finally:
        client.close()
    status, _, _ = daemon.request("GET", "/v1.24/version")
    assert status == 200
    res = daemon.docker("version", "--format", "{{.Client.APIVersion}}")
    assert res.stdout.strip() == "1.50"
    env_res = subprocess.run(
        ["/usr/local/bin/docker", "version", "--format", "{{.Client.APIVersion}}"],
        env={**os.environ, "DOCKER_HOST": daemon.host, "DOCKER_API_VERSION": "1.24"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert env_res.stdout.strip() == "1.24"


def test_ping_head_and_get(daemon: Daemon) -> None:
    for path in ("/_ping", "/v1.41/_ping", "/v1.52/_ping"):
        status, headers, body = daemon.request("GET", path)
        assert (status, body) == (200, b"OK")
        assert headers["Api-Version"] == "1.52"
        assert headers["Builder-Version"] == "1"
        assert headers["Swarm"] == "inactive"
        assert headers["Cache-Control"] == "no-cache, no-store, must-revalidate"
        assert headers["Pragma"] == "no-cache"
        assert headers["Ostype"] == "linux"
        assert headers["Server"].startswith("Docker/") and headers["Server"].endswith("(linux)")
        status, headers, body = daemon.request("HEAD", path)
        assert (status, body) == (200, b"")
        assert headers["Content-Length"] == "0"


def test_version_errors_and_404(daemon: Daemon) -> None:
    status, headers, body = daemon.request("GET", "/v1.19/version")
    assert status == 400
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["message"] == (
        "client version 1.19 is too old. Minimum supported API version is 1.24, please upgrade "
        "your client to a newer version"
    )
    status, _, body = daemon.request("GET", "/v9.99/info")
    assert status == 400
    assert json.loads(body)["message"] == (
        "client version 9.99 is too new. Maximum supported API version is 1.52"
    )
    for method, path in (("GET", "/nope"), ("DELETE", "/version"), ("GET", "/v1.41/nope")):
        status, headers, body = daemon.request(method, path)
        assert status == 404
        assert headers["Content-Type"] == "application/json"
        assert json.loads(body) == {"message": "page not found"}


def test_bad_input_gets_4xx_and_daemon_survives(daemon: Daemon) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(daemon.sock)
        s.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert b'{"message":"malformed HTTP request' in reply
    status, _, body = daemon.request("GET", "/events?since=yesterday")
    assert status == 400
    assert "invalid timestamp" in json.loads(body)["message"]
    status, _, body = daemon.request("GET", "/events?filters=%7Bbad")
    assert status == 400
    status, _, _ = daemon.request("GET", "/_ping")
    assert status == 200


def _sighup_and_wait(daemon: Daemon, count: int) -> None:
    daemon.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while daemon.log().count("Reloaded configuration") < count:
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.05)


def test_events_replay_then_live_then_until(fresh_daemon: Daemon) -> None:
    d = fresh_daemon.start()
    _sighup_and_wait(d, 1)
    proc = subprocess.Popen(
        [
            "/usr/local/bin/docker",
            "system",
            "events",
            "--since",
            "10m",
            "--format",
            "{{json .}}",
        ],
        env={**os.environ, "DOCKER_HOST": d.host},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())  # replayed from the ring buffer
        assert (first["Type"], first["Action"]) == ("daemon", "reload")
        assert first["Actor"]["ID"] == d.json("/info")["ID"]
        timer = threading.Timer(0.3, _sighup_and_wait, (d, 2))
        timer.start()
        second = json.loads(proc.stdout.readline())  # live
        timer.join()
        assert second["Action"] == "reload"
        assert second["timeNano"] > first["timeNano"]
    finally:
        proc.terminate()
        proc.wait(10)
    # --until in the past: replay only, then the stream ends by itself. The CLI sends whole
    # seconds, so let the second of the last event pass first.
    time.sleep(1.1)
    res = d.docker("system", "events", "--since", "10m", "--until", "0s", "--format", "{{.Action}}")
    assert res.stdout.split() == ["reload", "reload"]
    # filters: nothing matches type=container
    res = d.docker("system", "events", "--since", "10m", "--until", "0s", "-f", "type=container")
    assert res.stdout == ""


def test_sigterm_exits_zero_and_removes_pidfile(fresh_daemon: Daemon) -> None:
    d = fresh_daemon.start()
    assert d.pidfile.read_text().strip() == str(d.proc.pid if d.proc else -1)
    d.signal(signal.SIGTERM)
    assert d.wait() == 0
    assert not d.pidfile.exists()
    assert not os.path.exists(d.sock)


def test_sigterm_ends_open_event_streams(fresh_daemon: Daemon) -> None:
    d = fresh_daemon.start()
    proc = subprocess.Popen(
        ["/usr/local/bin/docker", "system", "events"],
        env={**os.environ, "DOCKER_HOST": d.host},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(0.5)
        start = time.monotonic()
        d.signal(signal.SIGTERM)
        assert d.wait() == 0
        assert time.monotonic() - start < 5
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_kill9_keeps_engine_id_and_database(fresh_daemon: Daemon) -> None:
    d = fresh_daemon.start()
    engine_id = d.json("/info")["ID"]
    for _ in range(3):
        d.kill9()
        d.start()
        assert d.json("/info")["ID"] == engine_id
    res = subprocess.run(
        [
            "python3",
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); "
            "print(c.execute('PRAGMA integrity_check').fetchone()[0])",
            str(d.data_root / "meta.db"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert res.stdout.strip() == "ok"


def test_second_daemon_on_same_data_root_refuses(fresh_daemon: Daemon) -> None:
    d = fresh_daemon.start()
    other_sock = d.dir / "other.sock"
    args = d.args()
    args[args.index(d.host)] = f"unix://{other_sock}"
    args[args.index(str(d.pidfile))] = str(d.dir / "other.pid")
    res = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    assert res.returncode == 1
    assert "data-root" in res.stderr
    assert d.proc is not None and str(d.proc.pid) in res.stderr
    assert d.request("GET", "/_ping")[0] == 200


def test_config_conflict_stops_daemon(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    d.config_file.write_text(json.dumps({"debug": False, "no-such-key": 1}))
    res = subprocess.run(
        [*d.args(), "--debug"], capture_output=True, text=True, timeout=30, check=False
    )
    assert res.returncode == 1
    assert "no-such-key" in res.stderr
    d.config_file.write_text(json.dumps({"debug": False}))
    res = subprocess.run(
        [*d.args(), "--debug"], capture_output=True, text=True, timeout=30, check=False
    )
    assert res.returncode == 1
    assert (
        "the following directives are specified both as a flag and in the configuration file: "
        "debug: (from flag: true, from file: false)"
    ) in res.stderr
    d.config_file.write_text("{not json")
    res = subprocess.run(d.args(), capture_output=True, text=True, timeout=30, check=False)
    assert res.returncode == 1
    assert str(d.config_file) in res.stderr


def test_unix_socket_mode(daemon: Daemon) -> None:
    assert os.stat(daemon.sock).st_mode & 0o777 == 0o660


def test_docker_py_against_tcp_tls(
    fresh_daemon: Daemon, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests lets these variables override the CA that docker-py passes it
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    from pathlib import Path

    from certs import make_certs

    certs = make_certs(Path(str(tmp_path)) / "certs")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    d = fresh_daemon
    d.extra_args += [
        "-H",
        f"tcp://127.0.0.1:{port}",
        "--tlsverify",
        "--tlscacert",
        str(certs.ca),
        "--tlscert",
        str(certs.server_cert),
        "--tlskey",
        str(certs.server_key),
    ]
    d.start()
    cert_dir = certs.dir
    (cert_dir / "cert.pem").write_bytes(certs.client_cert.read_bytes())
    (cert_dir / "key.pem").write_bytes(certs.client_key.read_bytes())
    env = {
        **os.environ,
        "DOCKER_HOST": f"tcp://127.0.0.1:{port}",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(cert_dir),
    }
    res = subprocess.run(
        ["/usr/local/bin/docker", "version", "--format", "{{.Server.APIVersion}}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "1.52"
    tls = docker.tls.TLSConfig(
        client_cert=(str(certs.client_cert), str(certs.client_key)),
        ca_cert=str(certs.ca),
        verify=True,
    )
    client = docker.DockerClient(base_url=f"https://127.0.0.1:{port}", tls=tls)
    try:
        assert client.ping() is True
    finally:
        client.close()
    # without a client certificate the handshake is refused
    res = subprocess.run(
        ["/usr/local/bin/docker", "version"],
        env={**env, "DOCKER_CERT_PATH": str(cert_dir / "nowhere")},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert res.returncode != 0
