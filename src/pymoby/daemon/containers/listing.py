"""GET /containers/json: dockerd's list (daemon/list.go), its filters and status texts.

Rule: newest first (by creation time); without `all` only running containers, unless a
`limit` > 0 or a `status` filter asks for more. Filters (an unknown name is `invalid filter
'x'`): id (a unique prefix), name (regexp, with or without the slash), label, status, exited,
ancestor (the image and its descendants), before / since (a container by ID or name), health,
volume (mount destination, volume name or bind source), network (name or ID prefix),
publish / expose (port ranges), is-task, isolation. `Image` is what the user named, unless that
name now means another image (then the ID). `size` adds SizeRw / SizeRootFs.
"""

from __future__ import annotations

import asyncio
import math
import os
import stat
import time

from pymoby import errdefs
from pymoby.api.filters import Filters
from pymoby.api.types.container_responses import ContainerSummary, MountPointView, PortView
from pymoby.api.types.containers import EndpointSettings
from pymoby.archive.diff import ChangeKind, changes, directory_size
from pymoby.daemon.containers.context import Deps
from pymoby.daemon.containers.model import Container, MountPoint
from pymoby.daemon.containers.names import ContainerNotFound
from pymoby.daemon.containers.state import VALID_STATES

ACCEPTED = (
    "ancestor", "before", "exited", "id", "isolation", "label", "name", "status", "health",
    "since", "volume", "network", "is-task", "publish", "expose",
)  # fmt: skip
HEALTH_STATES = ("none", "starting", "healthy", "unhealthy")


def human_duration(seconds: float) -> str:
    """go-units HumanDuration."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = math.floor(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def status_text(c: Container, now_ns: int | None = None) -> str:
    """dockerd's State.String(): "Up 3 seconds", "Exited (0) 2 seconds ago", "Created"..."""
    now = time.time_ns() if now_ns is None else now_ns
    s = c.state
    if c.running:
        if c.restarting:
            ago = human_duration((now - s.finished_at) / 1e9)
            return f"Restarting ({s.exit_code}) {ago} ago"
        out = "Up " + human_duration((now - s.started_at) / 1e9)
        return out + " (Paused)" if c.paused else out
    if c.removing:
        return "Removal In Progress"
    if c.dead:
        return "Dead"
    if s.started_at == 0:
        return "Created"
    if s.finished_at == 0:
        return ""
    return f"Exited ({s.exit_code}) {human_duration((now - s.finished_at) / 1e9)} ago"


def command_text(c: Container) -> str:
    if not c.args:
        return c.path
    return c.path + " " + " ".join(f"'{a}'" if " " in a else a for a in c.args)


def networks_of(c: Container) -> dict[str, EndpointSettings]:
    """The networks a container is attached to (by name), with their endpoint settings."""
    mode = c.host_config.network_mode
    if mode.startswith("container:") or not mode:
        return {}
    if not c.endpoints:
        return {mode: EndpointSettings()}
    return {k: v if v is not None else EndpointSettings() for k, v in c.endpoints.items()}


def port_map(c: Container) -> dict[str, list[dict[str, str]] | None]:
    """NetworkSettings.Ports: every exposed or published port of a running container, with
    its host bindings (None when it is exposed only); {} when not running."""
    if not c.sandbox_key:
        return {}
    out: dict[str, list[dict[str, str]] | None] = {}
    for key in c.config.exposed_ports or {}:
        out[key if "/" in key else key + "/tcp"] = None
    for b in c.ports:
        key = f"{b.container_port}/{b.proto}"
        bound = out.get(key) or []
        bound.append({"HostIp": b.host_ip, "HostPort": str(b.host_port)})
        out[key] = bound
    return out


def port_views(c: Container) -> list[PortView]:
    """The `Ports` of `docker ps`: published bindings, then exposed-only ports."""
    views = [
        PortView(private_port=b.container_port, type=b.proto, ip=b.host_ip, public_port=b.host_port)
        for b in c.ports
    ]
    published = {(b.container_port, b.proto) for b in c.ports}
    for key in c.config.exposed_ports or {}:
        port, _, proto = key.partition("/")
        if port.isdigit() and (int(port), proto or "tcp") not in published:
            views.append(PortView(private_port=int(port), type=proto or "tcp"))
    return views


