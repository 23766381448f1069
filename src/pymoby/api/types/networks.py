"""Wire types of the /networks API: create/connect/disconnect bodies, the network resource, the
create and prune answers; decoding with Go's rules, encoding per API version.

Rule: request Structs mirror moby's Go types (api/types/network, dockerd 29) field for field with
the exact JSON names and Go zero values as defaults (`None` where Go has a nil pointer, slice or
map). Bodies are decoded only through the `decode_*` functions, which apply Go's encoding/json
rules (containers.go_normalize) and report every mistake as InvalidParameter `invalid JSON: ...`
(IPAM addresses and prefixes are checked as Go's netip parses them, with its messages).

`NetworkResource` carries what the daemon knows (Created as Unix ns plus the UTC offset of the
zone it is shown in; `status` the IPAM use per subnet). `network_wire` is the one place that
turns it into dockerd's JSON, in Go's struct order (Name ... Labels, then Containers, Status),
with Go's map-key sorting and omitempty rules, and decides what a client version sees:
- GET /networks: below 1.28 every item is the full resource with `Containers` (dockerd's
  GetNetworks); from 1.28 a network.Summary, which has no `Containers` field at all.
- GET /networks/{id}: `Containers` always (`{}` when none); `Status` only from 1.52, and then
  always (`{"IPAM":{}}` without subnets), as dockerd 29 sets it for every 1.52 inspect.
- `EnableIPv4` is sent to every version (dockerd does not gate it in responses); in a create
  body it is ignored below 1.48 (the route clears it).
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import msgspec
import msgspec.inspect as mi

from pymoby import errdefs
from pymoby.api.types.containers import EndpointSettings, go_normalize, json_kind
from pymoby.api.types.images import format_rfc3339_nano
from pymoby.api.versions import ApiVersion

V1_28 = ApiVersion(1, 28)
V1_52 = ApiVersion(1, 52)

# --------------------------------------------------------------------------- shared parts


class IPAMConfig(msgspec.Struct, kw_only=True):
    """network.IPAMConfig: one subnet. Every field is omitted from JSON when empty."""

    subnet: str = msgspec.field(default="", name="Subnet")
    ip_range: str = msgspec.field(default="", name="IPRange")
    gateway: str = msgspec.field(default="", name="Gateway")
    aux_addresses: dict[str, str] | None = msgspec.field(default=None, name="AuxiliaryAddresses")


class IPAM(msgspec.Struct, kw_only=True):
    """network.IPAM. `driver` "" in a request means the default IPAM driver ("default")."""

    driver: str = msgspec.field(default="", name="Driver")
    options: dict[str, str] | None = msgspec.field(default=None, name="Options")
    config: list[IPAMConfig] | None = msgspec.field(default=None, name="Config")


class ConfigReference(msgspec.Struct, kw_only=True):
    network: str = msgspec.field(default="", name="Network")


# --------------------------------------------------------------------------- requests


class NetworkCreateRequest(msgspec.Struct, kw_only=True):
    """POST /networks/create (network.CreateRequest). `enable_ipv4` / `enable_ipv6` are None
    when the client did not send them (Go's *bool): dockerd then reads the driver option
    `com.docker.network.enable_ipv4|6`, defaulting to IPv4 on and IPv6 off. The deprecated
    `CheckDuplicate` is ignored like any unknown field (duplicate names always fail since 1.44).
    """

    name: str = msgspec.field(default="", name="Name")
    driver: str = msgspec.field(default="", name="Driver")
    scope: str = msgspec.field(default="", name="Scope")
    enable_ipv4: bool | None = msgspec.field(default=None, name="EnableIPv4")
    enable_ipv6: bool | None = msgspec.field(default=None, name="EnableIPv6")
    ipam: IPAM | None = msgspec.field(default=None, name="IPAM")
    internal: bool = msgspec.field(default=False, name="Internal")
    attachable: bool = msgspec.field(default=False, name="Attachable")
    ingress: bool = msgspec.field(default=False, name="Ingress")
    config_only: bool = msgspec.field(default=False, name="ConfigOnly")
    config_from: ConfigReference | None = msgspec.field(default=None, name="ConfigFrom")
    options: dict[str, str] | None = msgspec.field(default=None, name="Options")
    labels: dict[str, str] | None = msgspec.field(default=None, name="Labels")


class NetworkConnectRequest(msgspec.Struct, kw_only=True):
    """POST /networks/{id}/connect."""

    container: str = msgspec.field(default="", name="Container")
    endpoint_config: EndpointSettings | None = msgspec.field(default=None, name="EndpointConfig")


class NetworkDisconnectRequest(msgspec.Struct, kw_only=True):
    """POST /networks/{id}/disconnect."""

    container: str = msgspec.field(default="", name="Container")
    force: bool = msgspec.field(default=False, name="Force")


# --------------------------------------------------------------------------- responses


class NetworkCreateResponse(msgspec.Struct, kw_only=True):
    """The 201 answer of POST /networks/create; `Warning` is always sent ("" when none)."""

    id: str = msgspec.field(name="Id")
    warning: str = msgspec.field(default="", name="Warning")


class EndpointResource(msgspec.Struct, kw_only=True):
    """One container of GET /networks/{id}'s `Containers`; addresses in CIDR form
    ("172.18.0.2/16"), "" when the endpoint has none."""

    name: str = ""
    endpoint_id: str = ""
    mac_address: str = ""
    ipv4_address: str = ""
    ipv6_address: str = ""


class SubnetStatus(msgspec.Struct, kw_only=True):
    """IPAM use of one subnet (API 1.52 `Status.IPAM.Subnets`)."""

    ips_in_use: int = 0
    dynamic_ips_available: int = 0


class NetworkResource(msgspec.Struct, kw_only=True):
    """One network as the daemon reports it (see the module rule for the wire form).

    `created` is Unix ns (0 = Go's zero time) shown at `created_offset` seconds east of UTC
    (dockerd prints a network's creation time in the daemon's local zone). `options`,
    `labels` and `containers` are sent as `{}` when None (dockerd never sends null there);
    `ipam.options` / `ipam.config` are sent as given (None is null, as dockerd does for the
    predefined host and none networks). `containers` is keyed by container ID.
    """

    name: str
    id: str
    created: int = 0
    created_offset: int = 0
    scope: str = "local"
    driver: str = "bridge"
    enable_ipv4: bool = True
    enable_ipv6: bool = False
    ipam: IPAM = msgspec.field(default_factory=IPAM)
    internal: bool = False
    attachable: bool = False
    ingress: bool = False
    config_from: str = ""
    config_only: bool = False
    options: dict[str, str] | None = None
    labels: dict[str, str] | None = None
    containers: dict[str, EndpointResource] | None = None
    status: dict[str, SubnetStatus] | None = None


# --------------------------------------------------------------------------- encoding

_ENCODER = msgspec.json.Encoder()


def _sorted_map(m: dict[str, Any] | None) -> dict[str, Any]:
    """A Go map: keys sorted; nil as {} (callers decide where nil is allowed)."""
    return {k: m[k] for k in sorted(m)} if m else {}


def ipam_config_wire(c: IPAMConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if c.subnet:
        out["Subnet"] = c.subnet
    if c.ip_range:
        out["IPRange"] = c.ip_range
    if c.gateway:
        out["Gateway"] = c.gateway
    if c.aux_addresses:
        out["AuxiliaryAddresses"] = _sorted_map(c.aux_addresses)
    return out


def ipam_wire(ipam: IPAM) -> dict[str, Any]:
    return {
        "Driver": ipam.driver,
        "Options": None if ipam.options is None else _sorted_map(ipam.options),
        "Config": None if ipam.config is None else [ipam_config_wire(c) for c in ipam.config],
    }


def endpoint_resource_wire(ep: EndpointResource) -> dict[str, Any]:
    return {
        "Name": ep.name,
        "EndpointID": ep.endpoint_id,
        "MacAddress": ep.mac_address,
        "IPv4Address": ep.ipv4_address,
        "IPv6Address": ep.ipv6_address,
    }


def _status_wire(status: dict[str, SubnetStatus] | None) -> dict[str, Any]:
    ipam: dict[str, Any] = {}
    if status:
        ipam["Subnets"] = {
            prefix: {"IPsInUse": s.ips_in_use, "DynamicIPsAvailable": s.dynamic_ips_available}
            for prefix, s in sorted(status.items())
        }
    return {"IPAM": ipam}


def network_wire(n: NetworkResource, *, containers: bool, status: bool) -> dict[str, Any]:
    """One network in dockerd's field order; `containers` / `status` add those fields."""
    out: dict[str, Any] = {
        "Name": n.name,
        "Id": n.id,
        "Created": format_rfc3339_nano(n.created or None, n.created_offset),
        "Scope": n.scope,
        "Driver": n.driver,
        "EnableIPv4": n.enable_ipv4,
        "EnableIPv6": n.enable_ipv6,
        "IPAM": ipam_wire(n.ipam),
        "Internal": n.internal,
        "Attachable": n.attachable,
        "Ingress": n.ingress,
        "ConfigFrom": {"Network": n.config_from},
        "ConfigOnly": n.config_only,
        "Options": _sorted_map(n.options),
        "Labels": _sorted_map(n.labels),
    }
    if containers:
        out["Containers"] = {
            cid: endpoint_resource_wire(ep) for cid, ep in sorted((n.containers or {}).items())
        }
    if status:
        out["Status"] = _status_wire(n.status)
    return out


def encode_network_list(items: list[NetworkResource], api: ApiVersion) -> bytes:
    """GET /networks: full resources below 1.28, network.Summary from 1.28."""
    detailed = api < V1_28
    return _ENCODER.encode([network_wire(n, containers=detailed, status=False) for n in items])


def encode_network_inspect(n: NetworkResource, api: ApiVersion) -> bytes:
    """GET /networks/{id}: Containers always, Status from 1.52."""
    return _ENCODER.encode(network_wire(n, containers=True, status=api >= V1_52))


def encode_create_response(resp: NetworkCreateResponse) -> bytes:
    return _ENCODER.encode(resp)


def encode_prune_report(deleted: list[str] | None) -> bytes:
    """POST /networks/prune: the removed networks' names; null (Go's nil slice) when none."""
    return _ENCODER.encode({"NetworksDeleted": list(deleted) if deleted else None})


# --------------------------------------------------------------------------- decoding


def _struct_info(cls: type[msgspec.Struct]) -> mi.StructType:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    return info


_CREATE_INFO = _struct_info(NetworkCreateRequest)
_CONNECT_INFO = _struct_info(NetworkConnectRequest)
_DISCONNECT_INFO = _struct_info(NetworkDisconnectRequest)


def _first_value(data: bytes) -> Any:
    """The first JSON value of `data`, as Go's json.Decoder reads it, then dockerd's ReadJSON
    check that nothing but whitespace, `]` or `}` follows (`dec.More()`)."""
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        reason = str(exc)
    if "trailing characters" in reason:
        text = data.decode("utf-8", "replace")
        start = len(text) - len(text.lstrip())
        try:
            value, end = json.JSONDecoder().raw_decode(text, start)
        except ValueError:
            pass
        else:
            rest = text[end:].lstrip()
            if rest and rest[0] not in "]}":
                raise errdefs.InvalidParameter("unexpected content after JSON") from None
            return value
    if "truncated" in reason:
        reason = "unexpected EOF"
    raise errdefs.InvalidParameter(f"invalid JSON: {reason}")


def _decode(data: bytes, info: mi.StructType, cls: type[Any], go_name: str) -> Any:
    raw = _first_value(data)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise errdefs.InvalidParameter(
            f"invalid JSON: json: cannot unmarshal {json_kind(raw)} into Go value of type {go_name}"
        )
    try:
        return msgspec.convert(go_normalize(raw, info), type=cls)
    except msgspec.ValidationError as exc:
        raise errdefs.InvalidParameter(f"invalid JSON: {exc}") from None


def decode_create_request(data: bytes) -> NetworkCreateRequest:
    """A POST /networks/create body (non-empty: an absent body is the zero request).

    IPAM subnets, ranges, gateways and auxiliary addresses must parse as Go's netip does:
    `invalid JSON: netip.ParsePrefix("x"): no '/'`, `invalid JSON: ParseAddr("x"): ...`.
    """
    req: NetworkCreateRequest = _decode(
        data, _CREATE_INFO, NetworkCreateRequest, "network.CreateRequest"
    )
    if req.ipam is not None:
        for cfg in req.ipam.config or ():
            for prefix in (cfg.subnet, cfg.ip_range):
                if prefix:
                    check_prefix(prefix)
            if cfg.gateway:
                check_addr(cfg.gateway)
            for addr in (cfg.aux_addresses or {}).values():
                if addr:
                    check_addr(addr)
    return req


def decode_connect_request(data: bytes) -> NetworkConnectRequest:
    req: NetworkConnectRequest = _decode(
        data, _CONNECT_INFO, NetworkConnectRequest, "networkbackend.ConnectRequest"
    )
    return req


def decode_disconnect_request(data: bytes) -> NetworkDisconnectRequest:
    req: NetworkDisconnectRequest = _decode(
        data, _DISCONNECT_INFO, NetworkDisconnectRequest, "networkbackend.DisconnectRequest"
    )
    return req


# --------------------------------------------------------------------------- Go's netip parsing


def _go_quote(text: str) -> str:
    """strconv.Quote for the printable ASCII and UTF-8 texts a client sends."""
    return json.dumps(text, ensure_ascii=False)


def _addr_error(text: str, msg: str, at: str | None = None) -> errdefs.InvalidParameter:
    where = f" (at {_go_quote(at)})" if at is not None else ""
    return errdefs.InvalidParameter(f"invalid JSON: ParseAddr({_go_quote(text)}): {msg}{where}")


def _check_ipv4(text: str) -> None:
    """netip.parseIPv4: four decimal fields 0-255, no leading zeros."""
    val = digits = pos = 0
    for i, ch in enumerate(text):
        if "0" <= ch <= "9":
            if digits == 1 and val == 0:
                raise _addr_error(text, "IPv4 field has octet with leading zero")
            val = val * 10 + ord(ch) - ord("0")
            digits += 1
            if val > 255:
                raise _addr_error(text, "IPv4 field has value >255")
        elif ch == ".":
            if i == 0 or i == len(text) - 1 or text[i - 1] == ".":
                raise _addr_error(text, "IPv4 field must have at least one digit", text[i:])
            if pos == 3:
                raise _addr_error(text, "IPv4 address too long")
            pos += 1
            val = digits = 0
        else:
            raise _addr_error(text, "unexpected character", text[i:])
    if pos < 3:
        raise _addr_error(text, "IPv4 address too short")


def check_addr(text: str) -> None:
    """Raise InvalidParameter unless `text` parses as Go's netip.ParseAddr does.

    IPv4 errors carry Go's exact text; IPv6 is checked by Python's parser, whose reasons differ
    from Go's, so an invalid IPv6 address is reported with Go's generic prefix only.
    """
    for ch in text:
        if ch == ".":
            _check_ipv4(text)
            return
        if ch == ":":
            try:
                ipaddress.IPv6Address(text)
            except ValueError:
                raise _addr_error(text, "invalid IPv6 address") from None
            return
        if ch == "%":
            raise _addr_error(text, "missing IPv6 address")
    raise _addr_error(text, "unable to parse IP")


def check_prefix(text: str) -> None:
    """Raise InvalidParameter unless `text` parses as Go's netip.ParsePrefix does."""

    def fail(subject: str, msg: str) -> errdefs.InvalidParameter:
        return errdefs.InvalidParameter(
            f"invalid JSON: netip.ParsePrefix({_go_quote(subject)}): {msg}"
        )

    slash = text.rfind("/")
    if slash < 0:
        raise fail(text, "no '/'")
    addr, bits_text = text[:slash], text[slash + 1 :]
    try:
        check_addr(addr)
    except errdefs.InvalidParameter as exc:
        raise fail(text, exc.message.removeprefix("invalid JSON: ")) from None
    if ":" in addr and "%" in addr:
        raise fail(text, "IPv6 zones cannot be present in a prefix")
    bad_bits = fail(text, "bad bits after slash: " + _go_quote(bits_text))
    if len(bits_text) > 1 and not "1" <= bits_text[0] <= "9":
        raise bad_bits  # no sign, no leading zero
    if not bits_text.isascii() or not bits_text.isdigit() or int(bits_text) >= 1 << 63:
        raise bad_bits  # strconv.Atoi fails
    if int(bits_text) > (128 if ":" in addr else 32):
        raise fail(text, "prefix length out of range")
