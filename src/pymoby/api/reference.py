"""Docker image references (`name[:tag][@digest]`), exactly as dockerd parses and prints them.

Rule: behave like github.com/distribution/reference v0.6 and github.com/opencontainers/go-digest
v1.0 as vendored by dockerd 29 (API 1.52): same grammar, same normalisation, same error texts.
Every error is a `ReferenceError` (errdefs.InvalidParameter) whose message is Go's, byte for byte;
dockerd's routes wrap these errors in InvalidParameter (400) unchanged.

Grammar (distribution/reference)::

    reference   := name [ ":" tag ] [ "@" digest ]
    name        := [domain '/'] remote-name
    domain      := host [':' port-number]           host: domain-name | IPv4 | '[' IPv6 ']'
    remote-name := path-component ['/' path-component]*     lowercase [a-z0-9] and separators
    tag         := [\\w][\\w.-]{0,127}
    digest      := algorithm ":" hex (>= 32 hex digits)

- `parse` is Go's `Parse` (no normalisation). `parse_normalized_named` is what dockerd uses for
  user input: `busybox` -> `docker.io/library/busybox`, `index.docker.io/x` -> `docker.io/x`;
  the first component is a domain only if it is `localhost`, has a `.` or `:`, or an uppercase
  letter. `parse_any_reference` first treats 64 hex digits as an image ID (`sha256:<hex>`).
- `familiar_string` / `familiar_name` print what `docker images` shows (`busybox:latest`,
  `localhost:5000/x:y`): `docker.io/` and, for one-component names, `library/` are dropped.
- Digests are checked as go-digest does: sha256, sha384 and sha512 are known (Go links all three
  into dockerd); the hex part must be lowercase and of the algorithm's exact length.
- Matching is ASCII (`\\w` is `[A-Za-z0-9_]`) and anchored with `fullmatch`, as Go's RE2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from pymoby import errdefs

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_TAG",
    "ERR_DIGEST_INVALID_FORMAT",
    "ERR_DIGEST_INVALID_LENGTH",
    "ERR_DIGEST_UNSUPPORTED",
    "ERR_NAME_CONTAINS_UPPERCASE",
    "ERR_NAME_EMPTY",
    "ERR_NAME_NOT_CANONICAL",
    "ERR_NAME_TOO_LONG",
    "ERR_REFERENCE_INVALID_FORMAT",
    "ERR_REF_DIGEST_INVALID_FORMAT",
    "ERR_TAG_INVALID_FORMAT",
    "NAME_TOTAL_LENGTH_MAX",
    "BadPattern",
    "Reference",
    "ReferenceError",
    "familiar_match",
    "familiar_name",
    "familiar_string",
    "is_identifier",
    "parse",
    "parse_any_reference",
    "parse_digest",
    "parse_docker_ref",
    "parse_named",
    "parse_normalized_named",
    "repo_tag_reference",
    "split_docker_domain",
    "tag_name_only",
    "trim_named",
    "validate_repo_name",
    "with_digest",
    "with_name",
    "with_tag",
]

NAME_TOTAL_LENGTH_MAX = 255
DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
RESERVED_NAME = "scratch"  # FROM scratch: no base image; never a repository

# distribution/reference errors
ERR_REFERENCE_INVALID_FORMAT = "invalid reference format"
ERR_TAG_INVALID_FORMAT = "invalid tag format"
ERR_REF_DIGEST_INVALID_FORMAT = "invalid digest format"
ERR_NAME_CONTAINS_UPPERCASE = "repository name must be lowercase"
ERR_NAME_EMPTY = "repository name must have at least one component"
ERR_NAME_TOO_LONG = f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
ERR_NAME_NOT_CANONICAL = "repository name must be canonical"
# go-digest errors
ERR_DIGEST_INVALID_FORMAT = "invalid checksum digest format"
ERR_DIGEST_INVALID_LENGTH = "invalid checksum digest length"
ERR_DIGEST_UNSUPPORTED = "unsupported digest algorithm"


class ReferenceError(errdefs.InvalidParameter):
    """A reference, tag or digest that does not parse; the message is Go's."""


