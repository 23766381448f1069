"""cmd.pymobyd: pflag-style parsing, dockerd's error output, --validate/--version, hand-off."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from pymoby import log
from pymoby.cmd.pymobyd import main, parse_command_line
from pymoby.daemon.config import DEFAULT_CONFIG_FILE, Config, ConfigError, FlagError


def test_flag_forms() -> None:
    cmd = parse_command_line(
        [
            *("-D", "--data-root=/d", "--exec-root", "/e", "-p/p.pid", "-Gstaff", "-l=debug"),
            *("-H", "unix:///a.sock", "--host=tcp://:1", "--label", "a=1", "--label=b=2"),
            *("--tls=false", "--shutdown-timeout", "0x10", "-s", "vfs", "--experimental"),
        ]
    )
    assert cmd.values == {
        "debug": True,
        "data-root": "/d",
        "exec-root": "/e",
        "pidfile": "/p.pid",
        "group": "staff",
        "log-level": "debug",
        "hosts": ("unix:///a.sock", "tcp://:1"),
        "labels": ("a=1", "b=2"),
        "tls": False,
        "shutdown-timeout": 16,
        "storage-driver": "vfs",
        "experimental": True,
    }
    assert cmd.display["hosts"] == "[unix:///a.sock tcp://:1]"
    assert (cmd.config_file, cmd.config_file_given) == (DEFAULT_CONFIG_FILE, False)


def test_meta_flags_and_bundled_shorthands() -> None:
    cmd = parse_command_line(["-Dv", "--validate", "--config-file", "/x.json", "--"])
    assert cmd.values == {"debug": True}
    assert cmd.version and cmd.validate and not cmd.help
    assert (cmd.config_file, cmd.config_file_given) == ("/x.json", True)
    assert parse_command_line(["-h"]).help
    assert parse_command_line(["--debug=false"]).values == {"debug": False}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--foo"], "unknown flag: --foo"),
        (["-x"], "unknown shorthand flag: 'x' in -x"),
        (["-Dxy"], "unknown shorthand flag: 'x' in -xy"),
        (["--data-root"], "flag needs an argument: --data-root"),
        (["-p"], "flag needs an argument: 'p' in -p"),
        (["--debug=maybe"], 'invalid argument "maybe" for "-D, --debug" flag: '
         'strconv.ParseBool: parsing "maybe": invalid syntax'),
        (["--shutdown-timeout", "x"], 'invalid argument "x" for "--shutdown-timeout" flag: '
         'strconv.ParseInt: parsing "x": invalid syntax'),
        (["--shutdown-timeout", "99999999999999999999"], 'invalid argument "99999999999999999999"'
         ' for "--shutdown-timeout" flag: strconv.ParseInt: parsing "99999999999999999999":'
         " value out of range"),
        (["--label", "foo"], 'invalid argument "foo" for "--label" flag: '
         "bad attribute format: foo"),
        (["-H", "tcp://a:b:c"], 'invalid argument "tcp://a:b:c" for "-H, --host" flag: invalid'
         ' bind address (tcp://a:b:c): parse "tcp://a:b:c": invalid port ":c" after host'),
        (["-l", "loud"], 'invalid argument "loud" for "-l, --log-level" flag: '
         "unable to parse logging level: loud"),
    ],
)  # fmt: skip
def test_flag_errors(argv: list[str], message: str) -> None:
    with pytest.raises(FlagError) as info:
        parse_command_line(argv)
    assert str(info.value) == message


def test_positional_arguments_refused() -> None:
    for argv in (["extra"], ["--", "extra"], ["-D", "-"]):
        with pytest.raises(ConfigError) as info:
            parse_command_line(argv)
        assert not isinstance(info.value, FlagError)
        assert str(info.value).startswith('"pymobyd" accepts no argument(s).\n')


def test_main_flag_error_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--foo"]) == 1
    assert capsys.readouterr().err == (
        "Status: unknown flag: --foo\nSee 'pymobyd --help'., Code: 125\n"
    )


def test_main_config_error_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "daemon.json"
    path.write_text('{"debug": false}')
    assert main(["-D", "--validate", "--config-file", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"unable to configure the Docker daemon with file {path}: the following directives are"
        " specified both as a flag and in the configuration file: debug: (from flag: true,"
        " from file: false)\n"
    )


def test_main_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "daemon.json"
    path.write_text('{"debug": true, "hosts": ["unix:///tmp/x.sock"]}')
    assert main(["--validate", "--config-file", str(path)]) == 0
    assert capsys.readouterr() == ("", "configuration OK\n")


def test_main_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Docker version ") and out.endswith(", build pymoby\n")
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Usage:\tpymobyd [OPTIONS]\n")
    assert "  -p, --pidfile string " in text and '(default "/var/run/pymoby.pid")' in text
    assert "      --shutdown-timeout int " in text and "(default 15)" in text
    assert "  -D, --debug " in text and "--features" not in text and "builder" not in text


def test_main_hands_config_to_daemon_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Config] = []

    def run(config: Config) -> int:
        seen.append(config)
        return 7

    fake = types.ModuleType("pymoby.daemon.daemon")
    fake.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pymoby.daemon.daemon", fake)
    configured: list[str] = []
    monkeypatch.setattr(log, "configure", configured.append)
    argv = ["-D", "--config-file", str(tmp_path / "none.json"), "--data-root", str(tmp_path)]
    assert main(argv) == 1 and seen == []  # the explicitly named file is missing
    assert main(["-D", "--config-file", "", "--data-root", str(tmp_path)]) == 7
    assert seen[0].debug and seen[0].data_root == str(tmp_path)
    assert configured == ["debug"]
