"""Check pymoby's JSON against moby's published Engine API swagger (API 1.41, from Debian).

Rule: a response passes when every field it has is of the type the spec gives, AND every
property the spec lists is present, unless the property is in `OPTIONAL` below with the reason
dockerd itself leaves it out (omitempty, removed in a later API version, ...). So a field a
1.41 client reads that pymoby forgot to send is a failure, not a silent pass.

Swagger 2.0 is turned into JSON Schema here: `$ref`s are inlined (definitions only),
`x-nullable: true` also allows `null`, `x-omitempty: true` makes a property optional, and
`format`, `example`, `description`, `title` and other `x-*` keys are dropped. `ERRATA` fixes
the few places where the 1.41 document disagrees with what dockerd actually sends.

The spec comes from the Debian package golang-github-docker-docker-dev. If it is missing the
check fails (never skips) and says so.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from pymoby.api.versions import ApiVersion

SWAGGER_PATH = Path("/usr/share/gocode/src/github.com/docker/docker/api/swagger.yaml")
SWAGGER_PACKAGE = "golang-github-docker-docker-dev"
SPEC_VERSION = ApiVersion(1, 41)

Schema = dict[str, Any]


@dataclass(frozen=True)
class Optional:
    """A listed property that may be absent: always, or for clients at `since` and above."""

    reason: str
    since: ApiVersion | None = None

    def applies(self, api: ApiVersion) -> bool:
        return self.since is None or api >= self.since


# Where a property may legitimately be missing. Keys are schema locations: a definition name,
# or for inline objects the parent location plus `.Property`, `[]` (array items) or `{}`
# (map values). Every entry says why; `since` limits it to clients at that version and up.
OPTIONAL: dict[str, dict[str, Optional]] = {
    "SystemVersion": {
        "GoVersion": Optional("omitempty in dockerd 29; pymoby is not built with Go"),
        "BuildTime": Optional("omitempty in every dockerd; unknown for a Python package"),
        "Experimental": Optional("omitempty in every dockerd: absent when false"),
        "KernelVersion": Optional("omitempty in every dockerd: absent when uname fails"),
    },
    "SystemVersion.Components[]": {
        "Details": Optional("omitempty map in every dockerd"),
    },
    "SystemInfo": {
        "KernelMemory": Optional(
            "not in dockerd's Info since 23.0 (kmem limits deprecated by Linux 5.4)"
        ),
        "ClusterStore": Optional("omitted when empty since API 1.40 (unversioned); no swarm"),
        "ClusterAdvertise": Optional("omitted when empty since API 1.40 (unversioned); no swarm"),
        "ProductLicense": Optional("omitempty; pymoby has no product license"),
        "DefaultAddressPools": Optional("omitempty; only when default-address-pools is set"),
        "BridgeNfIptables": Optional("omitted from API 1.50", since=ApiVersion(1, 50)),
        "BridgeNfIp6tables": Optional("omitted from API 1.50", since=ApiVersion(1, 50)),
    },
    "SwarmInfo": {
        "Nodes": Optional("omitempty: only set on a swarm manager"),
        "Managers": Optional("omitempty: only set on a swarm manager"),
        "Cluster": Optional("omitempty: only set on a swarm manager"),
    },
    "Runtime": {
        "runtimeArgs": Optional("omitempty: only when the runtime has arguments"),
    },
    "Commit": {
        "Expected": Optional("omitted from API 1.49", since=ApiVersion(1, 49)),
    },
    "RegistryServiceConfig": {
        "AllowNondistributableArtifactsCIDRs": Optional(
            "omitted from API 1.47", since=ApiVersion(1, 47)
        ),
        "AllowNondistributableArtifactsHostnames": Optional(
            "omitted from API 1.47", since=ApiVersion(1, 47)
        ),
    },
}


@dataclass(frozen=True)
class Erratum:
    """A correction to the spec document: `fix` rewrites the node at `path`."""

    path: tuple[str, ...]
    fix: Callable[[Any], Any]
    reason: str


ERRATA: list[Erratum] = [
    Erratum(
        ("definitions", "SystemInfo", "properties", "Isolation"),
        lambda node: {**node, "enum": [*node["enum"], ""]},
        'dockerd on Linux reports Isolation "" (only Windows sets it); the 1.52 spec adds ""',
    ),
]

_KEEP = {
    "type",
    "enum",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "allOf",
    "anyOf",
    "oneOf",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "uniqueItems",
    "pattern",
}


def _missing_message(path: Path) -> str:
    return (
        f"moby's API swagger is missing at {path}: install the Debian package "
        f"{SWAGGER_PACKAGE} (apt-get install {SWAGGER_PACKAGE}). The wire-format tests check "
        "pymoby's JSON against it and never skip."
    )


class Swagger:
    """One loaded spec; converts definitions / responses and validates objects against them."""

    def __init__(
        self,
        path: Path = SWAGGER_PATH,
        *,
        optional: Mapping[str, Mapping[str, Optional]] = OPTIONAL,
        errata: Collection[Erratum] = tuple(ERRATA),
    ) -> None:
        if not path.is_file():
            raise AssertionError(_missing_message(path))
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        with path.open("rb") as f:
            doc = yaml.load(f, Loader=loader)
        for erratum in errata:
            parent = doc
            for key in erratum.path[:-1]:
                parent = parent[key]
            parent[erratum.path[-1]] = erratum.fix(parent[erratum.path[-1]])
        self.path = path
        self.doc: dict[str, Any] = doc
        self.optional = optional
        self.locations: set[tuple[str, str]] = set()

    # ------------------------------------------------------------------ lookup

    def raw(self, spec: str) -> tuple[str, Schema]:
        """(root location, swagger schema) for `Name`, `#/definitions/Name` or `GET /path [200]`."""
        spec = spec.strip()
        if " " not in spec:
            name = spec.removeprefix("#/definitions/")
            definitions = self.doc["definitions"]
            if name not in definitions:
                raise KeyError(f"no definition {name!r} in {self.path}")
            return name, {"$ref": f"#/definitions/{name}"}
        parts = spec.split()
        method, route = parts[0].lower(), parts[1]
        status = parts[2] if len(parts) > 2 else "200"
        try:
            responses = self.doc["paths"][route][method]["responses"]
        except KeyError:
            raise KeyError(f"no operation {spec!r} in {self.path}") from None
        response = responses.get(int(status), responses.get(status))
        if response is None or "schema" not in response:
            raise KeyError(f"{spec!r} has no {status} response schema in {self.path}")
        schema = response["schema"]
        return schema.get("title", f"{method.upper()} {route} {status}"), schema

    # ------------------------------------------------------------------ conversion

    def schema(
        self,
        spec: str,
        *,
        api: ApiVersion = SPEC_VERSION,
        optional: Mapping[str, Collection[str]] | None = None,
    ) -> Schema:
        """JSON Schema for `spec` with $refs inlined and presence rules for a client at `api`."""
        location, node = self.raw(spec)
        return self._convert(node, location, (), api, optional or {})

    def _optional(
        self, location: str, api: ApiVersion, extra: Mapping[str, Collection[str]]
    ) -> set[str]:
        names = {k for k, v in self.optional.get(location, {}).items() if v.applies(api)}
        return names | set(extra.get(location, ()))

    def _convert(
        self,
        node: Schema,
        location: str,
        stack: tuple[str, ...],
        api: ApiVersion,
        extra: Mapping[str, Collection[str]],
    ) -> Schema:
        if "$ref" in node:
            name = node["$ref"].removeprefix("#/definitions/")
            if name in stack:
                raise ValueError(f"recursive definition {' -> '.join((*stack, name))}")
            target = self.doc["definitions"][name]
            converted = self._convert(target, name, (*stack, name), api, extra)
            if node.get("x-nullable") is True:
                return {"anyOf": [converted, {"type": "null"}]}
            return converted
        out: Schema = {k: copy.deepcopy(v) for k, v in node.items() if k in _KEEP}
        nullable = node.get("x-nullable") is True
        if nullable and "type" in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        if "properties" in node:
            props = node["properties"]
            out["properties"] = {}
            for name, sub in props.items():
                self.locations.add((location, name))
                out["properties"][name] = self._convert(
                    sub, f"{location}.{name}", stack, api, extra
                )
            may_miss = self._optional(location, api, extra)
            may_miss |= {n for n, sub in props.items() if sub.get("x-omitempty") is True}
            required = set(node.get("required", ())) | set(props)
            out["required"] = sorted(required - may_miss)
        if isinstance(node.get("items"), dict):
            out["items"] = self._convert(node["items"], f"{location}[]", stack, api, extra)
        if isinstance(node.get("additionalProperties"), dict):
            out["additionalProperties"] = self._convert(
                node["additionalProperties"], f"{location}{{}}", stack, api, extra
            )
        for key in ("allOf", "anyOf", "oneOf"):
            if key in node:
                out[key] = [self._convert(s, location, stack, api, extra) for s in node[key]]
        return out

    # ------------------------------------------------------------------ validation

    def problems(
        self,
        spec: str,
        obj: object,
        *,
        api: ApiVersion = SPEC_VERSION,
        optional: Mapping[str, Collection[str]] | None = None,
    ) -> list[str]:
        """Every mismatch, as `$.path: message` lines (empty when `obj` conforms)."""
        validator = jsonschema.Draft7Validator(self.schema(spec, api=api, optional=optional))
        lines = []
        for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path))):
            where = "$" + "".join(
                f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path
            )
            lines.append(f"{where}: {error.message}")
        return lines

    def validate(
        self,
        spec: str,
        obj: object,
        *,
        api: ApiVersion = SPEC_VERSION,
        optional: Mapping[str, Collection[str]] | None = None,
    ) -> None:
        """Raise AssertionError listing every problem of `obj` against `spec`."""
        problems = self.problems(spec, obj, api=api, optional=optional)
        if problems:
            raise AssertionError(
                f"{spec} does not match {self.path} (client API {api}):\n  "
                + "\n  ".join(problems)
                + "\n(a property that may really be absent belongs in tests/swagger.py "
                "OPTIONAL, with the reason)"
            )

    def all_locations(self) -> set[tuple[str, str]]:
        """(location, property) of every property reachable from any definition or response."""
        self.locations = set()
        for name in self.doc["definitions"]:
            with contextlib.suppress(ValueError):  # a recursive definition cannot be inlined
                self.schema(name)
        for route, ops in self.doc["paths"].items():
            for method, op in ops.items():
                if not isinstance(op, dict):
                    continue
                for status, response in op.get("responses", {}).items():
                    if isinstance(response, dict) and "schema" in response:
                        self.schema(f"{method.upper()} {route} {status}")
        return set(self.locations)


def stale_optional_entries(swagger: Swagger) -> Iterator[str]:
    """Entries of the swagger's OPTIONAL table naming a property the spec does not have."""
    known = swagger.all_locations()
    for location, names in swagger.optional.items():
        for name in names:
            if (location, name) not in known:
                yield f"{location}.{name}"


@functools.cache
def default_swagger() -> Swagger:
    """The Debian-packaged API 1.41 spec, loaded once per test session."""
    return Swagger()


def validate(
    spec: str,
    obj: object,
    *,
    api: ApiVersion = SPEC_VERSION,
    optional: Mapping[str, Collection[str]] | None = None,
) -> None:
    """Validate `obj` (decoded JSON) against `spec` of the default spec; see `Swagger.raw`.

    `api` is the client version the object was encoded for (OPTIONAL entries with `since`
    apply from there); `optional` adds per-call exceptions, e.g. lists a `type` filter left out.
    """
    default_swagger().validate(spec, obj, api=api, optional=optional)
