"""Tar headers as Go's archive/tar reads and writes them: one 512-byte block at a time.

Rule: parsing follows Go's reader (what dockerd runs) -- V7, USTAR, PAX and GNU headers,
octal or base-256 numbers, both checksum sums, PAX records ("x", last one wins) and GNU
long names ("L"/"K") applied to the next header, "g" global headers returned as entries and
ignored by callers, a "\\0" typeflag with a trailing "/" meaning a directory, and no content
blocks for header-only types (links, devices, fifos, directories) whatever their size field
says. Special records (PAX, GNU long names) larger than 1 MiB are refused, as in Go. Sparse
files are refused. Formatting follows Go's writer with Format PAX: a USTAR header when every
field fits (long names split into prefix/name), else a PAX record header named
`<dir>/PaxHeaders.0/<base>`; numbers in octal; PAX records sorted by key.

Names are `str` decoded from UTF-8 with surrogateescape, so any byte string round-trips.
"""

from __future__ import annotations

import dataclasses

from pymoby.archive.errors import TarFormatError

BLOCK = 512
MAX_SPECIAL_SIZE = 1 << 20  # Go's maxSpecialFileSize: PAX and GNU long-name records

REG = "0"
AREG = "\x00"
LINK = "1"
SYMLINK = "2"
CHAR = "3"
BLOCKDEV = "4"
DIR = "5"
FIFO = "6"
CONT = "7"
PAX_LOCAL = "x"
PAX_GLOBAL = "g"
GNU_LONGNAME = "L"
GNU_LONGLINK = "K"
GNU_SPARSE = "S"

HEADER_ONLY = frozenset({LINK, SYMLINK, CHAR, BLOCKDEV, DIR, FIFO})
XATTR_PREFIX = "SCHILY.xattr."
ZERO_BLOCK = bytes(BLOCK)

_MAX_OCTAL_7 = 0o7777777
_MAX_OCTAL_11 = 0o77777777777


def decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def encode(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


@dataclasses.dataclass
class TarHeader:
    """One tar entry as a reader returns it (after PAX / GNU long-name merging)."""

    name: str
    typeflag: str = REG
    mode: int = 0
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime_ns: int = 0
    atime_ns: int | None = None
    linkname: str = ""
    uname: str = ""
    gname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, bytes] = dataclasses.field(default_factory=dict)
    # Bytes of content following the header (0 for header-only types).
    data_size: int = 0


def _cstring(field: bytes) -> bytes:
    end = field.find(b"\x00")
    return field if end < 0 else field[:end]


def parse_number(field: bytes, what: str) -> int:
    """Go's parseNumeric: base-256 when the top bit is set, else octal (spaces/NULs trimmed)."""
    if field and field[0] & 0x80:
        # Two's complement, big-endian; the first byte's 0x80 bit is the marker.
        inv = 0xFF if field[0] & 0x40 else 0x00
        value = 0
        for i, byte in enumerate(field):
            b = byte ^ inv
            if i == 0:
                b &= 0x7F
            value = (value << 8) | b
        if value >= 1 << 63:
            raise TarFormatError(f"archive/tar: invalid tar header ({what} out of range)")
        return ~value if inv else value
    text = field.strip(b" \x00")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise TarFormatError(f"archive/tar: invalid tar header (bad {what} field)") from None


def _checksums(block: bytes) -> tuple[int, int]:
    unsigned = sum(block[:148]) + 8 * 0x20 + sum(block[156:])
    signed = unsigned
    for b in block[:148] + block[156:]:
        if b & 0x80:
            signed -= 0x100
    return unsigned, signed


def parse_block(block: bytes) -> TarHeader:
    """Parse one header block (not an all-zero block); raise TarFormatError if invalid."""
    stored = parse_number(block[148:156], "checksum")
    if stored not in _checksums(block):
        raise TarFormatError("archive/tar: invalid tar header (checksum mismatch)")
    magic = block[257:263]
    version = block[263:265]
    is_gnu = magic == b"ustar " and version == b" \x00"
    is_ustar = magic == b"ustar\x00"  # Go ignores the version of USTAR headers
    name = _cstring(block[0:100])
    hdr = TarHeader(
        name="",
        typeflag=chr(block[156]),
        mode=parse_number(block[100:108], "mode"),
        uid=parse_number(block[108:116], "uid"),
        gid=parse_number(block[116:124], "gid"),
        size=parse_number(block[124:136], "size"),
        mtime_ns=parse_number(block[136:148], "mtime") * 1_000_000_000,
        linkname=decode(_cstring(block[157:257])),
    )
    if is_gnu or is_ustar:
        hdr.uname = decode(_cstring(block[265:297]))
        hdr.gname = decode(_cstring(block[297:329]))
        hdr.devmajor = parse_number(block[329:337], "devmajor")
        hdr.devminor = parse_number(block[337:345], "devminor")
    if is_ustar:
        star = block[508:512] == b"tar\x00"
        prefix = _cstring(block[345:476] if star else block[345:500])
        if prefix:
            name = prefix + b"/" + name
    elif is_gnu:
        atime = parse_number(block[345:357], "atime")
        if atime:
            hdr.atime_ns = atime * 1_000_000_000
    hdr.name = decode(name)
    if hdr.size < 0:
        raise TarFormatError(f"archive/tar: invalid tar header (negative size for {hdr.name!r})")
    return hdr


