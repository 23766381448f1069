"""Daemon configuration: command-line flags + daemon.json -> one frozen `Config`.

Rule: every option is one row of `OPTIONS` (daemon.json key, flags, kind, default, reloadable,
check) plus its field on `Config`; the flag parser and help text (cmd/pymobyd.py), daemon.json
validation, flag/file conflict detection and SIGHUP `reload` all come from that table. Names,
precedence (flag > file > default) and error texts follow dockerd: a key given both as a flag
and in the file, an unknown key, malformed JSON and wrongly typed values are errors, reported
with dockerd's words. Every error is a `ConfigError` (InvalidParameter). The network options
(bridge, IPAM pools, DNS, iptables) are dockerd's; their checks that span options (-b with
--bip, --icc=false without iptables, the pools' canonical form) run once flags and file are
merged, where dockerd runs them when the daemon starts.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from ipaddress import IPv6Address, ip_address
from typing import Any, NamedTuple

from pymoby import errdefs
from pymoby.api.types.networks import check_addr
from pymoby.daemon.gojson import GoJSONError, Num, go_v, kind_of, loads, syntax_error
from pymoby.daemon.networks import ipam
from pymoby.log import LEVELS, go_quote

DEFAULT_CONFIG_FILE = "/etc/pymoby/daemon.json"
DEFAULT_UNIX_SOCKET = "/var/run/docker.sock"
DEFAULT_HTTP_HOST = "localhost"
DEFAULT_HTTP_PORT = 2375
DEFAULT_TLS_HTTP_PORT = 2376
INSECURE_TCP_WARNINGS = (
    "Binding to IP address without --tlsverify is insecure and gives root access on this machine"
    " to everyone who has access to your network.",
    "Binding to an IP address, even on localhost, can also give access to scripts run in a"
    " browser. Be safe out there!",
)


class ConfigError(errdefs.InvalidParameter):
    """The flags or the configuration file are invalid; the message is dockerd's."""


class FlagError(ConfigError):
    """A command-line usage error (dockerd prints these as `Status: ..., Code: 125`)."""


# --- hosts (opts.ParseDaemonHost) -------------------------------------------------------------


class Host(NamedTuple):
    """A listen address: scheme `unix` (address = path), `tcp` (`host:port`, `[v6]:port`)
    or `fd` (address = fd number, or "" for every socket systemd passed)."""

    scheme: str
    address: str

    def __str__(self) -> str:
        return f"{self.scheme}://{self.address}"

    def tcp_address(self) -> tuple[str, int]:
        """(host, port) of a tcp Host, brackets removed from an IPv6 literal."""
        host, _, port = self.address.rpartition(":")
        return host.removeprefix("[").removesuffix("]"), int(port)


class _HostError(Exception):
    pass


_HOST_OK = frozenset("-_.~!$&'()*+,;=:[]<>\"")


def _valid_optional_port(colon_port: str) -> bool:
    return colon_port == "" or (
        colon_port[0] == ":" and all(c in "0123456789" for c in colon_port[1:])
    )


def _url_host(raw: str) -> tuple[str, str]:
    """Go's url.Parse of `tcp://...`, reduced to what ParseTCPAddr uses: (host[:port], path)."""

    def fail(msg: str) -> _HostError:
        return _HostError(f"parse {go_quote(raw)}: {msg}")

    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise fail("net/url: invalid control character in URL")
    rest = raw.partition("#")[0].partition("://")[2].partition("?")[0]
    authority, slash, path = rest.partition("/")
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        end = host.rfind("]")
        if end < 0:
            raise fail("missing ']' in host")
        if not _valid_optional_port(host[end + 1 :]):
            raise fail(f"invalid port {go_quote(host[end + 1 :])} after host")
    elif ":" in host and not _valid_optional_port(host[host.rfind(":") :]):
        raise fail(f"invalid port {go_quote(host[host.rfind(':') :])} after host")
    for i, ch in enumerate(host):
        if ch == "%":
            raise fail(f"invalid URL escape {go_quote(host[i : i + 3])}")
        if ord(ch) < 0x80 and not ch.isalnum() and ch not in _HOST_OK:
            raise fail(f"invalid character {go_quote(ch)} in host name")
    return host, slash + path


