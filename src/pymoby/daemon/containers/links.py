"""Legacy links (`--link name[:alias]`): registered at create, applied at start.

Rule (dockerd's registerLinks / setupLinkedContainers / links.EnvVars): on the default bridge a
link is stored in HostConfig.Links as "/child:/parent/alias"; the child must exist at create
(else InvalidParameter `could not get container for x`, never a 404, which would make the CLI
try to pull the image), must not use the host's network, and must be running at start
(`Cannot link to a non running container: /child AS /parent/alias`). At start the parent gets an
/etc/hosts line "<child ip>\t<alias> <child hostname> [<child name>]" and the environment
variables <ALIAS>_NAME, <ALIAS>_PORT*, <ALIAS>_ENV_*. On user-defined networks dockerd does not
register links: they are per-endpoint DNS aliases (EndpointSettings.Links, resolved by the
embedded DNS for the linking container only). `docker rm --link /parent/alias` drops a link.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping

from pymoby import errdefs
from pymoby.api.types.containers import HostConfig
from pymoby.daemon.containers.context import Deps
from pymoby.daemon.containers.model import Container
from pymoby.runtime.validate import container_ref


def parse_link(value: str) -> tuple[str, str]:
    """opts.ParseLink: (name, alias) of "name", "name:alias" or the stored "/name:/p/alias"."""
    if not value:
        raise errdefs.InvalidParameter("empty string specified for links")
    parts = value.split(":")
    if len(parts) > 2:
        raise errdefs.InvalidParameter(f"bad format for links: {value}")
    if len(parts) == 1:
        return value, value
    if parts[0].startswith("/"):
        return parts[0][1:], posixpath.basename(parts[1])
    return parts[0], parts[1]


def _child(d: Deps, name: str) -> Container:
    try:
        child = d.store.get(name)
        while (ref := container_ref(child.host_config.network_mode)) is not None:
            name = ref
            child = d.store.get(ref)
    except errdefs.NotFound as exc:
        raise errdefs.InvalidParameter(
            f"could not get container for {name}: {exc.message}"
        ) from None
    if child.host_config.network_mode == "host":
        raise errdefs.InvalidParameter(
            "conflicting options: host type networking can't be used with links. This would "
            "result in undefined behavior"
        )
    return child


def register(d: Deps, parent_name: str, hc: HostConfig, user_defined: bool) -> None:
    """Check and store the links of a container being created (see the rule)."""
    if not hc.links or user_defined:
        return
    stored = []
    for raw in hc.links:
        name, alias = parse_link(raw)
        child = _child(d, name)
        stored.append(f"{child.name}:{parent_name}/{alias}")
    hc.links = stored


def children(d: Deps, c: Container) -> list[tuple[str, str, Container]]:
    """(link name "/parent/alias", alias, child) of each registered link; links to containers
    that are gone are skipped."""
    out = []
    for raw in c.host_config.links or ():
        name, alias = parse_link(raw)
        child = d.store.find(name)
        if child is not None:
            out.append((f"{c.name}/{alias}", alias, child))
    return out


def _bridge_ip(c: Container) -> str:
    ep = c.endpoints.get("bridge")
    return ep.ip_address if ep is not None else ""


def at_start(d: Deps, c: Container) -> tuple[list[tuple[str, str]], list[str]]:
    """(/etc/hosts records, environment) of a starting container's links on the bridge."""
    if "bridge" not in c.endpoints:
        return [], []
    hosts: list[tuple[str, str]] = []
    env: list[str] = []
    for link_name, alias, child in children(d, c):
        if not child.running:
            raise errdefs.System(
                f"Cannot link to a non running container: {child.name} AS {link_name}"
            )
        ip = _bridge_ip(child)
        if not ip:
            raise errdefs.System(f"container {child.id} not attached to default bridge network")
        names = f"{alias} {child.config.hostname}"
        if alias != child.name[1:]:
            names += f" {child.name[1:]}"
        hosts.append((ip, names))
        env += env_vars(ip, link_name, child.config.env or [], child.config.exposed_ports or {})
    return hosts, env


def _port_key(key: str) -> tuple[int, str]:
    port, _, proto = key.partition("/")
    return int(port), proto or "tcp"


def env_vars(child_ip: str, name: str, env: list[str], exposed: Mapping[str, object]) -> list[str]:
    """links.EnvVars: the variables a link gives the linking container."""
    alias = posixpath.basename(name).upper().replace("-", "_")
    ports = sorted(
        (_port_key(k) for k in exposed if k.partition("/")[0].isdigit()),
        key=lambda p: (p[1] != "tcp", p[1], p[0]),
    )
    out: list[str] = []
    start = end = ports[0] if ports else (0, "")
    for i, (num, proto) in enumerate(ports):
        if i == 0:
            out.append(f"{alias}_PORT={proto}://{child_ip}:{num}")
        prefix = f"{alias}_PORT_{num}_{proto.upper()}"
        out += [
            f"{prefix}={proto}://{child_ip}:{num}",
            f"{prefix}_ADDR={child_ip}",
            f"{prefix}_PORT={num}",
            f"{prefix}_PROTO={proto}",
        ]
        if num == end[0] + 1 and proto == end[1]:
            end = (num, proto)
            if i < len(ports) - 1:
                continue
        if end != start:
            p = f"{alias}_PORT_{start[0]}_{start[1].upper()}"
            out += [
                f"{p}_START={start[1]}://{child_ip}:{start[0]}",
                f"{p}_PORT_START={start[0]}",
                f"{p}_END={end[1]}://{child_ip}:{end[0]}",
                f"{p}_PORT_END={end[0]}",
            ]
        start = end = (num, proto)
    out.append(f"{alias}_NAME={name}")
    for item in env:
        key, sep, value = item.partition("=")
        if sep and key not in ("HOME", "PATH"):
            out.append(f"{alias}_ENV_{key}={value}")
    return out


async def remove_link(d: Deps, name: str) -> None:
    """DELETE /containers/{parent/alias}?link=1: drop that link from the parent."""
    full = name if name.startswith("/") else "/" + name
    parent_name, alias = posixpath.split(full)
    if parent_name == "/":
        raise errdefs.Conflict("Conflict, cannot remove the default link name of the container")
    parent = d.store.find(parent_name)
    if parent is None:
        raise errdefs.System(f"Cannot get parent {parent_name} for link name {full}")
    kept = [raw for raw in parent.host_config.links or () if parse_link(raw)[1] != alias]
    parent.host_config.links = kept or None
    await d.store.save(parent)
