"""Image routes: list, inspect, history, tag, delete, prune, import, load, save -- as data.

Rule: these handlers parse the query exactly as dockerd's image router does (per-version
branches included: daemon/server/router/image/image_routes.go), call the ImageBackend and encode
for the request's API version with the encoders of api/types/images. Streams follow dockerd's
rules: import answers an error before its first output line as an HTTP error and in-band after
it; load always answers 200 and reports every error in-band; save is an HTTP error until the
first tar byte. Pull, push and search belong to the registry client (501 until it exists).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec

from pymoby import errdefs
from pymoby.api import reference as refs
from pymoby.api.filters import Filters
from pymoby.api.types import progress
from pymoby.api.types.images import (
    Platform,
    encode_delete,
    encode_history,
    encode_image_inspect,
    encode_image_list,
    encode_prune_report,
)
from pymoby.api.versions import ApiVersion
from pymoby.server.backends import ImageBackend
from pymoby.server.request import Request
from pymoby.server.response import JSON, Response, empty_response, raw_json_response
from pymoby.server.router import Route
from pymoby.server.streams import flushed_or_error

V1_25 = ApiVersion(1, 25)
V1_32 = ApiVersion(1, 32)
V1_42 = ApiVersion(1, 42)
V1_48 = ApiVersion(1, 48)
V1_49 = ApiVersion(1, 49)
V1_52 = ApiVersion(1, 52)

TAR = "application/x-tar"
_NO_REGISTRY = "pulling images is not implemented yet: the registry client comes in a later release"

# containerd's platforms.Parse: known names, and the aliases it normalises.
_KNOWN_OS = frozenset(
    [
        "aix",
        "android",
        "darwin",
        "dragonfly",
        "freebsd",
        "hurd",
        "illumos",
        "ios",
        "js",
        "linux",
        "nacl",
        "netbsd",
        "openbsd",
        "plan9",
        "solaris",
        "wasip1",
        "windows",
        "zos",
    ]
)
_KNOWN_ARCH = frozenset(
    [
        "386",
        "amd64",
        "amd64p32",
        "arm",
        "armbe",
        "arm64",
        "arm64be",
        "loong64",
        "mips",
        "mipsle",
        "mips64",
        "mips64le",
        "mips64p32",
        "mips64p32le",
        "ppc",
        "ppc64",
        "ppc64le",
        "riscv",
        "riscv64",
        "s390",
        "s390x",
        "sparc",
        "sparc64",
        "wasm",
    ]
)
_ARCH_ALIASES = {
    "i386": ("386", ""),
    "x86_64": ("amd64", ""),
    "x86-64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
}


def parse_platform_specifier(text: str) -> Platform:
    """containerd's platforms.Parse (`os[/arch[/variant]]`), as POST /images/create reads it."""
    if "*" in text:
        raise errdefs.InvalidParameter(f'"{text}": wildcards not yet supported: invalid argument')
    parts = text.lower().split("/")
    if len(parts) > 3 or not all(parts):
        raise errdefs.InvalidParameter(
            f'"{text}": cannot parse platform specifier: invalid argument'
        )
    unknown = errdefs.InvalidParameter(
        f'"{text}": unknown operating system or architecture: invalid argument'
    )
    if len(parts) == 1:
        if parts[0] in _KNOWN_OS:
            return Platform(os=parts[0], architecture="amd64")
        arch, variant = _normalise_arch(parts[0], "")
        if arch not in _KNOWN_ARCH:
            raise unknown
        return Platform(os="linux", architecture=arch, variant=variant)
    os_name = parts[0]
    arch, variant = _normalise_arch(parts[1], parts[2] if len(parts) == 3 else "")
    if os_name not in _KNOWN_OS or arch not in _KNOWN_ARCH:
        raise unknown
    return Platform(os=os_name, architecture=arch, variant=variant)


def _normalise_arch(arch: str, variant: str) -> tuple[str, str]:
    if arch in _ARCH_ALIASES:
        arch, default_variant = _ARCH_ALIASES[arch]
        variant = variant or default_variant
    if arch == "amd64" and variant == "v1":
        variant = ""
    if arch == "arm64" and variant in ("8", "v8"):
        variant = ""
    if arch == "arm" and variant in ("5", "6", "7", "8"):
        variant = "v" + variant
    return arch, variant


def decode_platform(text: str) -> Platform:
    """dockerd's httputils.DecodePlatform: an OCI platform as JSON (API 1.48+ parameters)."""
    try:
        platform = msgspec.json.decode(text.encode(), type=Platform)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise errdefs.InvalidParameter(f"failed to parse platform: {exc}") from None
    optional = bool(platform.variant or platform.os_version or platform.os_features)
    if not platform.os and not platform.architecture and optional:
        raise errdefs.InvalidParameter(
            "optional platform fields provided, but OS and Architecture are missing"
        )
    if not platform.os or not platform.architecture:
        raise errdefs.InvalidParameter("both OS and Architecture must be provided")
    return platform


