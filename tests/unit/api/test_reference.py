"""Image references as distribution/reference + go-digest parse them, with dockerd's messages."""

from __future__ import annotations

import time

import pytest

from pymoby import errdefs
from pymoby.api import reference as r
from pymoby.api.reference import Reference

HEX = "f" * 64
DGST = "sha256:" + HEX
ID = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"

# input -> (domain, path, tag, digest) as reference.Parse returns them (no normalisation).
VALID = {
    "test_com": ("", "test_com", "", ""),
    "test.com:tag": ("", "test.com", "tag", ""),
    "test.com:5000": ("", "test.com", "5000", ""),
    "test.com/repo:tag": ("test.com", "repo", "tag", ""),
    "test:5000/repo": ("test:5000", "repo", "", ""),
    "test:5000/repo:tag": ("test:5000", "repo", "tag", ""),
    f"test:5000/repo@{DGST}": ("test:5000", "repo", "", DGST),
    f"test:5000/repo:tag@{DGST}": ("test:5000", "repo", "tag", DGST),
    "lowercase:Uppercase": ("", "lowercase", "Uppercase", ""),
    "a/" * 127 + "a:tag-puts-this-over-max": ("a", "a/" * 126 + "a", "tag-puts-this-over-max", ""),
    "sub-dom1.foo.com/bar/baz/quux:long-tag": ("sub-dom1.foo.com", "bar/baz/quux", "long-tag", ""),
    "b.gcr.io/test.example.com/app:t.x": ("b.gcr.io", "test.example.com/app", "t.x", ""),
    f"xn--7o8h.com/myimage:xn--7o8h.com@{DGST}": ("xn--7o8h.com", "myimage", "xn--7o8h.com", DGST),
    "foo_bar.com:8080": ("", "foo_bar.com", "8080", ""),
    "foo/foo_bar.com:8080": ("foo", "foo_bar.com", "8080", ""),
    "192.168.1.1": ("", "192.168.1.1", "", ""),
    "192.168.1.1:5000/repo:5050": ("192.168.1.1:5000", "repo", "5050", ""),
    "[2001:db8::1]/repo": ("[2001:db8::1]", "repo", "", ""),
    "[2001:db8:1:2:3:4:5:6]/repo:tag": ("[2001:db8:1:2:3:4:5:6]", "repo", "tag", ""),
    f"[2001:db8::1]:5000/repo:tag@{DGST}": ("[2001:db8::1]:5000", "repo", "tag", DGST),
    "[::1]:5000/repo": ("[::1]:5000", "repo", "", ""),
    "example.com/" + "a" * 255 + ":tag": ("example.com", "a" * 255, "tag", ""),
    "dock__er/a---b.c_d": ("", "dock__er/a---b.c_d", "", ""),  # `_` is no domain
    "localhost/x": ("localhost", "x", "", ""),
    "x:" + "t" * 128: ("", "x", "t" * 128, ""),
    "x@sha512:" + "a" * 128: ("", "x", "", "sha512:" + "a" * 128),
}  # fmt: skip

# input -> exact message of reference.Parse
INVALID = {
    "": "repository name must have at least one component",
    ":justtag": "invalid reference format",
    f"@{DGST}": "invalid reference format",
    "repo@sha256:" + "f" * 34: "invalid checksum digest length",
    f"validname@invaliddigest:{HEX}": "unsupported digest algorithm",
    f"x@sha256:{HEX.upper()}": "invalid checksum digest format",
    "Uppercase:tag": "repository name must be lowercase",
    "test:5000/Uppercase/lowercase:tag": "repository name must be lowercase",
    "domain/" + "a" * 256 + ":tag": "repository name must not be more than 255 characters",
    "aa/asdf$$^/aa": "invalid reference format",
    "[2001:db8::1]": "invalid reference format",
    "[2001:db8::1]:5000": "invalid reference format",
    "[fe80::1%eth0]:5000/repo": "invalid reference format",
    "x:" + "t" * 129: "invalid reference format",
    "x:-tag": "invalid reference format",
    "busybox\n": "invalid reference format",
    "bus\u00e9ybox": "invalid reference format",
    "x:t\u00e9": "invalid reference format",
    "dock..er/docker": "invalid reference format",
    "docker/": "invalid reference format",
    "-docker/docker": "invalid reference format",
}


