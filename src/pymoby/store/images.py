"""The image store and the reference store (tags and digests), on the metadata DB.

Rule: an image IS its config bytes, kept verbatim (its ID is `sha256:` + the sha256 of exactly
those bytes); everything else in its row is derived or local bookkeeping. Every operation is ONE
transaction: the `*_in(conn, ...)` functions do their whole change inside a caller's write
transaction (so the image service can combine them with layer reference counts atomically), and
`ImageStore` runs each of them alone through `MetaStore.write` / `MetaStore.read`.

Tables (migration 3, drawn in `pymoby.store.meta`): `images` (one row per image: config, top layer
chain ID, size, created, local parent, last tag time) and `image_refs` (a normalised reference
`docker.io/library/busybox:latest` or `name@sha256:...` -> image ID). Layers are referred to by
their top chain ID only, without a foreign key, so this module does not depend on the layer store.

Semantics are dockerd's (daemon/internal/image/store.go, daemon/internal/refstore/store.go,
daemon/images/image.go GetImage):
- `create` is idempotent by ID; the config must parse, have a rootfs, and not list more non-empty
  history entries than layers; an image with layers must be for Linux.
- `tag` moves a tag that points elsewhere when forced; a digest reference is never moved;
  tagging updates the image's LastTagTime. `untag` removes one reference.
- `resolve` takes what `docker inspect/rmi/run` take: a full reference (default tag `latest`),
  an ID, `sha256:` + ID, or a unique ID prefix of any length (with or without `sha256:`). An
  ambiguous prefix is "not found", as in dockerd. Errors: `No such image: busybox:latest`.
- `delete` refuses an image that still has references; children lose their parent. The
  conflict rules of `docker rmi` belong to the image service; their messages are defined here.
"""

from __future__ import annotations

import builtins
import hashlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pymoby import errdefs
from pymoby.api import reference as refs
from pymoby.api.reference import Reference
from pymoby.api.types.images import ImageConfig, decode_image_config, parse_rfc3339
from pymoby.store import layers
from pymoby.store.meta import MetaStore

T = TypeVar("T")

SHORT_ID_LENGTH = 12

# -- errors, with dockerd's messages ---------------------------------------------------------------


class ImageNotFound(errdefs.NotFound):
    """`No such image: x`, where x is what the user named (a tag is shown with `:latest`)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"No such image: {what}")

    @classmethod
    def for_reference(cls, ref: Reference) -> ImageNotFound:
        """dockerd's ErrImageDoesNotExist: a bare name gets its default tag."""
        return cls(refs.familiar_string(refs.tag_name_only(ref)))


class ReferenceNotFound(errdefs.NotFound):
    def __init__(self) -> None:
        super().__init__("reference does not exist")


class InvalidTag(errdefs.InvalidParameter):
    """`refusing to create a tag with a digest reference`, or an ambiguous `sha256` name."""


class ConflictingTag(errdefs.Conflict):
    """A digest reference cannot move; a tag moves only when forced."""


class ImageDeleteConflict(errdefs.Conflict):
    """dockerd's imageDeleteConflict: `conflict: unable to delete <short> (...) - <reason>`.

    Hard conflicts (child images, running containers) cannot be forced; soft ones (references,
    stopped containers) can. `used` marks a conflict caused by a container.
    """

    def __init__(self, image_id: str, message: str, *, hard: bool, used: bool = False) -> None:
        force = "cannot be forced" if hard else "must be forced"
        super().__init__(
            f"conflict: unable to delete {truncate_id(image_id)} ({force}) - {message}"
        )
        self.image_id = image_id
        self.hard = hard
        self.used = used

    @classmethod
    def dependent_child(cls, image_id: str) -> ImageDeleteConflict:
        return cls(image_id, "image has dependent child images", hard=True)

    @classmethod
    def running_container(cls, image_id: str, container_id: str) -> ImageDeleteConflict:
        message = f"image is being used by running container {truncate_id(container_id)}"
        return cls(image_id, message, hard=True, used=True)

    @classmethod
    def referenced(cls, image_id: str) -> ImageDeleteConflict:
        return cls(image_id, "image is referenced in multiple repositories", hard=False)

    @classmethod
    def stopped_container(cls, image_id: str, container_id: str) -> ImageDeleteConflict:
        message = f"image is being used by stopped container {truncate_id(container_id)}"
        return cls(image_id, message, hard=False, used=True)


