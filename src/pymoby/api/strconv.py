"""Go's strconv.ParseBool: the spellings dockerd accepts wherever it parses a boolean with it.

Rule: every boolean dockerd reads with ParseBool (query parameters, driver options, flags,
sysctl-like option values) is parsed here, so the accepted spellings are the same everywhere;
callers word the error, which differs per place in dockerd.
"""

from __future__ import annotations

TRUE = frozenset(("1", "t", "T", "TRUE", "true", "True"))
FALSE = frozenset(("0", "f", "F", "FALSE", "false", "False"))


def parse_bool(text: str) -> bool | None:
    """True or False for Go's spellings, None for anything else."""
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    return None