def _platform_list(req: Request) -> list[Platform]:
    """The `platform` parameters of load and save (1.48+; several only from 1.52)."""
    if req.version < V1_48:
        return []
    values = req.values("platform")
    if req.version < V1_52 and len(values) > 1:
        raise errdefs.InvalidParameter(
            "multiple platform parameters are not supported in this API version; "
            "use API version 1.52 or later"
        )
    return [decode_platform(v) for v in values]


def routes(images: ImageBackend) -> list[Route]:
    async def list_images(req: Request) -> Response:
        filters = Filters.parse(req.value("filters"))
        if req.version < V1_25 and not filters.contains("reference"):
            legacy = req.value("filter")
            if legacy:
                filters = filters.with_value("reference", legacy)
        shared_size = req.version >= V1_42 and req.bool_value("shared-size")
        items = await images.images(filters, all=req.bool_value("all"), shared_size=shared_size)
        return raw_json_response(encode_image_list(items, req.version))

    async def inspect(req: Request) -> Response:
        manifests = bool(req.value("manifests")) and req.version >= V1_48
        manifests = manifests and req.bool_value("manifests")
        platform = None
        if req.value("platform") and req.version >= V1_49:
            platform = decode_platform(req.value("platform"))
        if manifests and platform is not None:
            raise errdefs.InvalidParameter(
                "conflicting options: manifests and platform options cannot both be set"
            )
        data = await images.inspect(req.params["name"], platform)
        return raw_json_response(encode_image_inspect(data, req.version))

    async def history(req: Request) -> Response:
        platform = None
        if req.version >= V1_48 and req.value("platform"):
            platform = decode_platform(req.value("platform"))
        items = await images.history(req.params["name"], platform)
        return raw_json_response(encode_history(items))

    async def tag(req: Request) -> Response:
        ref = refs.repo_tag_reference(req.value("repo"), req.value("tag"))
        if ref is None:
            # dockerd: errdefs.InvalidParameter(nil) is nil, so the handler answers 200.
            return empty_response(200)
        if refs.familiar_name(ref) == "sha256":
            raise errdefs.InvalidParameter(
                "refusing to create an ambiguous tag using digest algorithm as name"
            )
        await images.tag(req.params["name"], ref)
        return empty_response(201)

    async def delete(req: Request) -> Response:
        name = req.params["name"]
        if not name.strip():
            raise errdefs.InvalidParameter("image name cannot be blank")
        if req.version >= ApiVersion(1, 50):
            platforms = [decode_platform(v) for v in req.values("platforms")]
            if len(platforms) > 1:
                raise errdefs.InvalidParameter("multiple platforms are not supported")
        items = await images.delete(
            name, force=req.bool_value("force"), prune=not req.bool_value("noprune")
        )
        return raw_json_response(encode_delete(items))

    async def prune(req: Request) -> Response:
        report = await images.prune(Filters.parse(req.value("filters")))
        return raw_json_response(encode_prune_report(report))

    async def create(req: Request) -> Response:
        platform = None
        if req.version >= V1_32 and req.value("platform"):
            platform = parse_platform_specifier(req.value("platform"))
        if req.value("fromImage"):
            raise errdefs.NotImplementedErr(_NO_REGISTRY)
        src = req.value("fromSrc")
        ref = refs.repo_tag_reference(req.value("repo"), req.value("tag"))
        message = req.value("message") or "Imported from " + src
        source: AsyncIterator[bytes] | str = aiter(req.body) if src == "-" else src
        lines = images.import_image(source, ref, message, req.values("changes"), platform)
        return await flushed_or_error(lines, JSON)

    async def load(req: Request) -> Response:
        platforms = _platform_list(req)
        quiet = req.bool_value("quiet", True)
        lines = images.load(aiter(req.body), quiet=quiet, platforms=platforms)

        async def in_band() -> AsyncIterator[bytes]:
            try:
                async for line in lines:
                    yield line
            except errdefs.PymobyError as exc:
                yield progress.error(exc.message)
            finally:
                aclose = getattr(lines, "aclose", None)
                if aclose is not None:
                    await aclose()

        return Response(headers={"Content-Type": JSON}, stream=in_band())

    async def save(req: Request) -> Response:
        names = [req.params["name"]] if "name" in req.params else req.values("names")
        platforms = _platform_list(req)
        return await flushed_or_error(images.save(names, platforms), TAR)

    async def not_implemented(req: Request) -> Response:
        raise errdefs.NotImplementedErr(
            "pushing and searching images is not implemented yet: the registry client comes "
            "in a later release"
        )

    return [
        Route("GET", "/images/json", list_images),
        Route("GET", "/images/search", not_implemented),
        Route("GET", "/images/get", save),
        Route("GET", "/images/{name:.*}/get", save),
        Route("GET", "/images/{name:.*}/history", history),
        Route("GET", "/images/{name:.*}/json", inspect),
        Route("POST", "/images/load", load),
        Route("POST", "/images/create", create),
        Route("POST", "/images/{name:.*}/push", not_implemented),
        Route("POST", "/images/{name:.*}/tag", tag),
        Route("POST", "/images/prune", prune, min_api=V1_25),
        Route("DELETE", "/images/{name:.*}", delete),
    ]
