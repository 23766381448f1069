"""Group "images": bulk image load and save throughput.

The archive: made once per run, locally, in a temporary directory (no network), in the legacy
`docker save` format (manifest.json, repositories, <config>.json, <id>/layer.tar + VERSION +
json): --image-layers layers (5) of --layer-mb MB (40) each, every layer a directory of files
of random, incompressible bytes; a valid image config whose rootfs.diff_ids are the sha256 of
the layer tars. Its tag is unique per run (pymoby-bench/load:<hex>), so runs never collide.

Per round, per engine (engine order alternating AB, BA, ...):

  load MB/s          POST /images/load?quiet=1 streaming the archive (sendfile, Content-Length)
                     over the unix socket; wall time from connect to the end of the response
                     stream; archive bytes / time. The answer must be 200 and say "Loaded image"
                     with no error. Ratio pymoby/ref > 1 means pymoby loads faster.
  load engine cpu s  CPU seconds (user+sys) of the engine's process tree during the load,
                     reaped children included (dockerd untars in a re-exec'd child).
                     Ratio < 1 means pymoby is cheaper.
  save MB/s          GET /images/get?names=<tag>, reading the whole tar (not kept); bytes / wall
                     time to the end of the stream. The answer must be 200 and a tar: a valid
                     first header, at least the layer bytes, 512-byte blocks, zero end blocks.
  save engine cpu s  as for load.

Then DELETE /images/<tag>?force=1 (not timed) so the next load starts from nothing, and
sync(2) (not timed) so one engine's dirty pages are not flushed during the other's turn.
One untimed warm-up cycle per engine comes first; an engine whose warm-up fails (e.g. 404/501)
is reported "not available" with the engine's message, and the other is still measured.
Everything is removed at the end, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import secrets
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from benchlib import BenchError, Engine, GroupResult, Row, alternate, now, request

MB = 1_000_000
FILE_MB = 8  # each layer is split into files of at most this size
EPOCH = 1_700_000_000  # fixed mtime in the archive
CREATED = "2023-11-14T22:13:20Z"


@dataclass
class Archive:
    """The generated image archive."""

    path: Path
    ref: str
    size: int
    layer_bytes: int
    layers: int
    image_id: str


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, EPOCH
    tar.addfile(info, io.BytesIO(data))


def _layer_tar(index: int, size: int) -> bytes:
    """A layer: directory bench-layer-<index>/ with random files totalling size bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        top = tarfile.TarInfo(f"bench-layer-{index}")
        top.type, top.mode, top.mtime = tarfile.DIRTYPE, 0o755, EPOCH
        tar.addfile(top)
        left, n = size, 0
        while left > 0:
            part = min(left, FILE_MB * MB)
            _add(tar, f"bench-layer-{index}/blob-{n:02d}.bin", os.urandom(part))
            left -= part
            n += 1
    return buf.getvalue()


def build_archive(directory: Path, layers: int, layer_mb: int) -> Archive:
    """Write the legacy docker-save archive into directory; see the module docstring."""
    ref = f"pymoby-bench/load:{secrets.token_hex(6)}"
    repo, _, tag = ref.partition(":")
    path = directory / "image.tar"
    diff_ids: list[str] = []
    layer_paths: list[str] = []
    layer_bytes = 0
    parent = ""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as out:
        for i in range(layers):
            blob = _layer_tar(i, layer_mb * MB)
            diff_id = "sha256:" + hashlib.sha256(blob).hexdigest()
            layer_id = hashlib.sha256(f"{parent}\n{diff_id}".encode()).hexdigest()
            v1 = {"id": layer_id, "created": CREATED, "os": "linux"}
            if parent:
                v1["parent"] = parent
            dir_info = tarfile.TarInfo(layer_id)
            dir_info.type, dir_info.mode, dir_info.mtime = tarfile.DIRTYPE, 0o755, EPOCH
            out.addfile(dir_info)
            _add(out, f"{layer_id}/VERSION", b"1.0")
            _add(out, f"{layer_id}/json", json.dumps(v1).encode())
            _add(out, f"{layer_id}/layer.tar", blob)
            diff_ids.append(diff_id)
            layer_paths.append(f"{layer_id}/layer.tar")
            layer_bytes += len(blob)
            parent = layer_id
            del blob
        config = {
            "architecture": _arch(),
            "os": "linux",
            "created": CREATED,
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["/bin/sh"],
                "Labels": {"org.example.pymoby-bench": "load"},
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [
                {"created": CREATED, "created_by": f"pymoby-bench layer {i}"} for i in range(layers)
            ],
        }
        config_raw = json.dumps(config, separators=(",", ":")).encode()
        image_id = hashlib.sha256(config_raw).hexdigest()
        _add(out, f"{image_id}.json", config_raw)
        manifest = [{"Config": f"{image_id}.json", "RepoTags": [ref], "Layers": layer_paths}]
        _add(out, "manifest.json", json.dumps(manifest).encode())
        _add(out, "repositories", json.dumps({repo: {tag: parent}}).encode())
    return Archive(path, ref, path.stat().st_size, layer_bytes, layers, f"sha256:{image_id}")


