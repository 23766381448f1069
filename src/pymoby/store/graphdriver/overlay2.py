"""overlay2: layers as directories stacked by the kernel's overlayfs, laid out like dockerd's.

Rule: the on-disk layout is dockerd's, so its tools and habits apply, and the driver never mounts:
`get` describes an overlay mount (lower layers top first, upper, work, target) for kernel/mount.

    <home>/l/<LINK>               -> ../<id>/diff   26-char base32 short names, keep mounts short
    <home>/<id>/diff/             the layer's own files (the upper dir of a container layer)
    <home>/<id>/link              <LINK>
    <home>/<id>/lower             "l/<LINK of parent>:l/<LINK of grandparent>:..." (none for a base)
    <home>/<id>/work/             overlay's work dir (layers with a parent)
    <home>/<id>/merged/           mount point, exists while mounted
    <home>/<id>/committed         the layer is read-only: it has a child, or is an image layer

- A layer without `lower` needs no mount: its tree is `diff/` (`MountSpec.plain_dir`).
- A committed layer is mounted read-only (its own diff becomes the top lower dir); any other
  layer with parents gets `diff/` as the upper dir.
- Depth: with the new mount API (one fsconfig per lower dir) the kernel's overlay stack limit
  (500) applies; with classic mount(2) the option string must fit one page, which the relative
  `l/` names allow for dockerd's 128 lower dirs. The layer store keeps 3 below the limit (an
  init layer and the container layer sit on top), hence dockerd's 125.
- Support is probed like dockerd at open: a real overlay mount with two lower dirs, d_type on the
  backing filesystem, not on overlayfs itself; "Using metacopy" and "Native Overlay Diff" are
  measured by small mounts too, and reported by `status()` in dockerd's words.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path

from pymoby import errdefs
from pymoby.kernel import mount as kmount
from pymoby.store.graphdriver.base import (
    OVERLAY_MAGIC,
    TRASH_DIR,
    ChangesMode,
    GetCounter,
    Mounter,
    MountSpec,
    NotSupportedError,
    Trash,
    WhiteoutMode,
    atomic_write,
    backing_fs_name,
    random_link_id,
    remove_tree,
    system_error,
)

NAME = "overlay2"
LINK_DIR = "l"
STACK_LIMIT_CLASSIC = 128  # dockerd's maxDepth: what fits one page with l/<26 chars> names
STACK_LIMIT_NEW_API = 500  # the kernel's OVL_MAX_STACK
_PROBE_PREFIX = ".probe-"
_OPAQUE = "trusted.overlay.opaque"
_METACOPY = "trusted.overlay.metacopy"
_REDIRECT = "trusted.overlay.redirect"


class Overlay2Driver:
    """The overlay2 graph driver; make one with `Overlay2Driver.open(home)`."""

    whiteout_mode: WhiteoutMode = "overlay"
    changes_mode: ChangesMode = "overlay"

    def __init__(
        self,
        home: Path,
        mounter: Mounter,
        *,
        stack_limit: int,
        backing_fs: str,
        metacopy: bool,
        native_diff: bool,
        index_off: bool,
    ) -> None:
        self._home = home
        self._mounter = mounter
        self._stack_limit = stack_limit
        self._backing_fs = backing_fs
        self._metacopy = metacopy
        self._native_diff = native_diff
        self._index_off = index_off
        self._gets = GetCounter()
        self._trash = Trash(home / TRASH_DIR)

    @classmethod
    def open(
        cls,
        home: Path,
        *,
        mounter: Mounter | None = None,
        api: kmount.Api = "auto",
        options: Sequence[str] = (),
    ) -> Overlay2Driver:
        """Probe the host and prepare `home`; NotSupportedError when overlay2 cannot work here."""
        for option in options:
            key = option.partition("=")[0].strip().lower()
            raise errdefs.InvalidParameter(f"overlay2: unknown option {key}")
        mounter = mounter or kmount.Mounter(api)
        new_api = api == "new" or (api == "auto" and kmount.new_api_available())
        home = Path(home)
        created = not home.exists()
        try:
            home.mkdir(mode=0o710, parents=True, exist_ok=True)
            (home / LINK_DIR).mkdir(mode=0o700, exist_ok=True)
            _remove_probes(home, mounter)
            magic = kmount.fs_magic(home)
            backing_fs = backing_fs_name(magic)
            if magic == OVERLAY_MAGIC:
                raise NotSupportedError(
                    f"{NAME}: {home} is on overlayfs; an overlay upper dir cannot be on overlayfs"
                )
            if not kmount.supports_d_type(home):
                raise NotSupportedError(_d_type_message(backing_fs))
            _probe_overlay(home, mounter)
            metacopy = _probe_metacopy(home, mounter)
            native_diff = _probe_native_diff(home, mounter)
        except BaseException:
            if created:
                with contextlib.suppress(OSError):
                    remove_tree(home)
            raise
        driver = cls(
            home,
            mounter,
            stack_limit=STACK_LIMIT_NEW_API if new_api else STACK_LIMIT_CLASSIC,
            backing_fs=backing_fs,
            metacopy=metacopy,
            native_diff=native_diff,
            index_off=os.path.exists("/sys/module/overlay/parameters/index"),
        )
        driver._remove_dangling_links()
        return driver

    # -- Driver ----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return NAME

    @property
    def home(self) -> Path:
        return self._home

    @property
    def max_depth(self) -> int:
        return self._stack_limit - 3

    def create(self, id: str, parent: str | None, *, rw: bool) -> None:
        layer = self._dir(id)
        link = ""
        try:
            layer.mkdir(mode=0o710)
        except FileExistsError:
            raise errdefs.Conflict(f"{NAME}: layer {id} already exists") from None
        except OSError as exc:
            raise system_error(f"{NAME}: create layer {id}", exc) from None
        try:
            lower = self._lower_of(parent) if parent else ""
            (layer / "diff").mkdir(mode=0o755)
            link = self._make_link(id)
            atomic_write(layer / "link", link.encode())
            if not rw:
                atomic_write(layer / "committed", b"", 0o600)
            if parent:
                (layer / "work").mkdir(mode=0o700)
                atomic_write(self._dir(parent) / "committed", b"", 0o600)
                atomic_write(layer / "lower", lower.encode())
        except BaseException as exc:
            if link:
                (self._home / LINK_DIR / link).unlink(missing_ok=True)
            remove_tree(layer)
            if isinstance(exc, OSError):
                raise system_error(f"{NAME}: create layer {id}", exc) from None
            raise

    def remove(self, id: str) -> None:
        layer = self._dir(id)
        if self._gets.count(id) or self._mounter.is_mountpoint(layer / "merged"):
            raise errdefs.Conflict(f"{NAME}: layer {id} is in use (mounted at {layer}/merged)")
        try:
            link = (layer / "link").read_text().strip()
        except FileNotFoundError:
            link = ""
        except OSError as exc:
            raise system_error(f"{NAME}: remove layer {id}", exc) from None
        try:
            if link:
                (self._home / LINK_DIR / link).unlink(missing_ok=True)
            self._trash.discard(layer)
        except OSError as exc:
            raise system_error(f"{NAME}: remove layer {id}", exc) from None

    def exists(self, id: str) -> bool:
        return self._dir(id).is_dir()

    def ids(self) -> list[str]:
        return sorted(
            entry.name
            for entry in os.scandir(self._home)
            if entry.is_dir(follow_symlinks=False)
            and entry.name != LINK_DIR
            and not entry.name.startswith(".")
        )

    def diff_path(self, id: str) -> Path:
        return self._dir(id) / "diff"

    def get(self, id: str, mount_label: str = "") -> MountSpec:
        layer = self._dir(id)
        try:
            if not layer.is_dir():
                raise errdefs.NotFound(f"{NAME}: no such layer: {id}")
            try:
                lowers = tuple((layer / "lower").read_text().split(":"))
            except FileNotFoundError:
                self._gets.increment(id)
                return MountSpec.plain_dir(layer / "diff")
            (layer / "merged").mkdir(mode=0o700, exist_ok=True)
            readonly = (layer / "committed").exists()
        except OSError as exc:
            raise system_error(f"{NAME}: get layer {id}", exc) from None
        options = ["index=off"] if self._index_off else []
        if mount_label:
            options.append(f"context={mount_label}")
        if readonly:
            spec = MountSpec(
                fstype="overlay",
                source="overlay",
                target=str(layer / "merged"),
                options=tuple(options),
                lowerdirs=(f"{id}/diff", *lowers),
                cwd=str(self._home),
            )
        else:
            spec = MountSpec(
                fstype="overlay",
                source="overlay",
                target=str(layer / "merged"),
                options=tuple(options),
                lowerdirs=lowers,
                upperdir=f"{id}/diff",
                workdir=f"{id}/work",
                cwd=str(self._home),
            )
        self._gets.increment(id)
        return spec

    def put(self, id: str) -> None:
        if self._gets.decrement(id):
            return
        merged = self._dir(id) / "merged"
        # dockerd removes the mount point: that also drops copies of it in other namespaces.
        with contextlib.suppress(OSError):
            if not self._mounter.is_mountpoint(merged):
                merged.rmdir()

    def metadata(self, id: str) -> dict[str, str]:
        layer = self._dir(id)
        if not layer.is_dir():
            raise errdefs.NotFound(f"{NAME}: no such layer: {id}")
        data = {
            "MergedDir": str(layer / "merged"),
            "UpperDir": str(layer / "diff"),
            "WorkDir": str(layer / "work"),
        }
        try:
            lowers = (layer / "lower").read_text().split(":")
        except FileNotFoundError:
            return data
        except OSError as exc:
            raise system_error(f"{NAME}: metadata of layer {id}", exc) from None
        resolved = []
        for lower in lowers:
            target = os.readlink(self._home / lower)
            resolved.append(os.path.normpath(self._home / LINK_DIR / target))
        data["LowerDir"] = ":".join(resolved)
        return data

    def status(self) -> list[tuple[str, str]]:
        return [
            ("Backing Filesystem", self._backing_fs),
            ("Supports d_type", "true"),
            ("Using metacopy", _go_bool(self._metacopy)),
            ("Native Overlay Diff", _go_bool(self._native_diff)),
            ("userxattr", "false"),
        ]

    # -- internals -------------------------------------------------------------------------

    def _dir(self, id: str) -> Path:
        if not id or "/" in id or id in (".", "..", LINK_DIR) or id.startswith("."):
            raise errdefs.InvalidParameter(f"{NAME}: invalid layer id {id!r}")
        return self._home / id

    def _lower_of(self, parent: str) -> str:
        """The `lower` file of a child of `parent`: its link first, then its own lowers."""
        parent_dir = self._dir(parent)
        try:
            lowers = [f"{LINK_DIR}/{(parent_dir / 'link').read_text().strip()}"]
        except FileNotFoundError:
            raise errdefs.NotFound(f"{NAME}: no such parent layer: {parent}") from None
        with contextlib.suppress(FileNotFoundError):
            lowers += (parent_dir / "lower").read_text().split(":")
        if len(lowers) > self._stack_limit:
            raise errdefs.InvalidParameter(
                f"max depth exceeded: {len(lowers)} lower layers, {NAME} stacks at most "
                f"{self._stack_limit}"
            )
        return ":".join(lowers)

    def _make_link(self, id: str) -> str:
        for _ in range(10):
            link = random_link_id()
            try:
                os.symlink(f"../{id}/diff", self._home / LINK_DIR / link)
            except FileExistsError:
                continue
            return link
        raise errdefs.System(f"{NAME}: could not pick a unique link name for layer {id}")

    def _remove_dangling_links(self) -> None:
        """Links whose layer is gone (a crash between removing a layer and its link)."""
        for entry in os.scandir(self._home / LINK_DIR):
            if entry.is_symlink() and not os.path.exists(entry.path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)


def _go_bool(value: bool) -> str:
    return "true" if value else "false"


def _d_type_message(backing_fs: str) -> str:
    message = (
        f"{NAME}: the backing {backing_fs} filesystem is formatted without d_type support, "
        "which leads to incorrect behavior."
    )
    if backing_fs == "xfs":
        message += " Reformat the filesystem with ftype=1 to enable d_type support."
    if backing_fs == "extfs":
        message += (
            " Reformat the filesystem (or use tune2fs) with -O filetype flag to enable d_type "
            "support."
        )
    return message + " Backing filesystems without d_type support are not supported."


# -- probes (each one small overlay mount in a scratch dir under home) -----------------------


def _remove_probes(home: Path, mounter: Mounter) -> None:
    """Scratch dirs of probes a crash interrupted (unmounted first, if still mounted)."""
    for entry in os.scandir(home):
        if entry.name.startswith(_PROBE_PREFIX):
            merged = Path(entry.path) / "merged"
            if mounter.is_mountpoint(merged):
                mounter.unmount(merged, lazy=True)
            remove_tree(Path(entry.path))


@contextlib.contextmanager
def _scratch(home: Path, kind: str, dirs: Sequence[str]) -> Iterator[Path]:
    root = home / f"{_PROBE_PREFIX}{kind}-{secrets.token_hex(4)}"
    root.mkdir(mode=0o700)
    try:
        for name in dirs:
            (root / name).mkdir(parents=True)
        yield root
    finally:
        remove_tree(root)


@contextlib.contextmanager
def _mounted(mounter: Mounter, spec: MountSpec) -> Iterator[None]:
    mounter.mount(spec)
    try:
        yield
    finally:
        mounter.unmount(spec.target, lazy=True)


def _overlay(root: Path, lowers: Sequence[str], upper: str = "") -> MountSpec:
    return MountSpec(
        fstype="overlay",
        source="overlay",
        target=str(root / "merged"),
        lowerdirs=tuple(str(root / lower) for lower in lowers),
        upperdir=str(root / upper) if upper else "",
        workdir=str(root / "work") if upper else "",
    )


def _probe_overlay(home: Path, mounter: Mounter) -> None:
    """dockerd's SupportsOverlay: mount two lower dirs + upper; failure = not supported."""
    dirs = ("lower1", "lower2", "upper", "work", "merged")
    with _scratch(home, "overlay", dirs) as root:
        try:
            with _mounted(mounter, _overlay(root, ("lower2", "lower1"), "upper")):
                pass
        except errdefs.System as exc:
            raise NotSupportedError(f"{NAME}: overlay is not supported: {exc}") from None


