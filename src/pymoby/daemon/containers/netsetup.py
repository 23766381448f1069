"""A container's networking, seen from the container manager: which networks, sandbox in/out.

Rule: the network layer (daemon.networks) never sees a Container; this module turns a Container
into a SandboxRequest, stores what comes back in the record (endpoints, sandbox ID and key,
published ports, proxy pid) and clears it again when the sandbox goes. Bridge,
user-defined and `none` network modes get a sandbox from us (`none`: only `lo`); `host` and
`container:<id>` join an existing namespace.

Endpoint settings are keyed by network NAME in `Container.endpoints`, as dockerd shows them.
Between runs an endpoint keeps what the user configured (IPAMConfig, Aliases, Links,
DriverOpts, MacAddress given) and loses what a run assigned (IDs, addresses, DNS names).
"""

from __future__ import annotations

import asyncio

from pymoby import errdefs
from pymoby.api.types.containers import EndpointSettings, HostConfig
from pymoby.daemon.containers import files
from pymoby.daemon.containers.context import Deps
from pymoby.daemon.containers.model import Container
from pymoby.daemon.networks.sandbox import SandboxRequest, SandboxState
from pymoby.runtime.validate import container_ref


def uses_sandbox(mode: str) -> bool:
    """Bridge, user-defined and `none` containers get their namespace from the network layer
    (for `none` it holds only `lo`: made ahead like the others, not by runc at create)."""
    return mode != "host" and container_ref(mode) is None


def create_endpoints(
    d: Deps, hc: HostConfig, given: dict[str, EndpointSettings | None]
) -> dict[str, EndpointSettings | None]:
    """The endpoints a new container is created with, keyed by network name."""
    mode = hc.network_mode
    if mode in ("none", "host") or not uses_sandbox(mode):
        key = mode if mode in ("none", "host") else ""
        if not key:
            return {}
        if given and any(name != key for name in given):
            raise errdefs.InvalidParameter(
                "conflicting options: cannot attach both user-defined and non-user-defined "
                "network-modes"
            )
        return {key: given.get(key) or EndpointSettings()}
    if d.networks is None:
        raise errdefs.NotImplementedErr("networking is disabled in this daemon")
    out: dict[str, EndpointSettings | None] = {}
    for term, settings in [(mode, given.get(mode)), *given.items()]:
        name = _name(d, term)
        if name in ("none", "host"):
            raise errdefs.InvalidParameter(
                "conflicting options: cannot attach both user-defined and non-user-defined "
                "network-modes"
            )
        if name not in out or settings is not None:
            out[name] = settings or out.get(name) or EndpointSettings()
    return out


def _name(d: Deps, term: str) -> str:
    """The network's name; a network that does not exist (yet) keeps the name given: as in
    dockerd, create succeeds and start fails with `network x not found` (a 404 at create
    would make the docker CLI try to pull the image)."""
    assert d.networks is not None
    try:
        return d.networks.network_name(term)
    except errdefs.NotFound:
        return term


async def dns_servers(d: Deps, c: Container) -> list[str]:
    """The embedded DNS's upstreams: --dns, the daemon's --dns, else the host's servers."""
    if c.host_config.dns:
        return list(c.host_config.dns)
    if d.env.dns:
        return list(d.env.dns)
    text, _ = await asyncio.to_thread(files.host_resolv_conf)
    return files.nameservers(text)


def _request(d: Deps, c: Container, dns: list[str]) -> SandboxRequest:
    return SandboxRequest(
        container_id=c.id,
        name=c.name.removeprefix("/"),
        networks=[(name, ep or EndpointSettings()) for name, ep in c.endpoints.items()],
        port_bindings={
            key: [{"HostIp": b.HostIp, "HostPort": b.HostPort} for b in bindings or []]
            for key, bindings in (c.host_config.port_bindings or {}).items()
        },
        exposed_ports=c.config.exposed_ports,
        publish_all=bool(c.host_config.publish_all_ports),
        dns_servers=dns,
        mac_address=c.config.mac_address or "",
    )


def _state(c: Container) -> SandboxState:
    return SandboxState(
        sandbox_id=c.sandbox_id,
        sandbox_key=c.sandbox_key,
        ports=list(c.ports),
        proxy_pid=c.proxy_pid,
    )


def _keep(state: SandboxState, c: Container) -> None:
    c.sandbox_id, c.sandbox_key = state.sandbox_id, state.sandbox_key
    c.ports, c.proxy_pid = list(state.ports), state.proxy_pid


async def attach(d: Deps, c: Container) -> None:
    """Make the sandbox of a starting container (nothing for none/host/container:)."""
    if d.networks is None or not uses_sandbox(c.host_config.network_mode):
        return
    state, live = await d.networks.setup(_request(d, c, await dns_servers(d, c)))
    _keep(state, c)
    for name, settings in live.items():
        c.endpoints[name] = settings


async def detach(d: Deps, c: Container) -> None:
    """Unmake the sandbox of a container that stopped (never raises)."""
    if d.networks is not None and (c.sandbox_id or c.sandbox_key):
        await d.networks.teardown(c.id, _state(c))
    c.sandbox_id = c.sandbox_key = ""
    c.ports, c.proxy_pid = [], 0
    for name, ep in list(c.endpoints.items()):
        if ep is not None:
            c.endpoints[name] = configured(ep)


def configured(ep: EndpointSettings) -> EndpointSettings:
    """What a stopped container keeps of an endpoint (see the module rule)."""
    return EndpointSettings(
        ipam_config=ep.ipam_config,
        links=ep.links,
        aliases=ep.aliases,
        driver_opts=ep.driver_opts,
        gw_priority=ep.gw_priority,
        mac_address=ep.mac_address if ep.ipam_config is not None else "",
    )


async def restore(d: Deps, c: Container) -> None:
    """Re-adopt the sandbox of a container found running at daemon start."""
    if d.networks is None or not (c.sandbox_id or c.sandbox_key):
        return
    state = _state(c)
    await d.networks.restore(c.id, state, await dns_servers(d, c))
    c.proxy_pid = state.proxy_pid


async def connect(d: Deps, c: Container, term: str, settings: EndpointSettings) -> None:
    """Attach a running container to one more network."""
    if d.networks is None:
        raise errdefs.NotImplementedErr("networking is disabled in this daemon")
    req = _request(d, c, await dns_servers(d, c))
    name, live = await d.networks.connect(req, _state(c), term, settings)
    c.endpoints[name] = live
