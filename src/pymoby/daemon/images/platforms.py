"""The host platform and dockerd's platform matching for the graph-driver image store.

Rule: an image is for the host when its OS is Linux (or empty) -- dockerd's image.CheckOS --
and a requested platform matches an image strictly (containerd's OnlyStrict): same OS, same
architecture, same variant after normalisation (`amd64/v1` = `amd64`, `arm64/v8` = `arm64`).
"""

from __future__ import annotations

import platform as _platform

from pymoby.api.types.images import Platform

_MACHINE_TO_GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i386": "386",
    "i686": "386",
    "armv7l": "arm",
    "armv6l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def host_architecture() -> str:
    """Go's runtime.GOARCH for this machine."""
    machine = _platform.machine().lower()
    return _MACHINE_TO_GOARCH.get(machine, machine)


def host_platform() -> Platform:
    arch = host_architecture()
    variant = "v7" if _platform.machine().lower() == "armv7l" else ""
    return Platform(os="linux", architecture=arch, variant=variant)


def os_supported(os_name: str) -> bool:
    """dockerd's image.IsOSSupported on Linux (an empty OS means the host's)."""
    return os_name.lower() in ("", "linux")


def _normal(p: Platform) -> tuple[str, str, str]:
    os_name, arch, variant = p.os.lower(), p.architecture.lower(), p.variant.lower()
    if arch == "amd64" and variant == "v1":
        variant = ""
    if arch == "arm64" and variant in ("v8", "8"):
        variant = ""
    return os_name or "linux", arch or host_architecture(), variant


def matches(wanted: Platform, image: Platform) -> bool:
    """containerd's OnlyStrict(wanted).Match(image)."""
    return _normal(wanted) == _normal(image)


def format_platform(p: Platform) -> str:
    """containerd's platforms.FormatAll: `os/arch[/variant]`."""
    text = f"{p.os or 'unknown'}/{p.architecture or 'unknown'}"
    return f"{text}/{p.variant}" if p.variant else text