def mount_view(m: MountPoint) -> MountPointView:
    return MountPointView(
        type=m.type,
        name=m.name,
        source=m.source,
        destination=m.destination,
        driver=m.driver,
        mode=m.mode,
        rw=m.rw,
        propagation=m.propagation,
    )


def _port_keys(key: str, value: str) -> set[str]:
    if ":" in value:
        raise errdefs.InvalidParameter(f"filter for '{key}' should not contain ':': {value}")
    ports, _, proto = value.partition("/")
    lo, dash, hi = ports.partition("-")
    try:
        start, end = int(lo), int(hi if dash else lo)
    except ValueError:
        raise errdefs.InvalidParameter(
            f"error while looking up for {key} {value}: invalid start port '{lo}'"
        ) from None
    return {f"{p}/{proto or 'tcp'}" for p in range(start, end + 1)}


def _by_id_or_name(d: Deps, value: str) -> Container:
    found = d.store.by_id(value)
    if found is not None:
        return found
    owner = d.store.id_for_name(value)
    if owner is not None and d.store.by_id(owner) is not None:
        return d.store.by_id(owner)  # type: ignore[return-value]
    raise ContainerNotFound(value)


async def list_containers(
    d: Deps, filters: Filters, *, all: bool, limit: int, size: bool
) -> list[ContainerSummary]:
    filters.validate(ACCEPTED)
    exited: list[int] = []
    for value in filters.get("exited"):
        try:
            exited.append(int(value, 10))
        except ValueError:
            raise errdefs.InvalidParameter(
                f"invalid filter 'exited={value}': strconv.Atoi: parsing \"{value}\": "
                "invalid syntax"
            ) from None
    for value in filters.get("status"):
        if value not in VALID_STATES:
            raise errdefs.InvalidParameter(
                f"invalid filter 'status={value}': invalid value for state ({value}): must be "
                f"one of {', '.join(VALID_STATES)}"
            )
        all = True
    is_task = filters.get_bool_or_default("is-task", False)
    for value in filters.get("health"):
        if value not in HEALTH_STATES:
            raise errdefs.InvalidParameter(
                f"invalid filter 'health={value}': invalid value for health ({value}): must "
                f"be one of {', '.join(HEALTH_STATES)}"
            )
    before = [_by_id_or_name(d, v) for v in filters.get("before")]
    since = [_by_id_or_name(d, v) for v in filters.get("since")]
    ancestors: set[str] | None = None
    if filters.contains("ancestor"):
        ancestors = set()
        for value in filters.get("ancestor"):
            try:
                record = await d.images.resolve(value)
            except errdefs.PymobyError:
                continue
            await _descendants(d, record.id, ancestors)
    publish: set[str] = set()
    for value in filters.get("publish"):
        publish |= _port_keys("publish", value)
    expose: set[str] = set()
    for value in filters.get("expose"):
        expose |= _port_keys("expose", value)

    candidates = _candidates(d, filters)
    before_id = before[-1].id if before else None
    since_id = since[-1].id if since else None
    picked: list[Container] = []
    for c in candidates:
        if before_id is not None:
            if c.id == before_id:
                before_id = None
            continue
        if since_id is not None and c.id == since_id:
            break
        if not c.running and not all and limit <= 0:
            continue
        if not (filters.match("name", c.name) or filters.match("name", c.name[1:])):
            continue
        if not filters.match("id", c.id):
            continue
        if filters.contains("is-task") and is_task:  # no container is a swarm task
            continue
        if not filters.match_kv_list("label", c.config.labels):
            continue
        if not filters.match("isolation", (c.host_config.isolation or "default").lower()):
            continue
        if limit > 0 and len(picked) == limit:
            break
        if exited and not (
            not c.running and c.state.started_at != 0 and c.state.exit_code in exited
        ):
            continue
        if not filters.match("status", c.state_name):
            continue
        if not filters.exact_match("health", "none"):
            continue
        if filters.contains("volume") and not _has_volume(c, filters.get("volume")):
            continue
        if ancestors is not None and c.image_id not in ancestors:
            continue
        if filters.contains("network") and not _on_network(c, filters.get("network")):
            continue
        if (publish or expose) and not _has_port(c, publish, expose):
            continue
        picked.append(c)
    return await _summaries(d, picked, size)


