"""The network records: what the engine knows of one network and of one endpoint.

Rule: one `Network` object per network lives in the NetworkStore for the life of the daemon and
is changed on the event loop only; its persisted fields go through `NetworkStore` (one SQLite
transaction per change). An `Endpoint` exists while its container's sandbox exists (from the
start of the container to its exit, as in dockerd): it holds the address taken from the
network's IPAM, so the `endpoints` table IS the record of allocated addresses and a restart
rebuilds every network's address set from it. IPv4 only.

`Network.subnets` are the validated IPAM configs; `ipam_requested` keeps what the user asked
for, which inspect does not show (dockerd shows the effective Subnet/Gateway).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import msgspec

# Driver option keys (com.docker.network.bridge.*), as dockerd spells them.
OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
OPT_ICC = "com.docker.network.bridge.enable_icc"
OPT_MASQ = "com.docker.network.bridge.enable_ip_masquerade"
OPT_HOST_BINDING = "com.docker.network.bridge.host_binding_ipv4"
OPT_DEFAULT_BRIDGE = "com.docker.network.bridge.default_bridge"
OPT_MTU = "com.docker.network.driver.mtu"

PREDEFINED = ("bridge", "host", "none")


class Subnet(msgspec.Struct, frozen=True, kw_only=True):
    """One IPv4 subnet of a network, as persisted (strings: msgspec-friendly)."""

    subnet: str
    gateway: str = ""
    ip_range: str = ""
    aux_addresses: dict[str, str] = msgspec.field(default_factory=dict)

    @property
    def network(self) -> IPv4Network:
        return IPv4Network(self.subnet)

    @property
    def gateway_ip(self) -> IPv4Address | None:
        return IPv4Address(self.gateway) if self.gateway else None

    @property
    def range(self) -> IPv4Network | None:
        return IPv4Network(self.ip_range) if self.ip_range else None


class NetworkDoc(msgspec.Struct, kw_only=True):
    """The JSON document of a `networks` row (everything but id, name, driver, created)."""

    scope: str = "local"
    internal: bool = False
    attachable: bool = False
    ingress: bool = False
    config_only: bool = False
    config_from: str = ""
    enable_ipv4: bool = True
    enable_ipv6: bool = False
    options: dict[str, str] = msgspec.field(default_factory=dict)
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    ipam_driver: str = "default"
    ipam_options: dict[str, str] | None = None
    subnets: list[Subnet] = msgspec.field(default_factory=list)
    bridge: str = ""  # the bridge link of a bridge network
    mtu: int = 1500
    icc: bool = True
    masquerade: bool = True
    host_binding: str = ""  # default host IP of published ports ("" = the daemon's --ip)


@dataclass(slots=True, eq=False)
class Network:
    """One network (see the module docstring)."""

    id: str
    name: str
    driver: str  # bridge | host | null
    created: int  # ns
    doc: NetworkDoc = field(default_factory=NetworkDoc)
    removing: bool = False  # transient: a DELETE is in progress

    @property
    def predefined(self) -> bool:
        return self.name in PREDEFINED

    @property
    def user_defined(self) -> bool:
        """dockerd's "custom" networks: not the predefined ones. Only these get the DNS."""
        return not self.predefined

    @property
    def short_id(self) -> str:
        return self.id[:12]


class EndpointDoc(msgspec.Struct, kw_only=True):
    """The JSON document of an `endpoints` row."""

    name: str  # the container's name, without the slash
    prefix_len: int = 0
    mac: str = ""
    ifname: str = ""  # inside the sandbox: eth0, eth1, ...
    host_veth: str = ""  # the host end of the veth pair ("" for host/none)
    aliases: list[str] = msgspec.field(default_factory=list)
    dns_names: list[str] = msgspec.field(default_factory=list)
    links: dict[str, str] = msgspec.field(default_factory=dict)  # alias -> container name
    static: bool = False  # the address was asked for (--ip)
    sandbox_key: str = ""


@dataclass(slots=True, eq=False)
class Endpoint:
    """A container's attachment to a network while its sandbox exists."""

    id: str
    network_id: str
    container_id: str
    ipv4: IPv4Address | None
    doc: EndpointDoc

    @property
    def interface(self) -> IPv4Interface | None:
        if self.ipv4 is None:
            return None
        return IPv4Interface(f"{self.ipv4}/{self.doc.prefix_len}")
