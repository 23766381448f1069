"""`docker rmi` and `docker image prune`: dockerd's untag-or-delete rules, one transaction each.

Rule: daemon/images/image_delete.go and image_prune.go, decided and applied inside ONE metadata
write transaction per removal (`delete_in`): references removed, images deleted with their layer
references, parents pruned quietly. The layers nothing keeps any more are deleted right after
the commit (`LayerStore.delete_unreferenced`); `attribute_layers` puts their `Deleted: <chain>`
records after the image that released them, as dockerd lists them.

- A reference (`busybox`, `x:tag`, `x@sha256:..`) untags; when it was the image's last
  reference the image goes too, unless that would hit a conflict (then it stays, quietly,
  except for a dangling image). A container using the image refuses the untag of its only
  reference without force.
- An ID (or prefix) deletes: with at most one tag it is untagged first; hard conflicts (child
  images, running containers) are never forced; soft ones (other references, stopped
  containers) need force. `noprune` keeps untagged parents.
- Containers are known through `Users` (`in_use_by(image_id)`), provided by the container
  manager; it is called inside the transaction, so it must be quick and thread-safe.
- Prune: dangling images (no tag, no children) or, with `dangling=false`, every image without
  children that is not an intermediate; filters `until`, `label`, `label!`; conflicts are
  skipped; SpaceReclaimed sums the deleted layers' own sizes; one `prune` event at the end.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pymoby import errdefs
from pymoby.api import reference as refs
from pymoby.api.filters import Filters
from pymoby.api.reference import Reference
from pymoby.api.timestamps import parse_time
from pymoby.api.types.images import DeleteResponse, ImageConfig
from pymoby.daemon.images.listing import chains_of, created_ns, labels_of
from pymoby.store import images as imgstore
from pymoby.store import layers as layerstore
from pymoby.store.images import ImageDeleteConflict, ImageRecord
from pymoby.store.layers import Layer

PRUNE_FILTERS = ("dangling", "label", "label!", "until")


@dataclass(frozen=True, slots=True)
class ImageUser:
    """A container created from an image."""

    container_id: str
    running: bool


Users = Callable[[str], Sequence[ImageUser]]


def no_users(image_id: str) -> Sequence[ImageUser]:
    return ()


@dataclass(frozen=True, slots=True)
class Event:
    action: str  # untag, delete
    image_id: str
    attributes: dict[str, str]


@dataclass(slots=True)
class Outcome:
    """What one removal did: response records, events, and the chains of deleted images."""

    records: list[DeleteResponse] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    deleted_chains: list[list[str]] = field(default_factory=list)  # per deleted image, top first


_CHILD, _RUNNING, _REFERENCE, _STOPPED = 1, 2, 4, 8
_HARD = _CHILD | _RUNNING
_SOFT = _REFERENCE | _STOPPED


class _Remover:
    def __init__(self, conn: sqlite3.Connection, users: Users) -> None:
        self.conn = conn
        self.users = users
        self.out = Outcome()

    def _event(self, action: str, image_id: str, record: ImageRecord | None) -> None:
        attributes = labels_of(record.decode_config()) if record is not None else {}
        attributes["name"] = image_id
        self.out.events.append(Event(action, image_id, attributes))

    def _untag(self, image_id: str, ref: Reference) -> Reference:
        removed, _ = imgstore.untag_in(self.conn, refs.tag_name_only(ref))
        self.out.records.append(DeleteResponse(untagged=refs.familiar_string(removed)))
        self._event("untag", image_id, imgstore.get_in(self.conn, image_id))
        return removed

    def delete(self, name: str, *, force: bool, prune: bool) -> None:
        record = imgstore.resolve_in(self.conn, name)
        image_id = record.id
        repo_refs = list(record.references)
        quiet = False
        if not imgstore.is_image_id_prefix(image_id, name):
            if not force and imgstore.is_single_reference(repo_refs):
                user = next(iter(self.users(image_id)), None)
                if user is not None:
                    raise imgstore.repository_reference_conflict(name, user.container_id, image_id)
            removed = self._untag(image_id, refs.parse_normalized_named(name))
            repo_refs = imgstore.references_in(self.conn, image_id)
            if not removed.is_digested and not any(
                not r.is_digested and r.name == removed.name for r in repo_refs
            ):
                remaining = []
                for other in repo_refs:
                    if other.is_digested and other.name == removed.name:
                        self._untag(image_id, other)
                    else:
                        remaining.append(other)
                repo_refs = remaining
            if repo_refs:
                return
            quiet = True
        elif imgstore.is_single_reference(repo_refs):
            mask = _HARD if force else _HARD | (_SOFT & ~_REFERENCE)
            conflict = self._conflict(image_id, mask)
            if conflict is not None:
                raise conflict
            for other in repo_refs:
                self._untag(image_id, other)
        self._delete_image(image_id, force=force, prune=prune, quiet=quiet)

    def _conflict(self, image_id: str, mask: int) -> ImageDeleteConflict | None:
        if mask & _CHILD and imgstore.children_in(self.conn, image_id):
            return ImageDeleteConflict.dependent_child(image_id)
        users = list(self.users(image_id)) if mask & (_RUNNING | _STOPPED) else []
        if mask & _RUNNING:
            running = next((u for u in users if u.running), None)
            if running is not None:
                return ImageDeleteConflict.running_container(image_id, running.container_id)
        if mask & _REFERENCE and imgstore.references_in(self.conn, image_id):
            return ImageDeleteConflict.referenced(image_id)
        if mask & _STOPPED:
            stopped = next((u for u in users if not u.running), None)
            if stopped is not None:
                return ImageDeleteConflict.stopped_container(image_id, stopped.container_id)
        return None

    def _dangling(self, image_id: str) -> bool:
        return not imgstore.references_in(self.conn, image_id) and not imgstore.children_in(
            self.conn, image_id
        )

    def _delete_image(self, image_id: str, *, force: bool, prune: bool, quiet: bool) -> None:
        conflict = self._conflict(image_id, _HARD if force else _HARD | _SOFT)
        if conflict is not None:
            if quiet and (not self._dangling(image_id) or conflict.used):
                return
            raise conflict
        record = imgstore.get_in(self.conn, image_id)
        if record is None:
            raise imgstore.ImageNotFound(image_id)
        for ref in imgstore.references_in(self.conn, image_id):
            self._untag(image_id, ref)
        imgstore.delete_in(self.conn, image_id)
        layerstore.remove_references(self.conn, image_id)
        self._event("delete", image_id, None)
        self.out.records.append(DeleteResponse(deleted=image_id))
        self.out.deleted_chains.append(list(reversed(chains_of(record.decode_config()))))
        if prune and record.parent:
            self._delete_image(record.parent, force=False, prune=True, quiet=True)


def delete_in(
    conn: sqlite3.Connection, name: str, *, force: bool, prune: bool, users: Users
) -> Outcome:
    """One `docker rmi <name>` inside the caller's write transaction."""
    remover = _Remover(conn, users)
    remover.delete(name, force=force, prune=prune)
    return remover.out


