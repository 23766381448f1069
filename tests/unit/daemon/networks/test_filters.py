"""Network list/prune filters and name/ID lookup: dockerd's semantics and error texts."""

from __future__ import annotations

import pytest

from pymoby import errdefs
from pymoby.api.filters import Filters
from pymoby.api.types.networks import EndpointResource, NetworkResource
from pymoby.daemon.networks import filters as f

SECOND = 1_000_000_000
NOW = 1_700_000_000 * SECOND

BRIDGE = NetworkResource(name="bridge", id="b1" + "0" * 62, driver="bridge", created=NOW)
HOST = NetworkResource(name="host", id="c2" + "0" * 62, driver="host", created=NOW)
APP = NetworkResource(
    name="app_net",
    id="a1b2" + "1" * 60,
    driver="bridge",
    created=NOW - 3600 * SECOND,
    labels={"com.example.tier": "front", "team": "a"},
)
USED = NetworkResource(
    name="used",
    id="a1c3" + "2" * 60,
    driver="bridge",
    created=NOW - 7200 * SECOND,
    containers={"c" * 64: EndpointResource(name="web")},
)
ALL = [BRIDGE, HOST, APP, USED]


def _names(flt: f.NetworkFilter) -> list[str]:
    return [n.name for n in ALL if flt.matches(n)]


def _list(fields: dict[str, list[str]]) -> list[str]:
    return _names(f.validate_list_filters(Filters(fields)))


# ---------------------------------------------------------------------------- list: validation


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"foo": ["x"]}, "invalid filter 'foo'"),
        ({"until": ["1h"]}, "invalid filter 'until'"),
        ({"label!": ["a"]}, "invalid filter 'label!'"),
        ({"type": ["bogus"]}, "invalid filter: 'type'='bogus'"),
        (
            {"dangling": ["yes"]},
            'invalid value for filter \'dangling\', must be "true" (or "1"), or "false" (or "0")',
        ),
        ({"dangling": ["true", "1"]}, 'got more than one value for filter key "dangling"'),
    ],
)
def test_list_filter_errors(fields: dict[str, list[str]], message: str) -> None:
    with pytest.raises(errdefs.InvalidParameter) as err:
        f.validate_list_filters(Filters(fields))
    assert err.value.message == message


# ---------------------------------------------------------------------------- list: matching


def test_no_filters_match_everything() -> None:
    assert _list({}) == ["bridge", "host", "app_net", "used"]


def test_name_and_id_match_as_substring_or_regexp() -> None:
    assert _list({"name": ["net"]}) == ["app_net"]  # a substring
    assert _list({"name": ["^(host|used)$"]}) == ["host", "used"]
    assert _list({"id": ["a1"]}) == ["app_net", "used"]  # an ID prefix
    assert _list({"id": [APP.id]}) == ["app_net"]
    assert _list({"id": ["app_net"]}) == []  # names only with id_also_matches_name


def test_id_also_matches_name() -> None:
    flt = f.NetworkFilter(Filters({"id": ["app_net"]}), id_also_matches_name=True)
    assert _names(flt) == ["app_net"]


def test_driver_and_scope_are_exact() -> None:
    assert _list({"driver": ["host"]}) == ["host"]
    assert _list({"driver": ["brid"]}) == []
    assert _list({"scope": ["local"]}) == ["bridge", "host", "app_net", "used"]
    assert _list({"scope": ["swarm"]}) == []


def test_labels_need_every_key_or_pair() -> None:
    assert _list({"label": ["team"]}) == ["app_net"]
    assert _list({"label": ["team=a", "com.example.tier=front"]}) == ["app_net"]
    assert _list({"label": ["team=b"]}) == []


def test_type_builtin_and_custom() -> None:
    assert _list({"type": ["builtin"]}) == ["bridge", "host"]
    assert _list({"type": ["custom"]}) == ["app_net", "used"]


def test_dangling() -> None:
    assert _list({"dangling": ["true"]}) == ["app_net"]
    assert _list({"dangling": ["1"]}) == ["app_net"]
    # dangling=false: in use by a container, or predefined (dockerd's matchesUse).
    assert _list({"dangling": ["false"]}) == ["bridge", "host", "used"]
    assert _list({"dangling": ["0"]}) == ["bridge", "host", "used"]


