"""The network service: network records, the predefined networks, the rule set, start-up repair.

Rule: a network is written to the store first and made in the kernel second (create), and
unmade in the kernel first and deleted from the store second (remove), so a crash between the
two leaves a record that `open` repairs (the bridge is made again) and never an unknown link.
Every change of networks or published ports ends with ONE iptables reconcile of the whole
desired state (kernel.iptables), so the rules never drift and restarts add no duplicates.
Containers are not known here: callers pass what is needed (the container manager owns them);
the sandbox side (join, leave, ports, DNS) lives in sandbox.py on top of this service.

Predefined networks: `none` (null), `host` (host) and `bridge` (the default bridge, unless
`--bridge=none`) exist after `open` and cannot be created or removed by users.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from pymoby import errdefs
from pymoby.api.strconv import parse_bool
from pymoby.daemon.events import EventBus
from pymoby.daemon.networks import ipam
from pymoby.daemon.networks.addresses import AddressBook, subnet_record
from pymoby.daemon.networks.drivers import (
    BridgeDriver,
    Driver,
    HostDriver,
    NullDriver,
)
from pymoby.daemon.networks.filters import find
from pymoby.daemon.networks.model import (
    OPT_BRIDGE_NAME,
    OPT_DEFAULT_BRIDGE,
    OPT_HOST_BINDING,
    OPT_ICC,
    OPT_MASQ,
    OPT_MTU,
    Network,
    NetworkDoc,
)
from pymoby.daemon.networks.settings import NetSettings
from pymoby.daemon.networks.store import NetworkStore
from pymoby.kernel import sysctl
from pymoby.kernel.iptables import BridgeNet, Iptables, PortMap
from pymoby.kernel.netlink import Netlink

log = logging.getLogger("pymoby.networks")


@dataclass
class CreateSpec:
    """A network create request, as the service takes it."""

    name: str
    driver: str = "bridge"
    internal: bool = False
    attachable: bool = False
    ingress: bool = False
    config_only: bool = False
    config_from: str = ""
    enable_ipv4: bool = True
    enable_ipv6: bool = False
    ipam_driver: str = "default"
    ipam_options: dict[str, str] | None = None
    ipam_configs: list[Mapping[str, Any]] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


def new_id() -> str:
    return secrets.token_hex(32)


def _parse_bool_opt(key: str, value: str) -> bool:
    parsed = parse_bool(value)
    if parsed is None:
        raise errdefs.InvalidParameter(
            f'failed to parse {key} value: {value} (strconv.ParseBool: parsing "{value}": '
            "invalid syntax)"
        )
    return parsed


def _parse_mtu(value: str) -> int:
    try:
        mtu = int(value)
    except ValueError:
        raise errdefs.InvalidParameter(
            f'failed to parse {OPT_MTU} value: {value} (strconv.Atoi: parsing "{value}": '
            "invalid syntax)"
        ) from None
    if mtu < 68:
        raise errdefs.InvalidParameter(f"invalid MTU number: {mtu}")
    return mtu


class NetworkService:
    """Networks of the engine (see the module docstring)."""

    def __init__(
        self,
        store: NetworkStore,
        settings: NetSettings,
        events: EventBus,
        *,
        netlink: Netlink,
        iptables: Iptables | None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.events = events
        self.netlink = netlink
        self.iptables = iptables
        self.addresses = AddressBook()
        self.drivers: dict[str, Driver] = {
            "bridge": BridgeDriver(netlink),
            "host": HostDriver(),
            "null": NullDriver(),
        }
        # Published ports of every running container (container ID -> rules), set by sandbox.py.
        self.port_rules: dict[str, list[PortMap]] = {}
        self._rules_lock = asyncio.Lock()
        self._rules_dirty = False

    # -- start-up ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Load the records, make the predefined networks, remake every bridge."""
        await self.store.load()
        if self.settings.ip_forward:
            await asyncio.to_thread(sysctl.write, "net/ipv4/ip_forward", "1")
        await self._predefined("none", "null")
        await self._predefined("host", "host")
        if self.settings.default_bridge_enabled:
            await self._default_bridge()
        for net in list(self.store.networks.values()):
            self.addresses.load(net, self.store.endpoints_of(net.id))
            if net.driver == "bridge":
                default = net.doc.options.get(OPT_DEFAULT_BRIDGE) == "true"
                try:
                    await self.drivers["bridge"].create(
                        net, create_bridge=not default or not self.settings.bridge
                    )
                except errdefs.PymobyError as exc:
                    if default:
                        raise
                    log.error("network %s: making its bridge %s: %s", net.name, net.doc.bridge, exc)

    async def _predefined(self, name: str, driver: str) -> None:
        if self.store.by_name(name) is None:
            await self.store.add(Network(new_id(), name, driver, time.time_ns()))

    async def _default_bridge(self) -> None:
        s = self.settings
        name = s.bridge_name
        existing_addrs = await asyncio.to_thread(self._bridge_addresses, name)
        others = [
            sub.network
            for n in self.store.networks.values()
            if n.name != "bridge"
            for sub in n.doc.subnets
        ]
        routes = await asyncio.to_thread(self.netlink.routes)
        own = {IPv4Network(a.network) for a in existing_addrs}
        cfg = ipam.bridge_subnet(
            s.bip or None,
            s.fixed_cidr or None,
            existing_addrs,
            s.pools,
            others,
            [r for r in routes if r not in own],
            user_managed=bool(s.bridge),
            default_gateway=s.default_gateway or None,
        )
        masq = s.ip_masq and s.iptables
        doc = NetworkDoc(
            options={
                OPT_DEFAULT_BRIDGE: "true",
                OPT_ICC: str(s.icc).lower(),
                OPT_MASQ: str(masq).lower(),
                OPT_HOST_BINDING: s.default_ip,
                OPT_BRIDGE_NAME: name,
                OPT_MTU: str(s.mtu),
            },
            ipam_options=None,
            subnets=[subnet_record(cfg)],
            bridge=name,
            mtu=s.mtu,
            icc=s.icc,
            masquerade=masq,
            host_binding=s.default_ip,
        )
        current = self.store.by_name("bridge")
        if current is None:
            await self.store.add(Network(new_id(), "bridge", "bridge", time.time_ns(), doc))
        elif current.doc != doc:
            current.doc = doc
            await self.store.save(current)

    def _bridge_addresses(self, name: str) -> list[Any]:
        if not self.netlink.link_exists(name):
            if self.settings.bridge:
                raise errdefs.InvalidParameter(
                    f"bridge device with non default name {name} must be created manually"
                )
            return []
        return list(self.netlink.link_addresses(name))

    async def close(self) -> None:
        await asyncio.to_thread(self.netlink.close)

    # -- lookup ------------------------------------------------------------------------------

    def get(self, term: str) -> Network:
        """dockerd's FindNetwork: full ID, exact name, then a unique ID prefix."""
        nid = find(term, [(n.id, n.name) for n in self.store.networks.values()])
        return self.store.networks[nid]

    def all(self) -> list[Network]:
        return list(self.store.networks.values())

    # -- create and remove -------------------------------------------------------------------

    async def create(self, spec: CreateSpec) -> Network:
        name = spec.name
        if name in ("bridge", "host", "none") and self.store.by_name(name) is not None:
            raise errdefs.Forbidden(f"operation is not permitted on predefined {name} network ")
        driver = spec.driver or "bridge"
        if driver in ("host", "null"):
            raise errdefs.Forbidden(f'only one instance of "{driver}" network is allowed')
        if driver not in self.drivers:
            raise errdefs.NotFound(f'plugin "{driver}" not found')
        if spec.enable_ipv6:
            raise errdefs.NotImplementedErr(
                "IPv6 networks are not supported by pymoby yet (EnableIPv6 must be false)"
            )
        if spec.ipam_driver not in ("", "default"):
            raise errdefs.NotFound(f'plugin "{spec.ipam_driver}" not found')
        if spec.ingress or spec.config_only or spec.config_from:
            raise errdefs.NotImplementedErr(
                "ingress, config-only and config-from networks need swarm, which pymoby does "
                "not implement"
            )
        doc = self._bridge_doc(spec)
        self.store.reserve_name(name)
        try:
            in_use = self.addresses.subnets_in_use()
            if spec.ipam_configs:
                routes = await asyncio.to_thread(self.netlink.routes)
                cfgs = ipam.validate_configs(
                    spec.ipam_configs, in_use, pools=self.settings.pools, host_routes=routes
                )
            else:
                routes = await asyncio.to_thread(self.netlink.routes)
                subnet = ipam.allocate_subnet(self.settings.pools, in_use, routes)
                cfgs = [ipam.SubnetConfig(subnet, next(subnet.hosts()), None, {})]
            doc.subnets = [subnet_record(c) for c in cfgs]
            net = Network(new_id(), name, driver, time.time_ns(), doc)
            if not doc.bridge:
                doc.bridge = "br-" + net.id[:12]
            self._check_bridge_free(doc.bridge)
            await self.store.add(net)
        except BaseException:
            self.store.release_name(name)
            raise
        self.addresses.load(net, [])
        try:
            await self.drivers[driver].create(net)
            await self.reconcile_rules()
        except BaseException:
            await asyncio.shield(self._unmake(net))
            raise
        self.events.publish_network_event("create", net.id, net.name, net.driver)
        return net

    def _check_bridge_free(self, bridge: str) -> None:
        for other in self.store.networks.values():
            if other.driver == "bridge" and other.doc.bridge == bridge:
                raise errdefs.Forbidden(
                    f"bridge name {bridge} is already used by network {other.short_id}"
                )

    def _bridge_doc(self, spec: CreateSpec) -> NetworkDoc:
        opts = dict(spec.options)
        doc = NetworkDoc(
            internal=spec.internal,
            attachable=spec.attachable,
            enable_ipv4=spec.enable_ipv4,
            enable_ipv6=spec.enable_ipv6,
            options=opts,
            labels=dict(spec.labels),
            ipam_driver=spec.ipam_driver or "default",
            ipam_options=dict(spec.ipam_options) if spec.ipam_options is not None else {},
            mtu=self.settings.mtu,
            icc=True,
            masquerade=self.settings.ip_masq and self.settings.iptables,
        )
        if OPT_BRIDGE_NAME in opts:
            doc.bridge = opts[OPT_BRIDGE_NAME]
            if not doc.bridge or len(doc.bridge) > 15 or "/" in doc.bridge:
                raise errdefs.InvalidParameter(f"invalid bridge name: {doc.bridge!r}")
        if OPT_MTU in opts:
            doc.mtu = _parse_mtu(opts[OPT_MTU])
        if OPT_ICC in opts:
            doc.icc = _parse_bool_opt(OPT_ICC, opts[OPT_ICC])
        if OPT_MASQ in opts:
            doc.masquerade = _parse_bool_opt(OPT_MASQ, opts[OPT_MASQ]) and self.settings.iptables
        if OPT_HOST_BINDING in opts:
            try:
                doc.host_binding = str(IPv4Address(opts[OPT_HOST_BINDING]))
            except ValueError:
                raise errdefs.InvalidParameter(
                    f"failed to parse {OPT_HOST_BINDING} value: {opts[OPT_HOST_BINDING]}"
                ) from None
        return doc

    async def remove(self, net: Network, *, in_use: Callable[[Network], list[str]]) -> None:
        """Remove a user-defined network; Forbidden for predefined, Conflict while in use."""
        if net.predefined:
            raise errdefs.Forbidden(f"{net.name} is a pre-defined network and cannot be removed")
        users = in_use(net) + [ep.container_id for ep in self.store.endpoints_of(net.id)]
        if users:
            raise errdefs.Conflict(
                f"error while removing network: network {net.name} id {net.id} has active endpoints"
            )
        if net.removing:
            raise errdefs.Conflict(f"network {net.name} is being removed")
        net.removing = True
        try:
            await self._unmake(net)
        finally:
            net.removing = False
        self.events.publish_network_event("destroy", net.id, net.name, net.driver)

    async def _unmake(self, net: Network) -> None:
        """Kernel first, record second (see the rule)."""
        await self.drivers[net.driver].delete(net)
        await self.store.remove(net)
        self.addresses.drop(net.id)
        await self.reconcile_rules()

    # -- the rule set ------------------------------------------------------------------------

    def desired_rules(self) -> tuple[list[BridgeNet], list[PortMap]]:
        nets = [
            BridgeNet(
                bridge=n.doc.bridge,
                subnet=s.network,
                icc=n.doc.icc,
                masquerade=n.doc.masquerade,
                internal=n.doc.internal,
            )
            for n in self.store.networks.values()
            if n.driver == "bridge"
            for s in n.doc.subnets
        ]
        ports = [p for rules in self.port_rules.values() for p in rules]
        return nets, ports

    async def reconcile_rules(self) -> None:
        """Bring the host's rules to the desired state; concurrent calls coalesce into one
        more run after the current one."""
        if self.iptables is None:
            return
        self._rules_dirty = True
        async with self._rules_lock:
            if not self._rules_dirty:
                return
            self._rules_dirty = False
            nets, ports = self.desired_rules()
            await asyncio.to_thread(
                self.iptables.reconcile,
                nets,
                ports,
                userland_proxy=self.settings.userland_proxy,
            )

    def publish_event(self, action: str, net: Network, container_id: str) -> None:
        self.events.publish_network_event(
            action, net.id, net.name, net.driver, {"container": container_id}
        )
