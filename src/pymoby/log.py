"""Daemon logging in dockerd's logrus text format, on top of stdlib `logging`.

Rule: one line per record, `time="<RFC3339 with 9 fraction digits>" level=<name> msg=<text>`
followed by the record's fields sorted by key, each `key=value`; a value is written bare when it
is only `[A-Za-z0-9-._/@^+]` and Go-quoted (`%q`) otherwise -- logrus's TextFormatter rules,
byte for byte. This module imports nothing from pymoby, so any layer may use it.

Fields travel in `extra={"fields": {...}}` (see `fields()`), or through `with_fields()`.
Level names are logrus's: trace, debug, info, warning, error, fatal.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, TextIO

TRACE = 5
LEVELS: dict[str, int] = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "panic": logging.CRITICAL,
}
_FIXED_KEYS = ("time", "level", "msg")
_BARE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._/@^+")
_ESCAPES = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v"}

_handler: logging.Handler | None = None


def parse_level(name: str) -> int:
    """logrus.ParseLevel: case-insensitive level name -> stdlib level number."""
    try:
        return LEVELS[name.lower()]
    except KeyError:
        raise ValueError(f"unable to parse logging level: {name}") from None


def level_name(levelno: int) -> str:
    """The logrus name for a stdlib level number."""
    if levelno >= logging.CRITICAL:
        return "fatal"
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warning"
    if levelno >= logging.INFO:
        return "info"
    return "debug" if levelno >= logging.DEBUG else "trace"


def go_quote(text: str) -> str:
    """Go's strconv.Quote (fmt `%q`): double quotes, printable runes kept, others escaped."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif code in _ESCAPES:
            out.append(_ESCAPES[code])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def go_string(value: object) -> str:
    """fmt.Sprint of a field value: Go spellings for bool and nil."""
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "<nil>"
    return str(value)


def format_value(value: object) -> str:
    """A field value as logrus writes it: bare when safe, else Go-quoted."""
    text = go_string(value)
    return text if all(ch in _BARE for ch in text) else go_quote(text)


def format_timestamp(ns: int) -> str:
    """RFC3339 with nanoseconds in local time, `Z` for UTC (dockerd's RFC3339NanoFixed)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    tm = time.localtime(seconds)
    offset = tm.tm_gmtoff or 0
    if offset == 0:
        zone = "Z"
    else:
        sign = "+" if offset > 0 else "-"
        hours, minutes = divmod(abs(offset) // 60, 60)
        zone = f"{sign}{hours:02d}:{minutes:02d}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", tm) + f".{frac:09d}" + zone


def format_line(
    ns: int, levelno: int, msg: str, record_fields: Mapping[str, object] | None = None
) -> str:
    """One logrus text line (without the newline)."""
    data: dict[str, object] = {}
    for key, value in (record_fields or {}).items():
        data[f"fields.{key}" if key in _FIXED_KEYS else key] = value
    msg = msg.removesuffix("\n")
    parts = [f"time={format_value(format_timestamp(ns))}", f"level={level_name(levelno)}"]
    if msg:
        parts.append(f"msg={format_value(msg)}")
    parts.extend(f"{key}={format_value(data[key])}" for key in sorted(data))
    return " ".join(parts)


class LogfmtFormatter(logging.Formatter):
    """stdlib Formatter writing logrus text lines; `clock` returns nanoseconds (for tests)."""

    def __init__(self, clock: Callable[[], int] | None = None) -> None:
        super().__init__()
        self._clock = clock

    def format(self, record: logging.LogRecord) -> str:
        ns = self._clock() if self._clock else int(record.created * 1_000_000_000)
        record_fields: dict[str, object] = {}
        extra = getattr(record, "fields", None)
        if isinstance(extra, Mapping):
            record_fields.update(extra)
        if record.exc_info and record.exc_info[1] is not None:
            record_fields.setdefault("error", str(record.exc_info[1]))
            record_fields["stack"] = "".join(traceback.format_exception(*record.exc_info))
        return format_line(ns, record.levelno, record.getMessage(), record_fields)


class FieldsAdapter(logging.LoggerAdapter[logging.Logger]):
    """A logger that adds fixed fields to every record (logrus `WithFields`)."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        extra = dict(kwargs.get("extra") or {})
        merged = dict(self.extra or {})
        merged.update(extra.get("fields") or {})
        extra["fields"] = merged
        kwargs["extra"] = extra
        return msg, kwargs

    def with_fields(self, **more: object) -> FieldsAdapter:
        merged = dict(self.extra or {})
        merged.update(more)
        return FieldsAdapter(self.logger, merged)


def fields(**kv: object) -> dict[str, dict[str, object]]:
    """`extra=` argument carrying fields: `logger.info("msg", extra=fields(host=h))`."""
    return {"fields": kv}


def with_fields(logger: logging.Logger, **kv: object) -> FieldsAdapter:
    """`logger` with fields added to every record."""
    return FieldsAdapter(logger, kv)


def get_logger(name: str = "pymoby") -> logging.Logger:
    return logging.getLogger(name)


def configure(level: str = "info", stream: TextIO | None = None) -> logging.Handler:
    """Route every logger (root) to `stream` (default stderr) in logrus format at `level`.

    Calling it again replaces the handler it installed before; foreign handlers stay.
    """
    global _handler
    levelno = parse_level(level)
    logging.addLevelName(TRACE, "TRACE")
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root.addHandler(handler)
    root.setLevel(levelno)
    _handler = handler
    return handler


def reset() -> None:
    """Remove the handler `configure` installed (tests, embedding)."""
    global _handler
    if _handler is not None:
        logging.getLogger().removeHandler(_handler)
        _handler = None


def set_level(level: str) -> None:
    """Change the level at run time (SIGHUP reload of `debug` / `log-level`)."""
    logging.getLogger().setLevel(parse_level(level))
