"""The network layer's settings: the daemon's bridge, IPAM, iptables, DNS and proxy options.

Rule: built once by the composition root from the daemon Config (flags + daemon.json); the
network service reads nothing else about the daemon's configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pymoby.daemon.networks.ipam import DEFAULT_POOLS, AddressPool

DEFAULT_BRIDGE = "docker0"


@dataclass(frozen=True, slots=True)
class NetSettings:
    netns_dir: Path  # <exec-root>/netns: the sandboxes' namespace files
    run_dir: Path  # <exec-root>/network: proxy bookkeeping
    bridge: str = ""  # -b: "" = docker0 (made by us), "none" = no default bridge network
    bip: str = ""
    fixed_cidr: str = ""
    mtu: int = 1500
    icc: bool = True
    ip_forward: bool = True
    ip_masq: bool = True
    iptables: bool = True
    userland_proxy: bool = True
    default_gateway: str = ""
    pools: tuple[AddressPool, ...] = DEFAULT_POOLS
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    default_ip: str = "0.0.0.0"  # --ip: the host address of published ports
    chain_prefix: str = ""  # PYMOBY_IPTABLES_PREFIX: tests keep their chains apart

    @property
    def bridge_name(self) -> str:
        return self.bridge or DEFAULT_BRIDGE

    @property
    def default_bridge_enabled(self) -> bool:
        return self.bridge != "none"
