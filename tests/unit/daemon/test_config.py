"""daemon.config: table, merge, dockerd's error texts, hosts, TLS, labels, reload."""

from __future__ import annotations

import dataclasses
import json
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from pymoby import errdefs
from pymoby.cmd.pymobyd import parse_command_line, usage
from pymoby.daemon import config as cfg
from pymoby.daemon.config import Config, ConfigError, FlagError, Host
from pymoby.daemon.networks.ipam import AddressPool

ENV = {"HOME": "/home/u"}


def write(tmp_path: Path, content: str | bytes, name: str = "daemon.json") -> str:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    return str(path)


def load(tmp_path: Path, content: str | bytes | None, *flags: str) -> Config:
    path = write(tmp_path, content) if content is not None else ""
    return cfg.load(parse_command_line([*flags, "--config-file", path]), ENV)


def error(tmp_path: Path, content: str | bytes, *flags: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, content, *flags)
    assert isinstance(info.value, errdefs.InvalidParameter)
    return str(info.value)


def prefix(tmp_path: Path) -> str:
    return f"unable to configure the Docker daemon with file {tmp_path / 'daemon.json'}: "


# --- table and defaults ------------------------------------------------------------------------


def test_table_matches_config_fields() -> None:
    fields = {f.name: f for f in dataclasses.fields(Config)}
    defaults = Config()
    for opt in cfg.OPTIONS:
        assert opt.attr in fields, opt.key
        if opt.key in ("hosts", "tlscacert", "tlscert", "tlskey"):
            continue  # derived after merging (hosts default, TLS paths only with TLS)
        assert getattr(defaults, opt.attr) == opt.default, opt.key


def test_defaults_without_any_file() -> None:
    config = cfg.load(cfg.CommandLine(config_file="/nonexistent/daemon.json"), ENV)
    assert config == dataclasses.replace(Config(), config_file="/nonexistent/daemon.json")
    assert config.hosts == (Host("unix", "/var/run/docker.sock"),)
    assert (config.data_root, config.exec_root) == ("/var/lib/pymoby", "/run/pymoby")
    assert (config.pidfile, config.group, config.log_level) == (
        "/var/run/pymoby.pid",
        "docker",
        "info",
    )
    assert config.shutdown_timeout == 15 and config.default_runtime == "runc"
    assert cfg.DEFAULT_CONFIG_FILE == "/etc/pymoby/daemon.json"


def test_flags_file_and_defaults_merge(tmp_path: Path) -> None:
    content = {"labels": ["a=1"], "shutdown-timeout": 30, "storage-driver": "vfs", "tls": False}
    config = load(tmp_path, json.dumps(content), "-D", "--data-root", "rel/root", "-l", "WARN")
    assert config.debug and config.log_level == "warn" and config.effective_log_level == "debug"
    assert config.labels == ("a=1",) and config.shutdown_timeout == 30
    assert config.storage_driver == "vfs"
    assert config.data_root == str(Path.cwd() / "rel/root")
    assert dict(config.cli_flags) == {"data-root": "rel/root", "debug": "true", "log-level": "warn"}


def test_empty_null_and_bom_files(tmp_path: Path) -> None:
    empty = load(tmp_path, "  \n")
    assert empty == Config(config_file=str(tmp_path / "daemon.json"), config_file_given=True)
    assert load(tmp_path, "null").debug is False
    assert load(tmp_path, '{"debug": null, "labels": null}').labels == ()
    assert load(tmp_path, b'\xef\xbb\xbf{"debug": true}').debug is True
    assert load(tmp_path, '{"debug": true}'.encode("utf-16")).debug is True


def test_object_options_and_meta_keys_accepted(tmp_path: Path) -> None:
    text = '{"features": {"buildkit": true}, "builder": {"gc": {"enabled": true}}, "version": 1}'
    config = load(tmp_path, text)
    assert config.features == {"buildkit": True}


# --- dockerd's error texts -----------------------------------------------------------------------