def _parse_tcp(address: str, tls: bool) -> Host:
    host, path = _url_host(address if "://" in address else "tcp://" + address)
    if path:
        raise _HostError("should not contain a path element")
    name, port = host, ""
    colon = host.rfind(":")
    if colon >= 0 and _valid_optional_port(host[colon:]):
        name, port = host[:colon], host[colon + 1 :]
    name = name.removeprefix("[").removesuffix("]") if name.startswith("[") else name
    if port and not 0 < int(port) < 65536:
        raise _HostError(f"invalid port: {port}")
    name = name or DEFAULT_HTTP_HOST
    port = port or str(DEFAULT_TLS_HTTP_PORT if tls else DEFAULT_HTTP_PORT)
    return Host("tcp", f"[{name}]:{port}" if ":" in name else f"{name}:{port}")


def parse_host(value: str, *, tls: bool = False) -> Host:
    """dockerd's ParseDaemonHost: `unix://[path]`, `tcp://[host][:port]`, `host:port`,
    `fd://[n]`; tcp's default port is 2376 with TLS, else 2375."""
    proto, sep, addr = value.partition("://")
    if not sep and proto:
        proto, addr = "tcp", proto
    try:
        if proto == "tcp":
            return _parse_tcp(value, tls)
        if proto == "unix":
            if "://" in addr:
                raise _HostError(f"invalid unix address: {addr}")
            return Host("unix", addr or DEFAULT_UNIX_SOCKET)
        if proto == "fd":
            return Host("fd", addr)
        raise _HostError(f"unsupported proto '{proto}'")
    except _HostError as err:
        raise ConfigError(f"invalid bind address ({value}): {err}") from None


# --- the option table --------------------------------------------------------------------------


class Kind(Enum):
    """Value kinds, with the Go type name dockerd's JSON errors use."""

    BOOL = "bool"
    INT = "int"
    STRING = "string"
    LIST = "[]string"
    OBJECT = "map[string]interface {}"
    POOLS = "[]*ipamutils.NetworkToSplit"  # a repeatable flag; in daemon.json a list of objects


def _check_host(value: str) -> str:
    if value.strip():
        parse_host(value)
    return value


def _check_label(value: str) -> str:
    if "=" not in value:
        raise ValueError(f"bad attribute format: {value}")
    if value.lower().startswith(("com.docker.", "io.docker.", "org.dockerproject.")):
        raise ValueError(
            f"label {value} is not allowed: the namespaces com.docker.*, io.docker.*, and"
            " org.dockerproject.* are reserved for internal use"
        )
    return value


def _check_level(value: str) -> str:
    if value.lower() not in LEVELS:
        raise ValueError(f"unable to parse logging level: {value}")
    return value.lower()


def _go_ip(text: str) -> str | None:
    """Go's net.ParseIP, normalized as net.IP prints it; None when it does not parse."""
    try:
        ip = ip_address(text) if "%" not in text else None
    except ValueError:
        return None
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return None if ip is None else str(ip)


def _check_ip_flag(value: str) -> str:
    """pflag's IP flag (--ip, --default-gateway)."""
    ip = _go_ip(value.strip())
    if ip is None:
        raise ValueError(f"failed to parse IP: {go_quote(value)}")
    return ip


def _decode_ip(value: str) -> str:
    """net.IP in daemon.json: "" is no address."""
    ip = _go_ip(value) if value else ""
    if ip is None:
        raise ValueError(f"invalid IP address: {value}")
    return ip


def _check_dns(value: str) -> str:
    """--dns: netip.ParseAddr (daemon.json's netip.Addr decodes "" as no address)."""
    try:
        check_addr(value)
    except errdefs.InvalidParameter as err:
        raise ValueError(err.message.removeprefix("invalid JSON: ")) from None
    return str(ip_address(value))


