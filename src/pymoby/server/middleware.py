"""The request pipeline as a plain function chain: route, log, version, errors, headers.

Rule (dockerd's order): the version middleware stamps `Server`, `Api-Version` and `Ostype` on
every routed response, including its own "too old / too new" errors; `Docker-Experimental` is
added inside it, so version errors lack it, as dockerd's do. Unrouted requests get a bare
`404 page not found` without those headers, again as dockerd answers.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from pymoby import errdefs
from pymoby.api.versions import ApiVersion
from pymoby.server.errors import to_response
from pymoby.server.http import App
from pymoby.server.request import Request
from pymoby.server.response import Response, error_response
from pymoby.server.router import Router

log = logging.getLogger("pymoby.server")

_SECRET_KEYS = ("password", "authconfig", "identitytoken", "data", "privatekey")


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """Facts the middleware stamps on responses."""

    version: str  # pymoby's version, for the Server header
    min_api: ApiVersion
    max_api: ApiVersion
    experimental: Callable[[], bool]
    debug: Callable[[], bool]


def _version_key(text: str) -> tuple[int, ...]:
    """dockerd's versions.compare: dot-separated numbers, missing parts are 0."""
    return tuple(int(p) if p.isdigit() else 0 for p in text.split("."))


def _compare(a: str, b: str) -> int:
    ka, kb = _version_key(a), _version_key(b)
    width = max(len(ka), len(kb))
    ka += (0,) * (width - len(ka))
    kb += (0,) * (width - len(kb))
    return (ka > kb) - (ka < kb)


def _to_api_version(text: str) -> ApiVersion:
    key = (*_version_key(text), 0, 0)
    return ApiVersion(key[0], key[1])


def build_app(router: Router, info: ServerInfo) -> App:
    """The function the connections call: request in, response out, never raises."""
    min_text, max_text = str(info.min_api), str(info.max_api)
    server_header = f"Docker/{info.version} (linux)"

    def stamp(resp: Response) -> Response:
        resp.headers["Server"] = server_header
        resp.headers["Api-Version"] = max_text
        resp.headers["Ostype"] = "linux"
        return resp

    @functools.lru_cache(maxsize=64)
    def check_version(text: str) -> ApiVersion | str:
        """The request's version, or the message refusing it (cached: few distinct values)."""
        if _compare(text, min_text) < 0:
            return (
                f"client version {text} is too old. Minimum supported API version is "
                f"{min_text}, please upgrade your client to a newer version"
            )
        if _compare(text, max_text) > 0:
            return f"client version {text} is too new. Maximum supported API version is {max_text}"
        return _to_api_version(text)

    async def app(req: Request) -> Response:
        try:
            match = router.match(req.method, req.raw_path)
            if match is None:
                return error_response(404, "page not found")
            req.params = match.params
            req.path = req.raw_path if not match.version else req.raw_path[len(match.version) + 2 :]
            if info.debug():
                _log_request(req)
            text = match.version or max_text
            version = check_version(text)
            if isinstance(version, str):
                return stamp(error_response(400, version))
            req.version_text = text
            req.version = version
            route = match.route
            try:
                if route.min_api is not None and req.version < route.min_api:
                    raise errdefs.InvalidParameter(
                        f"{req.method} {req.path} requires API version {route.min_api} or "
                        f"newer (the client uses {text})"
                    )
                resp = await route.handler(req)
            except Exception as exc:
                resp = to_response(exc)
            resp.headers["Docker-Experimental"] = "true" if info.experimental() else "false"
            return stamp(resp)
        except Exception as exc:  # a bug in the pipeline itself: still answer
            return to_response(exc)

    return app


def _log_request(req: Request) -> None:
    query = "&".join(
        f"{k}={'*****' if k.lower() in _SECRET_KEYS else v}"
        for k, vs in req.query.items()
        for v in vs
    )
    target = req.raw_path + (f"?{query}" if query else "")
    log.debug("Calling %s %s", req.method, target)
