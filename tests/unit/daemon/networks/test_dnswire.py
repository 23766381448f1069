"""The DNS codec: queries parse (with compression), bad bytes give FormatError only, replies
are laid out as RFC 1035 says and truncated with TC."""

from __future__ import annotations

import contextlib
import random
import struct
from ipaddress import IPv4Address

import pytest

from pymoby.daemon.networks import dnswire
from pymoby.daemon.networks.dnswire import FormatError, QType, RCode


def name_bytes(name: str) -> bytes:
    out = b""
    for label in name.split(".") if name else []:
        out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def query_bytes(
    name: str,
    qtype: int = 1,
    *,
    qid: int = 0x1234,
    flags: int = 0x0100,
    counts: tuple[int, int, int, int] = (1, 0, 0, 0),
    extra: bytes = b"",
) -> bytes:
    return (
        struct.pack(">HHHHHH", qid, flags, *counts)
        + name_bytes(name)
        + struct.pack(">HH", qtype, 1)
        + extra
    )


OPT_4096 = b"\x00" + struct.pack(">HHIH", 41, 4096, 0, 0)


def test_parse_simple_query() -> None:
    q = dnswire.parse_query(query_bytes("Web.MyNet", 28, qid=77))
    assert q.header.id == 77
    assert q.labels == (b"Web", b"MyNet")
    assert q.name == "Web.MyNet"
    assert (q.qtype, q.qclass, q.udp_size) == (28, 1, None)


def test_parse_root_name() -> None:
    q = dnswire.parse_query(query_bytes("", 2))
    assert q.labels == ()
    assert q.name == ""


def test_parse_edns_udp_size() -> None:
    q = dnswire.parse_query(query_bytes("a", counts=(1, 0, 0, 1), extra=OPT_4096))
    assert q.udp_size == 4096


def test_parse_follows_compression_pointers_in_records() -> None:
    # A NOTIFY-like message whose answer RR names the question by pointer (0xC00C) and whose
    # additional record points into the middle of the question name.
    base = query_bytes("www.example.com", 6, flags=0x2000, counts=(1, 1, 0, 1))
    answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([1, 2, 3, 4])
    additional = b"\x03foo\xc0\x10" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([5, 6, 7, 8])
    data = base + answer + additional
    q = dnswire.parse_query(data)
    assert q.name == "www.example.com"
    labels, end = dnswire.read_name(data, len(base) + len(answer))
    assert labels == (b"foo", b"example", b"com")
    assert end == len(base) + len(answer) + 6


def test_read_name_escapes_odd_bytes() -> None:
    data = b"\x00" * 12 + b"\x03a.b\x02\x00 \x00"
    labels, _ = dnswire.read_name(data, 12)
    assert labels == (b"a.b", b"\x00 ")
    q = dnswire.Query(dnswire.parse_header(data), labels, 1, 1)
    assert q.name == "a\\.b.\\000\\032"


@pytest.mark.parametrize(
    "tail",
    [
        b"\xc0\x0c",  # pointer to itself
        b"\xc0\x20",  # pointer forwards
        b"\xc0",  # truncated pointer
        b"\x40abc\x00",  # reserved label type 01
        b"\x80abc\x00",  # reserved label type 10
        b"\x05ab",  # label runs past the end
        b"\x03abc",  # no terminating root label
        b"",  # nothing at all
        (b"\x3f" + b"a" * 63) * 4 + b"\x00",  # 257 bytes: over the 255 limit
    ],
)
def test_read_name_rejects_malformed(tail: bytes) -> None:
    with pytest.raises(FormatError):
        dnswire.read_name(b"\x00" * 12 + tail, 12)


def test_read_name_rejects_pointer_loop() -> None:
    # 16 -> 12 -> 'a' -> 14 -> 16 would loop; the forward hop (14 -> 16) is refused.
    data = b"\x00" * 12 + b"\x01a\xc0\x10" + b"\xc0\x0c"
    with pytest.raises(FormatError):
        dnswire.read_name(data, 12)
    with pytest.raises(FormatError):
        dnswire.read_name(data, 16)


def test_short_message_and_responses_are_dropped() -> None:
    for data in (b"", b"\x12\x34", b"\x00" * 11):
        with pytest.raises(FormatError) as e:
            dnswire.parse_query(data)
        assert e.value.header is None
    with pytest.raises(FormatError) as e:
        dnswire.parse_query(query_bytes("a", flags=0x8180))
    assert e.value.header is None


