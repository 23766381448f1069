"""Wire types of GET /events, and the one place that shapes an event per API version.

Rule: `Message` is the current shape (moby api/types/events): `Type`, `Action`,
`Actor{ID, Attributes}`, then lowercase `scope`, `time`, `timeNano` (omitted when empty/zero).
Per request version, as dockerd's getEvents does:

- API < 1.46: image `create` events are not sent (`event_visible`).
- API < 1.52: the legacy `status`, `id` (container and image events) and `from` (container
  events: the `image` attribute, "" when absent) fields are added; old docker CLIs (< 25) and
  compose crash without them. From 1.52 they are gone (api/docs/CHANGELOG.md, v1.52).
- Content-Type: `application/json` before 1.52 and `application/jsonl` from 1.52, unless the
  Accept header names `application/jsonl`, `application/x-ndjson` or `application/json-seq`
  explicitly (wildcards ignored); json-seq records are framed `RS json LF` (RFC 7464), the others
  `json LF`. (This is moby master; the docker 29.0 release negotiated x-ndjson / json-seq and
  kept `application/json` as the default on every version.)

Encoding matches Go's encoding/json: attribute keys sorted, `<`, `>`, `&`, U+2028 and U+2029
escaped as `\\u003c` etc.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

import msgspec

from pymoby.api.versions import ApiVersion

__all__ = [
    "MEDIA_TYPE_JSON",
    "MEDIA_TYPE_JSON_LINES",
    "MEDIA_TYPE_JSON_SEQUENCE",
    "MEDIA_TYPE_NDJSON",
    "Action",
    "Actor",
    "EventType",
    "Message",
    "decode_event",
    "encode_event",
    "event_visible",
    "events_content_type",
    "frame_event",
]

MEDIA_TYPE_JSON = "application/json"
MEDIA_TYPE_JSON_LINES = "application/jsonl"
MEDIA_TYPE_NDJSON = "application/x-ndjson"
MEDIA_TYPE_JSON_SEQUENCE = "application/json-seq"

_STREAM_TYPES = (MEDIA_TYPE_JSON_LINES, MEDIA_TYPE_NDJSON, MEDIA_TYPE_JSON_SEQUENCE)
_LEGACY_FIELDS_REMOVED = ApiVersion(1, 52)
_IMAGE_CREATE_ADDED = ApiVersion(1, 46)
_JSONL_DEFAULT = ApiVersion(1, 52)


class EventType(StrEnum):
    """Kinds of objects that emit events (moby events.Type)."""

    BUILDER = "builder"
    CONFIG = "config"
    CONTAINER = "container"
    DAEMON = "daemon"
    IMAGE = "image"
    NETWORK = "network"
    NODE = "node"
    PLUGIN = "plugin"
    SECRET = "secret"
    SERVICE = "service"
    VOLUME = "volume"


class Action(StrEnum):
    """Event actions (moby events.Action).

    `exec_create`, `exec_start` and `health_status` are prefixes: the emitted action is e.g.
    `exec_start: sh -c 'echo hi'` or `health_status: healthy`.
    """

    CREATE = "create"
    START = "start"
    RESTART = "restart"
    STOP = "stop"
    CHECKPOINT = "checkpoint"
    PAUSE = "pause"
    UNPAUSE = "unpause"
    ATTACH = "attach"
    DETACH = "detach"
    RESIZE = "resize"
    UPDATE = "update"
    RENAME = "rename"
    KILL = "kill"
    DIE = "die"
    OOM = "oom"
    DESTROY = "destroy"
    REMOVE = "remove"
    COMMIT = "commit"
    TOP = "top"
    COPY = "copy"
    ARCHIVE_PATH = "archive-path"
    EXTRACT_TO_DIR = "extract-to-dir"
    EXPORT = "export"
    IMPORT = "import"
    SAVE = "save"
    LOAD = "load"
    TAG = "tag"
    UNTAG = "untag"
    PUSH = "push"
    PULL = "pull"
    PRUNE = "prune"
    DELETE = "delete"
    ENABLE = "enable"
    DISABLE = "disable"
    CONNECT = "connect"
    DISCONNECT = "disconnect"
    RELOAD = "reload"
    MOUNT = "mount"
    UNMOUNT = "unmount"
    EXEC_CREATE = "exec_create"
    EXEC_START = "exec_start"
    EXEC_DIE = "exec_die"
    EXEC_DETACH = "exec_detach"
    HEALTH_STATUS = "health_status"
    HEALTH_STATUS_RUNNING = "health_status: running"
    HEALTH_STATUS_HEALTHY = "health_status: healthy"
    HEALTH_STATUS_UNHEALTHY = "health_status: unhealthy"


class Actor(msgspec.Struct, frozen=True):
    """What emitted the event: its ID and attributes (labels, name, image, ...)."""

    id: str = msgspec.field(name="ID")
    attributes: dict[str, str] = msgspec.field(name="Attributes", default_factory=dict)


class Message(msgspec.Struct, frozen=True, omit_defaults=True):
    """One event, in the shape API >= 1.52 sends."""

    type: str = msgspec.field(name="Type")
    action: str = msgspec.field(name="Action")
    actor: Actor = msgspec.field(name="Actor")
    scope: str = ""
    time: int = 0
    time_nano: int = msgspec.field(name="timeNano", default=0)


class _LegacyMessage(msgspec.Struct, frozen=True, omit_defaults=True):
    """The API < 1.52 shape: the deprecated fields first, as docker <= 28 ordered them."""

    status: str | msgspec.UnsetType = msgspec.UNSET
    id: str | msgspec.UnsetType = msgspec.UNSET
    from_: str | msgspec.UnsetType = msgspec.field(name="from", default=msgspec.UNSET)
    type: str = msgspec.field(name="Type", default="")
    action: str = msgspec.field(name="Action", default="")
    actor: Actor = msgspec.field(name="Actor", default_factory=lambda: Actor(id=""))
    scope: str = ""
    time: int = 0
    time_nano: int = msgspec.field(name="timeNano", default=0)


_ENCODER = msgspec.json.Encoder(order="deterministic")
_DECODER = msgspec.json.Decoder(Message)


def event_visible(msg: Message, version: ApiVersion) -> bool:
    """False for events a client of this version must not see (image create before 1.46)."""
    if version < _IMAGE_CREATE_ADDED:
        return not (msg.type == EventType.IMAGE and msg.action == Action.CREATE)
    return True


def _legacy(msg: Message) -> _LegacyMessage | Message:
    if msg.type == EventType.CONTAINER:
        return _LegacyMessage(
            status=msg.action,
            id=msg.actor.id,
            from_=msg.actor.attributes.get("image", ""),
            type=msg.type,
            action=msg.action,
            actor=msg.actor,
            scope=msg.scope,
            time=msg.time,
            time_nano=msg.time_nano,
        )
    if msg.type == EventType.IMAGE:
        return _LegacyMessage(
            status=msg.action,
            id=msg.actor.id,
            type=msg.type,
            action=msg.action,
            actor=msg.actor,
            scope=msg.scope,
            time=msg.time,
            time_nano=msg.time_nano,
        )
    return msg


def _go_escape(data: bytes) -> bytes:
    """Go's encoding/json HTML-safe escaping. These bytes only occur inside JSON strings."""
    if b"<" in data or b">" in data or b"&" in data:
        data = data.replace(b"<", b"\\u003c").replace(b">", b"\\u003e").replace(b"&", b"\\u0026")
    if b"\xe2\x80" in data:
        data = data.replace("\u2028".encode(), b"\\u2028").replace("\u2029".encode(), b"\\u2029")
    return data


