"""Seccomp: moby's default profile filtered per container, custom profiles, on/off rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pymoby.api.types.containers import Config, HostConfig
from pymoby.runtime import seccomp
from pymoby.runtime.defaults import DEFAULT_CAPABILITIES, SpecError
from pymoby.runtime.seccomp_default import default_profile
from pymoby.runtime.spec import SpecInput, build_spec


def names(profile: dict[str, Any] | None) -> set[str]:
    assert profile is not None
    return {n for rule in profile["syscalls"] for n in rule["names"]}


def rules_for(profile: dict[str, Any] | None, name: str) -> list[dict[str, Any]]:
    assert profile is not None
    return [r for r in profile["syscalls"] if name in r["names"]]


def build(hc: HostConfig, **kw: Any) -> dict[str, Any]:
    hc.ipc_mode = "private"
    inp = SpecInput(
        container_id="c1",
        config=Config(cmd=["true"]),
        host_config=hc,
        rootfs="/r",
        goarch=kw.pop("goarch", "amd64"),
        kernel=kw.pop("kernel", (6, 1)),
        **kw,
    )
    return build_spec(inp)


def test_default_profile_data() -> None:
    data = default_profile()
    assert data["defaultAction"] == "SCMP_ACT_ERRNO" and data["defaultErrnoRet"] == 1
    assert len(data["syscalls"]) == 33
    assert sum(len(r["names"]) for r in data["syscalls"]) == 442
    assert "accept4" in data["syscalls"][0]["names"]


def test_default_for_the_default_capabilities() -> None:
    prof = seccomp.default_seccomp(DEFAULT_CAPABILITIES, "amd64", (6, 1))
    assert prof is not None
    assert list(prof) == ["defaultAction", "defaultErrnoRet", "architectures", "syscalls"]
    assert prof["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    got = names(prof)
    assert {"read", "arch_prctl", "modify_ldt", "chroot", "ptrace", "clone", "clone3"} <= got
    # capability-gated and foreign-architecture rules are left out
    assert not {"mount", "reboot", "bpf", "perf_event_open", "s390_runtime_instr"} & got
    # clone is allowed only without namespace flags, clone3 fails with ENOSYS
    assert rules_for(prof, "clone") == [
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}],
        }
    ]
    assert rules_for(prof, "clone3") == [
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
    ]
    assert rules_for(prof, "socket")[0]["args"] == [{"index": 0, "value": 38, "op": "SCMP_CMP_LT"}]


def test_filtered_by_capabilities_arch_and_kernel() -> None:
    admin = seccomp.default_seccomp([*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"], "amd64", (6, 1))
    assert {"mount", "unshare", "setns", "bpf"} <= names(admin)
    # with CAP_SYS_ADMIN clone is unrestricted: the masked rule and the clone3 ENOSYS go away
    assert all("args" not in r for r in rules_for(admin, "clone"))
    assert not [r for r in rules_for(admin, "clone3") if r["action"] == "SCMP_ACT_ERRNO"]
    arm = seccomp.default_seccomp(DEFAULT_CAPABILITIES, "arm64", (6, 1))
    assert arm is not None and arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "arm_fadvise64_64" in names(arm) and "arch_prctl" not in names(arm)
    s390 = seccomp.default_seccomp(DEFAULT_CAPABILITIES, "s390x", (6, 1))
    assert rules_for(s390, "clone")[0]["args"][0]["index"] == 1
    old = seccomp.default_seccomp(DEFAULT_CAPABILITIES, "amd64", (4, 4))
    assert "ptrace" not in names(old) and "process_vm_readv" not in names(old)
    # an architecture moby does not map gets no architectures list
    unknown = seccomp.default_seccomp(DEFAULT_CAPABILITIES, "sparc64", (6, 1))
    assert unknown is not None and "architectures" not in unknown


def test_custom_profiles() -> None:
    custom = json.dumps(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "excludes": {"minKernel": "4.1"}},
            ],
        }
    )
    prof = seccomp.setup_seccomp(seccomp.load_profile(custom), [], "amd64", (6, 1))
    assert prof == {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    }
    assert seccomp.setup_seccomp({}, [], "amd64", (6, 1)) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{bad", "Decoding seccomp profile failed: "),
        (
            '{"defaultAction": "X", "architectures": ["A"], "archMap": [{"architecture": "A"}]}',
            "both 'architectures' and 'archMap' are specified in the seccomp profile",
        ),
        (
            '{"defaultAction": "X", "syscalls": [{"name": "a", "names": ["b"], "action": "Y"}]}',
            "both 'name' and 'names' are specified in the seccomp profile",
        ),
        (
            '{"defaultAction": "X", "syscalls": [{"names": ["a"], '
            '"includes": {"minKernel": "4"}}]}',
            'invalid kernel version: "4", expected "<kernel>.<major>"',
        ),
        (
            '{"defaultAction": "X", "syscalls": [{"names": ["a"], '
            '"includes": {"minKernel": "0.0"}}]}',
            "version cannot be 0.0",
        ),
    ],
)
def test_profile_errors(text: str, message: str) -> None:
    with pytest.raises(SpecError) as exc:
        seccomp.setup_seccomp(seccomp.load_profile(text), [], "amd64", (6, 1))
    assert message in str(exc.value)


def test_which_profile_a_container_gets() -> None:
    default = build(HostConfig())["linux"]["seccomp"]
    assert default["defaultAction"] == "SCMP_ACT_ERRNO"
    assert "seccomp" not in build(HostConfig(security_opt=["seccomp=unconfined"]))["linux"]
    assert "seccomp" not in build(HostConfig(security_opt=["seccomp:unconfined"]))["linux"]
    assert "seccomp" not in build(HostConfig(privileged=True))["linux"]
    assert "seccomp" not in build(HostConfig(), seccomp_enabled=False)["linux"]
    assert "seccomp" not in build(HostConfig(), seccomp_profile="unconfined")["linux"]
    assert build(HostConfig(), seccomp_profile="builtin")["linux"]["seccomp"] == default
    mine = '{"defaultAction": "SCMP_ACT_LOG"}'
    assert build(HostConfig(), seccomp_profile=mine)["linux"]["seccomp"] == {
        "defaultAction": "SCMP_ACT_LOG"
    }
    opt = build(HostConfig(security_opt=[f"seccomp={mine}"]), seccomp_profile="unconfined")
    assert opt["linux"]["seccomp"] == {"defaultAction": "SCMP_ACT_LOG"}
    priv = build(HostConfig(privileged=True, security_opt=[f"seccomp={mine}"]))
    assert priv["linux"]["seccomp"] == {"defaultAction": "SCMP_ACT_LOG"}
    builtin = build(HostConfig(security_opt=["seccomp=builtin"]), seccomp_profile=mine)
    assert builtin["linux"]["seccomp"] == default
    with pytest.raises(SpecError, match=r"^seccomp is not enabled in your kernel, cannot run a"):
        build(HostConfig(security_opt=[f"seccomp={mine}"]), seccomp_enabled=False)
    # the granted capabilities decide which rules stay
    with_admin = build(HostConfig(cap_add=["SYS_ADMIN"]))["linux"]["seccomp"]
    assert "mount" in names(with_admin) and "mount" not in names(default)


def test_kernel_release_parsing() -> None:
    assert seccomp.parse_kernel_release("6.1.0-13-amd64") == (6, 1)
    assert seccomp.parse_kernel_release("3.12-1-amd64") == (3, 12)
    with pytest.raises(ValueError, match=r"failed to parse kernel version"):
        seccomp.parse_kernel_release("x")
