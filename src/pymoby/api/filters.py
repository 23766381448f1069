"""Docker's `filters` query parameter: a mapping of names to a set of values.

Rule: behave exactly like moby's `filters.Args` (daemon/internal/filters). The wire form is a JSON
object `{"name": {"value": true, ...}}`; the legacy form `{"name": ["value", ...]}` (sent by
docker-py and old CLIs) is accepted too. An empty string means "no filters". Anything else that
is not one of those two shapes fails with the bare message `invalid filter`.

Every match helper follows moby's convention: a filter name that is absent (or has no values)
matches everything. The values are stored with their JSON boolean, as moby does: `Get` and the
prefix / regexp / key-value matches see every value, exact matches only the `true` ones.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache

from pymoby import errdefs

__all__ = ["Filters", "InvalidFilter"]


class InvalidFilter(errdefs.InvalidParameter):
    """moby's invalidFilter: `invalid filter`, `invalid filter 'x'`, `invalid filter 'x=[a b]'`."""

    def __init__(self, name: str = "", values: Iterable[str] | None = None) -> None:
        message = "invalid filter"
        if name:
            message += " '" + name
            if values is not None:
                # Go formats a []string with %s as `[a b c]`.
                message += "=[" + " ".join(values) + "]"
            message += "'"
        super().__init__(message)
        self.name = name


