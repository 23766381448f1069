"""Address books: every network's IPAM address sets, rebuilt from the endpoints at start.

Rule: an address is taken in memory (`take`) before the endpoint row is written and given back
(`give_back`) when that write fails or the endpoint is removed, so memory and the `endpoints`
table agree after every change; at start the sets are rebuilt from the table alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network

from pymoby import errdefs
from pymoby.daemon.networks import ipam
from pymoby.daemon.networks.model import Endpoint, Network, Subnet


def subnet_config(s: Subnet) -> ipam.SubnetConfig:
    return ipam.SubnetConfig(
        subnet=s.network,
        gateway=s.gateway_ip,
        ip_range=s.range,
        aux_addresses={k: IPv4Address(v) for k, v in s.aux_addresses.items()},
    )


def subnet_record(cfg: ipam.SubnetConfig) -> Subnet:
    return Subnet(
        subnet=str(cfg.subnet),
        gateway=str(cfg.gateway) if cfg.gateway else "",
        ip_range=str(cfg.ip_range) if cfg.ip_range else "",
        aux_addresses={k: str(v) for k, v in cfg.aux_addresses.items()},
    )


class AddressBook:
    """The address sets of every network (one per subnet)."""

    def __init__(self) -> None:
        self._sets: dict[str, list[ipam.AddressSet]] = {}

    def load(self, net: Network, endpoints: Iterable[Endpoint]) -> None:
        taken = [ep.ipv4 for ep in endpoints if ep.ipv4 is not None]
        sets = []
        for s in net.doc.subnets:
            cfg = subnet_config(s)
            sets.append(ipam.AddressSet(cfg, [a for a in taken if a in cfg.subnet]))
        self._sets[net.id] = sets

    def drop(self, network_id: str) -> None:
        self._sets.pop(network_id, None)

    def take(self, net: Network, preferred: IPv4Address | None) -> tuple[IPv4Address, int] | None:
        """An address of `net` (the preferred one if given) and its prefix length; None when
        the network has no subnet."""
        sets = self._sets.get(net.id, [])
        if not sets:
            if preferred is not None:
                raise errdefs.InvalidParameter(
                    f"no configured subnet contains IP address {preferred}"
                )
            return None
        if preferred is not None:
            for s in sets:
                if preferred in s.config.subnet:
                    return s.allocate(preferred), s.config.subnet.prefixlen
            raise errdefs.InvalidParameter(
                f"no configured subnet or ip-range contain the IP address {preferred}"
            )
        return sets[0].allocate(), sets[0].config.subnet.prefixlen

    def give_back(self, network_id: str, addr: IPv4Address | None) -> None:
        if addr is None:
            return
        for s in self._sets.get(network_id, []):
            if addr in s.config.subnet:
                s.release(addr)
                return

    def subnets_in_use(self) -> list[IPv4Network]:
        return [s.config.subnet for sets in self._sets.values() for s in sets]
