"""Find the helper binaries (runc, conmon, docker-init) and ask them what version they are.

Rule: versions and commits are only ever what the binary itself prints for `--version`
(parsed like dockerd parses runc and tini output); a binary that is missing, fails or times out
is reported as such in `ToolVersion.error`, never replaced by a made-up version. Results are
cached per binary file (path, inode, size, mtime), so an upgraded binary is probed again.

Subprocesses run with asyncio (no thread blocks on them) and are killed at the timeout; the
PATH lookups and stat calls are small blocking file checks done in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

ToolKind = Literal["runtime", "conmon", "init"]

# dockerd's lookupBinPath order for docker-init (and other docker-* helpers): libexec dirs
# first, then PATH.
INIT_LOOKUP_DIRS = (
    "/usr/local/libexec/docker",
    "/usr/libexec/docker",
    "/usr/local/lib/docker",
    "/usr/lib/docker",
)
DOCKER_PREFIX_DIRS = ("/usr/local/libexec", "/usr/libexec")

DEFAULT_TIMEOUT = 5.0
TIMEOUT = "timed out"


@dataclass(frozen=True)
class ToolVersion:
    """What `<binary> --version` said, or why it could not be asked."""

    binary: str  # as configured: a name looked up in PATH, or a path
    path: str | None  # resolved executable, None when not found
    version: str = ""
    commit: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def parse_runtime_version(output: str) -> tuple[str, str, str]:
    """dockerd's parseRuntimeVersion: (name, version, commit) from runc/crun/conmon output.

    `runc version 1.1.5+ds1\\ncommit: 1.1.5+ds1-1+deb12u1\\nspec: 1.0.2-dev` gives
    ("runc", "1.1.5+ds1", "1.1.5+ds1-1+deb12u1"). Raises ValueError when neither a version nor
    a commit is found.
    """
    name = version = commit = ""
    for line in output.strip().split("\n"):
        if "version" in line:
            parts = line.split("version")
            name = parts[0].strip()
            version = parts[-1].strip()
            continue
        if line.startswith("commit:"):
            commit = line.removeprefix("commit:").strip()
    if not version and not commit:
        raise ValueError(f"unknown output format: {output}")
    return name, version, commit


def parse_init_version(output: str) -> tuple[str, str]:
    """dockerd's parseInitVersion: (version, commit) from tini output.

    `tini version 0.18.0 - git.fec3683` gives ("0.18.0", "fec3683"); Debian's tini prints
    only `tini version 0.19.0`, giving ("0.19.0", "").
    """
    parts = output.split(" - ")
    commit = ""
    if len(parts) >= 2:
        git = parts[1].strip().split(".")
        if len(git) == 2 and git[0] == "git":
            commit = git[1]
    head = parts[0].strip()
    version = head.removeprefix("tini version ") if head.startswith("tini version ") else ""
    if not version and not commit:
        raise ValueError(f"unknown output format: {output}")
    return version, commit


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def lookup_binary(binary: str, *, path_env: str | None = None) -> str | None:
    """Absolute or relative paths are checked as given; bare names are looked up in PATH."""
    if os.sep in binary:
        return os.path.abspath(binary) if _is_executable(binary) else None
    return shutil.which(binary, path=path_env)


def lookup_init_binary(binary: str, *, path_env: str | None = None) -> str | None:
    """dockerd's lookupBinPath: absolute path as is; else libexec dirs, then PATH."""
    if os.path.isabs(binary):
        return binary if _is_executable(binary) else None
    dirs = list(INIT_LOOKUP_DIRS)
    if binary.startswith("docker-"):
        dirs.extend(DOCKER_PREFIX_DIRS)
    for d in dirs:
        candidate = os.path.join(d, binary)
        if _is_executable(candidate):
            return candidate
    return lookup_binary(binary, path_env=path_env)


# A located binary is looked up again after this many seconds (a replaced runc is noticed).
LOCATE_TTL = 1.0


async def run_tool(path: str, *args: str) -> tuple[int, bytes, bytes]:
    """Run `path args...` without a shell; the process is killed if the caller is cancelled
    (for instance by an enclosing `asyncio.timeout`)."""
    proc = await asyncio.create_subprocess_exec(
        path,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group: a stuck child dies with it
    )
    try:
        out, err = await proc.communicate()
    except BaseException:
        # The group outlives its leader while a child holds our pipes; kill it either way.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out, err


_FileKey = tuple[str, int, int, int]
K = TypeVar("K")
V = TypeVar("V")


def _file_key(path: str) -> _FileKey | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (path, st.st_ino, st.st_size, st.st_mtime_ns)