@pytest.mark.parametrize("text", sorted(VALID))
def test_parse_valid(text: str) -> None:
    ref = r.parse(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == VALID[text]
    assert str(ref) == text


@pytest.mark.parametrize("text", sorted(INVALID))
def test_parse_invalid_has_gos_message(text: str) -> None:
    with pytest.raises(r.ReferenceError) as info:
        r.parse(text)
    assert str(info.value) == INVALID[text]
    assert isinstance(info.value, errdefs.InvalidParameter)


# familiar input -> (normalised, familiar string, familiar name)
NORMALISED = {
    "busybox": ("docker.io/library/busybox", "busybox", "busybox"),
    "busybox:latest": ("docker.io/library/busybox:latest", "busybox:latest", "busybox"),
    "library/busybox": ("docker.io/library/busybox", "busybox", "busybox"),
    "docker.io/busybox": ("docker.io/library/busybox", "busybox", "busybox"),
    "index.docker.io/busybox:1": ("docker.io/library/busybox:1", "busybox:1", "busybox"),
    "index.docker.io/me/app": ("docker.io/me/app", "me/app", "me/app"),
    "me/app:v1": ("docker.io/me/app:v1", "me/app:v1", "me/app"),
    "library/a/b": ("docker.io/library/a/b", "library/a/b", "library/a/b"),
    "localhost/x": ("localhost/x", "localhost/x", "localhost/x"),
    "localhost:5000/x:y": ("localhost:5000/x:y", "localhost:5000/x:y", "localhost:5000/x"),
    "example.com/a/b": ("example.com/a/b", "example.com/a/b", "example.com/a/b"),
    "LOCALDOMAIN/debian": ("LOCALDOMAIN/debian", "LOCALDOMAIN/debian", "LOCALDOMAIN/debian"),
    "[fc00::1]:50/docker": ("[fc00::1]:50/docker", "[fc00::1]:50/docker", "[fc00::1]:50/docker"),
    f"busybox@{DGST}": (f"docker.io/library/busybox@{DGST}", f"busybox@{DGST}", "busybox"),
    f"busybox:1@{DGST}": (f"docker.io/library/busybox:1@{DGST}", f"busybox:1@{DGST}", "busybox"),
    f"docker.io/{ID}": (f"docker.io/library/{ID}", ID, ID),
    "sha256:abc": ("docker.io/library/sha256:abc", "sha256:abc", "sha256"),
}  # fmt: skip


@pytest.mark.parametrize("text", sorted(NORMALISED))
def test_parse_normalized_named(text: str) -> None:
    ref = r.parse_normalized_named(text)
    full, familiar, name = NORMALISED[text]
    assert str(ref) == full
    assert r.familiar_string(ref) == familiar
    assert r.familiar_name(ref) == name
    if not r.is_identifier(familiar):  # a 64-hex familiar name no longer parses as a name
        assert r.parse_normalized_named(familiar) == ref


NORMALISED_INVALID = {
    "Busybox": "invalid reference format: repository name (library/Busybox) must be lowercase",
    "docker/Docker": "invalid reference format: repository name (docker/Docker) must be lowercase",
    "docker.io/docker/Docker:v1": (
        "invalid reference format: repository name (docker/Docker) must be lowercase"
    ),
    f"Foo@{DGST}": (
        "invalid reference format: repository name (library/Foo@sha256) must be lowercase"
    ),
    ID: f"invalid repository name ({ID}), cannot specify 64-byte hexadecimal strings",
    "https://github.com/docker/docker": "invalid reference format",
    "": "invalid reference format",
    "docker///docker": "invalid reference format",
    "[fc00::1]:5000": "invalid reference format",
    "fc00::1:5000/debian": "invalid reference format",
    "[2001:db8:3:4::192.0.2.33]:5000/debian": "invalid reference format",
    "busybox:latest/foo": "invalid reference format",
    "x" * 250 + "/yyyyyy": "repository name must not be more than 255 characters",
    "a" * 250: "repository name must not be more than 255 characters",
    f"busybox@sha256:{'f' * 63}": "invalid checksum digest length",
}  # fmt: skip


@pytest.mark.parametrize("text", sorted(NORMALISED_INVALID))
def test_parse_normalized_named_errors(text: str) -> None:
    with pytest.raises(r.ReferenceError) as info:
        r.parse_normalized_named(text)
    assert str(info.value) == NORMALISED_INVALID[text]


def test_parse_named_requires_the_canonical_form() -> None:
    ref = r.parse_named("docker.io/library/busybox:1")
    assert (ref.domain, ref.path, ref.tag) == ("docker.io", "library/busybox", "1")
    for text in ("busybox", "docker.io/busybox", "library/busybox:1"):
        with pytest.raises(r.ReferenceError, match=r"^repository name must be canonical$"):
            r.parse_named(text)


def test_parse_any_reference_prefers_ids_and_digests() -> None:
    assert r.parse_any_reference(ID) == Reference(digest="sha256:" + ID)
    assert r.parse_any_reference("sha256:" + ID) == Reference(digest="sha256:" + ID)
    assert r.parse_any_reference("sha512:" + "0" * 128).digest == "sha512:" + "0" * 128
    assert str(r.parse_any_reference("1a3f5e")) == "docker.io/library/1a3f5e"
    assert str(r.parse_any_reference("sha256:1a3f")) == "docker.io/library/sha256:1a3f"
    digest_only = r.parse_any_reference(ID)
    assert not digest_only.is_named
    assert str(digest_only) == r.familiar_string(digest_only) == "sha256:" + ID
    with pytest.raises(r.ReferenceError, match=r"\(library/ABC\) must be lowercase"):
        r.parse_any_reference("ABC")


def test_parse_docker_ref() -> None:
    assert str(r.parse_docker_ref("busybox")) == "docker.io/library/busybox:latest"
    assert str(r.parse_docker_ref("busybox:1")) == "docker.io/library/busybox:1"
    assert str(r.parse_docker_ref(f"busybox:1@{DGST}")) == f"docker.io/library/busybox@{DGST}"


def test_tag_and_digest_helpers() -> None:
    name = r.parse_normalized_named("busybox")
    assert name.is_named and name.is_name_only and not name.is_canonical
    latest = r.tag_name_only(name)
    assert latest.tag == "latest" and r.tag_name_only(latest) is latest
    digested = r.with_digest(name, DGST)
    assert digested.is_canonical and r.tag_name_only(digested) == digested
    both = r.with_tag(digested, "v1")
    assert str(both) == f"docker.io/library/busybox:v1@{DGST}"
    assert r.trim_named(both) == name
    assert str(r.with_name("localhost:5000/a/b")) == "localhost:5000/a/b"
    with pytest.raises(r.ReferenceError, match=r"^invalid tag format$"):
        r.with_tag(name, "-x")
    with pytest.raises(r.ReferenceError, match=r"^invalid digest format$"):
        r.with_digest(name, "sha256:xyz")
    with pytest.raises(r.ReferenceError, match=r"^invalid reference format$"):
        r.with_name("Busy/Box")
    with pytest.raises(r.ReferenceError, match=r"^repository name must not be more than 255"):
        r.with_name("x/" + "a" * 256)


DIGESTS = {
    DGST: None,
    "sha384:" + "a" * 96: None,
    "sha512:" + "a" * 128: None,
    "sha256:" + "a" * 63: "invalid checksum digest length",
    "sha256:" + "A" * 64: "invalid checksum digest format",
    "sha256:" + "g" * 64: "invalid checksum digest format",
    "sha256:": "invalid checksum digest format",
    ":" + HEX: "invalid checksum digest format",
    HEX: "invalid checksum digest format",
    "md5:" + "a" * 32: "unsupported digest algorithm",
    "Sha256:" + HEX: "invalid checksum digest format",
    "sha256:\u00e9" + "a" * 62: "invalid checksum digest format",  # 64 bytes, not hex
    "sha256:\u00e9" + "a" * 63: "invalid checksum digest length",  # 65 bytes
}


@pytest.mark.parametrize("text", sorted(DIGESTS))
def test_parse_digest(text: str) -> None:
    expected = DIGESTS[text]
    if expected is None:
        assert r.parse_digest(text) == text
    else:
        with pytest.raises(r.ReferenceError) as info:
            r.parse_digest(text)
        assert str(info.value) == expected


def test_repo_tag_reference() -> None:
    assert r.repo_tag_reference("", "x") is None
    assert str(r.repo_tag_reference("me/app", "")) == "docker.io/me/app:latest"
    assert str(r.repo_tag_reference("me/app", "v2")) == "docker.io/me/app:v2"
    with pytest.raises(r.ReferenceError, match=r"^cannot import digest reference$"):
        r.repo_tag_reference(f"me/app@{DGST}", "")
    with pytest.raises(r.ReferenceError, match=r"^invalid tag format$"):
        r.repo_tag_reference("me/app", "a:b")


def test_scratch_is_reserved() -> None:
    r.validate_repo_name(r.parse_normalized_named("scratchy"))
    with pytest.raises(errdefs.Forbidden, match=r"^'scratch' is a reserved name$"):
        r.validate_repo_name(r.parse_normalized_named("scratch:latest"))


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("busybox", "busybox:latest", True),  # the familiar name matches too
        ("busybox:*", "busybox:latest", True),
        ("busy*", "busybox:1", True),
        ("*", "me/app:1", False),  # '*' does not cross '/'
        ("*/*", "me/app:1", True),
        ("me/app:?", "me/app:1", True),
        ("me/app:[0-9]", "me/app:1", True),
        ("me/app:[^0-9]", "me/app:1", False),
        ("me/app:[!a]", "me/app:a", True),  # '!' is a literal in Go's classes
        ("me[/]app", "me/app:1", True),  # classes may match '/'
        ("me/app:\\1", "me/app:1", True),
        ("localhost:5000/*", "localhost:5000/x:y", True),
        ("library/busybox", "busybox:latest", False),  # matched against the familiar form
    ],
)
def test_familiar_match(pattern: str, text: str, expected: bool) -> None:
    assert r.familiar_match(pattern, r.parse_normalized_named(text)) is expected


@pytest.mark.parametrize("pattern", ["[", "[]a]", "[a-]", "a\\", "[^", "[a", "[\\"])
def test_familiar_match_bad_pattern(pattern: str) -> None:
    with pytest.raises(r.BadPattern, match=r"^syntax error in pattern$"):
        r.familiar_match(pattern, r.parse_normalized_named("busybox"))


def test_pathological_inputs_parse_in_linear_time() -> None:
    start = time.monotonic()
    for text in (
        "a" * 100_000 + "!",
        "a-" * 50_000 + "!",
        "a." * 50_000 + "/",
        "a/" * 50_000 + "A",
        "a" * 50_000 + ":" + "b" * 50_000,
        "[" + "a:" * 50_000 + "]/x!",
    ):
        with pytest.raises(r.ReferenceError):
            r.parse(text)
    assert time.monotonic() - start < 2.0
