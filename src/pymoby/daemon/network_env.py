"""Composition helper: the network layer, built from the daemon config.

Rule: part of the composition root (only daemon/daemon.py calls it). It turns the daemon's
network options into NetSettings, opens the network service (records, predefined networks,
bridges) before the container manager restores its containers, and hands the container manager
the Sandboxes. Layout under the exec root: `netns/` (sandbox namespaces), `network/` (proxy
bookkeeping). `PYMOBY_IPTABLES_PREFIX` (environment) prefixes every iptables chain we own, so
test daemons never share chains with each other or with another engine.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path

from pymoby.daemon.config import Config
from pymoby.daemon.events import EventBus
from pymoby.daemon.networks import ipam
from pymoby.daemon.networks.dns import Resolver
from pymoby.daemon.networks.portmap import PortAllocator
from pymoby.daemon.networks.proxy import ProxyManager
from pymoby.daemon.networks.sandbox import Sandboxes
from pymoby.daemon.networks.service import NetworkService
from pymoby.daemon.networks.settings import NetSettings
from pymoby.daemon.networks.store import NetworkStore
from pymoby.kernel.iptables import Iptables
from pymoby.kernel.netlink import Netlink
from pymoby.store.meta import MetaStore

PREFIX_ENV = "PYMOBY_IPTABLES_PREFIX"


def net_settings(cfg: Config, environ: Mapping[str, str] | None = None) -> NetSettings:
    env = os.environ if environ is None else environ
    exec_root = Path(cfg.exec_root)
    pools = tuple(cfg.default_address_pools) or ipam.DEFAULT_POOLS
    return NetSettings(
        netns_dir=exec_root / "netns",
        run_dir=exec_root / "network",
        bridge=cfg.bridge,
        bip=cfg.bip,
        fixed_cidr=cfg.fixed_cidr,
        mtu=cfg.mtu or 1500,
        icc=cfg.icc,
        ip_forward=cfg.ip_forward,
        ip_masq=cfg.ip_masq,
        iptables=cfg.iptables,
        userland_proxy=cfg.userland_proxy,
        default_gateway=cfg.default_gateway,
        pools=pools,
        dns=tuple(cfg.dns),
        dns_search=tuple(cfg.dns_search),
        dns_options=tuple(cfg.dns_opts),
        default_ip=cfg.ip or "0.0.0.0",
        chain_prefix=env.get(PREFIX_ENV, ""),
    )


class NetworkLayer:
    """The network service and the sandboxes over it."""

    def __init__(self, service: NetworkService, sandboxes: Sandboxes) -> None:
        self.service = service
        self.sandboxes = sandboxes

    def host_gateway(self) -> str:
        """The default bridge's gateway (for --add-host x:host-gateway), "" without one."""
        net = self.service.store.by_name("bridge")
        if net is None or not net.doc.subnets:
            return ""
        return net.doc.subnets[0].gateway

    async def close(self) -> None:
        await self.sandboxes.resolver.close()
        await self.service.close()


async def open_networks(cfg: Config, meta: MetaStore, events: EventBus) -> NetworkLayer:
    settings = net_settings(cfg)
    await asyncio.to_thread(_make_dirs, settings)
    iptables = Iptables(prefix=settings.chain_prefix) if settings.iptables else None
    service = NetworkService(
        NetworkStore(meta), settings, events, netlink=Netlink(), iptables=iptables
    )
    await service.open()
    sandboxes = Sandboxes(
        service,
        resolver=Resolver(),
        ports=PortAllocator(),
        proxies=ProxyManager(run_dir=settings.run_dir),
    )
    return NetworkLayer(service, sandboxes)


def _make_dirs(s: NetSettings) -> None:
    s.netns_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
    s.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
