"""Integration fixtures: a real pymobyd per module, stopped and removed even when tests fail.

A missing prerequisite (root, runc, conmon, iptables, the docker CLI) FAILS every test with a
message; it never skips them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import Daemon, missing_prerequisites


@pytest.fixture(scope="session")
def prerequisites() -> None:
    problems = missing_prerequisites()
    if problems:
        pytest.fail("integration prerequisites missing:\n  " + "\n  ".join(problems))


@pytest.fixture(scope="module")
def daemon(prerequisites: None) -> Iterator[Daemon]:
    d = Daemon()
    try:
        d.start()
        yield d
    finally:
        d.cleanup()


@pytest.fixture
def fresh_daemon(prerequisites: None) -> Iterator[Daemon]:
    """A daemon of the test's own, for tests that stop, kill or reconfigure it."""
    d = Daemon()
    try:
        yield d
    finally:
        d.cleanup()


@pytest.fixture(scope="module")
def dm(daemon: Daemon) -> Iterator[Daemon]:
    """The module's daemon with the busybox fixture images loaded."""
    daemon.load_busybox()
    yield daemon


@pytest.fixture
def clean(dm: Daemon) -> Iterator[Daemon]:
    """That daemon; every container the test made is removed afterwards."""
    try:
        yield dm
    finally:
        dm.remove_containers()


@pytest.fixture
def own(fresh_daemon: Daemon) -> Iterator[Daemon]:
    """A daemon of the test's own with busybox loaded (it may kill and restart it)."""
    fresh_daemon.start()
    fresh_daemon.load_busybox()
    yield fresh_daemon
