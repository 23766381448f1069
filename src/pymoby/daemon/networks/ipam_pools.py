"""IPAM address pools: the default address pools, their parsing, and dynamic subnet choice.

Rule: pure, IPv4 only (IPv6 pools are parsed and validated as dockerd does, then ignored when
choosing a subnet), no I/O. A pool is read in two steps, as dockerd does: first its syntax
(`--default-address-pool base=..,size=..`, PoolsOpt.Set; or a daemon.json object, the JSON
decoder) into a `PoolSpec`, then the whole list is checked in canonical form (libnetwork's
NewAllocator, with the pool's index in the message) into `AddressPool`s. Subnets are handed
out like libnetwork's default IPAM driver: pools sorted by base, a pool overlapped by an
earlier one dropped, and the first aligned subnet of the pool's size that overlaps neither a
network in use nor a reserved host prefix wins. Messages are dockerd's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import (
    IPv4Interface,
    IPv4Network,
    IPv6Interface,
    IPv6Network,
    ip_interface,
)
from typing import Any

from pymoby import errdefs
from pymoby.api.types.networks import check_prefix
from pymoby.daemon.gojson import Num, kind_of
from pymoby.log import go_quote

Prefix = IPv4Network | IPv6Network


@dataclass(frozen=True, slots=True)
class AddressPool:
    """One default address pool: `base` is cut into subnets of prefix length `size`."""

    base: Prefix
    size: int

    def __str__(self) -> str:
        return f"{self.base} {self.size}"


# dockerd's local-scope defaults (libnetwork/ipamutils).
DEFAULT_POOLS: tuple[AddressPool, ...] = (
    AddressPool(IPv4Network("172.17.0.0/16"), 16),
    AddressPool(IPv4Network("172.18.0.0/16"), 16),
    AddressPool(IPv4Network("172.19.0.0/16"), 16),
    AddressPool(IPv4Network("172.20.0.0/14"), 16),
    AddressPool(IPv4Network("172.24.0.0/14"), 16),
    AddressPool(IPv4Network("172.28.0.0/14"), 16),
    AddressPool(IPv4Network("192.168.0.0/16"), 20),
)

ERR_INVALID_POOL = "invalid address pool"
ERR_NO_MORE_SUBNETS = "all predefined address pools have been fully subnetted"


# --- reading pools -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """A pool as written, before the canonical-form check: `base` keeps its host bits and is
    None when missing; `size` is 0 when missing."""

    base: IPv4Interface | IPv6Interface | None
    size: int

    def base_text(self) -> str:
        return "invalid Prefix" if self.base is None else str(self.base)

    def go_v(self) -> str:
        """Go's `%v` of the *NetworkToSplit, as dockerd's messages show it."""
        return f"&{{{self.base_text()} {self.size}}}"

    def __str__(self) -> str:
        return f"{self.base_text()} {self.size}"  # PoolsOpt.String of one pool


def go_parse_prefix(text: str) -> IPv4Interface | IPv6Interface:
    """netip.ParsePrefix: the address with its host bits kept; ValueError with Go's text."""
    try:
        check_prefix(text)
        return ip_interface(text)
    except errdefs.InvalidParameter as err:
        raise ValueError(err.message.removeprefix("invalid JSON: ")) from None
    except ValueError:
        raise ValueError(f"netip.ParsePrefix({go_quote(text)}): invalid prefix") from None


def _go_csv_record(value: str) -> list[str]:
    """The first record of encoding/csv's Reader (',' separated, RFC 4180 quoting)."""
    lines = [line for line in re.split(r"\r?\n", value) if line]
    if not lines:
        raise ValueError("EOF")
    line, fields, i = lines[0], [], 0
    while True:
        if line.startswith('"', i):
            j, text = i + 1, []
            while True:
                k = line.find('"', j)
                if k < 0:
                    raise ValueError(
                        f'parse error on line 1, column {len(line) + 1}: extraneous or missing " '
                        "in quoted-field"
                    )
                text.append(line[j:k])
                if line.startswith('"', k + 1):
                    text.append('"')
                    j = k + 2
                    continue
                if k + 1 < len(line) and line[k + 1] != ",":
                    raise ValueError(
                        f'parse error on line 1, column {k + 2}: extraneous or missing " in '
                        "quoted-field"
                    )
                fields.append("".join(text))
                i = k + 1
                break
        else:
            end = line.find(",", i)
            field = line[i:] if end < 0 else line[i:end]
            quote = field.find('"')
            if quote >= 0:
                raise ValueError(
                    f'parse error on line 1, column {i + quote + 1}: bare " in non-quoted field'
                )
            fields.append(field)
            i = len(line) if end < 0 else end
        if i >= len(line):
            return fields
        i += 1  # the comma
        if i == len(line):
            fields.append("")
            return fields


