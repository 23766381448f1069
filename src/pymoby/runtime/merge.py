"""What a container runs: the image's run config merged into the request, argv and environment.

Rule: reproduce dockerd exactly — `merge` (daemon/commit.go) and mergeAndVerifyConfig at create
time, getEntrypointAndArgs for the process path and arguments, and CreateDaemonEnvironment +
ReplaceOrAppendEnvValues for the environment. All functions are pure; the image config is any
object with the run-config attribute names (api.types.images.ContainerConfig fits).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Protocol

from pymoby import errdefs
from pymoby.api.types.containers import Config, HealthConfig
from pymoby.runtime.defaults import DEFAULT_PATH_ENV


class ImageHealthcheck(Protocol):
    test: list[str] | None
    interval: int
    timeout: int
    start_period: int
    start_interval: int
    retries: int


class ImageRunConfig(Protocol):
    """The attributes of an image's `config` that dockerd merges into a container's Config."""

    @property
    def user(self) -> str: ...
    @property
    def exposed_ports(self) -> dict[str, Any] | None: ...
    @property
    def env(self) -> list[str] | None: ...
    @property
    def labels(self) -> dict[str, str] | None: ...
    @property
    def cmd(self) -> list[str] | None: ...
    @property
    def entrypoint(self) -> list[str] | None: ...
    @property
    def healthcheck(self) -> ImageHealthcheck | None: ...
    @property
    def working_dir(self) -> str: ...
    @property
    def volumes(self) -> dict[str, Any] | None: ...
    @property
    def stop_signal(self) -> str: ...


def merge_image_config(user: Config, image: ImageRunConfig | None) -> Config:
    """mergeAndVerifyConfig: a new Config with the image's defaults filled in where the request
    left them empty; `Entrypoint: [""]` resets the entrypoint. Raises InvalidParameter
    "no command specified" when neither an entrypoint nor a command remains."""
    cfg = copy.deepcopy(user)
    if image is not None:
        _merge(cfg, image)
    if cfg.entrypoint is not None and len(cfg.entrypoint) == 1 and cfg.entrypoint[0] == "":
        cfg.entrypoint = None
    if not cfg.entrypoint and not cfg.cmd:
        raise errdefs.InvalidParameter("no command specified")
    return cfg


def _merge(cfg: Config, image: ImageRunConfig) -> None:
    if cfg.user == "":
        cfg.user = image.user
    if not cfg.exposed_ports:
        cfg.exposed_ports = copy.deepcopy(image.exposed_ports)
    elif image.exposed_ports:
        for port in image.exposed_ports:
            cfg.exposed_ports.setdefault(port, {})
    if not cfg.env:
        cfg.env = list(image.env) if image.env is not None else None
    else:
        keys = {e.partition("=")[0] for e in cfg.env}
        cfg.env.extend(e for e in image.env or () if e.partition("=")[0] not in keys)
    if cfg.labels is None:
        cfg.labels = {}
    for key, value in (image.labels or {}).items():
        cfg.labels.setdefault(key, value)
    if not cfg.entrypoint:
        if not cfg.cmd:
            cfg.cmd = list(image.cmd) if image.cmd is not None else None
        if cfg.entrypoint is None:
            cfg.entrypoint = list(image.entrypoint) if image.entrypoint is not None else None
    hc = image.healthcheck
    if hc is not None:
        if cfg.healthcheck is None:
            cfg.healthcheck = HealthConfig(
                test=list(hc.test) if hc.test is not None else None,
                interval=hc.interval,
                timeout=hc.timeout,
                start_period=hc.start_period,
                start_interval=hc.start_interval,
                retries=hc.retries,
            )
        else:
            mine = cfg.healthcheck
            if not mine.test:
                mine.test = list(hc.test) if hc.test is not None else None
            mine.interval = mine.interval or hc.interval
            mine.timeout = mine.timeout or hc.timeout
            mine.start_period = mine.start_period or hc.start_period
            mine.start_interval = mine.start_interval or hc.start_interval
            mine.retries = mine.retries or hc.retries
    if cfg.working_dir == "":
        cfg.working_dir = image.working_dir
    if not cfg.volumes:
        cfg.volumes = copy.deepcopy(image.volumes)
    else:
        for vol in image.volumes or {}:
            cfg.volumes[vol] = {}
    if cfg.stop_signal == "":
        cfg.stop_signal = image.stop_signal


def entrypoint_and_args(
    entrypoint: Sequence[str] | None, cmd: Sequence[str] | None
) -> tuple[str, list[str]]:
    """getEntrypointAndArgs: (Path, Args) of the container's process."""
    if not entrypoint:
        if not cmd:
            raise errdefs.InvalidParameter("no command specified")
        return cmd[0], list(cmd[1:])
    return entrypoint[0], [*entrypoint[1:], *(cmd or ())]


def replace_or_append_env(defaults: Sequence[str], overrides: Sequence[str]) -> list[str]:
    """ReplaceOrAppendEnvValues: an override replaces the default with the same key, a bare
    `KEY` (no `=`) removes it, anything else is appended."""
    env: list[str | None] = list(defaults)
    index = {e.partition("=")[0]: i for i, e in enumerate(defaults)}
    for value in overrides:
        key, sep, _ = value.partition("=")
        if not sep:
            if value in index:
                env[index[value]] = None
            continue
        if key in index:
            env[index[key]] = value
        else:
            env.append(value)
    return [e for e in env if e]


def daemon_environment(config: Config, linked_env: Sequence[str] = ()) -> list[str]:
    """CreateDaemonEnvironment: PATH, HOSTNAME, TERM=xterm with a TTY, legacy link variables,
    then the container's Env (which may replace or unset any of them)."""
    env = [f"PATH={DEFAULT_PATH_ENV}", f"HOSTNAME={config.hostname}"]
    if config.tty:
        env.append("TERM=xterm")
    env.extend(linked_env)
    return replace_or_append_env(env, config.env or ())
