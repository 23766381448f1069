"""Timestamps in query parameters and filters, parsed as dockerd's server parses them.

Rule: two parsers, as in moby's daemon/internal/timestamp, and results are integer nanoseconds
since the Unix epoch (UTC).

- `parse_unix_timestamp` (moby `ParseUnixTimestamp`) is the only form the server accepts for the
  `since` / `until` query parameters of `/events`, `/containers/{id}/logs` and the swarm log
  endpoints: `seconds` or `seconds.fraction`. Clients (docker CLI) convert RFC 3339 dates and
  relative durations to this form before sending. `parse_event_range` applies the /events rules
  on top (messages `invalid value for 'since': ...` and the since/until ordering check).
- `parse_time` (moby `Parse`) is used for `until` *filters* (prune, image list, build cache):
  a Go duration relative to now (`24h`, `1h30m`, `-5m`), RFC 3339 (with or without zone, with or
  without seconds, minutes, fraction), a bare date, or a Unix timestamp. Dates without a zone
  are read in the daemon's local zone. Error texts are Go's (`parsing time "x" as "y": ...`).

Errors are errdefs.InvalidParameter whose message names the value.
"""

from __future__ import annotations

import time as _time

from pymoby import errdefs

__all__ = [
    "format_unix_timestamp",
    "parse_duration",
    "parse_event_range",
    "parse_time",
    "parse_unix_timestamp",
]

NANOSECOND = 1
MICROSECOND = 1_000
MILLISECOND = 1_000_000
SECOND = 1_000_000_000
_INT64_MAX = (1 << 63) - 1
_INT64_MIN = -(1 << 63)

# Go's time.ParseDuration units.
_UNITS = {
    "ns": NANOSECOND,
    "us": MICROSECOND,
    "\u00b5s": MICROSECOND,  # U+00B5 micro sign
    "\u03bcs": MICROSECOND,  # U+03BC Greek small letter mu
    "ms": MILLISECOND,
    "s": SECOND,
    "m": 60 * SECOND,
    "h": 3600 * SECOND,
}


def format_unix_timestamp(ns: int) -> str:
    """`seconds.nanoseconds` with 9 fraction digits, the form clients send."""
    seconds, nanos = divmod(ns, SECOND)
    return f"{seconds}.{nanos:09d}"


# -- Unix timestamps (the server's since/until) -------------------------------------------------


def _go_strquote(text: str) -> str:
    """Go's `%q` of a string, close enough for error messages."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif not ch.isprintable():
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _go_runequote(code: int) -> str:
    """Go's `%q` of a byte value (printed as a rune literal)."""
    ch = chr(code)
    if ch in "'\\":
        return "'\\" + ch + "'"
    if code < 0x20 or code == 0x7F:
        return f"'\\x{code:02x}'"
    if not ch.isprintable():
        return f"'\\u{code:04x}'"
    return f"'{ch}'"