_ATOI = re.compile(r"[+-]?[0-9]+")


def _go_atoi(text: str) -> int:
    if not _ATOI.fullmatch(text):
        raise ValueError(f"strconv.Atoi: parsing {go_quote(text)}: invalid syntax")
    number = int(text)
    if not -(2**63) <= number < 2**63:
        raise ValueError(f"strconv.Atoi: parsing {go_quote(text)}: value out of range")
    return number


def parse_pool_spec(value: str) -> PoolSpec:
    """One `--default-address-pool` value ("base=10.10.0.0/16,size=24"), as PoolsOpt.Set reads
    it: CSV fields, keys and values case-insensitive. ValueError with dockerd's text."""
    base: IPv4Interface | IPv6Interface | None = None
    size = 0
    for field in _go_csv_record(value):
        key, eq, val = field.lower().partition("=")
        if not eq:
            raise ValueError(f"invalid field '{field}' must be a key=value pair")
        if key == "base":
            try:
                base = go_parse_prefix(val)
            except ValueError as err:
                raise ValueError(f"invalid base prefix {go_quote(val)}: {err}") from None
        elif key == "size":
            try:
                size = _go_atoi(val)
            except ValueError as err:
                raise ValueError(
                    f"invalid size value: {go_quote(value)} (must be integer): {err}"
                ) from None
        else:
            raise ValueError(f"unexpected key '{key}' in '{field}'")
    return PoolSpec(base, size)


def _json_field(obj: Mapping[str, Any], name: str) -> Any:
    """encoding/json's field match: the exact key, else a case-insensitive one."""
    if name in obj:
        return obj[name]
    return next((v for k, v in obj.items() if k.lower() == name), None)


def _kind(value: Any) -> str:
    """The JSON kind in Go's decoder errors, for gojson values and plain Python ones."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "number"
    return kind_of(value)


def pool_spec_from_json(obj: Any) -> PoolSpec | None:
    """One item of daemon.json's "default-address-pools" list ({"base": ..., "size": ...};
    numbers may be gojson `Num`s). None for a JSON null. ValueError with the decoder's text."""
    if obj is None:
        return None
    if not isinstance(obj, Mapping):
        raise ValueError(
            f"json: cannot unmarshal {_kind(obj)} into Go value of type ipamutils.NetworkToSplit"
        )
    where = "into Go struct field NetworkToSplit"
    raw_base, raw_size = _json_field(obj, "base"), _json_field(obj, "size")
    base = None
    if isinstance(raw_base, str):
        base = go_parse_prefix(raw_base)
    elif raw_base is not None:
        kind = _kind(raw_base)
        raise ValueError(f"json: cannot unmarshal {kind} {where}.base of type netip.Prefix")
    size = 0
    if isinstance(raw_size, Num):
        try:
            size = int(raw_size.text)
        except ValueError:
            size = 2**63
        if not -(2**63) <= size < 2**63:
            raise ValueError(
                f"json: cannot unmarshal number {raw_size.text} {where}.size of type int"
            )
    elif isinstance(raw_size, int) and not isinstance(raw_size, bool):
        size = raw_size
    elif raw_size is not None:
        raise ValueError(f"json: cannot unmarshal {_kind(raw_size)} {where}.size of type int")
    return PoolSpec(base, size)


