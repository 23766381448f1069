"""kernel.iptables: dockerd's bridge rule layout (pure), the reconcile plan, and the real host.

Pure tests check the rules against moby's current layout and replay every plan on an in-memory
model of iptables-restore, so "a second reconcile changes nothing" is checked without root.
Root tests apply rules for interfaces that do not exist under a unique chain prefix, send no
traffic, and always clear() in a finally.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network

import pytest

from pymoby import errdefs
from pymoby.kernel.iptables import BridgeNet, Iptables, IptablesError, PortMap
from pymoby.kernel.iptables_rules import Layout, TableState, _edit, parse_save

A = IPv4Address
ANY = A("0.0.0.0")
CT = "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
LOCAL = "-m addrtype --dst-type LOCAL"
TAG = "-m comment --comment pymoby"


def net(br: str = "br-a", sub: str = "192.168.0.0/24", **kw: object) -> BridgeNet:
    return BridgeNet(br, IPv4Network(sub), **kw)  # type: ignore[arg-type]


def port(
    hport: int = 8080, cport: int = 80, *, br: str = "br-a", ip: str = "192.168.0.2", **kw: object
) -> PortMap:
    host_ip = A(str(kw.pop("host_ip", "0.0.0.0")))
    proto = str(kw.pop("proto", "tcp"))
    return PortMap(proto, host_ip, hport, A(ip), cport, br)


def rules(table: str, *, nets: list[BridgeNet], ports: list[PortMap], proxy: bool) -> list[str]:
    return Iptables().render(nets, ports, userland_proxy=proxy)[table]


# -- an in-memory iptables-restore --noflush ---------------------------------------------------

BUILTIN = {
    "raw": ("PREROUTING", "OUTPUT"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
}


def apply(state: dict[str, TableState], script: str) -> None:
    """Replay a restore script like iptables-restore --noflush does; fail like it would."""
    table: TableState | None = None
    for line in script.splitlines():
        if line.startswith("*"):
            table = state.setdefault(line[1:], TableState())
            for chain in BUILTIN[line[1:]]:
                table.chains.setdefault(chain, "ACCEPT")
            continue
        assert table is not None
        if not line:
            continue
        if line == "COMMIT":
            table = None
        elif line.startswith(":"):
            name = line[1:].split()[0]
            table.chains[name] = "-"
            table.rules[name] = []  # declaring an existing chain flushes it
        else:
            op, chain, *rest = line.split(" ", 2)
            assert chain in table.chains, line
            specs = table.rules.setdefault(chain, [])
            if op == "-A":
                specs.append(rest[0])
            elif op == "-I":
                pos, spec = rest[0].split(" ", 1)
                assert 1 <= int(pos) <= len(specs) + 1, f"index of insertion too big: {line}"
                specs.insert(int(pos) - 1, spec)
            elif op == "-D" and rest[0].isdigit():
                del specs[int(rest[0]) - 1]  # IndexError: iptables would fail too
            elif op == "-D":
                specs.remove(rest[0])  # ValueError: iptables would fail too
            elif op == "-X":
                assert not specs, f"-X of a non-empty chain: {line}"
                for others in table.rules.values():
                    assert not any(s.endswith(f"-j {chain}") for s in others), line
                del table.chains[chain], table.rules[chain]
            else:
                raise AssertionError(line)


def save_text(state: dict[str, TableState]) -> str:
    out = []
    for name, table in state.items():
        out.append(f"*{name}")
        out += [f":{c} {p} [0:0]" for c, p in table.chains.items()]
        out += [f"-A {c} {s}" for c, specs in table.rules.items() for s in specs]
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def converge(
    layout: Layout,
    state: dict[str, TableState],
    nets: list[BridgeNet],
    ports: list[PortMap],
    *,
    proxy: bool = True,
) -> str:
    want = layout.desired(nets, ports, userland_proxy=proxy)
    script = layout.plan(state, want)
    apply(state, script)
    assert layout.plan(state, want) == "", "a second reconcile must change nothing"
    return script


def ours(state: dict[str, TableState], layout: Layout) -> list[str]:
    """Our chains and rules as "table line" strings."""
    out = []
    for name, table in state.items():
        lines = [f":{c}" for c in table.chains] + [
            f"-A {c} {s}" for c, specs in table.rules.items() for s in specs
        ]
        out += [
            f"{name} {ln}" for ln in lines if layout.prefix + "DOCKER" in ln or layout.tag in ln
        ]
    return out


# -- the layout ----------------------------------------------------------------------------


def test_default_network_with_a_published_port_matches_moby() -> None:
    nets, ports = [net()], [port()]
    r = Iptables().render(nets, ports, userland_proxy=True)
    assert r["filter"] == [
        "-A FORWARD -j DOCKER-USER",
        "-A FORWARD -j DOCKER-FORWARD",
        "-A DOCKER -d 192.168.0.2/32 ! -i br-a -o br-a -p tcp -m tcp --dport 80 -j ACCEPT",
        "-A DOCKER ! -i br-a -o br-a -j DROP",
        "-A DOCKER-BRIDGE -o br-a -j DOCKER",
        f"-A DOCKER-CT -o br-a {CT}",
        "-A DOCKER-FORWARD -j DOCKER-CT",
        "-A DOCKER-FORWARD -j DOCKER-INTERNAL",
        "-A DOCKER-FORWARD -j DOCKER-BRIDGE",
        "-A DOCKER-FORWARD -i br-a -j ACCEPT",
    ]
    assert r["nat"] == [
        f"-A PREROUTING {LOCAL} -j DOCKER",
        f"-A OUTPUT ! -d 127.0.0.0/8 {LOCAL} -j DOCKER",
        f"-A POSTROUTING -s 192.168.0.0/24 ! -o br-a {TAG} -j MASQUERADE",
        "-A DOCKER ! -i br-a -p tcp -m tcp --dport 8080 -j DNAT --to-destination 192.168.0.2:80",
    ]
    assert r["raw"] == [f"-A PREROUTING -d 192.168.0.2/32 ! -i br-a {TAG} -j DROP"]


def test_no_userland_proxy_hairpins_and_dnats_loopback() -> None:
    nets, ports = [net()], [port()]
    nat = rules("nat", nets=nets, ports=ports, proxy=False)
    assert nat == [
        f"-A PREROUTING {LOCAL} -j DOCKER",
        f"-A OUTPUT {LOCAL} -j DOCKER",  # 127.0.0.0/8 too: needs route_localnet
        f"-A POSTROUTING -o br-a -m addrtype --src-type LOCAL {TAG} -j MASQUERADE",
        f"-A POSTROUTING -s 192.168.0.0/24 ! -o br-a {TAG} -j MASQUERADE",
        "-A POSTROUTING -s 192.168.0.2/32 -d 192.168.0.2/32 -p tcp -m tcp --dport 80"
        f" {TAG} -j MASQUERADE",
        "-A DOCKER -p tcp -m tcp --dport 8080 -j DNAT --to-destination 192.168.0.2:80",
    ]


def test_icc_false_drops_traffic_inside_the_bridge() -> None:
    f = rules("filter", nets=[net(icc=False)], ports=[], proxy=True)
    assert "-A DOCKER-FORWARD -i br-a -o br-a -j DROP" in f
    assert "-A DOCKER-FORWARD -i br-a ! -o br-a -j ACCEPT" in f
    assert "-A DOCKER-FORWARD -i br-a -j ACCEPT" not in f
    assert f.index("-A DOCKER-FORWARD -i br-a -o br-a -j DROP") < f.index(
        "-A DOCKER-FORWARD -i br-a ! -o br-a -j ACCEPT"
    )


def test_networks_are_isolated_except_published_ports() -> None:
    nets = [net("br-a"), net("br-b", "10.1.0.0/24")]
    ports = [port(br="br-b", ip="10.1.0.5", proto="udp", cport=53, hport=53)]
    docker = [x for x in rules("filter", nets=nets, ports=ports, proxy=True) if "-A DOCKER " in x]
    assert docker == [
        "-A DOCKER -d 10.1.0.5/32 ! -i br-b -o br-b -p udp -m udp --dport 53 -j ACCEPT",
        "-A DOCKER ! -i br-a -o br-a -j DROP",
        "-A DOCKER ! -i br-b -o br-b -j DROP",
    ]


def test_internal_network_has_no_way_out_and_no_nat() -> None:
    nets = [net(internal=True)]
    r = Iptables().render(nets, [port()], userland_proxy=False)
    assert "-A DOCKER-INTERNAL ! -s 192.168.0.0/24 -o br-a -j DROP" in r["filter"]
    assert "-A DOCKER-INTERNAL ! -d 192.168.0.0/24 -i br-a -j DROP" in r["filter"]
    assert "-A DOCKER-FORWARD -i br-a -o br-a -j ACCEPT" in r["filter"]
    assert not [x for x in r["filter"] if "-A DOCKER " in x or "-A DOCKER-CT" in x]
    assert not [x for x in r["nat"] if "POSTROUTING" in x or "DNAT" in x]  # ports ignored
    assert r["raw"] == []
    f = rules("filter", nets=[net(internal=True, icc=False)], ports=[], proxy=True)
    assert "-A DOCKER-FORWARD -i br-a -o br-a -j DROP" in f


def test_masquerade_off_and_snat_host_ip() -> None:
    assert not [
        x
        for x in rules("nat", nets=[net(masquerade=False)], ports=[], proxy=True)
        if "POSTROUTING" in x
    ]
    nat = rules("nat", nets=[net(host_ip=A("192.0.2.9"))], ports=[], proxy=False)
    assert f"-A POSTROUTING -s 192.168.0.0/24 ! -o br-a {TAG} -j SNAT --to-source 192.0.2.9" in nat
    assert (
        f"-A POSTROUTING -o br-a -m addrtype --src-type LOCAL {TAG} -j SNAT --to-source 192.0.2.9"
        in nat
    )


def test_host_ip_and_loopback_binding() -> None:
    ports = [port(host_ip="192.0.2.1"), port(8081, host_ip="127.0.0.1", proto="sctp")]
    r = Iptables().render([net()], ports, userland_proxy=True)
    assert (
        "-A DOCKER -d 192.0.2.1/32 ! -i br-a -p tcp -m tcp --dport 8080 -j DNAT"
        " --to-destination 192.168.0.2:80" in r["nat"]
    )
    assert (
        "-A DOCKER -d 127.0.0.1/32 ! -i br-a -p sctp -m sctp --dport 8081 -j DNAT"
        " --to-destination 192.168.0.2:80" in r["nat"]
    )
    assert r["raw"] == [
        f"-A PREROUTING -d 192.168.0.2/32 ! -i br-a {TAG} -j DROP",
        f"-A PREROUTING -d 127.0.0.1/32 ! -i lo -p sctp -m sctp --dport 8081 {TAG} -j DROP",
    ]


def test_same_container_port_twice_gives_one_accept() -> None:
    ports = [port(8080), port(8081), port(0)]  # host_port 0: no NAT, only the ACCEPT
    r = Iptables().render([net()], ports, userland_proxy=False)
    assert sum("-j ACCEPT" in x and "-A DOCKER " in x for x in r["filter"]) == 1
    assert sum("DNAT" in x for x in r["nat"]) == 2
    assert sum("-s 192.168.0.2/32" in x for x in r["nat"]) == 1


def test_prefix_names_every_chain() -> None:
    r = Iptables(prefix="T9a-").render([net()], [port()], userland_proxy=True)
    assert r["filter"][:2] == ["-A FORWARD -j T9a-DOCKER-USER", "-A FORWARD -j T9a-DOCKER-FORWARD"]
    assert "-A T9a-DOCKER-BRIDGE -o br-a -j T9a-DOCKER" in r["filter"]
    assert all("--comment T9a-pymoby" in x for x in r["raw"])


@pytest.mark.parametrize(
    ("nets", "ports", "msg"),
    [
        ([net("bad name")], [], "interface name"),
        ([net("a-very-long-bridge")], [], "interface name"),
        ([net(), net()], [], "two networks"),
        ([net()], [port(br="br-x")], "unknown bridge"),
        ([net()], [port(proto="icmp")], "protocol"),
        ([net()], [port(70000)], "invalid port"),
        ([net()], [port(cport=0)], "invalid port"),
    ],
)
def test_bad_input_is_refused(nets: list[BridgeNet], ports: list[PortMap], msg: str) -> None:
    with pytest.raises(IptablesError, match=msg) as e:
        Iptables().render(nets, ports, userland_proxy=True)
    assert isinstance(e.value, errdefs.System)


def test_ipv6_entries_are_skipped() -> None:
    from ipaddress import IPv6Address, IPv6Network

    v6net = BridgeNet("br-a", IPv6Network("fd00::/64"))  # type: ignore[arg-type]
    v6port = PortMap("tcp", IPv6Address("::"), 80, IPv6Address("fd00::2"), 80, "br-a")  # type: ignore[arg-type]
    ipt = Iptables()
    assert ipt.render([net(), v6net], [port(), v6port], userland_proxy=True) == ipt.render(
        [net()], [port()], userland_proxy=True
    )


def test_prefix_checks() -> None:
    Iptables(prefix="x" * 13)  # "x"*13 + "DOCKER-INTERNAL" = 28 characters
    with pytest.raises(IptablesError, match="longer than 28"):
        Iptables(prefix="x" * 14)
    with pytest.raises(IptablesError, match="invalid"):
        Iptables(prefix="a b")


# -- planning ------------------------------------------------------------------------------


def test_plan_from_nothing_then_nothing_to_do() -> None:
    layout, state = Layout("T1-"), {}  # type: dict[str, TableState]
    script = converge(layout, state, [net()], [port()])
    assert script.startswith("*raw\n")
    assert ":T1-DOCKER-USER - [0:0]" in script
    assert "-I FORWARD 1 -j T1-DOCKER-USER\n-I FORWARD 2 -j T1-DOCKER-FORWARD" in script
    assert state["filter"].rules["FORWARD"] == ["-j T1-DOCKER-USER", "-j T1-DOCKER-FORWARD"]


def test_parse_save_reads_real_output() -> None:
    text = (
        "# Generated by iptables-save v1.8.9 (nf_tables)\n*nat\n:PREROUTING ACCEPT [3:120]\n"
        ":DOCKER - [0:0]\n-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n-A DOCKER\n"
        "COMMIT\n# Completed\n*filter\n:FORWARD DROP [0:0]\nCOMMIT\n"
    )
    s = parse_save(text)
    assert s["nat"].chains == {"PREROUTING": "ACCEPT", "DOCKER": "-"}
    assert s["nat"].rules == {"PREROUTING": [f"{LOCAL} -j DOCKER"], "DOCKER": [""]}
    assert s["filter"].chains == {"FORWARD": "DROP"}


def test_changes_only_touch_what_changed_and_never_duplicate() -> None:
    layout, state = Layout("T1-"), {}  # type: dict[str, TableState]
    a, b = net("br-a"), net("br-b", "10.1.0.0/24", icc=False)
    converge(layout, state, [a, b], [port(), port(9000, 90, br="br-b", ip="10.1.0.2")])
    for _ in range(3):
        converge(layout, state, [a, b], [port(), port(9000, 90, br="br-b", ip="10.1.0.2")])
    lines = ours(state, layout)
    assert len(lines) == len(set(lines))
    # Remove network b (and its port): everything that names br-b goes, a's rules stay.
    script = converge(layout, state, [a], [port()])
    builtin_ops = [x for x in script.splitlines() if x[:1] == "-" and " T1-" not in x[:6]]
    assert builtin_ops and not [x for x in builtin_ops if "br-a" in x]  # a's rules stay put
    assert "-D POSTROUTING -s 10.1.0.0/24 ! -o br-b" in script
    assert not [x for x in save_text(state).splitlines() if "br-b" in x or "10.1.0." in x]
    assert "-D FORWARD" not in script and "-I FORWARD" not in script
    # Switching the userland proxy off replaces the OUTPUT jump, never adds a second one.
    converge(layout, state, [a], [port()], proxy=False)
    assert state["nat"].rules["OUTPUT"] == [f"{LOCAL} -j T1-DOCKER"]
    converge(layout, state, [a], [port()], proxy=True)
    assert state["nat"].rules["OUTPUT"] == [f"! -d 127.0.0.0/8 {LOCAL} -j T1-DOCKER"]


def test_foreign_rules_are_never_touched() -> None:
    foreign = (
        "*filter\n:FORWARD DROP [0:0]\n:OTHER - [0:0]\n:T2-DOCKER - [0:0]\n"
        "-A FORWARD -j OTHER\n-A FORWARD -j T2-DOCKER\n-A OTHER -o br-a -j DROP\n"
        "-A T2-DOCKER -j RETURN\nCOMMIT\n*nat\n:POSTROUTING ACCEPT [0:0]\n"
        "-A POSTROUTING -s 192.168.0.0/24 ! -o br-a -j MASQUERADE\n"
        "-A POSTROUTING -s 192.168.0.0/24 ! -o br-a -m comment --comment other -j MASQUERADE\n"
        "COMMIT\n"
    )
    layout = Layout("T1-")
    state = parse_save(foreign)
    before = parse_save(foreign)
    converge(layout, state, [net()], [port()])
    assert state["filter"].rules["FORWARD"][2:] == ["-j OTHER", "-j T2-DOCKER"]
    converge(layout, state, [], [])
    apply(state, layout.plan(state, Layout.nothing()))
    assert not ours(state, layout)
    for table, chain in [("filter", "FORWARD"), ("filter", "T2-DOCKER"), ("nat", "POSTROUTING")]:
        assert state[table].rules[chain] == before[table].rules[chain]
    assert state["filter"].rules["OTHER"] == ["-o br-a -j DROP"]
    assert len(state["nat"].rules["POSTROUTING"]) == 2


def test_user_chain_is_never_flushed_and_kept_when_used() -> None:
    layout, state = Layout("T1-"), {}  # type: dict[str, TableState]
    converge(layout, state, [net()], [])
    state["filter"].rules["T1-DOCKER-USER"] = ["-s 10.9.9.9/32 -j DROP"]
    script = converge(layout, state, [net(), net("br-b", "10.1.0.0/24")], [])
    assert "T1-DOCKER-USER" not in script
    apply(state, layout.plan(state, Layout.nothing()))  # clear
    assert state["filter"].rules["T1-DOCKER-USER"] == ["-s 10.9.9.9/32 -j DROP"]
    assert state["filter"].rules["FORWARD"] == ["-j T1-DOCKER-USER"]
    assert layout.plan(state, Layout.nothing()) == ""
    state["filter"].rules["T1-DOCKER-USER"] = []  # the user empties it: clear takes it now
    apply(state, layout.plan(state, Layout.nothing()))
    assert "T1-DOCKER-USER" not in state["filter"].chains
    assert state["filter"].rules["FORWARD"] == []


def test_forward_jumps_first_and_together() -> None:
    layout, state = Layout("T1-"), {}  # type: dict[str, TableState]
    converge(layout, state, [net()], [])
    fwd = state["filter"].rules["FORWARD"]
    fwd.insert(0, "-j ufw")  # someone inserted above us: left alone, unless at startup
    want = layout.desired([net()], [], userland_proxy=True)
    assert layout.plan(state, want) == ""
    apply(state, layout.plan(state, want, to_top=True))
    assert fwd == ["-j T1-DOCKER-USER", "-j T1-DOCKER-FORWARD", "-j ufw"]
    fwd[:] = ["-j T1-DOCKER-FORWARD", "-j ufw", "-j T1-DOCKER-USER", "-j T1-DOCKER-USER"]
    apply(state, layout.plan(state, want))  # out of order + duplicated: put back at the top
    assert fwd == ["-j T1-DOCKER-USER", "-j T1-DOCKER-FORWARD", "-j ufw"]


def test_duplicates_of_ours_in_builtin_chains_are_removed() -> None:
    layout, state = Layout("T1-"), {}  # type: dict[str, TableState]
    converge(layout, state, [net()], [])
    post = state["nat"].rules["POSTROUTING"]
    post.append(post[0])
    state["nat"].rules["PREROUTING"].append(f"{LOCAL} -j T1-DOCKER")
    script = converge(layout, state, [net()], [])
    assert script.count("-D ") == 2
    assert len(post) == 1 and len(state["nat"].rules["PREROUTING"]) == 1


def test_edits_in_place_reach_any_target() -> None:
    rng = random.Random(7)
    layout = Layout("T1-")
    for _ in range(300):
        have = [f"-s 10.0.0.{rng.randrange(6)}/32 -j RETURN" for _ in range(rng.randrange(8))]
        want = [f"-s 10.0.0.{rng.randrange(6)}/32 -j RETURN" for _ in range(rng.randrange(8))]
        state = {"filter": TableState({"T1-DOCKER-CT": "-"}, {"T1-DOCKER-CT": list(have)})}
        script = "*filter\n" + "\n".join(_edit("T1-DOCKER-CT", have, want)) + "\nCOMMIT\n"
        apply(state, script)
        assert state["filter"].rules["T1-DOCKER-CT"] == want, (have, want, script)
    # Adding a port only inserts: no deletion (each one costs an RCU grace period).
    state = {}
    converge(layout, state, [net()], [port()])
    script = converge(layout, state, [net()], [port(), port(8081, 81)])
    assert not [x for x in script.splitlines() if x.startswith(("-D", ":"))], script


def test_legacy_dockerd_chains_are_removed_with_dockerd_names() -> None:
    legacy = (
        "*filter\n:FORWARD ACCEPT [0:0]\n:DOCKER-ISOLATION-STAGE-1 - [0:0]\n"
        ":DOCKER-ISOLATION-STAGE-2 - [0:0]\n:DOCKER-USER - [0:0]\n"
        "-A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-ISOLATION-STAGE-1\n"
        "-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2\n"
        "-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP\n-A DOCKER-USER -j RETURN\nCOMMIT\n"
    )
    layout = Layout("")
    state = parse_save(legacy)
    converge(layout, state, [net("docker0", "172.17.0.0/16")], [])
    assert not [c for c in state["filter"].chains if "ISOLATION" in c]
    assert state["filter"].rules["FORWARD"] == ["-j DOCKER-USER", "-j DOCKER-FORWARD"]
    assert state["filter"].rules["DOCKER-USER"] == ["-j RETURN"]
    apply(state, layout.plan(state, Layout.nothing()))  # dockerd's lone RETURN is not the user's
    assert not ours(state, layout) and state["filter"].rules["FORWARD"] == []


# -- the real host -------------------------------------------------------------------------

root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("iptables-restore") is None,
    reason="needs root and iptables",
)


def host_save() -> str:
    return subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def host() -> Iterator[tuple[Iptables, str]]:
    """An Iptables with a unique prefix and its bridge-name stem; everything removed after."""
    tag = secrets.token_hex(2)
    ipt = Iptables(prefix=f"T{tag}-")
    try:
        yield ipt, f"tpy{tag}"
    finally:
        ipt.clear()
        left = [ln for ln in host_save().splitlines() if ipt.prefix in ln]
        assert left == [], "clear() left rules behind"


def host_lines(prefix: str) -> list[str]:
    return [ln for ln in host_save().splitlines() if prefix in ln and ln.startswith("-A ")]


@root
def test_host_reconcile_is_exact_and_idempotent(host: tuple[Iptables, str]) -> None:
    ipt, stem = host
    nets = [
        BridgeNet(f"{stem}a", IPv4Network("10.231.0.0/24")),
        BridgeNet(f"{stem}b", IPv4Network("10.231.1.0/24"), icc=False, host_ip=A("192.0.2.7")),
        BridgeNet(f"{stem}c", IPv4Network("10.231.2.0/24"), internal=True),
    ]
    ports = [
        PortMap("tcp", ANY, 18080, A("10.231.0.2"), 80, f"{stem}a"),
        PortMap("udp", A("127.0.0.1"), 15353, A("10.231.1.2"), 53, f"{stem}b"),
        PortMap("sctp", A("192.0.2.1"), 19000, A("10.231.1.2"), 9000, f"{stem}b"),
    ]
    for proxy in (True, False, True):
        ipt.reconcile(nets, ports, userland_proxy=proxy)
        ipt.reconcile(nets, ports, userland_proxy=proxy)
        assert ipt.plan(nets, ports, userland_proxy=proxy) == ""
        rendered = ipt.render(nets, ports, userland_proxy=proxy)
        on_host = host_lines(ipt.prefix)
        want = [ln for lines in rendered.values() for ln in lines]
        assert sorted(on_host) == sorted(want)  # each rule exactly once, nothing extra

    # Remove network b and its ports: nothing names its bridge or subnet any more.
    ipt.reconcile([nets[0], nets[2]], ports[:1], userland_proxy=True)
    assert not [ln for ln in host_save().splitlines() if f"{stem}b" in ln or "10.231.1." in ln]
    assert [ln for ln in host_lines(ipt.prefix) if f"{stem}a" in ln]
    ipt.clear()
    ipt.clear()
    assert not [ln for ln in host_save().splitlines() if ipt.prefix in ln]


@root
def test_host_user_chain_and_foreign_rules_survive(host: tuple[Iptables, str]) -> None:
    ipt, stem = host
    p = ipt.prefix
    user, other = f"{p}DOCKER-USER", f"{p}OTHER"
    nets = [BridgeNet(f"{stem}a", IPv4Network("10.232.0.0/24"))]
    foreign = (
        f"*filter\n:{other} - [0:0]\n-A {other} -o {stem}a -j RETURN\nCOMMIT\n"
        f"*nat\n-A POSTROUTING -o {stem}a -m comment --comment {p}foreign -j RETURN\nCOMMIT\n"
    )
    unforeign = (
        f"*filter\n:{other} - [0:0]\n-X {other}\nCOMMIT\n"
        f"*nat\n-D POSTROUTING -o {stem}a -m comment --comment {p}foreign -j RETURN\nCOMMIT\n"
    )
    subprocess.run(["iptables-restore", "-w", "--noflush"], input=foreign, text=True, check=True)
    try:
        ipt.reconcile(nets, [], userland_proxy=True)
        subprocess.run(["iptables", "-w", "-A", user, "-s", "10.232.9.9", "-j", "DROP"], check=True)
        ipt.reconcile([], [], userland_proxy=True)
        ipt.clear()
        saved = host_save()
        assert f"-A {user} -s 10.232.9.9/32 -j DROP" in saved  # the user's rule and its jump
        assert f"-A FORWARD -j {user}" in saved
        assert f"-A {other} -o {stem}a -j RETURN" in saved
        assert f"--comment {p}foreign -j RETURN" in saved
        assert f"{p}DOCKER-FORWARD" not in saved and f"--comment {p}pymoby" not in saved
        subprocess.run(["iptables", "-w", "-F", user], check=True)
    finally:
        subprocess.run(
            ["iptables-restore", "-w", "--noflush"], input=unforeign, text=True, check=False
        )
        subprocess.run(["iptables", "-w", "-F", user], capture_output=True, check=False)


@root
def test_host_failures_are_iptables_errors(host: tuple[Iptables, str]) -> None:
    ipt, stem = host
    with pytest.raises(IptablesError, match="running"):
        Iptables(prefix=ipt.prefix, binary="/nonexistent/iptables").reconcile(
            [], [], userland_proxy=True
        )
    # A foreign rule jumping to our chain: clear() cannot delete it, and says so.
    ipt.reconcile([BridgeNet(f"{stem}a", IPv4Network("10.234.0.0/24"))], [], userland_proxy=True)
    other = f"{ipt.prefix}OTHER"
    add = f"*filter\n:{other} - [0:0]\n-A {other} -j {ipt.prefix}DOCKER\nCOMMIT\n"
    subprocess.run(["iptables-restore", "-w", "--noflush"], input=add, text=True, check=True)
    try:
        with pytest.raises(IptablesError, match="iptables-restore"):
            ipt.clear()
    finally:
        drop = f"*filter\n:{other} - [0:0]\n-X {other}\nCOMMIT\n"
        subprocess.run(["iptables-restore", "-w", "--noflush"], input=drop, text=True, check=True)
