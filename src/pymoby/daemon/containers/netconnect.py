"""POST /networks/{id}/connect and /disconnect, on the container side.

Rule (dockerd's ConnectToNetwork / DisconnectFromNetwork): under the container's lock; a
running container is attached (or detached) at once through its sandbox, a stopped one only
has its endpoint configuration recorded (or dropped) for its next start. Containers in the
host, none or container:<id> network modes cannot be connected to anything else, and the
host/none networks accept no connections of other containers. Each change is saved.
"""

from __future__ import annotations

from pymoby import errdefs
from pymoby.api.types.containers import EndpointSettings
from pymoby.daemon.containers import netsetup
from pymoby.daemon.containers.context import Deps
from pymoby.daemon.containers.model import Container

_HOST_OR_NONE = "container cannot be disconnected from host network or connected to host network"


def _check_mode(c: Container, name: str) -> None:
    mode = c.host_config.network_mode
    if name in ("host", "none") or mode in ("host", "none") or not netsetup.uses_sandbox(mode):
        if mode.startswith("container:"):
            raise errdefs.Forbidden(
                "container sharing network namespace with another container or host cannot "
                "be connected to any other network"
            )
        raise errdefs.Forbidden(_HOST_OR_NONE)


async def connect(d: Deps, term: str, container: str, settings: EndpointSettings | None) -> None:
    if d.networks is None:
        raise errdefs.NotImplementedErr("networking is disabled in this daemon")
    c = d.store.get(container)
    name = d.networks.network_name(term)
    settings = settings or EndpointSettings()
    async with c.lock:
        _check_mode(c, name)
        if c.running and c.sandbox_key:
            if name in c.endpoints and c.endpoints[name] is not None:
                live = c.endpoints[name]
                if live is not None and live.endpoint_id:
                    raise errdefs.Forbidden(
                        f"endpoint with name {c.name.removeprefix('/')} already exists in "
                        f"network {name}"
                    )
            await netsetup.connect(d, c, name, settings)
        else:
            if name in c.endpoints:
                raise errdefs.Forbidden(f"container {c.id} is already attached to network {name}")
            c.endpoints[name] = netsetup.configured(settings)
        await d.store.save(c)


async def disconnect(d: Deps, term: str, container: str, *, force: bool) -> None:
    if d.networks is None:
        raise errdefs.NotImplementedErr("networking is disabled in this daemon")
    c = d.store.find(container)
    if c is None:
        if force:
            return  # dockerd: force removes a stale endpoint of a container that is gone
        d.store.get(container)  # raises dockerd's `No such container`
        return
    name = d.networks.network_name(term)
    async with c.lock:
        if name not in c.endpoints:
            raise errdefs.Forbidden(f"container {c.id} is not connected to network {name}")
        _check_mode(c, name)
        if c.running and c.sandbox_key:
            await d.networks.disconnect(c.id, name)
        del c.endpoints[name]
        await d.store.save(c)


def users_of(d: Deps, network_name: str) -> list[str]:
    """IDs of the running containers attached to a network (they keep it from removal)."""
    return [
        c.id for c in d.store.all() if c.running and network_name in c.endpoints and c.sandbox_key
    ]