def _parse_int64(text: str) -> int:
    """Go's strconv.ParseInt(text, 10, 64); ValueError carries Go's reason."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits or not all("0" <= c <= "9" for c in digits):
        raise ValueError("invalid syntax")
    value = int(text)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError("value out of range")
    return value


def _parse_seconds_fraction(value: str) -> int:
    """moby's parseTimestamp: `seconds[.fraction]` -> ns; ValueError with moby's text."""
    seconds_text, dot, fraction = value.partition(".")
    try:
        seconds = _parse_int64(seconds_text)
    except ValueError as exc:
        raise ValueError(f"invalid seconds {_go_strquote(seconds_text)}: {exc}") from None
    if not dot or fraction in ("", "0", "000000000"):
        return seconds * SECOND
    max_digits = 20
    raw = fraction.encode()
    if len(raw) > max_digits:
        raise ValueError(
            f"invalid nanoseconds: length {len(raw)} exceeds maximum {max_digits}",
        )
    for position, byte in enumerate(raw):
        if not 0x30 <= byte <= 0x39:
            raise ValueError(
                f"invalid nanoseconds: invalid character {_go_runequote(byte)} "
                f"at position {position}",
            )
    nanos = int(fraction[:9].ljust(9, "0"))
    return seconds * SECOND + nanos


def parse_unix_timestamp(value: str) -> int | None:
    """moby's ParseUnixTimestamp: "" -> None, else `seconds[.fraction]` -> ns.

    The fraction is right-padded to 9 digits or truncated after 9 (at most 20 digits).
    Raises InvalidParameter `invalid timestamp "x": invalid seconds "x": invalid syntax`.
    """
    if value == "":
        return None
    try:
        return _parse_seconds_fraction(value)
    except ValueError as exc:
        raise errdefs.InvalidParameter(f"invalid timestamp {_go_strquote(value)}: {exc}") from None


# dockerd's getEvents: time.Time{} (year 1) stands for "not given" when comparing.
_GO_ZERO_TIME_NS = -62135596800 * SECOND


def parse_event_range(since: str, until: str) -> tuple[int | None, int | None]:
    """The `since` / `until` query values of GET /events -> ns, None when not given.

    Raises InvalidParameter `invalid value for 'since': invalid timestamp ...` and
    ``"`since` time (a) cannot be after `until` time (b)"`` as dockerd does.
    """
    parsed: list[int | None] = []
    for name, text in (("since", since), ("until", until)):
        try:
            parsed.append(parse_unix_timestamp(text))
        except errdefs.InvalidParameter as exc:
            raise errdefs.InvalidParameter(f"invalid value for '{name}': {exc.message}") from None
    since_ns, until_ns = parsed
    if until_ns is not None:
        lower = _GO_ZERO_TIME_NS if since_ns is None else since_ns
        if until_ns < lower:
            raise errdefs.InvalidParameter(
                f"`since` time ({since}) cannot be after `until` time ({until})",
            )
    return since_ns, until_ns


# -- Go durations --------------------------------------------------------------------------------


def _go_timequote(text: str) -> str:
    """The `quote` of Go's time package: non-ASCII and control bytes as `\\xNN`."""
    out = ['"']
    for ch in text:
        if ord(ch) >= 0x80 or ord(ch) < 0x20:
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
        else:
            if ch in '"\\':
                out.append("\\")
            out.append(ch)
    out.append('"')
    return "".join(out)


def parse_duration(value: str) -> int:
    """Go's time.ParseDuration -> ns, e.g. `1h30m`, `-1.5h`, `300ms`, `2h45m10.5s`.

    Raises InvalidParameter with Go's text (`time: invalid duration "x"`, `time: missing unit in
    duration "1"`, `time: unknown unit "d" in duration "1d"`).
    """
    quoted = _go_timequote(value)
    rest = value
    negative = False
    if rest[:1] in ("-", "+"):
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise errdefs.InvalidParameter(f"time: invalid duration {quoted}")
    total = 0
    while rest:
        if not (rest[0] == "." or "0" <= rest[0] <= "9"):
            raise errdefs.InvalidParameter(f"time: invalid duration {quoted}")
        i = 0
        while i < len(rest) and "0" <= rest[i] <= "9":
            i += 1
        whole_text, rest = rest[:i], rest[i:]
        whole = int(whole_text) if whole_text else 0
        if whole > 1 << 63:
            raise errdefs.InvalidParameter(f"time: invalid duration {quoted}")
        fraction, scale, has_fraction = 0, 1.0, False
        if rest[:1] == ".":
            rest = rest[1:]
            j = 0
            overflow = False
            while j < len(rest) and "0" <= rest[j] <= "9":
                if not overflow:
                    if fraction > ((1 << 63) - 1) // 10:
                        overflow = True
                    else:
                        fraction = fraction * 10 + int(rest[j])
                        scale *= 10
                j += 1
            has_fraction = j > 0
            rest = rest[j:]
        if not whole_text and not has_fraction:
            raise errdefs.InvalidParameter(f"time: invalid duration {quoted}")
        k = 0
        while k < len(rest) and not (rest[k] == "." or "0" <= rest[k] <= "9"):
            k += 1
        if k == 0:
            raise errdefs.InvalidParameter(f"time: missing unit in duration {quoted}")
        unit_text, rest = rest[:k], rest[k:]
        unit = _UNITS.get(unit_text)
        if unit is None:
            raise errdefs.InvalidParameter(
                f"time: unknown unit {_go_timequote(unit_text)} in duration {quoted}",
            )
        if whole > (1 << 63) // unit:
            raise errdefs.InvalidParameter(f"time: invalid duration {quoted}")
        amount = whole * unit
        if fraction > 0:
            amount += int(float(fraction) * (float(unit) / scale))
            if amount > 1 << 63:
                raise errdefs.InvalidParameter(f"time: invalid duration {quoted}")
        total += amount
        if total > 1 << 63:
            raise errdefs.InvalidParameter(f"time: invalid duration {quoted}")
    if negative:
        return -total
    if total > _INT64_MAX:
        raise errdefs.InvalidParameter(f"time: invalid duration {quoted}")
    return total


