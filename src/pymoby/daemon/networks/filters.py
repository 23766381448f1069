"""Network filters and lookup, as dockerd applies them: pure functions over api types.

Rule: nothing here touches state; callers pass the networks (as api NetworkResource, or as
(id, name) pairs for lookups) and the facts the resource does not carry. Semantics and error
texts are dockerd's (daemon/network/filter.go, daemon/network.go FindNetwork, the network
router's findUniqueNetwork and getNetwork):

- GET /networks accepts dangling, driver, id, label, name, scope, type; POST /networks/prune
  accepts label, label!, until. Any other key: `invalid filter 'x'`.
- `name` and `id` match exactly or as a regular expression found anywhere (filters.Match: a
  substring also matches); `driver` and `scope` exactly; `label` key or key=value, all of
  them; `label!` none of them.
- `type=builtin|custom` splits the predefined networks (bridge, host, none, default) from the
  user's; another value is `invalid filter: 'type'='x'` (dockerd returns it as a plain error,
  i.e. a 500; here it is a 400 with the same text).
- `dangling=true|1` keeps user networks without containers, `dangling=false|0` the others
  (predefined ones included); prune always behaves as dangling=true.
- `until` (prune) drops networks created after the time (api.timestamps.parse_time).
- lookup by term: full ID, then exact name, then unique ID prefix; the ambiguity texts differ
  per caller (FindNetwork, DELETE, GET), see `find`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pymoby import errdefs
from pymoby.api.filters import Filters
from pymoby.api.timestamps import parse_time
from pymoby.api.types.networks import NetworkResource

LIST_FILTERS = frozenset({"dangling", "driver", "id", "label", "name", "scope", "type"})
PRUNE_FILTERS = frozenset({"label", "label!", "until"})

# daemon/network.IsPredefined on Linux: the bridge, host, none and "default" network modes.
PREDEFINED = frozenset({"bridge", "host", "none", "default"})

_DANGLING_VALUES = {"1": True, "true": True, "0": False, "false": False}


def is_predefined(name: str) -> bool:
    return name in PREDEFINED


@dataclass(frozen=True, slots=True)
class NetworkFilter:
    """Validated filters (dockerd's network.Filter); build with the `validate_*` functions."""

    args: Filters
    by_use: bool = False
    dangling_only: bool = False
    until: int | None = None  # ns; networks created after it do not match
    id_also_matches_name: bool = False

    def matches(
        self, net: NetworkResource, *, builtin: bool | None = None, in_use: bool | None = None
    ) -> bool:
        """dockerd's Filter.Matches. `builtin` defaults to is_predefined(net.name), `in_use`
        to whether net.containers has entries (dockerd: the network has endpoints)."""
        args = self.args
        if builtin is None:
            builtin = is_predefined(net.name)
        if in_use is None:
            in_use = bool(net.containers)
        if args.contains("driver") and not args.exact_match("driver", net.driver):
            return False
        if args.contains("name") and not args.match("name", net.name):
            return False
        if (
            args.contains("id")
            and not args.match("id", net.id)
            and not (self.id_also_matches_name and args.match("id", net.name))
        ):
            return False
        if args.contains("label") and not args.match_kv_list("label", net.labels):
            return False
        if args.contains("label!") and args.match_kv_list("label!", net.labels):
            return False
        if args.contains("scope") and not args.exact_match("scope", net.scope):
            return False
        if self.by_use:
            dangling = not builtin and not in_use
            if dangling != self.dangling_only:
                return False
        types = args.get("type")
        if types and not _matches_type(types, builtin):
            return False
        return self.until is None or net.created <= self.until


def _matches_type(types: list[str], builtin: bool) -> bool:
    # dockerd returns on the first value it sees (Go map order); values here come sorted.
    for value in types:
        if value == "builtin":
            return builtin
        if value == "custom":
            return not builtin
    return False


def _build(
    args: Filters, now_ns: int | None, *, prune: bool, id_also_matches_name: bool = False
) -> NetworkFilter:
    """dockerd's newFilter: the per-key value checks shared by list and prune."""
    by_use = dangling_only = False
    dangling = args.get("dangling")
    if dangling:
        if len(dangling) > 1:
            raise errdefs.InvalidParameter('got more than one value for filter key "dangling"')
        by_use = True
        if dangling[0] not in _DANGLING_VALUES:
            raise errdefs.InvalidParameter(
                'invalid value for filter \'dangling\', must be "true" (or "1"), or '
                '"false" (or "0")'
            )
        dangling_only = _DANGLING_VALUES[dangling[0]]
    for value in args.get("type"):
        if value not in ("builtin", "custom"):
            raise errdefs.InvalidParameter(f"invalid filter: 'type'='{value}'")
    until: int | None = None
    untils = args.get("until")
    if untils:
        if len(untils) > 1:
            raise errdefs.InvalidParameter("more than one until filter specified")
        until = parse_time(untils[0], time.time_ns() if now_ns is None else now_ns)
    if prune:
        by_use = dangling_only = True
    return NetworkFilter(
        args,
        by_use=by_use,
        dangling_only=dangling_only,
        until=until,
        id_also_matches_name=id_also_matches_name,
    )


def validate_list_filters(filters: Filters) -> NetworkFilter:
    """GET /networks: dockerd's NewFilter (InvalidParameter with its texts)."""
    filters.validate(LIST_FILTERS)
    return _build(filters, None, prune=False)


def validate_prune_filters(filters: Filters, now_ns: int | None = None) -> NetworkFilter:
    """POST /networks/prune: dockerd's NewPruneFilter; `until` is read relative to `now_ns`."""
    filters.validate(PRUNE_FILTERS)
    return _build(filters, now_ns, prune=True)


def matches(
    filters: Filters,
    net: NetworkResource,
    *,
    builtin: bool | None = None,
    in_use: bool | None = None,
) -> bool:
    """Validate list filters and match one network (use validate_list_filters for many)."""
    return validate_list_filters(filters).matches(net, builtin=builtin, in_use=in_use)


def prune_matches(
    filters: Filters,
    net: NetworkResource,
    now_ns: int | None = None,
    *,
    builtin: bool | None = None,
    in_use: bool | None = None,
) -> bool:
    """Whether prune removes `net` (filters, dangling, until). dockerd also skips config-only
    networks and ones whose driver cannot be pruned; the caller checks those."""
    return validate_prune_filters(filters, now_ns).matches(net, builtin=builtin, in_use=in_use)


LookupKind = Literal["daemon", "remove", "inspect"]


def find(term: str, nets: Sequence[tuple[str, str]], *, kind: LookupKind = "daemon") -> str:
    """The ID of the network `term` names among (id, name) pairs: a full ID wins at once, then
    one exact name, then one ID prefix. NotFound `network x not found` when none matches.

    Two names or prefixes are InvalidParameter, worded per dockerd caller: `kind` "daemon"
    (FindNetwork: connect, disconnect, container create), "remove" (DELETE /networks/{id}) or
    "inspect" (GET /networks/{id}).
    """
    by_name: list[str] = []
    by_prefix: list[str] = []
    for nid, name in nets:
        if nid == term:
            return nid
        if name == term:
            by_name.append(nid)
        if nid.startswith(term):
            by_prefix.append(nid)
    if len(by_name) == 1:
        return by_name[0]
    if by_name:
        raise errdefs.InvalidParameter(_ambiguous(term, len(by_name), "name", kind))
    if len(by_prefix) == 1:
        return by_prefix[0]
    if by_prefix:
        raise errdefs.InvalidParameter(_ambiguous(term, len(by_prefix), "ID prefix", kind))
    raise errdefs.NotFound(f"network {term} not found")


def _ambiguous(term: str, count: int, basis: str, kind: LookupKind) -> str:
    if kind == "inspect":
        return f"{count} matches found based on {basis}: network {term} is ambiguous"
    if kind == "daemon" and basis == "name":
        return f"network {term} is ambiguous ({count} matches found on name)"
    return f"network {term} is ambiguous ({count} matches found based on {basis})"