def encode_event(msg: Message, version: ApiVersion) -> bytes:
    """One JSON object, without a trailing newline, shaped for `version`."""
    body: Message | _LegacyMessage = msg
    if version < _LEGACY_FIELDS_REMOVED:
        body = _legacy(msg)
    return _go_escape(_ENCODER.encode(body))


def decode_event(data: bytes | str) -> Message:
    """Parse one event object (either shape; legacy fields are ignored)."""
    return _DECODER.decode(data)


def frame_event(payload: bytes, content_type: str) -> bytes:
    """One record of the stream: `RS payload LF` for json-seq, `payload LF` otherwise."""
    if content_type == MEDIA_TYPE_JSON_SEQUENCE:
        return b"\x1e" + payload + b"\n"
    return payload + b"\n"


def events_content_type(version: ApiVersion, accept: str | Iterable[str] | None = None) -> str:
    """The Content-Type of GET /events for this version and these Accept header values."""
    default = MEDIA_TYPE_JSON if version < _JSONL_DEFAULT else MEDIA_TYPE_JSON_LINES
    return _match_accept_strict(accept, _STREAM_TYPES) or default


# -- Accept parsing, as github.com/golang/gddo/httputil/header.ParseAccept ----------------------

_SEPARATORS = frozenset('()<>@,;:\\"/[]?={} \t')


def _is_token_char(ch: str) -> bool:
    code = ord(ch)
    return 0x20 < code < 0x7F and ch not in _SEPARATORS


def _skip_space(text: str) -> str:
    return text.lstrip(" \t\r\n")


def _quality(text: str) -> tuple[float, str]:
    if not text or text[0] not in "01":
        return -1.0, ""
    value = float(text[0])
    text = text[1:]
    if not text.startswith("."):
        return value, text
    text = text[1:]
    i = 0
    numerator, denominator = 0, 1
    while i < len(text) and "0" <= text[i] <= "9":
        numerator = numerator * 10 + int(text[i])
        denominator *= 10
        i += 1
    return value + numerator / denominator, text[i:]


def _parse_accept(values: list[str]) -> list[tuple[str, float]]:
    specs: list[tuple[str, float]] = []
    for line in values:
        text = line
        while True:
            i = 0
            while i < len(text) and (text[i] == "/" or _is_token_char(text[i])):
                i += 1
            media, text = text[:i], text[i:]
            if not media:
                break
            q = 1.0
            text = _skip_space(text)
            if text.startswith(";"):
                text = _skip_space(text[1:])
                if not text.startswith("q="):
                    break
                q, text = _quality(text[2:])
                if q < 0:
                    break
            specs.append((media, q))
            text = _skip_space(text)
            if not text.startswith(","):
                break
            text = _skip_space(text[1:])
    return specs


def _match_accept_strict(accept: str | Iterable[str] | None, offers: Iterable[str]) -> str:
    """moby's contenttype.MatchAcceptStrict: the best offer named explicitly, or ""."""
    if accept is None:
        return ""
    values = [accept] if isinstance(accept, str) else list(accept)
    if not values or values[0] == "":
        return ""
    specs = _parse_accept(values)
    best, best_q = "", -1.0
    for offer in offers:
        for media, q in specs:
            if q == 0 or media != offer:
                continue
            if q > best_q:
                best, best_q = offer, q
    return best
