"""Image routes over an in-memory backend: query parsing per version, stream error rules."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from pymoby import errdefs
from pymoby.api.filters import Filters
from pymoby.api.reference import Reference
from pymoby.api.types import progress
from pymoby.api.types.images import (
    DeleteResponse,
    HistoryResponseItem,
    ImageInspect,
    ImagesPruneReport,
    ImageSummary,
    Platform,
)
from pymoby.api.versions import MAX, MIN
from pymoby.server.body import ByteStream
from pymoby.server.middleware import ServerInfo, build_app
from pymoby.server.request import Request
from pymoby.server.response import Response
from pymoby.server.router import Router
from pymoby.server.routes import images
from pymoby.server.routes.images import decode_platform, parse_platform_specifier


class FakeImages:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail_after_first = False
        self.fail_before_first: errdefs.PymobyError | None = None

    async def images(self, filters: Filters, *, all: bool, shared_size: bool) -> list[ImageSummary]:
        self.calls.append(("images", (filters, all, shared_size)))
        return [ImageSummary(created=1, id="sha256:" + "a" * 64, size=5)]

    async def inspect(self, name: str, platform: Platform | None) -> ImageInspect:
        self.calls.append(("inspect", (name, platform)))
        if name == "missing":
            raise errdefs.NotFound("No such image: missing:latest")
        return ImageInspect(id="sha256:" + "b" * 64, size=3)

    async def history(self, name: str, platform: Platform | None) -> list[HistoryResponseItem]:
        self.calls.append(("history", (name, platform)))
        return [HistoryResponseItem(id="sha256:" + "c" * 64, comment="x")]

    async def tag(self, name: str, ref: Reference) -> None:
        self.calls.append(("tag", (name, str(ref))))

    async def delete(self, name: str, *, force: bool, prune: bool) -> list[DeleteResponse]:
        self.calls.append(("delete", (name, force, prune)))
        return [DeleteResponse(untagged="x:latest"), DeleteResponse(deleted="sha256:1")]

    async def prune(self, filters: Filters) -> ImagesPruneReport:
        self.calls.append(("prune", filters))
        return ImagesPruneReport()

    def import_image(
        self,
        source: AsyncIterator[bytes] | str,
        ref: Reference | None,
        message: str,
        changes: Sequence[str],
        platform: Platform | None,
    ) -> AsyncIterator[bytes]:
        self.calls.append(("import", (source, str(ref) if ref else None, message, list(changes))))
        return self._lines([progress.status("sha256:" + "d" * 64)])

    def load(
        self, body: AsyncIterator[bytes], *, quiet: bool, platforms: Sequence[Platform]
    ) -> AsyncIterator[bytes]:
        self.calls.append(("load", (quiet, list(platforms))))
        return self._lines([progress.stream("Loaded image: x:1\n")])

    def save(self, names: Sequence[str], platforms: Sequence[Platform]) -> AsyncIterator[bytes]:
        self.calls.append(("save", (list(names), list(platforms))))
        return self._lines([b"tarbytes"])

    async def _lines(self, lines: list[bytes]) -> AsyncIterator[bytes]:
        if self.fail_before_first is not None:
            raise self.fail_before_first
        for line in lines:
            yield line
            if self.fail_after_first:
                raise errdefs.InvalidParameter("broken after the start")


def _app(fake: FakeImages):  # type: ignore[no-untyped-def]
    info = ServerInfo("0.1.0", MIN, MAX, experimental=lambda: False, debug=lambda: False)
    return build_app(Router(images.routes(fake)), info)


def _req(method: str, target: str, body: bytes = b"") -> Request:
    path, _, query = target.partition("?")
    stream = ByteStream(lambda: None, lambda: None)
    if body:
        stream.feed(body)
    stream.feed_eof()
    return Request(method, path, query, {}, stream)


async def _collect(resp: Response) -> bytes:
    assert resp.stream is not None, resp
    return b"".join([chunk async for chunk in resp.stream])


async def test_list_per_version_and_options() -> None:
    fake = FakeImages()
    app = _app(fake)
    resp = await app(_req("GET", "/v1.41/images/json?all=1&shared-size=1"))
    assert resp.status == 200
    (item,) = json.loads(resp.body)
    assert item["RepoTags"] == ["<none>:<none>"] and item["VirtualSize"] == 5
    assert fake.calls[-1][1][1:] == (True, False)  # shared-size needs 1.42
    resp = await app(_req("GET", "/v1.44/images/json?shared-size=1"))
    (item,) = json.loads(resp.body)
    assert item["RepoTags"] == [] and "VirtualSize" not in item
    assert fake.calls[-1][1][1:] == (False, True)


async def test_list_legacy_filter_parameter_below_1_25() -> None:
    fake = FakeImages()
    app = _app(fake)
    await app(_req("GET", "/v1.24/images/json?filter=busy*"))
    assert fake.calls[-1][1][0].get("reference") == ["busy*"]
    await app(_req("GET", "/v1.25/images/json?filter=busy*"))
    assert fake.calls[-1][1][0].get("reference") == []
    resp = await app(_req("GET", "/images/json?filters=%7Bbad"))
    assert resp.status == 400


async def test_inspect_and_history() -> None:
    fake = FakeImages()
    app = _app(fake)
    resp = await app(_req("GET", "/v1.41/images/docker.io/library/busybox:1/json"))
    assert resp.status == 200
    assert fake.calls[-1] == ("inspect", ("docker.io/library/busybox:1", None))
    assert json.loads(resp.body)["VirtualSize"] == 3
    resp = await app(_req("GET", "/images/missing/json"))
    assert resp.status == 404
    plat = "%7B%22os%22%3A%22linux%22%2C%22architecture%22%3A%22amd64%22%7D"
    resp = await app(_req("GET", f"/v1.49/images/x/json?platform={plat}&manifests=1"))
    assert resp.status == 400
    assert "conflicting options" in json.loads(resp.body)["message"]
    resp = await app(_req("GET", f"/v1.48/images/x/json?platform={plat}&manifests=1"))
    assert resp.status == 200  # platform is ignored below 1.49
    resp = await app(_req("GET", f"/v1.48/images/x/history?platform={plat}"))
    assert json.loads(resp.body)[0]["Comment"] == "x"
    assert fake.calls[-1] == ("history", ("x", Platform(os="linux", architecture="amd64")))


async def test_tag() -> None:
    fake = FakeImages()
    app = _app(fake)
    resp = await app(_req("POST", "/images/abc/tag?repo=me/app&tag=v1"))
    assert resp.status == 201
    assert fake.calls[-1] == ("tag", ("abc", "docker.io/me/app:v1"))
    resp = await app(_req("POST", "/images/abc/tag?repo=me/app"))
    assert fake.calls[-1] == ("tag", ("abc", "docker.io/me/app:latest"))
    resp = await app(_req("POST", "/images/abc/tag"))
    assert resp.status == 200 and fake.calls[-1][1][1] == "docker.io/me/app:latest"
    resp = await app(_req("POST", "/images/abc/tag?repo=sha256&tag=x"))
    assert resp.status == 400
    assert json.loads(resp.body)["message"] == (
        "refusing to create an ambiguous tag using digest algorithm as name"
    )
    resp = await app(_req("POST", "/images/abc/tag?repo=Bad"))
    assert resp.status == 400


async def test_delete_and_prune() -> None:
    fake = FakeImages()
    app = _app(fake)
    resp = await app(_req("DELETE", "/images/x:1?force=1&noprune=1"))
    assert json.loads(resp.body) == [{"Untagged": "x:latest"}, {"Deleted": "sha256:1"}]
    assert fake.calls[-1] == ("delete", ("x:1", True, False))
    resp = await app(_req("DELETE", "/images/ "))
    assert resp.status == 400
    assert json.loads(resp.body)["message"] == "image name cannot be blank"
    resp = await app(_req("POST", "/v1.24/images/prune"))
    assert resp.status == 400  # introduced in 1.25
    resp = await app(_req("POST", "/images/prune?filters=%7B%22dangling%22%3A%5B%22false%22%5D%7D"))
    assert json.loads(resp.body) == {"ImagesDeleted": None, "SpaceReclaimed": 0}
    assert fake.calls[-1][1].get("dangling") == ["false"]


async def test_create_pull_is_501_and_import_streams() -> None:
    fake = FakeImages()
    app = _app(fake)
    resp = await app(_req("POST", "/images/create?fromImage=busybox&tag=latest"))
    assert resp.status == 501
    resp = await app(
        _req("POST", "/images/create?fromSrc=-&repo=me/x&tag=1&changes=CMD%20x&changes=USER%20a")
    )
    assert resp.status == 200
    assert json.loads(await _collect(resp)) == {"status": "sha256:" + "d" * 64}
    _name, (source, ref, message, changes) = fake.calls[-1]
    assert (ref, message, changes) == ("docker.io/me/x:1", "Imported from -", ["CMD x", "USER a"])
    assert not isinstance(source, str)
    await app(_req("POST", "/images/create?fromSrc=http://127.0.0.1:1/x.tar&message=hi"))
    assert fake.calls[-1][1][0] == "http://127.0.0.1:1/x.tar" and fake.calls[-1][1][2] == "hi"
    resp = await app(_req("POST", "/images/create?fromSrc=-&repo=x@sha256:" + "a" * 64))
    assert resp.status == 400


async def test_import_error_before_output_is_http_after_is_in_band() -> None:
    fake = FakeImages()
    app = _app(fake)
    fake.fail_before_first = errdefs.InvalidParameter("bad tar")
    resp = await app(_req("POST", "/images/create?fromSrc=-"))
    assert resp.status == 400 and json.loads(resp.body) == {"message": "bad tar"}
    fake.fail_before_first = None
    fake.fail_after_first = True
    resp = await app(_req("POST", "/images/create?fromSrc=-"))
    assert resp.status == 200
    lines = (await _collect(resp)).splitlines()
    assert json.loads(lines[-1])["errorDetail"]["message"] == "broken after the start"


async def test_load_errors_are_always_in_band() -> None:
    fake = FakeImages()
    app = _app(fake)
    resp = await app(_req("POST", "/images/load", b"tar"))
    assert json.loads(await _collect(resp)) == {"stream": "Loaded image: x:1\n"}
    assert fake.calls[-1] == ("load", (True, []))
    await _collect(await app(_req("POST", "/images/load?quiet=0")))
    assert fake.calls[-1] == ("load", (False, []))
    fake.fail_before_first = errdefs.InvalidParameter("invalid archive: nope")
    resp = await app(_req("POST", "/images/load"))
    assert resp.status == 200
    assert json.loads(await _collect(resp))["error"] == "invalid archive: nope"


async def test_load_and_save_platform_parameters() -> None:
    fake = FakeImages()
    app = _app(fake)
    p = "%7B%22os%22%3A%22linux%22%2C%22architecture%22%3A%22arm64%22%7D"
    await _collect(await app(_req("POST", f"/v1.47/images/load?platform={p}")))
    assert fake.calls[-1] == ("load", (True, []))  # before 1.48 the parameter is ignored
    await _collect(await app(_req("POST", f"/v1.48/images/load?platform={p}")))
    assert fake.calls[-1] == ("load", (True, [Platform(os="linux", architecture="arm64")]))
    resp = await app(_req("GET", f"/v1.51/images/get?names=a&platform={p}&platform={p}"))
    assert resp.status == 400
    assert "multiple platform parameters" in json.loads(resp.body)["message"]
    resp = await app(_req("GET", "/v1.48/images/get?names=a&platform=%7B%7D"))
    assert json.loads(resp.body)["message"] == "both OS and Architecture must be provided"


async def test_save_content_type_and_errors() -> None:
    fake = FakeImages()
    app = _app(fake)
    resp = await app(_req("GET", "/images/get?names=a&names=b:1"))
    assert resp.headers["Content-Type"] == "application/x-tar"
    assert await _collect(resp) == b"tarbytes"
    assert fake.calls[-1] == ("save", (["a", "b:1"], []))
    await _collect(await app(_req("GET", "/images/docker.io/library/a:1/get")))
    assert fake.calls[-1] == ("save", (["docker.io/library/a:1"], []))
    fake.fail_before_first = errdefs.NotFound("reference does not exist")
    resp = await app(_req("GET", "/images/get?names=zzz:1"))
    assert resp.status == 404


@pytest.mark.parametrize(
    "text,expected",
    [
        ("linux", Platform(os="linux", architecture="amd64")),
        ("linux/amd64", Platform(os="linux", architecture="amd64")),
        ("linux/x86_64", Platform(os="linux", architecture="amd64")),
        ("linux/arm64/v8", Platform(os="linux", architecture="arm64")),
        ("linux/arm/7", Platform(os="linux", architecture="arm", variant="v7")),
        ("arm64", Platform(os="linux", architecture="arm64")),
    ],
)
def test_platform_specifiers(text: str, expected: Platform) -> None:
    assert parse_platform_specifier(text) == expected


@pytest.mark.parametrize(
    "text,message",
    [
        ("linux/*", '"linux/*": wildcards not yet supported: invalid argument'),
        (
            "bogus/amd64",
            '"bogus/amd64": unknown operating system or architecture: invalid argument',
        ),
        ("a/b/c/d", '"a/b/c/d": cannot parse platform specifier: invalid argument'),
    ],
)
def test_bad_platform_specifiers(text: str, message: str) -> None:
    with pytest.raises(errdefs.InvalidParameter) as err:
        parse_platform_specifier(text)
    assert err.value.message == message


def test_decode_platform_messages() -> None:
    assert decode_platform('{"os":"linux","architecture":"amd64","variant":"v2"}').variant == "v2"
    with pytest.raises(errdefs.InvalidParameter, match="failed to parse platform"):
        decode_platform("nope")
    with pytest.raises(errdefs.InvalidParameter, match="OS and Architecture are missing"):
        decode_platform('{"variant":"v7"}')
