"""Routes as data: `Route(method, path, handler, min_api)`; served with and without `/vX.Y`.

Rule: a path pattern is literal text with `{name}` (one segment) or `{name:.*}` (may contain
slashes, for image names); routes are tried in table order, like gorilla/mux in dockerd. A
request whose method and path match nothing is `404 page not found`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from pymoby.api.versions import ApiVersion
from pymoby.server.request import Request
from pymoby.server.response import Response

Handler = Callable[[Request], Awaitable[Response]]

_VERSION_PREFIX = re.compile(r"^/v([0-9.]+)(/.*)$")
_PARAM = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)(?::([^}]*))?\}")


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    min_api: ApiVersion | None = None
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", compile_path(self.path))


def compile_path(path: str) -> re.Pattern[str]:
    out: list[str] = []
    pos = 0
    for m in _PARAM.finditer(path):
        out.append(re.escape(path[pos : m.start()]))
        out.append(f"(?P<{m.group(1)}>{m.group(2) or '[^/]+'})")
        pos = m.end()
    out.append(re.escape(path[pos:]))
    return re.compile("^" + "".join(out) + "$")


@dataclass(frozen=True, slots=True)
class Match:
    route: Route
    params: dict[str, str]
    version: str  # the `X.Y` of a `/vX.Y` prefix, "" without one


class Router:
    def __init__(self, routes: Iterable[Route]) -> None:
        self._by_method: dict[str, list[Route]] = {}
        for route in routes:
            self._by_method.setdefault(route.method, []).append(route)

    def match(self, method: str, path: str) -> Match | None:
        version = ""
        m = _VERSION_PREFIX.match(path)
        if m is not None:
            version, path = m.group(1), m.group(2)
        for route in self._by_method.get(method, ()):
            found = route.pattern.match(path)
            if found is not None:
                return Match(route, found.groupdict(), version)
        return None