class BadPattern(errdefs.InvalidParameter):
    """Go's path.ErrBadPattern, from `familiar_match`."""

    def __init__(self) -> None:
        super().__init__("syntax error in pattern")


# -- the grammar, composed as distribution/reference's regexp.go composes it -----------------

_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_OPTIONAL_PORT = r"(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9A-Fa-f]{32,}"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_DOMAIN_AND_PORT = rf"(?:{_DOMAIN_NAME}|{_IPV6}){_OPTIONAL_PORT}"
_PATH_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_NAME = rf"(?:{_DOMAIN_AND_PORT}/)?{_REMOTE_NAME}"

_REFERENCE_RE = re.compile(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?", re.ASCII)
_NAME_RE = re.compile(rf"(?:({_DOMAIN_AND_PORT})/)?({_REMOTE_NAME})", re.ASCII)
_TAG_RE = re.compile(_TAG, re.ASCII)
_DIGEST_RE = re.compile(_DIGEST, re.ASCII)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}", re.ASCII)
# go-digest's DigestRegexpAnchored, consulted for algorithms it does not know.
_GO_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+", re.ASCII)
_ALGORITHM_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX_RE = re.compile(r"[a-f0-9]+", re.ASCII)


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed reference. Empty strings mean "absent".

    Go has one type per combination; here the combination is the set of non-empty fields:
    named (`path`), tagged (`tag`), digested (`digest`). A digest-only reference (an image ID
    from `parse_any_reference`) has no name.
    """

    domain: str = ""
    path: str = ""
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        """`domain/path`, or `path` without a domain; "" for a digest-only reference."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def is_named(self) -> bool:
        return bool(self.path)

    @property
    def is_tagged(self) -> bool:
        return bool(self.tag)

    @property
    def is_digested(self) -> bool:
        return bool(self.digest)

    @property
    def is_canonical(self) -> bool:
        """Named and digested (Go's reference.Canonical)."""
        return self.is_named and self.is_digested

    @property
    def is_name_only(self) -> bool:
        """Go's IsNameOnly: a name without tag and digest."""
        return not self.tag and not self.digest

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += ":" + self.tag
        if self.digest:
            text = text + "@" + self.digest if text else self.digest
        return text


def _byte_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def parse_digest(text: str) -> str:
    """go-digest's `Parse`: return `text` if it is a valid digest, else raise ReferenceError."""
    colon = text.find(":")
    if colon <= 0 or colon + 1 == len(text):
        raise ReferenceError(ERR_DIGEST_INVALID_FORMAT)
    algorithm, encoded = text[:colon], text[colon + 1 :]
    length = _ALGORITHM_HEX_LENGTH.get(algorithm)
    if length is None:
        if _GO_DIGEST_RE.fullmatch(text) is None:
            raise ReferenceError(ERR_DIGEST_INVALID_FORMAT)
        raise ReferenceError(ERR_DIGEST_UNSUPPORTED)
    if _byte_len(encoded) != length:
        raise ReferenceError(ERR_DIGEST_INVALID_LENGTH)
    if _HEX_RE.fullmatch(encoded) is None:
        raise ReferenceError(ERR_DIGEST_INVALID_FORMAT)
    return text


def is_identifier(text: str) -> bool:
    """64 lowercase hex digits: an image ID without its `sha256:` prefix."""
    return _IDENTIFIER_RE.fullmatch(text) is not None


def parse(text: str) -> Reference:
    """Go's `reference.Parse`: the syntax only, no defaults added."""
    if text == "":
        raise ReferenceError(ERR_NAME_EMPTY)
    match = _REFERENCE_RE.fullmatch(text)
    if match is None:
        lowered = text.lower()
        if lowered != text and _REFERENCE_RE.fullmatch(lowered) is not None:
            raise ReferenceError(ERR_NAME_CONTAINS_UPPERCASE)
        raise ReferenceError(ERR_REFERENCE_INVALID_FORMAT)
    name, tag, digest = match.group(1), match.group(2) or "", match.group(3) or ""
    name_match = _NAME_RE.fullmatch(name)
    if name_match is not None:
        domain, path = name_match.group(1) or "", name_match.group(2)
    else:  # pragma: no cover - the reference pattern already matched a name
        domain, path = "", name
    if len(path) > NAME_TOTAL_LENGTH_MAX:
        raise ReferenceError(ERR_NAME_TOO_LONG)
    if digest:
        parse_digest(digest)
    return Reference(domain, path, tag, digest)


