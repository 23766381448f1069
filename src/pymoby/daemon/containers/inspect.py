"""GET /containers/{id}/json: the container record as dockerd's InspectResponse.

Rule: a pure read of the record (plus the graph driver's data and, with `size`, the layer
sizes, both read in a worker thread); the per-version shape is decided by
api/types/container_responses.inspect_wire. `Image` is the image ID, `Name` has its slash,
`State.Status` is State(), the network files' paths are empty until the first start.
"""

from __future__ import annotations

import asyncio

from pymoby import errdefs
from pymoby.api.types.container_responses import ContainerInspect, StateView
from pymoby.daemon.containers.context import Deps
from pymoby.daemon.containers.listing import layer_sizes, mount_view, networks_of, port_map
from pymoby.daemon.containers.model import Container


def state_view(c: Container) -> StateView:
    s = c.state
    return StateView(
        status=c.state_name,
        running=c.running,
        paused=c.paused,
        restarting=c.restarting,
        oom_killed=s.oom_killed,
        dead=c.dead,
        pid=s.pid,
        exit_code=s.exit_code,
        error=s.error,
        started_at=s.started_at,
        finished_at=s.finished_at,
    )


async def inspect(d: Deps, name: str, *, size: bool) -> ContainerInspect:
    c = d.store.get(name)
    graph: dict[str, str] | None
    try:
        graph = await asyncio.to_thread(d.layers.metadata, c.id)
    except errdefs.PymobyError:
        graph = None
    out = ContainerInspect(
        id=c.id,
        created=c.created,
        path=c.path,
        args=list(c.args),
        state=state_view(c),
        image=c.image_id,
        resolv_conf_path=c.resolv_conf_path,
        hostname_path=c.hostname_path,
        hosts_path=c.hosts_path,
        log_path=str(c.log_path),
        name=c.name,
        restart_count=c.restart_count,
        driver=c.driver,
        platform=c.platform,
        mount_label=c.mount_label,
        process_label=c.process_label,
        app_armor_profile=c.app_armor_profile,
        exec_ids=list(c.exec_ids) or None,
        host_config=c.host_config,
        graph_driver=graph,
        mounts=[mount_view(m) for m in c.mounts],
        config=c.config,
        sandbox_id=c.sandbox_id,
        sandbox_key=c.sandbox_key,
        ports=port_map(c),
        networks=networks_of(c),
    )
    if size:
        out.size_rw, out.size_root_fs = await layer_sizes(d, c)
    return out
