"""Binds / Mounts / tmpfs parsing and the `mounts` of the spec, as dockerd builds them."""

from __future__ import annotations

from typing import Any

import pytest

from pymoby import errdefs
from pymoby.api.types.containers import (
    BindOptions,
    Config,
    HostConfig,
    Mount,
    TmpfsOptions,
    VolumeOptions,
)
from pymoby.runtime import mounts
from pymoby.runtime.defaults import SpecError
from pymoby.runtime.mounts import SpecMount
from pymoby.runtime.spec import SpecInput, build_spec


def spec_for(hc: HostConfig, **kw: Any) -> dict[str, Any]:
    hc.ipc_mode = hc.ipc_mode or "private"
    hc.shm_size = hc.shm_size or 64 << 20
    inp = SpecInput(
        container_id="c" * 64,
        config=Config(cmd=["true"]),
        host_config=hc,
        rootfs="/rootfs",
        goarch="amd64",
        kernel=(6, 1),
        **kw,
    )
    return build_spec(inp)


def by_dest(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["destination"]: m for m in spec["mounts"]}


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("/src:/dst", ("bind", "/src", "/dst", True, "rprivate")),
        ("/src:/dst:ro", ("bind", "/src", "/dst", False, "rprivate")),
        ("/src/../src//:/dst/./x/:rw,rslave", ("bind", "/src", "/dst/x", True, "rslave")),
        ("/src:/dst:z", ("bind", "/src", "/dst", True, "rprivate")),  # no SELinux: ignored
        ("/src:/dst:Z,ro,shared", ("bind", "/src", "/dst", False, "shared")),
        ("name:/dst", ("volume", "name", "/dst", True, "")),
        ("name:/dst:ro,nocopy", ("volume", "name", "/dst", False, "")),
        ("/anonymous", ("volume", "", "/anonymous", True, "")),
    ],
)
def test_parse_bind(raw: str, want: tuple[str, str, str, bool, str]) -> None:
    mp = mounts.parse_bind(raw)
    assert (mp.type, mp.source, mp.destination, mp.rw, mp.propagation) == want


def test_parse_bind_volume_options() -> None:
    assert mounts.parse_bind("name:/dst:nocopy").copy_data is False
    assert mounts.parse_bind("name:/dst", "local").driver == "local"
    assert mounts.parse_bind("/h:/dst", "local").driver == ""


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (":/dst", "invalid volume specification: ':/dst'"),
        ("/dst:rw", "invalid volume specification: '/dst:rw'"),
        ("/dst:", "invalid volume specification: '/dst:'"),
        ("/a:/b:ro:x", "invalid volume specification: '/a:/b:ro:x'"),
        ("/a:/b:bogus", "invalid mode: bogus"),
        ("/a:/b:ro,rw", "invalid mode: ro,rw"),
        ("/a:/b:shared,slave", "invalid mode: shared,slave"),
        (
            "/a:relative",
            "invalid volume specification: '/a:relative': invalid mount config for type "
            "\"bind\": invalid mount path: 'relative' mount path must be absolute",
        ),
        (
            "/a:/",
            "invalid volume specification: '/a:/': invalid mount config for type \"bind\": "
            "invalid specification: destination can't be '/'",
        ),
        (
            "/a:/b:nocopy",
            "invalid volume specification: '/a:/b:nocopy': invalid mount config for type "
            '"bind": field VolumeOptions must not be specified',
        ),
        (
            "vol:/b:rshared",
            "invalid volume specification: 'vol:/b:rshared': invalid mount config for type "
            '"volume": field BindOptions must not be specified',
        ),
    ],
)
def test_parse_bind_errors(raw: str, message: str) -> None:
    with pytest.raises(errdefs.InvalidParameter) as exc:
        mounts.parse_bind(raw)
    assert str(exc.value) == message