def _decode_dns(value: str) -> str:
    return _check_dns(value) if value else ""


_DOMAIN = re.compile(
    r"(:?(:?[a-zA-Z0-9]|(:?[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9]))"
    r"(:?\.(:?[a-zA-Z0-9]|(:?[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9])))*)\.?[\t\n\f\r ]*"
)


def _check_dns_search(value: str) -> str:
    """opts.ValidateDNSSearch: "." or a domain name (returned without its trailing dot)."""
    value = value.strip(" ")
    if value == ".":
        return value
    match = _DOMAIN.fullmatch(value) if re.search("[a-zA-Z]", value) else None
    if match is None or len(match.group(1)) >= 255:
        raise ValueError(f"{value} is not a valid domain")
    return match.group(1)


def _check_mtu(value: int) -> int:
    if value < 0:
        raise ValueError(f"invalid default MTU: {value}")
    return value


def _check_pool_flag(value: str) -> ipam.PoolSpec:
    """--default-address-pool: its syntax now, its canonical form once merged."""
    return ipam.parse_pool_spec(value)


def _cert(name: str) -> Callable[[Mapping[str, str]], str]:
    def default(environ: Mapping[str, str]) -> str:
        base = environ.get("DOCKER_CERT_PATH") or environ.get("DOCKER_CONFIG")
        if not base:
            base = os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".docker")
        return os.path.join(base, name)

    return default


@dataclass(frozen=True)
class Option:
    """One configuration option (one row of the table).

    `key` is the daemon.json key; the Config attribute is `key` with `-` -> `_`. `flags` is
    e.g. "-D --debug" ("" = daemon.json only). `default` may be a function of the environment.
    `check` validates (and may normalize) one value or list item, raising ValueError with
    dockerd's text. `decode`, when set, converts a daemon.json value or list item instead of
    `check` (a value dockerd's JSON decoder itself parses; its error is reported like a type
    error). `reloadable` keys change on SIGHUP.
    """

    key: str
    kind: Kind
    default: Any
    flags: str = ""
    help: str = ""
    reloadable: bool = False
    check: Callable[[Any], Any] | None = None
    decode: Callable[[Any], Any] | None = None

    @property
    def attr(self) -> str:
        return self.key.replace("-", "_")

    @property
    def long(self) -> str:
        return next((f[2:] for f in self.flags.split() if f.startswith("--")), "")

    @property
    def short(self) -> str:
        return next((f[1:] for f in self.flags.split() if len(f) == 2), "")

    @property
    def flag_label(self) -> str:
        return f"-{self.short}, --{self.long}" if self.short else f"--{self.long}"

    def default_value(self, environ: Mapping[str, str]) -> Any:
        return self.default(environ) if callable(self.default) else self.default


