"""DNS wire format, just enough for the embedded resolver (RFC 1035 section 4, RFC 6891 OPT).

Rule: parsing untrusted bytes raises nothing but `FormatError`, and a `FormatError` says what to
do, the way miekg/dns's server (under dockerd) decides: `header is None` means drop the packet
silently (shorter than a header, or a response rather than a query); otherwise answer
`error_reply(header, rcode)` -- FORMERR for a bad question/record layout, NOTIMP for an opcode
other than QUERY/NOTIFY. Names are read with compression pointers that must point strictly
backwards (no loops) and a 255-byte limit. Answers we build always carry the question once and
point at it (offset 12) from every answer record; they are truncated with TC set to the size
the client allows (512, more with EDNS0, 65535 over TCP).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv4Address

HEADER_SIZE = 12
MIN_UDP_SIZE = 512
MAX_MSG_SIZE = 65535
MAX_NAME_LEN = 255

# Header flag bits.
QR = 0x8000
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080
CD = 0x0010

OPCODE_QUERY = 0
OPCODE_NOTIFY = 4

_HEADER = struct.Struct(">HHHHHH")
_RR_FIXED = struct.Struct(">HHIH")  # type, class, ttl, rdlength
_QFIXED = struct.Struct(">HH")  # qtype, qclass
_POINTER_TO_QUESTION = b"\xc0\x0c"


class RCode(IntEnum):
    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5


class QType(IntEnum):
    A = 1
    PTR = 12
    MX = 15
    AAAA = 28
    SRV = 33
    OPT = 41


class QClass(IntEnum):
    IN = 1


class FormatError(ValueError):
    """Malformed DNS message. `header` is None when no reply at all must be sent."""

    def __init__(self, message: str, header: Header | None = None, rcode: int = RCode.FORMERR):
        super().__init__(message)
        self.header = header
        self.rcode = rcode


@dataclass(frozen=True, slots=True)
class Header:
    id: int
    flags: int
    qdcount: int
    ancount: int
    nscount: int
    arcount: int

    @property
    def is_response(self) -> bool:
        return bool(self.flags & QR)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def rcode(self) -> int:
        return self.flags & 0xF


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query: its header, the one question, and the EDNS0 UDP size if it had an OPT."""

    header: Header
    labels: tuple[bytes, ...]
    qtype: int
    qclass: int
    udp_size: int | None = None

    @property
    def name(self) -> str:
        """Presentation form without the trailing dot, case as sent ('' for the root)."""
        return ".".join(_label_text(label) for label in self.labels)


def parse_header(data: bytes) -> Header:
    if len(data) < HEADER_SIZE:
        raise FormatError("message shorter than a DNS header")
    return Header(*_HEADER.unpack_from(data, 0))


def read_name(data: bytes, offset: int) -> tuple[tuple[bytes, ...], int]:
    """Labels of the name at `offset` and the offset just past it (past the first pointer)."""
    labels: list[bytes] = []
    wire_len = 1  # the terminating root label
    pos = offset
    end: int | None = None
    while True:
        if pos >= len(data):
            raise FormatError("name runs past the end of the message")
        length = data[pos]
        kind = length & 0xC0
        if kind == 0xC0:
            if pos + 1 >= len(data):
                raise FormatError("truncated compression pointer")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if end is None:
                end = pos + 2
            if target >= pos:
                raise FormatError("compression pointer does not point backwards")
            pos = target
            continue
        if kind != 0:
            raise FormatError("reserved label type")
        if length == 0:
            return tuple(labels), (pos + 1 if end is None else end)
        if pos + 1 + length > len(data):
            raise FormatError("label runs past the end of the message")
        wire_len += 1 + length
        if wire_len > MAX_NAME_LEN:
            raise FormatError("name longer than 255 bytes")
        labels.append(data[pos + 1 : pos + 1 + length])
        pos += 1 + length


def _skip_rr(data: bytes, offset: int) -> tuple[int, int, int]:
    """Validate one resource record; return (type, class, offset past it)."""
    _, offset = read_name(data, offset)
    if offset + _RR_FIXED.size > len(data):
        raise FormatError("truncated resource record")
    rtype, rclass, _, rdlength = _RR_FIXED.unpack_from(data, offset)
    offset += _RR_FIXED.size + rdlength
    if offset > len(data):
        raise FormatError("resource record data runs past the end of the message")
    return rtype, rclass, offset


