"""Container names and IDs: validation, generated names, dockerd's error messages.

Rule: a name is `[a-zA-Z0-9][a-zA-Z0-9_.-]+` after an optional leading slash (so at least two
characters) and is stored with the slash. A generated name is `adjective_surname` (dockerd's
format; our own word lists), with a random digit appended from the second try on; after six
taken names the short ID is used. IDs are 64 lowercase hex characters whose first 12 are not
all digits (so a short ID never reads as a number).
"""

from __future__ import annotations

import re
import secrets

from pymoby import errdefs

NAME_CHARS = "[a-zA-Z0-9][a-zA-Z0-9_.-]"
_NAME = re.compile(f"^{NAME_CHARS}+$")
SHORT_LEN = 12


class InvalidName(errdefs.InvalidParameter):
    def __init__(self, name: str) -> None:
        super().__init__(f"Invalid container name ({name}), only {NAME_CHARS} are allowed")


class NameConflict(errdefs.Conflict):
    """dockerd's nameConflictError."""

    def __init__(self, name: str, owner: str) -> None:
        super().__init__(
            f'Conflict. The container name "{name}" is already in use by container "{owner}". '
            "You have to remove (or rename) that container to be able to reuse that name."
        )
        self.name = name
        self.owner = owner


class ContainerNotFound(errdefs.NotFound):
    """`No such container: x`."""

    def __init__(self, what: str) -> None:
        super().__init__(f"No such container: {what}")


class InvalidIdentifier(errdefs.InvalidParameter):
    def __init__(self, what: str) -> None:
        super().__init__(f'invalid name or ID supplied: "{what}"')


class AmbiguousPrefix(errdefs.InvalidParameter):
    def __init__(self, prefix: str) -> None:
        super().__init__(f"multiple IDs found with provided prefix: {prefix}")


def normalize(name: str) -> str:
    """Validate a user-given name and return it with its leading slash."""
    if not _NAME.match(name.removeprefix("/")):
        raise InvalidName(name)
    return name if name.startswith("/") else "/" + name


def new_id() -> str:
    """A random 64-hex container ID (never all digits in its short form)."""
    while True:
        cid = secrets.token_hex(32)
        if not cid[:SHORT_LEN].isdigit():
            return cid


def generate_name(retry: int) -> str:
    """`adjective_surname` (a digit appended when retry > 0), with the leading slash."""
    while True:
        name = f"{secrets.choice(ADJECTIVES)}_{secrets.choice(SURNAMES)}"
        if name != "boring_wozniak":  # dockerd's one exception, kept for the joke
            break
    if retry > 0:
        name += str(secrets.randbelow(10))
    return "/" + name


# Our own lists: plain English adjectives, and surnames of scientists and engineers.
ADJECTIVES: tuple[str, ...] = (
    "able", "adoring", "agile", "amazing", "amused", "ardent", "awesome", "blissful", "bold",
    "brave", "bright", "brisk", "busy", "calm", "candid", "careful", "charming", "cheerful",
    "clever", "cool", "cosmic", "crafty", "curious", "daring", "dazzling", "decisive", "deft",
    "determined", "diligent", "dreamy", "eager", "earnest", "elastic", "elegant", "eloquent",
    "epic", "exciting", "fearless", "festive", "fluffy", "focused", "fond", "frosty", "funny",
    "gallant", "gentle", "gifted", "gleeful", "glowing", "goofy", "gracious", "great", "happy",
    "hardy", "hearty", "helpful", "heuristic", "honest", "hopeful", "humble", "hungry", "jolly",
    "jovial", "keen", "kind", "laughing", "lively", "loving", "lucid", "lucky", "magical",
    "merry", "mighty", "modest", "musing", "mystic", "nervous", "nifty", "nimble", "noble",
    "optimistic", "patient", "peaceful", "pensive", "placid", "playful", "plucky", "polite",
    "practical", "proud", "quick", "quiet", "quirky", "radiant", "rapid", "relaxed", "reverent",
    "romantic", "rustic", "serene", "sharp", "shiny", "silly", "sleepy", "smart", "snappy",
    "sober", "solemn", "spirited", "stoic", "sturdy", "sunny", "swift", "tender", "thirsty",
    "thoughtful", "tidy", "trusting", "upbeat", "valiant", "vibrant", "vigilant", "vivid",
    "warm", "wise", "witty", "wonderful", "youthful", "zealous", "zen",
)  # fmt: skip

SURNAMES: tuple[str, ...] = (
    "agnesi", "alhazen", "archimedes", "babbage", "banach", "bardeen", "bartik", "bell",
    "bernoulli", "bohr", "boole", "born", "bose", "brahe", "cantor", "carson", "cauchy",
    "cerf", "chandrasekhar", "clarke", "curie", "darwin", "descartes", "dijkstra", "dirac",
    "edison", "einstein", "euclid", "euler", "faraday", "fermat", "fermi", "feynman", "fourier",
    "franklin", "galileo", "galois", "gauss", "germain", "gibbs", "goldberg", "hamilton",
    "hawking", "heisenberg", "hertz", "hilbert", "hodgkin", "hopper", "hubble", "huygens",
    "jacobi", "johnson", "joule", "kelvin", "kepler", "knuth", "kovalevskaya", "lagrange",
    "lamarr", "laplace", "leavitt", "leibniz", "liskov", "lovelace", "maxwell", "mayer",
    "mccarthy", "meitner", "mendel", "minsky", "morse", "napier", "newton", "nobel", "noether",
    "noyce", "ohm", "pascal", "pasteur", "pauli", "planck", "poincare", "ramanujan", "riemann",
    "ritchie", "rutherford", "sagan", "shannon", "somerville", "tesla", "thompson", "torvalds",
    "turing", "volta", "watt", "wiles", "wozniak", "wright", "yalow", "yonath", "zuse",
)  # fmt: skip