def repository_reference_conflict(
    ref_text: str, container_id: str, image_id: str
) -> errdefs.Conflict:
    """`docker rmi <ref>` (not forced) of the only reference of an image a container uses."""
    return errdefs.Conflict(
        f'conflict: unable to remove repository reference "{ref_text}" (must force) - container '
        f"{truncate_id(container_id)} is using its referenced image {truncate_id(image_id)}"
    )


def truncate_id(image_id: str) -> str:
    """dockerd's stringid.TruncateID: drop `algo:`, keep 12 characters."""
    if ":" in image_id:
        image_id = image_id.partition(":")[2]
    return image_id[:SHORT_ID_LENGTH]


def is_image_id_prefix(image_id: str, possible_prefix: str) -> bool:
    """dockerd's isImageIDPrefix: did the user name the image by (a prefix of) its ID?"""
    return image_id.startswith(possible_prefix) or (
        ":" in image_id and image_id.partition(":")[2].startswith(possible_prefix)
    )


def is_single_reference(references: Sequence[Reference]) -> bool:
    """dockerd's isSingleReference: at most one tag, and all references in one repository."""
    if len(references) <= 1:
        return len(references) == 1
    single: Reference | None = None
    digest_names: set[str] = set()
    for ref in references:
        if ref.is_digested:
            digest_names.add(ref.name)
        elif single is None:
            single = ref
        else:
            return False
    single = single or references[0]
    return len(digest_names) == 1 and single.name in digest_names


# -- records ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One image as stored, with its references and children, read in one snapshot.

    `created` and `last_tag_time` are Unix nanoseconds (None: absent / never tagged).
    `chain_id` is the top layer's chain ID (None for an image without layers).
    """

    id: str
    config: bytes
    chain_id: str | None
    size: int
    created: int | None
    parent: str | None
    last_tag_time: int | None
    references: tuple[Reference, ...] = ()
    children: tuple[str, ...] = ()

    @property
    def repo_tags(self) -> list[str]:
        return [refs.familiar_string(r) for r in self.references if r.is_tagged]

    @property
    def repo_digests(self) -> list[str]:
        return [refs.familiar_string(r) for r in self.references if r.is_digested]

    def decode_config(self) -> ImageConfig:
        return decode_image_config(self.config)


def image_id_of(config: bytes) -> str:
    return "sha256:" + hashlib.sha256(config).hexdigest()


def chain_id_of(diff_ids: Iterable[str]) -> str | None:
    """image-spec identity.ChainID of the layers (None when there are none)."""
    chain: str | None = None
    for diff_id in diff_ids:
        chain = layers.chain_id(chain, diff_id)
    return chain


# -- the operations, inside a caller's transaction ------------------------------------------------

_COLUMNS = "id, config, chain_id, size, created, parent, last_tag_time"


def _record(
    row: Sequence[Any], references: Sequence[Reference], children: Sequence[str]
) -> ImageRecord:
    image_id, config, chain_id, size, created, parent, last_tag_time = row
    return ImageRecord(
        id=image_id,
        config=bytes(config),
        chain_id=chain_id,
        size=size,
        created=created,
        parent=parent,
        last_tag_time=last_tag_time,
        references=tuple(references),
        children=tuple(children),
    )


def _ref_from_row(name: str, tag: str | None, digest: str | None) -> Reference:
    named = refs.with_name(name)
    return Reference(named.domain, named.path, tag or "", digest or "")


def references_in(conn: sqlite3.Connection, image_id: str) -> list[Reference]:
    """The image's references, sorted as dockerd sorts them (by the full normalised string)."""
    rows = conn.execute(
        "SELECT name, tag, digest FROM image_refs WHERE image_id = ? ORDER BY ref", (image_id,)
    )
    return [_ref_from_row(*row) for row in rows]


