"""Links, addresses and routes over rtnetlink: the only code that changes host network devices.

Rule: callers name devices and give addresses as `ipaddress` values; this module turns them into
rtnetlink requests and every failure into a `NetlinkError` that says which step failed, on which
device, with the kernel's errno text (and its extended-ack message when it sent one).

How: requests are built with pyroute2's message classes (`ifinfmsg`, `ifaddrmsg`, `rtmsg`) and
sent on plain blocking `AF_NETLINK` sockets owned here; replies are read with a small TLV walker.
pyroute2's own `IPRoute` is not used: in 0.9 every sync call drives a per-thread asyncio loop and
socket (about 0.3-1 ms a call) and its netns support forks a process, too slow for `docker run`.
- One socket in the host namespace (the one `Netlink()` was created in) behind a lock, reused.
- Work inside a container's namespace uses a socket created in it (`netns.socket_in`); a socket
  stays in the namespace it was created in, so no thread ever switches namespace here.
- A veth pair is made in one RTM_NEWLINK: the host end enslaved, with its mtu and up; the peer
  created directly inside the namespace under its final name, mac and mtu (a veth peer cannot be
  set up in that same request: the kernel answers ENOTCONN). Then, inside: up, address, route.
All calls block: callers use `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import struct
import threading
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

from pyroute2.netlink import nlmsgerr
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from pymoby import errdefs
from pymoby.kernel import netns as knetns

_RTM_NEWLINK = 16
_RTM_DELLINK = 17
_RTM_GETLINK = 18
_RTM_NEWADDR = 20
_RTM_GETADDR = 22
_RTM_NEWROUTE = 24
_RTM_GETROUTE = 26

_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_NLM_F_REQUEST = 0x1
_NLM_F_ACK = 0x4
_NLM_F_DUMP_INTR = 0x10
_NLM_F_DUMP = 0x300
_NLM_F_EXCL = 0x200
_NLM_F_CREATE = 0x400
_NEW = _NLM_F_REQUEST | _NLM_F_ACK | _NLM_F_CREATE | _NLM_F_EXCL
_SET = _NLM_F_REQUEST | _NLM_F_ACK

_SOL_NETLINK = 270
_NETLINK_EXT_ACK = 11
_RECV_SIZE = 1 << 16  # the kernel caps a dump skb at 32 KiB
_DUMP_TRIES = 5

_IFF_UP = 0x1
_IFLA_IFNAME = 3
_IFLA_MTU = 4
_IFLA_LINKINFO = 18
_IFLA_INFO_KIND = 1
_IFA_ADDRESS = 1
_IFA_LOCAL = 2
_RTA_DST = 1
_RTA_TABLE = 15
_RT_TABLE_MAIN = 254
_RTPROT_BOOT = 3
_RTN_UNICAST = 1
_RT_SCOPE_UNIVERSE = 0

_NLMSGHDR = struct.Struct("=IHHI")
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, proto, scope, type
_ATTR = struct.Struct("=HH")

IFNAMSIZ = 16


class NetlinkError(errdefs.System):
    """An rtnetlink step failed; `errno` is the kernel's error number when it gave one."""

    def __init__(self, message: str, err: int | None = None) -> None:
        super().__init__(message)
        self.errno = err


class _KernelError(Exception):
    """An NLMSG_ERROR answer: errno plus the extended-ack text (internal, never leaves)."""

    def __init__(self, code: int, text: str = "") -> None:
        super().__init__(code, text)
        self.code = code
        self.text = text

    def describe(self) -> str:
        detail = os.strerror(self.code)
        return f"{detail} ({self.text})" if self.text else detail


def _fail(step: str, exc: _KernelError | OSError) -> NetlinkError:
    if isinstance(exc, _KernelError):
        return NetlinkError(f"{step}: {exc.describe()}", exc.code)
    return NetlinkError(f"{step}: {exc.strerror or exc}", exc.errno)


# -- replies ---------------------------------------------------------------------------------