def test_flag_and_file_conflict(tmp_path: Path) -> None:
    assert error(tmp_path, '{"debug": false}', "-D") == prefix(tmp_path) + (
        "the following directives are specified both as a flag and in the configuration file:"
        " debug: (from flag: true, from file: false)"
    )


def test_conflicts_listed_by_flag_name_with_go_formatting(tmp_path: Path) -> None:
    text = '{"hosts": "unix:///tmp/x.sock", "shutdown-timeout": 1000000, "debug": true}'
    message = error(tmp_path, text, "--shutdown-timeout", "5", "-H", "unix:///a", "-D")
    assert message == prefix(tmp_path) + (
        "the following directives are specified both as a flag and in the configuration file:"
        " debug: (from flag: true, from file: true),"
        " hosts: (from flag: [unix:///a], from file: unix:///tmp/x.sock),"
        " shutdown-timeout: (from flag: 5, from file: 1e+06)"
    )


def test_unknown_keys_in_file_order(tmp_path: Path) -> None:
    assert error(tmp_path, '{"foo": 1, "debug": true, "bar": 2}') == prefix(tmp_path) + (
        "the following directives don't match any configuration option: foo, bar"
    )
    # dockerd flattens nested objects of non-object options before looking keys up.
    assert error(tmp_path, '{"debug": {"x": 1}}').endswith("configuration option: x")
    assert error(tmp_path, '{"Debug": true}').endswith("configuration option: Debug")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"debug": ', "unexpected EOF"),
        ('{"debug": tru}', "invalid character '}' in literal true (expecting 'e')"),
        ('{"debug": true,}', "invalid character '}' looking for beginning of object key string"),
        ("nonsense", "invalid character 'o' in literal null (expecting 'u')"),
        ('{"a":1 "b":2}', "invalid character '\"' after object key:value pair"),
        ('{"a" 1}', "invalid character '1' after object key"),
        ('{"a":[1,]}', "invalid character ']' looking for beginning of value"),
        ('{"a":[1 2]}', "invalid character '2' after array element"),
        ('{"a":"x\\q"}', "invalid character 'q' in string escape code"),
        ('{"a":"\\u12G4"}', "invalid character 'G' in \\u hexadecimal character escape"),
        ('{"a":-x}', "invalid character 'x' in numeric literal"),
        ('{"a":1.}', "invalid character '}' after decimal point in numeric literal"),
        ('{"a":1e+}', "invalid character '}' in exponent of numeric literal"),
        ('{"a":01}', "invalid character '1' after object key:value pair"),
        ("{'a':1}", "invalid character '\\'' looking for beginning of object key string"),
        ('{"a":"\t"}', "invalid character '\\t' in string literal"),
        ('{"a":NaN}', "invalid character 'N' looking for beginning of value"),
        ('{"debug":true}}', "invalid character '}' after top-level value"),
        ("[1]", "json: cannot unmarshal array into Go value of type map[string]interface {}"),
        ('"x"', "json: cannot unmarshal string into Go value of type map[string]interface {}"),
    ],
)
def test_malformed_json(tmp_path: Path, content: str, message: str) -> None:
    assert error(tmp_path, content) == prefix(tmp_path) + message


@pytest.mark.parametrize(
    ("content", "what", "key", "go_type"),
    [
        ('{"debug": "yes"}', "string", "debug", "bool"),
        ('{"labels": "a=b"}', "string", "labels", "[]string"),
        ('{"shutdown-timeout": "x"}', "string", "shutdown-timeout", "int"),
        ('{"shutdown-timeout": 1.5}', "number 1.5", "shutdown-timeout", "int"),
        ('{"shutdown-timeout": 1e3}', "number 1e3", "shutdown-timeout", "int"),
        ('{"hosts": [1]}', "number", "hosts", "string"),
        ('{"group": 5}', "number", "group", "string"),
        ('{"tlsverify": "x"}', "string", "tlsverify", "bool"),
        ('{"features": []}', "array", "features", "map[string]interface {}"),
    ],
)
def test_wrong_types_name_the_key(
    tmp_path: Path, content: str, what: str, key: str, go_type: str
) -> None:
    assert error(tmp_path, content) == prefix(tmp_path) + (
        f"json: cannot unmarshal {what} into Go struct field Config.{key} of type {go_type}"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"labels": ["foo"]}', "bad attribute format: foo"),
        ('{"log-level": "verbose"}', "unable to parse logging level: verbose"),
        ('{"hosts": ["foo://x"]}', "invalid bind address (foo://x): unsupported proto 'foo'"),
    ],
)
def test_invalid_values_in_file(tmp_path: Path, content: str, message: str) -> None:
    assert error(tmp_path, content) == (
        prefix(tmp_path) + "configuration validation from file failed: " + message
    )


