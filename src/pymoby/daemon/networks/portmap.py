"""Published ports: a container's port requests and the host port allocator.

Rule: `requests` turns HostConfig.PortBindings, Config.ExposedPorts and PublishAllPorts (-P) into
validated `PortRequest`s in dockerd's order (portmapperapi.PortBindingReq.Compare: exact host
ports before ranges/ephemeral, then container port, protocol tcp < udp < sctp, host port, host
address). `PortAllocator` hands out host ports like libnetwork's portallocator: a specific port
must be free for its address and for 0.0.0.0 (a request on 0.0.0.0 needs it free on every
address), a range or an ephemeral request takes the first free port after the last one handed
out for that (address, protocol, range), ephemeral ports come from the kernel's
ip_local_port_range minus ip_local_reserved_ports. This module is pure bookkeeping: binding the
sockets is `proxy.py`'s job.

IPv4 only: dockerd also publishes every binding without a HostIp on [::] (and proxies host IPv6
to the container's IPv4); we do not, and bindings whose HostIp is IPv6 are skipped.

Messages are dockerd's (moby HEAD): create-time validation (daemon/container.go
validatePortBindings) says `invalid port specification: "0/tcp"` or `... "abc"` for a bad
HostPort; a key whose number does not parse is refused by dockerd's JSON decoder as
`invalid JSON: invalid port '70000': value out of range`; an unknown protocol is accepted at
create and fails at start with the allocator's `unknown protocol`; a taken port is
`Bind for 0.0.0.0:8080 failed: port is already allocated`. At start dockerd wraps port errors as
`driver failed programming external connectivity on endpoint NAME (ID): ...` (a 500):
`external_connectivity_error` builds it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymoby import errdefs

log = logging.getLogger("pymoby.networks")

PROTOCOLS = ("tcp", "udp", "sctp")
_PROTO_ORDER = {"tcp": 6, "udp": 17, "sctp": 132}  # dockerd compares protocol numbers
ANY_IPV4 = "0.0.0.0"
DEFAULT_EPHEMERAL = (49153, 65535)  # dockerd's fallback when the kernel's range is unreadable
PORT_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
RESERVED_PORTS_FILE = "/proc/sys/net/ipv4/ip_local_reserved_ports"
_DIGITS = frozenset("0123456789")


@dataclass(frozen=True, slots=True)
class PortRequest:
    proto: str  # tcp|udp|sctp
    container_port: int
    host_ip: str  # "0.0.0.0" when not given
    host_port_start: int  # 0 = ephemeral
    host_port_end: int  # == start for a single port; 0 for ephemeral


@dataclass(frozen=True, slots=True)
class PortBinding:
    proto: str
    container_port: int
    host_ip: str
    host_port: int


def already_allocated(ip: str, port: int) -> str:
    """libnetwork's alreadyAllocatedErr text."""
    return f"Bind for {ip}:{port} failed: port is already allocated"


def external_connectivity_error(name: str, endpoint_id: str, err: object) -> errdefs.System:
    """dockerd's wrapping of any port mapping failure at start (types.InternalErrorf: a 500).

    `name` is the endpoint's name (the container's, without the slash), `endpoint_id` the full ID.
    """
    message = err.message if isinstance(err, errdefs.PymobyError) else str(err)
    return errdefs.System(
        f"driver failed programming external connectivity on endpoint {name} ({endpoint_id}): "
        f"{message}"
    )


def binding_string(b: PortBinding, container_ip: str) -> str:
    """libnetwork types.PortBinding.String(): "0.0.0.0:8080:172.17.0.2:80/tcp"."""
    return f"{b.host_ip}:{b.host_port}:{container_ip}:{b.container_port}/{b.proto}"


# -- parsing (api/types/network ParsePort / ParsePortRange) -----------------------------------


