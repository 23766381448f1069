"""Composition helper: the container manager, built from the config and the host's facts.

Rule: this is part of the composition root (only daemon/daemon.py calls it). It probes the host
once at start (kernel/sysinfo, the daemon's own capabilities, `runc features`, the helper
binaries on PATH) and hands the facts to daemon/containers as a frozen HostEnv, so the
container manager itself never probes the host. Layout under the exec root:
`runc/` (runc's --root), `containers/<id>/` and `exits/` (conmon's, runtime/conmon.py),
`bundles/<id>/config.json` (the OCI bundle of each run).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import socket
from pathlib import Path
from typing import cast

from pymoby import errdefs
from pymoby.daemon.config import Config
from pymoby.daemon.containers.ports import HostEnv
from pymoby.daemon.containers.service import ContainerService
from pymoby.daemon.containers.store import ContainerStore
from pymoby.daemon.events import EventBus
from pymoby.daemon.network_env import NetworkLayer
from pymoby.kernel.sysinfo import HostProbe
from pymoby.runtime.binaries import Binaries, lookup_binary, lookup_init_binary
from pymoby.runtime.conmon import Runtime
from pymoby.runtime.defaults import caps_from_proc_status
from pymoby.runtime.resources import CgroupSupport
from pymoby.runtime.seccomp import parse_kernel_release
from pymoby.runtime.validate import DaemonDefaults, HostLimits
from pymoby.store.images import ImageStore
from pymoby.store.layers import LayerStore
from pymoby.store.meta import MetaStore
from pymoby.store.rwlayers import RWLayerStore

RRO_MIN_KERNEL = (5, 12)
# Every conmon leaves the daemon's cgroup for this one (kernel/cgroupfs: from the root of each
# hierarchy), so stopping or limiting the daemon's service leaves the containers' shims alone.
CONMON_CGROUP = "/pymoby-conmon"


def _host_env(cfg: Config, layers: LayerStore, features: str | None) -> HostEnv:
    """Blocking: read the host facts (call in a thread)."""
    facts = HostProbe().static_facts()
    try:
        kernel = parse_kernel_release(os.uname().release)
    except ValueError:
        kernel = (0, 0)
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            caps: tuple[str, ...] | None = tuple(caps_from_proc_status(f.read()))
    except (OSError, ValueError):
        caps = None
    doc = json.loads(features) if features else {}
    mount_options = set(doc.get("mountOptions") or ())
    namespaces = set((doc.get("linux") or {}).get("namespaces") or ())
    rro_error: str | None = None
    if kernel < RRO_MIN_KERNEL:
        rro_error = "recursive read-only mounts need kernel 5.12 or later"
    elif "rro" not in mount_options:
        rro_error = "the OCI runtime does not support recursive read-only mounts"
    data_root = Path(cfg.data_root)
    return HostEnv(
        data_root=data_root,
        exec_root=Path(cfg.exec_root),
        limits=HostLimits(
            # CgroupInfo is frozen; CgroupSupport's members are plain (settable) attributes.
            cgroups=cast(CgroupSupport, facts.cgroups),
            ncpu=facts.ncpu,
            cgroup_namespaces=facts.cgroup_namespaces,
            host_capabilities=caps,
            runtimes=("runc",),
            default_runtime=cfg.default_runtime,
            daemon_root=str(data_root),
        ),
        defaults=DaemonDefaults(
            cgroupns_mode="private" if facts.cgroups.version == "2" else "host"
        ),
        goarch=facts.go_arch,
        kernel=kernel,
        seccomp_enabled=facts.seccomp,
        host_capabilities=caps,
        init_path=lookup_init_binary("docker-init"),
        storage_driver=layers.driver.name,
        changes_mode=layers.driver.changes_mode,
        hostname=socket.gethostname,
        time_namespace="time" in namespaces,
        rro_error=rro_error,
        chain_size=layers.chain_size,
    )


async def open_containers(
    cfg: Config,
    meta: MetaStore,
    events: EventBus,
    layers: LayerStore,
    networks: NetworkLayer | None = None,
) -> ContainerService:
    """The container manager with the real runtime (conmon + runc), not started yet: add the
    listeners (the stream side), then `await service.start()` (watch exits, live restore)."""
    runc = await asyncio.to_thread(lookup_binary, cfg.default_runtime)
    conmon = await asyncio.to_thread(shutil.which, "conmon")
    if runc is None:
        raise errdefs.System(f"the OCI runtime {cfg.default_runtime!r} is not on PATH")
    if conmon is None:
        raise errdefs.System("conmon is not on PATH (pymoby runs containers under conmon)")
    features = await Binaries().features(runc)
    env = await asyncio.to_thread(_host_env, cfg, layers, features)
    env = dataclasses.replace(
        env,
        dns=tuple(cfg.dns),
        dns_search=tuple(cfg.dns_search),
        dns_options=tuple(cfg.dns_opts),
        host_gateway=networks.host_gateway if networks is not None else (lambda: ""),
    )
    exec_root = Path(cfg.exec_root)
    runtime = Runtime(
        runc,
        conmon,
        exec_root / "runc",
        exec_root,
        conmon_cgroup=CONMON_CGROUP,
        fast_exec=os.environ.get("PYMOBY_EXEC_RUNC", "") not in ("1", "true"),
    )
    service = ContainerService(
        ContainerStore(meta),
        runtime=runtime,
        layers=RWLayerStore(layers),
        images=ImageStore(meta),
        events=events,
        env=env,
        networks=networks.sandboxes if networks is not None else None,
    )
    return service
