"""Network drivers: bridge, host and null (none), behind one small Protocol.

Rule: a driver only makes and unmakes kernel objects (through kernel.netlink, in a thread); the
network service decides what exists, keeps the records and the addresses, and calls the driver
after the record is written (create, join) or before it is deleted (leave, delete), so a crash
in between leaves a record the next start reconciles, never a link nobody knows of.

- bridge: one Linux bridge per network, holding each subnet's gateway address; a container
  joins through a veth pair (host end on the bridge, the peer renamed ethN in its namespace,
  with its address, MAC, MTU and, for its first network, the default route).
- host: the container uses the host's namespace; join and leave do nothing.
- null: the container has its own namespace with only `lo`; join and leave do nothing.
"""

from __future__ import annotations

import asyncio
import secrets
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Protocol

from pymoby.daemon.networks.model import Endpoint, Network
from pymoby.kernel import netns
from pymoby.kernel.netlink import Netlink


class Driver(Protocol):
    name: str

    async def create(self, net: Network, *, create_bridge: bool = True) -> None: ...

    async def delete(self, net: Network) -> None: ...

    async def join(
        self, net: Network, ep: Endpoint, netns_path: Path, *, default_route: bool
    ) -> None: ...

    async def leave(self, net: Network, ep: Endpoint) -> None: ...


def veth_name() -> str:
    """A host-side veth name as dockerd makes them: "veth" and 7 random hex digits."""
    return "veth" + secrets.token_hex(4)[:7]


class BridgeDriver:
    name = "bridge"

    def __init__(self, netlink: Netlink) -> None:
        self._nl = netlink

    async def create(self, net: Network, *, create_bridge: bool = True) -> None:
        addresses = [
            IPv4Interface(f"{s.gateway}/{s.network.prefixlen}")
            for s in net.doc.subnets
            if s.gateway
        ]
        await asyncio.to_thread(
            self._nl.ensure_bridge,
            net.doc.bridge,
            mtu=net.doc.mtu,
            addresses=addresses,
            create=create_bridge,
        )

    async def delete(self, net: Network) -> None:
        await asyncio.to_thread(self._nl.delete_link, net.doc.bridge)

    async def join(
        self, net: Network, ep: Endpoint, netns_path: Path, *, default_route: bool
    ) -> None:
        gateway = None
        if default_route and not net.doc.internal and net.doc.subnets:
            gateway = net.doc.subnets[0].gateway_ip
        await asyncio.to_thread(
            self._nl.add_veth,
            host_name=ep.doc.host_veth,
            bridge=net.doc.bridge,
            netns=netns_path,
            ifname=ep.doc.ifname,
            address=ep.interface,
            gateway=gateway,
            mac=ep.doc.mac,
            mtu=net.doc.mtu,
        )
        if not net.doc.enable_ipv6:  # dockerd: no IPv6 (not even link-local) on such networks
            await asyncio.to_thread(
                netns.write_sysctl, netns_path, f"net/ipv6/conf/{ep.doc.ifname}/disable_ipv6", "1"
            )

    async def leave(self, net: Network, ep: Endpoint) -> None:
        if ep.doc.host_veth:
            await asyncio.to_thread(self._nl.remove_veth, ep.doc.host_veth)


class _NoKernelDriver:
    """host and null: nothing to make in the kernel."""

    name = ""

    async def create(self, net: Network, *, create_bridge: bool = True) -> None:
        return None

    async def delete(self, net: Network) -> None:
        return None

    async def join(
        self, net: Network, ep: Endpoint, netns_path: Path, *, default_route: bool
    ) -> None:
        return None

    async def leave(self, net: Network, ep: Endpoint) -> None:
        return None


class HostDriver(_NoKernelDriver):
    name = "host"


class NullDriver(_NoKernelDriver):
    name = "null"
