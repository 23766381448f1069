"""Helper-binary lookup and `--version` probing: parsers, fake binaries, and the real ones."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pymoby.runtime import binaries
from pymoby.runtime.binaries import Binaries

RUNC_OUTPUT = """runc version 1.1.5+ds1
commit: 1.1.5+ds1-1+deb12u1
spec: 1.0.2-dev
go: go1.19.8
libseccomp: 2.5.4
"""


def test_parse_runtime_version_runc() -> None:
    assert binaries.parse_runtime_version(RUNC_OUTPUT) == (
        "runc",
        "1.1.5+ds1",
        "1.1.5+ds1-1+deb12u1",
    )


def test_parse_runtime_version_conmon_and_crun() -> None:
    assert binaries.parse_runtime_version("conmon version 2.1.6\ncommit: unknown\n") == (
        "conmon",
        "2.1.6",
        "unknown",
    )
    crun = "crun version 1.8.1\ncommit: f8a096be060b22ccd3d5f3ebe44108517fbf6c30\nrundir: x\n"
    assert binaries.parse_runtime_version(crun)[1:] == (
        "1.8.1",
        "f8a096be060b22ccd3d5f3ebe44108517fbf6c30",
    )


def test_parse_runtime_version_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="unknown output format"):
        binaries.parse_runtime_version("hello\n")


def test_parse_init_version() -> None:
    assert binaries.parse_init_version("tini version 0.18.0 - git.fec3683\n") == (
        "0.18.0",
        "fec3683",
    )
    assert binaries.parse_init_version("tini version 0.19.0\n") == ("0.19.0", "")
    with pytest.raises(ValueError):
        binaries.parse_init_version("something else")


def fake_tool(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


async def test_probe_fake_runtime_and_cache(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    tool = fake_tool(
        tmp_path,
        "myrunc",
        f'echo x >> {calls}\necho "myrunc version 9.9"\necho "commit: deadbeef"',
    )
    probe = Binaries(path_env=str(tmp_path), locate_ttl=0)
    first, second = await asyncio.gather(probe.runtime("myrunc"), probe.runtime("myrunc"))
    assert first == second
    assert first.ok and first.path == str(tool)
    assert (first.version, first.commit) == ("9.9", "deadbeef")
    await probe.runtime(str(tool))  # same file by path: still cached
    assert calls.read_text().count("x") == 1
    # a changed binary is probed again
    fake_tool(tmp_path, "myrunc", 'echo "myrunc version 10.0"')
    os.utime(tool, ns=(0, 1_000_000_000))
    again = await probe.runtime("myrunc")
    assert (again.version, again.commit) == ("10.0", "")


async def test_missing_binary_is_reported(tmp_path: Path) -> None:
    probe = Binaries(path_env=str(tmp_path), locate_ttl=0)
    result = await probe.conmon("no-such-conmon")
    assert not result.ok
    assert result.path is None
    assert result.version == "" and result.commit == ""
    assert result.error == "no-such-conmon: executable file not found"
    assert await probe.features("no-such-runc") is None


async def test_failing_and_unparsable_binaries(tmp_path: Path) -> None:
    fake_tool(tmp_path, "broken", 'echo "boom" >&2\nexit 3')
    fake_tool(tmp_path, "chatty", 'echo "hello there"')
    probe = Binaries(path_env=str(tmp_path), locate_ttl=0)
    broken = await probe.runtime("broken")
    assert broken.error is not None and "boom" in broken.error
    chatty = await probe.runtime("chatty")
    assert chatty.error is not None and "unknown output format" in chatty.error


async def test_timeout_kills_and_is_not_cached(tmp_path: Path) -> None:
    fake_tool(tmp_path, "slow", 'sleep 30\necho "slow version 1"')
    probe = Binaries(path_env=str(tmp_path), timeout=0.2, locate_ttl=0)
    result = await asyncio.wait_for(probe.runtime("slow"), 5)
    assert result.error is not None and result.error.endswith(binaries.TIMEOUT)
    fake_tool(tmp_path, "slow", 'echo "slow version 2"')
    assert (await probe.runtime("slow")).version == "2"


async def test_init_lookup_and_version(tmp_path: Path) -> None:
    fake_tool(tmp_path, "my-init", 'echo "tini version 0.18.0 - git.fec3683"')
    probe = Binaries(path_env=str(tmp_path), locate_ttl=0)
    result = await probe.init("my-init")
    assert (result.version, result.commit) == ("0.18.0", "fec3683")
    assert result.path == str(tmp_path / "my-init")


def test_lookup_init_prefers_docker_libexec(tmp_path: Path) -> None:
    # a bare name is looked up in the libexec dirs first, then PATH
    fake_tool(tmp_path, "unlikely-init-name", "true")
    found = binaries.lookup_init_binary("unlikely-init-name", path_env=str(tmp_path))
    assert found == str(tmp_path / "unlikely-init-name")
    assert binaries.lookup_init_binary("/nonexistent/init") is None
    assert binaries.lookup_binary(str(tmp_path / "unlikely-init-name")) == str(
        tmp_path / "unlikely-init-name"
    )


async def test_features_json_is_compacted(tmp_path: Path) -> None:
    fake_tool(tmp_path, "featrt", 'echo \'{\n  "ociVersionMin": "1.0.0"\n}\'')
    fake_tool(tmp_path, "oldrt", "exit 1")
    probe = Binaries(path_env=str(tmp_path), locate_ttl=0)
    assert await probe.features("featrt") == '{"ociVersionMin":"1.0.0"}'
    assert await probe.features("oldrt") is None


def real_version_output(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} must be installed for pymoby (see DESIGN.md)"
    return subprocess.run(
        [path, "--version"], capture_output=True, text=True, check=True, timeout=10
    ).stdout


@pytest.mark.parametrize("name", ["runc", "conmon"])
async def test_real_runtime_binaries(name: str) -> None:
    _, version, commit = binaries.parse_runtime_version(real_version_output(name))
    result = await Binaries().version("runtime" if name == "runc" else "conmon", name)
    assert result.ok, result.error
    assert (result.version, result.commit) == (version, commit)
    assert result.version


async def test_location_is_reused_within_ttl(tmp_path: Path) -> None:
    """Hot /info loops don't re-stat the binary; a change is seen once the TTL passes."""
    tool = fake_tool(tmp_path, "myrunc", 'echo "myrunc version 9.9"')
    probe = Binaries(path_env=str(tmp_path), locate_ttl=3600)
    assert (await probe.runtime("myrunc")).version == "9.9"
    fake_tool(tmp_path, "myrunc", 'echo "myrunc version 10.0"')
    os.utime(tool, ns=(0, 1_000_000_000))
    assert (await probe.runtime("myrunc")).version == "9.9"
