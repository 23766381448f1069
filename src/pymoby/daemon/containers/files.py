"""A container's own files: the init layer, /etc/hostname, /etc/hosts, /etc/resolv.conf.

Rule: every path inside an image's root filesystem is resolved with `archive.rootdir.RootDir`
(symlinks expanded as if the root were "/", `..` never above it), so an image can never make
us read or write a host file. Files we generate are written to a temporary name in the
container's directory and renamed into place. All functions block: callers use a thread.

- Init layer (dockerd's initlayer.Setup): the mount points every container needs exist between
  the image and the container layer, so they never show in `docker diff`: /dev/pts, /dev/shm,
  /proc, /sys (directories), /.dockerenv, /etc/resolv.conf, /etc/hosts, /etc/hostname,
  /dev/console (empty files), /etc/mtab -> /proc/mounts. A non-directory met on the way
  (a file or a symlink an image put there) is removed first, as dockerd does.
- /etc/hosts: dockerd's default records (localhost, the IPv6 names), ExtraHosts, the legacy
  links' records, then the container's own address when it has one; with the host's network,
  the host's /etc/hosts followed by ExtraHosts.
- /etc/resolv.conf: the host's (systemd-resolved's upstream file when the host points at
  127.0.0.53); outside the host's network, loopback nameservers are dropped (unreachable from
  a container) and Google's public servers used when none remain, as dockerd does; --dns,
  --dns-search and --dns-option replace the nameservers, search domains and options. On a
  user-defined network the only nameserver is the embedded DNS (127.0.0.11, `options
  ndots:0`, dockerd's text); --dns servers become its upstreams instead.
- `--add-host name:host-gateway` is the default bridge's gateway address.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from pymoby import errdefs
from pymoby.archive.errors import ArchiveError
from pymoby.archive.rootdir import RootDir

INIT_ENTRIES: tuple[tuple[str, str], ...] = (
    ("dev/pts", "dir"),
    ("dev/shm", "dir"),
    ("proc", "dir"),
    ("sys", "dir"),
    (".dockerenv", "file"),
    ("etc/resolv.conf", "file"),
    ("etc/hosts", "file"),
    ("etc/hostname", "file"),
    ("dev/console", "file"),
    ("etc/mtab", "/proc/mounts"),
)

DEFAULT_HOSTS = (
    ("127.0.0.1", "localhost"),
    ("::1", "localhost ip6-localhost ip6-loopback"),
    ("fe00::", "ip6-localnet"),
    ("ff00::", "ip6-mcastprefix"),
    ("ff02::1", "ip6-allnodes"),
    ("ff02::2", "ip6-allrouters"),
)
DEFAULT_NAMESERVERS = ("8.8.8.8", "8.8.4.4")
EMBEDDED_DNS = "127.0.0.11"
HOST_RESOLV_CONF = "/etc/resolv.conf"
SYSTEMD_RESOLV_CONF = "/run/systemd/resolve/resolv.conf"
HOST_HOSTS = "/etc/hosts"

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


# -- the init layer --------------------------------------------------------------------------


def setup_init_layer(root: Path) -> None:
    """Create the init layer's entries under `root` (the mounted init layer)."""
    for path, kind in INIT_ENTRIES:
        *parents, base = path.split("/")
        fd = os.open(root, _DIR)
        try:
            for name in parents:
                _unlink_non_dir(fd, name)
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=fd)
                nxt = os.open(name, _DIR, dir_fd=fd)
                os.close(fd)
                fd = nxt
            _unlink_non_dir(fd, base)
            if _exists(fd, base):
                continue
            if kind == "dir":
                os.mkdir(base, 0o755, dir_fd=fd)
            elif kind == "file":
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                os.close(os.open(base, flags, 0o755, dir_fd=fd))
            else:
                os.symlink(kind, base, dir_fd=fd)
        finally:
            os.close(fd)


def _unlink_non_dir(dirfd: int, name: str) -> None:
    try:
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dirfd)


