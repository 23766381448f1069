"""`docker import -c` / `docker commit -c`: Dockerfile instructions applied to a run config.

Rule: dockerd's BuildFromConfig. The changes are joined with newlines and read as Dockerfile
lines (`\\` continues a line, `#` lines are comments); every instruction must be one of CMD,
ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR, else
`<instruction> is not a valid change command` (the instruction in lower case, as dockerd
prints it). Arguments are processed like the builder does: JSON (exec) form or shell form for
CMD / ENTRYPOINT / HEALTHCHECK (`/bin/sh -c ...`), `key=value` words (or the legacy `key value`)
for ENV and LABEL, environment expansion (`$x`, `${x}`, `${x:-d}`, `${x:+a}`) from the config's
Env for ENV, LABEL, EXPOSE, USER, VOLUME, WORKDIR and STOPSIGNAL. Every error is
InvalidParameter. The full Dockerfile parser belongs to the builder; this is the subset
`-c` accepts.
"""

from __future__ import annotations

import json
import posixpath
import re
import signal
from collections.abc import Sequence

import msgspec

from pymoby import errdefs
from pymoby.api.timestamps import parse_duration
from pymoby.api.types.images import ContainerConfig, HealthConfig

VALID = frozenset(
    (
        "cmd",
        "entrypoint",
        "healthcheck",
        "env",
        "expose",
        "label",
        "onbuild",
        "stopsignal",
        "user",
        "volume",
        "workdir",
    )
)


class ChangeError(errdefs.InvalidParameter):
    pass


def apply_changes(config: ContainerConfig, changes: Sequence[str]) -> ContainerConfig:
    """A copy of `config` with the instructions in `changes` applied."""
    cfg = msgspec.structs.replace(config)
    lines = _logical_lines("\n".join(changes))
    parsed = []
    for line in lines:
        instruction, _, rest = line.strip().partition(" ")
        name = instruction.lower()
        if name not in VALID:
            raise ChangeError(f"{name} is not a valid change command")
        parsed.append((name, rest.strip()))
    cmd_set = False
    for name, rest in parsed:
        if name == "cmd":
            cfg.cmd = _command(rest)
            cmd_set = True
        elif name == "entrypoint":
            cfg.entrypoint = _command(rest)
            if not cmd_set:
                cfg.cmd = None
        elif name == "env":
            _env(cfg, rest)
        elif name == "label":
            labels = dict(cfg.labels or {})
            for key, value in _pairs(rest, cfg.env or [], "LABEL"):
                labels[key] = value
            cfg.labels = labels
        elif name == "expose":
            ports = dict(cfg.exposed_ports or {})
            for word in _words(rest, cfg.env or []):
                for port in _ports(word):
                    ports[port] = {}
            cfg.exposed_ports = ports
        elif name == "user":
            cfg.user = _single(rest, cfg.env or [], "USER")
        elif name == "workdir":
            path = _single(rest, cfg.env or [], "WORKDIR")
            cfg.working_dir = posixpath.normpath(
                path if path.startswith("/") else posixpath.join("/", cfg.working_dir, path)
            )
        elif name == "volume":
            _volumes(cfg, rest)
        elif name == "stopsignal":
            sig = _single(rest, cfg.env or [], "STOPSIGNAL")
            _check_signal(sig)
            cfg.stop_signal = sig
        elif name == "onbuild":
            _onbuild(cfg, rest)
        else:
            cfg.healthcheck = _healthcheck(rest)
    return cfg


# -- lines and words ---------------------------------------------------------------------------


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    current = ""
    for raw in text.split("\n"):
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1]
            continue
        current += raw
        lines.append(current)
        current = ""
    if current.strip():
        lines.append(current)
    return lines


def _split_words(text: str) -> list[str]:
    """Whitespace-separated words; quotes and escapes kept (the parser's first pass)."""
    words: list[str] = []
    word = ""
    quote = ""
    escaped = False
    for ch in text:
        if escaped:
            word += ch
            escaped = False
        elif ch == "\\" and quote != "'":
            word += ch
            escaped = True
        elif quote:
            word += ch
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            word += ch
            quote = ch
        elif ch.isspace():
            if word:
                words.append(word)
                word = ""
        else:
            word += ch
    if quote:
        raise ChangeError(f"unexpected end of statement while looking for matching {quote}")
    if word:
        words.append(word)
    return words


_VAR = re.compile(
    r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))"
)


def _lookup(env: Sequence[str], key: str) -> str | None:
    for item in reversed(env):
        name, sep, value = item.partition("=")
        if name == key:
            return value if sep else ""
    return None


def _expand_plain(text: str, env: Sequence[str]) -> str:
    def sub(m: re.Match[str]) -> str:
        key = m.group(1) or m.group(4)
        value = _lookup(env, key)
        op = m.group(2)
        if op is None:
            return value or ""
        word = m.group(3) or ""
        if op == ":-":
            return value if value else word
        if op == "-":
            return value if value is not None else word
        if op == ":+":
            return word if value else ""
        return word if value is not None else ""

    return _VAR.sub(sub, text)


def process_word(word: str, env: Sequence[str]) -> str:
    """The shell-like word processing of the builder: quotes removed, variables expanded."""
    out = ""
    i = 0
    while i < len(word):
        ch = word[i]
        if ch == "'":
            end = word.find("'", i + 1)
            end = len(word) if end < 0 else end
            out += word[i + 1 : end]
            i = end + 1
        elif ch == '"':
            j = i + 1
            part = ""
            while j < len(word) and word[j] != '"':
                if word[j] == "\\" and j + 1 < len(word) and word[j + 1] in '"\\$':
                    part += "\x00" + word[j + 1] if word[j + 1] == "$" else word[j + 1]
                    j += 2
                    continue
                part += word[j]
                j += 1
            out += _expand_plain(part, env).replace("\x00$", "$")
            i = j + 1
        elif ch == "\\" and i + 1 < len(word):
            out += word[i + 1]
            i += 2
        else:
            j = i
            while j < len(word) and word[j] not in "'\"\\":
                j += 1
            out += _expand_plain(word[i:j], env)
            i = j
    return out