def children_in(conn: sqlite3.Connection, image_id: str) -> list[str]:
    rows = conn.execute("SELECT id FROM images WHERE parent = ? ORDER BY id", (image_id,))
    return [str(row[0]) for row in rows]


def get_in(conn: sqlite3.Connection, image_id: str) -> ImageRecord | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM images WHERE id = ?", (image_id,)).fetchone()
    if row is None:
        return None
    return _record(row, references_in(conn, image_id), children_in(conn, image_id))


def _exists(conn: sqlite3.Connection, image_id: str) -> bool:
    return conn.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone() is not None


def _require(conn: sqlite3.Connection, image_id: str) -> ImageRecord:
    record = get_in(conn, image_id)
    if record is None:
        raise ImageNotFound(image_id)
    return record


def list_in(conn: sqlite3.Connection) -> list[ImageRecord]:
    """Every image with its references and children, ordered by ID."""
    by_image: dict[str, list[Reference]] = {}
    for image_id, name, tag, digest in conn.execute(
        "SELECT image_id, name, tag, digest FROM image_refs ORDER BY ref"
    ):
        by_image.setdefault(str(image_id), []).append(_ref_from_row(name, tag, digest))
    children: dict[str, list[str]] = {}
    for parent, child in conn.execute(
        "SELECT parent, id FROM images WHERE parent IS NOT NULL ORDER BY id"
    ):
        children.setdefault(str(parent), []).append(str(child))
    return [
        _record(row, by_image.get(str(row[0]), ()), children.get(str(row[0]), ()))
        for row in conn.execute(f"SELECT {_COLUMNS} FROM images ORDER BY id")
    ]


def set_parent_in(conn: sqlite3.Connection, image_id: str, parent: str) -> None:
    """Record `parent` as the local parent image (dockerd's SetParent)."""
    if not _exists(conn, parent):
        raise errdefs.NotFound(f"unknown parent image ID {parent}")
    if not _exists(conn, image_id):
        raise ImageNotFound(image_id)
    conn.execute("UPDATE images SET parent = ? WHERE id = ?", (parent, image_id))


def create_in(
    conn: sqlite3.Connection,
    config: bytes,
    top_chain_id: str | None,
    size: int,
    parent: str | None = None,
) -> ImageRecord:
    """Store an image from its config bytes; return the existing one if the ID is known."""
    cfg = decode_image_config(config)
    diff_ids = cfg.diff_ids
    non_empty = sum(1 for h in cfg.history or () if not h.empty_layer)
    if non_empty > len(diff_ids):
        raise errdefs.InvalidParameter("too many non-empty layers in History section")
    expected = chain_id_of(diff_ids)
    if (top_chain_id or None) != expected:
        raise errdefs.System(
            f"image config layers end in chain ID {expected or 'none'}, "
            f"not in {top_chain_id or 'none'}"
        )
    if expected is not None and cfg.os.lower() not in ("", "linux"):
        raise errdefs.InvalidParameter("operating system is not supported")
    image_id = image_id_of(config)
    if not _exists(conn, image_id):
        if parent is not None and not _exists(conn, parent):
            raise errdefs.NotFound(f"unknown parent image ID {parent}")
        created = None if cfg.created is None else parse_rfc3339(cfg.created)[0]
        conn.execute(
            f"INSERT INTO images ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL)",
            (image_id, config, expected, size, created, parent),
        )
    elif parent is not None:
        set_parent_in(conn, image_id, parent)
    return _require(conn, image_id)


def _normalised(ref: Reference) -> Reference:
    """The reference as `parse_normalized_named` makes it (docker.io/library/... form)."""
    if not ref.is_named:
        raise errdefs.InvalidParameter(f"reference {ref} has no name")
    domain, path = refs.split_docker_domain(ref.name)
    return Reference(domain, path, ref.tag, ref.digest)


def _lookup_key(ref: Reference) -> Reference:
    """refstore's key for `ref`: a digest wins over a tag; a bare name means `:latest`."""
    ref = _normalised(ref)
    if ref.is_digested:
        return Reference(ref.domain, ref.path, digest=ref.digest)
    return refs.tag_name_only(ref)