@pytest.mark.parametrize(
    ("mnt", "message"),
    [
        (Mount(type="bind", source="/a"), "field Target must not be empty"),
        (Mount(type="bind", target="/b"), "field Source must not be empty"),
        (Mount(type="bind", source="a", target="/b"), "invalid mount path: 'a' mount path"),
        (
            Mount(type="bind", source="/a", target="/b", bind_options=BindOptions(propagation="x")),
            "invalid propagation mode: x",
        ),
        (Mount(type="tmpfs", source="/a", target="/b"), "field Source must not be specified"),
        (
            Mount(type="tmpfs", target="/b", bind_options=BindOptions()),
            "field BindOptions must not be specified",
        ),
        (
            Mount(type="tmpfs", target="/b", tmpfs_options=TmpfsOptions(options=[["size", "1"]])),
            "invalid option: size",
        ),
        (
            Mount(type="volume", target="/b", volume_options=VolumeOptions(subpath="x")),
            "must not set Subpath when using anonymous volumes",
        ),
        (
            Mount(
                type="volume", source="v", target="/b", volume_options=VolumeOptions(subpath="../x")
            ),
            "subpath must be a relative path within the volume",
        ),
        (Mount(type="npipe", target="/b"), "mount type unknown"),
    ],
)
def test_mount_spec_errors(mnt: Mount, message: str) -> None:
    with pytest.raises(errdefs.InvalidParameter) as exc:
        mounts.validate_mount_config(mnt)
    assert str(exc.value).startswith(f'invalid mount config for type "{mnt.type}": ')
    assert message in str(exc.value)


def test_bind_source_must_exist_unless_created() -> None:
    mnt = Mount(type="bind", source="/nope", target="/b")
    with pytest.raises(errdefs.InvalidParameter, match=r"bind source path does not exist: /nope"):
        mounts.validate_mount_config(mnt, lambda p: False)
    mnt.bind_options = BindOptions(create_mountpoint=True)
    mounts.validate_mount_config(mnt, lambda p: False)


@pytest.mark.parametrize(
    ("opts", "read_only", "data"),
    [
        (None, False, ""),
        (None, True, "ro"),
        (TmpfsOptions(size_bytes=64 << 20, mode=0o1777), False, "mode=1777,size=64m"),
        (TmpfsOptions(size_bytes=3 << 30), False, "size=3g"),
        (TmpfsOptions(size_bytes=1536), False, "size=1536"),
        (
            TmpfsOptions(size_bytes=2048, options=[["exec"], ["noexec"]]),
            True,
            "ro,size=2k,exec,noexec",
        ),
    ],
)
def test_convert_tmpfs_options(opts: TmpfsOptions | None, read_only: bool, data: str) -> None:
    assert mounts.convert_tmpfs_options(opts, read_only) == data


@pytest.mark.parametrize(
    ("options", "merged"),
    [
        (
            ["noexec", "nosuid", "nodev", "rprivate", "rw", "noexec", "nosuid", "size=65536k"],
            ["nodev", "rprivate", "rw", "noexec", "nosuid", "size=65536k"],
        ),
        (["noexec", "exec", "size=1k", "size=2k"], ["exec", "size=2k"]),
        (["ro", "rw", "shared", "rprivate", "defaults", "uid=1"], ["rw", "rprivate", "uid=1"]),
    ],
)
def test_merge_tmpfs_options(options: list[str], merged: list[str]) -> None:
    assert mounts.merge_tmpfs_options(options) == merged


@pytest.mark.parametrize("bad", ["size", "foo", "bogus=1"])
def test_merge_tmpfs_options_rejects(bad: str) -> None:
    with pytest.raises(errdefs.InvalidParameter, match=r"invalid tmpfs option"):
        mounts.merge_tmpfs_options(["noexec", bad])


# --------------------------------------------------------------------------- in the spec


def test_default_mounts_and_shm_size() -> None:
    spec = spec_for(HostConfig(shm_size=1 << 20))
    assert [m["destination"] for m in spec["mounts"]] == [
        "/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm",
    ]  # fmt: skip
    shm = by_dest(spec)["/dev/shm"]
    assert shm == {
        "destination": "/dev/shm",
        "type": "tmpfs",
        "source": "shm",
        "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=1048576"],
    }
    assert by_dest(spec)["/sys"]["options"] == ["nosuid", "noexec", "nodev", "ro"]
    assert by_dest(spec)["/sys/fs/cgroup"]["options"] == ["ro", "nosuid", "noexec", "nodev"]


