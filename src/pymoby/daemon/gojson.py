"""Go's encoding/json and fmt as far as dockerd's daemon.json error messages show them.

Rule: dockerd's configuration errors quote values and decoder failures in Go's words; this
module reproduces exactly those texts (`%v` formatting, number literals, syntax errors) so
config.py can report them verbatim. Nothing else belongs here.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from pymoby.log import go_quote


class GoJSONError(ValueError):
    """A decode failure, with Go's message."""


def go_v(value: Any) -> str:
    """Go's `%v` of a decoded JSON value or a flag value (bool, number, string, list, map)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Num):
        return _go_float(float(value.text))
    if isinstance(value, int | float):
        return _go_float(float(value)) if isinstance(value, float) else str(value)
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_v(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_v(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def _go_float(x: float) -> str:
    """strconv.FormatFloat(x, 'g', -1, 64), which `%v` uses."""
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0 or math.isnan(x):
        return "NaN" if math.isnan(x) else "0"
    _sign, digit_tuple, exponent = Decimal(repr(abs(x))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + int(exponent)
    neg = "-" if x < 0 else ""
    if point - 1 < -4 or point - 1 >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{neg}{mantissa}e{'-' if point - 1 < 0 else '+'}{abs(point - 1):02d}"
    if point <= 0:
        return f"{neg}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return neg + digits + "0" * (point - len(digits))
    return f"{neg}{digits[:point]}.{digits[point:]}"


# --- Go's encoding/json, as far as dockerd's error messages show it --------------------------


class Num:
    """A JSON number kept as its literal, so errors can quote it as Go does."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def loads(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8", "replace"), parse_int=Num, parse_float=Num)
    except RecursionError:
        raise GoJSONError("exceeded max depth") from None


def _quote_char(c: int) -> str:
    if c == 0x27:
        return "'\\''"
    return "'" + ('"' if c == 0x22 else go_quote(chr(c))[1:-1]) + "'"


def syntax_error(data: bytes) -> str | None:
    """The text Go's JSON decoder gives for malformed `data`, or None when it is valid."""
    n, i = len(data), 0
    stack: list[int] = []

    def bad(pos: int, context: str) -> str:
        return f"invalid character {_quote_char(data[pos])} {context}"

    def skip(pos: int) -> int:
        while pos < n and data[pos] in b" \t\r\n":
            pos += 1
        return pos

    def digits(pos: int) -> int:
        while pos < n and 0x30 <= data[pos] <= 0x39:
            pos += 1
        return pos

    def scalar(pos: int) -> int | str:
        """Scan the string, number or literal at pos; return its end or an error."""
        c = data[pos]
        if c == 0x22:
            pos += 1
            while pos < n and data[pos] != 0x22:
                if data[pos] == 0x5C:
                    pos += 1
                    if pos < n and data[pos] == 0x75:
                        for _ in range(4):
                            pos += 1
                            if pos < n and data[pos] not in b"0123456789abcdefABCDEF":
                                return bad(pos, "in \\u hexadecimal character escape")
                    elif pos < n and data[pos] not in b'"\\/bfnrt':
                        return bad(pos, "in string escape code")
                elif data[pos] < 0x20:
                    return bad(pos, "in string literal")
                pos += 1
            return pos + 1 if pos < n else "unexpected EOF"
        if c == 0x2D or 0x30 <= c <= 0x39:
            if c == 0x2D:
                pos += 1
                if pos < n and not 0x30 <= data[pos] <= 0x39:
                    return bad(pos, "in numeric literal")
            if pos < n and data[pos] != 0x30:
                pos = digits(pos)
            else:
                pos += 1
            if pos < n and data[pos] == 0x2E:
                pos += 1
                if pos < n and not 0x30 <= data[pos] <= 0x39:
                    return bad(pos, "after decimal point in numeric literal")
                pos = digits(pos)
            if pos < n and data[pos] in b"eE":
                pos += 1
                if pos < n and data[pos] in b"+-":
                    pos += 1
                if pos < n and not 0x30 <= data[pos] <= 0x39:
                    return bad(pos, "in exponent of numeric literal")
                pos = digits(pos)
            return pos if pos <= n and data[pos - 1] not in b"-.eE+" else "unexpected EOF"
        for word in (b"true", b"false", b"null"):
            if c == word[0]:
                for expected in word[1:]:
                    pos += 1
                    if pos >= n:
                        return "unexpected EOF"
                    if data[pos] != expected:
                        literal = word.decode()
                        return bad(pos, f"in literal {literal} (expecting {_quote_char(expected)})")
                return pos + 1
        return bad(pos, "looking for beginning of value")

    state = "value"
    while True:
        i = skip(i)
        if i >= n:
            return None if state == "after" and not stack else "unexpected EOF"
        c = data[i]
        if state == "key":
            if c != 0x22:
                return bad(i, "looking for beginning of object key string")
            end = scalar(i)
            if isinstance(end, str):
                return end
            i = skip(end)
            if i >= n:
                return "unexpected EOF"
            if data[i] != 0x3A:
                return bad(i, "after object key")
            i, state = i + 1, "value"
        elif state == "value":
            if c in b"{[":
                i = skip(i + 1)
                if i < n and data[i] == c + 2:
                    i, state = i + 1, "after"
                    continue
                if len(stack) >= 10000:
                    return "exceeded max depth"
                stack.append(c)
                state = "key" if c == 0x7B else "value"
                continue
            end = scalar(i)
            if isinstance(end, str):
                return end
            i, state = end, "after"
        elif not stack:
            return bad(i, "after top-level value")
        elif c == 0x2C:
            i, state = i + 1, ("key" if stack[-1] == 0x7B else "value")
        elif c == stack[-1] + 2:
            stack.pop()
            i += 1
        else:
            return bad(
                i, "after object key:value pair" if stack[-1] == 0x7B else "after array element"
            )


def kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, Num):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"