def _add_reference(conn: sqlite3.Connection, image_id: str, ref: Reference, *, force: bool) -> None:
    ref = _lookup_key(ref)
    if refs.familiar_name(ref) == "sha256":
        raise InvalidTag("refusing to create an ambiguous tag using digest algorithm as name")
    if not _exists(conn, image_id):
        raise ImageNotFound(image_id)
    key = str(ref)
    row = conn.execute("SELECT image_id FROM image_refs WHERE ref = ?", (key,)).fetchone()
    if row is not None:
        old_id = str(row[0])
        if old_id == image_id:
            return
        if ref.is_digested:
            raise ConflictingTag(f"cannot overwrite digest {ref.digest}")
        if not force:
            raise ConflictingTag(
                f"tag {refs.familiar_string(ref)} is already set to image {old_id}, "
                "use the force option to replace it"
            )
    conn.execute(
        "INSERT INTO image_refs (ref, name, tag, digest, image_id) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (ref) DO UPDATE SET image_id = excluded.image_id",
        (key, ref.name, ref.tag or None, ref.digest or None, image_id),
    )


def tag_in(
    conn: sqlite3.Connection,
    image_id: str,
    ref: Reference,
    *,
    force: bool,
    last_tag_time: int | None = None,
) -> None:
    """refstore.AddTag (a bare name gets `:latest`); with `last_tag_time` (Unix ns) also record
    it as the image's LastTagTime, as `docker tag` does (pulls and loads do not)."""
    if ref.is_digested:
        raise InvalidTag("refusing to create a tag with a digest reference")
    _add_reference(conn, image_id, ref, force=force)
    if last_tag_time is not None:
        conn.execute("UPDATE images SET last_tag_time = ? WHERE id = ?", (last_tag_time, image_id))


def add_digest_in(conn: sqlite3.Connection, image_id: str, ref: Reference, *, force: bool) -> None:
    """refstore.AddDigest: `name@digest` (a tag in `ref` is dropped). Never moves."""
    if not ref.is_canonical:
        raise errdefs.InvalidParameter(f"reference {ref} has no digest")
    _add_reference(conn, image_id, ref, force=force)


def untag_in(conn: sqlite3.Connection, ref: Reference) -> tuple[Reference, str]:
    """refstore.Delete: remove one reference; return it (normalised) and its image ID."""
    key = _lookup_key(ref)
    row = conn.execute("SELECT image_id FROM image_refs WHERE ref = ?", (str(key),)).fetchone()
    if row is None:
        raise ReferenceNotFound()
    conn.execute("DELETE FROM image_refs WHERE ref = ?", (str(key),))
    return key, str(row[0])


def get_reference_in(conn: sqlite3.Connection, ref: Reference) -> str | None:
    """refstore.Get: the image ID a reference points to, or None."""
    row = conn.execute("SELECT image_id FROM image_refs WHERE ref = ?", (str(_lookup_key(ref)),))
    found = row.fetchone()
    return None if found is None else str(found[0])


def references_by_name_in(conn: sqlite3.Connection, ref: Reference) -> list[tuple[Reference, str]]:
    """refstore.ReferencesByName: every reference of the repository `ref` names, sorted."""
    rows = conn.execute(
        "SELECT name, tag, digest, image_id FROM image_refs WHERE name = ? ORDER BY ref",
        (_normalised(ref).name,),
    )
    return [(_ref_from_row(n, t, d), str(i)) for n, t, d, i in rows]


def _search_id(conn: sqlite3.Connection, term: str) -> str | None:
    """dockerd's digestset lookup: the one image whose ID starts with `term` (hex, or
    `sha256:` + hex); None when there is none or more than one."""
    try:
        refs.parse_digest(term)
        algorithm, _, hex_part = term.partition(":")
    except refs.ReferenceError as exc:
        if exc.message == refs.ERR_DIGEST_INVALID_FORMAT:
            algorithm, hex_part = "", term
        else:
            algorithm, _, hex_part = term.partition(":")
    if algorithm not in ("", "sha256") or not hex_part:
        return None
    low = "sha256:" + hex_part
    rows = conn.execute(
        "SELECT id FROM images WHERE id >= ? AND id < ? ORDER BY id LIMIT 2",
        (low, low + "\U0010ffff"),
    ).fetchall()
    return str(rows[0][0]) if len(rows) == 1 else None