def test_binds_tmpfs_and_network_files_sorted_by_depth() -> None:
    hc = HostConfig(
        binds=["/h/a:/x/y/z:ro", "/h/b:/w", "vol:/data/v"],
        tmpfs={"/run": "rw,noexec,nosuid,size=65536k"},
        mounts=[
            Mount(type="tmpfs", target="/tmp/t", tmpfs_options=TmpfsOptions(size_bytes=1 << 20)),
            Mount(
                type="bind",
                source="/h/c",
                target="/m",
                bind_options=BindOptions(non_recursive=True),
            ),
        ],
    )
    spec = spec_for(
        hc,
        volume_sources={"/data/v": "/var/lib/pymoby/volumes/vol/_data"},
        hostname_path="/c/hostname",
        hosts_path="/c/hosts",
        resolv_conf_path="/c/resolv.conf",
        rro_error=None,
    )
    user = [m["destination"] for m in spec["mounts"][7:]]
    assert user == [
        "/run", "/w", "/m", "/tmp/t", "/data/v", "/etc/resolv.conf", "/etc/hostname",
        "/etc/hosts", "/x/y/z",
    ]  # fmt: skip
    m = by_dest(spec)
    assert m["/run"] == {
        "destination": "/run",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nodev", "rprivate", "rw", "noexec", "nosuid", "size=65536k"],
    }
    assert m["/tmp/t"]["options"] == ["noexec", "nosuid", "nodev", "rprivate", "size=1m"]
    assert m["/x/y/z"] == {
        "destination": "/x/y/z",
        "type": "bind",
        "source": "/h/a",
        "options": ["rbind", "rro", "rprivate"],
    }
    assert m["/m"]["options"] == ["bind", "rprivate"]
    assert m["/data/v"] == {
        "destination": "/data/v",
        "type": "bind",
        "source": "/var/lib/pymoby/volumes/vol/_data",
        "options": ["rbind"],
    }
    assert m["/etc/hosts"] == {
        "destination": "/etc/hosts",
        "type": "bind",
        "source": "/c/hosts",
        "options": ["rbind", "rprivate"],
    }


def test_read_only_binds_of_old_api_containers_are_not_recursive() -> None:
    hc = HostConfig(binds=["/h:/ro:ro", "/h:/rw"])
    m = by_dest(spec_for(hc, read_only_non_recursive=True))
    assert m["/ro"]["options"] == ["rbind", "ro", "rprivate"]
    assert m["/rw"]["options"] == ["rbind", "rprivate"]


def test_read_only_without_rro_support() -> None:
    hc = HostConfig(binds=["/h:/ro:ro"])
    spec = spec_for(hc, rro_error='rro is not supported by runtime "runc"')
    assert by_dest(spec)["/ro"]["options"] == ["rbind", "ro", "rprivate"]
    hc = HostConfig(
        mounts=[
            Mount(
                type="bind",
                source="/h",
                target="/ro",
                read_only=True,
                bind_options=BindOptions(read_only_force_recursive=True),
            )
        ]
    )
    with pytest.raises(SpecError, match=r'^rro is not supported by runtime "runc"$'):
        spec_for(hc, rro_error='rro is not supported by runtime "runc"')
    hc.mounts[0].bind_options = BindOptions(read_only_non_recursive=True)  # type: ignore[index]
    assert by_dest(spec_for(hc))["/ro"]["options"] == ["rbind", "ro", "rprivate"]


@pytest.mark.parametrize(
    ("opts", "read_only", "message"),
    [
        (
            BindOptions(read_only_non_recursive=True),
            False,
            "!ReadOnly && BindOptions.ReadOnlyNonRecursive",
        ),
        (
            BindOptions(read_only_force_recursive=True),
            False,
            "!ReadOnly && BindOptions.ReadOnlyForceRecursive",
        ),
        (
            BindOptions(read_only_non_recursive=True, read_only_force_recursive=True),
            True,
            "ReadOnlyNonRecursive && BindOptions.ReadOnlyForceRecursive",
        ),
    ],
)
def test_bind_option_conflicts(opts: BindOptions, read_only: bool, message: str) -> None:
    hc = HostConfig(
        mounts=[
            Mount(type="bind", source="/h", target="/d", read_only=read_only, bind_options=opts)
        ]
    )
    with pytest.raises(SpecError, match=f"^mount options conflict: {message}$"):
        spec_for(hc)


def test_user_mounts_replace_defaults() -> None:
    spec = spec_for(HostConfig(binds=["/h/dev:/dev", "/h/proc:/proc"]))
    dests = [m["destination"] for m in spec["mounts"]]
    # a user /dev hides every default below it; /proc is replaced
    assert dests == ["/sys", "/sys/fs/cgroup", "/dev", "/proc"]
    assert by_dest(spec)["/proc"]["type"] == "bind"


def test_user_network_file_replaces_ours() -> None:
    spec = spec_for(HostConfig(binds=["/mine/hosts:/etc/hosts:ro"]), hosts_path="/c/hosts")
    assert by_dest(spec)["/etc/hosts"] == {
        "destination": "/etc/hosts",
        "type": "bind",
        "source": "/mine/hosts",
        "options": ["rbind", "rro", "rprivate"],
    }


