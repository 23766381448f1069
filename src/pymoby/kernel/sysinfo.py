"""Host facts for `GET /info` and `GET /version`, read the way dockerd reads them.

Rule: every value comes from the running host (uname, /proc, /sys, /etc/os-release, prctl);
nothing is guessed. Where a fact cannot be read, the field gets dockerd's fallback (empty string,
`False`) rather than an invented value. Static facts (kernel, OS, CPUs, cgroups, LSMs) are probed
once per `HostProbe` and cached; live facts (forwarding sysctls, open fds, hostname) are read on
every call. All reads block: callers use `asyncio.to_thread`.

`root` prefixes every file path so tests can use a fake tree; uname, the CPU affinity mask and
prctl always describe the real process.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import threading
from dataclasses import dataclass

from pymoby.kernel import cgroups

# uname machine -> Go's GOARCH, which dockerd reports as `Arch` in GET /version.
_GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "i386": "386",
    "i486": "386",
    "i586": "386",
    "i686": "386",
    "aarch64": "arm64",
    "arm64": "arm64",
    "aarch64_be": "arm64be",
    "ppc64le": "ppc64le",
    "ppc64": "ppc64",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "loongarch64": "loong64",
    "mips64": "mips64",
    "mips": "mips",
}


def go_arch(machine: str) -> str:
    """Translate a uname machine name to GOARCH; unknown names are returned unchanged."""
    if machine.startswith("armv") or machine == "arm":
        return "arm"
    return _GOARCH.get(machine, machine)


def format_kernel_release(release: str) -> str:
    """dockerd's kernel.ParseRelease + String: `%d.%d.%d%s`; "" if it cannot be parsed.

    `6.1.0-13-amd64` stays as is; `6.18` becomes `6.18.0`; `5.4-rc1` becomes `5.4.0-rc1`.
    """

    def leading_int(text: str) -> tuple[int | None, str]:
        i = 1 if text[:1] in "+-" else 0
        j = i
        while j < len(text) and text[j].isdigit():
            j += 1
        if j == i:
            return None, text
        return int(text[:j]), text[j:]

    kernel, rest = leading_int(release)
    if kernel is None or not rest.startswith("."):
        return ""
    major, rest = leading_int(rest[1:])
    if major is None:
        return ""
    partial = rest.split()[0] if rest.split() else ""
    minor = 0
    flavor = partial
    if partial.startswith("."):
        parsed, after = leading_int(partial[1:])
        if parsed is not None:
            minor, flavor = parsed, after
    return f"{kernel}.{major}.{minor}{flavor}"


def parse_os_release(text: str) -> dict[str, str]:
    """KEY=value lines; quotes and surrounding spaces trimmed like dockerd; last one wins."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key and not key.startswith("#"):
            values[key] = value.strip("\"' ")
    return values


def parse_meminfo_total(text: str) -> int:
    """MemTotal of /proc/meminfo in bytes (the file says kB, meaning KiB); 0 if absent."""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                factor = 1024 if len(parts) > 2 and parts[2].lower() == "kb" else 1
                return int(parts[1]) * factor
    return 0


def is_containerized(proc1_cgroup: str) -> bool:
    """dockerd: any /proc/1/cgroup line not ending in `:/` or `:/init.scope`."""
    for line in proc1_cgroup.split("\n"):
        if line and not line.endswith(":/") and not line.endswith(":/init.scope"):
            return True
    return False


@dataclass(frozen=True)
class HostFacts:
    """Facts that do not change while the daemon runs."""

    kernel_version: str
    operating_system: str
    os_version: str
    architecture: str  # uname machine, e.g. x86_64 (GET /info Architecture)
    go_arch: str  # GOARCH spelling, e.g. amd64 (GET /version Arch)
    ncpu: int
    mem_total: int
    cgroups: cgroups.CgroupInfo
    seccomp: bool
    apparmor: bool
    selinux: bool
    cgroup_namespaces: bool


@dataclass(frozen=True)
class LiveFacts:
    """Facts read again on every GET /info."""

    hostname: str
    ipv4_forwarding: bool
    bridge_nf_iptables: bool
    bridge_nf_ip6tables: bool
    open_fds: int