def attribute_layers(outcome: Outcome, deleted: Sequence[Layer]) -> list[DeleteResponse]:
    """The records with `Deleted: <chain>` inserted after the image that released each layer."""
    gone = {layer.chain_id for layer in deleted}
    later: list[set[str]] = []
    for i in range(len(outcome.deleted_chains)):
        rest: set[str] = set()
        for chains in outcome.deleted_chains[i + 1 :]:
            rest.update(chains)
        later.append(rest)
    out: list[DeleteResponse] = []
    image_index = 0
    attributed: set[str] = set()
    for record in outcome.records:
        out.append(record)
        if record.deleted and image_index < len(outcome.deleted_chains):
            for chain in outcome.deleted_chains[image_index]:
                if chain in gone and chain not in attributed and chain not in later[image_index]:
                    attributed.add(chain)
                    out.append(DeleteResponse(deleted=chain))
            image_index += 1
    return out


# -- prune ----------------------------------------------------------------------------------------


def prune_plan(records: Sequence[ImageRecord], filters: Filters, now_ns: int) -> list[str]:
    """The names to `docker rmi` (references, or hex IDs) for POST /images/prune."""
    filters.validate(PRUNE_FILTERS)
    dangling_only = filters.get_bool_or_default("dangling", True)
    until = _until(filters, now_ns)
    names: list[str] = []
    for record in records:
        if dangling_only and record.children:
            continue
        if not record.references and record.children:
            continue
        cfg = record.decode_config()
        created = created_ns(cfg)
        if until is not None and (created is None or created > until):
            continue
        if cfg.config is not None and not _match_labels(filters, cfg):
            continue
        if record.references:
            if dangling_only and any(r.is_tagged for r in record.references):
                continue
            names.extend(str(r) for r in record.references)
        else:
            names.append(record.id.partition(":")[2])
    return names


def _until(filters: Filters, now_ns: int) -> int | None:
    if not filters.contains("until"):
        return None
    values = filters.get("until")
    if len(values) > 1:
        raise errdefs.InvalidParameter("more than one until filter specified")
    try:
        return parse_time(values[0] if values else "", now_ns)
    except errdefs.InvalidParameter as exc:
        raise errdefs.InvalidParameter(f"invalid value for 'until' filter: {exc.message}") from None


def _match_labels(filters: Filters, cfg: ImageConfig) -> bool:
    labels = labels_of(cfg)
    if not filters.match_kv_list("label", labels):
        return False
    return not (filters.contains("label!") and filters.match_kv_list("label!", labels))