def _exists(dirfd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


# -- reading the image's files ---------------------------------------------------------------


def read_root_file(rootfs: Path, path: str, limit: int = 4 << 20) -> str | None:
    """A text file of the container's root filesystem (symlinks resolved inside it), or None
    when it does not exist or is not a regular file."""
    rel = path.strip("/")
    try:
        with RootDir(rootfs) as rd:
            parts = rel.split("/")
            for _ in range(40):  # follow a final symlink inside the root, a few times
                dirfd, real, base = rd.open_parent("/".join(parts))
                try:
                    st = os.stat(base, dir_fd=dirfd, follow_symlinks=False)
                    if stat.S_ISLNK(st.st_mode):
                        target = os.readlink(base, dir_fd=dirfd)
                        head = real.rpartition("/")[0]
                        joined = target if target.startswith("/") else f"{head}/{target}"
                        parts = joined.strip("/").split("/")
                        continue
                    if not stat.S_ISREG(st.st_mode):
                        return None
                    fd = os.open(base, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
                finally:
                    os.close(dirfd)
                with os.fdopen(fd, "rb") as f:
                    return f.read(limit).decode("utf-8", "replace")
    except (OSError, ArchiveError):
        return None
    return None


# -- hostname, hosts, resolv.conf ------------------------------------------------------------


def hostname_content(hostname: str, domainname: str = "") -> str:
    return f"{hostname}\n"


def hosts_content(
    extra_hosts: Sequence[str] | None,
    *,
    host_network: bool,
    own: Sequence[tuple[str, str]] = (),
    host_hosts: str | None = None,
    host_gateway: str = "",
    linked: Sequence[tuple[str, str]] = (),
) -> str:
    """The container's /etc/hosts (see the module rule). `own` and `linked` are (ip, names)
    records; dockerd's order: defaults, --add-host entries, links, the container's own."""
    lines: list[str] = []
    if host_network:
        text = host_hosts or ""
        lines.append(text if not text or text.endswith("\n") else text + "\n")
    else:
        lines.extend(f"{ip}\t{names}\n" for ip, names in DEFAULT_HOSTS)
    for entry in extra_hosts or ():
        name, _, ip = entry.partition(":")
        if ip == "host-gateway":
            if not host_gateway:
                raise errdefs.InvalidParameter(
                    "unable to derive the IP value for host-gateway: the default bridge "
                    "network is disabled (--bridge=none) and no --host-gateway-ip is set"
                )
            ip = host_gateway
        lines.append(f"{ip}\t{name}\n")
    if not host_network:
        lines.extend(f"{ip}\t{names}\n" for ip, names in (*linked, *own))
    return "".join(lines)


def _is_loopback(text: str) -> bool:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def host_resolv_conf() -> tuple[str, str]:
    """(text, path) of the host's resolver config, systemd-resolved's upstream file preferred
    when /etc/resolv.conf only points at its local stub."""
    text = _read(HOST_RESOLV_CONF) or ""
    servers = _field_values(text, "nameserver")
    if servers and all(s.startswith("127.0.0.53") for s in servers):
        upstream = _read(SYSTEMD_RESOLV_CONF)
        if upstream is not None:
            return upstream, SYSTEMD_RESOLV_CONF
    return text, HOST_RESOLV_CONF


def resolv_conf_content(
    host_text: str,
    *,
    host_network: bool,
    dns: Sequence[str] | None,
    dns_search: Sequence[str] | None,
    dns_options: Sequence[str] | None,
    embedded_dns: bool = False,
) -> str:
    """The container's /etc/resolv.conf (see the module rule)."""
    servers = _field_values(host_text, "nameserver")
    search = _field_values(host_text, "search") or _field_values(host_text, "domain")
    options = _field_values(host_text, "options")
    if embedded_dns:
        servers = [EMBEDDED_DNS]
        options = ["ndots:0", *(o for o in options if not o.startswith("ndots:"))]
    elif dns:
        servers = list(dns)
    elif not host_network:
        servers = [s for s in servers if not _is_loopback(s)] or list(DEFAULT_NAMESERVERS)
    if dns_search:
        search = [] if list(dns_search) == ["."] else list(dns_search)
    if dns_options:
        options = list(dns_options)
        if embedded_dns and not any(o.startswith("ndots:") for o in options):
            options.insert(0, "ndots:0")
    out = [f"nameserver {s}\n" for s in servers]
    if search:
        out.append("search " + " ".join(search) + "\n")
    if options:
        out.append("options " + " ".join(options) + "\n")
    return "".join(out)


def nameservers(text: str) -> list[str]:
    """The nameserver addresses of a resolv.conf text."""
    return _field_values(text, "nameserver")


def _field_values(text: str, key: str) -> list[str]:
    values: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        words = line.split()
        if words and words[0] == key:
            values.extend(words[1:] if key != "nameserver" else words[1:2])
    return values


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(1 << 20)
    except OSError:
        return None


def read_host_hosts() -> str:
    return _read(HOST_HOSTS) or ""


def write_file(path: Path, content: str, mode: int = 0o644) -> None:
    """Write `content` to a temporary name beside `path`, then rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.write(fd, content.encode())
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.replace(tmp, path)
