"""Read-only views of images: `docker images` (filters, shared size), inspect, history.

Rule: dockerd's graph-driver semantics (daemon/images/image_list.go, image_inspect.go,
image_history.go) over one snapshot of the image store plus the layer table. Blocking: the
service runs these in a thread.

- List: filters dangling, label, before, since, reference, until (others: `invalid filter`);
  without `all`, untagged images with children (intermediate images) are hidden; newest first.
  Size is the whole chain's; SharedSize (when asked) sums the layers used by more than one image.
- Inspect: Size is the chain's, GraphDriver the top layer's driver data, Comment falls back to
  the last history entry's, Created / LastTagTime are Go's RFC 3339 with nanoseconds.
- History: one row per config history entry, newest first, non-empty rows sized by their
  layer; image IDs and tags are filled in walking up the local parent chain.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence

from pymoby import errdefs
from pymoby.api import reference as refs
from pymoby.api.filters import Filters
from pymoby.api.reference import Reference
from pymoby.api.timestamps import parse_time
from pymoby.api.types.images import (
    HISTORY_MISSING_ID,
    ROOTFS_TYPE_LAYERS,
    GraphDriverData,
    HistoryResponseItem,
    ImageConfig,
    ImageInspect,
    ImageSummary,
    Platform,
    format_rfc3339_nano,
    image_comment,
    parse_rfc3339,
)
from pymoby.daemon.images import platforms as plat
from pymoby.store import layers as layerstore
from pymoby.store.images import ImageRecord
from pymoby.store.layers import Layer

LIST_FILTERS = ("dangling", "label", "before", "since", "reference", "until")

# image ID -> how many containers use it (the container manager provides it)
ContainerCount = Callable[[str], int]


def chains_of(cfg: ImageConfig) -> list[str]:
    chains: list[str] = []
    for diff_id in cfg.diff_ids:
        chains.append(layerstore.chain_id(chains[-1] if chains else None, diff_id))
    return chains


def created_ns(cfg: ImageConfig) -> int | None:
    return None if cfg.created is None else parse_rfc3339(cfg.created)[0]


def labels_of(cfg: ImageConfig) -> dict[str, str]:
    return dict(cfg.config.labels or {}) if cfg.config is not None else {}


def _match_reference(patterns: Sequence[str], ref: Reference) -> bool:
    """dockerd 28+: a pattern may match the familiar or the full form, with or without tag."""
    full = Reference("", ref.name, ref.tag, ref.digest)
    full = refs.tag_name_only(full) if not ref.digest else full
    for pattern in patterns:
        if refs.familiar_match(pattern, ref) or refs.familiar_match(pattern, full):
            return True
    return False


def list_images(
    records: Sequence[ImageRecord],
    layers: Sequence[Layer],
    filters: Filters,
    *,
    all: bool,
    shared_size: bool,
    resolve: Callable[[str], ImageRecord],
    containers: ContainerCount,
    now_ns: int | None = None,
) -> list[ImageSummary]:
    """GET /images/json over a snapshot (`resolve` looks names up in the same snapshot)."""
    filters.validate(LIST_FILTERS)
    dangling_only = filters.get_bool_or_default("dangling", False)
    before: int | None = None
    for value in filters.get("before"):
        created = created_ns(resolve(value).decode_config())
        if created is not None and (before is None or created < before):
            before = created
    now = time.time_ns() if now_ns is None else now_ns
    for value in filters.get("until"):
        try:
            ts = parse_time(value, now)
        except errdefs.InvalidParameter as exc:
            raise errdefs.InvalidParameter(
                f"invalid value for 'until' filter: {exc.message}"
            ) from None
        if before is None or ts < before:
            before = ts
    since: int | None = None
    for value in filters.get("since"):
        created = created_ns(resolve(value).decode_config())
        if created is not None and (since is None or since < created):
            since = created
    patterns = filters.get("reference")
    summaries: list[tuple[ImageSummary, ImageConfig]] = []
    for record in records:
        if dangling_only and record.children:
            continue  # dockerd's Heads(): images without children
        cfg = record.decode_config()
        created = created_ns(cfg)
        if before is not None and (created is None or created >= before):
            continue
        if since is not None and (created is None or created <= since):
            continue
        labels = cfg.config.labels if cfg.config is not None else None
        if filters.contains("label") and (
            cfg.config is None or not filters.match_kv_list("label", labels)
        ):
            continue
        if not plat.os_supported(cfg.os):
            continue
        repo_tags: list[str] = []
        repo_digests: list[str] = []
        for ref in record.references:
            if patterns and not _match_reference(patterns, ref):
                continue
            if ref.is_digested:
                repo_digests.append(refs.familiar_string(ref))
            if ref.is_tagged:
                repo_tags.append(refs.familiar_string(ref))
        if not repo_tags and not repo_digests:
            if all or not record.children:
                if filters.contains("dangling") and not dangling_only:
                    continue
                if filters.contains("reference"):
                    continue
            else:
                continue
        elif dangling_only and repo_tags:
            continue
        summary = ImageSummary(
            containers=containers(record.id),
            created=(created // 1_000_000_000) if created is not None else 0,
            id=record.id,
            labels=labels,
            parent_id=record.parent or "",
            repo_digests=repo_digests or None,
            repo_tags=repo_tags or None,
            size=record.size,
        )
        summaries.append((summary, cfg))
    if shared_size:
        _shared_sizes(summaries, records, layers)
    summaries.sort(key=lambda pair: pair[0].created, reverse=True)
    return [summary for summary, _ in summaries]


def _shared_sizes(
    summaries: list[tuple[ImageSummary, ImageConfig]],
    records: Sequence[ImageRecord],
    layers: Sequence[Layer],
) -> None:
    sizes = {layer.chain_id: layer.size for layer in layers}
    counts: Counter[str] = Counter()
    for record in records:
        counts.update(chains_of(record.decode_config()))
    for summary, cfg in summaries:
        shared = 0
        for chain in chains_of(cfg):
            if counts[chain] > 1:
                if chain not in sizes:
                    raise errdefs.System(f"layer {chain} was not found (corruption?)")
                shared += sizes[chain]
        summary.shared_size = shared


def check_platform(
    record: ImageRecord, cfg: ImageConfig, name: str, wanted: Platform | None
) -> None:
    """dockerd's GetImage platform check (graph driver: the config's platform only)."""
    if wanted is None:
        return
    have = Platform(os=cfg.os, architecture=cfg.architecture, variant=cfg.variant)
    if not plat.matches(wanted, have):
        raise errdefs.NotFound(
            f"image with reference {name} was found but its platform "
            f"({plat.format_platform(have)}) does not match the specified platform "
            f"({plat.format_platform(wanted)})"
        )


def inspect(
    record: ImageRecord, driver_name: str, driver_data: dict[str, str] | None
) -> ImageInspect:
    cfg = record.decode_config()
    created = ""
    if cfg.created is not None:
        ns, offset = parse_rfc3339(cfg.created)
        created = format_rfc3339_nano(ns, offset)
    return ImageInspect(
        id=record.id,
        repo_tags=record.repo_tags,
        repo_digests=record.repo_digests,
        parent=record.parent or "",
        comment=image_comment(cfg),
        created=created,
        docker_version=cfg.docker_version,
        author=cfg.author,
        config=cfg.config,
        architecture=cfg.architecture,
        variant=cfg.variant,
        os=cfg.os or "linux",
        os_version=cfg.os_version,
        size=record.size,
        graph_driver=GraphDriverData(data=driver_data, name=driver_name),
        root_fs_type=cfg.rootfs.type if cfg.rootfs is not None else ROOTFS_TYPE_LAYERS,
        root_fs_layers=cfg.diff_ids,
        last_tag_time=format_rfc3339_nano(record.last_tag_time),
        container=cfg.container,
        container_config=cfg.container_config,
    )


def history(
    record: ImageRecord, layer_sizes: dict[str, int], parent_of: Callable[[str], ImageRecord | None]
) -> list[HistoryResponseItem]:
    cfg = record.decode_config()
    chains = chains_of(cfg)
    rows: list[HistoryResponseItem] = []
    used = 0
    for entry in cfg.history or ():
        size = 0
        if not entry.empty_layer:
            if used >= len(chains):
                raise errdefs.System("too many non-empty layers in History section")
            chain = chains[used]
            if chain not in layer_sizes:
                raise errdefs.NotFound(f"layer does not exist: {chain}")
            size = layer_sizes[chain]
            used += 1
        created = parse_rfc3339(entry.created)[0] // 1_000_000_000 if entry.created else 0
        rows.insert(
            0,
            HistoryResponseItem(
                comment=entry.comment,
                created=created,
                created_by=entry.created_by,
                id=HISTORY_MISSING_ID,
                size=size,
            ),
        )
    current: ImageRecord | None = record
    for row in rows:
        if current is None:
            break
        row.id = current.id
        row.tags = current.repo_tags or None
        current = parent_of(current.parent) if current.parent else None
    return rows