def _probe_metacopy(home: Path, mounter: Mounter) -> bool:
    """Does a chmod copy up only metadata (the metacopy xattr appears in the upper dir)?"""
    with _scratch(home, "metacopy", ("l1", "l2", "work", "merged")) as root:
        (root / "l1" / "f").touch(mode=0o700)
        with _mounted(mounter, _overlay(root, ("l1",), "l2")):
            os.chmod(root / "merged" / "f", 0o600)
        try:
            return os.getxattr(root / "l2" / "f", _METACOPY, follow_symlinks=False) is not None
        except OSError as exc:
            if exc.errno in (errno.ENODATA, errno.ENOTSUP):
                return False
            raise system_error(f"{NAME}: metacopy check", exc) from None


def _probe_native_diff(home: Path, mounter: Mounter) -> bool:
    """dockerd's doesSupportNativeDiff: no opaque flag copied up, no redirect_dir renames."""
    dirs = ("l1/d", "l1/d1", "l2/d", "l3", "work", "merged")
    with _scratch(home, "opaque", dirs) as root:
        os.setxattr(root / "l2" / "d", _OPAQUE, b"y", follow_symlinks=False)
        with _mounted(mounter, _overlay(root, ("l2", "l1"), "l3")):
            (root / "merged" / "d" / "f").touch()
            if _xattr(root / "l3" / "d", _OPAQUE) == b"y":
                return False
            try:
                os.rename(root / "merged" / "d1", root / "merged" / "d2")
            except OSError as exc:
                if exc.errno == errno.EXDEV:  # no CONFIG_OVERLAY_FS_REDIRECT_DIR: fine
                    return True
                raise system_error(f"{NAME}: native diff check", exc) from None
            return _xattr(root / "l3" / "d2", _REDIRECT) != b"d1"


def _xattr(path: Path, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP):
            return None
        raise system_error(f"{NAME}: read {name} of {path}", exc) from None