def parse_query(data: bytes) -> Query:
    """Parse a query (see the module rule for what a FormatError means)."""
    header = parse_header(data)
    if header.is_response:
        raise FormatError("message is a response", None)
    if header.opcode not in (OPCODE_QUERY, OPCODE_NOTIFY):
        raise FormatError(f"opcode {header.opcode} not implemented", header, RCode.NOTIMP)
    if header.qdcount != 1 or header.ancount > 1 or header.nscount > 1 or header.arcount > 2:
        raise FormatError("unexpected section counts", header)
    try:
        labels, offset = read_name(data, HEADER_SIZE)
        if offset + _QFIXED.size > len(data):
            raise FormatError("truncated question")
        qtype, qclass = _QFIXED.unpack_from(data, offset)
        offset += _QFIXED.size
        for _ in range(header.ancount + header.nscount):
            _, _, offset = _skip_rr(data, offset)
        udp_size: int | None = None
        for _ in range(header.arcount):
            rtype, rclass, offset = _skip_rr(data, offset)
            if rtype == QType.OPT:
                udp_size = rclass
    except FormatError as e:
        raise FormatError(str(e), header) from None
    return Query(header, labels, qtype, qclass, udp_size)


def encode_name(name: str) -> bytes:
    """Wire form of a dotted name ('a.b' or 'a.b.'); ValueError if it cannot be one."""
    text = name[:-1] if name.endswith(".") else name
    out = bytearray()
    if text:
        for label in text.split("."):
            raw = label.encode("ascii")
            if not 0 < len(raw) <= 63:
                raise ValueError(f"invalid DNS label in {name!r}")
            out.append(len(raw))
            out += raw
    out.append(0)
    if len(out) > MAX_NAME_LEN:
        raise ValueError(f"DNS name too long: {name!r}")
    return bytes(out)


def _label_text(label: bytes) -> str:
    parts: list[str] = []
    for b in label:
        if b in (0x2E, 0x5C):  # '.' and '\' are escaped so names stay unambiguous
            parts.append("\\" + chr(b))
        elif 0x21 <= b <= 0x7E:
            parts.append(chr(b))
        else:
            parts.append(f"\\{b:03d}")
    return "".join(parts)


def ptr_address(name: str) -> IPv4Address | None:
    """'4.3.2.1.in-addr.arpa' (any case, trailing dot optional) -> 1.2.3.4; else None."""
    text = name.lower().removesuffix(".")
    if not text.endswith(".in-addr.arpa"):
        return None
    octets = text.removesuffix(".in-addr.arpa").split(".")
    if len(octets) != 4 or not all(o.isdigit() and o.isascii() and len(o) <= 3 for o in octets):
        return None
    values = [int(o) for o in octets]
    if any(v > 255 for v in values):
        return None
    return IPv4Address(bytes(reversed(values)))


def a_record(address: IPv4Address, ttl: int) -> bytes:
    """An A record for the question's name."""
    return _POINTER_TO_QUESTION + _RR_FIXED.pack(QType.A, QClass.IN, ttl, 4) + address.packed


def ptr_record(target: str, ttl: int) -> bytes:
    """A PTR record for the question's name pointing at `target` (ValueError if not a name)."""
    rdata = encode_name(target)
    return _POINTER_TO_QUESTION + _RR_FIXED.pack(QType.PTR, QClass.IN, ttl, len(rdata)) + rdata


def _question(query: Query) -> bytes:
    out = bytearray()
    for label in query.labels:
        out.append(len(label))
        out += label
    out.append(0)
    return bytes(out) + _QFIXED.pack(query.qtype, query.qclass)


def _reply_flags(header: Header, rcode: int, *, ra: bool) -> int:
    flags = QR | (header.opcode << 11) | (rcode & 0xF)
    if header.opcode == OPCODE_QUERY:
        flags |= header.flags & (RD | CD)
    if ra:
        flags |= RA
    return flags


def reply(
    query: Query,
    rcode: int = RCode.NOERROR,
    answers: Sequence[bytes] = (),
    *,
    ra: bool = True,
    max_size: int = MIN_UDP_SIZE,
) -> bytes:
    """A reply echoing the question; answers that do not fit in `max_size` are dropped (TC)."""
    body = bytearray(_question(query))
    size = HEADER_SIZE + len(body)
    count = 0
    for record in answers:
        if size + len(record) > max_size:
            break
        body += record
        size += len(record)
        count += 1
    flags = _reply_flags(query.header, rcode, ra=ra)
    if count < len(answers):
        flags |= TC
    return _HEADER.pack(query.header.id, flags, 1, count, 0, 0) + bytes(body)


def error_reply(header: Header, rcode: int) -> bytes:
    """FORMERR/NOTIMP for a query we could not take: the header alone, no sections."""
    return _HEADER.pack(header.id, _reply_flags(header, rcode, ra=False), 0, 0, 0, 0)
