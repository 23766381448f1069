"""SystemService: the values behind GET /version, GET /info and GET /system/df.

Rule: every value is either a host fact (kernel/sysinfo, kernel/cgroups), what a helper binary
says about itself (runtime/binaries), the daemon's configuration (constructor arguments), or a
count handed in by the composition root. Nothing is invented: what pymoby does not have
(containerd, swarm, a Go toolchain, a product license) is reported as absent, the way dockerd
reports a missing piece. The derivations (warnings, security options, capability gating)
follow dockerd's daemon/info.go and daemon/info_unix.go, in the same order.

Decisions where Python and Go differ:
- `NGoroutines` = asyncio tasks of the running loop + live Python threads: the units of
  concurrent execution this process has, as goroutines are dockerd's.
- `GoVersion` is omitted (dockerd 29 omits it when empty); the Engine component carries
  `PythonVersion` in its free-form Details instead.
- `GitCommit` is the commit pymoby was installed from (pip's VCS record) or, for an editable /
  source checkout, the checkout's HEAD; otherwise "unknown". `BuildTime` is omitted unless
  supplied by a packager: a Python package has no compile step to date.
- The cgroup v1 deprecation warning of dockerd 29 is not repeated: it announces moby's
  plans, not a fact about this host. No bridge-nf warnings either (dockerd dropped them when
  br_netfilter became load-on-demand). A missing runtime or conmon binary *is* warned about:
  pymoby cannot run containers without them.

Blocking reads run in worker threads; helper-binary probes are asyncio subprocesses.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import pymoby
from pymoby import errdefs
from pymoby.api import versions
from pymoby.api.types import system as t
from pymoby.api.versions import ApiVersion
from pymoby.kernel.sysinfo import HostFacts, HostProbe, LiveFacts
from pymoby.runtime.binaries import Binaries, ToolVersion

INDEX_SERVER = "https://index.docker.io/v1/"
SECCOMP_PROFILE_DEFAULT = "builtin"
OCI_FEATURES_KEY = "org.opencontainers.runtime-spec.features"
NOT_AVAILABLE = "N/A"


class HostSource(Protocol):
    def static_facts(self) -> HostFacts: ...
    def live_facts(self) -> LiveFacts: ...


class ToolSource(Protocol):
    async def runtime(self, binary: str) -> ToolVersion: ...
    async def conmon(self, binary: str) -> ToolVersion: ...
    async def init(self, binary: str) -> ToolVersion: ...
    async def features(self, binary: str) -> str | None: ...


UsageProvider = Callable[[], Awaitable[t.UsageSummary]]


@dataclass(frozen=True)
class InfoCounts:
    """Container and image counts, supplied by the composition root."""

    containers_running: int = 0
    containers_paused: int = 0
    containers_stopped: int = 0
    images: int = 0


@dataclass(frozen=True)
class SecuritySettings:
    """Daemon options that show up in `SecurityOptions` (dockerd flag names in comments)."""

    seccomp_profile: str = SECCOMP_PROFILE_DEFAULT  # --seccomp-profile
    selinux_enabled: bool = False  # --selinux-enabled
    userns_remap: bool = False  # --userns-remap given
    no_new_privileges: bool = False  # --no-new-privileges
    cgroupns_mode: str | None = None  # --default-cgroupns-mode; None = dockerd's default


@dataclass(frozen=True)
class EngineBuild:
    """Where this pymoby came from; see `detect_engine_build`."""

    git_commit: str = "unknown"
    build_time: str = ""


def _read_git_commit(start: Path) -> str | None:
    """HEAD commit of the git checkout containing `start`, read from .git files directly."""
    for directory in (start, *start.parents):
        dot_git = directory / ".git"
        if dot_git.is_file():  # worktree or submodule: "gitdir: <path>"
            text = dot_git.read_text(encoding="utf-8").strip()
            if not text.startswith("gitdir:"):
                return None
            git_dir = (directory / text.removeprefix("gitdir:").strip()).resolve()
        elif dot_git.is_dir():
            git_dir = dot_git
        else:
            continue
        common = git_dir
        if (git_dir / "commondir").is_file():
            common = (git_dir / (git_dir / "commondir").read_text().strip()).resolve()
        head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head.removeprefix("ref:").strip()
        for base in (git_dir, common):
            if (base / ref).is_file():
                return (base / ref).read_text(encoding="utf-8").strip() or None
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8").splitlines():
                sha, _, name = line.partition(" ")
                if name == ref:
                    return sha
        return None
    return None


def detect_engine_build() -> EngineBuild:
    """GitCommit of this installation, never guessed (blocking file reads).

    1. pip's direct_url.json `vcs_info.commit_id` (installed from a git URL);
    2. for an editable install or a source tree on sys.path (not a copy in site-packages),
       the HEAD of the checkout holding the package;
    3. otherwise "unknown".
    """
    editable = True
    try:
        raw = importlib.metadata.distribution("pymoby").read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        raw = None
    if raw:
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = {}
        commit = doc.get("vcs_info", {}).get("commit_id")
        if isinstance(commit, str) and commit:
            return EngineBuild(git_commit=commit[:7])
        editable = bool(doc.get("dir_info", {}).get("editable"))
    package_dir = Path(pymoby.__file__).resolve().parent
    if editable and not {"site-packages", "dist-packages"} & set(package_dir.parts):
        try:
            commit = _read_git_commit(package_dir)
        except OSError:
            commit = None
        if commit:
            return EngineBuild(git_commit=commit[:7])
    return EngineBuild()


def stock_registry_config(
    mirrors: Sequence[str] = (), insecure_cidrs: Sequence[str] = ()
) -> t.RegistryServiceConfig:
    """dockerd's registry service config for the given options; loopback is always insecure."""
    cidrs = list(dict.fromkeys([*insecure_cidrs, "::1/128", "127.0.0.0/8"]))
    hub = t.IndexInfo(name="docker.io", mirrors=list(mirrors), secure=True, official=True)
    return t.RegistryServiceConfig(
        InsecureRegistryCIDRs=cidrs, IndexConfigs={"docker.io": hub}, Mirrors=list(mirrors)
    )