BOOL, INT, STR, LIST, OBJ = Kind.BOOL, Kind.INT, Kind.STRING, Kind.LIST, Kind.OBJECT
_LEVEL_HELP = 'Set the logging level ("debug"|"info"|"warn"|"error"|"fatal")'
_DEFBR = "for the default bridge network"
OPTIONS: tuple[Option, ...] = (
    Option("hosts", LIST, (), "-H --host", "Daemon socket(s) to connect to", False, _check_host),
    Option("data-root", STR, "/var/lib/pymoby", "--data-root", "Root of persistent state"),
    Option("exec-root", STR, "/run/pymoby", "--exec-root", "Root directory for execution state"),
    Option("pidfile", STR, "/var/run/pymoby.pid", "-p --pidfile", "Path to the daemon PID file"),
    Option("debug", BOOL, False, "-D --debug", "Enable debug mode", True),
    Option("log-level", STR, "info", "-l --log-level", _LEVEL_HELP, True, _check_level),
    Option("group", STR, "docker", "-G --group", "Group for the unix socket"),
    Option("tls", BOOL, False, "--tls", "Use TLS; implied by --tlsverify"),
    Option("tlsverify", BOOL, False, "--tlsverify", "Use TLS and verify the remote"),
    Option("tlscacert", STR, _cert("ca.pem"), "--tlscacert", "Trust certs signed only by this CA"),
    Option("tlscert", STR, _cert("cert.pem"), "--tlscert", "Path to TLS certificate file"),
    Option("tlskey", STR, _cert("key.pem"), "--tlskey", "Path to TLS key file"),
    Option("labels", LIST, (), "--label", "Set key=value labels to the daemon", True, _check_label),
    Option("storage-driver", STR, "", "-s --storage-driver", "Storage driver to use"),
    Option("experimental", BOOL, False, "--experimental", "Enable experimental features"),
    Option("default-runtime", STR, "runc", "--default-runtime", "Default OCI runtime", True),
    Option("live-restore", BOOL, False, "--live-restore", "Accepted; always on in pymoby", True),
    Option("shutdown-timeout", INT, 15, "--shutdown-timeout", "Default shutdown timeout", True),
    Option("features", OBJ, {}, "", "Feature switches (daemon.json only)", True),
    Option("builder", OBJ, {}, "", "Builder settings (daemon.json only; ignored)"),
    # networking (dockerd's BridgeConfig, NetworkConfig, DNSConfig)
    Option("bridge", STR, "", "-b --bridge", "Attach containers to a network bridge"),
    Option("bip", STR, "", "--bip", "IPv4 address for the default bridge"),
    Option("fixed-cidr", STR, "", "--fixed-cidr", "IPv4 subnet " + _DEFBR),
    Option("mtu", INT, 1500, "--mtu", 'Set the MTU for the default "bridge" network', False,
           _check_mtu),
    Option("icc", BOOL, True, "--icc", "Enable inter-container communication " + _DEFBR),
    Option("ip-forward", BOOL, True, "--ip-forward",
           "Enable IP forwarding in system configuration"),
    Option("ip-masq", BOOL, True, "--ip-masq", "Enable IP masquerading " + _DEFBR),
    Option("iptables", BOOL, True, "--iptables", "Enable addition of iptables rules"),
    Option("userland-proxy", BOOL, True, "--userland-proxy",
           "Use userland proxy for loopback traffic"),
    Option("userland-proxy-path", STR, "", "--userland-proxy-path",
           "Path to the userland proxy binary (accepted; pymoby runs its own proxy)"),
    Option("default-gateway", STR, "", "--default-gateway",
           "Default gateway IPv4 address " + _DEFBR, False, _check_ip_flag, _decode_ip),
    Option("ip", STR, "0.0.0.0", "--ip",
           "Host IP for port publishing from the default bridge network", False, _check_ip_flag,
           _decode_ip),
    Option("default-address-pools", Kind.POOLS, (), "--default-address-pool",
           "Default address pools for node specific local networks", False, _check_pool_flag,
           ipam.pool_spec_from_json),
    Option("dns", LIST, (), "--dns", "DNS server to use", False, _check_dns, _decode_dns),
    Option("dns-opts", LIST, (), "--dns-opt", "DNS options to use"),
    Option("dns-search", LIST, (), "--dns-search", "DNS search domains to use", False,
           _check_dns_search),
)  # fmt: skip
OPTION_BY_KEY = {opt.key: opt for opt in OPTIONS}
# Flags that are actions, not configuration; dockerd accepts (and ignores) them as keys.
_IGNORED_KEYS = frozenset(("config-file", "validate", "version", "help"))


