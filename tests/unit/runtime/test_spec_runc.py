"""The spec runs for real: runc starts a busybox rootfs with what build_spec wrote.

Needs root (skipped otherwise) and runc (fails without it). Each container gets a unique id
and its own `runc --root` state directory in a temp dir, and is deleted even on failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pymoby.api.types.containers import Config, HostConfig
from pymoby.kernel.sysinfo import go_arch
from pymoby.runtime.defaults import caps_from_proc_status
from pymoby.runtime.seccomp import parse_kernel_release
from pymoby.runtime.spec import SpecInput, build_spec
from pymoby.runtime.validate import DaemonDefaults, adapt_host_config

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runc needs root")

PASSWD = "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n"
GROUP = "root:x:0:\nalice:x:1000:\nstaff:x:50:alice\n"
CGROUP_PARENT = "/pymoby-spec-test"


@pytest.fixture(scope="module", autouse=True)
def _remove_cgroup_parent() -> Iterator[None]:
    """runc removes each container's cgroup, not the parent it created: remove that too."""
    yield
    for parent in [
        *Path("/sys/fs/cgroup").glob("*" + CGROUP_PARENT),
        Path("/sys/fs/cgroup" + CGROUP_PARENT),
    ]:
        with contextlib.suppress(OSError):
            parent.rmdir()


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    busybox = shutil.which("busybox") or "/bin/busybox"
    assert Path(busybox).exists(), "busybox-static is needed for this test"
    rootfs = tmp_path / "bundle" / "rootfs"
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp"):
        (rootfs / d).mkdir(parents=True)
    shutil.copy(busybox, rootfs / "bin" / "busybox")
    for applet in ("sh", "cat", "echo", "true", "id", "touch", "grep"):
        (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text(PASSWD)
    (rootfs / "etc" / "group").write_text(GROUP)
    return rootfs.parent


def run(bundle: Path, cfg: Config, hc: HostConfig) -> subprocess.CompletedProcess[str]:
    runc = shutil.which("runc")
    assert runc is not None, "runc is not installed"
    adapt_host_config(hc, DaemonDefaults())
    hc.network_mode = hc.network_mode or "none"
    cid = f"pymoby-spec-test-{uuid.uuid4().hex[:12]}"
    rootfs = bundle / "rootfs"
    spec = build_spec(
        SpecInput(
            container_id=cid,
            config=cfg,
            host_config=hc,
            rootfs=str(rootfs),
            goarch=go_arch(os.uname().machine),
            kernel=parse_kernel_release(os.uname().release),
            passwd=(rootfs / "etc" / "passwd").read_text(),
            group=(rootfs / "etc" / "group").read_text(),
            host_capabilities=caps_from_proc_status(Path("/proc/self/status").read_text()),
            cgroup_parent=CGROUP_PARENT,
        )
    )
    (bundle / "config.json").write_text(json.dumps(spec))
    state = bundle.parent / "runc-state"
    state.mkdir(exist_ok=True)
    base = [runc, "--root", str(state)]
    try:
        return subprocess.run(
            [*base, "run", "--bundle", str(bundle), cid],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    finally:
        subprocess.run([*base, "delete", "-f", cid], capture_output=True, timeout=30, check=False)


def test_root_user(bundle: Path) -> None:
    result = run(bundle, Config(cmd=["id"], hostname="box"), HostConfig())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "uid=0(root) gid=0(root) groups=0(root)"


def test_non_root_user_with_groups(bundle: Path) -> None:
    hc = HostConfig(group_add=["4242"])
    result = run(bundle, Config(cmd=["id"], user="alice"), hc)
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.strip() == "uid=1000(alice) gid=1000(alice) groups=50(staff),1000(alice),4242"
    )


def test_confinement(bundle: Path) -> None:
    script = (
        "touch /x 2>/dev/null || echo rootfs-ro; touch /tmp/x && echo tmpfs-rw; "
        "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; "
        "echo $HOSTNAME $FOO; cat /proc/sys/kernel/domainname"
    )
    cfg = Config(cmd=["sh", "-c", script], hostname="hh", domainname="ex.org", env=["FOO=bar"])
    hc = HostConfig(
        readonly_rootfs=True,
        tmpfs={"/tmp": "size=1m"},
        cap_drop=["ALL"],
        cap_add=["chown"],
        security_opt=["no-new-privileges"],
    )
    result = run(bundle, cfg, hc)
    assert result.returncode == 0, result.stderr
    lines = [line.replace("\t", " ") for line in result.stdout.splitlines()]
    assert lines == [
        "rootfs-ro",
        "tmpfs-rw",
        "CapEff: 0000000000000001",
        "NoNewPrivs: 1",
        "Seccomp: 2",
        "hh bar",
        "ex.org",
    ]


def test_privileged_and_unconfined(bundle: Path) -> None:
    cmd = ["sh", "-c", "grep -E '^Seccomp:' /proc/self/status"]
    result = run(bundle, Config(cmd=cmd), HostConfig(privileged=True))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Seccomp:", "0"]
    result = run(bundle, Config(cmd=cmd), HostConfig(security_opt=["seccomp=unconfined"]))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Seccomp:", "0"]