def split_docker_domain(name: str) -> tuple[str, str]:
    """Split a familiar name into (domain, remote name), adding `docker.io` and `library/`."""
    maybe_domain, sep, maybe_remote = name.partition("/")
    if not sep:
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + name
    if maybe_domain == "localhost":
        domain, remote = maybe_domain, maybe_remote
    elif maybe_domain == LEGACY_DEFAULT_DOMAIN:
        domain, remote = DEFAULT_DOMAIN, maybe_remote
    elif "." in maybe_domain or ":" in maybe_domain or maybe_domain.lower() != maybe_domain:
        domain, remote = maybe_domain, maybe_remote
    else:
        domain, remote = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in remote:
        remote = OFFICIAL_REPO_PREFIX + remote
    return domain, remote


def parse_normalized_named(text: str) -> Reference:
    """Go's `ParseNormalizedNamed`: a familiar name from the CLI made fully qualified."""
    if is_identifier(text):
        raise ReferenceError(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = split_docker_domain(text)
    remote = remainder.partition(":")[0]
    if remote.lower() != remote:
        raise ReferenceError(
            f"{ERR_REFERENCE_INVALID_FORMAT}: repository name ({remote}) must be lowercase"
        )
    ref = parse(domain + "/" + remainder)
    if not ref.is_named:  # pragma: no cover - a domain was prefixed, so there is a name
        raise ReferenceError(f"reference {ref} has no name")
    return ref


def parse_named(text: str) -> Reference:
    """Go's `ParseNamed`: like `parse_normalized_named`, but `text` must already be canonical."""
    ref = parse_normalized_named(text)
    if str(ref) != text:
        raise ReferenceError(ERR_NAME_NOT_CANONICAL)
    return ref


def parse_any_reference(text: str) -> Reference:
    """Go's `ParseAnyReference`: an image ID (64 hex), a digest, or a familiar name."""
    if is_identifier(text):
        return Reference(digest="sha256:" + text)
    try:
        return Reference(digest=parse_digest(text))
    except ReferenceError:
        pass
    return parse_normalized_named(text)


def parse_docker_ref(text: str) -> Reference:
    """Go's `ParseDockerRef`: normalised; of `name:tag@digest` only the digest is kept; a bare
    name gets `:latest`."""
    ref = parse_normalized_named(text)
    if ref.tag and ref.digest:
        return Reference(ref.domain, ref.path, digest=ref.digest)
    return tag_name_only(ref)


def with_name(name: str) -> Reference:
    """Go's `WithName`: a name without tag or digest."""
    match = _NAME_RE.fullmatch(name)
    if match is None:
        raise ReferenceError(ERR_REFERENCE_INVALID_FORMAT)
    if len(match.group(2)) > NAME_TOTAL_LENGTH_MAX:
        raise ReferenceError(ERR_NAME_TOO_LONG)
    return Reference(match.group(1) or "", match.group(2))


def with_tag(ref: Reference, tag: str) -> Reference:
    """Go's `WithTag`: set the tag (a digest, if any, is kept)."""
    if _TAG_RE.fullmatch(tag) is None:
        raise ReferenceError(ERR_TAG_INVALID_FORMAT)
    return Reference(ref.domain, ref.path, tag, ref.digest)


def with_digest(ref: Reference, digest: str) -> Reference:
    """Go's `WithDigest`: set the digest (a tag, if any, is kept). Only the syntax is checked."""
    if _DIGEST_RE.fullmatch(digest) is None:
        raise ReferenceError(ERR_REF_DIGEST_INVALID_FORMAT)
    return Reference(ref.domain, ref.path, ref.tag, digest)


def trim_named(ref: Reference) -> Reference:
    """Go's `TrimNamed`: the name alone."""
    return Reference(ref.domain, ref.path)


def tag_name_only(ref: Reference) -> Reference:
    """Go's `TagNameOnly`: add `:latest` to a bare name; anything else is returned as is."""
    if ref.is_named and ref.is_name_only:
        return Reference(ref.domain, ref.path, DEFAULT_TAG)
    return ref


def _familiar(ref: Reference) -> Reference:
    if not ref.is_named or ref.domain != DEFAULT_DOMAIN:
        return ref
    path = ref.path
    if path.startswith(OFFICIAL_REPO_PREFIX):
        remainder = path[len(OFFICIAL_REPO_PREFIX) :]
        if "/" not in remainder:
            path = remainder
    return Reference("", path, ref.tag, ref.digest)


def familiar_name(ref: Reference) -> str:
    """The name as `docker images` shows it: `busybox`, `me/app`, `localhost:5000/x`."""
    return _familiar(ref).name


def familiar_string(ref: Reference) -> str:
    """The whole reference as the CLI shows it: `busybox:latest`, `x@sha256:...`."""
    return str(_familiar(ref))


def repo_tag_reference(repo: str, tag: str) -> Reference | None:
    """dockerd's httputils.RepoTagReference (`repo` + `tag` query parameters of tag, import,
    commit): None for an empty repo; a digest is refused; the tag defaults to `latest`."""
    if repo == "":
        return None
    ref = parse_normalized_named(repo)
    if ref.is_digested:
        raise ReferenceError("cannot import digest reference")
    if tag != "":
        return with_tag(ref, tag)
    return tag_name_only(ref)


def validate_repo_name(ref: Reference) -> None:
    """dockerd's validateRepoName for pulls: `scratch` is reserved (errdefs.Forbidden)."""
    name = familiar_name(ref)
    if name == RESERVED_NAME:
        raise errdefs.Forbidden(f"'{name}' is a reserved name")


# -- Go's path.Match, for the `reference` filter of GET /images/json --------------------------


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    """Go's getEsc: one (possibly escaped) character of a character class."""
    if i >= len(pattern) or pattern[i] in "-]":
        raise BadPattern()
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            raise BadPattern()
    char, i = pattern[i], i + 1
    if i >= len(pattern):
        raise BadPattern()
    return char, i


@lru_cache(maxsize=256)
def _compile_pattern(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        i += 1
        if char == "*":
            parts.append("[^/]*")
        elif char == "?":
            parts.append("[^/]")
        elif char == "\\":
            if i >= len(pattern):
                raise BadPattern()
            parts.append(re.escape(pattern[i]))
            i += 1
        elif char == "[":
            negated = i < len(pattern) and pattern[i] == "^"
            i += negated
            ranges: list[str] = []
            while True:
                if i < len(pattern) and pattern[i] == "]" and ranges:
                    i += 1
                    break
                low, i = _class_char(pattern, i)
                high = low
                if pattern[i] == "-":
                    high, i = _class_char(pattern, i + 1)
                # lo > hi matches nothing in Go; a regex range would be an error.
                ranges.append(f"{re.escape(low)}-{re.escape(high)}" if low <= high else "")
            body = "".join(ranges)
            if negated:
                parts.append(f"[^{body}]" if body else "(?s:.)")
            else:
                parts.append(f"[{body}]" if body else "(?!)")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


def _path_match(pattern: str, name: str) -> bool:
    return _compile_pattern(pattern).fullmatch(name) is not None


def familiar_match(pattern: str, ref: Reference) -> bool:
    """Go's `FamiliarMatch`: `pattern` (path.Match syntax) against the familiar string, then
    against the familiar name. Raises BadPattern for a malformed pattern."""
    if _path_match(pattern, familiar_string(ref)):
        return True
    return ref.is_named and _path_match(pattern, familiar_name(ref))