def _port_number(raw: str) -> int | str:
    """strconv.ParseUint(raw, 10, 16): the number, or Go's error text."""
    if raw == "":
        return "value is empty"
    if not _DIGITS.issuperset(raw):
        return "invalid syntax"
    value = int(raw)
    return value if value <= 65535 else "value out of range"


def parse_port_key(key: str) -> tuple[int, str]:
    """A PortBindings/ExposedPorts key ("80", "80/udp", "80/TCP") -> (number, lower-case proto).

    Any protocol name parses (as in dockerd); `requests` refuses the unknown ones.
    """
    if key == "":
        raise errdefs.InvalidParameter('invalid port specification: "invalid port"')
    port, _, proto = key.partition("/")
    num = _port_number(port)
    if isinstance(num, str):
        raise errdefs.InvalidParameter(f"invalid JSON: invalid port '{port}': {num}")
    return num, proto.lower() or "tcp"


def parse_host_port(raw: str) -> tuple[int, int] | None:
    """HostPort ("", "8080", "8080-8090", "8080/tcp") -> (start, end); None when invalid.

    "" is (0, 0): an ephemeral port ("0" is too). A "/proto" suffix is ignored, as in dockerd.
    """
    if raw == "":
        return 0, 0
    span = raw.partition("/")[0]
    first, dash, last = span.partition("-")
    start = _port_number(first)
    if isinstance(start, str):
        return None
    if not dash or first == last:
        return start, start
    end = _port_number(last)
    if isinstance(end, str) or end < start:
        return None
    return start, end


