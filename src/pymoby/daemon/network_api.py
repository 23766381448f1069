"""The NetworkBackend of the /networks routes: the network service plus the container manager.

Rule: part of the composition root. Networks never import containers (DESIGN: containers sit
on top), so what needs both lives here: a network's `Containers` (the running containers'
endpoints, with their names), "in use" for removal and prune (running containers attached),
and connect/disconnect (done by the container manager under the container's lock).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from pymoby import errdefs
from pymoby.api.filters import Filters
from pymoby.api.strconv import parse_bool
from pymoby.api.types.containers import EndpointSettings
from pymoby.api.types.networks import (
    IPAM,
    EndpointResource,
    IPAMConfig,
    NetworkCreateRequest,
    NetworkCreateResponse,
    NetworkResource,
    SubnetStatus,
)
from pymoby.daemon.containers.service import ContainerService
from pymoby.daemon.networks import filters as nfilters
from pymoby.daemon.networks.model import Network
from pymoby.daemon.networks.service import CreateSpec, NetworkService

_ENABLE_V4 = "com.docker.network.enable_ipv4"
_ENABLE_V6 = "com.docker.network.enable_ipv6"


def _opt_bool(options: Mapping[str, str], key: str, default: bool) -> bool:
    if key not in options:
        return default
    value = parse_bool(options[key])
    if value is None:
        raise errdefs.InvalidParameter(f'driver-opt "{key}" is not a valid bool')
    return value


def _local_offset() -> int:
    return -time.altzone if time.localtime().tm_isdst > 0 else -time.timezone


class NetworkAPI:
    """See the module docstring."""

    def __init__(self, networks: NetworkService, containers: ContainerService) -> None:
        self.networks = networks
        self.containers = containers
        self._pruning = False

    # -- views -------------------------------------------------------------------------------

    def _resource(self, net: Network, *, status: bool = False) -> NetworkResource:
        doc = net.doc
        eps: dict[str, EndpointResource] = {}
        for ep in self.networks.store.endpoints_of(net.id):
            eps[ep.container_id] = EndpointResource(
                name=ep.doc.name,
                endpoint_id=ep.id,
                mac_address=ep.doc.mac,
                ipv4_address=str(ep.interface) if ep.interface is not None else "",
            )
        if net.driver in ("host", "null"):
            ipam = IPAM(driver="default", options=None, config=[])
        else:
            ipam = IPAM(
                driver=doc.ipam_driver,
                options=doc.ipam_options,
                config=[
                    IPAMConfig(
                        subnet=s.subnet,
                        ip_range=s.ip_range,
                        gateway=s.gateway,
                        aux_addresses=dict(s.aux_addresses) or None,
                    )
                    for s in doc.subnets
                ],
            )
        res = NetworkResource(
            name=net.name,
            id=net.id,
            created=net.created,
            created_offset=_local_offset(),
            scope=doc.scope,
            driver=net.driver,
            enable_ipv4=doc.enable_ipv4,
            enable_ipv6=doc.enable_ipv6,
            ipam=ipam,
            internal=doc.internal,
            attachable=doc.attachable,
            ingress=doc.ingress,
            config_from=doc.config_from,
            config_only=doc.config_only,
            options=dict(doc.options),
            labels=dict(doc.labels),
            containers=eps,
        )
        if status:
            res.status = {
                s.subnet: SubnetStatus(
                    ips_in_use=sum(
                        1
                        for ep in self.networks.store.endpoints_of(net.id)
                        if ep.ipv4 is not None and ep.ipv4 in s.network
                    )
                    + (1 if s.gateway else 0),
                    dynamic_ips_available=max(
                        0, (s.range or s.network).num_addresses - 2 - (1 if s.gateway else 0)
                    ),
                )
                for s in doc.subnets
            }
        return res

    def _in_use(self, net: Network) -> bool:
        return bool(self.networks.store.endpoints_of(net.id)) or bool(
            self.containers.network_users(net.name)
        )

    # -- NetworkBackend ----------------------------------------------------------------------

    async def create_network(self, req: NetworkCreateRequest) -> NetworkCreateResponse:
        if nfilters.is_predefined(req.name):
            raise errdefs.Forbidden(f"operation is not permitted on predefined {req.name} network ")
        options = dict(req.options or {})
        v4 = (
            req.enable_ipv4 if req.enable_ipv4 is not None else _opt_bool(options, _ENABLE_V4, True)
        )
        v6 = (
            req.enable_ipv6
            if req.enable_ipv6 is not None
            else _opt_bool(options, _ENABLE_V6, False)
        )
        if not v4:
            raise errdefs.NotImplementedErr(
                "networks without IPv4 are not supported by pymoby (EnableIPv4 must be true)"
            )
        ipam = req.ipam or IPAM()
        configs: list[Mapping[str, Any]] = [
            {
                "Subnet": c.subnet,
                "IPRange": c.ip_range,
                "Gateway": c.gateway,
                "AuxiliaryAddresses": c.aux_addresses or {},
            }
            for c in ipam.config or []
        ]
        spec = CreateSpec(
            name=req.name,
            driver=req.driver or "bridge",
            internal=req.internal,
            attachable=req.attachable,
            ingress=req.ingress,
            config_only=req.config_only,
            config_from=req.config_from.network if req.config_from else "",
            enable_ipv4=v4,
            enable_ipv6=v6,
            ipam_driver=ipam.driver or "default",
            ipam_options=ipam.options,
            ipam_configs=configs,
            options=options,
            labels=dict(req.labels or {}),
        )
        net = await self.networks.create(spec)
        return NetworkCreateResponse(id=net.id)

    async def list_networks(self, filters: Filters) -> list[NetworkResource]:
        flt = nfilters.validate_list_filters(filters)
        out = []
        for net in self.networks.all():
            res = self._resource(net)
            if flt.matches(res, builtin=net.predefined, in_use=self._in_use(net)):
                out.append(res)
        return out

    async def inspect_network(self, term: str, *, verbose: bool, scope: str) -> NetworkResource:
        nets = [n for n in self.networks.all() if not scope or n.doc.scope == scope]
        nid = nfilters.find(term, [(n.id, n.name) for n in nets], kind="inspect")
        return self._resource(self.networks.store.networks[nid], status=True)

    async def remove_network(self, term: str) -> None:
        nid = nfilters.find(term, [(n.id, n.name) for n in self.networks.all()], kind="remove")
        net = self.networks.store.networks[nid]
        await self.networks.remove(net, in_use=lambda n: self.containers.network_users(n.name))

    async def prune_networks(self, filters: Filters) -> list[str]:
        flt = nfilters.validate_prune_filters(filters)
        if self._pruning:
            raise errdefs.Conflict("a prune operation is already running")
        self._pruning = True
        removed: list[str] = []
        try:
            for net in self.networks.all():
                if net.predefined or net.doc.config_only or net.driver != "bridge":
                    continue
                if self._in_use(net):
                    continue
                if not flt.matches(self._resource(net), builtin=False, in_use=False):
                    continue
                try:
                    await self.networks.remove(
                        net, in_use=lambda n: self.containers.network_users(n.name)
                    )
                except errdefs.PymobyError:
                    continue
                removed.append(net.name)
        finally:
            self._pruning = False
        if removed:
            self.networks.events.publish("network", "prune", "", {"reclaimed": "0"})
        return removed

    async def connect(self, term: str, container: str, config: EndpointSettings | None) -> None:
        if not container:
            raise errdefs.InvalidParameter("No such container: ")
        await self.containers.connect_network(term, container, config)

    async def disconnect(self, term: str, container: str, *, force: bool) -> None:
        if not container:
            raise errdefs.InvalidParameter("No such container: ")
        await self.containers.disconnect_network(term, container, force=force)
