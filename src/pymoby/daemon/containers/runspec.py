"""Everything a start needs before the runtime is called: rootfs, network files, spec, bundle.

Rule: `prepare` does dockerd's conditionalMountOnStart + initializeNetworking (none, host,
container:<id>) + setupContainerDirs + createSpec, writes `<bundle>/config.json`, and leaves
the container's root filesystem mounted; `release` undoes the mount. Facts about the host come
from HostEnv; the image's /etc/passwd and /etc/group are read inside the mounted root
(files.read_root_file). The spec itself is the pure runtime.spec.build_spec.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
from pathlib import Path

from pymoby import errdefs
from pymoby.daemon.containers import files, links
from pymoby.daemon.containers.context import Deps
from pymoby.daemon.containers.model import Container
from pymoby.daemon.containers.ports import HostEnv
from pymoby.runtime import mounts
from pymoby.runtime.spec import Device, NamespacePaths, SpecInput, build_spec
from pymoby.runtime.validate import container_ref


def joined_container(d: Deps, c: Container, ref: str, what: str) -> Container:
    """The running container whose `what` namespace `c` joins (dockerd's messages)."""
    other = d.store.get(ref)
    if other.id == c.id:
        raise errdefs.InvalidParameter(f"cannot join own {what} namespace")
    if not other.running:
        raise errdefs.Conflict(
            f"cannot join {what} namespace of a non running container: container "
            f"{other.name.removeprefix('/')} is {other.state_name}"
        )
    if other.restarting:
        raise errdefs.Conflict(
            f"Container {ref} is restarting, wait until the container is running"
        )
    return other


async def prepare(d: Deps, c: Container) -> None:
    """Mount, write the network files, build the spec, write the bundle (see the rule)."""
    hc = c.host_config
    namespaces = NamespacePaths(network=c.sandbox_key or None)
    net_ref = container_ref(hc.network_mode)
    if net_ref is not None:
        other = joined_container(d, c, net_ref, "network")
        namespaces = NamespacePaths(network=f"/proc/{other.state.pid}/ns/net")
        c.config.hostname = other.config.hostname
        c.config.domainname = other.config.domainname
        c.hostname_path = other.hostname_path
        c.hosts_path = other.hosts_path
        c.resolv_conf_path = other.resolv_conf_path
    pid_ref = container_ref(hc.pid_mode)
    if pid_ref is not None:
        other = joined_container(d, c, pid_ref, "PID")
        namespaces = NamespacePaths(
            network=namespaces.network, pid=f"/proc/{other.state.pid}/ns/pid"
        )

    await mount(d, c)
    rootfs = Path(c.rootfs)
    try:
        link_hosts, link_env = links.at_start(d, c)
        if net_ref is None:
            await asyncio.to_thread(_network_files, c, d.env.host_gateway(), d.env, link_hosts)
        passwd, group, devices, host_devices = await asyncio.to_thread(_host_reads, c, rootfs)
        env = d.env
        inp = SpecInput(
            container_id=c.id,
            config=c.config,
            host_config=hc,
            rootfs=str(rootfs),
            goarch=env.goarch,
            kernel=env.kernel,
            passwd=passwd,
            group=group,
            hostname_path=c.hostname_path or None,
            hosts_path=c.hosts_path or None,
            resolv_conf_path=c.resolv_conf_path or None,
            namespaces=namespaces,
            time_namespace=env.time_namespace,
            init_path=env.init_path,
            cgroup_parent=env.cgroup_parent,
            systemd_cgroup=env.systemd_cgroup,
            host_capabilities=env.host_capabilities,
            seccomp_enabled=env.seccomp_enabled,
            host_devices=host_devices,
            devices=devices,
            daemon_root=str(env.data_root),
            rro_error=env.rro_error,
            linked_env=link_env,
        )
        spec = await asyncio.to_thread(build_spec, inp)
        await asyncio.to_thread(_write_bundle, c.bundle, spec)
    except BaseException:
        await asyncio.shield(release(d, c))
        raise


async def mount(d: Deps, c: Container) -> None:
    """Mount the root filesystem (once; `prepare` does it if nobody did before)."""
    if not c.rootfs:
        c.rootfs = str(await asyncio.to_thread(d.layers.mount, c.id))


async def release(d: Deps, c: Container) -> None:
    """Unmount the root filesystem mounted by `prepare` (once)."""
    if not c.rootfs:
        return
    c.rootfs = ""
    await asyncio.to_thread(d.layers.unmount, c.id)


def _network_files(
    c: Container, host_gateway: str, env: HostEnv, link_hosts: list[tuple[str, str]]
) -> None:
    """/etc/hostname, /etc/hosts, /etc/resolv.conf of a container with its own files."""
    hc, cfg = c.host_config, c.config
    host_network = hc.network_mode == "host"
    hostname = files.hostname_content(cfg.hostname, cfg.domainname)
    names = f"{cfg.hostname}.{cfg.domainname} {cfg.hostname}" if cfg.domainname else cfg.hostname
    own = [
        (ep.ip_address, names) for ep in c.endpoints.values() if ep is not None and ep.ip_address
    ]
    hosts = files.hosts_content(
        hc.extra_hosts,
        host_network=host_network,
        own=own[:1],
        linked=link_hosts,
        host_hosts=files.read_host_hosts() if host_network else None,
        host_gateway=host_gateway,
    )
    host_text, _ = files.host_resolv_conf()
    resolv = files.resolv_conf_content(
        host_text,
        host_network=host_network,
        dns=hc.dns or env.dns,
        dns_search=hc.dns_search or env.dns_search,
        dns_options=hc.dns_options or env.dns_options,
        embedded_dns=bool(c.endpoints) and not set(c.endpoints) <= {"bridge", "none", "host"},
    )
    for name, content in (("hostname", hostname), ("hosts", hosts), ("resolv.conf", resolv)):
        files.write_file(c.root / name, content)
    c.hostname_path = str(c.root / "hostname")
    c.hosts_path = str(c.root / "hosts")
    c.resolv_conf_path = str(c.root / "resolv.conf")
    for raw in hc.binds or ():  # dockerd creates a missing bind source of a Binds entry
        mp = mounts.parse_bind(raw, hc.volume_driver)
        if mp.type == "bind" and not os.path.lexists(mp.source):
            os.makedirs(mp.source, 0o755, exist_ok=True)


def _host_reads(
    c: Container, rootfs: Path
) -> tuple[str | None, str | None, list[Device], list[Device]]:
    passwd = files.read_root_file(rootfs, "/etc/passwd")
    group = files.read_root_file(rootfs, "/etc/group")
    hc = c.host_config
    devices: list[Device] = []
    for mapping in hc.devices or ():
        devices.extend(
            device_nodes(
                mapping.path_on_host,
                mapping.path_in_container or mapping.path_on_host,
                mapping.cgroup_permissions or "rwm",
            )
        )
    host_devices = device_nodes("/dev", "/dev", "rwm") if hc.privileged else []
    return passwd, group, devices, host_devices


def device_nodes(host: str, inside: str, permissions: str) -> list[Device]:
    """containerd's DevicesFromPath: a node, or every node below a directory."""
    try:
        st = os.stat(host)
    except OSError as exc:
        raise errdefs.InvalidParameter(
            f'error gathering device information while adding custom device "{host}": '
            f"{exc.strerror or exc}"
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        node = _node(host, inside, permissions, st)
        if node is None:
            raise errdefs.InvalidParameter(
                f'error gathering device information while adding custom device "{host}": '
                "not a device node"
            )
        return [node]
    out: list[Device] = []
    for dirpath, dirnames, filenames in os.walk(host):
        dirnames[:] = [n for n in dirnames if n not in ("pts", "shm", "fd", "mqueue")]
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                entry = os.stat(path, follow_symlinks=False)
            except OSError:
                continue
            node = _node(path, inside + path[len(host) :], permissions, entry)
            if node is not None:
                out.append(node)
    return out


def _node(host: str, inside: str, permissions: str, st: os.stat_result) -> Device | None:
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        return None
    return Device(
        path=inside,
        type=kind,
        major=os.major(st.st_rdev),
        minor=os.minor(st.st_rdev),
        file_mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        host_path=host,
        permissions=permissions,
    )


def _write_bundle(bundle: Path, spec: dict[str, object]) -> None:
    bundle.mkdir(mode=0o700, parents=True, exist_ok=True)
    files.write_file(bundle / "config.json", json.dumps(spec), 0o600)


def remove_bundle(bundle: Path) -> None:
    shutil.rmtree(bundle, ignore_errors=True)