def rfc3339_nano(ns: int) -> str:
    """Go's time.Now().Format(time.RFC3339Nano) in the local zone (trailing zeros trimmed)."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    local = datetime.fromtimestamp(seconds).astimezone()
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        text += f".{nanos:09d}".rstrip("0")
    offset = local.utcoffset()
    minutes = int(offset.total_seconds()) // 60 if offset is not None else 0
    if minutes == 0:
        return text + "Z"
    sign = "+" if minutes > 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"{text}{sign}{hours:02d}:{mins:02d}"


def mask_credentials(raw: str) -> str:
    """dockerd's MaskCredentials: user info of a proxy URL becomes `xxxxx:xxxxx`."""
    try:
        parts = urlsplit(raw)
    except ValueError:
        return raw
    if "@" not in parts.netloc:
        return raw
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc="xxxxx:xxxxx@" + host))


def _config_or_env(value: str, *names: str) -> str:
    if value:
        return value
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    return ""


_API_ATTACK_SURFACE = """
         Access to the remote API is equivalent to root access on the host. Refer
         to the 'Docker daemon attack surface' section in the documentation for
         more information: https://docs.docker.com/go/attack-surface/"""
_API_REMOVAL = (
    "In future versions this will be a hard failure preventing the daemon from starting! "
    "Learn more at: https://docs.docker.com/go/api-security/"
)
_OVERLAY_DEPRECATED = """
WARNING: The %s storage-driver is deprecated, and will be removed in a future release.
         Refer to the documentation for more information: https://docs.docker.com/go/storage-driver/"""


