"""One parsed request as handlers see it: path, query, headers, a streaming body, the API version.

Rule: every reading helper turns a client's mistake into `errdefs.InvalidParameter` with a
message naming the parameter, in dockerd's wording; handlers never see a raw parse exception.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar
from urllib.parse import parse_qs

import msgspec

from pymoby import errdefs
from pymoby.api.versions import DEFAULT, ApiVersion
from pymoby.server.body import ByteStream

T = TypeVar("T")

# A JSON request body larger than this is refused; uploads (tar, load) stream instead.
JSON_BODY_LIMIT = 16 << 20

_FALSE = frozenset(("", "0", "no", "false", "none"))


class Request:
    """An HTTP request after routing; `version` is set by the version middleware."""

    __slots__ = (
        "body",
        "content_length",
        "disconnected",
        "headers",
        "method",
        "params",
        "path",
        "query",
        "raw_path",
        "raw_stream",
        "upgrade",
        "version",
        "version_text",
    )

    def __init__(
        self,
        method: str,
        raw_path: str,
        query_string: str,
        headers: dict[str, str],
        body: ByteStream,
        *,
        upgrade: bool = False,
        content_length: int | None = None,
        disconnected: asyncio.Future[None] | None = None,
    ) -> None:
        self.method = method
        self.raw_path = raw_path
        self.path = raw_path
        self.query: dict[str, list[str]] = (
            parse_qs(query_string, keep_blank_values=True) if query_string else {}
        )
        self.headers = headers
        self.body = body
        self.upgrade = upgrade
        self.content_length = content_length
        self.params: dict[str, str] = {}
        self.version: ApiVersion = DEFAULT
        self.version_text = ""
        self.raw_stream: ByteStream | None = None
        self.disconnected = disconnected

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    # -- query --------------------------------------------------------------------------
    def has(self, name: str) -> bool:
        return name in self.query

    def value(self, name: str, default: str = "") -> str:
        """The first value of a query parameter (Go's `FormValue`)."""
        values = self.query.get(name)
        return values[0] if values else default

    def values(self, name: str) -> list[str]:
        return self.query.get(name, [])

    def bool_value(self, name: str, default: bool = False) -> bool:
        """dockerd's `BoolValue`: absent, "", 0, no, false, none are false; anything else true."""
        if name not in self.query:
            return default
        return self.value(name).strip().lower() not in _FALSE

    def strict_bool(self, name: str, default: bool = False) -> bool:
        """dockerd's `BoolValueOrDefault` + ParseBool: only true/false spellings are accepted."""
        if name not in self.query:
            return default
        text = self.value(name).strip()
        if text == "":
            return default
        lowered = text.lower()
        if lowered in ("1", "t", "true"):
            return True
        if lowered in ("0", "f", "false"):
            return False
        raise errdefs.InvalidParameter(
            f'invalid value for {name}: strconv.ParseBool: parsing "{text}": invalid syntax'
        )

    def int_value(self, name: str, default: int = 0) -> int:
        """dockerd's `Int64ValueOrDefault`: an empty value is the default, junk is an error."""
        text = self.value(name).strip()
        if text == "":
            return default
        try:
            return int(text, 10)
        except ValueError:
            raise errdefs.InvalidParameter(
                f'invalid value for {name}: strconv.ParseInt: parsing "{text}": invalid syntax'
            ) from None

    # -- body ---------------------------------------------------------------------------
    def check_json(self) -> None:
        """dockerd's `CheckForJSON`: a body must be declared application/json."""
        ctype = self.header("content-type")
        if not ctype and not self.content_length:
            return
        media = ctype.split(";", 1)[0].strip().lower()
        if media != "application/json":
            raise errdefs.InvalidParameter(
                f"Content-Type specified ({ctype}) must be 'application/json'"
            )

    async def json(self, type_: type[T], *, default: T | None = None) -> T:
        """Decode the body into `type_`; an empty body gives `default` (or an error)."""
        self.check_json()
        data = await self.body.read(JSON_BODY_LIMIT)
        if not data.strip():
            if default is not None:
                return default
            raise errdefs.InvalidParameter("invalid JSON: got EOF while reading request body")
        try:
            return msgspec.json.decode(data, type=type_)
        except msgspec.ValidationError as exc:
            raise errdefs.InvalidParameter(f"invalid JSON: {exc}") from None
        except msgspec.DecodeError as exc:
            raise errdefs.InvalidParameter(f"invalid JSON: {_decode_reason(exc)}") from None

    async def json_any(self) -> Any:
        return await self.json(object, default={})


def _decode_reason(exc: msgspec.DecodeError) -> str:
    text = str(exc)
    return text[0].lower() + text[1:] if text else "malformed JSON"
