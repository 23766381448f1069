"""Wire names, omitempty and per-API-version rules of GET /version, /info and /system/df."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from pymoby.api.types import system as t
from pymoby.api.versions import ApiVersion

V = ApiVersion

# JSON names of moby's system.Info (api/types/system/info.go, API 1.52), in Go's order,
# without SystemStatus (swarm standalone only) and the omitempty fields tested separately.
GO_INFO_ALWAYS = [
    "ID", "Containers", "ContainersRunning", "ContainersPaused", "ContainersStopped", "Images",
    "Driver", "DriverStatus", "Plugins", "MemoryLimit", "SwapLimit", "CpuCfsPeriod",
    "CpuCfsQuota", "CPUShares", "CPUSet", "PidsLimit", "IPv4Forwarding", "Debug", "NFd",
    "OomKillDisable", "NGoroutines", "SystemTime", "LoggingDriver", "CgroupDriver",
    "CgroupVersion", "NEventsListener", "KernelVersion", "OperatingSystem", "OSVersion",
    "OSType", "Architecture", "IndexServerAddress", "RegistryConfig", "NCPU", "MemTotal",
    "GenericResources", "DockerRootDir", "HttpProxy", "HttpsProxy", "NoProxy", "Name", "Labels",
    "ExperimentalBuild", "ServerVersion", "Runtimes", "DefaultRuntime", "Swarm",
    "LiveRestoreEnabled", "Isolation", "InitBinary", "ContainerdCommit", "RuncCommit",
    "InitCommit", "SecurityOptions", "CDISpecDirs", "Warnings",
]  # fmt: skip
GO_INFO_OMITEMPTY = [
    "ProductLicense", "DefaultAddressPools", "FirewallBackend", "DiscoveredDevices", "Containerd",
]  # fmt: skip


def info_json(info: t.Info, api: ApiVersion) -> Any:
    """What goes on the wire, decoded (tuples become lists as in any JSON)."""
    return json.loads(t.encode_info(info, api))


def version_json(v: t.Version, api: ApiVersion) -> Any:
    return json.loads(t.encode_version(v, api))


def du_json(du: t.DiskUsage, api: ApiVersion, *, verbose: bool = False) -> Any:
    return json.loads(t.encode_disk_usage(du, api, verbose=verbose))


def make_info(**overrides: Any) -> t.Info:
    values: dict[str, Any] = {
        "id": "engine-id",
        "containers": 3,
        "containers_running": 1,
        "containers_paused": 1,
        "containers_stopped": 1,
        "images": 2,
        "driver": "overlay2",
        "driver_status": [("Backing Filesystem", "extfs")],
        "plugins": t.PluginsInfo(volume=["local"], log=["json-file"]),
        "memory_limit": True,
        "swap_limit": True,
        "cpu_cfs_period": True,
        "cpu_cfs_quota": True,
        "cpu_shares": True,
        "cpu_set": True,
        "pids_limit": True,
        "ipv4_forwarding": True,
        "debug": False,
        "n_fd": 12,
        "oom_kill_disable": True,
        "n_goroutines": 4,
        "system_time": "2024-01-01T00:00:00Z",
        "logging_driver": "json-file",
        "cgroup_driver": "cgroupfs",
        "cgroup_version": "1",
        "n_events_listener": 0,
        "kernel_version": "6.1.0",
        "operating_system": "Debian GNU/Linux 12 (bookworm)",
        "os_version": "12",
        "os_type": "linux",
        "architecture": "x86_64",
        "index_server_address": "https://index.docker.io/v1/",
        "registry_config": t.RegistryServiceConfig(
            InsecureRegistryCIDRs=["127.0.0.0/8"], IndexConfigs={}, Mirrors=[]
        ),
        "ncpu": 2,
        "mem_total": 1 << 30,
        "generic_resources": [],
        "docker_root_dir": "/var/lib/pymoby",
        "http_proxy": "",
        "https_proxy": "",
        "no_proxy": "",
        "name": "host",
        "labels": [],
        "experimental_build": False,
        "server_version": "0.1.0",
        "runtimes": {"runc": t.Runtime(path="runc", status={"k": "v"})},
        "default_runtime": "runc",
        "swarm": t.inactive_swarm(),
        "live_restore_enabled": True,
        "isolation": "",
        "init_binary": "docker-init",
        "containerd_commit": t.Commit("N/A"),
        "runc_commit": t.Commit("abc"),
        "init_commit": t.Commit("def"),
        "security_options": ["name=seccomp,profile=builtin"],
        "cdi_spec_dirs": [],
        "warnings": [],
        "bridge_nf_iptables": True,
        "bridge_nf_ip6tables": False,
    }
    values.update(overrides)
    return t.Info(**values)


def test_info_wire_names_and_order_follow_go() -> None:
    wire = info_json(make_info(), V(1, 52))
    assert list(wire) == GO_INFO_ALWAYS


def test_info_omitempty_fields_appear_only_when_set() -> None:
    info = make_info(
        product_license="Community Engine",
        default_address_pools=[t.NetworkAddressPool("10.10.0.0/16", 24)],
        firewall_backend=t.FirewallInfo(driver="iptables"),
        discovered_devices=[t.DeviceInfo("cdi", "vendor.com/gpu=0")],
        containerd=t.ContainerdInfo(
            address="/run/containerd.sock",
            namespaces=t.ContainerdNamespaces("moby", "plugins.moby"),
        ),
    )
    wire = info_json(info, V(1, 52))
    assert [k for k in wire if k not in GO_INFO_ALWAYS] == GO_INFO_OMITEMPTY
    assert wire["DefaultAddressPools"] == [{"Base": "10.10.0.0/16", "Size": 24}]
    assert wire["FirewallBackend"] == {"Driver": "iptables"}
    assert wire["DiscoveredDevices"] == [{"Source": "cdi", "ID": "vendor.com/gpu=0"}]
    assert wire["Containerd"] == {
        "Address": "/run/containerd.sock",
        "Namespaces": {"Containers": "moby", "Plugins": "plugins.moby"},
    }


def test_info_nested_shapes() -> None:
    wire = info_json(make_info(), V(1, 52))
    assert wire["Swarm"] == {
        "NodeID": "",
        "NodeAddr": "",
        "LocalNodeState": "inactive",
        "ControlAvailable": False,
        "Error": "",
        "RemoteManagers": None,
    }
    assert wire["Plugins"] == {
        "Volume": ["local"],
        "Network": [],
        "Authorization": [],
        "Log": ["json-file"],
    }
    assert wire["DriverStatus"] == [["Backing Filesystem", "extfs"]]
    assert wire["RegistryConfig"] == {
        "InsecureRegistryCIDRs": ["127.0.0.0/8"],
        "IndexConfigs": {},
        "Mirrors": [],
    }
    assert wire["Runtimes"] == {"runc": {"path": "runc", "status": {"k": "v"}}}
    assert wire["RuncCommit"] == {"ID": "abc"}
    assert "KernelMemory" not in wire and "KernelMemoryTCP" not in wire


def test_runtime_args_use_go_json_name() -> None:
    info = make_info(runtimes={"x": t.Runtime(path="/x", runtime_args=["-d"])})
    wire = info_json(info, V(1, 52))
    assert wire["Runtimes"] == {"x": {"path": "/x", "runtimeArgs": ["-d"]}}


@pytest.mark.parametrize(
    ("api", "has_status"), [(V(1, 43), False), (V(1, 44), True), (V(1, 52), True)]
)
def test_runtime_status_from_1_44(api: ApiVersion, has_status: bool) -> None:
    wire = info_json(make_info(), api)
    assert ("status" in wire["Runtimes"]["runc"]) is has_status


def test_containerd_from_1_46() -> None:
    info = make_info(containerd=t.ContainerdInfo(namespaces=t.ContainerdNamespaces("a", "b")))
    assert "Containerd" not in info_json(info, V(1, 45))
    assert info_json(info, V(1, 46))["Containerd"] == {
        "Namespaces": {"Containers": "a", "Plugins": "b"}
    }


def test_nondistributable_fields_below_1_47() -> None:
    old = info_json(make_info(), V(1, 46))["RegistryConfig"]
    assert old["AllowNondistributableArtifactsCIDRs"] == []
    assert old["AllowNondistributableArtifactsHostnames"] == []
    new = info_json(make_info(), V(1, 47))["RegistryConfig"]
    assert "AllowNondistributableArtifactsCIDRs" not in new
    # a null RegistryConfig stays null
    assert info_json(make_info(registry_config=None), V(1, 41))["RegistryConfig"] is None


def test_expected_commits_and_firewall_switch_at_1_49() -> None:
    info = make_info(firewall_backend=t.FirewallInfo(driver="iptables", info=[("a", "b")]))
    old = info_json(info, V(1, 48))
    assert old["RuncCommit"] == {"ID": "abc", "Expected": "abc"}
    assert old["InitCommit"] == {"ID": "def", "Expected": "def"}
    assert old["ContainerdCommit"] == {"ID": "N/A", "Expected": "N/A"}
    assert "FirewallBackend" not in old
    new = info_json(info, V(1, 49))
    assert new["RuncCommit"] == {"ID": "abc"}
    assert new["FirewallBackend"] == {"Driver": "iptables", "Info": [["a", "b"]]}


def test_bridge_nf_and_discovered_devices_switch_at_1_50() -> None:
    info = make_info(discovered_devices=[t.DeviceInfo("cdi", "x")])
    old = info_json(info, V(1, 49))
    assert old["BridgeNfIptables"] is True
    assert old["BridgeNfIp6tables"] is False
    assert "DiscoveredDevices" not in old
    new = info_json(info, V(1, 50))
    assert "BridgeNfIptables" not in new and "BridgeNfIp6tables" not in new
    assert new["DiscoveredDevices"] == [{"Source": "cdi", "ID": "x"}]


def test_info_wire_does_not_mutate_the_struct() -> None:
    info = make_info()
    info_json(info, V(1, 24))
    assert info.runtimes["runc"].status == {"k": "v"}
    assert t.info_wire(info, V(1, 52))["Runtimes"]["runc"]["status"] == {"k": "v"}


def make_version(**overrides: Any) -> t.Version:
    values: dict[str, Any] = {
        "platform": t.PlatformInfo(name=""),
        "version": "0.1.0",
        "api_version": "1.52",
        "min_api_version": "1.24",
        "os": "linux",
        "arch": "amd64",
        "components": [t.ComponentVersion(name="runc", version="1.1.5")],
        "git_commit": "abcdef0",
        "kernel_version": "6.1.0",
    }
    values.update(overrides)
    return t.Version(**values)


def test_version_wire_names_and_omitempty() -> None:
    wire = version_json(make_version(), V(1, 41))
    assert wire == {
        "Platform": {"Name": ""},
        "Version": "0.1.0",
        "ApiVersion": "1.52",
        "MinAPIVersion": "1.24",
        "Os": "linux",
        "Arch": "amd64",
        "Components": [{"Name": "runc", "Version": "1.1.5"}],
        "GitCommit": "abcdef0",
        "KernelVersion": "6.1.0",
    }


def test_version_optional_fields_when_set() -> None:
    v = make_version(
        experimental=True,
        build_time="2024-01-01T00:00:00.000000000+00:00",
        go_version="go1.22",
        components=[t.ComponentVersion(name="x", version="1", details={"GitCommit": ""})],
    )
    wire = json.loads(t.encode_version(v, V(1, 52)))
    assert wire["Experimental"] is True
    assert wire["BuildTime"] == "2024-01-01T00:00:00.000000000+00:00"
    assert wire["GoVersion"] == "go1.22"
    assert wire["Components"] == [{"Name": "x", "Version": "1", "Details": {"GitCommit": ""}}]


def full_usage() -> t.DiskUsage:
    return t.DiskUsage(
        images=t.UsageSummary(total_size=10, total_count=1, active_count=1),
        containers=t.UsageSummary(),
        volumes=t.UsageSummary(),
        build_cache=t.UsageSummary(total_size=7),
    )


def test_disk_usage_legacy_shape_below_1_52() -> None:
    assert du_json(full_usage(), V(1, 51)) == {
        "LayersSize": 10,
        "Images": [],
        "Containers": [],
        "Volumes": [],
        "BuildCache": [],
    }


def test_disk_usage_builder_size_below_1_42() -> None:
    assert du_json(full_usage(), V(1, 41))["BuilderSize"] == 7
    assert "BuilderSize" not in du_json(full_usage(), V(1, 42))
    empty = t.DiskUsage(build_cache=t.UsageSummary())
    assert du_json(empty, V(1, 41)) == {"LayersSize": 0, "BuildCache": []}


def test_disk_usage_1_52_has_both_shapes_unless_verbose() -> None:
    both = du_json(full_usage(), V(1, 52))
    assert both["LayersSize"] == 10
    assert both["Images"] == []
    assert both["ImageUsage"] == {"ActiveCount": 1, "TotalCount": 1, "TotalSize": 10}
    assert both["ContainerUsage"] == {} and both["VolumeUsage"] == {}
    assert both["BuildCacheUsage"] == {"TotalSize": 7}
    verbose = du_json(full_usage(), V(1, 52), verbose=True)
    assert sorted(verbose) == ["BuildCacheUsage", "ContainerUsage", "ImageUsage", "VolumeUsage"]


def test_disk_usage_types_not_requested_are_left_out() -> None:
    du = t.DiskUsage(volumes=t.UsageSummary(total_count=2, total_size=5))
    assert du_json(du, V(1, 44)) == {"LayersSize": 0, "Volumes": []}
    assert du_json(du, V(1, 52), verbose=True) == {"VolumeUsage": {"TotalCount": 2, "TotalSize": 5}}


def test_disk_usage_items_are_encoded() -> None:
    class Entry(msgspec.Struct):
        Name: str

    du = t.DiskUsage(volumes=t.UsageSummary(items=[Entry("v1")], total_count=1))
    legacy = json.loads(t.encode_disk_usage(du, V(1, 41)))
    assert legacy["Volumes"] == [{"Name": "v1"}]
    new = json.loads(t.encode_disk_usage(du, V(1, 52), verbose=True))
    assert new["VolumeUsage"] == {"Items": [{"Name": "v1"}], "TotalCount": 1}