def test_ipc_modes() -> None:
    assert "/dev/shm" not in by_dest(spec_for(HostConfig(ipc_mode="none")))
    shared = spec_for(HostConfig(ipc_mode="shareable"), shm_path="/c/mounts/shm")
    assert by_dest(shared)["/dev/shm"] == {
        "destination": "/dev/shm",
        "type": "bind",
        "source": "/c/mounts/shm",
        "options": ["rbind", "rprivate"],
    }
    # a user mount at /dev/shm wins over the IPC mount
    mine = spec_for(HostConfig(ipc_mode="host", tmpfs={"/dev/shm": ""}), shm_path="/dev/shm")
    assert by_dest(mine)["/dev/shm"]["type"] == "tmpfs"


def test_read_only_rootfs() -> None:
    spec = spec_for(HostConfig(readonly_rootfs=True, tmpfs={"/run": ""}), hosts_path="/c/hosts")
    assert spec["root"] == {"path": "/rootfs", "readonly": True}
    m = by_dest(spec)
    for dest in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue"):
        assert "ro" not in m[dest]["options"]
    assert m["/sys"]["options"].count("ro") == 1
    assert m["/etc/hosts"]["options"] == ["rbind", "rro", "rprivate"]  # not writable
    assert "ro" not in m["/run"]["options"]  # user mounts keep their own mode


def test_privileged_and_writable_cgroups() -> None:
    m = by_dest(spec_for(HostConfig(privileged=True)))
    assert m["/sys"]["options"] == ["nosuid", "noexec", "nodev"]
    assert m["/sys/fs/cgroup"]["options"] == ["nosuid", "noexec", "nodev"]
    m = by_dest(spec_for(HostConfig(security_opt=["writable-cgroups=true"])))
    assert m["/sys/fs/cgroup"]["options"] == ["nosuid", "noexec", "nodev"]
    m = by_dest(spec_for(HostConfig(privileged=True, security_opt=["writable-cgroups=false"])))
    assert "ro" in m["/sys/fs/cgroup"]["options"]


def test_propagation_and_rootfs_propagation() -> None:
    spec = spec_for(
        HostConfig(binds=["/h:/d:rshared"]), bind_source_mounts={"/h": ("/", "shared:1")}
    )
    assert spec["linux"]["rootfsPropagation"] == "shared"
    spec = spec_for(HostConfig(binds=["/h:/d:slave"]))
    assert spec["linux"]["rootfsPropagation"] == "rslave"
    with pytest.raises(SpecError, match=r"^path /h is mounted on / but it is not a shared mount$"):
        spec_for(HostConfig(binds=["/h:/d:shared"]), bind_source_mounts={"/h": ("/", "")})
    with pytest.raises(SpecError, match=r"it is not a shared or slave mount$"):
        spec_for(HostConfig(binds=["/h:/d:rslave"]), bind_source_mounts={"/h": ("/", "")})


def test_daemon_root_binds_default_to_rslave() -> None:
    spec = spec_for(HostConfig(binds=["/var/lib/pymoby:/d"]), daemon_root="/var/lib/pymoby")
    assert by_dest(spec)["/d"]["options"] == ["rbind", "rslave"]
    # a private source under the daemon root falls back to the default propagation
    spec = spec_for(
        HostConfig(binds=["/var/lib/pymoby/x:/d"]),
        daemon_root="/var/lib/pymoby",
        bind_source_mounts={"/var/lib/pymoby/x": ("/", "")},
    )
    assert "rootfsPropagation" not in spec["linux"]


def test_volume_without_source_and_extra_mounts() -> None:
    with pytest.raises(SpecError, match=r"no volume is mounted at /data"):
        spec_for(HostConfig(binds=["vol:/data"]))
    spec = spec_for(
        HostConfig(binds=["/h:/override"]),
        extra_mounts=[SpecMount("/v1", "/from", False), SpecMount("/v2", "/override")],
    )
    m = by_dest(spec)
    assert m["/from"]["options"] == ["rbind", "rro"]
    assert m["/override"]["source"] == "/h"  # Binds win over volumes-from


def test_bad_tmpfs_option_in_spec() -> None:
    with pytest.raises(SpecError, match=r'invalid tmpfs option "bogus"'):
        spec_for(HostConfig(tmpfs={"/run": "bogus"}))


def test_init_mount() -> None:
    hc = HostConfig(init=True)
    spec = spec_for(hc, init_path="/usr/bin/docker-init")
    assert by_dest(spec)["/sbin/docker-init"] == {
        "destination": "/sbin/docker-init",
        "type": "bind",
        "source": "/usr/bin/docker-init",
        "options": ["bind", "ro"],
    }
    assert [m["destination"] for m in spec["mounts"]].index("/sbin/docker-init") == 7