def parse_pax(data: bytes) -> dict[str, bytes]:
    """PAX extended records ("%d key=value\\n")*; values stay bytes (xattrs are binary)."""
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0 or space == pos:
            if not data[pos:].strip(b"\x00"):
                break  # NUL padding after the last record (seen in the wild; Go accepts it)
            raise TarFormatError("archive/tar: invalid tar header (bad PAX record length)")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise TarFormatError("archive/tar: invalid tar header (bad PAX record)") from None
        end = pos + length
        if length <= space - pos or end > len(data) or data[end - 1 : end] != b"\n":
            raise TarFormatError("archive/tar: invalid tar header (bad PAX record)")
        record = data[space + 1 : end - 1]
        key_raw, eq, value = record.partition(b"=")
        key = decode(key_raw)
        if not eq or not key or b"\x00" in key_raw:
            raise TarFormatError("archive/tar: invalid tar header (bad PAX record key)")
        if key in ("path", "linkpath", "uname", "gname") and b"\x00" in value:
            raise TarFormatError(f"archive/tar: invalid tar header (NUL in PAX {key})")
        records[key] = value
        pos = end
    return records


def _pax_time_ns(value: bytes, key: str) -> int:
    text = value.decode("ascii", "replace")
    sign = -1 if text.startswith("-") else 1
    whole, _, frac = text.lstrip("-").partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        raise TarFormatError(f"archive/tar: invalid tar header (bad PAX {key})")
    ns = int(whole) * 1_000_000_000 + int((frac + "000000000")[:9] or "0")
    return sign * ns