def _attrs(buf: bytes, offset: int, end: int | None = None) -> dict[int, bytes]:
    """Top-level netlink attributes from `offset` to `end` (type -> payload; nested flag off)."""
    out: dict[int, bytes] = {}
    end = len(buf) if end is None else end
    while offset + 4 <= end:
        length, kind = _ATTR.unpack_from(buf, offset)
        if length < 4:
            break
        out[kind & 0x3FFF] = buf[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return out


def _text(value: bytes | None) -> str:
    return value.split(b"\0", 1)[0].decode(errors="replace") if value else ""


def _ext_ack_text(chunk: bytes) -> str:
    try:
        err = nlmsgerr(chunk)
        err.decode()
        return str(err.get_attr("NLMSGERR_ATTR_MSG") or "")
    except Exception:  # the text is a courtesy: never let its parsing hide the errno
        return ""


class _Conn:
    """One rtnetlink socket and its request/answer loop. Not thread-safe: owners serialize."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.seq = 0
        try:
            sock.bind((0, 0))
            sock.setsockopt(_SOL_NETLINK, _NETLINK_EXT_ACK, 1)
        except OSError:
            sock.close()
            raise

    @classmethod
    def here(cls) -> _Conn:
        return cls(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0))

    @classmethod
    def inside(cls, path: Path) -> _Conn:
        sock = knetns.socket_in(path, socket.AF_NETLINK, socket.SOCK_RAW, 0)
        return cls(sock)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> _Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, msg: Any, mtype: int, flags: int) -> list[bytes]:
        """Send `msg`; return the answer's messages (each a bytes with its header).

        Raises _KernelError for an NLMSG_ERROR answer, OSError for socket trouble.
        """
        self.seq = self.seq % 0xFFFFFFFF + 1
        seq = self.seq
        header = msg["header"]
        header["type"] = mtype
        header["flags"] = flags
        header["sequence_number"] = seq
        header["pid"] = 0
        msg.encode()
        self.sock.send(msg.data)
        out: list[bytes] = []
        interrupted = False
        while True:
            data, _, mflags, _ = self.sock.recvmsg(_RECV_SIZE)
            if mflags & socket.MSG_TRUNC:
                raise _KernelError(errno.EMSGSIZE, "netlink answer truncated")
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, nlflags, mseq = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    break
                chunk = data[offset : offset + length]
                offset += (length + 3) & ~3
                if mseq != seq:
                    continue  # a late answer to an earlier, abandoned request
                interrupted |= bool(nlflags & _NLM_F_DUMP_INTR)
                if kind in (_NLMSG_ERROR, _NLMSG_DONE):
                    code = -struct.unpack_from("=i", chunk, 16)[0] if length >= 20 else 0
                    if code:
                        raise _KernelError(code, _ext_ack_text(chunk))
                    if interrupted:
                        raise _KernelError(errno.EAGAIN, "dump interrupted, try again")
                    return out
                out.append(chunk)

    def dump(self, msg_factory: Any, mtype: int) -> list[bytes]:
        for attempt in range(_DUMP_TRIES):
            try:
                return self.request(msg_factory(), mtype, _NLM_F_REQUEST | _NLM_F_DUMP)
            except _KernelError as exc:
                if exc.code != errno.EAGAIN or attempt == _DUMP_TRIES - 1:
                    raise
        raise AssertionError("unreachable")

    # -- links -----------------------------------------------------------------------------

    def get_link(self, name: str) -> bytes | None:
        msg = ifinfmsg()
        msg["attrs"] = [["IFLA_IFNAME", name]]
        try:
            answer = self.request(msg, _RTM_GETLINK, _SET)
        except _KernelError as exc:
            if exc.code == errno.ENODEV:
                return None
            raise
        return answer[0] if answer else None

    def index(self, name: str) -> int | None:
        link = self.get_link(name)
        return None if link is None else _IFINFOMSG.unpack_from(link, 16)[2]

    def set_link(self, index: int, *, up: bool = False, mtu: int | None = None) -> None:
        msg = ifinfmsg()
        msg["index"] = index
        if up:
            msg["flags"] = msg["change"] = _IFF_UP
        if mtu is not None:
            msg["attrs"] = [["IFLA_MTU", mtu]]
        self.request(msg, _RTM_NEWLINK, _SET)

    def delete_link(self, name: str) -> bool:
        msg = ifinfmsg()
        msg["attrs"] = [["IFLA_IFNAME", name]]
        try:
            self.request(msg, _RTM_DELLINK, _SET)
        except _KernelError as exc:
            if exc.code == errno.ENODEV:
                return False
            raise
        return True

    def addresses(self, index: int) -> list[IPv4Interface]:
        def make() -> Any:
            msg = ifaddrmsg()
            msg["family"] = socket.AF_INET
            return msg

        out = []
        for chunk in self.dump(make, _RTM_GETADDR):
            family, prefixlen, _, _, ifindex = _IFADDRMSG.unpack_from(chunk, 16)
            if family != socket.AF_INET or ifindex != index:
                continue
            attrs = _attrs(chunk, 16 + _IFADDRMSG.size)
            raw = attrs.get(_IFA_LOCAL) or attrs.get(_IFA_ADDRESS)
            if raw and len(raw) == 4:
                out.append(IPv4Interface((IPv4Address(raw), prefixlen)))
        return out

    def add_address(self, index: int, address: IPv4Interface) -> None:
        msg = ifaddrmsg()
        msg["family"] = socket.AF_INET
        msg["prefixlen"] = address.network.prefixlen
        msg["index"] = index
        attrs = [["IFA_LOCAL", str(address.ip)], ["IFA_ADDRESS", str(address.ip)]]
        if address.network.prefixlen < 31:
            attrs.append(["IFA_BROADCAST", str(address.network.broadcast_address)])
        msg["attrs"] = attrs
        self.request(msg, _RTM_NEWADDR, _NEW)

    def add_default_route(self, index: int, gateway: IPv4Address) -> None:
        msg = rtmsg()
        msg["family"] = socket.AF_INET
        msg["table"] = _RT_TABLE_MAIN
        msg["proto"] = _RTPROT_BOOT
        msg["scope"] = _RT_SCOPE_UNIVERSE
        msg["type"] = _RTN_UNICAST
        msg["attrs"] = [["RTA_GATEWAY", str(gateway)], ["RTA_OIF", index]]
        self.request(msg, _RTM_NEWROUTE, _NEW)


def _link_kind(link: bytes) -> str:
    info = _attrs(link, 16 + _IFINFOMSG.size).get(_IFLA_LINKINFO)
    return _text(_attrs(info, 0).get(_IFLA_INFO_KIND)) if info else ""


_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


def _check_mac(mac: str) -> None:
    if not _MAC.fullmatch(mac):
        raise errdefs.InvalidParameter(f"invalid MAC address {mac!r}")


def _check_name(name: str, what: str) -> None:
    raw = name.encode()
    if not raw or len(raw) >= IFNAMSIZ or name in (".", "..") or any(c in name for c in "/: \t\n"):
        raise errdefs.InvalidParameter(f"invalid {what} name {name!r}")


# -- public API ------------------------------------------------------------------------------


def mac_for(ip: IPv4Address) -> str:
    """dockerd's generated MAC for an IPv4 address: 02:42 then the four address bytes."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


class Netlink:
    """rtnetlink for the daemon: one socket in the host namespace, shared by threads (locked)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        try:
            self._conn: _Conn | None = _Conn.here()
        except OSError as exc:
            raise _fail("open rtnetlink socket", exc) from None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @property
    def _c(self) -> _Conn:
        if self._conn is None:
            raise NetlinkError("netlink: used after close", errno.EBADF)
        return self._conn

    # -- queries -----------------------------------------------------------------------------

    def link_exists(self, name: str) -> bool:
        with self._lock:
            try:
                return self._c.index(name) is not None
            except (_KernelError, OSError) as exc:
                raise _fail(f"look up link {name}", exc) from None

    def link_names(self) -> list[str]:
        with self._lock:
            try:
                links = self._c.dump(ifinfmsg, _RTM_GETLINK)
            except (_KernelError, OSError) as exc:
                raise _fail("list links", exc) from None
        names = (_text(_attrs(link, 16 + _IFINFOMSG.size).get(_IFLA_IFNAME)) for link in links)
        return [name for name in names if name]

    def link_addresses(self, name: str) -> list[IPv4Interface]:
        """The IPv4 addresses of link `name` (NetlinkError with errno ENODEV when missing)."""
        with self._lock:
            try:
                index = self._c.index(name)
                if index is None:
                    raise NetlinkError(f"link {name} not found", errno.ENODEV)
                return self._c.addresses(index)
            except (_KernelError, OSError) as exc:
                raise _fail(f"list addresses of {name}", exc) from None

    def routes(self) -> list[IPv4Network]:
        """Destinations of the IPv4 routes in the main table, the default route left out."""

        def make() -> Any:
            msg = rtmsg()
            msg["family"] = socket.AF_INET
            return msg

        with self._lock:
            try:
                answer = self._c.dump(make, _RTM_GETROUTE)
            except (_KernelError, OSError) as exc:
                raise _fail("list routes", exc) from None
        out: list[IPv4Network] = []
        for chunk in answer:
            family, dst_len, _, _, table, _, _, _, _ = _RTMSG.unpack_from(chunk, 16)
            attrs = _attrs(chunk, 16 + _RTMSG.size)
            if _RTA_TABLE in attrs:
                table = struct.unpack("=I", attrs[_RTA_TABLE][:4])[0]
            dst = attrs.get(_RTA_DST)
            if family != socket.AF_INET or table != _RT_TABLE_MAIN or not dst_len or not dst:
                continue
            network = IPv4Network((IPv4Address(dst[:4]), dst_len), strict=False)
            if network not in out:
                out.append(network)
        return out

    # -- bridges and links -------------------------------------------------------------------

    def ensure_bridge(
        self, name: str, *, mtu: int, addresses: Sequence[IPv4Interface], create: bool = True
    ) -> bool:
        """Make sure bridge `name` exists, is up, has `mtu` and `addresses` (others are kept).

        Returns True when the bridge was created by this call (and removed again if a later step
        failed). A device of that name that is not a bridge is a NetlinkError.
        """
        _check_name(name, "bridge")
        with self._lock:
            conn = self._c
            step = f"look up bridge {name}"
            created = False
            try:
                link = conn.get_link(name)
                if link is None:
                    if not create:
                        raise NetlinkError(
                            f"bridge device with non default name {name} must be created manually",
                            errno.ENODEV,
                        )
                    step = f"create bridge {name}"
                    msg = ifinfmsg()
                    msg["attrs"] = [
                        ["IFLA_IFNAME", name],
                        ["IFLA_MTU", mtu],
                        ["IFLA_LINKINFO", {"attrs": [["IFLA_INFO_KIND", "bridge"]]}],
                    ]
                    conn.request(msg, _RTM_NEWLINK, _NEW)
                    created = True
                    step = f"look up bridge {name}"
                    link = conn.get_link(name)
                    if link is None:
                        raise NetlinkError(f"bridge {name} vanished right after creation")
                kind = _link_kind(link)
                if kind != "bridge":
                    raise NetlinkError(
                        f"device {name} exists and is not a bridge (kind {kind or 'none'})",
                        errno.EEXIST,
                    )
                _, _, index, flags, _ = _IFINFOMSG.unpack_from(link, 16)
                current_mtu = _attrs(link, 16 + _IFINFOMSG.size).get(_IFLA_MTU)
                if current_mtu is None or struct.unpack("=I", current_mtu[:4])[0] != mtu:
                    step = f"set mtu {mtu} on bridge {name}"
                    conn.set_link(index, mtu=mtu)
                step = f"list addresses of bridge {name}"
                have = set(conn.addresses(index))
                for address in addresses:
                    if address not in have:
                        step = f"add address {address} to bridge {name}"
                        try:
                            conn.add_address(index, address)
                        except _KernelError as exc:
                            if exc.code != errno.EEXIST:
                                raise
                if not flags & _IFF_UP:
                    step = f"set bridge {name} up"
                    conn.set_link(index, up=True)
            except BaseException as exc:
                if created:
                    with contextlib.suppress(_KernelError, OSError):
                        conn.delete_link(name)
                if isinstance(exc, (_KernelError, OSError)):
                    raise _fail(step, exc) from None
                raise
        return created

    def delete_link(self, name: str) -> None:
        """Delete link `name`; a missing link is fine."""
        with self._lock:
            try:
                self._c.delete_link(name)
            except (_KernelError, OSError) as exc:
                raise _fail(f"delete link {name}", exc) from None

    # -- veth pairs ----------------------------------------------------------------------------

    def add_veth(
        self,
        *,
        host_name: str,
        bridge: str,
        netns: Path,
        ifname: str,
        address: IPv4Interface | None,
        gateway: IPv4Address | None,
        mac: str,
        mtu: int,
    ) -> None:
        """A veth pair: `host_name` on `bridge` (up), its peer `ifname` inside `netns`.

        The peer gets `mac`, `mtu`, `address` (when given), is up, and routes by default via
        `gateway` (when given). On failure everything made here is removed again.
        """
        _check_name(host_name, "interface")
        _check_name(ifname, "interface")
        _check_mac(mac)
        step = f"look up bridge {bridge}"
        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise NetlinkError(
                f"open network namespace {netns}: {exc.strerror}", exc.errno
            ) from None
        try:
            with self._lock:
                conn = self._c
                try:
                    master = conn.index(bridge)
                    if master is None:
                        raise NetlinkError(f"bridge {bridge} not found", errno.ENODEV)
                    step = f"create veth pair {host_name}/{ifname} on {bridge}"
                    peer = [
                        ["IFLA_IFNAME", ifname],
                        ["IFLA_NET_NS_FD", fd],
                        ["IFLA_ADDRESS", mac],
                        ["IFLA_MTU", mtu],
                    ]
                    info: list[list[Any]] = [["IFLA_INFO_KIND", "veth"]]
                    info.append(
                        ["IFLA_INFO_DATA", {"attrs": [["VETH_INFO_PEER", {"attrs": peer}]]}]
                    )
                    msg = ifinfmsg()
                    msg["flags"] = msg["change"] = _IFF_UP
                    msg["attrs"] = [
                        ["IFLA_IFNAME", host_name],
                        ["IFLA_MTU", mtu],
                        ["IFLA_MASTER", master],
                        ["IFLA_LINKINFO", {"attrs": info}],
                    ]
                    conn.request(msg, _RTM_NEWLINK, _NEW)
                except (_KernelError, OSError) as exc:
                    raise _fail(step, exc) from None
        finally:
            os.close(fd)
        try:
            step = f"open netlink socket in {netns}"
            with _Conn.inside(netns) as inner:
                step = f"look up {ifname} in {netns}"
                index = inner.index(ifname)
                if index is None:
                    raise NetlinkError(
                        f"{ifname} not found in {netns} after creation", errno.ENODEV
                    )
                step = f"set {ifname} up in {netns}"
                inner.set_link(index, up=True)
                if address is not None:
                    step = f"add address {address} to {ifname} in {netns}"
                    inner.add_address(index, address)
                if gateway is not None:
                    step = f"add default route via {gateway} on {ifname} in {netns}"
                    inner.add_default_route(index, gateway)
        except BaseException as exc:
            self._forget(host_name)  # the pair is ours now: deleting the host end takes both
            if isinstance(exc, (_KernelError, OSError)):
                raise _fail(step, exc) from None
            if isinstance(exc, errdefs.PymobyError) and not isinstance(exc, NetlinkError):
                raise NetlinkError(f"{step}: {exc.message}") from None
            raise

    def _forget(self, host_name: str) -> None:
        """Best-effort removal of a half-made pair (the error being reported matters more)."""
        with contextlib.suppress(NetlinkError):
            self.delete_link(host_name)

    def remove_veth(self, host_name: str) -> None:
        """Delete the host end `host_name`; its peer goes with it. Missing is fine."""
        self.delete_link(host_name)

    def remove_in_netns(self, netns: Path, ifname: str) -> None:
        """Delete `ifname` inside the namespace at `netns`; a missing one (or namespace) is fine."""
        if not knetns.is_netns(netns):
            return
        step = f"open netlink socket in {netns}"
        try:
            with _Conn.inside(netns) as inner:
                step = f"delete {ifname} in {netns}"
                inner.delete_link(ifname)
        except (_KernelError, OSError) as exc:
            raise _fail(step, exc) from None
        except knetns.NetnsError as exc:
            raise NetlinkError(f"{step}: {exc.message}", exc.errno) from None
