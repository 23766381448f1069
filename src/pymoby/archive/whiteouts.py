"""Whiteout names: how a layer tar says "deleted" and "opaque" (dockerd's whiteouts.go).

Rule: in a layer tar, an empty file `.wh.<name>` deletes `<name>` of the lower layers and an
empty `.wh..wh..opq` in a directory hides everything the lower layers have in it. Other names
starting with `.wh..wh.` are AUFS metadata (`.wh..wh.plnk` held hardlink targets). On an overlay
upper directory the same facts are a 0/0 character device and `trusted.overlay.opaque=y`.
"""

from __future__ import annotations

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_LINK_DIR = ".wh..wh.plnk"
WHITEOUT_OPAQUE_DIR = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