@dataclass(frozen=True)
class Config:
    """The daemon's configuration. Field defaults equal the table's (tests check it)."""

    hosts: tuple[Host, ...] = (Host("unix", DEFAULT_UNIX_SOCKET),)
    data_root: str = "/var/lib/pymoby"
    exec_root: str = "/run/pymoby"
    pidfile: str = "/var/run/pymoby.pid"
    debug: bool = False
    log_level: str = "info"
    group: str = "docker"
    tls: bool = False
    tlsverify: bool = False
    tlscacert: str = ""
    tlscert: str = ""
    tlskey: str = ""
    labels: tuple[str, ...] = ()
    storage_driver: str = ""
    experimental: bool = False
    default_runtime: str = "runc"
    live_restore: bool = False
    shutdown_timeout: int = 15
    features: Mapping[str, Any] = field(default_factory=dict, hash=False)
    builder: Mapping[str, Any] = field(default_factory=dict, hash=False)
    bridge: str = ""  # -b: a bridge the user made; "none" = no default bridge network
    bip: str = ""
    fixed_cidr: str = ""
    mtu: int = 1500
    icc: bool = True
    ip_forward: bool = True
    ip_masq: bool = True
    iptables: bool = True
    userland_proxy: bool = True
    userland_proxy_path: str = ""
    default_gateway: str = ""
    ip: str = "0.0.0.0"  # default host IP of published ports
    default_address_pools: tuple[ipam.AddressPool, ...] = ()  # () = ipam.DEFAULT_POOLS
    dns: tuple[str, ...] = ()
    dns_opts: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    # Where it came from, for `reload`: the file, and the keys set by flags (Go %v of the flag).
    config_file: str = DEFAULT_CONFIG_FILE
    config_file_given: bool = False
    cli_flags: tuple[tuple[str, str], ...] = ()

    @property
    def effective_log_level(self) -> str:
        """`debug` when --debug is on (dockerd's debug.Enable), else `log_level`."""
        return "debug" if self.debug else self.log_level


@dataclass(frozen=True)
class CommandLine:
    """Parsed flags: `values` holds only the options given on the command line (key -> value),
    `display` the same as Go's `%v` (used in conflict messages)."""

    values: Mapping[str, Any] = field(default_factory=dict, hash=False)
    display: Mapping[str, str] = field(default_factory=dict, hash=False)
    config_file: str = DEFAULT_CONFIG_FILE
    config_file_given: bool = False
    validate: bool = False
    version: bool = False
    help: bool = False


# --- daemon.json ---------------------------------------------------------------------------------


def _convert(opt: Option, value: Any) -> Any:
    """A decoded JSON value as the option's Python value; TypeError text as Go's decoder's."""
    where = f"Go struct field Config.{opt.key} of type"
    if value is None:
        return None
    if opt.kind is Kind.BOOL and isinstance(value, bool):
        return value
    if opt.kind is Kind.STRING and isinstance(value, str):
        return value
    if opt.kind is Kind.OBJECT and isinstance(value, dict):
        return value
    if opt.kind is Kind.INT and isinstance(value, Num):
        try:
            number = int(value.text)
        except ValueError:
            number = None
        if number is None or not -(2**63) <= number < 2**63:
            raise TypeError(f"json: cannot unmarshal number {value.text} into {where} int")
        return number
    if opt.kind is Kind.POOLS:
        if isinstance(value, list):
            return tuple(value)
        raise TypeError(
            f"json: cannot unmarshal {kind_of(value)} into Go value of type {opt.kind.value}"
        )
    if opt.kind is Kind.LIST and isinstance(value, list):
        for item in value:
            if item is not None and not isinstance(item, str):
                raise TypeError(f"json: cannot unmarshal {kind_of(item)} into {where} string")
        return tuple("" if item is None else item for item in value)
    raise TypeError(f"json: cannot unmarshal {kind_of(value)} into {where} {opt.kind.value}")


def _read_file(path: str, given: bool) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        if not given:
            return None
        raise ConfigError(
            f"unable to configure the Docker daemon with file {path}: "
            f"open {path}: no such file or directory"
        ) from None
    except OSError as err:
        reason = (err.strerror or str(err)).lower()
        verb = "read" if isinstance(err, IsADirectoryError) else "open"
        raise ConfigError(
            f"unable to configure the Docker daemon with file {path}: {verb} {path}: {reason}"
        ) from None