def _words(text: str, env: Sequence[str]) -> list[str]:
    return [w for w in (process_word(w, env) for w in _split_words(text)) if w != ""]


def _single(text: str, env: Sequence[str], what: str) -> str:
    if not text:
        raise ChangeError(f"{what} requires exactly one argument")
    return process_word(text, env)


# -- instructions ----------------------------------------------------------------------------


def _json_list(text: str) -> list[str] | None:
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _command(text: str) -> list[str]:
    exec_form = _json_list(text)
    if exec_form is not None:
        return exec_form
    return ["/bin/sh", "-c", text] if text else []


def _pairs(text: str, env: Sequence[str], what: str) -> list[tuple[str, str]]:
    words = _split_words(text)
    if not words:
        raise ChangeError(f"{what} requires at least one argument")
    if "=" not in words[0]:
        key, _, value = text.partition(" ")
        value = value.strip()
        if not value:
            raise ChangeError(f"{what} must have two arguments")
        return [(process_word(key, env), process_word(value, env))]
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise ChangeError(
                f"Syntax error - can't find = in {word!r}. Must be of the form: name=value"
            )
        pairs.append((process_word(key, env), process_word(value, env)))
    return pairs


def _env(cfg: ContainerConfig, text: str) -> None:
    env = list(cfg.env or [])
    for key, value in _pairs(text, env, "ENV"):
        if not key:
            raise ChangeError("ENV names can not be blank")
        item = f"{key}={value}"
        for i, existing in enumerate(env):
            if existing.partition("=")[0] == key:
                env[i] = item
                break
        else:
            env.append(item)
    cfg.env = env


def _ports(word: str) -> list[str]:
    """nat.ParsePortSpec for `EXPOSE`: `port[-port][/proto]`."""
    spec, _, proto = word.partition("/")
    proto = proto.lower() or "tcp"
    if proto not in ("tcp", "udp", "sctp"):
        raise ChangeError(f"invalid proto: {proto}")
    if ":" in spec:
        spec = spec.rpartition(":")[2]
    low, dash, high = spec.partition("-")
    try:
        start = int(low)
        end = int(high) if dash else start
    except ValueError:
        raise ChangeError(f"invalid containerPort: {spec}") from None
    if not (0 <= start <= 65535 and 0 <= end <= 65535) or end < start:
        raise ChangeError(f"invalid containerPort: {spec}")
    return [f"{port}/{proto}" for port in range(start, end + 1)]


def _volumes(cfg: ContainerConfig, text: str) -> None:
    env = cfg.env or []
    values = _json_list(text)
    paths = [process_word(v, env) for v in values] if values is not None else _words(text, env)
    if not paths:
        raise ChangeError("VOLUME requires at least one argument")
    volumes = dict(cfg.volumes or {})
    for path in paths:
        if not path:
            raise ChangeError("VOLUME specified can not be an empty string")
        volumes[path] = {}
    cfg.volumes = volumes


def _check_signal(text: str) -> None:
    if text.isdigit():
        if int(text) == 0 or int(text) > 64:
            raise ChangeError(f"Invalid signal: {text}")
        return
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    if not hasattr(signal.Signals, name) and not re.fullmatch(r"SIGRTM(IN|AX)([+-]\d+)?", name):
        raise ChangeError(f"Invalid signal: {text}")


def _onbuild(cfg: ContainerConfig, text: str) -> None:
    trigger = text.split(None, 1)[0].upper() if text else ""
    if not trigger:
        raise ChangeError("ONBUILD requires at least one argument")
    if trigger == "ONBUILD":
        raise ChangeError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise ChangeError(f"{trigger} isn't allowed as an ONBUILD trigger")
    cfg.on_build = [*(cfg.on_build or []), text]


def _healthcheck(text: str) -> HealthConfig:
    words = text.split()
    options: dict[str, str] = {}
    while words and words[0].startswith("--"):
        flag, sep, value = words.pop(0)[2:].partition("=")
        if not sep:
            raise ChangeError(f"missing a value on flag: {flag}")
        options[flag] = value
    if not words:
        raise ChangeError("Missing command after HEALTHCHECK")
    kind = words[0].upper()
    rest = text[text.upper().index(kind, text.find(words[0])) + len(kind) :].strip()
    if kind == "NONE":
        if rest or options:
            raise ChangeError("HEALTHCHECK NONE takes no arguments")
        return HealthConfig(test=["NONE"])
    if kind != "CMD":
        raise ChangeError(f'Unknown type "{kind}" in HEALTHCHECK (try CMD)')
    exec_form = _json_list(rest)
    test = ["CMD", *exec_form] if exec_form is not None else ["CMD-SHELL", rest]
    health = HealthConfig(test=test)
    for flag, value in options.items():
        if flag == "retries":
            try:
                health.retries = int(value)
            except ValueError:
                raise ChangeError(f"invalid value for retries: {value}") from None
        elif flag in ("interval", "timeout", "start-period", "start-interval"):
            duration = parse_duration(value)
            if 0 < duration < 1_000_000:
                raise ChangeError(f"Interval {flag} cannot be less than 1ms")
            setattr(health, flag.replace("-", "_"), duration)
        else:
            raise ChangeError(f"Unknown flag: {flag}")
    return health