class SystemService:
    """Builds the Version, Info and DiskUsage values; encoding per API version is in api/."""

    def __init__(
        self,
        *,
        engine_id: str,
        data_root: str,
        name: str | None = None,
        labels: Sequence[str] = (),
        debug: bool = False,
        experimental: bool = False,
        live_restore: bool = True,
        default_runtime: str = "runc",
        runtimes: Mapping[str, t.Runtime] | None = None,
        logging_driver: str = "json-file",
        cgroup_driver: str = "cgroupfs",
        security: SecuritySettings | None = None,
        init_binary: str = "docker-init",
        conmon_binary: str = "conmon",
        event_listeners: Callable[[], int] = lambda: 0,
        plugins: Callable[[], t.PluginsInfo] = t.PluginsInfo,
        storage_driver: str = "",
        driver_status: Sequence[tuple[str, str]] = (),
        registry_config: t.RegistryServiceConfig | None = None,
        http_proxy: str = "",
        https_proxy: str = "",
        no_proxy: str = "",
        hosts: Sequence[str] = (),
        tls: bool = False,
        tls_verify: bool = False,
        default_address_pools: Sequence[t.NetworkAddressPool] = (),
        firewall_backend: t.FirewallInfo | None = None,
        usage: Mapping[str, UsageProvider] | None = None,
        platform_name: str = "pymoby",
        build: EngineBuild | None = None,
        host: HostSource | None = None,
        tools: ToolSource | None = None,
    ) -> None:
        self.engine_id = engine_id
        self.data_root = data_root
        self.name = name
        self.labels = list(labels)
        self.debug = debug
        self.experimental = experimental
        self.live_restore = live_restore
        self.default_runtime = default_runtime
        self.runtimes = dict(runtimes) if runtimes is not None else {"runc": t.Runtime(path="runc")}
        self.logging_driver = logging_driver
        self.cgroup_driver = cgroup_driver
        self.security = security or SecuritySettings()
        self.init_binary = init_binary
        self.conmon_binary = conmon_binary
        self.event_listeners = event_listeners
        self.plugins = plugins
        self.storage_driver = storage_driver
        self.driver_status = [(k, v) for k, v in driver_status]
        self.registry_config = registry_config or stock_registry_config()
        self.http_proxy = http_proxy
        self.https_proxy = https_proxy
        self.no_proxy = no_proxy
        self.hosts = list(hosts)
        self.tls = tls
        self.tls_verify = tls_verify
        self.default_address_pools = list(default_address_pools)
        self.firewall_backend = firewall_backend
        self.usage = dict(usage or {})
        unknown = set(self.usage) - t.DISK_USAGE_OBJECTS
        if unknown:
            raise ValueError(f"unknown disk usage object types: {sorted(unknown)}")
        self.platform_name = platform_name
        self._build = build
        self._host_facts: HostFacts | None = None
        self._build_lock = threading.Lock()
        self._host: HostSource = host or HostProbe()
        self._tools: ToolSource = tools or Binaries()

    # ------------------------------------------------------------------ helpers

    async def _load_static(self) -> HostFacts:
        """Host facts that never change while we run: probed once, in a thread."""
        self._host_facts = await asyncio.to_thread(self._host.static_facts)
        return self._host_facts

    def _engine_build(self) -> EngineBuild:
        with self._build_lock:
            if self._build is None:
                self._build = detect_engine_build()
            return self._build

    def _runtime_binary(self, name: str) -> str:
        runtime = self.runtimes.get(name)
        return runtime.path if runtime is not None and runtime.path else name

    # ------------------------------------------------------------------ GET /version

    async def version(self) -> t.Version:
        host = self._host_facts or await self._load_static()
        build = (
            self._build if self._build is not None else await asyncio.to_thread(self._engine_build)
        )
        runtime, conmon, init = await asyncio.gather(
            self._tools.runtime(self._runtime_binary(self.default_runtime)),
            self._tools.conmon(self.conmon_binary),
            self._tools.init(self.init_binary),
        )
        engine_details = {
            "GitCommit": build.git_commit,
            "ApiVersion": str(versions.MAX),
            "MinAPIVersion": str(versions.MIN),
            "PythonVersion": platform.python_version(),
            "Os": sys.platform,
            "Arch": host.go_arch,
            "KernelVersion": host.kernel_version,
            "Experimental": "true" if self.experimental else "false",
        }
        if build.build_time:
            engine_details["BuildTime"] = build.build_time
        components = [
            t.ComponentVersion(name="Engine", version=pymoby.__version__, details=engine_details)
        ]
        for component, probe in (
            (self.default_runtime, runtime),
            ("conmon", conmon),
            (os.path.basename(init.path or self.init_binary), init),
        ):
            if probe.ok:
                components.append(
                    t.ComponentVersion(
                        name=component, version=probe.version, details={"GitCommit": probe.commit}
                    )
                )
        return t.Version(
            platform=t.PlatformInfo(name=self.platform_name),
            version=pymoby.__version__,
            api_version=str(versions.MAX),
            min_api_version=str(versions.MIN),
            os=sys.platform,
            arch=host.go_arch,
            components=components,
            git_commit=build.git_commit,
            kernel_version=host.kernel_version,
            experimental=self.experimental,
            build_time=build.build_time,
        )

    # ------------------------------------------------------------------ GET /info

    def _api_warnings(self) -> list[str]:
        warnings = []
        for host in self.hosts:
            proto, _, addr = host.partition("://")
            if proto != "tcp":
                continue
            if not self.tls:
                warnings.append(
                    f"[DEPRECATION NOTICE]: API is accessible on http://{addr} without "
                    f"encryption.{_API_ATTACK_SURFACE}\n{_API_REMOVAL}"
                )
            elif not self.tls_verify:
                warnings.append(
                    f"[DEPRECATION NOTICE]: API is accessible on https://{addr} without TLS "
                    f"client verification.{_API_ATTACK_SURFACE}\n{_API_REMOVAL}"
                )
        return warnings

    def _driver_warnings(self) -> list[str]:
        warnings = []
        if self.storage_driver == "overlay":
            warnings.append(_OVERLAY_DEPRECATED % self.storage_driver)
        for label, value in self.driver_status:
            if label == "Extended file attributes" and value == "best-effort":
                warnings.append(
                    f"WARNING: {self.storage_driver}: extended file attributes from container "
                    "images will be silently discarded if the backing filesystem does not "
                    "support them.\n"
                    "         CONTAINERS MAY MALFUNCTION IF EXTENDED ATTRIBUTES ARE MISSING.\n"
                    "         This is an UNSUPPORTABLE configuration for which no bug reports "
                    "will be accepted.\n"
                )
        return warnings

    def _security_options(self, host: HostFacts, warnings: list[str]) -> list[str]:
        sec = self.security
        options = []
        if host.apparmor:
            options.append("name=apparmor")
        if host.seccomp:
            if sec.seccomp_profile != SECCOMP_PROFILE_DEFAULT:
                warnings.append("WARNING: daemon is not using the default seccomp profile")
            options.append("name=seccomp,profile=" + sec.seccomp_profile)
        if host.selinux and sec.selinux_enabled:
            options.append("name=selinux")
        if sec.userns_remap:
            options.append("name=userns")
        mode = sec.cgroupns_mode or ("private" if host.cgroups.version == "2" else "host")
        if host.cgroup_namespaces and mode == "private":
            options.append("name=cgroupns")
        if sec.no_new_privileges:
            options.append("name=no-new-privileges")
        return options

    @staticmethod
    def _cgroup_warnings(host: HostFacts, info: t.Info) -> list[str]:
        cg = host.cgroups
        v2 = cg.version == "2"
        warnings = []
        for ok, what in (
            (info.memory_limit, "memory limit"),
            (info.swap_limit, "swap limit"),
            (info.oom_kill_disable or v2, "oom kill disable"),
            (info.cpu_cfs_quota, "cpu cfs quota"),
            (info.cpu_cfs_period, "cpu cfs period"),
            (info.cpu_shares, "cpu shares"),
            (info.cpu_set, "cpuset"),
            (cg.blkio_weight or not v2, "io.weight"),
            (cg.blkio_weight_device or not v2, "io.weight (per device)"),
        ):
            if not ok:
                warnings.append(f"WARNING: No {what} support")
        for ok, v2_name, v1_name in (
            (cg.blkio_read_bps_device, "io.max (rbps)", "blkio throttle.read_bps_device"),
            (cg.blkio_write_bps_device, "io.max (wbps)", "blkio throttle.write_bps_device"),
            (cg.blkio_read_iops_device, "io.max (riops)", "blkio throttle.read_iops_device"),
            (cg.blkio_write_iops_device, "io.max (wiops)", "blkio throttle.write_iops_device"),
        ):
            if not ok:
                warnings.append(f"WARNING: No {v2_name if v2 else v1_name} support")
        return warnings

    async def _runtimes_info(self) -> dict[str, t.Runtime]:
        names = list(self.runtimes)
        features = await asyncio.gather(
            *(self._tools.features(self._runtime_binary(n)) for n in names)
        )
        result = {}
        for name, feats in zip(names, features, strict=True):
            configured = self.runtimes[name]
            result[name] = t.Runtime(
                path=configured.path,
                runtime_args=list(configured.runtime_args),
                status={OCI_FEATURES_KEY: feats} if feats else {},
            )
        return result

    async def info(self, counts: InfoCounts) -> t.Info:
        host = self._host_facts or await self._load_static()
        live = await asyncio.to_thread(self._host.live_facts)
        runtime, conmon, init = await asyncio.gather(
            self._tools.runtime(self._runtime_binary(self.default_runtime)),
            self._tools.conmon(self.conmon_binary),
            self._tools.init(self.init_binary),
        )
        runtimes = await self._runtimes_info()
        cg = host.cgroups
        limits = self.cgroup_driver != "none"
        warnings = self._api_warnings()
        info = t.Info(
            id=self.engine_id,
            containers=counts.containers_running
            + counts.containers_paused
            + counts.containers_stopped,
            containers_running=counts.containers_running,
            containers_paused=counts.containers_paused,
            containers_stopped=counts.containers_stopped,
            images=counts.images,
            driver=self.storage_driver,
            driver_status=list(self.driver_status),
            plugins=self.plugins(),
            memory_limit=limits and cg.memory_limit,
            swap_limit=limits and cg.swap_limit,
            cpu_cfs_period=limits and cg.cpu_cfs,
            cpu_cfs_quota=limits and cg.cpu_cfs,
            cpu_shares=limits and cg.cpu_shares,
            cpu_set=limits and cg.cpuset,
            pids_limit=limits and cg.pids_limit,
            ipv4_forwarding=live.ipv4_forwarding,
            debug=self.debug,
            n_fd=live.open_fds,
            oom_kill_disable=limits and cg.oom_kill_disable,
            n_goroutines=len(asyncio.all_tasks()) + threading.active_count(),
            system_time=rfc3339_nano(time.time_ns()),
            logging_driver=self.logging_driver,
            cgroup_driver=self.cgroup_driver,
            cgroup_version=cg.version,
            n_events_listener=self.event_listeners(),
            kernel_version=host.kernel_version,
            operating_system=host.operating_system,
            os_version=host.os_version,
            os_type=sys.platform,
            architecture=host.architecture,
            index_server_address=INDEX_SERVER,
            registry_config=self.registry_config,
            ncpu=host.ncpu,
            mem_total=host.mem_total,
            generic_resources=[],
            docker_root_dir=self.data_root,
            http_proxy=mask_credentials(
                _config_or_env(self.http_proxy, "HTTP_PROXY", "http_proxy")
            ),
            https_proxy=mask_credentials(
                _config_or_env(self.https_proxy, "HTTPS_PROXY", "https_proxy")
            ),
            no_proxy=_config_or_env(self.no_proxy, "NO_PROXY", "no_proxy"),
            name=self.name if self.name is not None else live.hostname,
            labels=list(self.labels),
            experimental_build=self.experimental,
            server_version=pymoby.__version__,
            runtimes=runtimes,
            default_runtime=self.default_runtime,
            swarm=t.inactive_swarm(),
            live_restore_enabled=self.live_restore,
            isolation="",
            init_binary=self.init_binary,
            containerd_commit=t.Commit(NOT_AVAILABLE),
            runc_commit=t.Commit(runtime.commit if runtime.ok else NOT_AVAILABLE),
            init_commit=t.Commit(init.commit if init.ok else NOT_AVAILABLE),
            security_options=[],
            default_address_pools=list(self.default_address_pools),
            firewall_backend=self.firewall_backend,
            cdi_spec_dirs=[],
            warnings=warnings,
            bridge_nf_iptables=live.bridge_nf_iptables,
            bridge_nf_ip6tables=live.bridge_nf_ip6tables,
        )
        if not limits:
            warnings.append(
                "WARNING: Running in rootless-mode without cgroups. Systemd is required to "
                "enable cgroups in rootless-mode."
                if cg.version == "2"
                else "WARNING: Running in rootless-mode without cgroups. To enable cgroups in "
                "rootless-mode, you need to boot the system in cgroup v2 mode."
            )
        else:
            warnings.extend(self._cgroup_warnings(host, info))
        if not live.ipv4_forwarding:
            warnings.append("WARNING: IPv4 forwarding is disabled")
        # pymoby cannot run containers without these two; dockerd would only log it.
        for probe in (runtime, conmon):
            if not probe.ok:
                warnings.append(f"WARNING: {probe.error}")
        warnings.extend(self._driver_warnings())
        info.security_options = self._security_options(host, warnings)
        return info

    # ------------------------------------------------------------------ GET /system/df

    async def disk_usage(
        self, types: Collection[str] | None = None, api: ApiVersion = versions.MAX
    ) -> t.DiskUsage:
        """Usage per requested object type (`type` query; ignored below API 1.42, as dockerd).

        Raises InvalidParameter for an unknown type. A type without a provider has nothing on
        disk yet (its manager does not exist), so it reports an empty summary.
        """
        if api < t.V1_42 or not types:
            wanted = set(t.DISK_USAGE_OBJECTS)
        else:
            wanted = set()
            for typ in types:
                if typ not in t.DISK_USAGE_OBJECTS:
                    raise errdefs.InvalidParameter(f"unknown object type: {typ}")
                wanted.add(typ)

        async def one(kind: str) -> t.UsageSummary | None:
            if kind not in wanted:
                return None
            provider = self.usage.get(kind)
            return await provider() if provider is not None else t.UsageSummary()

        images, containers, volumes, build_cache = await asyncio.gather(
            one(t.IMAGE_OBJECT),
            one(t.CONTAINER_OBJECT),
            one(t.VOLUME_OBJECT),
            one(t.BUILD_CACHE_OBJECT),
        )
        return t.DiskUsage(
            images=images, containers=containers, volumes=volumes, build_cache=build_cache
        )
