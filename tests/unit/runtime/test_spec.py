"""build_spec: the OCI config.json dockerd would write, field by field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pymoby import errdefs
from pymoby.api.types.containers import (
    Config,
    DeviceRequest,
    HostConfig,
    ThrottleDevice,
    Ulimit,
    WeightDevice,
)
from pymoby.runtime.defaults import DEFAULT_CAPABILITIES, KNOWN_CAPABILITIES, SpecError
from pymoby.runtime.spec import Device, NamespacePaths, SpecInput, build_spec

CID = "0123456789ab" + "c" * 52
PASSWD = "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n"
GROUP = "root:x:0:\nstaff:x:50:alice\n"


def build(cfg: Config | None = None, hc: HostConfig | None = None, **kw: Any) -> dict[str, Any]:
    hc = hc or HostConfig()
    hc.ipc_mode = hc.ipc_mode or "private"
    hc.shm_size = hc.shm_size or 64 << 20
    if hc.oom_kill_disable is None:
        hc.oom_kill_disable = False
    kw.setdefault("passwd", PASSWD)
    kw.setdefault("group", GROUP)
    inp = SpecInput(
        container_id=CID,
        config=cfg or Config(cmd=["id"], hostname="0123456789ab"),
        host_config=hc,
        rootfs="/var/lib/pymoby/rootfs",
        goarch="amd64",
        kernel=(6, 1),
        **kw,
    )
    spec = build_spec(inp)
    json.dumps(spec)  # always JSON-ready
    return spec


def test_top_level_shape_and_order() -> None:
    spec = build()
    assert list(spec) == ["ociVersion", "process", "root", "hostname", "mounts", "linux"]
    assert spec["ociVersion"] == "1.0.2"
    assert list(spec["process"]) == ["user", "args", "env", "cwd", "capabilities", "oomScoreAdj"]
    assert list(spec["linux"]) == [
        "sysctl", "resources", "cgroupsPath", "namespaces", "seccomp", "maskedPaths",
        "readonlyPaths",
    ]  # fmt: skip
    assert spec["hostname"] == "0123456789ab"
    assert spec["linux"]["cgroupsPath"] == f"/docker/{CID}"
    assert spec["linux"]["maskedPaths"][-2:] == ["/sys/devices/virtual/powercap", "/sys/firmware"]
    assert spec["linux"]["readonlyPaths"] == [
        "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("entrypoint", "cmd", "args"),
    [
        (None, ["id"], ["id"]),
        (None, ["sh", "-c", "echo hi"], ["sh", "-c", "echo hi"]),
        (["/entry.sh"], None, ["/entry.sh"]),
        (["/entry.sh", "--flag"], ["run", "x"], ["/entry.sh", "--flag", "run", "x"]),
        ([], ["id"], ["id"]),
    ],
)
def test_args(entrypoint: list[str] | None, cmd: list[str] | None, args: list[str]) -> None:
    spec = build(Config(entrypoint=entrypoint, cmd=cmd))
    assert spec["process"]["args"] == args


def test_init_wraps_the_command_only_in_a_private_pid_namespace() -> None:
    cfg = Config(entrypoint=["/e"], cmd=["a"])
    spec = build(cfg, HostConfig(init=True), init_path="/usr/libexec/docker/docker-init")
    assert spec["process"]["args"] == ["/sbin/docker-init", "--", "/e", "a"]
    spec = build(cfg, HostConfig(), daemon_init=True, init_path="/usr/bin/tini")
    assert spec["process"]["args"][:2] == ["/sbin/docker-init", "--"]
    assert build(cfg, HostConfig(init=False), daemon_init=True)["process"]["args"] == ["/e", "a"]
    host_pid = build(cfg, HostConfig(init=True, pid_mode="host"))
    assert host_pid["process"]["args"] == ["/e", "a"]
    with pytest.raises(SpecError, match=r"docker-init"):
        build(cfg, HostConfig(init=True))


@pytest.mark.parametrize(
    ("cfg", "env"),
    [
        (
            Config(cmd=["id"], hostname="h1"),
            ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=h1"],
        ),
        (
            Config(cmd=["id"], hostname="h1", tty=True, env=["A=1", "PATH=/bin", "HOSTNAME"]),
            ["PATH=/bin", "TERM=xterm", "A=1"],
        ),
        (
            Config(cmd=["id"], hostname="h", env=["TERM=dumb", "B=", "C=x=y"], tty=True),
            [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOSTNAME=h",
                "TERM=dumb",
                "B=",
                "C=x=y",
            ],
        ),
    ],
)
def test_env(cfg: Config, env: list[str]) -> None:
    assert build(cfg)["process"]["env"] == env


def test_process_details() -> None:
    cfg = Config(cmd=["id"], tty=True, working_dir="/work", user="alice")
    hc = HostConfig(console_size=[24, 80], oom_score_adj=-500, security_opt=["no-new-privileges"])
    proc = build(cfg, hc)["process"]
    assert proc["terminal"] is True
    assert proc["consoleSize"] == {"height": 24, "width": 80}
    assert proc["cwd"] == "/work"
    assert proc["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [1000, 50]}
    assert proc["oomScoreAdj"] == -500
    assert proc["noNewPrivileges"] is True
    assert "consoleSize" not in build(Config(cmd=["id"], tty=True))["process"]
    nnp = build(hc=HostConfig(security_opt=["no-new-privileges=false"]), no_new_privileges=True)
    assert "noNewPrivileges" not in nnp["process"]
    assert build(no_new_privileges=True)["process"]["noNewPrivileges"] is True


def test_unknown_user_fails_like_dockerd() -> None:
    with pytest.raises(SpecError) as exc:
        build(Config(cmd=["id"], user="nobody"))
    assert str(exc.value) == "unable to find user nobody: no matching entries in passwd file"
    assert isinstance(exc.value, errdefs.System)


@pytest.mark.parametrize(
    ("add", "drop", "caps"),
    [
        (None, None, list(DEFAULT_CAPABILITIES)),
        (["NET_ADMIN"], None, [*DEFAULT_CAPABILITIES, "CAP_NET_ADMIN"]),
        (["cap_sys_time"], ["MKNOD", "cap_kill"], [
            c for c in DEFAULT_CAPABILITIES if c not in ("CAP_MKNOD", "CAP_KILL")
        ] + ["CAP_SYS_TIME"]),
        (["chown"], ["ALL"], ["CAP_CHOWN"]),
        (None, ["all"], []),
        (["ALL"], ["NET_RAW"], [c for c in KNOWN_CAPABILITIES if c != "CAP_NET_RAW"]),
    ],
)  # fmt: skip
def test_capabilities(add: list[str] | None, drop: list[str] | None, caps: list[str]) -> None:
    got = build(hc=HostConfig(cap_add=add, cap_drop=drop))["process"]["capabilities"]
    if caps:
        assert got == {"bounding": caps, "effective": caps, "permitted": caps}
    else:
        assert got == {}


def test_capability_errors() -> None:
    with pytest.raises(SpecError, match=r'^unknown capability: "CAP_BOGUS"$'):
        build(hc=HostConfig(cap_add=["bogus"]))
    host = [c for c in KNOWN_CAPABILITIES if c != "CAP_SYS_RESOURCE"]
    with pytest.raises(SpecError, match=r"not available in the current environment"):
        build(hc=HostConfig(cap_add=["SYS_RESOURCE"]), host_capabilities=host)


def test_privileged() -> None:
    host = [c for c in KNOWN_CAPABILITIES if c != "CAP_SYS_RESOURCE"]
    tty = Device("/dev/tty0", "c", 4, 0, 0o620, 0, 5, host_path="/dev/tty0")
    mapped = Device("/dev/xx", "c", 1, 7, host_path="/dev/full")
    same = Device("/dev/null", "c", 1, 3, host_path="/dev/null")
    spec = build(
        hc=HostConfig(privileged=True, cap_drop=["ALL"]),
        host_capabilities=host,
        host_devices=[tty],
        devices=[mapped, same],
    )
    caps = spec["process"]["capabilities"]
    assert caps["bounding"] == host  # all the daemon holds; CapDrop ignored
    linux = spec["linux"]
    assert "seccomp" not in linux
    assert "maskedPaths" not in linux and "readonlyPaths" not in linux
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert linux["devices"] == [
        {"path": "/dev/tty0", "type": "c", "major": 4, "minor": 0, "fileMode": 0o620, "uid": 0,
         "gid": 5},
        {"path": "/dev/xx", "type": "c", "major": 1, "minor": 7},
    ]  # fmt: skip


def test_masked_and_readonly_paths_overrides() -> None:
    linux = build(hc=HostConfig(masked_paths=[], readonly_paths=["/proc/x"]))["linux"]
    assert "maskedPaths" not in linux and linux["readonlyPaths"] == ["/proc/x"]
    linux = build(hc=HostConfig(privileged=True, masked_paths=["/m"]))["linux"]
    assert linux["maskedPaths"] == ["/m"]
    linux = build(thermal_throttle_paths=["/sys/devices/system/cpu/cpu0/thermal_throttle"])["linux"]
    assert linux["maskedPaths"][-1] == "/sys/devices/system/cpu/cpu0/thermal_throttle"


def test_resources() -> None:
    hc = HostConfig(
        memory=64 << 20,
        memory_swap=128 << 20,
        memory_reservation=32 << 20,
        memory_swappiness=10,
        oom_kill_disable=True,
        nano_cpus=1_500_000_000,
        cpu_shares=512,
        cpuset_cpus="0-1",
        cpuset_mems="0",
        pids_limit=100,
        blkio_weight=300,
        blkio_weight_device=[WeightDevice(path="/dev/sda", weight=200)],
        blkio_device_read_bps=[ThrottleDevice(path="/dev/sda", rate=1024)],
        blkio_device_write_iops=[ThrottleDevice(path="/dev/sda", rate=10)],
    )
    res = build(hc=hc, block_devices={"/dev/sda": (8, 0)})["linux"]["resources"]
    assert list(res) == ["devices", "memory", "cpu", "pids", "blockIO"]
    assert res["memory"] == {
        "limit": 64 << 20,
        "reservation": 32 << 20,
        "swap": 128 << 20,
        "swappiness": 10,
        "disableOOMKiller": True,
    }
    assert res["cpu"] == {
        "shares": 512, "quota": 150000, "period": 100000, "cpus": "0-1", "mems": "0",
    }  # fmt: skip
    assert res["pids"] == {"limit": 100}
    assert res["blockIO"] == {
        "weight": 300,
        "weightDevice": [{"major": 8, "minor": 0, "weight": 200}],
        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1024}],
        "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 10}],
    }


def test_resource_edge_cases() -> None:
    res = build()["linux"]["resources"]
    assert res["memory"] == {"disableOOMKiller": False} and res["blockIO"] == {}
    assert "cpu" not in res and "pids" not in res
    res = build(hc=HostConfig(pids_limit=0, cpu_period=50000, cpu_quota=25000))["linux"][
        "resources"
    ]
    assert res["pids"] == {"limit": -1}
    assert res["cpu"] == {"quota": 25000, "period": 50000}
    with pytest.raises(SpecError, match=r"^stat /dev/nope: no such file or directory$"):
        build(hc=HostConfig(blkio_weight_device=[WeightDevice(path="/dev/nope", weight=10)]))
    with pytest.raises(SpecError, match=r"^invalid CPU shares \(-1\)"):
        build(hc=HostConfig(cpu_shares=-1))


def test_devices_and_cgroup_rules() -> None:
    dev = Device("/dev/fuse", "c", 10, 229, 0o666, 0, 0, "/dev/fuse", "rw")
    hc = HostConfig(device_cgroup_rules=["c 42:* rmw", "a *:* m"])
    linux = build(hc=hc, devices=[dev])["linux"]
    assert linux["devices"] == [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666,
         "uid": 0, "gid": 0},
    ]  # fmt: skip
    rules = linux["resources"]["devices"]
    assert rules[0] == {"allow": False, "access": "rwm"}
    assert rules[-4] == {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"}
    assert rules[-3:] == [
        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"},
        {"allow": True, "type": "c", "major": 42, "minor": -1, "access": "rmw"},
        {"allow": True, "type": "a", "major": -1, "minor": -1, "access": "m"},
    ]
    with pytest.raises(SpecError, match=r"^invalid device cgroup rule format: 'x 1:1 r'$"):
        build(hc=HostConfig(device_cgroup_rules=["x 1:1 r"]))
    with pytest.raises(
        SpecError, match=r'could not select device driver "" with capabilities: \[\[gpu\]\]'
    ):
        build(hc=HostConfig(device_requests=[DeviceRequest(capabilities=[["gpu"]])]))


def test_rlimits() -> None:
    hc = HostConfig(ulimits=[Ulimit(name="nofile", soft=1024, hard=2048)])
    defaults = [Ulimit(name="nofile", soft=1, hard=1), Ulimit(name="nproc", soft=-1, hard=-1)]
    proc = build(hc=hc, default_ulimits=defaults)["process"]
    assert proc["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "hard": 2048, "soft": 1024},
        {"type": "RLIMIT_NPROC", "hard": 2**64 - 1, "soft": 2**64 - 1},
    ]
    assert "rlimits" not in build()["process"]


@pytest.mark.parametrize(
    ("hc", "paths", "namespaces"),
    [
        (HostConfig(), NamespacePaths(), [
            {"type": "mount"}, {"type": "network"}, {"type": "uts"}, {"type": "pid"},
            {"type": "ipc"},
        ]),
        (HostConfig(network_mode="bridge", cgroupns_mode="private"),
         NamespacePaths(network="/run/netns/x"), [
            {"type": "mount"}, {"type": "network", "path": "/run/netns/x"}, {"type": "uts"},
            {"type": "pid"}, {"type": "ipc"}, {"type": "cgroup"},
        ]),
        (HostConfig(network_mode="host", pid_mode="host", ipc_mode="host", uts_mode="host"),
         NamespacePaths(), [{"type": "mount"}]),
        (HostConfig(network_mode="container:abc", pid_mode="container:abc",
                    ipc_mode="container:abc"),
         NamespacePaths("/proc/7/ns/net", "/proc/7/ns/ipc", "/proc/7/ns/pid"), [
            {"type": "mount"}, {"type": "network", "path": "/proc/7/ns/net"}, {"type": "uts"},
            {"type": "pid", "path": "/proc/7/ns/pid"}, {"type": "ipc", "path": "/proc/7/ns/ipc"},
        ]),
    ],
)  # fmt: skip
def test_namespaces(hc: HostConfig, paths: NamespacePaths, namespaces: list[Any]) -> None:
    assert build(hc=hc, namespaces=paths)["linux"]["namespaces"] == namespaces


def test_namespace_details() -> None:
    spec = build(hc=HostConfig(uts_mode="host"))
    assert "hostname" not in spec
    spaces = build(time_namespace=True)["linux"]["namespaces"]
    assert [n["type"] for n in spaces] == ["mount", "network", "time", "uts", "pid", "ipc"]
    # NetworkDisabled keeps the default (empty) network namespace, even with host mode
    disabled = build(Config(cmd=["id"], network_disabled=True), HostConfig(network_mode="host"))
    assert {"type": "network"} in disabled["linux"]["namespaces"]
    with pytest.raises(SpecError, match=r"^invalid IPC mode: bogus$"):
        build(hc=HostConfig(ipc_mode="bogus"))
    with pytest.raises(SpecError, match=r"^invalid PID mode: container:$"):
        build(hc=HostConfig(pid_mode="container:"))
    with pytest.raises(SpecError, match=r"no network namespace path"):
        build(hc=HostConfig(network_mode="container:x"))


def test_cgroups_path() -> None:
    assert build(cgroup_parent="/pymoby")["linux"]["cgroupsPath"] == f"/pymoby/{CID}"
    hc = HostConfig(cgroup_parent="mine/")
    assert build(hc=hc, cgroup_parent="/pymoby")["linux"]["cgroupsPath"] == f"mine/{CID}"
    systemd = build(systemd_cgroup=True)["linux"]["cgroupsPath"]
    assert systemd == f"system.slice:docker:{CID}"


def test_sysctls() -> None:
    linux = build(Config(cmd=["id"], domainname="example.com"))["linux"]
    assert linux["sysctl"] == {
        "kernel.domainname": "example.com",
        "net.ipv4.ping_group_range": "0 2147483647",
        "net.ipv4.ip_unprivileged_port_start": "0",
    }
    host = build(hc=HostConfig(network_mode="host"))["linux"]
    assert "sysctl" not in host
    mine = build(hc=HostConfig(sysctls={"net.ipv4.ip_unprivileged_port_start": "1024"}))
    assert mine["linux"]["sysctl"]["net.ipv4.ip_unprivileged_port_start"] == "1024"
    few = build(host_sysctls=frozenset(), in_user_namespace=True)["linux"]
    assert "sysctl" not in few
    ok = {"kernel.shmmax": "1", "fs.mqueue.msg_max": "1", "net/ipv4/ip_forward": "1"}
    build(hc=HostConfig(sysctls=ok))


@pytest.mark.parametrize(
    ("hc", "message"),
    [
        (HostConfig(sysctls={"kernel.foo": "1"}),
         'sysctl "kernel.foo" is not in a separate kernel namespace'),
        (HostConfig(sysctls={"vm.swappiness": "1"}), 'sysctl "vm.swappiness" is not in a separate'),
        (HostConfig(network_mode="host", sysctls={"net.core.somaxconn": "1"}),
         'sysctl "net.core.somaxconn" not allowed in host network namespace'),
        (HostConfig(ipc_mode="host", sysctls={"kernel.msgmax": "1"}),
         'sysctl "kernel.msgmax" is not allowed in the hosts ipc namespace'),
        (HostConfig(sysctls={"kernel.hostname": "x"}),
         'sysctl "kernel.hostname" is not allowed as it conflicts with the OCI "hostname" field'),
        (HostConfig(uts_mode="host", sysctls={"kernel.domainname": "x"}),
         'sysctl "kernel.domainname" is not in a separate kernel namespace'),
    ],
)  # fmt: skip
def test_sysctl_errors(hc: HostConfig, message: str) -> None:
    with pytest.raises(SpecError) as exc:
        build(hc=hc)
    assert str(exc.value).startswith(message)


def test_apparmor_and_annotations() -> None:
    assert "apparmorProfile" not in build()["process"]
    assert build(apparmor_enabled=True)["process"]["apparmorProfile"] == "docker-default"
    priv = build(hc=HostConfig(privileged=True), apparmor_enabled=True)
    assert priv["process"]["apparmorProfile"] == "unconfined"
    mine = build(hc=HostConfig(security_opt=["apparmor=mine"]), apparmor_enabled=True)
    assert mine["process"]["apparmorProfile"] == "mine"
    spec = build(hc=HostConfig(annotations={"a": "b"}))
    assert spec["annotations"] == {"a": "b"} and list(spec).index("annotations") == 5


def test_security_opt_errors() -> None:
    with pytest.raises(SpecError, match=r'^invalid --security-opt 2: "bogus=1"$'):
        build(hc=HostConfig(security_opt=["bogus=1"]))