def resolve_in(conn: sqlite3.Connection, ref_or_id: str) -> ImageRecord:
    """dockerd's GetImage (without platform matching): reference, ID, or unique ID prefix."""
    ref = refs.parse_any_reference(ref_or_id)
    if not ref.is_named:
        record = get_in(conn, ref.digest)
        if record is None:
            raise ImageNotFound.for_reference(ref)
        return record
    image_id = get_reference_in(conn, ref)
    if image_id is not None:
        return _require(conn, image_id)
    image_id = _search_id(conn, ref_or_id)
    if image_id is not None:
        return _require(conn, image_id)
    raise ImageNotFound.for_reference(ref)


def delete_in(conn: sqlite3.Connection, image_id: str) -> ImageRecord:
    """Remove an image without references; return it (its chain_id is the layer to release)."""
    record = _require(conn, image_id)
    if record.references:
        raise errdefs.Conflict(
            f"image {image_id} still has {len(record.references)} reference(s); untag it first"
        )
    conn.execute("DELETE FROM images WHERE id = ?", (image_id,))  # children: parent -> NULL
    return record


# -- the store -------------------------------------------------------------------------------------


class ImageStore:
    """Images and references on a MetaStore: each method is one transaction."""

    def __init__(self, meta: MetaStore) -> None:
        self._meta = meta

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._meta.write(fn)

    async def create(
        self, config: bytes, top_chain_id: str | None, size: int, parent: str | None = None
    ) -> ImageRecord:
        return await self._write(lambda c: create_in(c, config, top_chain_id, size, parent))

    def create_sync(
        self, config: bytes, top_chain_id: str | None, size: int, parent: str | None = None
    ) -> ImageRecord:
        return self._meta.write_sync(lambda c: create_in(c, config, top_chain_id, size, parent))

    async def get(self, image_id: str) -> ImageRecord:
        return await self._meta.read(lambda c: _require(c, image_id))

    def get_sync(self, image_id: str) -> ImageRecord:
        return self._meta.read_sync(lambda c: _require(c, image_id))

    async def resolve(self, ref_or_id: str) -> ImageRecord:
        return await self._meta.read(lambda c: resolve_in(c, ref_or_id))

    def resolve_sync(self, ref_or_id: str) -> ImageRecord:
        return self._meta.read_sync(lambda c: resolve_in(c, ref_or_id))

    async def tag(self, image_id: str, ref: Reference, *, force: bool, touch: bool = True) -> None:
        """Tag the image; `touch` records the tag time as its LastTagTime (`docker tag`)."""
        now = time.time_ns() if touch else None
        await self._write(lambda c: tag_in(c, image_id, ref, force=force, last_tag_time=now))

    async def add_digest(self, image_id: str, ref: Reference, *, force: bool) -> None:
        await self._write(lambda c: add_digest_in(c, image_id, ref, force=force))

    async def untag(self, ref: Reference) -> tuple[Reference, str]:
        return await self._write(lambda c: untag_in(c, ref))

    async def get_reference(self, ref: Reference) -> str | None:
        return await self._meta.read(lambda c: get_reference_in(c, ref))

    async def references_of(self, image_id: str) -> list[Reference]:
        return await self._meta.read(lambda c: references_in(c, image_id))

    async def references_by_name(self, ref: Reference) -> list[tuple[Reference, str]]:
        return await self._meta.read(lambda c: references_by_name_in(c, ref))

    async def children(self, image_id: str) -> list[str]:
        return await self._meta.read(lambda c: children_in(c, image_id))

    async def set_parent(self, image_id: str, parent: str) -> None:
        await self._write(lambda c: set_parent_in(c, image_id, parent))

    async def delete(self, image_id: str) -> ImageRecord:
        return await self._write(lambda c: delete_in(c, image_id))

    async def list(self) -> builtins.list[ImageRecord]:
        return await self._meta.read(list_in)

    def list_sync(self) -> builtins.list[ImageRecord]:
        return self._meta.read_sync(list_in)