# -- Go layouts (moby's Parse) -----------------------------------------------------------------

_RFC3339 = "2006-01-02T15:04:05Z07:00"
_RFC3339_NANO = "2006-01-02T15:04:05.999999999Z07:00"
_RFC3339_LOCAL = "2006-01-02T15:04:05"
_RFC3339_NANO_LOCAL = "2006-01-02T15:04:05.999999999"
_DATE_WITH_ZONE = "2006-01-02Z07:00"
_DATE_LOCAL = "2006-01-02"
_STD_CHUNKS = (".999999999", "Z07:00", "2006", "01", "02", "15", "04", "05")


class _LayoutError(Exception):
    """A Go time.ParseError, already formatted."""


def _layout_chunks(layout: str) -> list[tuple[bool, str]]:
    """Split a layout into (is_std, text) chunks; literals are merged."""
    chunks: list[tuple[bool, str]] = []
    i = 0
    while i < len(layout):
        for std in _STD_CHUNKS:
            if layout.startswith(std, i):
                chunks.append((True, std))
                i += len(std)
                break
        else:
            if chunks and not chunks[-1][0]:
                chunks[-1] = (False, chunks[-1][1] + layout[i])
            else:
                chunks.append((False, layout[i]))
            i += 1
    return chunks


def _getnum(value: str, fixed: bool) -> tuple[int, str]:
    """Go's getnum: one or two digits (exactly two when fixed)."""
    if not value or not "0" <= value[0] <= "9":
        raise ValueError
    if len(value) < 2 or not "0" <= value[1] <= "9":
        if fixed:
            raise ValueError
        return int(value[0]), value[1:]
    return int(value[:2]), value[2:]


def _is_digits(text: str) -> bool:
    return bool(text) and all("0" <= c <= "9" for c in text)


def _fraction_ns(digits: str) -> int:
    """Go's parseNanoseconds on the digits after the separator (truncated at 9)."""
    return int(digits[:9].ljust(9, "0"))