def parse_file(path: str, data: bytes, flags: Mapping[str, str]) -> dict[str, Any]:
    """Validate daemon.json `data` against the table and the keys set by `flags`
    (key -> Go %v of the flag value); return key -> value (None for a JSON null)."""
    prefix = f"unable to configure the Docker daemon with file {path}: "
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        data = data.decode("utf-16").encode()
    data = data.removeprefix(b"\xef\xbb\xbf").strip()
    if not data:
        return {}
    syntax = syntax_error(data)
    if syntax:
        raise ConfigError(prefix + syntax)
    try:
        top = loads(data)
    except GoJSONError as exc:
        raise ConfigError(prefix + str(exc)) from None
    if top is None:
        return {}
    if not isinstance(top, dict):
        raise ConfigError(
            f"{prefix}json: cannot unmarshal {kind_of(top)} into Go value of type"
            " map[string]interface {}"
        )
    flat: dict[str, Any] = {}
    for key, value in top.items():
        opt = OPTION_BY_KEY.get(key)
        if isinstance(value, dict) and (opt is None or opt.kind is not Kind.OBJECT):
            flat.update(value)
        else:
            flat[key] = value
    unknown = [k for k in flat if k not in OPTION_BY_KEY and k not in _IGNORED_KEYS]
    if unknown:
        raise ConfigError(
            prefix
            + "the following directives don't match any configuration option: "
            + ", ".join(unknown)
        )
    conflicts = [
        f"{opt.key}: (from flag: {flags[opt.key]}, from file: {go_v(flat[opt.key])})"
        for opt in sorted(OPTIONS, key=lambda o: o.long)
        if opt.key in flags and opt.key in flat
    ]
    if conflicts:
        raise ConfigError(
            prefix + "the following directives are specified both as a flag and in the"
            " configuration file: " + ", ".join(conflicts)
        )
    result: dict[str, Any] = {}
    for key, value in top.items():
        opt = OPTION_BY_KEY.get(key)
        if opt is None:
            continue
        try:
            result[key] = _convert(opt, value)
        except TypeError as err:
            raise ConfigError(prefix + str(err)) from None
    for key, value in result.items():
        opt = OPTION_BY_KEY[key]
        convert = opt.decode or opt.check
        if convert is None or value is None:
            continue
        try:
            items = value if isinstance(value, tuple) else (value,)
            checked = tuple(convert(item) for item in items)
        except (ValueError, ConfigError) as err:
            if opt.decode is not None:
                raise ConfigError(prefix + str(err)) from None
            raise ConfigError(f"{prefix}configuration validation from file failed: {err}") from None
        result[key] = checked if isinstance(value, tuple) else checked[0]
    return result


