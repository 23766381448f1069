"""dockerd's IPv4 iptables layout for bridge networks, as pure data: no process, no kernel.

Rule: this module only computes. `desired()` turns networks + published ports into the rules
that must exist, `parse_save()` reads `iptables-save` text, `plan()` diffs the two into ONE
`iptables-restore --noflush` script (empty when the host already matches) that edits our chains
in place (never flush-and-refill: see `_edit`). `kernel/iptables.py` runs the tools. Every rule
text here is in iptables-save's canonical form, so "already there" is a plain string comparison
and a second reconcile plans nothing.

Layout (moby's current iptabler; its "hairpin" mode = userland proxy off). Chain names below
are written without the prefix that every one of ours carries; `pr` = tcp|udp|sctp:

  filter FORWARD      -j DOCKER-USER, -j DOCKER-FORWARD (inserted first, kept together)
  filter DOCKER-USER  created empty if missing; its rules belong to the user, never flushed
  filter DOCKER-FORWARD  -j DOCKER-CT, -j DOCKER-INTERNAL, -j DOCKER-BRIDGE, then per bridge:
                      icc: -i br -j ACCEPT | no icc: -i br -o br -j DROP, -i br ! -o br -j ACCEPT
                      internal: -i br -o br -j ACCEPT|DROP (icc)
  filter DOCKER-CT    -o br -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
  filter DOCKER-BRIDGE  -o br -j DOCKER
  filter DOCKER       per published port: -d ctr/32 ! -i br -o br -p pr --dport cport -j ACCEPT,
                      then per bridge: ! -i br -o br -j DROP (this is also the isolation between
                      networks: another bridge only reaches published ports)
  filter DOCKER-INTERNAL  internal bridges: ! -s subnet -o br -j DROP, ! -d subnet -i br -j DROP
  nat PREROUTING      -m addrtype --dst-type LOCAL -j DOCKER
  nat OUTPUT          [! -d 127.0.0.0/8 when the userland proxy is on] -m addrtype ... -j DOCKER
  nat DOCKER          per port: [-d host_ip/32] [! -i br when proxy on] -p pr --dport hport
                      -j DNAT --to-destination ctr:cport
  nat POSTROUTING     -s subnet ! -o br -j MASQUERADE (or SNAT --to-source host_ip) if masquerade;
                      proxy off: -o br -m addrtype --src-type LOCAL -j MASQUERADE|SNAT (loopback
                      DNAT, needs route_localnet) and per port -s ctr/32 -d ctr/32 ... MASQUERADE
  raw PREROUTING      per published container: -d ctr/32 ! -i br -j DROP (no direct routing);
                      per port bound to 127.x: -d 127.x/32 ! -i lo -p pr --dport hport -j DROP

Rules we add to built-in chains (other than jumps to our chains) carry
`-m comment --comment <prefix>pymoby`: that is how a later reconcile knows them as ours without
remembering anything. Jumps are recognised by their target. Nothing else is ever touched.
Internal networks get no NAT, no port rules. IPv4 only: IPv6 subnets and bindings passed in
are skipped (ip6tables would be a second instance of the same layout). The DOCKER-ISOLATION-*
chains of older dockerd versions are removed when the prefix is "" (dockerd's own names).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from ipaddress import IPv4Address, IPv4Network

from pymoby import errdefs

MAX_CHAIN_LEN = 28  # XT_EXTENSION_MAXNAMELEN - 1
TABLES = ("raw", "filter", "nat")  # restore order: drops and filters before DNAT opens a port
PROTOS = ("tcp", "udp", "sctp")

DOCKER = "DOCKER"
FORWARD = "DOCKER-FORWARD"
BRIDGE = "DOCKER-BRIDGE"
CT = "DOCKER-CT"
INTERNAL = "DOCKER-INTERNAL"
USER = "DOCKER-USER"
LEGACY = ("DOCKER-ISOLATION-STAGE-1", "DOCKER-ISOLATION-STAGE-2", "DOCKER-ISOLATION")

_RET = ["-j RETURN"]
_PREFIX_RE = re.compile(r"[A-Za-z0-9_.-]*")
_IFNAME_RE = re.compile(r"[^\s/:]{1,15}")


class IptablesError(errdefs.System):
    """Rules could not be computed or applied (bad input, iptables tool failure)."""


@dataclass(frozen=True, slots=True)
class BridgeNet:
    """One bridge network as the firewall sees it."""

    bridge: str  # link name, e.g. "docker0"
    subnet: IPv4Network
    icc: bool = True
    masquerade: bool = True
    internal: bool = False
    host_ip: IPv4Address | None = None  # SNAT source (host_binding_ipv4); None = MASQUERADE


@dataclass(frozen=True, slots=True)
class PortMap:
    """One published port: host_ip:host_port/proto -> container_ip:container_port."""

    proto: str  # "tcp" | "udp" | "sctp"
    host_ip: IPv4Address  # 0.0.0.0 = every local address
    host_port: int  # 0 = no NAT (only the filter ACCEPT)
    container_ip: IPv4Address
    container_port: int
    bridge: str


@dataclass(slots=True)
class TableState:
    """One table of `iptables-save`: chain -> policy ("-" for user chains), chain -> rule specs."""

    chains: dict[str, str] = field(default_factory=dict)
    rules: dict[str, list[str]] = field(default_factory=dict)


@dataclass(slots=True)
class Desired:
    """What must exist: our chains with their full contents, our rules in built-in chains."""

    own: dict[str, dict[str, list[str]]]  # table -> our chain -> specs (DOCKER-USER excluded)
    builtin: dict[str, dict[str, list[str]]]  # table -> built-in chain -> our specs, in order
    user_chain: bool  # DOCKER-USER must exist (False: drop it if empty)

    def render(self) -> dict[str, list[str]]:
        """table -> "-A CHAIN spec" lines: built-in chains first, then our chains."""
        out: dict[str, list[str]] = {}
        for table in TABLES:
            lines = [
                f"-A {chain} {spec}"
                for part in (self.builtin.get(table, {}), self.own.get(table, {}))
                for chain, specs in part.items()
                for spec in specs
            ]
            out[table] = lines
        return out


def _uniq(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


class Layout:
    """Chain names for one prefix, rule generation and planning (all pure)."""

    def __init__(self, prefix: str = "") -> None:
        if not _PREFIX_RE.fullmatch(prefix):
            raise IptablesError(f"invalid iptables chain prefix {prefix!r}")
        self.prefix = prefix
        self.docker = prefix + DOCKER
        self.forward = prefix + FORWARD
        self.bridge = prefix + BRIDGE
        self.ct = prefix + CT
        self.internal = prefix + INTERNAL
        self.user = prefix + USER
        self.tag = prefix + "pymoby"
        self.legacy = LEGACY if prefix == "" else ()
        for name in (self.docker, self.forward, self.bridge, self.ct, self.internal, self.user):
            if len(name) > MAX_CHAIN_LEN:
                raise IptablesError(
                    f"iptables chain name {name!r} is longer than {MAX_CHAIN_LEN} characters"
                )
        # Our chains per table (DOCKER-USER apart): declared in this order.
        self.chains: dict[str, tuple[str, ...]] = {
            "raw": (),
            "filter": (self.docker, self.bridge, self.ct, self.forward, self.internal),
            "nat": (self.docker,),
        }

    # -- generation ---------------------------------------------------------------------------

    def desired(
        self, nets: Sequence[BridgeNet], ports: Sequence[PortMap], *, userland_proxy: bool
    ) -> Desired:
        # IPv4 only: IPv6 subnets and bindings (ip6tables' business) are skipped, not refused.
        nets = [n for n in nets if isinstance(n.subnet, IPv4Network)]
        ports = [
            p
            for p in ports
            if isinstance(p.host_ip, IPv4Address) and isinstance(p.container_ip, IPv4Address)
        ]
        by_bridge: dict[str, BridgeNet] = {}
        for net in nets:
            _check_ifname(net.bridge)
            if net.bridge in by_bridge:
                raise IptablesError(f"bridge {net.bridge!r} appears in two networks")
            by_bridge[net.bridge] = net
        hairpin = not userland_proxy
        tag = f"-m comment --comment {self.tag}"

        fwd = [f"-j {self.ct}", f"-j {self.internal}", f"-j {self.bridge}"]
        ct: list[str] = []
        jump_docker: list[str] = []
        internal: list[str] = []
        drops: list[str] = []
        postrouting: list[str] = []
        for net in nets:
            br, sub = net.bridge, net.subnet
            if net.internal:
                internal += [f"! -s {sub} -o {br} -j DROP", f"! -d {sub} -i {br} -j DROP"]
                fwd.append(f"-i {br} -o {br} -j {'ACCEPT' if net.icc else 'DROP'}")
                continue
            ct.append(f"-o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
            jump_docker.append(f"-o {br} -j {self.docker}")
            drops.append(f"! -i {br} -o {br} -j DROP")
            if net.icc:
                fwd.append(f"-i {br} -j ACCEPT")
            else:
                fwd += [f"-i {br} -o {br} -j DROP", f"-i {br} ! -o {br} -j ACCEPT"]
            snat = f"SNAT --to-source {net.host_ip}" if net.host_ip is not None else "MASQUERADE"
            if hairpin:
                postrouting.append(f"-o {br} -m addrtype --src-type LOCAL {tag} -j {snat}")
            if net.masquerade:
                postrouting.append(f"-s {sub} ! -o {br} {tag} -j {snat}")

        accepts: list[str] = []
        dnat: list[str] = []
        raw: list[str] = []
        for pm in ports:
            pnet = by_bridge.get(pm.bridge)
            if pnet is None:
                raise IptablesError(f"published port on unknown bridge {pm.bridge!r}")
            _check_port(pm)
            if pnet.internal:
                continue
            br, proto, cip = pm.bridge, pm.proto, pm.container_ip
            match = f"-p {proto} -m {proto}"
            raw.append(f"-d {cip}/32 ! -i {br} {tag} -j DROP")
            accepts.append(
                f"-d {cip}/32 ! -i {br} -o {br} {match} --dport {pm.container_port} -j ACCEPT"
            )
            if pm.host_port == 0:
                continue
            dst = "" if pm.host_ip.is_unspecified else f"-d {pm.host_ip}/32 "
            notin = "" if hairpin else f"! -i {br} "
            dnat.append(
                f"{dst}{notin}{match} --dport {pm.host_port} -j DNAT"
                f" --to-destination {cip}:{pm.container_port}"
            )
            if pm.host_ip.is_loopback:
                raw.append(f"{dst}! -i lo {match} --dport {pm.host_port} {tag} -j DROP")
            if hairpin:
                postrouting.append(
                    f"-s {cip}/32 -d {cip}/32 {match} --dport {pm.container_port}"
                    f" {tag} -j MASQUERADE"
                )

        local = "-m addrtype --dst-type LOCAL"
        return Desired(
            own={
                "filter": {
                    self.docker: _uniq(accepts) + drops,
                    self.bridge: jump_docker,
                    self.ct: ct,
                    self.forward: fwd,
                    self.internal: internal,
                },
                "nat": {self.docker: _uniq(dnat)},
            },
            builtin={
                "raw": {"PREROUTING": _uniq(raw)},
                "filter": {"FORWARD": [f"-j {self.user}", f"-j {self.forward}"]},
                "nat": {
                    "PREROUTING": [f"{local} -j {self.docker}"],
                    "OUTPUT": [
                        ("" if hairpin else "! -d 127.0.0.0/8 ") + f"{local} -j {self.docker}"
                    ],
                    "POSTROUTING": _uniq(postrouting),
                },
            },
            user_chain=True,
        )

    @staticmethod
    def nothing() -> Desired:
        """The state `clear()` aims at: none of our chains or rules."""
        return Desired(own={}, builtin={}, user_chain=False)

    # -- planning -----------------------------------------------------------------------------

    def plan(self, saved: dict[str, TableState], want: Desired, *, to_top: bool = False) -> str:
        """The `iptables-restore --noflush` script turning `saved` into `want` ("" = no-op).

        Our FORWARD jumps are (re)inserted at the top when missing, duplicated, out of order or
        split; `to_top` also moves them there when other rules were put above them (dockerd
        does that once at startup; doing it on every reconcile would make two daemons fight).
        """
        out: list[str] = []
        for table in TABLES:
            lines = self._plan_table(table, saved.get(table, TableState()), want, to_top)
            if lines:
                out += [f"*{table}", *lines, "COMMIT"]
        return "\n".join(out) + "\n" if out else ""

    def _plan_table(self, table: str, cur: TableState, want: Desired, to_top: bool) -> list[str]:
        decls: list[str] = []
        deletes: list[str] = []
        removes: list[str] = []
        adds: list[str] = []
        own_want = want.own.get(table, {})
        ours = set(self.chains[table])
        if table == "filter":
            ours.update(self.legacy)
            user_exists = self.user in cur.chains
            # dockerd < 28 put a lone RETURN in it: that is not the user's either
            keep_user = not want.user_chain and cur.rules.get(self.user, []) not in ([], _RET)
            if not keep_user:
                ours.add(self.user)  # else its jump belongs to the user's rules: left alone
            if want.user_chain and not user_exists:
                decls.append(f":{self.user} - [0:0]")
            elif not want.user_chain and user_exists and not keep_user:
                decls.append(f":{self.user} - [0:0]")
                removes.append(f"-X {self.user}")
        for chain in (*self.chains[table], *(self.legacy if table == "filter" else ())):
            exists = chain in cur.chains
            if chain in own_want:
                specs = own_want[chain]
                if not exists:
                    decls.append(f":{chain} - [0:0]")
                    adds += [f"-A {chain} {spec}" for spec in specs]
                else:  # edited in place, never flushed: see _edit
                    adds += _edit(chain, cur.rules.get(chain, []), specs)
            elif exists:  # declaring an existing chain flushes it (with --noflush)
                decls.append(f":{chain} - [0:0]")
                removes.append(f"-X {chain}")

        builtin_want = want.builtin.get(table, {})
        builtins = [c for c, policy in cur.chains.items() if policy != "-"]
        builtins += [c for c in builtin_want if c not in cur.chains]
        for chain in builtins:
            rules = cur.rules.get(chain, [])
            mine = [spec for spec in rules if self._is_ours(spec, ours)]
            wanted = builtin_want.get(chain, [])
            if table == "filter" and chain == "FORWARD":  # ours together, in this order
                at = rules.index(wanted[0]) if wanted and wanted[0] in rules else 0
                if mine != wanted or rules[at : at + len(wanted)] != wanted or (to_top and at):
                    deletes += [f"-D {chain} {spec}" for spec in mine]
                    adds += [f"-I {chain} {i} {spec}" for i, spec in enumerate(wanted, 1)]
                continue
            extra = Counter(mine) - Counter(wanted)
            for spec, n in extra.items():
                deletes += [f"-D {chain} {spec}"] * n
            have = Counter(mine)
            for spec in wanted:
                if have[spec] > 0:
                    have[spec] -= 1
                else:
                    adds.append(f"-A {chain} {spec}")
        return decls + deletes + removes + adds

    def _is_ours(self, spec: str, chains: set[str]) -> bool:
        words = spec.split()
        for i, word in enumerate(words[:-1]):
            nxt = words[i + 1]
            if (word in ("-j", "-g") and nxt in chains) or (
                word == "--comment" and nxt == self.tag
            ):
                return True
        return False


def _edit(chain: str, have: list[str], want: list[str]) -> list[str]:
    """The fewest -D/-I/-A (by position) that turn `have` into `want`.

    Rewriting a chain would delete and re-add every rule, and a deletion costs an RCU grace
    period in the kernel (nf_tables frees rules when the restore's netlink socket closes):
    10-30 ms. Editing keeps adding a port or a network at ~2 ms; only removals pay that wait.
    Edits run from the chain's end backwards, so earlier positions stay valid.
    """
    out: list[str] = []
    length = len(have)
    ops = SequenceMatcher(None, have, want, autojunk=False).get_opcodes()
    for op, i1, i2, j1, j2 in reversed(ops):
        if op == "equal":
            continue
        out += [f"-D {chain} {i1 + 1}"] * (i2 - i1)
        length -= i2 - i1
        for pos, spec in enumerate(want[j1:j2], i1 + 1):
            out.append(f"-A {chain} {spec}" if pos > length else f"-I {chain} {pos} {spec}")
            length += 1
    return out


def parse_save(text: str) -> dict[str, TableState]:
    """Parse `iptables-save` output (without counters) into table -> TableState."""
    tables: dict[str, TableState] = {}
    cur: TableState | None = None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            cur = tables.setdefault(line[1:].strip(), TableState())
        elif cur is None:
            continue
        elif line.startswith(":"):
            name, _, rest = line[1:].partition(" ")
            cur.chains[name] = rest.split(" ", 1)[0] if rest else "-"
        elif line.startswith("-A "):
            parts = line.split(" ", 2)
            cur.rules.setdefault(parts[1], []).append(parts[2] if len(parts) > 2 else "")
        elif line == "COMMIT":
            cur = None
    return tables


def _check_ifname(name: str) -> None:
    if not _IFNAME_RE.fullmatch(name):
        raise IptablesError(f"invalid bridge interface name {name!r}")


def _check_port(pm: PortMap) -> None:
    _check_ifname(pm.bridge)
    if pm.proto not in PROTOS:
        raise IptablesError(f"invalid protocol {pm.proto!r} for a published port")
    if not 0 <= pm.host_port <= 65535 or not 1 <= pm.container_port <= 65535:
        raise IptablesError(f"invalid port in {pm.host_port}:{pm.container_port}/{pm.proto}")