def _days_in(month: int, year: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _go_parse(layout: str, value: str, default_offset: int) -> int:
    """Go's time.Parse / ParseInLocation for the layouts above; instant in ns."""

    def fail(std: str, rest: str, message: str = "") -> _LayoutError:
        if message:
            return _LayoutError(f"parsing time {_go_timequote(value)}{message}")
        return _LayoutError(
            f"parsing time {_go_timequote(value)} as {_go_timequote(layout)}: "
            f"cannot parse {_go_timequote(rest)} as {_go_timequote(std)}",
        )

    year = month = day = hour = minute = second = nanos = 0
    offset: int | None = None
    rest = value
    chunks = _layout_chunks(layout)
    for index, (is_std, std) in enumerate(chunks):
        if not is_std:
            if not rest.startswith(std):
                raise fail(std, rest)
            rest = rest[len(std) :]
            continue
        hold = rest
        range_error = ""
        try:
            if std == "2006":
                if len(rest) < 4 or not _is_digits(rest[:4]):
                    raise ValueError
                year, rest = int(rest[:4]), rest[4:]
            elif std == "01":
                month, rest = _getnum(rest, True)
                if not 1 <= month <= 12:
                    range_error = "month"
            elif std == "02":
                day, rest = _getnum(rest, True)
                if day > 31:
                    range_error = "day"
            elif std == "15":
                hour, rest = _getnum(rest, False)
                if hour >= 24:
                    range_error = "hour"
            elif std == "04":
                minute, rest = _getnum(rest, True)
                if minute >= 60:
                    range_error = "minute"
            elif std == "05":
                second, rest = _getnum(rest, True)
                if second >= 60:
                    range_error = "second"
                next_is_fraction = index + 1 < len(chunks) and chunks[index + 1][1].startswith(".9")
                if (
                    not next_is_fraction
                    and len(rest) >= 2
                    and rest[0] in ".,"
                    and "0" <= rest[1] <= "9"
                ):
                    nanos, rest = _take_fraction(rest)
            elif std == ".999999999":
                if len(rest) >= 2 and rest[0] in ".," and "0" <= rest[1] <= "9":
                    nanos, rest = _take_fraction(rest)
            elif rest[:1] == "Z":  # "Z07:00"
                offset, rest = 0, rest[1:]
            else:
                if len(rest) < 6 or rest[3] != ":":
                    raise ValueError
                sign, hh, mm, rest = rest[0], rest[1:3], rest[4:6], rest[6:]
                bad = not (_is_digits(hh) and _is_digits(mm)) or sign not in ("+", "-")
                hours = int(hh) if _is_digits(hh) else 0
                minutes = int(mm) if _is_digits(mm) else 0
                if hours > 24:
                    range_error = "time zone offset hour"
                if minutes > 60:
                    range_error = "time zone offset minute"
                if bad and not range_error:
                    raise ValueError
                offset = (hours * 60 + minutes) * 60
                if sign == "-":
                    offset = -offset
        except ValueError:
            raise fail(std, hold) from None
        if range_error:
            raise fail(std, rest, f": {range_error} out of range")
    if rest:
        raise fail("", rest, f": extra text: {_go_timequote(rest)}")
    if day < 1 or day > _days_in(month, year):
        raise fail("", rest, ": day out of range")
    days = _days_from_civil(year, month, day)
    seconds = days * 86400 + hour * 3600 + minute * 60 + second
    seconds -= default_offset if offset is None else offset
    return seconds * SECOND + nanos


def _take_fraction(rest: str) -> tuple[int, str]:
    """Consume a separator and every digit after it; return (ns, rest)."""
    end = 1
    while end < len(rest) and "0" <= rest[end] <= "9":
        end += 1
    return _fraction_ns(rest[1:end]), rest[end:]


def _local_offset(now_ns: int) -> int:
    """The local zone's UTC offset in seconds at `now_ns`."""
    return _time.localtime(now_ns // SECOND).tm_gmtoff


def parse_time(value: str, now_ns: int | None = None, utc_offset: int | None = None) -> int:
    """moby's timestamp.Parse -> ns: duration before now, RFC 3339, date or Unix timestamp.

    `now_ns` defaults to the current time; `utc_offset` (seconds east of UTC) is the zone used
    for values without one and defaults to the daemon's local zone at `now_ns`.
    """
    if now_ns is None:
        now_ns = _time.time_ns()
    if not value.strip():
        raise errdefs.InvalidParameter(
            "failed to parse value as time or duration: value is empty",
        )
    if value != "0":
        try:
            return now_ns - parse_duration(value)
        except errdefs.InvalidParameter:
            pass

    in_location = not any(c in value for c in "zZ+") and value.count("-") != 3
    if "." in value:
        layout = _RFC3339_NANO_LOCAL if in_location else _RFC3339_NANO
    elif "T" in value:
        colons = value.count(":")
        if not in_location and not any(c in value for c in "zZ") and colons > 0:
            colons -= 1  # the zone offset's colon
        if in_location:
            layout = ("2006-01-02T15", "2006-01-02T15:04", _RFC3339_LOCAL)[min(colons, 2)]
        else:
            layout = ("2006-01-02T15Z07:00", "2006-01-02T15:04Z07:00", _RFC3339)[min(colons, 2)]
    else:
        layout = _DATE_LOCAL if in_location else _DATE_WITH_ZONE

    if in_location:
        default_offset = _local_offset(now_ns) if utc_offset is None else utc_offset
    else:
        default_offset = 0
    try:
        return _go_parse(layout, value, default_offset)
    except _LayoutError as exc:
        if "-" in value:
            # Probably an RFC 3339-like value that did not parse: report Go's parse error.
            raise errdefs.InvalidParameter(str(exc)) from None
    try:
        return _parse_seconds_fraction(value)
    except ValueError as exc:
        raise errdefs.InvalidParameter(
            f"failed to parse value as time or duration: {exc}",
        ) from None
