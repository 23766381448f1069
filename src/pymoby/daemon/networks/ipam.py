"""IPAM: a network's subnets and the addresses in them, as dockerd's default IPAM driver keeps
them — IPv4 only (IPv6 subnets are refused with a clear InvalidParameter).

Rule: pure functions and small classes, no I/O, no persistence (the network service stores the
configs and rebuilds each `AddressSet` from its endpoints). Behaviour and messages follow dockerd:
daemon/network.go validates a create request's IPAM config (every mistake listed under
"invalid network config:"), libnetwork requests the pools (a static subnet overlapping another
network is Forbidden — but, as in dockerd, not when it has an ip-range), reserves the network
and broadcast addresses (not in a /31 or /32), the gateway (default: the first free address of
the ip-range, else of the subnet) and the auxiliary addresses, and hands out the lowest free
address of the ip-range (or subnet) — or, in serial mode, the next one after the last handed
out, wrapping. A static address may be anywhere in the subnet. `bridge_subnet` is dockerd's
getDefaultBridgeIPAMConf + selectBIP for the default bridge (--bip, --fixed-cidr, addresses
already on the bridge). Pools and dynamic subnets live in `ipam_pools` (re-exported here).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    ip_address,
    ip_interface,
)
from typing import Any

from pymoby import errdefs
from pymoby.api.types.networks import check_addr
from pymoby.daemon.networks.ipam_pools import (
    DEFAULT_POOLS,
    ERR_INVALID_POOL,
    ERR_NO_MORE_SUBNETS,
    AddressPool,
    PoolSpec,
    allocate_subnet,
    go_parse_prefix,
    make_pools,
    parse_address_pool,
    parse_pool_spec,
    pool_from_json,
    pool_spec_from_json,
    predefined_v4,
)
from pymoby.log import go_quote

__all__ = [
    "DEFAULT_GATEWAY_AUX_KEY",
    "DEFAULT_POOLS",
    "ERR_INVALID_POOL",
    "ERR_NO_MORE_SUBNETS",
    "AddressPool",
    "AddressSet",
    "PoolSpec",
    "SubnetConfig",
    "allocate_subnet",
    "bridge_subnet",
    "make_pools",
    "parse_address_pool",
    "parse_pool_spec",
    "pool_from_json",
    "pool_spec_from_json",
    "predefined_v4",
    "validate_configs",
]

DEFAULT_GATEWAY_AUX_KEY = "DefaultGatewayIPv4"  # --default-gateway, an aux address of "bridge"
ERR_IN_USE = "Address already in use"
ERR_OUT_OF_RANGE = "requested address is out of range"
ERR_NO_ADDRESSES = "no available addresses on this pool"
ERR_POOL_OVERLAP = "invalid pool request: Pool overlaps with other one on this address space"


@dataclass(frozen=True, slots=True)
class SubnetConfig:
    """One subnet of a network after validation and allocation."""

    subnet: IPv4Network
    gateway: IPv4Address | None  # None only when the driver/caller chooses none
    ip_range: IPv4Network | None  # where dynamic addresses come from (None: the whole subnet)
    aux_addresses: Mapping[str, IPv4Address] = field(default_factory=dict)


def _no_ipv6(what: str) -> errdefs.InvalidParameter:
    return errdefs.InvalidParameter(f"IPv6 is not supported by pymoby yet: {what}")


def _reserved(net: IPv4Network) -> set[int]:
    """Network and broadcast addresses, except in a /31 or /32 (RFC 3021)."""
    if net.prefixlen > 30:
        return set()
    return {int(net.network_address), int(net.broadcast_address)}


def _range_bounds(net: IPv4Network, ip_range: IPv4Network | None) -> tuple[int, int]:
    """The dynamic range: the ip-range when it lies inside the subnet, else the whole subnet
    (dockerd's rule for an ip-range wider than its subnet)."""
    span = ip_range if ip_range is not None and ip_range.subnet_of(net) else net
    return int(span.network_address), int(span.broadcast_address)


def _first_free(lo: int, hi: int, taken: set[int], start: int | None = None) -> int | None:
    """The lowest free address in [lo, hi]; from `start` on first when given, wrapping."""
    if start is not None and lo < start <= hi:
        found = _first_free(start, hi, taken)
        if found is not None:
            return found
    addr = lo
    while addr <= hi and addr in taken:
        addr += 1
    return addr if addr <= hi else None


def _gateway_and_aux(
    net: IPv4Network,
    ip_range: IPv4Network | None,
    gateway: IPv4Address | None,
    aux: Mapping[str, IPv4Address],
) -> tuple[IPv4Address, dict[str, IPv4Address]]:
    """Reserve the gateway (the given one, else the first free address) and the auxiliary
    addresses as libnetwork does; its errors are internal ones (System)."""
    taken = _reserved(net)
    if gateway is not None:
        if int(gateway) in taken:
            raise errdefs.System(f"failed to allocate gateway ({gateway}): {ERR_IN_USE}")
        gw = int(gateway)
    else:
        found = _first_free(*_range_bounds(net, ip_range), taken)
        if found is None:
            raise errdefs.System(f"failed to allocate gateway (): {ERR_NO_ADDRESSES}")
        gw = found
    taken.add(gw)
    for name, addr in aux.items():
        if int(addr) in taken:
            raise errdefs.System(
                f"failed to allocate secondary ip address ({name}:{addr}): {ERR_IN_USE}"
            )
        taken.add(int(addr))
    return IPv4Address(gw), dict(aux)


# --- a create request's IPAM config --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    subnet: IPv4Interface | IPv6Interface | None
    ip_range: IPv4Interface | IPv6Interface | None
    gateway: IPv4Address | IPv6Address | None
    aux: dict[str, IPv4Address | IPv6Address]


def _prefix(text: Any) -> IPv4Interface | IPv6Interface | None:
    if not text:
        return None
    try:
        return go_parse_prefix(str(text))
    except ValueError as err:
        raise errdefs.InvalidParameter(f"invalid JSON: {err}") from None


def _addr(text: Any) -> IPv4Address | IPv6Address | None:
    if not text:
        return None
    check_addr(str(text))
    return ip_address(str(text))


def _entry(cfg: Mapping[str, Any]) -> _Entry:
    aux = {name: _addr(value) for name, value in (cfg.get("AuxiliaryAddresses") or {}).items()}
    return _Entry(
        _prefix(cfg.get("Subnet")),
        _prefix(cfg.get("IPRange")),
        _addr(cfg.get("Gateway")),
        {name: a for name, a in aux.items() if a is not None},
    )


def _v4(p: IPv4Interface | IPv6Interface | None) -> IPv4Interface | None:
    """`p` once validation has ruled out IPv6 (an IPv6 prefix here would be a bug)."""
    if p is None or isinstance(p, IPv4Interface):
        return p
    raise _no_ipv6(f"subnet {p}")


def _text(p: IPv4Interface | IPv6Interface | None) -> str:
    return "invalid Prefix" if p is None else str(p)


def _check_address(
    addr: IPv4Address | IPv6Address, subnet: IPv4Interface | IPv6Interface | None, family: int
) -> str | None:
    if addr.version != family:
        return f"parent subnet is an IPv{family} block"
    if subnet is None or addr not in subnet.network:
        return f"parent subnet {_text(subnet)} doesn't contain this address"
    return None


def _check_entry(e: _Entry) -> list[str]:
    """daemon/network.go validateIpamConfig for one config."""
    errs = []
    family = 6 if e.subnet is not None and e.subnet.version == 6 else 4
    if e.subnet is not None and e.subnet.ip != e.subnet.network.network_address:
        errs.append(f"invalid subnet {e.subnet}: it should be {e.subnet.network}")
    if e.ip_range is not None:
        rng = e.ip_range
        if rng.version != family:
            errs.append(f"invalid ip-range {rng}: parent subnet is an IPv{family} block")
        else:
            if e.subnet is not None and rng.network.prefixlen < e.subnet.network.prefixlen:
                errs.append(
                    f"invalid ip-range {rng}: CIDR block is bigger than its parent subnet "
                    f"{e.subnet}"
                )
            if rng.ip != rng.network.network_address:
                errs.append(f"invalid ip-range {rng}: it should be {rng.network}")
            if e.subnet is None or not e.subnet.network.overlaps(rng.network):
                errs.append(
                    f"invalid ip-range {rng}: parent subnet {_text(e.subnet)} doesn't contain "
                    "ip-range"
                )
    if e.gateway is not None:
        problem = _check_address(e.gateway, e.subnet, family)
        if problem:
            errs.append(f"invalid gateway {e.gateway}: {problem}")
    for name, aux in e.aux.items():
        problem = _check_address(aux, e.subnet, family)
        if problem:
            errs.append(f"invalid auxiliary address {name}: {problem}")
    return errs


def validate_configs(
    configs: Sequence[Mapping[str, Any]],
    existing: Sequence[IPv4Network | SubnetConfig],
    *,
    pools: Sequence[AddressPool] = DEFAULT_POOLS,
    host_routes: Sequence[IPv4Network] = (),
) -> list[SubnetConfig]:
    """Validate the API's IPAM.Config entries (wire keys Subnet, IPRange, Gateway,
    AuxiliaryAddresses) and allocate their subnets, gateways and auxiliary addresses.

    `existing`: the other networks' subnets (a SubnetConfig also tells its ip-range). An entry
    without Subnet (or with "0.0.0.0/N") gets one from `pools`, avoiding `host_routes` too.
    Errors: InvalidParameter "invalid network config:\\n..." (every mistake, dockerd's list
    format), Forbidden "invalid pool request: Pool overlaps with other one on this address
    space", InvalidParameter for IPv6 and for no free subnet, System for a gateway or an
    auxiliary address that is the network/broadcast address or taken twice.
    """
    entries = [_entry(c) for c in configs]
    for e in entries:
        for p in (e.subnet, e.ip_range):
            if p is not None and p.version == 6 and (e.subnet is None or e.subnet.version == 6):
                raise _no_ipv6(f"subnet {p}")
    errs = [msg for e in entries for msg in _check_entry(e)]
    if errs:
        body = errs[0] if len(errs) == 1 else "* " + "\n* ".join(errs)
        raise errdefs.InvalidParameter("invalid network config:\n" + body)

    taken: list[tuple[IPv4Network, IPv4Network | None]] = [
        (x.subnet, x.ip_range) if isinstance(x, SubnetConfig) else (x, None) for x in existing
    ]
    result = []
    for e in entries:
        subnet, ip_range = _v4(e.subnet), _v4(e.ip_range)
        rng = ip_range.network if ip_range is not None else None
        if subnet is None or subnet.ip.is_unspecified:
            if rng is not None:
                raise errdefs.System(
                    'failed to parse pool request for address space "LocalDefault" pool "" '
                    f'subpool "{rng}": invalid address subpool'
                )
            size = subnet.network.prefixlen if subnet is not None else 0
            net = allocate_subnet(pools, [t[0] for t in taken], host_routes, size or None)
        else:
            net = subnet.network
            if rng is None and any(other.overlaps(net) for other, _ in taken):
                raise errdefs.Forbidden(ERR_POOL_OVERLAP)
            if rng is not None and (net, rng) in taken:
                raise errdefs.Forbidden(ERR_POOL_OVERLAP)
        taken.append((net, rng))
        gw_in = e.gateway if isinstance(e.gateway, IPv4Address) else None
        aux_in = {k: v for k, v in e.aux.items() if isinstance(v, IPv4Address)}
        gateway, aux = _gateway_and_aux(net, rng, gw_in, aux_in)
        result.append(SubnetConfig(net, gateway, rng, aux))
    return result


# --- the addresses of one subnet -----------------------------------------------------------------


class AddressSet:
    """The addresses of one subnet: reserved ones (network, broadcast, gateway, auxiliary)
    come from the config; `allocated` are the endpoints' (the caller persists those).

    Dynamic allocation hands out the lowest free address of the ip-range (or subnet), as
    dockerd does for local networks; with `serial=True` (libnetwork's ipam.serial option) the
    next free one after `last`, wrapping. `last` follows every dynamic allocation.
    """

    def __init__(
        self,
        cfg: SubnetConfig,
        allocated: Iterable[IPv4Address] = (),
        last: IPv4Address | None = None,
        *,
        serial: bool = False,
    ) -> None:
        self.config = cfg
        self.serial = serial
        net = cfg.subnet
        self._reserved = _reserved(net)
        if cfg.gateway is not None and cfg.gateway in net:
            self._reserved.add(int(cfg.gateway))
        self._reserved.update(int(a) for a in cfg.aux_addresses.values() if a in net)
        self._allocated = {int(a) for a in allocated if a in net}
        self._last = last
        self._lo, self._hi = _range_bounds(net, cfg.ip_range)

    @property
    def allocated(self) -> frozenset[IPv4Address]:
        return frozenset(IPv4Address(a) for a in self._allocated)

    @property
    def last(self) -> IPv4Address | None:
        return self._last

    def allocate(self, preferred: IPv4Address | None = None) -> IPv4Address:
        """The preferred address (anywhere in the subnet) or the next dynamic one.

        InvalidParameter "requested address is out of range", Forbidden "Address already in
        use", Unavailable "no available addresses on this pool".
        """
        taken = self._reserved | self._allocated
        if preferred is not None:
            if preferred not in self.config.subnet:
                raise errdefs.InvalidParameter(ERR_OUT_OF_RANGE)
            if int(preferred) in taken:
                raise errdefs.Forbidden(ERR_IN_USE)
            self._allocated.add(int(preferred))
            return preferred
        start = int(self._last) + 1 if self.serial and self._last is not None else None
        found = _first_free(self._lo, self._hi, taken, start)
        if found is None:
            raise errdefs.Unavailable(ERR_NO_ADDRESSES)
        self._allocated.add(found)
        self._last = IPv4Address(found)
        return self._last

    def release(self, addr: IPv4Address) -> None:
        """Give `addr` back; releasing a free address is a no-op (as in dockerd)."""
        if addr not in self.config.subnet:
            raise errdefs.InvalidParameter(ERR_OUT_OF_RANGE)
        self._allocated.discard(int(addr))

    def status(self) -> tuple[int, int]:
        """(IPsInUse, DynamicIPsAvailable) as the API's SubnetStatus reports them: every taken
        address of the subnet, and the free addresses of the ip-range (or subnet)."""
        taken = self._reserved | self._allocated
        in_range = sum(1 for a in taken if self._lo <= a <= self._hi)
        return len(taken), self._hi - self._lo + 1 - in_range


# --- the default bridge --------------------------------------------------------------------------


def _parse_cidr(text: str, option: str) -> IPv4Interface:
    """Go's net.ParseCIDR (address/bits, decimal bits) for --bip and --fixed-cidr."""
    addr, slash, bits = text.partition("/")
    try:
        if not slash or not bits.isascii() or not bits.isdigit() or "%" in addr:
            raise ValueError(text)
        iface = ip_interface(text)
    except ValueError:
        raise errdefs.InvalidParameter(
            f"parse {option} failed: invalid CIDR address: {text}"
        ) from None
    if not isinstance(iface, IPv4Interface):
        raise _no_ipv6(f"--{option}={text}")
    return iface


def _select_bip(
    addrs: Sequence[IPv4Interface], fixed: IPv4Interface | None, user_managed: bool
) -> IPv4Interface | None:
    """dockerd's selectBIP: the bridge address to keep as gateway (its subnet is the network's)."""
    if not addrs:
        return None
    chosen = addrs[0]
    if len(addrs) > 1 and fixed is not None:
        for entry in addrs:
            if fixed.ip in entry.network:
                chosen = entry
                break
            if entry.ip in fixed.network and chosen.ip not in fixed.network:
                chosen = entry
    if not user_managed and fixed is not None:
        if fixed.ip not in chosen.network:
            return None  # fixed-cidr changed: the old address no longer fits
        if fixed.network.prefixlen < chosen.network.prefixlen:
            return IPv4Interface((chosen.ip, fixed.network.prefixlen))  # widen to fixed-cidr
    return chosen


def bridge_subnet(  # noqa: PLR0917 - the network service's call passes the first six in order
    bip: str | None,
    fixed_cidr: str | None,
    existing_bridge_addrs: Sequence[IPv4Interface],
    pools: Sequence[AddressPool] = DEFAULT_POOLS,
    in_use: Sequence[IPv4Network] = (),
    host_routes: Sequence[IPv4Network] = (),
    *,
    user_managed: bool = False,
    default_gateway: str | None = None,
) -> SubnetConfig:
    """The default bridge network's subnet (dockerd's getDefaultBridgeIPAMConf).

    --bip ("172.26.0.1/16") gives the gateway and the subnet; without it an address already on
    the bridge does (docker0 drops one that --fixed-cidr no longer fits, and widens it to a
    wider --fixed-cidr; a user-managed bridge (-b) keeps it and drops a --fixed-cidr that does
    not fit); else --fixed-cidr is the subnet; else the first free pool subnet, gateway its
    first address (172.17.0.0/16, 172.17.0.1 by default). --fixed-cidr is the ip-range. A
    --default-gateway becomes the "DefaultGatewayIPv4" auxiliary address.
    """
    fixed = _parse_cidr(fixed_cidr, "fixed-cidr") if fixed_cidr else None
    if bip:
        chosen: IPv4Interface | None = _parse_cidr(bip, "bip")
    else:
        v4 = [a for a in existing_bridge_addrs if isinstance(a, IPv4Interface)]
        chosen = _select_bip(v4, fixed, user_managed)
    pool = chosen.network if chosen is not None else None
    ip_range = fixed.network if fixed is not None else None
    if fixed is not None:
        if pool is None:
            pool = fixed.network
        elif user_managed and (fixed.ip not in pool or fixed.network.prefixlen < pool.prefixlen):
            ip_range = None  # dockerd logs "fixed-cidr is outside any subnet ..." and drops it
        elif fixed.network.prefixlen >= pool.prefixlen and not fixed.network.subnet_of(pool):
            raise errdefs.InvalidParameter(
                f"fixed-cidr={fixed_cidr} is outside the default bridge's subnet {pool}"
            )
    if pool is None:
        pool = allocate_subnet(pools, in_use, host_routes)
    elif ip_range is None and any(other.overlaps(pool) for other in in_use):
        raise errdefs.Forbidden(ERR_POOL_OVERLAP)
    aux: dict[str, IPv4Address] = {}
    if default_gateway:
        try:
            gw = ip_address(default_gateway.strip())
        except ValueError:
            raise errdefs.InvalidParameter(
                f"invalid --default-gateway: failed to parse IP: {go_quote(default_gateway)}"
            ) from None
        if not isinstance(gw, IPv4Address) or gw not in pool:
            raise errdefs.Forbidden(
                f"auxiliary address: ({DEFAULT_GATEWAY_AUX_KEY}:{default_gateway}) must belong "
                f"to the master pool: {pool}"
            )
        aux[DEFAULT_GATEWAY_AUX_KEY] = gw
    gateway, aux = _gateway_and_aux(pool, ip_range, chosen.ip if chosen else None, aux)
    return SubnetConfig(pool, gateway, ip_range, aux)
