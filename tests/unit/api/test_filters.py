"""The `filters` query parameter: both JSON forms, errors, and every match helper."""

from __future__ import annotations

import pytest

from pymoby import errdefs
from pymoby.api.filters import Filters, InvalidFilter


class TestParse:
    def test_empty_means_no_filters(self) -> None:
        assert len(Filters.parse("")) == 0
        assert not Filters.parse(None)
        assert not Filters.parse("{}")
        assert not Filters.parse("null")

    def test_current_form(self) -> None:
        f = Filters.parse('{"type":{"container":true},"label":{"a=b":true,"c":true}}')
        assert f.keys() == ["label", "type"]
        assert f.get("type") == ["container"]
        assert f.get("label") == ["a=b", "c"]

    def test_legacy_form(self) -> None:
        f = Filters.parse('{"type":["container","image"],"dangling":["true"]}')
        assert f.get("type") == ["container", "image"]
        assert f.get("dangling") == ["true"]
        assert f == Filters({"type": ["image", "container"], "dangling": ["true"]})

    def test_legacy_null_element_is_empty_string(self) -> None:
        assert Filters.parse('{"name":["a",null]}').get("name") == ["", "a"]

    def test_null_values_mean_present_without_values(self) -> None:
        f = Filters.parse('{"label":null}')
        assert f.contains("label")
        assert f.get("label") == []
        assert f.exact_match("label", "anything")

    def test_false_values_are_kept_but_do_not_match_exactly(self) -> None:
        f = Filters.parse('{"name":{"web":false,"db":true}}')
        assert f.get("name") == ["db", "web"]
        assert f.exact_match("name", "db")
        assert not f.exact_match("name", "web")
        assert f.fuzzy_match("name", "web-1")  # prefix matching sees every value, as in moby

    @pytest.mark.parametrize(
        "text",
        [
            "not json",
            "{",
            "[]",
            '"x"',
            "1",
            '{"type":"container"}',
            '{"type":{"container":1}}',
            '{"type":{"container":"true"}}',
            '{"type":[1]}',
            '{"a":{"x":true},"b":["y"]}',
        ],
    )
    def test_bad_json(self, text: str) -> None:
        with pytest.raises(errdefs.InvalidParameter) as info:
            Filters.parse(text)
        assert str(info.value) == "invalid filter"

    def test_error_is_invalid_parameter(self) -> None:
        assert issubclass(InvalidFilter, errdefs.InvalidParameter)


class TestToJson:
    def test_empty_is_empty_string(self) -> None:
        assert Filters().to_json() == ""

    def test_current_form_sorted(self) -> None:
        f = Filters({"type": ["image", "container"], "dangling": ["true"]})
        assert f.to_json() == '{"dangling":{"true":true},"type":{"container":true,"image":true}}'

    def test_round_trip(self) -> None:
        f = Filters({"label": ["a=b", "c"], "before": ["x"]})
        assert Filters.parse(f.to_json()) == f


class TestBuilding:
    def test_with_and_without_value_return_copies(self) -> None:
        base = Filters({"a": ["1"]})
        added = base.with_value("a", "2").with_value("b", "3")
        assert base.get("a") == ["1"]
        assert added.get("a") == ["1", "2"]
        assert added.get("b") == ["3"]
        removed = added.without_value("b", "3").without_value("a", "9")
        assert not removed.contains("b")
        assert removed.get("a") == ["1", "2"]

    def test_container_protocol(self) -> None:
        f = Filters({"b": ["1"], "a": []})
        assert list(f) == ["a", "b"]
        assert "a" in f
        assert "z" not in f
        assert len(f) == 2
        assert "Filters(" in repr(f)
        assert hash(f) == hash(Filters({"a": [], "b": ["1"]}))


class TestValidate:
    def test_accepted(self) -> None:
        Filters({"label": ["x"], "name": ["y"]}).validate({"label", "name", "id"})

    def test_unknown_name(self) -> None:
        with pytest.raises(errdefs.InvalidParameter) as info:
            Filters({"name": ["y"], "bogus": ["x"]}).validate({"name"})
        assert str(info.value) == "invalid filter 'bogus'"