class TarCheck:
    """Sink for a saved image: counts bytes, keeps the first header and the last 1 KiB."""

    def __init__(self) -> None:
        self.size = 0
        self.head = b""
        self.tail = b""

    def __call__(self, chunk: memoryview) -> None:
        if len(self.head) < 512:
            self.head += bytes(chunk[: 512 - len(self.head)])
        self.size += len(chunk)
        self.tail = (self.tail + bytes(chunk[-1024:]))[-1024:]

    def problem(self, at_least: int) -> str | None:
        """Why this is not a plausible save of the image, or None."""
        if self.size < at_least:
            return f"{self.size} bytes, less than the {at_least} layer bytes"
        if self.size % 512:
            return f"{self.size} bytes is not a multiple of 512"
        if len(self.head) < 512:
            return "no tar header"
        try:
            want = int(self.head[148:156].replace(b"\0", b" ").strip() or b"-1", 8)
        except ValueError:
            return "tar header checksum field is not octal"
        got = sum(self.head[:148]) + 8 * 32 + sum(self.head[156:512])
        if want != got:
            return "first tar header has a bad checksum"
        if self.tail != bytes(1024):
            return "no tar end-of-archive blocks"
        return None


def _delete(engine: Engine, ref: str, timeout: float) -> int:
    resp = request(engine.sock, "DELETE", f"/images/{ref}?force=1", timeout=timeout)
    if resp.status not in (200, 404):
        raise BenchError(
            f"{engine.name}: DELETE /images/{ref}: HTTP {resp.status}: {resp.message()}"
        )
    return resp.status


def _load(engine: Engine, archive: Archive, timeout: float) -> tuple[float, float | None]:
    """One timed load: (seconds, engine cpu seconds)."""
    cpu0 = engine.cpu_seconds()
    t0 = now()
    resp = request(
        engine.sock,
        "POST",
        "/images/load?quiet=1",
        timeout=timeout,
        body=archive.path,
        content_type="application/x-tar",
    )
    elapsed = now() - t0
    cpu1 = engine.cpu_seconds()
    if resp.status != 200:
        raise BenchError(f"POST /images/load: HTTP {resp.status}: {resp.message()}")
    if b"Loaded image" not in resp.body or b"errorDetail" in resp.body:
        raise BenchError(f"POST /images/load: unexpected output {resp.body[:300]!r}")
    cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
    return elapsed, cpu


def _save(engine: Engine, archive: Archive, timeout: float) -> tuple[float, int, float | None]:
    """One timed save: (seconds, bytes, engine cpu seconds)."""
    path = "/images/get?" + urllib.parse.urlencode({"names": archive.ref})
    check = TarCheck()
    cpu0 = engine.cpu_seconds()
    t0 = now()
    resp = request(engine.sock, "GET", path, timeout=timeout, sink=check)
    elapsed = now() - t0
    cpu1 = engine.cpu_seconds()
    if resp.status != 200:
        msg = bytes(check.head[:200]).decode(errors="replace").strip()
        raise BenchError(f"GET {path}: HTTP {resp.status}: {msg}")
    if why := check.problem(archive.layer_bytes):
        raise BenchError(f"GET {path}: not a plausible image tar: {why}")
    cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
    return elapsed, check.size, cpu