@pytest.mark.parametrize(
    ("data", "rcode"),
    [
        (query_bytes("a", counts=(2, 0, 0, 0)), RCode.FORMERR),
        (query_bytes("a", counts=(0, 0, 0, 0)), RCode.FORMERR),
        (query_bytes("a", counts=(1, 2, 0, 0)), RCode.FORMERR),
        (query_bytes("a", counts=(1, 0, 0, 3)), RCode.FORMERR),
        (query_bytes("a", counts=(1, 0, 0, 1)), RCode.FORMERR),  # promised OPT missing
        (query_bytes("a")[:-1], RCode.FORMERR),  # truncated question
        (b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00", RCode.FORMERR),  # no question
        (query_bytes("a", flags=0x2800), RCode.NOTIMP),  # opcode 5 (UPDATE)
    ],
)
def test_bad_queries_get_an_error_rcode(data: bytes, rcode: int) -> None:
    with pytest.raises(FormatError) as e:
        dnswire.parse_query(data)
    assert e.value.header is not None
    assert e.value.rcode == rcode
    out = dnswire.error_reply(e.value.header, e.value.rcode)
    qid, flags, *counts = struct.unpack(">HHHHHH", out)
    assert qid == struct.unpack(">H", data[:2])[0]
    assert flags & 0x8000
    assert flags & 0xF == rcode
    assert counts == [0, 0, 0, 0]


def test_random_garbage_only_raises_format_error() -> None:
    rng = random.Random(1234)
    valid = query_bytes("some.name.example", 1, counts=(1, 0, 0, 1), extra=OPT_4096)
    for _ in range(5000):
        if rng.random() < 0.5:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        else:
            buf = bytearray(valid[: rng.randrange(len(valid) + 1)])
            for _ in range(rng.randrange(1, 4)):
                if buf:
                    buf[rng.randrange(len(buf))] = rng.randrange(256)
            data = bytes(buf)
        with contextlib.suppress(FormatError):
            dnswire.parse_query(data)


def test_reply_with_a_records() -> None:
    q = dnswire.parse_query(query_bytes("Web", 1, qid=9, flags=0x0110))
    addrs = [IPv4Address("10.0.0.2"), IPv4Address("10.0.0.3")]
    out = dnswire.reply(q, answers=[dnswire.a_record(a, 600) for a in addrs])
    qid, flags, qd, an, ns, ar = struct.unpack_from(">HHHHHH", out)
    assert (qid, qd, an, ns, ar) == (9, 1, 2, 0, 0)
    assert flags == 0x8000 | 0x0100 | 0x0010 | 0x0080  # QR, RD and CD copied, RA
    question = name_bytes("Web") + struct.pack(">HH", 1, 1)
    assert out[12 : 12 + len(question)] == question
    rr = out[12 + len(question) :]
    assert rr == (b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 600, 4) + bytes([10, 0, 0, 2])) + (
        b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 600, 4) + bytes([10, 0, 0, 3])
    )


def test_reply_truncates_and_sets_tc() -> None:
    q = dnswire.parse_query(query_bytes("web", 1))
    answers = [dnswire.a_record(IPv4Address(f"10.0.{i // 256}.{i % 256}"), 600) for i in range(100)]
    out = dnswire.reply(q, answers=answers, max_size=512)
    assert len(out) <= 512
    _, flags, _, an, _, _ = struct.unpack_from(">HHHHHH", out)
    assert flags & dnswire.TC
    assert an == (512 - 12 - 9) // 16
    full = dnswire.reply(q, answers=answers, max_size=dnswire.MAX_MSG_SIZE)
    _, flags, _, an, _, _ = struct.unpack_from(">HHHHHH", full)
    assert not flags & dnswire.TC
    assert an == 100


def test_servfail_reply_has_question_and_no_ra() -> None:
    q = dnswire.parse_query(query_bytes("x.example", 1, qid=5))
    out = dnswire.reply(q, RCode.SERVFAIL, ra=False)
    qid, flags, qd, an, _, _ = struct.unpack_from(">HHHHHH", out)
    assert (qid, qd, an) == (5, 1, 0)
    assert flags == 0x8000 | 0x0100 | RCode.SERVFAIL


def test_ptr_record_and_address() -> None:
    assert dnswire.ptr_address("4.3.2.1.in-addr.arpa") == IPv4Address("1.2.3.4")
    assert dnswire.ptr_address("4.3.2.1.IN-ADDR.ARPA.") == IPv4Address("1.2.3.4")
    for bad in ("3.2.1.in-addr.arpa", "256.3.2.1.in-addr.arpa", "a.3.2.1.in-addr.arpa", "x.arpa"):
        assert dnswire.ptr_address(bad) is None
    rr = dnswire.ptr_record("web.mynet", 600)
    rdata = name_bytes("web.mynet")
    assert rr == b"\xc0\x0c" + struct.pack(">HHIH", QType.PTR, 1, 600, len(rdata)) + rdata
    assert dnswire.ptr_record("web.mynet.", 600) == rr


def test_encode_name_rejects_bad_names() -> None:
    assert dnswire.encode_name("") == b"\x00"
    assert dnswire.encode_name(".") == b"\x00"
    for bad in ("a..b", "x" * 64, ".".join(["abcdefgh"] * 30), "caf\u00e9"):
        with pytest.raises(ValueError):
            dnswire.encode_name(bad)