class _Cache(Generic[K, V]):
    """Finished results by key, plus the in-flight task so concurrent callers share one probe."""

    def __init__(self) -> None:
        self._done: dict[K, V] = {}
        self._running: dict[K, asyncio.Task[V]] = {}

    async def get(self, key: K, probe: Callable[[], Awaitable[V]], keep: Callable[[V], bool]) -> V:
        if key in self._done:
            return self._done[key]
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(probe())
            self._running[key] = task

            def finished(t: asyncio.Task[V]) -> None:
                self._running.pop(key, None)
                if not t.cancelled() and t.exception() is None and keep(t.result()):
                    self._done[key] = t.result()

            task.add_done_callback(finished)
        return await asyncio.shield(task)


class Binaries:
    """Probes helper binaries; one probe per binary file, shared by concurrent callers."""

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        path_env: str | None = None,
        locate_ttl: float = LOCATE_TTL,
    ) -> None:
        self._timeout = timeout
        self._locate_ttl = locate_ttl
        self._path_env = path_env
        self._versions: _Cache[tuple[ToolKind, _FileKey], ToolVersion] = _Cache()
        self._features: _Cache[_FileKey, str | None] = _Cache()
        self._located: dict[
            tuple[ToolKind, str], tuple[float, tuple[str | None, _FileKey | None]]
        ] = {}

    async def _locate(self, kind: ToolKind, binary: str) -> tuple[str | None, _FileKey | None]:
        """PATH lookup + stat, in a thread; reused for `locate_ttl` seconds (hot /info loops)."""
        now = time.monotonic()
        hit = self._located.get((kind, binary))
        if hit is not None and now - hit[0] < self._locate_ttl:
            return hit[1]

        def find() -> tuple[str | None, _FileKey | None]:
            if kind == "init":
                path = lookup_init_binary(binary, path_env=self._path_env)
            else:
                path = lookup_binary(binary, path_env=self._path_env)
            return path, (_file_key(path) if path else None)

        found = await asyncio.to_thread(find)
        self._located[(kind, binary)] = (now, found)
        return found

    async def version(self, kind: ToolKind, binary: str) -> ToolVersion:
        """`<binary> --version`, parsed for its kind ("runtime"/"conmon" or "init").

        A missing binary is looked up again on the next call; a timeout is not cached.
        """
        path, key = await self._locate(kind, binary)
        if path is None or key is None:
            return ToolVersion(binary, None, error=f"{binary}: executable file not found")
        return await self._versions.get(
            (kind, key),
            lambda: self._probe_version(kind, binary, path),
            lambda v: not (v.error or "").endswith(TIMEOUT),
        )

    async def _probe_version(self, kind: ToolKind, binary: str, path: str) -> ToolVersion:
        try:
            async with asyncio.timeout(self._timeout):
                code, out, err = await run_tool(path, "--version")
        except TimeoutError:
            return ToolVersion(binary, path, error=f"{path} --version: {TIMEOUT}")
        except OSError as e:
            return ToolVersion(binary, path, error=f"{path}: {e.strerror or e}")
        if code != 0:
            detail = err.decode(errors="replace").strip() or f"exit status {code}"
            return ToolVersion(binary, path, error=f"{path} --version: {detail}")
        text = out.decode(errors="replace")
        try:
            if kind == "init":
                version, commit = parse_init_version(text)
            else:
                _, version, commit = parse_runtime_version(text)
        except ValueError as e:
            return ToolVersion(binary, path, error=f"failed to parse {path} version: {e}")
        return ToolVersion(binary, path, version=version, commit=commit)

    async def runtime(self, binary: str = "runc") -> ToolVersion:
        return await self.version("runtime", binary)

    async def conmon(self, binary: str = "conmon") -> ToolVersion:
        return await self.version("conmon", binary)

    async def init(self, binary: str = "docker-init") -> ToolVersion:
        return await self.version("init", binary)

    async def features(self, binary: str) -> str | None:
        """`<runtime> features` (OCI runtime features JSON, compacted); None if unavailable.

        Failures are not cached, so a runtime that gains the subcommand is asked again.
        """
        path, key = await self._locate("runtime", binary)
        if path is None or key is None:
            return None
        return await self._features.get(key, lambda: self._probe_features(path), _is_str)

    async def _probe_features(self, path: str) -> str | None:
        try:
            async with asyncio.timeout(self._timeout):
                code, out, _ = await run_tool(path, "features")
        except (TimeoutError, OSError):
            return None
        if code != 0:
            return None
        try:
            doc = json.loads(out)
        except ValueError:
            return None
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def _is_str(value: str | None) -> bool:
    return value is not None
