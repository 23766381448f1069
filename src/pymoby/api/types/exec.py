"""Wire types of the exec endpoints: create and start bodies, the create answer, exec inspect.

Rule: each Struct mirrors moby's Go type (api/types/container exec*.go) with the exact JSON
names. Request bodies are decoded with Go's encoding/json rules (`go_normalize`: `null` keeps the
zero value, keys match case-insensitively, unknown keys are ignored); `ConsoleSize` is Go's
`*[2]uint`: absent or `null` is None, a shorter array is zero-padded, a longer one is an error.
Encoding: `ExecInspect` keeps Go's field order; `DetachKeys` is a Go `[]byte` (base64 in JSON,
`""` when empty); `ProcessConfig.user` is omitempty and `ExitCode` is `null` until the process
has exited.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, TypeVar

import msgspec
import msgspec.inspect as mi

from pymoby import errdefs
from pymoby.api.types.containers import go_normalize

T = TypeVar("T")
UInt = Annotated[int, msgspec.Meta(ge=0)]

__all__ = [
    "ExecCreateRequest",
    "ExecInspect",
    "ExecStartRequest",
    "decode_exec_create",
    "decode_exec_start",
    "encode_exec_created",
    "encode_exec_inspect",
]


class ExecCreateRequest(msgspec.Struct, rename="pascal", kw_only=True):
    """POST /containers/{id}/exec (container.ExecCreateRequest)."""

    user: str = ""
    privileged: bool = False
    tty: bool = False
    console_size: list[UInt] | None = None  # [height, width]
    attach_stdin: bool = False
    attach_stderr: bool = False
    attach_stdout: bool = False
    detach_keys: str = ""
    env: list[str] | None = None
    working_dir: str = ""
    cmd: list[str] | None = None


class ExecStartRequest(msgspec.Struct, rename="pascal", kw_only=True):
    """POST /exec/{id}/start (container.ExecStartRequest)."""

    detach: bool = False
    tty: bool = False
    console_size: list[UInt] | None = None  # [height, width], unused without Tty


class ExecInspect(msgspec.Struct, kw_only=True):
    """GET /exec/{id}/json (container.ExecInspectResponse with its ExecProcessConfig)."""

    id: str
    running: bool
    exit_code: int | None
    tty: bool
    entrypoint: str
    arguments: list[str]
    privileged: bool
    user: str
    open_stdin: bool
    open_stderr: bool
    open_stdout: bool
    can_remove: bool
    container_id: str
    detach_keys: bytes
    pid: int


def _info(cls: type[msgspec.Struct]) -> mi.StructType:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    return info


_CREATE_INFO = _info(ExecCreateRequest)
_START_INFO = _info(ExecStartRequest)


def _decode_object(data: bytes, go_type: str) -> dict[str, Any]:
    try:
        raw = msgspec.json.decode(data) if data.strip() else {}
    except msgspec.DecodeError as exc:
        raise errdefs.InvalidParameter(f"invalid JSON: {exc or 'malformed JSON'}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        kind = "array" if isinstance(raw, list) else type(raw).__name__
        kind = {"str": "string", "int": "number", "float": "number", "bool": "bool"}.get(kind, kind)
        raise errdefs.InvalidParameter(
            f"invalid JSON: json: cannot unmarshal {kind} into Go value of type {go_type}"
        )
    return raw


def _console_size(cleaned: dict[str, Any], go_type: str) -> None:
    size = cleaned.get("ConsoleSize")
    if isinstance(size, list):
        if len(size) > 2:
            raise errdefs.InvalidParameter(
                "invalid JSON: json: cannot unmarshal array into Go struct field "
                f"{go_type}.ConsoleSize of type [2]uint"
            )
        cleaned["ConsoleSize"] = [*size, 0, 0][:2]


def _convert(cleaned: dict[str, Any], type_: type[T]) -> T:
    try:
        return msgspec.convert(cleaned, type=type_)
    except msgspec.ValidationError as exc:
        raise errdefs.InvalidParameter(f"invalid JSON: {exc}") from None


def decode_exec_create(data: bytes) -> ExecCreateRequest:
    """The exec-create body; an empty body is an empty request (dockerd checks `Cmd` next)."""
    cleaned = go_normalize(_decode_object(data, "container.ExecCreateRequest"), _CREATE_INFO)
    _console_size(cleaned, "ExecCreateRequest")
    return _convert(cleaned, ExecCreateRequest)


def decode_exec_start(data: bytes) -> ExecStartRequest:
    cleaned = go_normalize(_decode_object(data, "container.ExecStartRequest"), _START_INFO)
    _console_size(cleaned, "ExecStartRequest")
    return _convert(cleaned, ExecStartRequest)


_encoder = msgspec.json.Encoder()


def encode_exec_created(exec_id: str) -> bytes:
    """The exec-create answer (common.IDResponse: `{"Id": ...}`)."""
    return _encoder.encode({"Id": exec_id})


def encode_exec_inspect(e: ExecInspect) -> bytes:
    process: dict[str, Any] = {
        "tty": e.tty,
        "entrypoint": e.entrypoint,
        "arguments": list(e.arguments),
        "privileged": e.privileged,
    }
    if e.user:
        process["user"] = e.user
    doc = {
        "ID": e.id,
        "Running": e.running,
        "ExitCode": e.exit_code,
        "ProcessConfig": process,
        "OpenStdin": e.open_stdin,
        "OpenStderr": e.open_stderr,
        "OpenStdout": e.open_stdout,
        "CanRemove": e.can_remove,
        "ContainerID": e.container_id,
        "DetachKeys": base64.b64encode(e.detach_keys).decode("ascii"),
        "Pid": e.pid,
    }
    return _encoder.encode(doc)