def _pax_int(value: bytes, key: str) -> int:
    try:
        number = int(value.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise TarFormatError(f"archive/tar: invalid tar header (bad PAX {key})") from None
    if number < 0 or number >= 1 << 63:
        raise TarFormatError(f"archive/tar: invalid tar header (bad PAX {key})")
    return number


def apply_pax(hdr: TarHeader, records: dict[str, bytes]) -> None:
    """Merge PAX records into a header (Go's mergePAX)."""
    for key, value in records.items():
        if key == "path":
            hdr.name = decode(value)
        elif key == "linkpath":
            hdr.linkname = decode(value)
        elif key == "uname":
            hdr.uname = decode(value)
        elif key == "gname":
            hdr.gname = decode(value)
        elif key == "uid":
            hdr.uid = _pax_int(value, key)
        elif key == "gid":
            hdr.gid = _pax_int(value, key)
        elif key == "size":
            hdr.size = _pax_int(value, key)
        elif key == "mtime":
            hdr.mtime_ns = _pax_time_ns(value, key)
        elif key == "atime":
            hdr.atime_ns = _pax_time_ns(value, key)
        elif key.startswith(XATTR_PREFIX):
            hdr.xattrs[key[len(XATTR_PREFIX) :]] = value
        elif key.startswith("GNU.sparse."):
            raise TarFormatError(f"archive/tar: sparse files are not supported ({hdr.name!r})")


# ---------------------------------------------------------------------------------------------
# Writing


def _octal(value: int, width: int) -> bytes:
    """Go's formatOctal: zero-padded, NUL-terminated."""
    digits = b"%o" % value
    return digits.rjust(width - 1, b"0") + b"\x00"


def _split_ustar(name: bytes) -> tuple[bytes, bytes] | None:
    """Go's splitUSTARPath: (prefix, name) for a name longer than 100 ASCII bytes, or None."""
    length = len(name)
    if length <= 100 or not name.isascii():
        return None
    if length > 156:
        length = 156
    elif name[length - 1 : length] == b"/":
        length -= 1
    i = name.rfind(b"/", 0, length)
    nlen = len(name) - i - 1
    if i <= 0 or nlen > 100 or nlen == 0 or i > 155:
        return None
    return name[:i], name[i + 1 :]


def _pax_record(key: str, value: bytes) -> bytes:
    body = b" " + encode(key) + b"=" + value + b"\n"
    size = len(body) + 1
    while len(b"%d" % size) + len(body) != size:
        size = len(b"%d" % size) + len(body)
    return b"%d" % size + body


def _raw_block(
    name: bytes,
    typeflag: str,
    *,
    mode: int = 0,
    uid: int = 0,
    gid: int = 0,
    size: int = 0,
    mtime: int = 0,
    linkname: bytes = b"",
    uname: bytes = b"",
    gname: bytes = b"",
    devmajor: int = 0,
    devminor: int = 0,
    prefix: bytes = b"",
) -> bytes:
    block = bytearray(BLOCK)
    block[0:100] = name[:100].ljust(100, b"\x00")
    block[100:108] = _octal(mode, 8)
    block[108:116] = _octal(uid, 8)
    block[116:124] = _octal(gid, 8)
    block[124:136] = _octal(size, 12)
    block[136:148] = _octal(mtime, 12)
    block[156] = ord(typeflag)
    block[157:257] = linkname[:100].ljust(100, b"\x00")
    block[257:265] = b"ustar\x0000"
    block[265:297] = uname[:32].ljust(32, b"\x00")
    block[297:329] = gname[:32].ljust(32, b"\x00")
    block[329:337] = _octal(devmajor, 8)
    block[337:345] = _octal(devminor, 8)
    block[345:500] = prefix[:155].ljust(155, b"\x00")
    block[148:156] = b" " * 8
    block[148:156] = _octal(sum(block), 7) + b" "
    return bytes(block)


def _ascii(raw: bytes) -> bytes:
    return bytes(b for b in raw if b < 0x80)


def format_header(hdr: TarHeader) -> bytes:
    """The header block(s) for `hdr`: a USTAR block, preceded by a PAX record when needed."""
    name = encode(hdr.name)
    link = encode(hdr.linkname)
    uname = encode(hdr.uname)
    gname = encode(hdr.gname)
    mtime = hdr.mtime_ns // 1_000_000_000
    pax: dict[str, bytes] = {}
    prefix = b""
    if len(name) > 100 or not name.isascii():
        split = _split_ustar(name)
        if split is None:
            pax["path"] = name
        else:
            prefix, name = split
    if len(link) > 100 or not link.isascii():
        pax["linkpath"] = link
    if len(uname) > 32 or not uname.isascii():
        pax["uname"] = uname
    if len(gname) > 32 or not gname.isascii():
        pax["gname"] = gname
    if not 0 <= hdr.uid <= _MAX_OCTAL_7:
        pax["uid"] = b"%d" % hdr.uid
    if not 0 <= hdr.gid <= _MAX_OCTAL_7:
        pax["gid"] = b"%d" % hdr.gid
    if not 0 <= hdr.size <= _MAX_OCTAL_11:
        pax["size"] = b"%d" % hdr.size
    if not 0 <= mtime <= _MAX_OCTAL_11:
        pax["mtime"] = b"%d" % mtime
    if hdr.devmajor > _MAX_OCTAL_7 or hdr.devminor > _MAX_OCTAL_7:
        raise TarFormatError(f"device number of {hdr.name!r} does not fit a tar header")
    for key, value in hdr.xattrs.items():
        pax[XATTR_PREFIX + key] = value
    main = _raw_block(
        name if "path" not in pax else _ascii(name),
        hdr.typeflag,
        mode=hdr.mode,
        uid=hdr.uid if "uid" not in pax else 0,
        gid=hdr.gid if "gid" not in pax else 0,
        size=hdr.size if "size" not in pax else 0,
        mtime=mtime if "mtime" not in pax else 0,
        linkname=link if "linkpath" not in pax else _ascii(link),
        uname=uname if "uname" not in pax else _ascii(uname),
        gname=gname if "gname" not in pax else _ascii(gname),
        devmajor=hdr.devmajor,
        devminor=hdr.devminor,
        prefix=prefix,
    )
    if not pax:
        return main
    data = b"".join(_pax_record(k, pax[k]) for k in sorted(pax))
    head, _, base = encode(hdr.name).rpartition(b"/")
    pax_name = _ascii(b"/".join(p for p in (head, b"PaxHeaders.0", base) if p))
    pax_block = _raw_block(pax_name, PAX_LOCAL, size=len(data))
    return pax_block + data + padding(len(data)) + main


def padding(size: int) -> bytes:
    """Zero bytes that round `size` up to a whole block."""
    return bytes(-size % BLOCK)
