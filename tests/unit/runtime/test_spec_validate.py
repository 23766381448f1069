"""Create-time validation and defaults of Config/HostConfig, with dockerd's exact messages."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest

from pymoby import errdefs
from pymoby.api.types.containers import (
    Config,
    HealthConfig,
    HostConfig,
    Mount,
    PortBinding,
    RestartPolicy,
    ThrottleDevice,
    WeightDevice,
)
from pymoby.runtime import validate as v
from pymoby.runtime.defaults import KNOWN_CAPABILITIES, caps_from_proc_status


@dataclass(frozen=True)
class Cgroups:
    memory_limit: bool = True
    swap_limit: bool = True
    memory_reservation: bool = True
    oom_kill_disable: bool = True
    memory_swappiness: bool = True
    cpu_shares: bool = True
    cpu_cfs: bool = True
    cpu_realtime: bool = True
    cpuset: bool = True
    pids_limit: bool = True
    blkio_weight: bool = True
    blkio_weight_device: bool = True
    blkio_read_bps_device: bool = True
    blkio_write_bps_device: bool = True
    blkio_read_iops_device: bool = True
    blkio_write_iops_device: bool = True


LIMITS = v.HostLimits(cgroups=Cgroups(), ncpu=4, cpus="0-3", mems="0")


def check(
    hc: HostConfig | None = None,
    cfg: Config | None = None,
    limits: v.HostLimits = LIMITS,
    **kw: Any,
) -> list[str]:
    return v.validate_host_config(cfg or Config(image="x"), hc or HostConfig(), limits, **kw)


@pytest.mark.parametrize(
    ("hc", "cfg", "message"),
    [
        # runconfig.validateCreateRequest
        (HostConfig(network_mode="container:"), None,
         "invalid network mode: invalid container format container:<name|id>"),
        (HostConfig(network_mode="container:x"), Config(hostname="h"),
         "conflicting options: hostname and the network mode"),
        (HostConfig(network_mode="container:x", links=["a:b"]), None,
         "conflicting options: container type network can't be used with links. This would "
         "result in undefined behavior"),
        (HostConfig(network_mode="container:x", dns=["1.1.1.1"]), None,
         "conflicting options: dns and the network mode"),
        (HostConfig(network_mode="container:x", extra_hosts=["a:1.2.3.4"]), None,
         "conflicting options: custom host-to-IP mapping and the network mode"),
        (HostConfig(network_mode="container:x", publish_all_ports=True), None,
         "conflicting options: port publishing and the container type network mode"),
        (HostConfig(network_mode="container:x"), Config(exposed_ports={"80/tcp": {}}),
         "conflicting options: port exposing and the container type network mode"),
        (HostConfig(uts_mode="host"), Config(hostname="h"),
         "conflicting options: hostname and the UTS mode"),
        (HostConfig(network_mode="host", links=["a:b"]), None,
         "conflicting options: host type networking can't be used with links. This would "
         "result in undefined behavior"),
        (HostConfig(isolation="hyperv"), None,
         "invalid isolation (hyperv): linux only supports 'default'"),
        (HostConfig(io_maximum_bandwidth=1), None,
         "invalid option: QoS maximum bandwidth configuration is not supported on linux"),
        (HostConfig(cpu_realtime_period=10, cpu_realtime_runtime=20), None,
         "cpu real-time runtime cannot be higher than cpu real-time period"),
        (HostConfig(cpu_shares=-1), None,
         "invalid CPU shares (-1): value must be a positive integer"),
        # validateContainerConfig
        (None, Config(working_dir="rel"),
         "the working directory 'rel' is invalid, it needs to be an absolute path"),
        (None, Config(stop_signal="SIGBOGUS"), "invalid signal: SIGBOGUS"),
        (None, Config(stop_signal="0"), "invalid signal: 0"),
        (None, Config(env=["=x"]), "invalid environment variable: =x"),
        (None, Config(healthcheck=HealthConfig(interval=10)),
         "Interval in Healthcheck cannot be less than 1ms"),
        (None, Config(healthcheck=HealthConfig(retries=-1)),
         "Retries in Healthcheck cannot be negative"),
        (None, Config(healthcheck=HealthConfig(start_interval=5)),
         "StartInterval in Healthcheck cannot be less than 1ms"),
        # validateHostConfig
        (HostConfig(auto_remove=True, restart_policy=RestartPolicy(name="always")), None,
         "can't create 'AutoRemove' container with restart policy"),
        (HostConfig(mounts=[Mount(type="bind", target="/x")]), None,
         'invalid mount config for type "bind": field Source must not be empty'),
        (HostConfig(extra_hosts=["nohost"]), None, 'bad format for add-host: "nohost"'),
        (HostConfig(extra_hosts=["h:1.2.3"]), None, 'invalid IP address in add-host: "1.2.3"'),
        (HostConfig(port_bindings={"0/tcp": []}), None, 'invalid port specification: "0/tcp"'),
        (HostConfig(port_bindings={"80/tcp": [PortBinding(HostPort="x")]}), None,
         'invalid port specification: "x"'),
        (HostConfig(restart_policy=RestartPolicy(name="sometimes")), None,
         "invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', "
         "'on-failure', or 'unless-stopped'"),
        (HostConfig(restart_policy=RestartPolicy(name="always", maximum_retry_count=-1)), None,
         "invalid restart policy: maximum retry count can only be used with 'on-failure' and "
         "cannot be negative"),
        (HostConfig(restart_policy=RestartPolicy(name="on-failure", maximum_retry_count=-1)),
         None, "invalid restart policy: maximum retry count cannot be negative"),
        (HostConfig(cap_add=["BOGUS"]), None, 'invalid CapAdd: unknown capability: "CAP_BOGUS"'),
        (HostConfig(cap_drop=["cap_nope"]), None,
         'invalid CapDrop: unknown capability: "CAP_NOPE"'),
        (HostConfig(annotations={"": "x"}), None,
         "invalid Annotations: the empty string is not permitted as an annotation key"),
        # verifyPlatformContainerSettings
        (None, Config(hostname="h" * 65),
         f'hostname "{"h" * 65}" is too long (maximum 64 bytes)'),
        (HostConfig(memory=1024), None, "Minimum memory limit allowed is 6MB"),
        (HostConfig(memory=64 << 20, memory_swap=32 << 20), None,
         "Minimum memoryswap limit should be larger than memory limit, see usage"),
        (HostConfig(memory_swap=64 << 20), None,
         "You should always set the Memory limit when using Memoryswap limit, see usage"),
        (HostConfig(memory_swappiness=101), None,
         "Invalid value: 101, valid memory swappiness range is 0-100"),
        (HostConfig(memory_reservation=1024), None, "Minimum memory reservation allowed is 6MB"),
        (HostConfig(memory=8 << 20, memory_reservation=16 << 20), None,
         "Minimum memory limit can not be less than memory reservation limit, see usage"),
        (HostConfig(nano_cpus=1, cpu_period=1000), None,
         "Conflicting options: Nano CPUs and CPU Period cannot both be set"),
        (HostConfig(nano_cpus=1, cpu_quota=1000), None,
         "Conflicting options: Nano CPUs and CPU Quota cannot both be set"),
        (HostConfig(nano_cpus=5_000_000_000), None,
         "range of CPUs is from 0.01 to 4.00, as there are only 4 CPUs available"),
        (HostConfig(nano_cpus=-1), None,
         "range of CPUs is from 0.01 to 4.00, as there are only 4 CPUs available"),
        (HostConfig(cpu_period=999), None,
         "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"),
        (HostConfig(cpu_quota=999), None, "CPU cfs quota can not be less than 1ms (i.e. 1000)"),
        (HostConfig(cpuset_cpus="1-a"), None,
         "Invalid value 1-a for cpuset cpus: invalid format: 1-a"),
        (HostConfig(cpuset_cpus="3-1"), None,
         "Invalid value 3-1 for cpuset cpus: invalid format: 3-1"),
        (HostConfig(cpuset_cpus="0-9000"), None,
         "Invalid value 0-9000 for cpuset cpus: value of out range, maximum is 8192"),
        (HostConfig(cpuset_cpus="0,7"), None,
         "Requested CPUs are not available - requested 0,7, available: 0-3"),
        (HostConfig(cpuset_mems="x"), None, "Invalid value x for cpuset mems: invalid format: x"),
        (HostConfig(cpuset_mems="5"), None,
         "Requested memory nodes are not available - requested 5, available: 0"),
        (HostConfig(blkio_weight=5), None, "Range of blkio weight is from 10 to 1000"),
        (HostConfig(ipc_mode="bogus"), None, "invalid IPC mode: bogus"),
        (HostConfig(pid_mode="container:"), None, "invalid PID mode: container:"),
        (HostConfig(shm_size=-1), None, "SHM size can not be less than 0"),
        (HostConfig(uts_mode="private"), None, "invalid UTS mode: private"),
        (HostConfig(oom_score_adj=1001), None,
         "Invalid value 1001, range for oom score adj is [-1000, 1000]"),
        (HostConfig(runtime="crun"), None, "unknown or invalid runtime name: crun"),
        (HostConfig(tmpfs={"/": ""}), None, "invalid specification: destination can't be '/'"),
        (HostConfig(tmpfs={"rel": ""}), None,
         "invalid mount path: 'rel' mount path must be absolute"),
        (HostConfig(cgroupns_mode="shared"), None, "invalid cgroup namespace mode: shared"),
        # parseSecurityOpt
        (HostConfig(security_opt=["nonsense"]), None, 'invalid --security-opt 1: "nonsense"'),
        (HostConfig(security_opt=["foo=bar"]), None, 'invalid --security-opt 2: "foo=bar"'),
        (HostConfig(security_opt=["no-new-privileges=maybe"]), None,
         'invalid --security-opt 2: "no-new-privileges=maybe"'),
        # registerMountPoints
        (HostConfig(binds=["/a:/x", "/b:/x/"]), None, "Duplicate mount point: /x"),
        (HostConfig(binds=["/a:/run"], tmpfs={"/run": ""}), None, "Duplicate mount point: /run"),
        (HostConfig(binds=["/a:/x"], mounts=[Mount(type="volume", target="/x")]), None,
         "Duplicate mount point: /x"),
        (HostConfig(binds=["/a:/b:bogus"]), None, "invalid mode: bogus"),
    ],
)  # fmt: skip
def test_rejections(hc: HostConfig | None, cfg: Config | None, message: str) -> None:
    with pytest.raises(errdefs.InvalidParameter) as exc:
        check(hc, cfg)
    assert str(exc.value) == message


def test_valid_configs_pass_and_are_normalized() -> None:
    cfg = Config(image="x", working_dir="/a/../b/", stop_signal="sigrtmin+3", env=["A", "B=1"])
    hc = HostConfig(
        memory=64 << 20,
        memory_swap=-1,
        memory_swappiness=-1,
        extra_hosts=["gw:host-gateway", "v6:::1"],
        port_bindings={"80/tcp": [PortBinding(HostPort="8000-8010")], "53/udp": None},
        cap_add=["net_admin", "CAP_SYS_TIME", "ALL"],
        binds=["/src:/dst:ro,Z", "vol:/data"],
        tmpfs={"/run": "size=1m"},
        security_opt=["label=disable", "apparmor=unconfined", "seccomp=unconfined"],
        cgroupns_mode="private",
        restart_policy=RestartPolicy(name="on-failure", maximum_retry_count=3),
    )
    assert check(hc, cfg) == []
    assert cfg.working_dir == "/b"
    assert hc.memory_swappiness is None  # -1 means unset (fixMemorySwappiness)
    assert hc.runtime == "runc"  # the daemon's default runtime
    unset = HostConfig()
    check(unset)
    assert unset.restart_policy.name == "no"


def test_warnings_and_discarded_limits() -> None:
    none = v.HostLimits(
        cgroups=Cgroups(**{k: False for k in Cgroups.__dataclass_fields__}),
        ncpu=2,
        cpus="0-1",
        mems="0",
        cgroup_namespaces=False,
        ipv4_forwarding_disabled=True,
    )
    hc = HostConfig(
        memory=64 << 20,
        memory_reservation=32 << 20,
        memory_swappiness=50,
        oom_kill_disable=True,
        pids_limit=10,
        cpu_shares=100,
        cpu_period=100000,
        cpu_percent=50,
        cpuset_cpus="0",
        blkio_weight=100,
        blkio_weight_device=[WeightDevice(path="/dev/sda", weight=100)],
        blkio_device_read_bps=[ThrottleDevice(path="/dev/sda", rate=1)],
        cgroupns_mode="private",
        network_mode="host",
        port_bindings={"80/tcp": []},
    )
    warnings = check(hc, limits=none)
    assert warnings == [
        "Your kernel does not support memory limit capabilities or the cgroup is not mounted. "
        "Limitation discarded.",
        "Your kernel does not support memory swappiness capabilities or the cgroup is not "
        "mounted. Memory swappiness discarded.",
        "Your kernel does not support memory soft limit capabilities or the cgroup is not "
        "mounted. Limitation discarded.",
        "Your kernel does not support OomKillDisable. OomKillDisable discarded.",
        "Your kernel does not support PIDs limit capabilities or the cgroup is not mounted. "
        "PIDs limit discarded.",
        "Your kernel does not support CPU shares or the cgroup is not mounted. Shares discarded.",
        "Your kernel does not support CPU CFS scheduler. CPU period/quota discarded.",
        "linux does not support CPU percent. Percent discarded.",
        "Your kernel does not support cpuset or the cgroup is not mounted. Cpuset discarded.",
        "Your kernel does not support Block I/O weight or the cgroup is not mounted. "
        "Weight discarded.",
        "Your kernel does not support Block I/O weight_device or the cgroup is not mounted. "
        "Weight-device discarded.",
        "Your kernel does not support BPS Block I/O read limit or the cgroup is not mounted. "
        "Block I/O BPS read limit discarded.",
        "Published ports are discarded when using host network mode",
        "Your kernel does not support cgroup namespaces.  Cgroup namespace setting discarded.",
    ]
    assert (hc.memory, hc.memory_swap, hc.pids_limit, hc.cpuset_cpus) == (0, -1, None, "")
    assert hc.blkio_weight_device == [] and hc.blkio_device_read_bps == []
    forwarding = check(HostConfig(), limits=replace(LIMITS, ipv4_forwarding_disabled=True))
    assert forwarding == ["IPv4 forwarding is disabled. Networking will not work."]
    oom = check(HostConfig(oom_kill_disable=True))
    assert oom == [
        "OOM killer is disabled for the container, but no memory limit is set, this can result "
        "in the system running out of resources."
    ]


def test_host_dependent_rules() -> None:
    limits = replace(LIMITS, host_capabilities=[c for c in KNOWN_CAPABILITIES if c != "CAP_BPF"])
    with pytest.raises(errdefs.InvalidParameter) as exc:
        check(HostConfig(cap_add=["bpf"]), limits=limits)
    assert str(exc.value) == (
        "invalid CapAdd: capability not supported by your kernel or not available in the "
        'current environment: "CAP_BPF"'
    )
    with pytest.raises(errdefs.InvalidParameter, match=r"^kernel does not support CPU real-time"):
        check(
            HostConfig(cpu_realtime_runtime=10),
            limits=replace(LIMITS, cgroups=Cgroups(cpu_realtime=False)),
        )
    systemd = replace(LIMITS, systemd_cgroup=True)
    with pytest.raises(errdefs.InvalidParameter, match=r'should be a valid slice named as "xxx'):
        check(HostConfig(cgroup_parent="mygroup"), limits=systemd)
    check(HostConfig(cgroup_parent="my.slice"), limits=systemd)
    with pytest.raises(errdefs.InvalidParameter, match=r"bind source path does not exist: /nope"):
        check(HostConfig(mounts=[Mount(type="bind", source="/nope", target="/x")]),
              source_exists=lambda p: False)  # fmt: skip
    root = replace(LIMITS, daemon_root="/var/lib/pymoby")
    check(HostConfig(binds=["/var/lib/pymoby/volumes:/v:rslave"]), limits=root)
    with pytest.raises(errdefs.InvalidParameter) as exc:
        check(HostConfig(binds=["/var/lib/pymoby/volumes:/v:private"]), limits=root)
    assert str(exc.value) == (
        'invalid mount config: must use either propagation mode "rslave" or "rshared" when '
        'mount source is within the daemon root, daemon root: "/var/lib/pymoby", bind mount '
        'source: "/var/lib/pymoby/volumes", propagation: "private"'
    )
    # updates may set a swap limit alone
    v.validate_host_config(None, HostConfig(memory_swap=64 << 20), LIMITS, update=True)


def test_adapt_host_config() -> None:
    hc = HostConfig(memory=64 << 20)
    v.adapt_host_config(hc, v.DaemonDefaults(cgroupns_mode="private"))
    assert (hc.memory_swap, hc.shm_size, hc.ipc_mode, hc.cgroupns_mode, hc.oom_kill_disable) == (
        128 << 20,
        64 << 20,
        "private",
        "private",
        False,
    )
    kept = HostConfig(
        memory=64 << 20, memory_swap=-1, shm_size=1, ipc_mode="host", cgroupns_mode="host"
    )
    v.adapt_host_config(kept, v.DaemonDefaults())
    assert (kept.memory_swap, kept.shm_size, kept.ipc_mode, kept.cgroupns_mode) == (
        -1,
        1,
        "host",
        "host",
    )


def test_security_opts() -> None:
    opts = v.parse_security_opts(
        ["no-new-privileges", "writable-cgroups=false", "seccomp=x", "apparmor:p", "label=l"]
    )
    assert opts == v.SecurityOptions(True, False, "p", "x", ("l",))
    assert v.parse_security_opts(None, default_nnp=True).no_new_privileges


def test_caps_from_proc_status() -> None:
    status = "Name:\tx\nCapEff:\t000001fffeffffff\nCapBnd:\t000001ffffffffff\n"
    caps = caps_from_proc_status(status)
    assert (
        len(caps) == 40 and "CAP_SYS_RESOURCE" not in caps and caps[-1] == "CAP_CHECKPOINT_RESTORE"
    )
    assert caps_from_proc_status("CapEff:\t0000000000000000\n") == []
