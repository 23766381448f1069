"""API versions: parse and compare `X.Y`; the range this engine serves.

Version-dependent behaviour branches on the request's version with `ApiVersion` comparisons,
in one place per field.
"""

from __future__ import annotations

from typing import NamedTuple


class ApiVersion(NamedTuple):
    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    @classmethod
    def parse(cls, text: str) -> ApiVersion:
        """Parse `1.41`; raise ValueError for anything else."""
        major, sep, minor = text.partition(".")
        if not sep or not major.isdigit() or not minor.isdigit():
            raise ValueError(f"invalid API version {text!r}")
        return cls(int(major), int(minor))


MIN = ApiVersion(1, 24)
MAX = ApiVersion(1, 52)
DEFAULT = MAX