def _conflict_free_labels(labels: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for label in labels:
        key, _, value = label.partition("=")
        if key in seen and seen[key] != value:
            raise ConfigError(f"conflict labels for {key}={value} and {key}={seen[key]}")
        seen[key] = value
    return tuple(f"{k}={v}" for k, v in seen.items())


def _build(cmd: CommandLine, file_values: Mapping[str, Any], environ: Mapping[str, str]) -> Config:
    values: dict[str, Any] = {}
    explicit: set[str] = set()
    for opt in OPTIONS:
        if opt.key in cmd.values:
            values[opt.key] = cmd.values[opt.key]
        elif file_values.get(opt.key) is not None:
            values[opt.key] = file_values[opt.key]
        else:
            values[opt.key] = opt.default_value(environ)
            continue
        explicit.add(opt.key)
    # TLS: any --tlsverify turns TLS on; --tls alone also verifies (dockerd).
    if "tlsverify" in explicit:
        values["tls"] = True
    elif "tls" in explicit:
        values["tlsverify"] = values["tls"]
    for key in ("tlscacert", "tlscert", "tlskey"):
        if key in explicit:
            continue
        if not values["tls"] or (key != "tlscacert" and not os.path.exists(values[key])):
            values[key] = ""
    hosts = [h for h in values["hosts"] if h.strip()]
    if not hosts:
        hosts = (
            [f"tcp://{DEFAULT_HTTP_HOST}:{DEFAULT_TLS_HTTP_PORT}"]
            if values["tls"]
            else [f"unix://{DEFAULT_UNIX_SOCKET}"]
        )
    parsed = {str(h): h for h in (parse_host(h, tls=values["tls"]) for h in hosts)}
    values["hosts"] = tuple(parsed[k] for k in sorted(parsed))
    values["labels"] = _conflict_free_labels(values["labels"])
    for key in ("data-root", "exec-root", "pidfile"):
        if values[key]:
            values[key] = os.path.abspath(values[key])
    _merge_network(values)
    return Config(
        **{OPTION_BY_KEY[k].attr: v for k, v in values.items()},
        config_file=cmd.config_file,
        config_file_given=cmd.config_file_given,
        cli_flags=tuple(sorted(cmd.display.items())),
    )


def _merge_network(values: dict[str, Any]) -> None:
    """The network options once merged: dockerd's start-up checks, the pools' canonical form."""
    if values["mtu"] < 0:
        raise ConfigError(f"invalid default MTU: {values['mtu']}")
    if values["bridge"] and values["bip"]:
        raise ConfigError(
            "You specified -b & --bip, mutually exclusive options. Please specify only one"
        )
    if not values["icc"] and not values["iptables"]:
        raise ConfigError(
            "You specified --iptables=false with --icc=false. ICC=false uses iptables to"
            " function. Please set --icc or --iptables to true"
        )
    try:
        values["default-address-pools"] = ipam.make_pools(values["default-address-pools"])
    except ValueError as err:
        raise ConfigError(
            f"Error initializing network controller: error obtaining controller instance: {err}"
        ) from None
    values["ip"] = values["ip"] or "0.0.0.0"
    values["dns"] = tuple(d for d in values["dns"] if d)


def load(cmd: CommandLine, environ: Mapping[str, str] | None = None) -> Config:
    """Merge flags, the configuration file and defaults (flag > file > default)."""
    env = os.environ if environ is None else environ
    file_values: dict[str, Any] = {}
    if cmd.config_file:
        data = _read_file(cmd.config_file, cmd.config_file_given)
        if data is not None:
            file_values = parse_file(cmd.config_file, data, cmd.display)
    return _build(cmd, file_values, env)


def reload(current: Config, config_file: str | None = None) -> tuple[Config, dict[str, Any]]:
    """SIGHUP: re-read the configuration file and apply its reloadable keys.

    Like dockerd, only reloadable keys present in the file change; keys set by flags still
    conflict. Returns the new Config and {key: new value} for the keys whose value changed.
    A file that fails validation raises ConfigError and changes nothing.
    """
    path = current.config_file if config_file is None else config_file
    given = current.config_file_given or config_file is not None
    data = _read_file(path, given) if path else None
    file_values = parse_file(path, data, dict(current.cli_flags)) if data is not None else {}
    changed: dict[str, Any] = {}
    for opt in OPTIONS:
        if not opt.reloadable or opt.key not in file_values:
            continue
        value = file_values[opt.key]
        if value is None:
            value = opt.default_value(os.environ)
        if opt.key == "labels":
            value = _conflict_free_labels(value)
        if value != getattr(current, opt.attr):
            changed[opt.key] = value
    updated = dataclasses.replace(current, **{OPTION_BY_KEY[k].attr: v for k, v in changed.items()})
    return updated, changed


def insecure_tcp_warnings(config: Config) -> list[tuple[Host, str]]:
    """The warnings dockerd logs for every tcp listener without --tlsverify (in order)."""
    if config.tls and config.tlsverify:
        return []
    return [(h, text) for h in config.hosts if h.scheme == "tcp" for text in INSECURE_TCP_WARNINGS]
