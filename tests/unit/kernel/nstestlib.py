"""Namespace files of kernel tests: what is mounted in a directory, and clearing it."""

from __future__ import annotations

import os
from pathlib import Path

from pymoby.kernel import mount as kmount


def nsfs_mounts_under(path: Path) -> list[str]:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        rows = [line.split() for line in f]
    return [r[4] for r in rows if "nsfs" in r and (r[4] == real or r[4].startswith(real + "/"))]


def clear_namespaces(d: Path) -> list[str]:
    """Unmount and remove every namespace file in `d`; returns what was still mounted."""
    left = nsfs_mounts_under(d)
    for point in left:
        kmount.unmount(point, lazy=True, missing_ok=True)
    for p in d.iterdir():
        p.unlink()
    return left
