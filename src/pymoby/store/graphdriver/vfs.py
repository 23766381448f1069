"""vfs: every layer is a full copy of its parent plus its own changes; works on any filesystem.

Rule: no mounts and no kernel features; a layer is the directory `<home>/dir/<id>` (dockerd's
layout) holding the complete tree, so `get` returns it as a plain directory. Creating a layer on
a parent copies the parent with `cp -a --reflink=auto` (owners, modes, timestamps, xattrs,
hardlinks, device nodes, sparse files; copy-on-write clones where the filesystem has them).
Extraction deletes whiteout targets from that copy (`whiteout_mode = "delete"`), and changes are
found by comparing with the parent (`changes_mode = "compare"`).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from pymoby import errdefs
from pymoby.store.graphdriver.base import (
    TRASH_DIR,
    ChangesMode,
    GetCounter,
    MountSpec,
    Trash,
    WhiteoutMode,
    remove_tree,
    system_error,
)
from pymoby.store.graphdriver.overlay2 import STACK_LIMIT_NEW_API

NAME = "vfs"


class VfsDriver:
    """The vfs graph driver; make one with `VfsDriver.open(home)`."""

    whiteout_mode: WhiteoutMode = "delete"
    changes_mode: ChangesMode = "compare"

    def __init__(self, home: Path) -> None:
        self._home = home
        self._gets = GetCounter()
        self._trash = Trash(home / TRASH_DIR)

    @classmethod
    def open(cls, home: Path, *, options: Sequence[str] = ()) -> VfsDriver:
        for option in options:
            key = option.partition("=")[0].strip()
            raise errdefs.InvalidParameter(f"unknown option {key} for vfs")
        home = Path(home)
        try:
            home.mkdir(mode=0o710, parents=True, exist_ok=True)
            (home / "dir").mkdir(mode=0o710, exist_ok=True)
        except OSError as exc:
            raise system_error(f"{NAME}: prepare {home}", exc) from None
        return cls(home)

    @property
    def name(self) -> str:
        return NAME

    @property
    def home(self) -> Path:
        return self._home

    @property
    def max_depth(self) -> int:
        return STACK_LIMIT_NEW_API - 3  # no stacking limit of its own: same as overlay2

    def create(self, id: str, parent: str | None, *, rw: bool) -> None:
        layer = self._dir(id)
        source = self._dir(parent) if parent else None
        if source is not None and not source.is_dir():
            raise errdefs.NotFound(f"{NAME}: no such parent layer: {parent}")
        try:
            layer.mkdir(mode=0o755)
        except FileExistsError:
            raise errdefs.Conflict(f"{NAME}: layer {id} already exists") from None
        except OSError as exc:
            raise system_error(f"{NAME}: create layer {id}", exc) from None
        if source is None:
            return
        try:
            copy_tree(source, layer)
        except BaseException:
            remove_tree(layer)
            raise

    def remove(self, id: str) -> None:
        if self._gets.count(id):
            raise errdefs.Conflict(f"{NAME}: layer {id} is in use")
        try:
            self._trash.discard(self._dir(id))
        except OSError as exc:
            raise system_error(f"{NAME}: remove layer {id}", exc) from None

    def exists(self, id: str) -> bool:
        return self._dir(id).is_dir()

    def ids(self) -> list[str]:
        return sorted(
            entry.name
            for entry in os.scandir(self._home / "dir")
            if entry.is_dir(follow_symlinks=False) and not entry.name.startswith(".")
        )

    def diff_path(self, id: str) -> Path:
        return self._dir(id)

    def get(self, id: str, mount_label: str = "") -> MountSpec:
        layer = self._dir(id)
        if not layer.is_dir():
            raise errdefs.NotFound(f"{NAME}: no such layer: {id}")
        self._gets.increment(id)
        return MountSpec.plain_dir(layer)

    def put(self, id: str) -> None:
        self._gets.decrement(id)

    def metadata(self, id: str) -> dict[str, str]:
        layer = self._dir(id)
        if not layer.is_dir():
            raise errdefs.NotFound(f"{NAME}: no such layer: {id}")
        return {"SourceDir": str(layer)}

    def status(self) -> list[tuple[str, str]]:
        return []

    def _dir(self, id: str) -> Path:
        if not id or "/" in id or id in (".", "..") or id.startswith("."):
            raise errdefs.InvalidParameter(f"{NAME}: invalid layer id {id!r}")
        return self._home / "dir" / id


def copy_tree(source: Path, dest: Path) -> None:
    """Copy the contents and attributes of `source` into the existing directory `dest`."""
    try:
        subprocess.run(
            ["cp", "-a", "--reflink=auto", "--", f"{source}/.", f"{dest}/"],
            check=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise errdefs.System(f"{NAME}: copy {source}: cp is not installed: {exc}") from None
    except subprocess.CalledProcessError as exc:
        detail = exc.stderr.decode(errors="replace").strip().splitlines()
        reason = detail[-1] if detail else f"cp exited with {exc.returncode}"
        raise errdefs.System(f"{NAME}: copy {source} to {dest}: {reason}") from None
