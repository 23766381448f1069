"""Sandboxes: a container's network namespace, its endpoints, published ports and DNS.

Rule: `setup` makes, in this order, the namespace (a file under <exec-root>/netns), the
endpoints (addresses taken, rows written in one transaction, then the veths), the published
ports (allocated, proxy started, rules reconciled) and the embedded DNS (for user-defined
networks); any failure undoes what was made, in reverse, and raises. `teardown` undoes all of it
and never raises (errors are logged): it runs after a container exited. The first network
gets the default route (eth0); later ones (connect) get eth1, eth2, ...

The container manager calls these with plain values and stores the results in its record; this
module never sees a Container. DNS names of an endpoint (dockerd's DNSNames): the container's
name, its aliases, its short ID; they resolve for containers on the same user-defined network,
also as "<name>.<network>".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from pymoby import errdefs
from pymoby.api.types.containers import EndpointSettings
from pymoby.daemon.networks.dns import Resolver, SandboxDNS
from pymoby.daemon.networks.drivers import veth_name
from pymoby.daemon.networks.model import Endpoint, EndpointDoc, Network
from pymoby.daemon.networks.portmap import (
    PortAllocator,
    PortBinding,
    external_connectivity_error,
)
from pymoby.daemon.networks.portmap import (
    requests as port_requests,
)
from pymoby.daemon.networks.proxy import ProxyManager, allocate_and_bind
from pymoby.daemon.networks.service import NetworkService
from pymoby.kernel import netns
from pymoby.kernel.iptables import PortMap
from pymoby.kernel.netlink import mac_for

log = logging.getLogger("pymoby.networks")


@dataclass
class SandboxRequest:
    """What `setup` needs to know of a container."""

    container_id: str
    name: str  # without the slash
    networks: list[tuple[str, EndpointSettings]]  # (network name or ID, settings), in order
    port_bindings: Mapping[str, Any] | None = None
    exposed_ports: Mapping[str, Any] | None = None
    publish_all: bool = False
    dns_servers: Sequence[str] = ()  # upstreams of the embedded DNS
    mac_address: str = ""  # the legacy Config.MacAddress (first network)


@dataclass
class SandboxState:
    """What the container manager keeps of a sandbox (persisted with the container)."""

    sandbox_id: str = ""
    sandbox_key: str = ""
    ports: list[PortBinding] = field(default_factory=list)
    proxy_pid: int = 0


class Sandboxes:
    """Sandboxes of running containers (see the module docstring)."""

    def __init__(
        self,
        service: NetworkService,
        *,
        resolver: Resolver,
        ports: PortAllocator,
        proxies: ProxyManager,
    ) -> None:
        self.svc = service
        self.resolver = resolver
        self.ports = ports
        self.proxies = proxies
        self._upstreams: dict[str, Sequence[str]] = {}  # container ID -> DNS upstreams

    def network_name(self, term: str) -> str:
        """The name of the network `term` names (dockerd's FindNetwork; NotFound)."""
        return self.svc.get(term).name

    # -- setup -------------------------------------------------------------------------------

    async def setup(self, req: SandboxRequest) -> tuple[SandboxState, dict[str, EndpointSettings]]:
        """Make the sandbox of a starting container (see the rule)."""
        nets = [(self.svc.get(term), settings) for term, settings in req.networks]
        sandbox_id = secrets.token_hex(32)
        path = self.svc.settings.netns_dir / sandbox_id[:12]
        state = SandboxState(sandbox_id=sandbox_id, sandbox_key=str(path))
        await asyncio.to_thread(netns.create, path)
        made: list[tuple[Network, Endpoint]] = []  # undone by _undo: addresses, rows, links
        try:
            for i, (net, settings) in enumerate(nets):
                ep = self._new_endpoint(req, net, settings, f"eth{i}", str(path), first=i == 0)
                made.append((net, ep))
            await self.svc.store.add_endpoints([ep for _, ep in made])
            for i, (net, ep) in enumerate(made):
                await self.svc.drivers[net.driver].join(net, ep, path, default_route=i == 0)
            if made:
                await self._publish(req, state, made[0][0], made[0][1])
            self._upstreams[req.container_id] = list(req.dns_servers)
            if any(net.user_defined for net, _ in made):
                await self.resolver.serve(sandbox_id, path, self._dns(req.container_id))
        except BaseException:
            await asyncio.shield(self._undo(req.container_id, state, made))
            raise
        for net, _ep in made:
            self.svc.publish_event("connect", net, req.container_id)
        return state, {
            net.name: self.settings_of(net, ep, s)
            for (net, ep), (_, s) in zip(made, nets, strict=True)
        }

    def _new_endpoint(
        self,
        req: SandboxRequest,
        net: Network,
        settings: EndpointSettings,
        ifname: str,
        sandbox_key: str,
        *,
        first: bool,
    ) -> Endpoint:
        preferred = None
        if settings.ipam_config is not None and settings.ipam_config.IPv4Address:
            if not net.user_defined:
                raise errdefs.InvalidParameter(
                    "user specified IP address is supported on user defined networks only"
                )
            try:
                preferred = IPv4Address(settings.ipam_config.IPv4Address)
            except ValueError:
                raise errdefs.InvalidParameter(
                    f"invalid IPv4 address: {settings.ipam_config.IPv4Address}"
                ) from None
        if settings.aliases and not net.user_defined:
            raise errdefs.InvalidParameter(
                "network-scoped alias is supported only for containers in user defined networks"
            )
        taken = self.svc.addresses.take(net, preferred) if net.driver == "bridge" else None
        addr, prefix = taken if taken is not None else (None, 0)
        mac = settings.mac_address or (req.mac_address if first else "")
        if not mac and addr is not None:
            mac = mac_for(addr)
        short = req.container_id[:12]
        names = [req.name, *(settings.aliases or []), short] if net.user_defined else []
        return Endpoint(
            id=secrets.token_hex(32),
            network_id=net.id,
            container_id=req.container_id,
            ipv4=addr,
            doc=EndpointDoc(
                name=req.name,
                prefix_len=prefix,
                mac=mac,
                ifname=ifname,
                host_veth=veth_name() if net.driver == "bridge" else "",
                aliases=list(settings.aliases or []),
                dns_names=list(dict.fromkeys(names)),
                links=_links(settings.links) if net.user_defined else {},
                static=preferred is not None,
                sandbox_key=sandbox_key,
            ),
        )

    def settings_of(self, net: Network, ep: Endpoint, given: EndpointSettings) -> EndpointSettings:
        """The EndpointSettings inspect shows for a live endpoint."""
        gw = net.doc.subnets[0].gateway if net.doc.subnets and ep.ipv4 is not None else ""
        return EndpointSettings(
            ipam_config=given.ipam_config,
            links=given.links,
            aliases=given.aliases,
            driver_opts=given.driver_opts,
            gw_priority=given.gw_priority,
            network_id=net.id,
            endpoint_id=ep.id,
            gateway=gw,
            ip_address=str(ep.ipv4) if ep.ipv4 is not None else "",
            mac_address=ep.doc.mac,
            ip_prefix_len=ep.doc.prefix_len,
            dns_names=list(ep.doc.dns_names) or None,
        )

    # -- published ports ---------------------------------------------------------------------

    async def _publish(
        self, req: SandboxRequest, state: SandboxState, net: Network, ep: Endpoint
    ) -> None:
        default_ip = net.doc.host_binding or self.svc.settings.default_ip
        wanted = port_requests(
            req.port_bindings, req.exposed_ports, req.publish_all, default_host_ip=default_ip
        )
        if not wanted or ep.ipv4 is None or net.driver != "bridge":
            return
        bound: list[PortBinding] = []
        try:
            if self.svc.settings.userland_proxy:
                bound, socks = await asyncio.to_thread(allocate_and_bind, self.ports, wanted)
                state.ports = bound
                state.proxy_pid = await self.proxies.start(
                    req.container_id, str(ep.ipv4), bound, socks
                )
            else:  # no proxy: the sockets are still held, to reserve the ports (dockerd)
                bound, socks = await asyncio.to_thread(allocate_and_bind, self.ports, wanted)
                state.ports = bound
                self.proxies.hold(req.container_id, socks)
            self.svc.port_rules[req.container_id] = self._rules(bound, ep.ipv4, net.doc.bridge)
            await self.svc.reconcile_rules()
        except BaseException as exc:
            for b in bound:
                self.ports.release(b)
            state.ports = []
            self.svc.port_rules.pop(req.container_id, None)
            if isinstance(exc, errdefs.PymobyError):
                raise external_connectivity_error(req.name, ep.id, exc) from None
            raise

    @staticmethod
    def _rules(bound: Sequence[PortBinding], ip: IPv4Address, bridge: str) -> list[PortMap]:
        return [
            PortMap(
                proto=b.proto,
                host_ip=IPv4Address(b.host_ip),
                host_port=b.host_port,
                container_ip=ip,
                container_port=b.container_port,
                bridge=bridge,
            )
            for b in bound
        ]

    # -- DNS ---------------------------------------------------------------------------------

    def _dns(self, container_id: str) -> SandboxDNS:
        """Internal networks only: no forwarding (dockerd's rule)."""
        nets = self._peer_networks(container_id)
        outside = not nets or any(not n.doc.internal for n in nets)
        return SandboxDNS(
            lookup=lambda name: self._lookup(container_id, name),
            reverse=lambda addr: self._reverse(container_id, addr),
            upstreams=self._upstreams.get(container_id, ()) if outside else (),
        )

    def _peer_networks(self, container_id: str) -> list[Network]:
        nets = []
        for ep in self.svc.store.endpoints_of_container(container_id):
            net = self.svc.store.networks.get(ep.network_id)
            if net is not None and net.user_defined:
                nets.append(net)
        return nets

    def _lookup(self, container_id: str, name: str) -> list[IPv4Address] | None:
        name = name.rstrip(".").lower()
        found: list[IPv4Address] = []
        for ep in self.svc.store.endpoints_of_container(container_id):
            target = {k.lower(): v for k, v in ep.doc.links.items()}.get(name)
            if target is not None:  # a link alias: only this container sees it
                name = target.lower()
                break
        for net in self._peer_networks(container_id):
            suffix = "." + net.name.lower()
            short = name[: -len(suffix)] if name.endswith(suffix) else name
            for ep in self.svc.store.endpoints_of(net.id):
                if ep.ipv4 is None:
                    continue
                if any(n.lower() in (name, short) for n in ep.doc.dns_names):
                    found.append(ep.ipv4)
        return list(dict.fromkeys(found)) or None

    def _reverse(self, container_id: str, addr: IPv4Address) -> str | None:
        for net in self._peer_networks(container_id):
            for ep in self.svc.store.endpoints_of(net.id):
                if ep.ipv4 == addr:
                    return f"{ep.doc.name}.{net.name}"
        return None

    # -- teardown ----------------------------------------------------------------------------

    async def teardown(self, container_id: str, state: SandboxState) -> None:
        """Unmake a container's sandbox (never raises; see the rule)."""
        made = [
            (self.svc.store.networks[ep.network_id], ep)
            for ep in self.svc.store.endpoints_of_container(container_id)
            if ep.network_id in self.svc.store.networks
        ]
        await self._undo(container_id, state, made)
        for net, _ in made:
            self.svc.publish_event("disconnect", net, container_id)

    async def _undo(
        self, container_id: str, state: SandboxState, made: Sequence[tuple[Network, Endpoint]]
    ) -> None:
        if state.sandbox_id:
            await _logged(self.resolver.stop(state.sandbox_id), "stopping the DNS of", container_id)
        self._upstreams.pop(container_id, None)
        if state.proxy_pid:
            await _logged(
                self.proxies.stop(container_id, state.proxy_pid),
                "stopping the proxy of",
                container_id,
            )
            state.proxy_pid = 0
        self.proxies.release(container_id)
        for b in state.ports:
            self.ports.release(b)
        state.ports = []
        if self.svc.port_rules.pop(container_id, None) is not None:
            await _logged(self.svc.reconcile_rules(), "removing the port rules of", container_id)
        if not state.sandbox_key:  # else removing the namespace takes the veths with it
            for net, ep in reversed(made):
                await _logged(
                    self.svc.drivers[net.driver].leave(net, ep),
                    "removing the veth of",
                    container_id,
                )
        if state.sandbox_key:
            await _logged(
                asyncio.to_thread(netns.remove, Path(state.sandbox_key)),
                "removing the namespace of",
                container_id,
            )
        eps = [ep for _, ep in made]
        try:
            await self.svc.store.remove_endpoints(eps)
        except errdefs.PymobyError as exc:
            log.error("removing the endpoints of %s: %s", container_id, exc)
        else:
            for net, ep in made:
                self.svc.addresses.give_back(net.id, ep.ipv4)

    # -- connect and disconnect of a running container ---------------------------------------

    async def connect(
        self, req: SandboxRequest, state: SandboxState, term: str, settings: EndpointSettings
    ) -> tuple[str, EndpointSettings]:
        net = self.svc.get(term)
        mine = self.svc.store.endpoints_of_container(req.container_id)
        if any(ep.network_id == net.id for ep in mine):
            raise errdefs.Forbidden(
                f"endpoint with name {req.name} already exists in network {net.name}"
            )
        used = {ep.doc.ifname for ep in mine}
        ifname = next(f"eth{i}" for i in range(len(used) + 1) if f"eth{i}" not in used)
        ep = self._new_endpoint(req, net, settings, ifname, state.sandbox_key, first=not mine)
        try:
            await self.svc.store.add_endpoints([ep])
        except BaseException:
            self.svc.addresses.give_back(net.id, ep.ipv4)
            raise
        try:
            await self.svc.drivers[net.driver].join(
                net, ep, Path(state.sandbox_key), default_route=not mine
            )
            if net.user_defined:
                await self.resolver.serve(
                    state.sandbox_id, Path(state.sandbox_key), self._dns(req.container_id)
                )
        except BaseException:
            await asyncio.shield(self._drop(net, ep))
            raise
        self.svc.publish_event("connect", net, req.container_id)
        return net.name, self.settings_of(net, ep, settings)

    async def disconnect(self, container_id: str, term: str) -> str:
        """Detach a running container from a network; returns the network's name."""
        net = self.svc.get(term)
        eps = [
            ep
            for ep in self.svc.store.endpoints_of_container(container_id)
            if ep.network_id == net.id
        ]
        for ep in eps:
            if ep.doc.sandbox_key:
                await _logged(
                    asyncio.to_thread(
                        self.svc.netlink.remove_in_netns, Path(ep.doc.sandbox_key), ep.doc.ifname
                    ),
                    "removing an interface of",
                    container_id,
                )
            await self._drop(net, ep)
        self.svc.publish_event("disconnect", net, container_id)
        return net.name

    async def _drop(self, net: Network, ep: Endpoint) -> None:
        await _logged(
            self.svc.drivers[net.driver].leave(net, ep), "removing the veth of", ep.container_id
        )
        await self.svc.store.remove_endpoints([ep])
        self.svc.addresses.give_back(net.id, ep.ipv4)

    # -- live restore ------------------------------------------------------------------------

    async def restore(
        self, container_id: str, state: SandboxState, dns_servers: Sequence[str]
    ) -> None:
        """Re-adopt the sandbox of a container found running at daemon start."""
        self._upstreams[container_id] = list(dns_servers)
        eps = self.svc.store.endpoints_of_container(container_id)
        for b in state.ports:
            with contextlib.suppress(errdefs.PymobyError):
                self.ports.reserve(b)
        first = eps[0] if eps else None
        if state.ports and first is not None and first.ipv4 is not None:
            net = self.svc.store.networks.get(first.network_id)
            if net is not None:
                self.svc.port_rules[container_id] = self._rules(
                    state.ports, first.ipv4, net.doc.bridge
                )
                if self.svc.settings.userland_proxy and not self.proxies.alive(
                    container_id, state.proxy_pid
                ):
                    try:
                        state.proxy_pid = await self.proxies.start(
                            container_id, str(first.ipv4), state.ports
                        )
                    except errdefs.PymobyError as exc:
                        log.error("restarting the port proxy of %s: %s", container_id, exc)
        if state.sandbox_key and any(
            (n := self.svc.store.networks.get(ep.network_id)) is not None and n.user_defined
            for ep in eps
        ):
            try:
                await self.resolver.serve(
                    state.sandbox_id, Path(state.sandbox_key), self._dns(container_id)
                )
            except errdefs.PymobyError as exc:
                log.error("restarting the DNS of %s: %s", container_id, exc)

    async def sweep(self, running: set[str], keep: set[str]) -> None:
        """After restore: drop the endpoints and namespaces of containers that are no longer
        running (they exited, or a start was cut short by a crash). `keep`: the namespace file
        names of the running containers' sandboxes."""
        stale = [ep for ep in self.svc.store.endpoints.values() if ep.container_id not in running]
        for ep in stale:
            net = self.svc.store.networks.get(ep.network_id)
            if net is not None:
                await _logged(
                    self.svc.drivers[net.driver].leave(net, ep),
                    "removing the veth of",
                    ep.container_id,
                )
        if stale:
            await self.svc.store.remove_endpoints(stale)
            for ep in stale:
                self.svc.addresses.give_back(ep.network_id, ep.ipv4)
        ns_dir = self.svc.settings.netns_dir
        for entry in await asyncio.to_thread(_listdir, ns_dir):
            if entry not in keep:
                await _logged(
                    asyncio.to_thread(netns.remove, ns_dir / entry), "removing namespace", entry
                )
        await self.svc.reconcile_rules()


def _links(raw: Sequence[str] | None) -> dict[str, str]:
    """EndpointSettings.Links ("name:alias" or "name") as alias -> name."""
    out = {}
    for item in raw or ():
        name, _, alias = item.partition(":")
        name = name.lstrip("/")
        out[(alias.rsplit("/", 1)[-1] or name)] = name
    return out


def _listdir(path: Path) -> list[str]:
    try:
        return sorted(p.name for p in path.iterdir())
    except FileNotFoundError:
        return []


async def _logged(aw: Any, what: str, who: str) -> None:
    try:
        await aw
    except Exception as exc:
        log.error("%s %s: %s", what, who, exc)