def _candidates(d: Deps, filters: Filters) -> list[Container]:
    names, ids = filters.get("name"), filters.get("id")
    everything = sorted(d.store.all(), key=lambda c: c.created, reverse=True)
    if not names and not ids:
        return everything
    matches: set[str] = set()
    for value in ids:
        full = d.store.by_id(value)
        cid = full.id if full is not None else d.store.by_prefix(value)
        if cid is not None:
            matches.add(cid)
    if names:
        for c in everything:
            if ids and c.id not in matches:
                continue
            if any(filters.match("name", n) or filters.match("name", n[1:]) for n in [c.name]):
                matches.add(c.id)
    return [c for c in everything if c.id in matches]


def _has_volume(c: Container, values: list[str]) -> bool:
    by_dest = {m.destination for m in c.mounts if m.destination}
    by_name = {m.name or m.source for m in c.mounts}
    return any(v in by_dest or v in by_name for v in values)


def _on_network(c: Container, values: list[str]) -> bool:
    nets = networks_of(c)
    for value in values:
        if value in nets:
            return True
        if any(ep.network_id and ep.network_id.startswith(value) for ep in nets.values()):
            return True
    return False


def _has_port(c: Container, publish: set[str], expose: set[str]) -> bool:
    """dockerd: `publish` matches a public port, `expose` a private one (port/proto)."""
    for p in port_views(c):
        if p.public_port and f"{p.public_port}/{p.type}" in publish:
            return True
        if f"{p.private_port}/{p.type}" in expose:
            return True
    return False


async def _descendants(d: Deps, image_id: str, out: set[str]) -> None:
    if image_id in out:
        return
    try:
        record = await d.images.get(image_id)
    except errdefs.PymobyError:
        return
    for child in record.children:
        await _descendants(d, child, out)
    out.add(image_id)


async def _summaries(d: Deps, picked: list[Container], size: bool) -> list[ContainerSummary]:
    now = time.time_ns()
    resolved: dict[str, str | None] = {}
    out: list[ContainerSummary] = []
    for c in picked:
        image = c.image
        if image and image != c.image_id:
            if image not in resolved:
                try:
                    resolved[image] = (await d.images.resolve(image)).id
                except errdefs.PymobyError:
                    resolved[image] = None
            if resolved[image] != c.image_id:
                image = c.image_id
        summary = ContainerSummary(
            id=c.id,
            names=[c.name],
            image=image,
            image_id=c.image_id,
            command=command_text(c),
            created=c.created // 1_000_000_000,
            ports=port_views(c),
            labels=c.labels,
            state=c.state_name,
            status=status_text(c, now),
            network_mode=c.host_config.network_mode,
            annotations=dict(c.host_config.annotations or {}) or None,
            networks=networks_of(c),
            mounts=[mount_view(m) for m in c.mounts],
        )
        if size:
            summary.size_rw, summary.size_root_fs = await layer_sizes(d, c)
        out.append(summary)
    return out


async def layer_sizes(d: Deps, c: Container) -> tuple[int, int]:
    """(SizeRw, SizeRootFs): the container layer's own bytes, and with the image's layers."""
    chain: str | None = None
    if c.image_id:
        try:
            chain = (await d.images.get(c.image_id)).chain_id
        except errdefs.PymobyError:
            chain = None
    return await asyncio.to_thread(_sizes, d, c, chain)


def _sizes(d: Deps, c: Container, chain: str | None) -> tuple[int, int]:
    try:
        top, below = d.layers.diff_paths(c.id)
    except errdefs.PymobyError:
        return 0, 0
    if d.env.changes_mode == "overlay":
        rw = directory_size(top)
    else:
        rw = 0
        for change in changes(top, below):
            if change.kind is ChangeKind.DELETE:
                continue
            try:
                st = os.lstat(os.path.join(top, change.path.lstrip("/")))
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                rw += st.st_size
    image = d.env.chain_size(chain) if chain and d.env.chain_size else 0
    return rw, rw + image
