"""JSON progress messages (moby's jsonstream.Message): pull, push, load, import, build output.

Rule: one message per line, terminated by CRLF as dockerd's streamformatter writes them; empty
fields are omitted. An error after the stream has started travels in-band as
`{"errorDetail":{"message":...},"error":...}`.
"""

from __future__ import annotations

from typing import Any

import msgspec

NEWLINE = b"\r\n"


class Progress(msgspec.Struct, omit_defaults=True):
    current: int = 0
    total: int = 0
    start: int = 0
    hidecounts: bool = False
    units: str = ""


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    message: str = ""
    code: int = 0


class Message(msgspec.Struct, omit_defaults=True):
    """One line of a progress stream; field order as dockerd encodes it."""

    stream: str = ""
    status: str = ""
    progressDetail: Progress | None = None
    id: str = ""
    errorDetail: ErrorDetail | None = None
    error: str = ""
    aux: Any = None


_encoder = msgspec.json.Encoder()


def encode(msg: Message) -> bytes:
    return _encoder.encode(msg) + NEWLINE


def status(text: str, id: str = "") -> bytes:
    """dockerd's FormatStatus."""
    return encode(Message(status=text, id=id))


def stream(text: str) -> bytes:
    return encode(Message(stream=text))


def progress(action: str, id: str, current: int, total: int = 0) -> bytes:
    return encode(Message(status=action, id=id, progressDetail=Progress(current, total)))


def error(text: str) -> bytes:
    """dockerd's FormatError: the in-band error line."""
    return encode(Message(errorDetail=ErrorDetail(message=text), error=text))
