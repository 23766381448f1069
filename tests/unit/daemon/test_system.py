"""SystemService: derivations with fake host/tools, and its JSON against moby's API 1.41 spec."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests import swagger

import pymoby
from pymoby import errdefs
from pymoby.api.types import system as t
from pymoby.api.versions import ApiVersion
from pymoby.daemon import system
from pymoby.daemon.system import EngineBuild, InfoCounts, SecuritySettings, SystemService
from pymoby.kernel.cgroups import CgroupInfo
from pymoby.kernel.sysinfo import HostFacts, LiveFacts
from pymoby.runtime.binaries import ToolVersion

RFC3339_NANO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,8}[1-9])?(Z|[+-]\d\d:\d\d)"

V1_FULL = CgroupInfo(
    mode="hybrid",
    memory_limit=True,
    swap_limit=True,
    memory_reservation=True,
    oom_kill_disable=True,
    memory_swappiness=True,
    cpu_shares=True,
    cpu_cfs=True,
    cpu_realtime=True,
    cpuset=True,
    pids_limit=True,
    blkio_read_bps_device=True,
    blkio_write_bps_device=True,
    blkio_read_iops_device=True,
    blkio_write_iops_device=True,
    devices=True,
)
V2_FULL = dataclasses.replace(
    V1_FULL, mode="unified", oom_kill_disable=False, blkio_weight=True, blkio_weight_device=True
)


def host_facts(cg: CgroupInfo = V1_FULL, **overrides: Any) -> HostFacts:
    values: dict[str, Any] = {
        "kernel_version": "6.1.0-13-amd64",
        "operating_system": "Debian GNU/Linux 12 (bookworm)",
        "os_version": "12",
        "architecture": "x86_64",
        "go_arch": "amd64",
        "ncpu": 4,
        "mem_total": 8 << 30,
        "cgroups": cg,
        "seccomp": True,
        "apparmor": False,
        "selinux": False,
        "cgroup_namespaces": True,
    }
    values.update(overrides)
    return HostFacts(**values)


def live_facts(**overrides: Any) -> LiveFacts:
    values: dict[str, Any] = {
        "hostname": "node1",
        "ipv4_forwarding": True,
        "bridge_nf_iptables": True,
        "bridge_nf_ip6tables": True,
        "open_fds": 17,
    }
    values.update(overrides)
    return LiveFacts(**values)


class FakeHost:
    def __init__(self, static: HostFacts | None = None, live: LiveFacts | None = None) -> None:
        self.static = static or host_facts()
        self.live = live or live_facts()

    def static_facts(self) -> HostFacts:
        return self.static

    def live_facts(self) -> LiveFacts:
        return self.live


def found(binary: str, version: str, commit: str) -> ToolVersion:
    return ToolVersion(binary, f"/usr/bin/{binary}", version=version, commit=commit)


class FakeTools:
    def __init__(self, *tools: ToolVersion, features: dict[str, str] | None = None) -> None:
        self.tools = {tool.binary: tool for tool in tools}
        self.feature_docs = features or {}
        self.asked: list[str] = []

    def _get(self, binary: str) -> ToolVersion:
        self.asked.append(binary)
        return self.tools.get(
            binary, ToolVersion(binary, None, error=f"{binary}: executable file not found")
        )

    async def runtime(self, binary: str) -> ToolVersion:
        return self._get(binary)

    async def conmon(self, binary: str) -> ToolVersion:
        return self._get(binary)

    async def init(self, binary: str) -> ToolVersion:
        return self._get(binary)

    async def features(self, binary: str) -> str | None:
        return self.feature_docs.get(binary)


ALL_TOOLS = (
    found("runc", "1.1.5+ds1", "1.1.5+ds1-1+deb12u1"),
    found("conmon", "2.1.6", "unknown"),
    found("docker-init", "0.19.0", ""),
)


def service(
    host: FakeHost | None = None, tools: FakeTools | None = None, **kwargs: Any
) -> SystemService:
    kwargs.setdefault("engine_id", "6f5b2d9c-engine")
    kwargs.setdefault("data_root", "/var/lib/pymoby")
    kwargs.setdefault("build", EngineBuild(git_commit="abc1234"))
    return SystemService(host=host or FakeHost(), tools=tools or FakeTools(*ALL_TOOLS), **kwargs)


# ---------------------------------------------------------------------------- /version


async def test_version_components_and_fields() -> None:
    v = await service(experimental=True).version()
    assert v.version == pymoby.__version__
    assert (v.api_version, v.min_api_version) == ("1.52", "1.24")
    assert (v.os, v.arch, v.kernel_version) == ("linux", "amd64", "6.1.0-13-amd64")
    assert v.git_commit == "abc1234"
    assert v.experimental is True
    assert v.go_version == "" and v.build_time == ""
    assert v.platform.name == "pymoby"
    assert [(c.name, c.version) for c in v.components] == [
        ("Engine", pymoby.__version__),
        ("runc", "1.1.5+ds1"),
        ("conmon", "2.1.6"),
        ("docker-init", "0.19.0"),
    ]
    engine = v.components[0].details
    assert engine["GitCommit"] == "abc1234"
    assert engine["Experimental"] == "true"
    assert engine["Arch"] == "amd64" and engine["Os"] == "linux"
    assert "GoVersion" not in engine and "BuildTime" not in engine
    assert v.components[1].details == {"GitCommit": "1.1.5+ds1-1+deb12u1"}
    assert v.components[3].details == {"GitCommit": ""}


async def test_version_leaves_out_missing_binaries_and_uses_build_time() -> None:
    tools = FakeTools(found("runc", "1.1.5", "x"))
    build = EngineBuild(git_commit="unknown", build_time="2024-01-02T03:04:05.000000000+00:00")
    v = await service(tools=tools, build=build).version()
    assert [c.name for c in v.components] == ["Engine", "runc"]
    assert v.build_time == build.build_time
    assert v.components[0].details["BuildTime"] == build.build_time


async def test_version_uses_configured_runtime_path() -> None:
    tools = FakeTools(found("/opt/crun", "1.8", "c0ffee"), *ALL_TOOLS[1:])
    svc = service(
        tools=tools, default_runtime="crun", runtimes={"crun": t.Runtime(path="/opt/crun")}
    )
    v = await svc.version()
    assert [(c.name, c.version) for c in v.components][1] == ("crun", "1.8")


# ---------------------------------------------------------------------------- /info


async def test_info_counts_and_plain_fields() -> None:
    svc = service(
        labels=["a=b"],
        debug=True,
        event_listeners=lambda: 3,
        plugins=lambda: t.PluginsInfo(volume=["local"]),
        storage_driver="overlay2",
        driver_status=[("Backing Filesystem", "extfs")],
        default_address_pools=[t.NetworkAddressPool("10.10.0.0/16", 24)],
    )
    info = await svc.info(InfoCounts(containers_running=2, containers_paused=1, images=5))
    assert (info.containers, info.containers_running, info.containers_paused) == (3, 2, 1)
    assert (info.containers_stopped, info.images) == (0, 5)
    assert info.id == "6f5b2d9c-engine"
    assert info.name == "node1"  # live hostname
    assert info.labels == ["a=b"] and info.debug is True
    assert info.n_events_listener == 3 and info.n_fd == 17
    assert info.n_goroutines >= 2  # this task + the main thread
    assert info.plugins.volume == ["local"]
    assert (info.driver, info.driver_status) == ("overlay2", [("Backing Filesystem", "extfs")])
    assert info.docker_root_dir == "/var/lib/pymoby"
    assert (info.os_type, info.architecture, info.ncpu) == ("linux", "x86_64", 4)
    assert info.server_version == pymoby.__version__
    assert info.logging_driver == "json-file" and info.cgroup_driver == "cgroupfs"
    assert info.cgroup_version == "1"
    assert info.live_restore_enabled is True
    assert info.isolation == "" and info.init_binary == "docker-init"
    assert info.swarm.local_node_state == "inactive"
    assert info.containerd_commit.ID == "N/A"
    assert info.runc_commit.ID == "1.1.5+ds1-1+deb12u1"
    assert info.init_commit.ID == ""
    assert info.registry_config is not None
    assert info.registry_config.InsecureRegistryCIDRs == ["::1/128", "127.0.0.0/8"]
    assert info.registry_config.IndexConfigs["docker.io"].official is True
    assert info.index_server_address == "https://index.docker.io/v1/"
    assert info.default_address_pools == [t.NetworkAddressPool("10.10.0.0/16", 24)]
    assert (info.bridge_nf_iptables, info.bridge_nf_ip6tables) == (True, True)
    assert info.warnings == []
    assert re.fullmatch(RFC3339_NANO, info.system_time), info.system_time


async def test_info_runtimes_with_features_status() -> None:
    tools = FakeTools(*ALL_TOOLS, features={"runc": '{"ociVersionMin":"1.0.0"}'})
    runtimes = {
        "runc": t.Runtime(path="runc"),
        "alt": t.Runtime(path="/x/alt", runtime_args=["-d"]),
    }
    info = await service(tools=tools, runtimes=runtimes).info(InfoCounts())
    assert info.runtimes == {
        "runc": t.Runtime(
            path="runc",
            status={"org.opencontainers.runtime-spec.features": '{"ociVersionMin":"1.0.0"}'},
        ),
        "alt": t.Runtime(path="/x/alt", runtime_args=["-d"]),
    }


async def test_info_v1_warnings_follow_dockerd() -> None:
    cg = dataclasses.replace(
        V1_FULL, swap_limit=False, oom_kill_disable=False, blkio_read_iops_device=False
    )
    host = FakeHost(host_facts(cg), live_facts(ipv4_forwarding=False))
    info = await service(host).info(InfoCounts())
    assert (info.swap_limit, info.oom_kill_disable) == (False, False)
    assert info.warnings == [
        "WARNING: No swap limit support",
        "WARNING: No oom kill disable support",
        "WARNING: No blkio throttle.read_iops_device support",
        "WARNING: IPv4 forwarding is disabled",
    ]


async def test_info_v2_warnings_follow_dockerd() -> None:
    cg = dataclasses.replace(
        V2_FULL, blkio_weight=False, blkio_weight_device=False, blkio_write_bps_device=False
    )
    info = await service(FakeHost(host_facts(cg))).info(InfoCounts())
    assert info.cgroup_version == "2"
    assert info.oom_kill_disable is False
    assert info.warnings == [  # no oom warning on v2: nothing a user can do
        "WARNING: No io.weight support",
        "WARNING: No io.weight (per device) support",
        "WARNING: No io.max (wbps) support",
    ]


async def test_info_without_cgroup_driver_reports_no_limits() -> None:
    info = await service(cgroup_driver="none").info(InfoCounts())
    assert not (info.memory_limit or info.cpu_shares or info.pids_limit or info.cpu_set)
    assert info.warnings[0].startswith("WARNING: Running in rootless-mode without cgroups.")


async def test_info_missing_helpers_are_reported() -> None:
    info = await service(tools=FakeTools()).info(InfoCounts())
    assert info.runc_commit.ID == "N/A" and info.init_commit.ID == "N/A"
    assert info.warnings == [
        "WARNING: runc: executable file not found",
        "WARNING: conmon: executable file not found",
    ]


@pytest.mark.parametrize(
    ("host", "security", "expected", "warning"),
    [
        (host_facts(), SecuritySettings(), ["name=seccomp,profile=builtin"], False),
        (
            host_facts(apparmor=True, selinux=True),
            SecuritySettings(selinux_enabled=True, userns_remap=True, no_new_privileges=True),
            [
                "name=apparmor",
                "name=seccomp,profile=builtin",
                "name=selinux",
                "name=userns",
                "name=no-new-privileges",
            ],
            False,
        ),
        (host_facts(selinux=True), SecuritySettings(), ["name=seccomp,profile=builtin"], False),
        (
            host_facts(seccomp=False),
            SecuritySettings(seccomp_profile="/etc/p.json"),
            [],
            False,
        ),
        (
            host_facts(),
            SecuritySettings(seccomp_profile="unconfined", cgroupns_mode="private"),
            ["name=seccomp,profile=unconfined", "name=cgroupns"],
            True,
        ),
        (
            host_facts(V2_FULL),
            SecuritySettings(),
            ["name=seccomp,profile=builtin", "name=cgroupns"],
            False,
        ),
        (
            host_facts(V2_FULL),
            SecuritySettings(cgroupns_mode="host"),
            ["name=seccomp,profile=builtin"],
            False,
        ),
    ],
)
async def test_security_options(
    host: HostFacts, security: SecuritySettings, expected: list[str], warning: bool
) -> None:
    info = await service(FakeHost(host), security=security).info(InfoCounts())
    assert info.security_options == expected
    message = "WARNING: daemon is not using the default seccomp profile"
    assert (message in info.warnings) is warning


async def test_info_proxies_masked_and_env_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "https://bob:secret@proxy:3128")
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setenv("no_proxy", "localhost")
    monkeypatch.delenv("NO_PROXY", raising=False)
    svc = service(http_proxy="http://user:pw@proxy.example:8080/", name="given")
    info = await svc.info(InfoCounts())
    assert info.http_proxy == "http://xxxxx:xxxxx@proxy.example:8080/"
    assert info.https_proxy == "https://xxxxx:xxxxx@proxy:3128"
    assert info.no_proxy == "localhost"
    assert info.name == "given"


async def test_info_api_and_driver_warnings() -> None:
    svc = service(
        hosts=["unix:///var/run/docker.sock", "tcp://0.0.0.0:2375"],
        storage_driver="overlay",
        driver_status=[("Extended file attributes", "best-effort")],
    )
    warnings = (await svc.info(InfoCounts())).warnings
    assert warnings[0].startswith(
        "[DEPRECATION NOTICE]: API is accessible on http://0.0.0.0:2375 without encryption."
    )
    assert "WARNING: The overlay storage-driver is deprecated" in warnings[1]
    assert warnings[2].startswith("WARNING: overlay: extended file attributes")
    tls = service(hosts=["tcp://0.0.0.0:2376"], tls=True)
    (notice,) = (await tls.info(InfoCounts())).warnings
    assert "https://0.0.0.0:2376 without TLS client verification." in notice
    verified = service(hosts=["tcp://0.0.0.0:2376"], tls=True, tls_verify=True)
    assert (await verified.info(InfoCounts())).warnings == []


# ---------------------------------------------------------------------------- /system/df


async def test_disk_usage_types() -> None:
    svc = service()
    every = await svc.disk_usage()
    assert every == t.DiskUsage(
        images=t.UsageSummary(),
        containers=t.UsageSummary(),
        volumes=t.UsageSummary(),
        build_cache=t.UsageSummary(),
    )
    some = await svc.disk_usage(["volume", "image"])
    assert some == t.DiskUsage(images=t.UsageSummary(), volumes=t.UsageSummary())
    assert await svc.disk_usage(["volume"], ApiVersion(1, 41)) == every  # ignored below 1.42
    with pytest.raises(errdefs.InvalidParameter, match="unknown object type: layers"):
        await svc.disk_usage(["image", "layers"])


async def test_disk_usage_providers() -> None:
    async def volumes() -> t.UsageSummary:
        return t.UsageSummary(active_count=1, total_count=2, total_size=30, reclaimable=10)

    du = await service(usage={"volume": volumes}).disk_usage(["volume"])
    assert du.volumes == t.UsageSummary(
        active_count=1, total_count=2, total_size=30, reclaimable=10
    )
    with pytest.raises(ValueError, match="unknown disk usage object types"):
        service(usage={"layers": volumes})


# ---------------------------------------------------------------------------- helpers


@pytest.fixture
def tz_plus_two() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "XYZ-2"  # POSIX: two hours east of UTC, needs no tzdata
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


def test_rfc3339_nano_like_go(tz_plus_two: None) -> None:
    assert system.rfc3339_nano(0) == "1970-01-01T02:00:00+02:00"
    assert system.rfc3339_nano(1_500_000_000) == "1970-01-01T02:00:01.5+02:00"
    assert system.rfc3339_nano(1_000_000_123) == "1970-01-01T02:00:01.000000123+02:00"
    os.environ["TZ"] = "UTC"
    time.tzset()
    assert system.rfc3339_nano(1_062_023_630) == "1970-01-01T00:00:01.06202363Z"


def test_mask_credentials() -> None:
    assert system.mask_credentials("") == ""
    assert system.mask_credentials("http://proxy:3128") == "http://proxy:3128"
    assert system.mask_credentials("http://u:p@proxy:3128") == "http://xxxxx:xxxxx@proxy:3128"
    assert system.mask_credentials("socks5://u@h") == "socks5://xxxxx:xxxxx@h"


def test_read_git_commit_layouts(tmp_path: Path) -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "repo"
    (repo / ".git/refs/heads").mkdir(parents=True)
    (repo / "src/pkg").mkdir(parents=True)
    (repo / ".git/HEAD").write_text("ref: refs/heads/main\n")
    (repo / ".git/refs/heads/main").write_text(sha + "\n")
    assert system._read_git_commit(repo / "src/pkg") == sha
    (repo / ".git/refs/heads/main").unlink()
    (repo / ".git/packed-refs").write_text(f"# pack-refs\n{sha} refs/heads/main\n")
    assert system._read_git_commit(repo / "src/pkg") == sha
    (repo / ".git/HEAD").write_text(sha[::-1] + "\n")  # detached
    assert system._read_git_commit(repo) == sha[::-1]
    worktree = tmp_path / "wt"
    gitdir = repo / ".git/worktrees/wt"
    gitdir.mkdir(parents=True)
    (gitdir / "HEAD").write_text("ref: refs/heads/main\n")
    (gitdir / "commondir").write_text("../..\n")
    worktree.mkdir()
    (worktree / ".git").write_text(f"gitdir: {gitdir}\n")
    assert system._read_git_commit(worktree) == sha
    assert system._read_git_commit(tmp_path) is None  # no checkout above a pytest tmp dir


def test_detect_engine_build_for_this_checkout() -> None:
    build = system.detect_engine_build()
    assert build.build_time == ""
    checkout = Path(pymoby.__file__).resolve().parents[2]
    if (checkout / ".git").exists():
        head = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert build.git_commit == head[:7]
    else:
        assert build.git_commit == "unknown"


# ---------------------------------------------------------------------------- wire vs swagger

APIS = [ApiVersion(1, 24), ApiVersion(1, 41), ApiVersion(1, 44), ApiVersion(1, 49)]
APIS += [ApiVersion(1, 50), ApiVersion(1, 52)]


def as_json(data: bytes) -> Any:
    return json.loads(data)


@pytest.fixture(scope="module")
def real_service() -> SystemService:
    """The real host, the real runc/conmon/docker-init: what pymobyd would answer here."""
    return SystemService(
        engine_id="b0e4f4a3-8b8c-4f61-9d6e-0e2c1a3f5d71", data_root="/var/lib/pymoby"
    )


@pytest.mark.parametrize("api", APIS, ids=str)
async def test_real_version_matches_swagger(real_service: SystemService, api: ApiVersion) -> None:
    v = await real_service.version()
    swagger.validate("GET /version", as_json(t.encode_version(v, api)), api=api)
    assert [c.name for c in v.components][:3] == ["Engine", "runc", "conmon"]


@pytest.mark.parametrize("api", APIS, ids=str)
async def test_real_info_matches_swagger(real_service: SystemService, api: ApiVersion) -> None:
    info = await real_service.info(InfoCounts())
    swagger.validate("GET /info", as_json(t.encode_info(info, api)), api=api)
    assert info.runc_commit.ID != "N/A", "runc must be installed"
    assert info.n_fd > 0 and info.n_goroutines > 0 and info.mem_total > 0


async def test_info_with_every_optional_part_matches_swagger() -> None:
    svc = service(
        FakeHost(host_facts(V2_FULL)),
        FakeTools(*ALL_TOOLS, features={"runc": '{"ociVersionMin":"1.0.0"}'}),
        runtimes={"runc": t.Runtime(path="runc"), "alt": t.Runtime(path="/x", runtime_args=["-a"])},
        default_address_pools=[t.NetworkAddressPool("10.10.0.0/16", 24)],
        firewall_backend=t.FirewallInfo(driver="iptables"),
        storage_driver="overlay2",
        driver_status=[("Backing Filesystem", "extfs")],
        hosts=["tcp://0.0.0.0:2375"],
        registry_config=system.stock_registry_config(["https://mirror.example"], ["10.0.0.0/8"]),
    )
    info = await svc.info(InfoCounts(containers_running=1, images=2))
    for api in APIS:
        swagger.validate("SystemInfo", as_json(t.encode_info(info, api)), api=api)


@pytest.mark.parametrize("api", APIS, ids=str)
async def test_disk_usage_matches_swagger(real_service: SystemService, api: ApiVersion) -> None:
    du = await real_service.disk_usage(api=api)
    swagger.validate("GET /system/df", as_json(t.encode_disk_usage(du, api)), api=api)


async def test_filtered_and_verbose_disk_usage_match_swagger(real_service: SystemService) -> None:
    api = ApiVersion(1, 44)
    du = await real_service.disk_usage(["image"], api)
    body = as_json(t.encode_disk_usage(du, api))
    assert sorted(body) == ["Images", "LayersSize"]
    left_out = {"SystemDataUsageResponse": ["Containers", "Volumes", "BuildCache"]}
    swagger.validate("GET /system/df", body, api=api, optional=left_out)
    api = ApiVersion(1, 52)
    verbose = as_json(
        t.encode_disk_usage(await real_service.disk_usage(api=api), api, verbose=True)
    )
    legacy = {
        "SystemDataUsageResponse": ["LayersSize", "Images", "Containers", "Volumes", "BuildCache"]
    }
    swagger.validate("GET /system/df", verbose, api=api, optional=legacy)
    assert sorted(verbose) == ["BuildCacheUsage", "ContainerUsage", "ImageUsage", "VolumeUsage"]