def test_explicit_builtin_and_in_use_override_the_resource() -> None:
    flt = f.validate_list_filters(Filters({"dangling": ["true"]}))
    assert not flt.matches(APP, in_use=True)
    assert flt.matches(USED, in_use=False)
    assert not flt.matches(APP, builtin=True)
    assert f.matches(Filters({"type": ["builtin"]}), APP, builtin=True)
    assert not f.matches(Filters({"type": ["builtin"]}), BRIDGE, builtin=False)


def test_predefined_names() -> None:
    assert all(f.is_predefined(n) for n in ("bridge", "host", "none", "default"))
    assert not f.is_predefined("docker_gwbridge")


# ---------------------------------------------------------------------------- prune


def _pruned(fields: dict[str, list[str]]) -> list[str]:
    return [n.name for n in ALL if f.prune_matches(Filters(fields), n, NOW)]


def test_prune_keeps_predefined_and_used_networks() -> None:
    assert _pruned({}) == ["app_net"]
    assert f.prune_matches(Filters(), USED, NOW, in_use=False)
    assert not f.prune_matches(Filters(), APP, NOW, builtin=True)


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"dangling": ["true"]}, "invalid filter 'dangling'"),
        ({"name": ["x"]}, "invalid filter 'name'"),
        ({"until": ["1h", "2h"]}, "more than one until filter specified"),
        (
            {"until": ["2020-13-01"]},
            'parsing time "2020-13-01": month out of range',
        ),
    ],
)
def test_prune_filter_errors(fields: dict[str, list[str]], message: str) -> None:
    with pytest.raises(errdefs.InvalidParameter) as err:
        f.validate_prune_filters(Filters(fields), NOW)
    assert err.value.message == message


def test_prune_until_and_labels() -> None:
    assert _pruned({"until": ["30m"]}) == ["app_net"]  # created an hour ago
    assert _pruned({"until": ["2h"]}) == []
    assert _pruned({"until": [str(NOW // SECOND - 3600)]}) == ["app_net"]  # created exactly then
    assert _pruned({"until": [str(NOW // SECOND - 3601)]}) == []
    assert _pruned({"label": ["team=a"]}) == ["app_net"]
    assert _pruned({"label!": ["team"]}) == []
    assert _pruned({"label!": ["team=b"]}) == ["app_net"]


def test_prune_filter_object_reuses_until() -> None:
    flt = f.validate_prune_filters(Filters({"until": ["1h"]}), NOW)
    assert flt.until == NOW - 3600 * SECOND and flt.by_use and flt.dangling_only


# ---------------------------------------------------------------------------- lookup

PAIRS = [("abc123", "web"), ("abd456", "db"), ("web", "other"), ("fff000", "db2")]


def test_find_order() -> None:
    assert f.find("abc123", PAIRS) == "abc123"
    assert f.find("web", PAIRS) == "web"  # a full ID beats a name
    assert f.find("db", PAIRS) == "abd456"  # a name beats an ID prefix
    assert f.find("ff", PAIRS) == "fff000"
    assert f.find("abc", PAIRS) == "abc123"


def test_find_not_found() -> None:
    with pytest.raises(errdefs.NotFound) as err:
        f.find("zzz", PAIRS)
    assert err.value.message == "network zzz not found"


@pytest.mark.parametrize(
    "kind,by_name,by_prefix",
    [
        (
            "daemon",
            "network twin is ambiguous (2 matches found on name)",
            "network ab is ambiguous (2 matches found based on ID prefix)",
        ),
        (
            "remove",
            "network twin is ambiguous (2 matches found based on name)",
            "network ab is ambiguous (2 matches found based on ID prefix)",
        ),
        (
            "inspect",
            "2 matches found based on name: network twin is ambiguous",
            "2 matches found based on ID prefix: network ab is ambiguous",
        ),
    ],
)
def test_find_ambiguity_texts(kind: f.LookupKind, by_name: str, by_prefix: str) -> None:
    pairs = [*PAIRS, ("111", "twin"), ("222", "twin")]
    with pytest.raises(errdefs.InvalidParameter) as err:
        f.find("twin", pairs, kind=kind)
    assert err.value.message == by_name
    with pytest.raises(errdefs.InvalidParameter) as err:
        f.find("ab", pairs, kind=kind)
    assert err.value.message == by_prefix


def test_find_empty_term_is_an_ambiguous_prefix() -> None:
    with pytest.raises(errdefs.InvalidParameter, match=r"\(4 matches found based on ID prefix\)"):
        f.find("", PAIRS)
    assert f.find("", [("only", "x")]) == "only"
