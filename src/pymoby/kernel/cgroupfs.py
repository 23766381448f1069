"""Cgroup placement: put a process into a group of its own in every hierarchy we belong to.

Rule: this is the only writer of cgroupfs outside the OCI runtime (runc places containers
itself). It creates directories and writes `cgroup.procs`; it never sets limits. It also
removes the cgroup directories of a stopped container on runc's behalf (`remove_dirs`, used by
runtime/runcfast.py), and enters an exec'd process into a container's cgroups on runc's behalf
(`enter`, used by runtime/nsexec.py). Used for the
conmon shims, which must leave the daemon's cgroup so that stopping the daemon's service does
not kill them (podman's cgroupfs manager does the same with `<parent>/conmon`).

Group paths: an absolute `group` ("/pymoby-conmon") is taken from the root of each hierarchy;
a relative one ("conmon") is created under the caller's own cgroup in that hierarchy, so it
stays inside whatever limits the caller lives in. Hierarchies are those listed in
/proc/self/cgroup (v1 controllers, named ones like name=systemd, and the v2 `0::` line),
resolved to mountpoints through /proc/self/mountinfo. A v1 cpuset group starts with empty
`cpuset.cpus`/`cpuset.mems`, which refuse tasks, so they are copied from the parent.

Every step is best effort per hierarchy: failures are returned as warnings, never raised,
because a shim in the wrong cgroup is still a working shim. Plain blocking file I/O: callers
run it in a thread.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterable

from pymoby.kernel.cgroups import Mount, parse_mountinfo

_CPUSET_FILES = ("cpuset.cpus", "cpuset.mems")


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def hierarchies(proc_cgroup: str, mounts: list[Mount]) -> list[tuple[str, str, str]]:
    """(controllers, mountpoint, own path) for each hierarchy of /proc/<pid>/cgroup text.

    `controllers` is the middle field ("cpu,cpuacct", "name=systemd", "" for v2). Lines whose
    hierarchy is not mounted are skipped.
    """
    result: list[tuple[str, str, str]] = []
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hier, controllers, path = parts
        mountpoint: str | None = None
        if hier == "0" and controllers == "":
            for m in mounts:
                if m.fstype == "cgroup2":
                    mountpoint = m.mountpoint
        else:
            wanted = {c for c in controllers.split(",") if c}
            for m in mounts:
                if m.fstype == "cgroup" and wanted <= set(m.super_options):
                    mountpoint = m.mountpoint
                    break
        if mountpoint is not None:
            result.append((controllers, mountpoint, path))
    return result


def _target(mountpoint: str, own: str, group: str) -> str:
    rel = group.strip("/") if group.startswith("/") else os.path.join(own.strip("/"), group)
    return os.path.normpath(os.path.join(mountpoint, rel))


def _make_group(mountpoint: str, target: str, cpuset: bool) -> None:
    """mkdir -p `target` below `mountpoint`, seeding cpuset files on the way down."""
    rel = os.path.relpath(target, mountpoint)
    path = mountpoint
    for part in rel.split(os.sep):
        if part in ("", "."):
            continue
        parent, path = path, os.path.join(path, part)
        if not os.path.isdir(path):
            with contextlib.suppress(FileExistsError):
                os.mkdir(path, 0o755)
        if cpuset:
            for name in _CPUSET_FILES:
                mine = os.path.join(path, name)
                if os.path.exists(mine) and not _read(mine).strip():
                    with open(mine, "w", encoding="utf-8") as f:
                        f.write(_read(os.path.join(parent, name)).strip())


def place(pid: int, group: str, *, root: str = "/") -> list[str]:
    """Move `pid` into `group` in every hierarchy of the calling process; returns warnings."""
    try:
        proc_cgroup = _read(os.path.join(root, "proc/self/cgroup"))
        mounts = parse_mountinfo(_read(os.path.join(root, "proc/self/mountinfo")))
    except OSError as e:
        return [f"cannot read own cgroups: {e}"]
    warnings: list[str] = []
    for controllers, mountpoint, own in hierarchies(proc_cgroup, mounts):
        mp = os.path.join(root, mountpoint.lstrip("/"))
        target = _target(mp, own, group)
        try:
            _make_group(mp, target, "cpuset" in controllers.split(","))
            with open(os.path.join(target, "cgroup.procs"), "w", encoding="utf-8") as f:
                f.write(str(pid))
        except OSError as e:
            warnings.append(f"{target}: {e.strerror or e}")
    return warnings


def remove(group: str, *, root: str = "/") -> list[str]:
    """rmdir `group` (its last component only) in every hierarchy; returns warnings.

    A group that still has processes stays (EBUSY is reported); a missing one is fine.
    """
    try:
        proc_cgroup = _read(os.path.join(root, "proc/self/cgroup"))
        mounts = parse_mountinfo(_read(os.path.join(root, "proc/self/mountinfo")))
    except OSError as e:
        return [f"cannot read own cgroups: {e}"]
    warnings: list[str] = []
    for _, mountpoint, own in hierarchies(proc_cgroup, mounts):
        target = _target(os.path.join(root, mountpoint.lstrip("/")), own, group)
        try:
            os.rmdir(target)
        except FileNotFoundError:
            pass
        except OSError as e:
            warnings.append(f"{target}: {e.strerror or e}")
    return warnings


def enter(pid: int, dirs: Iterable[str]) -> None:
    """runc's EnterPid: write `pid` into `cgroup.procs` of each directory that exists.
    Raises OSError."""
    for d in dirs:
        if os.path.isdir(d):
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(str(pid))


def remove_dirs(paths: Iterable[str], *, timeout: float = 0.2, poll: float = 0.0005) -> bool:
    """rmdir each cgroup directory (absolute paths, e.g. from runc's state), retrying while the
    kernel still reports it busy (tasks being reaped) for up to `timeout` seconds. A missing
    one is fine. False when one stays: the caller falls back to whoever owns it (runc)."""
    deadline = time.monotonic() + timeout
    for path in paths:
        while True:
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    return False
            time.sleep(poll)
    return True


def procs(group: str, *, root: str = "/") -> set[int]:
    """Pids listed in `cgroup.procs` of `group` in any hierarchy (empty if none exist)."""
    try:
        proc_cgroup = _read(os.path.join(root, "proc/self/cgroup"))
        mounts = parse_mountinfo(_read(os.path.join(root, "proc/self/mountinfo")))
    except OSError:
        return set()
    found: set[int] = set()
    for _, mountpoint, own in hierarchies(proc_cgroup, mounts):
        target = _target(os.path.join(root, mountpoint.lstrip("/")), own, group)
        try:
            found.update(int(x) for x in _read(os.path.join(target, "cgroup.procs")).split())
        except (OSError, ValueError):
            continue
    return found