class Filters:
    """An immutable set of filter values per filter name.

    Build one with `Filters.parse(query_text)` (from a request) or `Filters({"type": ["image"]})`
    (in code). The values of a name are returned sorted, so results are deterministic.
    """

    __slots__ = ("_fields",)

    _fields: dict[str, dict[str, bool]]

    def __init__(self, fields: Mapping[str, Iterable[str]] | None = None) -> None:
        self._fields = {}
        for name, values in (fields or {}).items():
            self._fields[name] = dict.fromkeys(values, True)

    @classmethod
    def _from_raw(cls, fields: dict[str, dict[str, bool]]) -> Filters:
        new = cls.__new__(cls)
        new._fields = fields
        return new

    # -- parsing and encoding ------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str | None) -> Filters:
        """Parse the `filters` query value; "" (or None) means no filters.

        Raises InvalidFilter (`invalid filter`) when the text is neither form.
        """
        if not text:
            return cls()
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError):
            raise InvalidFilter() from None
        if not isinstance(raw, dict):
            # `null` decodes into an empty map in Go; every other non-object is an error.
            if raw is None:
                return cls()
            raise InvalidFilter()
        current = _decode_current(raw)
        if current is not None:
            return cls._from_raw(current)
        legacy = _decode_legacy(raw)
        if legacy is not None:
            return cls._from_raw(legacy)
        raise InvalidFilter()

    def to_json(self) -> str:
        """The current wire form; "" when there are no filters (moby's `ToJSON`)."""
        if not self._fields:
            return ""
        return json.dumps(self._fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    # -- inspection ----------------------------------------------------------------------------

    def keys(self) -> list[str]:
        """The filter names present, sorted."""
        return sorted(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __bool__(self) -> bool:
        return bool(self._fields)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Filters):
            return NotImplemented
        return self._fields == other._fields

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __repr__(self) -> str:
        return f"Filters({ {k: self.get(k) for k in self.keys()}!r})"

    def contains(self, name: str) -> bool:
        """True when the name is present, even without values."""
        return name in self._fields

    def __contains__(self, name: object) -> bool:
        return name in self._fields

    def get(self, name: str) -> list[str]:
        """The values of a name, sorted; [] when absent."""
        return sorted(self._fields.get(name, ()))

    # -- building (returns new instances) ------------------------------------------------------

    def with_value(self, name: str, value: str) -> Filters:
        """A copy with `value` added to `name` (moby's `Add`)."""
        fields = {k: dict(v) for k, v in self._fields.items()}
        fields.setdefault(name, {})[value] = True
        return Filters._from_raw(fields)

    def without_value(self, name: str, value: str) -> Filters:
        """A copy with `value` removed from `name`; the name goes when empty (moby's `Del`)."""
        fields = {k: dict(v) for k, v in self._fields.items()}
        values = fields.get(name)
        if values is not None:
            values.pop(value, None)
            if not values:
                del fields[name]
        return Filters._from_raw(fields)

    # -- validation ----------------------------------------------------------------------------

    def validate(self, accepted: Iterable[str]) -> None:
        """Raise InvalidFilter (`invalid filter 'x'`) for the first name not in `accepted`."""
        allowed = set(accepted)
        for name in self.keys():
            if name not in allowed:
                raise InvalidFilter(name)

    def get_bool_or_default(self, name: str, default: bool) -> bool:
        """The boolean value of `name` ("1"/"true" or "0"/"false"), or `default` when absent.

        Raises `invalid filter 'x'` when present without values, and `invalid filter 'x=[v]'`
        when the values are neither or both truthy and falsy.
        """
        values = self._fields.get(name)
        if values is None:
            return default
        if not values:
            raise InvalidFilter(name)
        is_false = values.get("0", False) or values.get("false", False)
        is_true = values.get("1", False) or values.get("true", False)
        if is_false == is_true:
            raise InvalidFilter(name, self.get(name))
        return is_true

    # -- matching ------------------------------------------------------------------------------

    def exact_match(self, name: str, source: str) -> bool:
        """True when no values are set for `name`, or `source` is one of them."""
        values = self._fields.get(name)
        if not values:
            return True
        return values.get(source, False)

    def unique_exact_match(self, name: str, source: str) -> bool:
        """True when no values are set, or exactly one value is set and equals `source`."""
        values = self._fields.get(name)
        if not values:
            return True
        if len(values) != 1:
            return False
        return values.get(source, False)

    def fuzzy_match(self, name: str, source: str) -> bool:
        """Exact match, or `source` starts with one of the values (ID prefixes)."""
        if self.exact_match(name, source):
            return True
        return any(source.startswith(prefix) for prefix in self._fields.get(name, ()))

    def match(self, name: str, source: str) -> bool:
        """Exact match, or one of the values, as a regular expression, is found in `source`.

        An absent name matches everything, as in moby. Values that are not valid regular
        expressions are skipped. (Go uses RE2; Python's `re` accepts a superset of its syntax.)
        """
        if self.exact_match(name, source):
            return True
        for pattern in self._fields.get(name, ()):
            compiled = _compile(pattern)
            if compiled is not None and compiled.search(source) is not None:
                return True
        return False

    def match_kv_list(self, name: str, sources: Mapping[str, str] | None) -> bool:
        """Every value `key` or `key=value` of `name` is present in `sources` (labels).

        True when `name` has no values; False when values are set but `sources` is empty.
        """
        values = self._fields.get(name)
        if not values:
            return True
        if not sources:
            return False
        for value in values:
            key, sep, expected = value.partition("=")
            if key not in sources:
                return False
            if sep and sources[key] != expected:
                return False
        return True


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError):
        return None


def _decode_current(raw: dict[str, object]) -> dict[str, dict[str, bool]] | None:
    """`{"name": {"value": true}}`; None when the shape does not fit."""
    fields: dict[str, dict[str, bool]] = {}
    for name, values in raw.items():
        if values is None:
            # Go decodes `null` into a nil map: the name is present without values.
            fields[name] = {}
            continue
        if not isinstance(values, dict):
            return None
        decoded: dict[str, bool] = {}
        for value, flag in values.items():
            if flag is None:
                # `null` leaves Go's bool at its zero value.
                decoded[value] = False
            elif isinstance(flag, bool):
                decoded[value] = flag
            else:
                return None
        fields[name] = decoded
    return fields


def _decode_legacy(raw: dict[str, object]) -> dict[str, dict[str, bool]] | None:
    """`{"name": ["value", ...]}`; None when the shape does not fit."""
    fields: dict[str, dict[str, bool]] = {}
    for name, values in raw.items():
        if values is None:
            fields[name] = {}
            continue
        if not isinstance(values, list):
            return None
        decoded: dict[str, bool] = {}
        for value in values:
            if value is None:
                # `null` leaves Go's string at its zero value.
                decoded[""] = True
            elif isinstance(value, str):
                decoded[value] = True
            else:
                return None
        fields[name] = decoded
    return fields
