"""The init layer, the image's files read inside the root, hosts and resolv.conf."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pymoby import errdefs
from pymoby.daemon.containers import files


def test_init_layer_creates_the_mount_points(tmp_path: Path) -> None:
    files.setup_init_layer(tmp_path)
    for d in ("dev/pts", "dev/shm", "proc", "sys"):
        assert (tmp_path / d).is_dir()
    for f in (".dockerenv", "etc/resolv.conf", "etc/hosts", "etc/hostname", "dev/console"):
        assert (tmp_path / f).is_file()
    assert os.readlink(tmp_path / "etc" / "mtab") == "/proc/mounts"
    files.setup_init_layer(tmp_path)  # idempotent


def test_init_layer_never_follows_an_images_symlinks(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "etc").symlink_to(outside)  # a hostile image: /etc -> a host directory
    (root / ".dockerenv").symlink_to(outside / "victim")
    files.setup_init_layer(root)
    assert list(outside.iterdir()) == []
    assert (root / "etc").is_dir() and not (root / "etc").is_symlink()
    assert (root / ".dockerenv").is_file() and not (root / ".dockerenv").is_symlink()


def test_read_root_file_stays_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    secret = tmp_path / "secret"
    secret.write_text("host secret")
    (root / "etc" / "passwd").symlink_to("/../../../" + str(secret))
    assert files.read_root_file(root, "/etc/passwd") is None
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "real").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "etc" / "passwd").symlink_to("/etc/real")
    assert files.read_root_file(root, "/etc/passwd") == "root:x:0:0::/root:/bin/sh\n"
    assert files.read_root_file(root, "/etc/group") is None


def test_hosts() -> None:
    text = files.hosts_content(["db:10.0.0.2"], host_network=False)
    assert text.splitlines()[0] == "127.0.0.1\tlocalhost"
    assert text.splitlines()[-1] == "10.0.0.2\tdb"
    host = files.hosts_content(None, host_network=True, host_hosts="1.2.3.4 me")
    assert host == "1.2.3.4 me\n"
    with pytest.raises(errdefs.InvalidParameter, match="host-gateway"):
        files.hosts_content(["gw:host-gateway"], host_network=False)
    gw = files.hosts_content(["gw:host-gateway"], host_network=False, host_gateway="10.1.0.1")
    assert gw.endswith("10.1.0.1\tgw\n")


def test_resolv_conf() -> None:
    host = "nameserver 127.0.0.53\nnameserver 1.1.1.1\nsearch lan\noptions ndots:2\n"
    out = files.resolv_conf_content(
        host, host_network=False, dns=None, dns_search=None, dns_options=None
    )
    assert out == "nameserver 1.1.1.1\nsearch lan\noptions ndots:2\n"
    only_local = files.resolv_conf_content(
        "nameserver 127.0.0.1\n", host_network=False, dns=None, dns_search=None, dns_options=None
    )
    assert only_local == "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    kept = files.resolv_conf_content(
        "nameserver 127.0.0.1\n", host_network=True, dns=None, dns_search=None, dns_options=None
    )
    assert kept == "nameserver 127.0.0.1\n"
    custom = files.resolv_conf_content(
        host, host_network=False, dns=["9.9.9.9"], dns_search=["."], dns_options=["rotate"]
    )
    assert custom == "nameserver 9.9.9.9\noptions rotate\n"
    embedded = files.resolv_conf_content(
        host, host_network=False, dns=["9.9.9.9"], dns_search=None, dns_options=None,
        embedded_dns=True,
    )  # fmt: skip
    assert embedded == "nameserver 127.0.0.11\nsearch lan\noptions ndots:0\n"


def test_write_file_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "hosts"
    files.write_file(target, "a\n")
    files.write_file(target, "b\n")
    assert target.read_text() == "b\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hosts"]