class HostProbe:
    """Reads host facts under `root` (default `/`); static facts cached after the first call."""

    def __init__(self, root: str = "/") -> None:
        self._root = root
        self._lock = threading.Lock()
        self._static: HostFacts | None = None

    def _path(self, path: str) -> str:
        return os.path.join(self._root, path.lstrip("/"))

    def _read(self, path: str) -> str | None:
        try:
            with open(self._path(path), encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return None

    def _proc_bool(self, path: str) -> bool:
        text = self._read(path)
        return text is not None and text.strip() == "1"

    # static -----------------------------------------------------------------

    def static_facts(self) -> HostFacts:
        with self._lock:
            if self._static is None:
                self._static = self._probe_static()
            return self._static

    def _probe_static(self) -> HostFacts:
        uname = os.uname()
        return HostFacts(
            kernel_version=format_kernel_release(uname.release),
            operating_system=self.operating_system(),
            os_version=self.os_release().get("VERSION_ID", ""),
            architecture=uname.machine,
            go_arch=go_arch(uname.machine),
            ncpu=len(os.sched_getaffinity(0)),
            mem_total=parse_meminfo_total(self._read("/proc/meminfo") or ""),
            cgroups=cgroups.probe(self._root),
            seccomp=self.seccomp_supported(),
            apparmor=self.apparmor_enabled(),
            selinux=self.selinux_enabled(),
            cgroup_namespaces=os.path.exists(self._path("/proc/self/ns/cgroup")),
        )

    def _os_release_text(self) -> str | None:
        text = self._read("/etc/os-release")
        return text if text is not None else self._read("/usr/lib/os-release")

    def os_release(self) -> dict[str, str]:
        """/etc/os-release, else /usr/lib/os-release (as dockerd); {} if neither is readable."""
        text = self._os_release_text()
        return parse_os_release(text) if text is not None else {}

    def operating_system(self) -> str:
        """PRETTY_NAME (or "Linux"), with dockerd's " (containerized)" suffix when it applies."""
        text = self._os_release_text()
        name = ""
        if text is not None:
            name = parse_os_release(text).get("PRETTY_NAME", "") or "Linux"
        proc1 = self._read("/proc/1/cgroup")
        if proc1 is None:
            return name + " (error determining if containerized)"
        if is_containerized(proc1):
            return name + " (containerized)"
        return name

    def seccomp_supported(self) -> bool:
        """CONFIG_SECCOMP_FILTER, probed as runc/containerd do.

        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, NULL) fails with EFAULT when filters are
        supported and EINVAL when not; it can never install anything. If libc cannot be
        called, fall back to the `Seccomp:` line of /proc/self/status (CONFIG_SECCOMP).
        """
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_seccomp, seccomp_mode_filter = 22, 2
            ctypes.set_errno(0)
            libc.prctl(
                ctypes.c_int(pr_set_seccomp),
                ctypes.c_ulong(seccomp_mode_filter),
                ctypes.c_ulong(0),
                ctypes.c_ulong(0),
                ctypes.c_ulong(0),
            )
            return ctypes.get_errno() != errno.EINVAL
        except (OSError, AttributeError):
            status = self._read("/proc/self/status") or ""
            return any(line.startswith("Seccomp:") for line in status.splitlines())

    def apparmor_enabled(self) -> bool:
        """dockerd: /sys/kernel/security/apparmor exists and its `profiles` file is readable."""
        if not os.path.exists(self._path("/sys/kernel/security/apparmor")):
            return False
        return self._read("/sys/kernel/security/apparmor/profiles") is not None

    def selinux_enabled(self) -> bool:
        """go-selinux GetEnabled: selinuxfs mounted and our label is not `kernel`."""
        mounts = cgroups.parse_mountinfo(self._read("/proc/self/mountinfo") or "")
        if not any(m.fstype == "selinuxfs" for m in mounts):
            return False
        label = (self._read("/proc/self/attr/current") or "").strip("\x00\n ")
        return bool(label) and label != "kernel"

    # live -------------------------------------------------------------------

    def live_facts(self) -> LiveFacts:
        return LiveFacts(
            hostname=socket.gethostname(),
            ipv4_forwarding=self._proc_bool("/proc/sys/net/ipv4/ip_forward"),
            bridge_nf_iptables=self._proc_bool("/proc/sys/net/bridge/bridge-nf-call-iptables"),
            bridge_nf_ip6tables=self._proc_bool("/proc/sys/net/bridge/bridge-nf-call-ip6tables"),
            open_fds=open_fd_count(),
        )


def open_fd_count() -> int:
    """Open file descriptors of this process, as dockerd's GetTotalUsedFds; -1 on error.

    Since Linux 6.2 the size of /proc/self/fd is the count (no fd is opened to read it);
    otherwise list the directory and discount the fd the listing itself holds.
    """
    try:
        size = os.stat("/proc/self/fd").st_size
        if size > 0:
            return size
        return len(os.listdir("/proc/self/fd")) - 1
    except OSError:
        return -1