def make_pools(specs: Sequence[PoolSpec | None]) -> tuple[AddressPool, ...]:
    """The canonical-form check of libnetwork's NewAllocator over the whole list (indexes count
    every pool, IPv4 and IPv6); ValueError with dockerd's text."""
    pools = []
    for i, spec in enumerate(specs):
        if spec is None or spec.base is None or spec.size == 0:
            shown = "<nil>" if spec is None else spec.go_v()
            raise ValueError(
                "could not construct local address space: "
                f"network at index {i} ({shown}) is not in canonical form"
            )
        bits = spec.base.network.prefixlen
        if bits > spec.size:
            raise ValueError(
                "could not construct local address space: "
                f"network at index {i} ({spec.go_v()}) has a smaller prefix (/{bits}) than the "
                f"target size of that pool (/{spec.size})"
            )
        if spec.size > spec.base.network.max_prefixlen:
            raise ValueError(
                "could not construct local address space: "
                f"network at index {i} ({spec.go_v()}) has a target size (/{spec.size}) longer "
                f"than its addresses (/{spec.base.network.max_prefixlen})"
            )
        pools.append(AddressPool(spec.base.network, spec.size))
    return tuple(pools)


def parse_address_pool(text: str) -> AddressPool:
    """One `--default-address-pool` value, syntax and canonical form; ValueError."""
    return make_pools([parse_pool_spec(text)])[0]


def pool_from_json(obj: Mapping[str, Any]) -> AddressPool:
    """One daemon.json pool object ({"base": "...", "size": 24}); ValueError."""
    return make_pools([pool_spec_from_json(obj)])[0]


# --- choosing a subnet ---------------------------------------------------------------------------


def _sort_key(net: Prefix) -> tuple[int, int, int]:
    return (net.version, int(net.network_address), net.prefixlen)


def predefined_v4(pools: Iterable[AddressPool]) -> list[AddressPool]:
    """The IPv4 pools in dockerd's search order: sorted by base (shorter first on a tie); a
    pool overlapping an earlier one is dropped."""
    kept: list[AddressPool] = []
    for pool in sorted(pools, key=lambda p: _sort_key(p.base)):
        if isinstance(pool.base, IPv4Network) and not (kept and kept[-1].base.overlaps(pool.base)):
            kept.append(pool)
    return kept


def _first_free(
    pool: IPv4Network, size: int, blockers: Sequence[IPv4Network]
) -> IPv4Network | None:
    """The first subnet of prefix length `size` in `pool` that overlaps no blocker."""
    step = 1 << (32 - size)
    addr, last = int(pool.network_address), int(pool.broadcast_address)
    while addr <= last:
        candidate = IPv4Network((addr, size))
        hit = next((b for b in blockers if b.overlaps(candidate)), None)
        if hit is None:
            return candidate
        end = int(hit.broadcast_address) + 1  # skip past the blocker, to the next boundary
        addr = max(addr + step, (end + step - 1) // step * step)
    return None


def allocate_subnet(
    pools: Sequence[AddressPool],
    in_use: Sequence[IPv4Network],
    host_routes: Sequence[IPv4Network] = (),
    prefix_len: int | None = None,
) -> IPv4Network:
    """A subnet for a new network (libnetwork's allocatePredefinedPool).

    `in_use`: the subnets of the other networks; `host_routes`: prefixes the host uses (dockerd
    reserves on-link routes and the nameservers of /etc/resolv.conf as /32s). `prefix_len`
    (a Subnet of "0.0.0.0/N") asks for subnets of that length from the pools that can hold
    them. InvalidParameter "invalid address pool" when no pool fits, "all predefined address
    pools have been fully subnetted" when every one is used up.
    """
    predefined = predefined_v4(pools)
    if prefix_len:
        predefined = [
            AddressPool(p.base, prefix_len)
            for p in predefined
            if p.base.prefixlen <= prefix_len <= 32
        ]
    if not predefined:
        raise errdefs.InvalidParameter(ERR_INVALID_POOL)
    blockers = sorted(
        (n for n in (*in_use, *host_routes) if isinstance(n, IPv4Network)),
        key=_sort_key,
    )
    for pool in predefined:
        base = pool.base
        assert isinstance(base, IPv4Network)
        found = _first_free(base, pool.size, [b for b in blockers if b.overlaps(base)])
        if found is not None:
            return found
    raise errdefs.InvalidParameter(ERR_NO_MORE_SUBNETS)