def run_group(args: argparse.Namespace, engines: list[Engine]) -> GroupResult:
    """Build the archive, warm up, then timed load + save rounds; remove everything at the end."""
    tmp = Path(tempfile.mkdtemp(prefix="pymoby-bench-images-"))
    group = GroupResult("images")
    in_flight: set[str] = set()  # engines with a load that may still finish after an interrupt
    archive: Archive | None = None
    try:
        t0 = time.monotonic()
        print(
            f"[images] writing a {args.image_layers}x{args.layer_mb} MB archive in {tmp}",
            file=sys.stderr,
        )
        archive = build_archive(tmp, args.image_layers, args.layer_mb)
        print(
            f"[images] {archive.size / MB:.0f} MB, {archive.ref}, in {time.monotonic() - t0:.1f}s",
            file=sys.stderr,
        )
        group.config = {
            "layers": archive.layers,
            "layer_mb": args.layer_mb,
            "archive_bytes": archive.size,
            "layer_bytes": archive.layer_bytes,
            "ref": archive.ref,
        }
        target = f"{archive.layers}x{args.layer_mb} MB image"

        def row(key: str, label: str) -> Row:
            return Row("images", target, label, key, {e.name: [] for e in engines})

        rows = {
            "load_mbps": row("load_mbps", f"load MB/s ({archive.size / MB:.0f} MB)"),
            "load_cpu": row("load_cpu", "load engine cpu s"),
            "save_mbps": row("save_mbps", "save MB/s"),
            "save_cpu": row("save_cpu", "save engine cpu s"),
        }
        group.rows += rows.values()
        load_rows = [rows["load_mbps"], rows["load_cpu"]]
        save_rows = [rows["save_mbps"], rows["save_cpu"]]

        def cycle(engine: Engine, where: str) -> None:
            """load (+ save) once; an engine failing is marked not available from then on."""
            assert archive is not None
            name = engine.name
            in_flight.add(name)
            try:
                _delete(engine, archive.ref, args.timeout)
                os.sync()
                seconds, cpu = _load(engine, archive, args.timeout)
            except BenchError as err:
                for r in load_rows + save_rows:
                    r.unavailable[name] = f"load failed {where}: {err}"
                return
            if where != "in warm-up":
                rows["load_mbps"].values[name].append(archive.size / MB / seconds)
                rows["load_cpu"].values[name].append(cpu)
            if name not in rows["save_mbps"].unavailable:
                os.sync()
                try:
                    seconds, size, cpu = _save(engine, archive, args.timeout)
                except BenchError as err:
                    for r in save_rows:
                        r.unavailable[name] = f"save failed {where}: {err}"
                else:
                    if where != "in warm-up":
                        rows["save_mbps"].values[name].append(size / MB / seconds)
                        rows["save_cpu"].values[name].append(cpu)
            try:
                _delete(engine, archive.ref, args.timeout)
            except BenchError as err:
                for r in load_rows + save_rows:
                    r.unavailable[name] = f"delete failed {where}: {err}"
                return
            in_flight.discard(name)

        for engine in engines:
            cycle(engine, "in warm-up")
        for r in range(args.rounds):
            for engine in alternate(engines, r):
                if engine.name not in rows["load_mbps"].unavailable:
                    cycle(engine, f"in round {r + 1}")
            line = ", ".join(
                f"{e.name} load {_last(rows['load_mbps'], e)} save {_last(rows['save_mbps'], e)}"
                for e in engines
            )
            print(f"[images] MB/s round {r + 1}/{args.rounds}: {line}", file=sys.stderr)
        for done in group.rows:
            for name, why in done.unavailable.items():
                note = f"{name}: not available ({why})"
                if note not in group.notes:
                    group.notes.append(note)
    finally:
        if archive is not None:
            _cleanup(engines, archive, in_flight, args.timeout)
        shutil.rmtree(tmp, ignore_errors=True)
    return group


def _last(row: Row, engine: Engine) -> str:
    values = row.values[engine.name]
    if engine.name in row.unavailable or not values or values[-1] is None:
        return "n/a"
    return f"{values[-1]:.0f}"


def _cleanup(engines: list[Engine], archive: Archive, in_flight: set[str], timeout: float) -> None:
    """Remove the image from every engine; wait a little for loads cut off by an interrupt."""
    for engine in engines:
        tries = 10 if engine.name in in_flight else 1
        for i in range(tries):
            try:
                if _delete(engine, archive.ref, timeout) == 200 or i == tries - 1:
                    break
            except BenchError as err:
                print(f"[images] cleanup: {err}", file=sys.stderr)
                break
            time.sleep(0.5)
