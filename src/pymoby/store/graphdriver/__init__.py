"""Graph drivers and their registry: pick a driver by name (`--storage-driver`) or like dockerd.

Rule: `new_driver` is the only way the daemon gets a driver. With a name it opens that driver
(errors reach the user); without one it takes the driver that already has state under the data
root, else the first supported one in PRIORITY (overlay2, then vfs). Drivers dockerd removed
(aufs, devicemapper, overlay) are refused with dockerd's message. Unlike dockerd, vfs state also
counts as prior state: one data root keeps one driver's layers (see `pymoby.store.layers`), and a
driver home counts only when it holds layers, not an empty skeleton.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from pymoby.kernel import mount as kmount
from pymoby.store.graphdriver.base import (
    ChangesMode,
    Driver,
    Mounter,
    MountSpec,
    NotSupportedError,
    WhiteoutMode,
)
from pymoby.store.graphdriver.overlay2 import Overlay2Driver
from pymoby.store.graphdriver.vfs import VfsDriver

__all__ = [
    "DRIVERS",
    "PRIORITY",
    "ChangesMode",
    "Driver",
    "MountSpec",
    "Mounter",
    "NotSupportedError",
    "Overlay2Driver",
    "VfsDriver",
    "WhiteoutMode",
    "new_driver",
]

PRIORITY = ("overlay2", "vfs")
REMOVED = ("aufs", "devicemapper", "overlay")

Opener = Callable[[Path, Sequence[str], Mounter | None, kmount.Api], Driver]

DRIVERS: dict[str, Opener] = {
    "overlay2": lambda home, options, mounter, api: Overlay2Driver.open(
        home, options=options, mounter=mounter, api=api
    ),
    "vfs": lambda home, options, _mounter, _api: VfsDriver.open(home, options=options),
}


def new_driver(
    name: str,
    data_root: Path,
    *,
    options: Sequence[str] = (),
    mounter: Mounter | None = None,
    api: kmount.Api = "auto",
) -> Driver:
    """Open the driver `name` (or choose one when empty) with its home `<data_root>/<name>`."""
    data_root = Path(data_root)
    name = name.strip()
    if name:
        return _open(name, data_root, options, mounter, api)
    prior = [n for n in DRIVERS if _has_state(data_root / n)]
    for candidate in PRIORITY:
        if candidate in prior:
            if len(prior) > 1:
                raise NotSupportedError(
                    f"{data_root} contains several valid graphdrivers: {', '.join(sorted(prior))};"
                    " cleanup or explicitly choose storage driver (-s <DRIVER>)"
                )
            return _open(candidate, data_root, options, mounter, api)
    for candidate in PRIORITY:
        try:
            return _open(candidate, data_root, options, mounter, api)
        except NotSupportedError:
            continue
    raise NotSupportedError("no supported storage driver found")


def _open(
    name: str,
    data_root: Path,
    options: Sequence[str],
    mounter: Mounter | None,
    api: kmount.Api,
) -> Driver:
    if name in REMOVED:
        raise NotSupportedError(
            f"[graphdriver] ERROR: the {name} storage-driver has been deprecated and removed; "
            "visit https://docs.docker.com/go/storage-driver/ for more information"
        )
    opener = DRIVERS.get(name)
    if opener is None:
        raise NotSupportedError(f"driver not supported: {name}")
    return opener(data_root / name, options, mounter, api)


def _has_state(home: Path) -> bool:
    """Whether a driver home holds layers (overlay2: `<id>` dirs; vfs: `dir/<id>`).

    Empty skeletons (`l/`, `dir/`) do not count, so trying a driver once leaves no "prior state".
    """
    for directory, skeleton in ((home, ("l", "dir")), (home / "dir", ())):
        try:
            with os.scandir(directory) as entries:
                if any(e.name not in skeleton and not e.name.startswith(".") for e in entries):
                    return True
        except FileNotFoundError:
            continue
        except OSError:
            return True  # unreadable: assume there is something (dockerd does the same)
    return False
