"""`pymobyd`: the dockerd-compatible command line, then hand over to the daemon.

Rule: flags are parsed with pflag's semantics (`--x=v`, `--x v`, `-xv`, bundled `-Dv`,
`--bool=false`), generated from `config.OPTIONS`, and every outcome is reported the way dockerd
reports it: usage errors as `Status: <err>\\nSee 'pymobyd --help'., Code: 125`, configuration
errors as their message, both on stderr with exit status 1; `--validate` prints
`configuration OK` on stderr. Nothing here runs the daemon: `pymoby.daemon.daemon.run` does.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import pymoby
from pymoby import log
from pymoby.api.strconv import parse_bool
from pymoby.daemon.config import (
    DEFAULT_CONFIG_FILE,
    OPTIONS,
    CommandLine,
    ConfigError,
    FlagError,
    Kind,
    Option,
    load,
)
from pymoby.daemon.gojson import go_v
from pymoby.log import go_quote

PROGRAM = "pymobyd"
# Command actions, not configuration.
META_OPTIONS = (
    Option("config-file", Kind.STRING, DEFAULT_CONFIG_FILE, "--config-file", "Daemon config file"),
    Option("validate", Kind.BOOL, False, "--validate", "Validate daemon configuration and exit"),
    Option("version", Kind.BOOL, False, "-v --version", "Print version information and quit"),
    Option("help", Kind.BOOL, False, "-h --help", "Print usage"),
)
_ALL = OPTIONS + META_OPTIONS
_LONG = {opt.long: opt for opt in _ALL if opt.flags}
_SHORT = {opt.short: opt for opt in _ALL if opt.short}


def version_line() -> str:
    """What `--version` prints; shaped like dockerd's `Docker version X, build Y`."""
    return f"Docker version {pymoby.__version__}, build pymoby"


def _go_parse_bool(text: str) -> bool:
    value = parse_bool(text)
    if value is None:
        raise ValueError(f"strconv.ParseBool: parsing {go_quote(text)}: invalid syntax")
    return value


def _go_parse_int(text: str) -> int:
    """strconv.ParseInt(text, 0, 64), as pflag's int flags use it."""
    syntax = ValueError(f"strconv.ParseInt: parsing {go_quote(text)}: invalid syntax")
    if text != text.strip():
        raise syntax
    try:
        value = int(text, 0)
    except ValueError:
        body = text.lstrip("+-")
        if not (body.startswith("0") and body.isdigit() and not set(body) & set("89")):
            raise syntax from None
        value = int(text, 8)
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"strconv.ParseInt: parsing {go_quote(text)}: value out of range")
    return value


def _set_flag(opt: Option, text: str, values: dict[str, Any]) -> None:
    try:
        if opt.kind is Kind.BOOL:
            value: Any = _go_parse_bool(text)
        elif opt.kind is Kind.INT:
            value = _go_parse_int(text)
        else:
            value = opt.check(text) if opt.check else text
    except (ValueError, ConfigError) as err:
        raise FlagError(
            f"invalid argument {go_quote(text)} for {go_quote(opt.flag_label)} flag: {err}"
        ) from None
    if opt.kind in (Kind.LIST, Kind.POOLS):
        values[opt.key] = (*values.get(opt.key, ()), value)
    else:
        values[opt.key] = value


def parse_command_line(argv: Iterable[str]) -> CommandLine:
    """Parse dockerd's flags; FlagError for usage errors, ConfigError for stray arguments."""
    args = list(argv)
    values: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--" and i == len(args):
            break
        if arg == "--" or not arg.startswith("-") or arg == "-":
            raise ConfigError(
                f"\"{PROGRAM}\" accepts no argument(s).\nSee '{PROGRAM} --help'.\n\n"
                f"Usage:  {PROGRAM} [OPTIONS]\n\nA self-sufficient runtime for containers."
            )
        if arg.startswith("--"):
            name, eq, text = arg[2:].partition("=")
            opt = _LONG.get(name)
            if opt is None:
                raise FlagError(f"unknown flag: --{name}")
            if not eq and opt.kind is Kind.BOOL:
                text = "true"
            elif not eq:
                if i >= len(args):
                    raise FlagError(f"flag needs an argument: --{name}")
                text, i = args[i], i + 1
            _set_flag(opt, text, values)
            continue
        shorts = arg[1:]
        while shorts:
            letter, shorts = shorts[0], shorts[1:]
            opt = _SHORT.get(letter)
            if opt is None:
                raise FlagError(f"unknown shorthand flag: '{letter}' in -{letter}{shorts}")
            if shorts.startswith("="):
                text, shorts = shorts[1:], ""
            elif opt.kind is Kind.BOOL:
                text = "true"
            elif shorts:
                text, shorts = shorts, ""
            elif i < len(args):
                text, i = args[i], i + 1
            else:
                raise FlagError(f"flag needs an argument: '{letter}' in -{letter}")
            _set_flag(opt, text, values)
    meta = {opt.key: values.pop(opt.key) for opt in META_OPTIONS if opt.key in values}
    return CommandLine(
        values=values,
        display={key: go_v(value) for key, value in values.items()},
        config_file=meta.get("config-file", DEFAULT_CONFIG_FILE),
        config_file_given="config-file" in meta,
        validate=meta.get("validate", False),
        version=meta.get("version", False),
        help=meta.get("help", False),
    )


_TYPE_NAMES = {Kind.BOOL: "", Kind.INT: " int", Kind.LIST: " list", Kind.POOLS: " pool-options"}


def usage(environ: Mapping[str, str] | None = None) -> str:
    """`pymobyd --help`, generated from the option table."""
    env = os.environ if environ is None else environ
    rows = []
    for opt in sorted((o for o in _ALL if o.flags), key=lambda o: o.long):
        kind = _TYPE_NAMES.get(opt.kind, " string")
        name = (f"-{opt.short}, " if opt.short else "    ") + f"--{opt.long}{kind}"
        default = opt.default_value(env)
        text = opt.help
        if opt.kind is Kind.STRING and default:
            text += f" (default {go_quote(default)})"
        elif opt.kind in (Kind.INT, Kind.BOOL) and default:
            text += f" (default {go_v(default)})"
        rows.append((name, text))
    width = max(len(name) for name, _ in rows)
    return (
        f"Usage:\t{PROGRAM} [OPTIONS]\n\nA self-sufficient runtime for containers.\n\nOptions:\n"
        + "\n".join(f"  {name.ljust(width)}   {text}" for name, text in rows)
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of `pymobyd` and `python -m pymoby`; returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    try:
        cmd = parse_command_line(args)
    except FlagError as err:
        print(f"Status: {err}\nSee '{PROGRAM} --help'., Code: 125", file=sys.stderr)
        return 1
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 1
    if cmd.help:
        print(usage())
        return 0
    if cmd.version:
        print(version_line())
        return 0
    try:
        config = load(cmd)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 1
    if cmd.validate:
        print("configuration OK", file=sys.stderr)
        return 0
    log.configure(config.effective_log_level)
    # The composition root is loaded last, so the command line works without it.
    from pymoby.daemon.daemon import run  # noqa: PLC0415 - only the daemon needs it loaded

    return run(config)
