"""Signal names and numbers as docker kill/stop take them (moby/sys/signal on Linux).

Rule: `parse_signal` is ParseSignal: a decimal number (not 0), or a name with or without the
SIG prefix, case-insensitive; anything else is `Invalid signal: x`. `valid_for_platform` is
ValidSignalForPlatform: the number must be one of the named Linux signals (1-31, 34-64).
"""

from __future__ import annotations

import signal

from pymoby import errdefs

SIGNALS: dict[str, int] = {
    "ABRT": 6, "ALRM": 14, "BUS": 7, "CHLD": 17, "CLD": 17, "CONT": 18, "FPE": 8, "HUP": 1,
    "ILL": 4, "INT": 2, "IO": 29, "IOT": 6, "KILL": 9, "PIPE": 13, "POLL": 29, "PROF": 27,
    "PWR": 30, "QUIT": 3, "SEGV": 11, "STKFLT": 16, "STOP": 19, "SYS": 31, "TERM": 15,
    "TRAP": 5, "TSTP": 20, "TTIN": 21, "TTOU": 22, "URG": 23, "USR1": 10, "USR2": 12,
    "VTALRM": 26, "WINCH": 28, "XCPU": 24, "XFSZ": 25, "RTMIN": 34, "RTMAX": 64,
    **{f"RTMIN+{i}": 34 + i for i in range(1, 16)},
    **{f"RTMAX-{i}": 64 - i for i in range(1, 15)},
}  # fmt: skip
_NUMBERS = frozenset(SIGNALS.values())

DEFAULT_STOP_SIGNAL = int(signal.SIGTERM)


class InvalidSignal(errdefs.InvalidParameter):
    def __init__(self, raw: str) -> None:
        super().__init__(f"Invalid signal: {raw}")


def parse_signal(raw: str) -> int:
    text = raw.strip()
    if text.lstrip("+-").isdigit():
        number = int(text)
        if number == 0:
            raise InvalidSignal(raw)
        return number
    name = raw.upper()
    name = name[3:] if name.startswith("SIG") else name
    if name not in SIGNALS:
        raise InvalidSignal(raw)
    return SIGNALS[name]


def valid_for_platform(number: int) -> bool:
    return number in _NUMBERS


def stop_signal(configured: str) -> int:
    """The container's StopSignal, SIGTERM when unset or unparsable (dockerd's StopSignal)."""
    if configured:
        try:
            number = parse_signal(configured)
        except errdefs.InvalidParameter:
            return DEFAULT_STOP_SIGNAL
        if number > 0:
            return number
    return DEFAULT_STOP_SIGNAL
