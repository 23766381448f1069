"""Turn a Docker seccomp profile into the OCI `linux.seccomp` of one container.

Rule: do what moby/profiles/seccomp setupSeccomp does, nothing more: keep the architectures of
the host's entry in `archMap`, and keep each syscall rule only when its `includes` hold and its
`excludes` do not (architecture, capabilities in the bounding set, minimum kernel). Host facts
(GOARCH, kernel version) are arguments. Errors carry moby's texts and are SpecErrors, because
dockerd fails the container start with them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from pymoby.runtime.defaults import SpecError
from pymoby.runtime.seccomp_default import default_profile

# GOARCH -> libseccomp's native name, and native name -> OCI arch (moby's two tables, kept
# as they are: "loong64" is reached by neither, as upstream).
GO_TO_NATIVE = {
    "386": "x86",
    "amd64": "amd64",
    "arm": "arm",
    "arm64": "arm64",
    "loong64": "loongarch64",
    "mips64": "mips64",
    "mips64p32": "mips64n32",
    "mips64le": "mipsel64",
    "mips64p32le": "mips3l64n32",
    "mipsle": "mipsel",
    "ppc": "ppc",
    "ppc64": "ppc64",
    "ppc64le": "ppc64le",
    "riscv64": "riscv64",
    "s390": "s390",
    "s390x": "s390x",
}
NATIVE_TO_SECCOMP = {
    "x86": "SCMP_ARCH_X86",
    "amd64": "SCMP_ARCH_X86_64",
    "arm": "SCMP_ARCH_ARM",
    "arm64": "SCMP_ARCH_AARCH64",
    "loong64": "SCMP_ARCH_LOONGARCH64",
    "mips64": "SCMP_ARCH_MIPS64",
    "mips64n32": "SCMP_ARCH_MIPS64N32",
    "mipsel64": "SCMP_ARCH_MIPSEL64",
    "mips3l64n32": "SCMP_ARCH_MIPSEL64N32",
    "mipsle": "SCMP_ARCH_MIPSEL",
    "ppc": "SCMP_ARCH_PPC",
    "ppc64": "SCMP_ARCH_PPC64",
    "ppc64le": "SCMP_ARCH_PPC64LE",
    "riscv64": "SCMP_ARCH_RISCV64",
    "s390": "SCMP_ARCH_S390",
    "s390x": "SCMP_ARCH_S390X",
}

_KERNEL = re.compile(r"([0-9]+)\.([0-9]+)")


def parse_kernel_release(release: str) -> tuple[int, int]:
    """`fmt.Sscanf(release, "%d.%d")`: "6.1.0-13-amd64" -> (6, 1); ValueError otherwise."""
    m = _KERNEL.match(release)
    if not m:
        raise ValueError(f"failed to parse kernel version {release!r}")
    return int(m.group(1)), int(m.group(2))


def _min_kernel(value: Any) -> tuple[int, int] | None:
    """KernelVersion.UnmarshalJSON: "" is unset, "<kernel>.<major>" (each 0..255, not 0.0)."""
    if value is None or value == "":
        return None
    raw = json.dumps(value)
    bad = f"Decoding seccomp profile failed: invalid kernel version: {raw}, "
    m = _KERNEL.fullmatch(value) if isinstance(value, str) else None
    if not m or int(m.group(1)) > 255 or int(m.group(2)) > 255:
        raise SpecError(bad + 'expected "<kernel>.<major>"')
    version = int(m.group(1)), int(m.group(2))
    if version == (0, 0):
        raise SpecError(bad + 'expected "<kernel>.<major>": version cannot be 0.0')
    return version


def load_profile(text: str) -> dict[str, Any]:
    """Decode a profile as given with `--security-opt seccomp=<json>` or the daemon's
    `seccomp-profile`."""
    try:
        profile = json.loads(text)
    except ValueError as exc:
        raise SpecError(f"Decoding seccomp profile failed: {exc}") from None
    if profile is None:
        return {}
    if not isinstance(profile, dict):
        raise SpecError(
            "Decoding seccomp profile failed: json: cannot unmarshal "
            f"{type(profile).__name__} into Go value of type seccomp.Seccomp"
        )
    return profile


def setup_seccomp(
    profile: dict[str, Any],
    bounding_caps: Sequence[str],
    goarch: str,
    kernel: tuple[int, int],
) -> dict[str, Any] | None:
    """The OCI LinuxSeccomp for a container, or None when the profile disables seccomp
    (no default action and no syscalls)."""
    syscalls = profile.get("syscalls") or []
    if not profile.get("defaultAction") and not syscalls:
        return None
    arch_map = profile.get("archMap") or []
    if profile.get("architectures") and arch_map:
        raise SpecError(
            "both 'architectures' and 'archMap' are specified in the seccomp profile, "
            "use either 'architectures' or 'archMap'"
        )
    out: dict[str, Any] = {"defaultAction": profile.get("defaultAction", "")}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    arches = list(profile.get("architectures") or [])
    native = GO_TO_NATIVE.get(goarch, "")
    seccomp_arch = NATIVE_TO_SECCOMP.get(native)
    if seccomp_arch is not None:
        for entry in arch_map:
            if entry.get("architecture") == seccomp_arch:
                arches.append(entry["architecture"])
                arches.extend(entry.get("subArchitectures") or [])
                break
    if arches:
        out["architectures"] = arches
    for key in ("flags", "listenerPath", "listenerMetadata"):
        if profile.get(key):
            out[key] = profile[key]

    kept: list[dict[str, Any]] = []
    for call in syscalls:
        names = list(call.get("names") or [])
        if call.get("name"):
            if names:
                raise SpecError(
                    "both 'name' and 'names' are specified in the seccomp profile, "
                    "use either 'name' or 'names'"
                )
            names = [call["name"]]
        if _excluded(call.get("excludes"), bounding_caps, native, kernel):
            continue
        if not _included(call.get("includes"), bounding_caps, native, kernel):
            continue
        rule: dict[str, Any] = {"names": names, "action": call.get("action", "")}
        if call.get("errnoRet") is not None:
            rule["errnoRet"] = call["errnoRet"]
        if call.get("args"):
            rule["args"] = [_arg(a) for a in call["args"]]
        kept.append(rule)
    if kept:
        out["syscalls"] = kept
    return out


def default_seccomp(
    bounding_caps: Sequence[str], goarch: str, kernel: tuple[int, int]
) -> dict[str, Any] | None:
    """seccomp.GetDefaultProfile: moby's default profile for these capabilities and host."""
    return setup_seccomp(default_profile(), bounding_caps, goarch, kernel)


def _arg(arg: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"index": arg.get("index", 0), "value": arg.get("value", 0)}
    if arg.get("valueTwo"):
        out["valueTwo"] = arg["valueTwo"]
    out["op"] = arg.get("op", "")
    return out


def _excluded(
    flt: dict[str, Any] | None, caps: Sequence[str], arch: str, kernel: tuple[int, int]
) -> bool:
    if not flt:
        return False
    if arch in (flt.get("arches") or []):
        return True
    if any(c in caps for c in flt.get("caps") or []):
        return True
    minimum = _min_kernel(flt.get("minKernel"))
    return minimum is not None and kernel >= minimum


def _included(
    flt: dict[str, Any] | None, caps: Sequence[str], arch: str, kernel: tuple[int, int]
) -> bool:
    if not flt:
        return True
    arches = flt.get("arches") or []
    if arches and arch not in arches:
        return False
    if any(c not in caps for c in flt.get("caps") or []):
        return False
    minimum = _min_kernel(flt.get("minKernel"))
    return minimum is None or kernel >= minimum