def _parse_host_ip(raw: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        addr = ipaddress.ip_address(raw)
    except ValueError:
        raise errdefs.InvalidParameter(
            f'invalid JSON: ParseAddr("{raw}"): unable to parse IP'
        ) from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _bindings_of(value: object) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    return [b for b in value if b is not None]  # type: ignore[attr-defined]


def validate_port_bindings(port_bindings: Mapping[str, Any] | None) -> None:
    """dockerd's create-time checks of HostConfig.PortBindings (InvalidParameter)."""
    for key, value in (port_bindings or {}).items():
        num, proto = parse_port_key(key)
        if num == 0:
            raise errdefs.InvalidParameter(f'invalid port specification: "{num}/{proto}"')
        for b in _bindings_of(value):
            host_ip = b.get("HostIp") or ""
            if host_ip:
                _parse_host_ip(host_ip)
            host_port = b.get("HostPort") or ""
            if host_port and parse_host_port(host_port) is None:
                raise errdefs.InvalidParameter(f'invalid port specification: "{host_port}"')


def validate_exposed_ports(exposed: Mapping[str, Any] | None) -> None:
    """Config.ExposedPorts keys must parse (dockerd's JSON decoder refuses them otherwise)."""
    for key in exposed or {}:
        parse_port_key(key)


def requests(
    port_bindings: Mapping[str, Sequence[Mapping[str, str]] | None] | None,
    exposed: Mapping[str, Any] | None,
    publish_all: bool,
    *,
    default_host_ip: str = ANY_IPV4,
) -> list[PortRequest]:
    """The port requests of a starting container, validated, in dockerd's order.

    `default_host_ip` is used for bindings without HostIp (dockerd's --ip or the network's
    com.docker.network.bridge.host_binding_ipv4); an IPv6 default publishes nothing on IPv4.
    """
    ports: dict[tuple[int, str], list[Mapping[str, Any]]] = {}
    for key, value in (port_bindings or {}).items():
        ports[parse_port_key(key)] = _bindings_of(value)
    if publish_all:
        for key in exposed or {}:
            ports.setdefault(parse_port_key(key), [])
    default = _parse_host_ip(default_host_ip) if default_host_ip else None
    out: list[PortRequest] = []
    for (num, proto), bindings in ports.items():
        wanted: list[tuple[str, str]] = []  # (host ip, host port)
        for b in bindings:
            wanted.append((b.get("HostIp") or "", b.get("HostPort") or ""))
        if publish_all and not bindings:
            wanted.append(("", ""))
        if not wanted:
            continue
        if proto not in PROTOCOLS:
            raise errdefs.InvalidParameter("unknown protocol")
        if num == 0:
            raise errdefs.InvalidParameter(f'invalid port specification: "{num}/{proto}"')
        for raw_ip, raw_port in wanted:
            addr = _parse_host_ip(raw_ip) if raw_ip else default
            if not isinstance(addr, ipaddress.IPv4Address):
                continue  # IPv4 only (see the module docstring)
            span = parse_host_port(raw_port)
            if span is None:
                raise errdefs.InvalidParameter(f'invalid port specification: "{raw_port}"')
            start, end = span
            _check_span(start, end)
            out.append(PortRequest(proto, num, str(addr), start, end))
    out.sort(key=_order)
    return out


def _check_span(start: int, end: int) -> None:
    if (start or end) and (start == 0 or end == 0 or end < start):
        raise errdefs.InvalidParameter(f"invalid port range: {start}-{end}")


def _is_range(r: PortRequest) -> bool:
    return r.host_port_start == 0 or r.host_port_start != r.host_port_end


def _order(r: PortRequest) -> tuple[bool, int, int, int, int, int]:
    return (
        _is_range(r),
        r.container_port,
        _PROTO_ORDER.get(r.proto, 0),
        r.host_port_start,
        r.host_port_end,
        int(ipaddress.IPv4Address(r.host_ip)),
    )


def same_port_group(a: PortRequest, b: PortRequest) -> bool:
    """dockerd's needSamePort: requests differing only in host address share one host port."""
    return (a.container_port, a.proto, a.host_port_start, a.host_port_end) == (
        b.container_port,
        b.proto,
        b.host_port_start,
        b.host_port_end,
    )


# -- the kernel's ranges ------------------------------------------------------------------------


def kernel_ephemeral_range(path: str = PORT_RANGE_FILE) -> tuple[int, int]:
    """ip_local_port_range ("32768\\t60999"), or dockerd's fallback 49153-65535."""
    try:
        with open(path, encoding="ascii") as f:
            first, last = (int(x) for x in f.read().split()[:2])
    except (OSError, ValueError) as exc:
        log.info("falling back to default port range %d-%d: %s", *DEFAULT_EPHEMERAL, exc)
        return DEFAULT_EPHEMERAL
    return first, last


def parse_reserved_ports(text: str, begin: int, end: int) -> frozenset[int]:
    """ip_local_reserved_ports ("8080,30000-32767") clipped to [begin, end]."""
    ports: set[int] = set()
    for entry in filter(None, text.strip().split(",")):
        first, dash, last = entry.partition("-")
        lo = int(first)
        hi = int(last) if dash else lo
        if hi < lo:
            raise ValueError(f"invalid port range {entry!r}")
        ports.update(range(max(lo, begin), min(hi, end) + 1))
    return frozenset(ports)


def kernel_reserved_ports(begin: int, end: int, path: str = RESERVED_PORTS_FILE) -> frozenset[int]:
    try:
        with open(path, encoding="ascii") as f:
            return parse_reserved_ports(f.read(), begin, end)
    except (OSError, ValueError) as exc:
        log.info("ignoring system reserved ports: %s", exc)
        return frozenset()


# -- the allocator ----------------------------------------------------------------------------


class PortAllocator:
    """Host ports handed out to published ports, per (address, protocol) (see the rule)."""

    def __init__(
        self,
        ephemeral: tuple[int, int] | None = None,
        *,
        reserved: Collection[int] | None = None,
    ) -> None:
        """`ephemeral` None = the kernel's range; `reserved` None = the kernel's reserved list."""
        self.begin, self.end = ephemeral if ephemeral is not None else kernel_ephemeral_range()
        self.reserved = frozenset(
            reserved if reserved is not None else kernel_reserved_ports(self.begin, self.end)
        )
        self._used: dict[tuple[str, str], set[int]] = {}  # (ip, proto) -> ports
        self._last: dict[tuple[str, str, int, int], int] = {}  # (ip, proto, begin, end) -> last

    def allocate(self, req: PortRequest) -> PortBinding:
        """One host port for `req` (Conflict when taken or exhausted, InvalidParameter)."""
        return self.allocate_group([req])[0]

    def allocate_group(self, reqs: Sequence[PortRequest]) -> list[PortBinding]:
        """One host port shared by `reqs`, which differ only in host address (dockerd's groups)."""
        if not reqs:
            return []
        first = reqs[0]
        proto, start, end = first.proto, first.host_port_start, first.host_port_end
        if proto not in PROTOCOLS:
            raise errdefs.InvalidParameter("unknown protocol")
        _check_span(start, end)
        ips = list(dict.fromkeys(r.host_ip for r in reqs))
        if len(ips) != len(reqs) or any(not same_port_group(first, r) for r in reqs):
            raise ValueError("allocate_group needs requests differing only in host address")
        owned = [self._used.setdefault((ip, proto), set()) for ip in ips]
        # Where the port must be free: the requested addresses, and 0.0.0.0 -- or, for a
        # request on 0.0.0.0, every address.
        checked = list(zip(ips, owned, strict=True))
        if ANY_IPV4 in ips:
            checked += [
                (ip, s) for (ip, p), s in self._used.items() if p == proto and ip not in ips
            ]
        else:
            checked.append((ANY_IPV4, self._used.setdefault((ANY_IPV4, proto), set())))

        if start and start == end:
            for ip, used in checked:
                if start in used:
                    raise errdefs.Conflict(already_allocated(ip, start))
            port = start
        else:
            port = self._search(ips[0], proto, start, end, [used for _, used in checked])
            for ip in ips:
                lo, hi = (start, end) if start else (self.begin, self.end)
                self._last[(ip, proto, lo, hi)] = port
        for used in owned:
            used.add(port)
        return [PortBinding(r.proto, r.container_port, r.host_ip, port) for r in reqs]

    def _search(
        self, ip: str, proto: str, start: int, end: int, checked: Sequence[set[int]]
    ) -> int:
        ephemeral = start == 0
        lo, hi = (self.begin, self.end) if ephemeral else (start, end)
        port = self._last.get((ip, proto, lo, hi), hi)
        for _ in range(hi - lo + 1):
            port = lo if port >= hi else port + 1
            if ephemeral and port in self.reserved:
                continue
            if not any(port in used for used in checked):
                return port
        raise errdefs.Conflict("all ports are allocated")

    def allocate_all(self, reqs: Sequence[PortRequest]) -> list[PortBinding]:
        """Every request, in order, grouped as dockerd does; all or nothing."""
        done: list[PortBinding] = []
        try:
            for group in groups(reqs):
                done += self.allocate_group(group)
        except BaseException:
            for b in done:
                self.release(b)
            raise
        return done

    def reserve(self, b: PortBinding) -> None:
        """Mark `b` taken again (daemon restart with live containers); idempotent."""
        self._used.setdefault((b.host_ip, b.proto), set()).add(b.host_port)

    def release(self, b: PortBinding) -> None:
        with contextlib.suppress(KeyError):
            self._used[(b.host_ip, b.proto)].remove(b.host_port)

    def in_use(self, host_ip: str, proto: str, port: int) -> bool:
        return port in self._used.get((host_ip, proto), ())


def groups(reqs: Iterable[PortRequest]) -> list[list[PortRequest]]:
    """Adjacent requests that must share a host port (same_port_group, distinct addresses)."""
    out: list[list[PortRequest]] = []
    for r in reqs:
        last = out[-1] if out else None
        if (
            last is not None
            and same_port_group(last[0], r)
            and all(x.host_ip != r.host_ip for x in last)
        ):
            last.append(r)
        else:
            out.append([r])
    return out
