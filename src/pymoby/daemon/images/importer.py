"""`docker import`: a root filesystem tar (any compression) becomes a one-layer image.

Rule: dockerd's ImportImage. The run config comes from the `-c` changes (checked before the
body is read), the layer streams straight from the request body -- or from `fromSrc=<url>`,
fetched with a streaming HTTP client (`Downloading from <url>`, then `Importing` progress) --
into the layer store, and ONE transaction creates the image, its layer reference and its tag.
The config is what dockerd writes: top-level keys sorted, `comment` and a single history
entry carrying the message (default `Imported from -`), created now (UTC), the platform's
OS / architecture / variant. A failure before the commit leaves nothing: the layer the import
registered is released.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO, cast

import msgspec

from pymoby import errdefs
from pymoby.api.reference import Reference
from pymoby.api.types import progress
from pymoby.api.types.images import (
    ContainerConfig,
    Platform,
    container_config_wire,
    format_rfc3339_nano,
)
from pymoby.archive.compression import Reader
from pymoby.daemon.images import platforms as plat
from pymoby.daemon.images.changes import apply_changes
from pymoby.daemon.images.load import release_unreferenced
from pymoby.daemon.images.meter import MeteredReader
from pymoby.store import images as imgstore
from pymoby.store import layers as layerstore
from pymoby.store.layers import LayerStore

Emit = Callable[[bytes], None]
FETCH_TIMEOUT = 60.0


def run_config(changes: Sequence[str], platform: Platform | None) -> ContainerConfig:
    """The image's run config from the changes (InvalidParameter for a bad one)."""
    if platform is not None and not plat.os_supported(platform.os):
        raise errdefs.InvalidParameter("operating system is not supported")
    return apply_changes(ContainerConfig(), changes)


def image_config(
    config: ContainerConfig, diff_id: str, message: str, platform: Platform, created_ns: int
) -> bytes:
    """The config document dockerd's ImportImage marshals (keys sorted at the top level)."""
    created = format_rfc3339_nano(created_ns)
    doc: dict[str, Any] = {
        "architecture": platform.architecture,
        "config": container_config_wire(config),
        "container_config": container_config_wire(ContainerConfig()),
        "created": created,
        "history": [{"created": created, "comment": message} if message else {"created": created}],
        "os": platform.os,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    if message:
        doc["comment"] = message
    if platform.variant:
        doc["variant"] = platform.variant
    if not platform.architecture:
        del doc["architecture"]
    return msgspec.json.encode({key: doc[key] for key in sorted(doc)})


class _Fetched:
    """An HTTP response body as a Reader (closed by the caller)."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.response = response
        length = response.getheader("Content-Length")
        self.length = int(length) if length and length.isdigit() else 0

    def read(self, n: int = -1, /) -> bytes:
        return self.response.read(n if n is not None and n >= 0 else None)


def fetch(url: str) -> tuple[str, _Fetched]:
    """dockerd's GetWithStatusError: GET `url` (http:// added when it has no scheme)."""
    if "://" not in url:
        url = "http://" + url
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise errdefs.InvalidParameter(f'parse "{url}": unsupported URL for fromSrc')
    try:
        response = urllib.request.urlopen(url, timeout=FETCH_TIMEOUT)
    except urllib.error.HTTPError as exc:
        body = exc.read().strip().decode(errors="replace")
        message = f"failed to GET {url} with status {exc.code} {exc.reason}: {body}"
        kinds: dict[int, type[errdefs.PymobyError]] = {
            404: errdefs.NotFound,
            400: errdefs.InvalidParameter,
            401: errdefs.Unauthorized,
            403: errdefs.Forbidden,
        }
        raise kinds.get(exc.code, errdefs.System)(message) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise errdefs.System(f'Get "{url}": {reason}') from None
    return url, _Fetched(cast(http.client.HTTPResponse, response))


def import_layer(
    body: Reader | None,
    url: str | None,
    *,
    layers: LayerStore,
    ref: Reference | None,
    message: str,
    config: ContainerConfig,
    platform: Platform | None,
    emit: Emit,
) -> str:
    """Register the layer, commit image + tag; the image ID (blocking: run in a thread)."""
    target = platform or plat.host_platform()
    fetched: _Fetched | None = None
    source: Reader
    if url is not None:
        url, fetched = fetch(url)
        emit(progress.status(f"Downloading from {url}"))

        def report(current: int, total: int) -> None:
            emit(progress.progress("Importing", "", current, total))

        source = MeteredReader(fetched, total=fetched.length, progress=report)
    else:
        assert body is not None
        source = body
    try:
        try:
            with layers.lease() as lease:
                layer = layers.register(cast(BinaryIO, source), None, lease=lease)
                now = time.time_ns()
                raw = image_config(config, layer.diff_id, message, target, now)

                def commit(conn: Any) -> str:
                    record = imgstore.create_in(conn, raw, layer.chain_id, layer.size)
                    layerstore.add_reference(conn, record.id, layer.chain_id)
                    if ref is not None:
                        imgstore.tag_in(conn, record.id, ref, force=True, last_tag_time=now)
                    return record.id

                return layers.meta.write_sync(commit)
        except BaseException:
            release_unreferenced(layers)
            raise
    finally:
        if fetched is not None:
            fetched.response.close()
