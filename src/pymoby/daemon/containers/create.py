"""POST /containers/create: validate, merge with the image, name, layer, one row.

Rule (dockerd's containerCreate + create): every check runs before anything is made; then the
name is reserved (synchronously, so two creates never race for it), the RW layer (with its
init layer) is created, the container directory made and the row inserted in ONE transaction.
A failure at any step undoes the earlier ones: no row, no name, no RW layer, no mount, no
directory is left behind, and no runtime process exists yet (conmon starts at `start`).

Networks are checked at create (an unknown one is 404 `network x not found`) and the
endpoints stored by network name (netsetup.create_endpoints); the sandbox is made at start.
What pymoby cannot do yet is refused with 501 and says so: named and anonymous volumes given in
Binds/Mounts, `--volumes-from`, image mounts, shareable/container IPC, device requests,
log drivers other than json-file, local, k8s-file and none (all four are conmon's k8s-file log,
read and rotated by the daemon: logs.py, logrotate.py). An image's own VOLUMEs stay in the
container's layer, with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from pymoby import errdefs
from pymoby.api.types.containers import Config, EndpointSettings, HostConfig
from pymoby.api.types.images import ImageConfig, Platform
from pymoby.daemon.containers import links, names, netsetup
from pymoby.daemon.containers.context import Deps
from pymoby.daemon.containers.files import setup_init_layer
from pymoby.daemon.containers.model import Container, MountPoint
from pymoby.daemon.images import platforms as plat
from pymoby.daemon.images.listing import check_platform
from pymoby.runtime import mounts
from pymoby.runtime.merge import entrypoint_and_args, merge_image_config
from pymoby.runtime.validate import adapt_host_config, container_ref, validate_host_config
from pymoby.store.images import ImageRecord

log = logging.getLogger("pymoby.containers")

DEFAULT_LOG_DRIVER = "json-file"
# The drivers pymoby provides (conmon's k8s-file log, read and rotated by the daemon as dockerd's
# json-file and local drivers do; `none` is not readable) and the options each accepts.
LOG_OPTIONS: dict[str, frozenset[str]] = {
    "json-file": frozenset(
        ("max-file", "max-size", "compress", "labels", "labels-regex", "env", "env-regex", "tag")
    ),
    "local": frozenset(("max-file", "max-size", "compress")),
    "k8s-file": frozenset(("max-file", "max-size")),
    "none": frozenset(),
}
OTHER_DOCKER_DRIVERS = frozenset(
    ("syslog", "journald", "gelf", "fluentd", "awslogs", "splunk", "etwlogs", "gcplogs",
     "logentries")
)  # fmt: skip


@dataclass
class CreateParams:
    name: str
    config: Config
    host_config: HostConfig
    endpoints: dict[str, EndpointSettings | None]
    platform: Platform | None = None


def check_log_config(hc: HostConfig) -> None:
    """mergeAndVerifyLogConfig: the default driver, known drivers, their option names."""
    lc = hc.log_config
    if lc.type == "":
        lc.type = DEFAULT_LOG_DRIVER
    if lc.type in OTHER_DOCKER_DRIVERS:
        raise errdefs.NotImplementedErr(
            f'log driver "{lc.type}" is not supported by pymoby yet '
            f"(available: {', '.join(sorted(LOG_OPTIONS))})"
        )
    accepted = LOG_OPTIONS.get(lc.type)
    if accepted is None:
        raise errdefs.InvalidParameter(
            f"failed to get logging factory: logger: no log driver named '{lc.type}' is registered"
        )
    for key in lc.config or {}:
        if key not in accepted:
            if lc.type == "local":
                raise errdefs.InvalidParameter(f"unknown log opt '{key}' for log driver local")
            raise errdefs.InvalidParameter(f"unknown log opt '{key}' for {lc.type} log driver")


def check_unsupported(hc: HostConfig) -> None:
    if hc.volumes_from:
        raise errdefs.NotImplementedErr("--volumes-from is not supported by pymoby yet")
    for raw in hc.binds or ():
        if mounts.parse_bind(raw, hc.volume_driver).type == "volume":
            raise errdefs.NotImplementedErr(
                f"named volumes are not supported by pymoby yet (bind {raw!r})"
            )
    for mnt in hc.mounts or ():
        if mnt.type in ("volume", "image", "npipe", "cluster"):
            raise errdefs.NotImplementedErr(
                f'mounts of type "{mnt.type}" are not supported by pymoby yet'
            )
    if hc.ipc_mode == "shareable" or container_ref(hc.ipc_mode) is not None:
        raise errdefs.NotImplementedErr(
            f'IPC mode "{hc.ipc_mode}" is not supported by pymoby yet (private, none, host are)'
        )
    if hc.device_requests:
        raise errdefs.NotImplementedErr("device requests (--gpus) are not supported by pymoby")


def mount_points(hc: HostConfig) -> list[MountPoint]:
    """The `Mounts` list of a container (binds, Mounts entries, tmpfs)."""
    out: list[MountPoint] = []
    for raw in hc.binds or ():
        mp = mounts.parse_bind(raw, hc.volume_driver)
        out.append(MountPoint("bind", mp.source, mp.destination, mp.mode, mp.rw, mp.propagation))
    for mnt in hc.mounts or ():
        mp = mounts.parse_mount_spec(mnt)
        out.append(MountPoint(mp.type, mp.source, mp.destination, "", mp.rw, mp.propagation))
    return out


async def create(d: Deps, params: CreateParams) -> tuple[str, list[str]]:
    """Create a container; returns (ID, warnings). See the module rule."""
    config, hc = params.config, params.host_config
    if hc.restart_policy.name == "":
        hc.restart_policy.name = "no"
    warnings = await asyncio.to_thread(
        validate_host_config, config, hc, d.env.limits, source_exists=_exists
    )
    check_unsupported(hc)
    check_log_config(hc)
    for net, ep in params.endpoints.items():
        if ep is None:
            raise errdefs.InvalidParameter(
                f"invalid config for network {net}: EndpointsConfig is nil"
            )
    endpoints = netsetup.create_endpoints(d, hc, copy.deepcopy(params.endpoints))

    record: ImageRecord | None = None
    image_cfg: ImageConfig | None = None
    if config.image:
        record = await d.images.resolve(config.image)
        image_cfg = record.decode_config()
        if params.platform is not None:
            check_platform(record, image_cfg, config.image, params.platform)
        else:
            have = Platform(
                os=image_cfg.os, architecture=image_cfg.architecture, variant=image_cfg.variant
            )
            host = plat.host_platform()
            if not plat.matches(host, have):
                warnings.append(
                    f"The requested image's platform ({plat.format_platform(have)}) does not "
                    f"match the detected host platform ({plat.format_platform(host)}) and no "
                    "specific platform was requested"
                )
    merged = merge_image_config(config, image_cfg.config if image_cfg else None)
    for vol in sorted(merged.volumes or {}):
        warnings.append(
            f"volumes are not supported by pymoby yet: the image's VOLUME {vol} is part of "
            "the container's layer"
        )
    adapt_host_config(hc, d.env.defaults)
    mounts_list = mount_points(hc)

    cid = names.new_id()
    name = _reserve(d, params.name, cid)
    try:
        user_defined = set(endpoints) - {"bridge", "none", "host"} != set()
        links.register(d, name, hc, user_defined)
        if not merged.hostname:
            if hc.network_mode == "host":
                merged.hostname = d.env.hostname() or socket.gethostname()
            elif container_ref(hc.network_mode) is None:
                merged.hostname = cid[:12]
        path, args = entrypoint_and_args(merged.entrypoint, merged.cmd)
        ctr = Container(
            id=cid,
            name=name,
            created=time.time_ns(),
            path=path,
            args=args,
            config=merged,
            host_config=hc,
            image_id=record.id if record else "",
            root=d.env.data_root / "containers" / cid,
            bundle=d.env.exec_root / "bundles" / cid,
            driver=d.env.storage_driver,
            endpoints=endpoints,
            mounts=mounts_list,
        )
        await _make(d, ctr, record.chain_id if record else None)
    except BaseException:
        d.store.release_name(name)
        raise
    d.notify("created", ctr)
    d.event(ctr, "create")
    return cid, warnings


def _exists(path: str) -> bool:
    return Path(path).exists()


def _reserve(d: Deps, requested: str, cid: str) -> str:
    if requested:
        name = names.normalize(requested)
        d.store.reserve_name(name, cid)
        return name
    for retry in range(6):
        name = names.generate_name(retry)
        if d.store.try_reserve_name(name, cid):
            return name
    name = "/" + cid[:12]
    d.store.reserve_name(name, cid)
    return name


async def _make(d: Deps, ctr: Container, chain: str | None) -> None:
    """RW layer, directory, row; undone in reverse order when a later step fails."""
    await asyncio.to_thread(d.layers.create, ctr.id, chain, init=setup_init_layer)
    try:
        await asyncio.to_thread(_make_dirs, ctr)
        await d.store.add(ctr)
    except BaseException:
        await asyncio.shield(asyncio.to_thread(_undo, d, ctr))
        raise


def _make_dirs(ctr: Container) -> None:
    ctr.root.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    ctr.root.mkdir(mode=0o710)


def _undo(d: Deps, ctr: Container) -> None:
    try:
        d.layers.remove(ctr.id)
    except errdefs.PymobyError as exc:
        log.error("removing the RW layer of failed create %s: %s", ctr.id, exc)
    with contextlib.suppress(OSError):
        shutil.rmtree(ctr.root)