class TestGetBoolOrDefault:
    def test_absent_is_default(self) -> None:
        assert Filters().get_bool_or_default("dangling", True) is True
        assert Filters().get_bool_or_default("dangling", False) is False

    @pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("0", False)])
    def test_values(self, value: str, expected: bool) -> None:
        f = Filters({"dangling": [value]})
        assert f.get_bool_or_default("dangling", not expected) is expected

    def test_false_word(self) -> None:
        assert Filters({"all": ["false"]}).get_bool_or_default("all", True) is False

    def test_invalid_value(self) -> None:
        with pytest.raises(errdefs.InvalidParameter) as info:
            Filters({"dangling": ["maybe"]}).get_bool_or_default("dangling", False)
        assert str(info.value) == "invalid filter 'dangling=[maybe]'"

    def test_conflicting_values(self) -> None:
        with pytest.raises(errdefs.InvalidParameter) as info:
            Filters({"dangling": ["true", "0"]}).get_bool_or_default("dangling", False)
        assert str(info.value) == "invalid filter 'dangling=[0 true]'"

    def test_present_without_values(self) -> None:
        with pytest.raises(errdefs.InvalidParameter) as info:
            Filters.parse('{"dangling":{}}').get_bool_or_default("dangling", False)
        assert str(info.value) == "invalid filter 'dangling'"


class TestMatches:
    def test_exact_match(self) -> None:
        f = Filters({"name": ["web"]})
        assert f.exact_match("name", "web")
        assert not f.exact_match("name", "web-1")
        assert f.exact_match("other", "anything")

    def test_unique_exact_match(self) -> None:
        assert Filters({"a": ["x"]}).unique_exact_match("a", "x")
        assert not Filters({"a": ["x", "y"]}).unique_exact_match("a", "x")
        assert Filters().unique_exact_match("a", "x")

    def test_fuzzy_match_is_prefix(self) -> None:
        f = Filters({"id": ["4a5b"]})
        assert f.fuzzy_match("id", "4a5b6c7d")
        assert f.fuzzy_match("id", "4a5b")
        assert not f.fuzzy_match("id", "04a5b")
        assert Filters().fuzzy_match("id", "x")

    def test_match_is_exact_or_regexp_search(self) -> None:
        f = Filters({"name": ["^web-[0-9]+$", "db"]})
        assert f.match("name", "web-12")
        assert f.match("name", "mydb1")  # unanchored search, like Go's regexp.MatchString
        assert not f.match("name", "web-x")
        assert Filters().match("name", "x")

    def test_match_skips_bad_regexp(self) -> None:
        f = Filters({"name": ["web[", "api"]})
        assert f.match("name", "web[")  # exact match still applies
        assert f.match("name", "my-api")
        assert not f.match("name", "web")

    def test_match_kv_list(self) -> None:
        labels = {"com.example": "1", "env": "prod", "empty": ""}
        assert Filters({"label": ["env"]}).match_kv_list("label", labels)
        assert Filters({"label": ["env=prod"]}).match_kv_list("label", labels)
        assert Filters({"label": ["env=prod", "com.example"]}).match_kv_list("label", labels)
        assert not Filters({"label": ["env=dev"]}).match_kv_list("label", labels)
        assert not Filters({"label": ["missing"]}).match_kv_list("label", labels)
        assert Filters({"label": ["empty="]}).match_kv_list("label", labels)
        assert Filters({"label": ["a=b=c"]}).match_kv_list("label", {"a": "b=c"})

    def test_match_kv_list_without_filter_or_sources(self) -> None:
        assert Filters().match_kv_list("label", {})
        assert Filters().match_kv_list("label", None)
        assert not Filters({"label": ["a"]}).match_kv_list("label", {})
        assert not Filters({"label": ["a"]}).match_kv_list("label", None)