def test_conflicting_labels(tmp_path: Path) -> None:
    assert error(tmp_path, '{"labels": ["a=b", "a=c"]}') == "conflict labels for a=c and a=b"
    assert load(tmp_path, '{"labels": ["a=b", "x=1", "a=b"]}').labels == ("a=b", "x=1")


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError) as info:
        cfg.load(parse_command_line(["--config-file", str(missing)]), ENV)
    assert str(info.value) == (
        f"unable to configure the Docker daemon with file {missing}: "
        f"open {missing}: no such file or directory"
    )
    # The default file may be absent.
    assert cfg.load(cfg.CommandLine(config_file=str(missing)), ENV).debug is False
    with pytest.raises(ConfigError, match=r"read .*: is a directory"):
        cfg.load(parse_command_line(["--config-file", str(tmp_path)]), ENV)


# --- hosts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "tls", "host"),
    [
        ("unix:///run/x.sock", False, Host("unix", "/run/x.sock")),
        ("unix://", False, Host("unix", "/var/run/docker.sock")),
        ("unix://relative/sock", False, Host("unix", "relative/sock")),
        ("tcp://127.0.0.1:2375", False, Host("tcp", "127.0.0.1:2375")),
        ("tcp://0.0.0.0", False, Host("tcp", "0.0.0.0:2375")),
        ("tcp://0.0.0.0", True, Host("tcp", "0.0.0.0:2376")),
        ("tcp://:2375", False, Host("tcp", "localhost:2375")),
        ("tcp://", False, Host("tcp", "localhost:2375")),
        ("tcp://:", True, Host("tcp", "localhost:2376")),
        ("tcp://host:", False, Host("tcp", "host:2375")),
        ("tcp://[::1]", False, Host("tcp", "[::1]:2375")),
        ("tcp://[::1]:5555", False, Host("tcp", "[::1]:5555")),
        ("localhost:5555", False, Host("tcp", "localhost:5555")),
        (":5555", False, Host("tcp", "localhost:5555")),
        ("[::1]", False, Host("tcp", "[::1]:2375")),
        ("fd://", False, Host("fd", "")),
        ("fd://3", False, Host("fd", "3")),
    ],
)
def test_parse_host(value: str, tls: bool, host: Host) -> None:
    assert cfg.parse_host(value, tls=tls) == host


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "unsupported proto ''"),
        ("://", "unsupported proto ''"),
        ("udp://127.0.0.1", "unsupported proto 'udp'"),
        ("npipe://", "unsupported proto 'npipe'"),
        (" tcp://:5555", "unsupported proto ' tcp'"),
        ("unix://tcp://127.0.0.1", "invalid unix address: tcp://127.0.0.1"),
        ("tcp://:port", 'parse "tcp://:port": invalid port ":port" after host'),
        ("tcp://a:b:c", 'parse "tcp://a:b:c": invalid port ":c" after host'),
        ("tcp:a.b.c.d", 'parse "tcp://tcp:a.b.c.d": invalid port ":a.b.c.d" after host'),
        ("tcp://[::1", "parse \"tcp://[::1\": missing ']' in host"),
        ("some spaces", 'parse "tcp://some spaces": invalid character " " in host name'),
        ("tcp://:5555/", "should not contain a path element"),
        ("tcp://127.0.0.1/p", "should not contain a path element"),
        ("tcp://h:0", "invalid port: 0"),
        ("tcp://h:70000", "invalid port: 70000"),
    ],
)  # fmt: skip
def test_parse_host_errors(value: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfg.parse_host(value)
    assert str(info.value) == f"invalid bind address ({value}): {reason}"


def test_host_helpers() -> None:
    assert str(Host("unix", "/x.sock")) == "unix:///x.sock"
    assert Host("tcp", "[::1]:2376").tcp_address() == ("::1", 2376)


def test_hosts_normalized_sorted_deduplicated(tmp_path: Path) -> None:
    config = load(tmp_path, None, "-H", "unix://", "-H", "tcp://:2375", "-H", "", "-H", "unix://")
    assert config.hosts == (Host("tcp", "localhost:2375"), Host("unix", "/var/run/docker.sock"))
    assert load(tmp_path, '{"hosts": ["fd://"]}').hosts == (Host("fd", ""),)


# --- TLS ---------------------------------------------------------------------------------------


def test_tls_semantics(tmp_path: Path) -> None:
    plain = load(tmp_path, None)
    assert (plain.tls, plain.tlsverify, plain.tlscacert, plain.tlscert) == (False, False, "", "")
    verify = load(tmp_path, None, "--tlsverify")
    assert (verify.tls, verify.tlsverify) == (True, True)
    assert verify.hosts == (Host("tcp", "localhost:2376"),)
    assert verify.tlscacert == "/home/u/.docker/ca.pem"
    assert verify.tlscert == "" and verify.tlskey == ""  # default files absent
    tls_only = load(tmp_path, None, "--tls")
    assert (tls_only.tls, tls_only.tlsverify) == (True, True)
    no_verify = load(tmp_path, '{"tlsverify": false}', "--tls=false")
    assert (no_verify.tls, no_verify.tlsverify) == (True, False)
    explicit = load(tmp_path, '{"tls": true, "tlscert": "/c.pem"}', "-H", "tcp://0.0.0.0")
    assert explicit.tlscert == "/c.pem" and explicit.hosts == (Host("tcp", "0.0.0.0:2376"),)


def test_cert_defaults_follow_environment(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("x")
    cmd = parse_command_line(["--tls", "--config-file", ""])
    config = cfg.load(cmd, {"DOCKER_CERT_PATH": str(tmp_path)})
    assert config.tlscert == str(tmp_path / "cert.pem") and config.tlskey == ""


def test_insecure_tcp_warnings(tmp_path: Path) -> None:
    config = load(tmp_path, None, "-H", "tcp://0.0.0.0:2375", "-H", "unix://")
    warnings = cfg.insecure_tcp_warnings(config)
    assert [str(h) for h, _ in warnings] == ["tcp://0.0.0.0:2375"] * 2
    assert warnings[0][1].startswith("Binding to IP address without --tlsverify is insecure")
    assert cfg.insecure_tcp_warnings(load(tmp_path, None, "--tlsverify", "-H", "tcp://:1")) == []


# --- reload ------------------------------------------------------------------------------------


def test_reload_changes_only_reloadable_keys(tmp_path: Path) -> None:
    path = write(tmp_path, '{"labels": ["a=1"], "storage-driver": "vfs"}')
    current = cfg.load(parse_command_line(["--config-file", path, "-l", "info"]), ENV)
    Path(path).write_text(
        '{"debug": true, "labels": ["a=2", "b=1"], "storage-driver": "overlay2",'
        ' "shutdown-timeout": 15, "live-restore": true}'
    )
    new, changed = cfg.reload(current)
    assert changed == {"debug": True, "labels": ("a=2", "b=1"), "live-restore": True}
    assert new.debug and new.labels == ("a=2", "b=1") and new.live_restore
    assert new.storage_driver == "vfs"  # not reloadable: kept
    assert new.effective_log_level == "debug"
    # Keys absent from the file keep their current value (dockerd).
    Path(path).write_text("{}")
    assert cfg.reload(new) == (new, {})


def test_reload_rejects_bad_file_and_flag_conflicts(tmp_path: Path) -> None:
    path = write(tmp_path, "{}")
    current = cfg.load(parse_command_line(["--config-file", path, "-D"]), ENV)
    for bad, reason in [
        ('{"debug": false}', "specified both as a flag and in the configuration file: debug"),
        ('{"debug": ', "unexpected EOF"),
        ('{"nope": 1}', "don't match any configuration option: nope"),
        ('{"log-level": "loud"}', "unable to parse logging level: loud"),
    ]:
        Path(path).write_text(bad)
        with pytest.raises(ConfigError, match=reason):
            cfg.reload(current)
    Path(path).write_text('{"log-level": "error"}')
    new, changed = cfg.reload(current)
    assert changed == {"log-level": "error"} and new.effective_log_level == "debug"


def test_reload_missing_default_file_changes_nothing(tmp_path: Path) -> None:
    current = cfg.load(cfg.CommandLine(config_file=str(tmp_path / "absent.json")), ENV)
    assert cfg.reload(current) == (current, {})
    given = dataclasses.replace(current, config_file_given=True)
    with pytest.raises(ConfigError, match="no such file or directory"):
        cfg.reload(given)
    path = write(tmp_path, '{"default-runtime": "crun"}', "other.json")
    new, changed = cfg.reload(current, path)
    assert changed == {"default-runtime": "crun"} and new.default_runtime == "crun"


def test_reload_null_resets_to_default(tmp_path: Path) -> None:
    path = write(tmp_path, '{"shutdown-timeout": 30}')
    current = cfg.load(parse_command_line(["--config-file", path]), ENV)
    Path(path).write_text('{"shutdown-timeout": null}')
    new, changed = cfg.reload(current)
    assert changed == {"shutdown-timeout": 15} and new.shutdown_timeout == 15


def test_go_v_formats_like_fmt() -> None:
    values: list[tuple[Any, str]] = [
        (None, "<nil>"),
        (["a", 1.5], "[a 1.5]"),
        ({"b": True, "a": "x"}, "map[a:x b:true]"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (123456.0, "123456"),
        (1234567.0, "1.234567e+06"),
        (-2.5, "-2.5"),
    ]
    for value, text in values:
        assert cfg.go_v(value) == text


# --- network options ---------------------------------------------------------------------------


def test_network_defaults() -> None:
    config = Config()
    assert (config.bridge, config.bip, config.fixed_cidr, config.default_gateway) == ("",) * 4
    assert config.mtu == 1500 and config.ip == "0.0.0.0"
    assert config.icc and config.ip_forward and config.ip_masq and config.iptables
    assert config.userland_proxy and config.userland_proxy_path == ""
    assert config.default_address_pools == ()
    assert (config.dns, config.dns_opts, config.dns_search) == ((), (), ())
    flags = {opt.key: opt.flags for opt in cfg.OPTIONS}
    assert flags["bridge"] == "-b --bridge"
    assert flags["default-address-pools"] == "--default-address-pool"
    assert (flags["dns-opts"], flags["dns-search"]) == ("--dns-opt", "--dns-search")
    assert not any(cfg.OPTION_BY_KEY[k].reloadable for k in ("bip", "icc", "dns", "mtu"))


def test_network_flags(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        None,
        *("-b", "br0", "--fixed-cidr", "10.9.0.0/24", "--mtu", "9000", "--icc=false"),
        *("--ip-forward=false", "--ip-masq=0", "--iptables=true", "--userland-proxy=false"),
        *("--userland-proxy-path", "/usr/bin/docker-proxy", "--default-gateway", "10.9.0.254"),
        *("--ip", " 127.0.0.1 ", "--dns", "1.1.1.1", "--dns", "2606:4700:4700:0::1111"),
        *("--dns-opt", "ndots:2", "--dns-search", " example.com. ", "--dns-search", "."),
        *("--default-address-pool", "base=10.10.0.0/16,size=24"),
        *("--default-address-pool", "Base=10.20.0.0/16,Size=20"),
    )
    assert (config.bridge, config.fixed_cidr, config.mtu) == ("br0", "10.9.0.0/24", 9000)
    assert not (config.icc or config.ip_forward or config.ip_masq or config.userland_proxy)
    assert config.iptables and config.userland_proxy_path == "/usr/bin/docker-proxy"
    assert (config.default_gateway, config.ip) == ("10.9.0.254", "127.0.0.1")
    assert config.dns == ("1.1.1.1", "2606:4700:4700::1111")
    assert (config.dns_opts, config.dns_search) == (("ndots:2",), ("example.com", "."))
    assert config.default_address_pools == (
        AddressPool(IPv4Network("10.10.0.0/16"), 24),
        AddressPool(IPv4Network("10.20.0.0/16"), 20),
    )
    assert dict(config.cli_flags)["default-address-pools"] == "[10.10.0.0/16 24 10.20.0.0/16 20]"


def test_network_options_in_file(tmp_path: Path) -> None:
    content = {
        "bridge": "none",
        "fixed-cidr": "172.30.1.0/24",
        "mtu": 1400,
        "icc": False,
        "ip-forward": False,
        "ip-masq": False,
        "iptables": True,
        "userland-proxy": False,
        "default-gateway": "172.30.1.1",
        "ip": "",
        "default-address-pools": [
            {"base": "10.10.0.0/16", "size": 24},
            {"Base": "fd00::/104", "SIZE": 112},
        ],
        "dns": ["8.8.8.8", ""],
        "dns-opts": ["use-vc"],
        "dns-search": ["a.example"],
    }
    config = load(tmp_path, json.dumps(content))
    assert (config.bridge, config.fixed_cidr, config.mtu) == ("none", "172.30.1.0/24", 1400)
    assert not (config.icc or config.ip_forward or config.ip_masq or config.userland_proxy)
    assert (config.default_gateway, config.ip) == ("172.30.1.1", "0.0.0.0")
    assert [str(p) for p in config.default_address_pools] == ["10.10.0.0/16 24", "fd00::/104 112"]
    assert (config.dns, config.dns_opts, config.dns_search) == (
        ("8.8.8.8",),
        ("use-vc",),
        ("a.example",),
    )
    assert load(tmp_path, '{"bip": "172.26.0.1/16", "userland-proxy-path": "/x"}').bip == (
        "172.26.0.1/16"
    )


def test_pool_flag_and_file_conflict(tmp_path: Path) -> None:
    message = error(
        tmp_path,
        '{"default-address-pools": [{"base": "10.0.0.0/8", "size": 24}]}',
        "--default-address-pool",
        "base=10.1.0.0/16,size=24",
    )
    assert message == prefix(tmp_path) + (
        "the following directives are specified both as a flag and in the configuration file: "
        "default-address-pools: (from flag: [10.1.0.0/16 24], from file: "
        "[map[base:10.0.0.0/8 size:24]])"
    )


@pytest.mark.parametrize(
    ("flag", "value", "reason"),
    [
        ("--dns", "x", 'ParseAddr("x"): unable to parse IP'),
        ("--dns", "1.2.3.04", 'ParseAddr("1.2.3.04"): IPv4 field has octet with leading zero'),
        ("--ip", "x", 'failed to parse IP: "x"'),
        ("--default-gateway", "1.2.3", 'failed to parse IP: "1.2.3"'),
        ("--dns-search", "-x", "-x is not a valid domain"),
        ("--dns-search", "123", "123 is not a valid domain"),
        ("--mtu", "x", 'strconv.ParseInt: parsing "x": invalid syntax'),
        ("--icc", "maybe", 'strconv.ParseBool: parsing "maybe": invalid syntax'),
        (
            "--default-address-pool",
            "base=x",
            'invalid base prefix "x": netip.ParsePrefix("x"): no \'/\'',
        ),
        (
            "--default-address-pool",
            "base=10.0.0.0/8,size=x",
            'invalid size value: "base=10.0.0.0/8,size=x" (must be integer): '
            'strconv.Atoi: parsing "x": invalid syntax',
        ),
        ("--default-address-pool", "base=1.0.0.0/8,foo=1", "unexpected key 'foo' in 'foo=1'"),
        ("--default-address-pool", "base", "invalid field 'base' must be a key=value pair"),
    ],
)
def test_network_flag_errors(flag: str, value: str, reason: str) -> None:
    with pytest.raises(FlagError) as info:
        parse_command_line([f"{flag}={value}"])
    assert str(info.value) == f'invalid argument "{value}" for "{flag}" flag: {reason}'


NETCTL = (
    "Error initializing network controller: error obtaining controller instance: "
    "could not construct local address space: "
)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--mtu", "-1"), "invalid default MTU: -1"),
        (
            ("-b", "br0", "--bip", "10.1.0.1/16"),
            "You specified -b & --bip, mutually exclusive options. Please specify only one",
        ),
        (
            ("--icc=false", "--iptables=false"),
            "You specified --iptables=false with --icc=false. ICC=false uses iptables to "
            "function. Please set --icc or --iptables to true",
        ),
        (
            ("--default-address-pool", "size=24"),
            NETCTL + "network at index 0 (&{invalid Prefix 24}) is not in canonical form",
        ),
        (
            (
                "--default-address-pool=base=10.0.0.0/8,size=24",
                "--default-address-pool=base=10.0.0.0/16,size=8",
            ),
            NETCTL + "network at index 1 (&{10.0.0.0/16 8}) has a smaller prefix (/16) than the "
            "target size of that pool (/8)",
        ),
    ],
)
def test_network_checks_after_merging(tmp_path: Path, flags: tuple[str, ...], message: str) -> None:
    assert error(tmp_path, "{}", *flags) == message


POOLS_IN = "default-address-pools"
NTS = "Go struct field NetworkToSplit"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"dns": ["x"]}', 'ParseAddr("x"): unable to parse IP'),
        ('{"ip": "1.2.3"}', "invalid IP address: 1.2.3"),
        ('{"default-gateway": "x"}', "invalid IP address: x"),
        (
            f'{{"{POOLS_IN}": "x"}}',
            "json: cannot unmarshal string into Go value of type []*ipamutils.NetworkToSplit",
        ),
        (
            f'{{"{POOLS_IN}": [1]}}',
            "json: cannot unmarshal number into Go value of type ipamutils.NetworkToSplit",
        ),
        (
            f'{{"{POOLS_IN}": [{{"base": true}}]}}',
            f"json: cannot unmarshal bool into {NTS}.base of type netip.Prefix",
        ),
        (f'{{"{POOLS_IN}": [{{"base": "10.0.0.0"}}]}}', "netip.ParsePrefix(\"10.0.0.0\"): no '/'"),
        (
            f'{{"{POOLS_IN}": [{{"base": "10.0.0.0/8", "size": 2.5}}]}}',
            f"json: cannot unmarshal number 2.5 into {NTS}.size of type int",
        ),
        (
            '{"dns-search": ["-x"]}',
            "configuration validation from file failed: -x is not a valid domain",
        ),
        ('{"mtu": -5}', "configuration validation from file failed: invalid default MTU: -5"),
        (
            '{"icc": "no"}',
            "json: cannot unmarshal string into Go struct field Config.icc of type bool",
        ),
        (
            '{"dns": "8.8.8.8"}',
            "json: cannot unmarshal string into Go struct field Config.dns of type []string",
        ),
    ],
)
def test_bad_network_values_in_file(tmp_path: Path, content: str, message: str) -> None:
    assert error(tmp_path, content) == prefix(tmp_path) + message


def test_pools_canonical_form_from_file(tmp_path: Path) -> None:
    assert error(tmp_path, '{"default-address-pools": [null]}') == (
        NETCTL + "network at index 0 (<nil>) is not in canonical form"
    )


def test_usage_shows_network_flags() -> None:
    text = usage({})
    assert "--default-address-pool pool-options" in text
    assert (
        "Enable inter-container communication for the default bridge network (default true)" in text
    )
    assert "--ip string" in text and '(default "0.0.0.0")' in text
    assert "-b, --bridge string" in text and "--mtu int" in text
