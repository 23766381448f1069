"""One inotify descriptor for every container log directory someone follows or rotates.

Rule: a subscriber names a directory and gets a callback with the name of each file in it that
was written, created, renamed or deleted (IN_MODIFY, IN_CREATE, IN_MOVED_FROM/TO, IN_DELETE).
Watches are counted per directory (inotify gives one watch per inode and descriptor) and
removed with their last subscriber. A single descriptor serves the whole daemon because the
kernel limits inotify instances per user (128 by default); the kernel merges repeated identical
events that are not read yet, so a chatty container costs one wake-up per loop turn, not one
per write. A queue overflow calls every callback with "" (anything may have changed).
Callbacks run on the event loop and must not block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from pymoby.kernel import inotify

log = logging.getLogger("pymoby.logs")

Callback = Callable[[str], None]

MASK = (
    inotify.IN_MODIFY
    | inotify.IN_CREATE
    | inotify.IN_MOVED_FROM
    | inotify.IN_MOVED_TO
    | inotify.IN_DELETE
    | inotify.IN_ONLYDIR
)


class DirWatcher:
    """Shared directory watches (see the module docstring)."""

    def __init__(self) -> None:
        self._ino: inotify.Inotify | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._by_dir: dict[str, tuple[int, set[Callback]]] = {}
        self._by_wd: dict[int, str] = {}

    def _ensure(self) -> inotify.Inotify:
        if self._ino is None:
            ino = inotify.Inotify()
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(ino.fileno(), self._readable)
            self._ino = ino
        return self._ino

    def subscribe(self, directory: Path, callback: Callback) -> Callable[[], None]:
        """Watch `directory` for `callback`; returns the function that ends it.

        OSError when the directory cannot be watched (gone, or the watch limit reached).
        """
        key = str(directory)
        entry = self._by_dir.get(key)
        if entry is None:
            wd = self._ensure().add_watch(directory, MASK)
            entry = (wd, set())
            self._by_dir[key] = entry
            self._by_wd[wd] = key
        entry[1].add(callback)

        def unsubscribe() -> None:
            self._drop(key, callback)

        return unsubscribe

    def _drop(self, key: str, callback: Callback) -> None:
        entry = self._by_dir.get(key)
        if entry is None:
            return
        wd, callbacks = entry
        callbacks.discard(callback)
        if callbacks:
            return
        del self._by_dir[key]
        self._by_wd.pop(wd, None)
        if self._ino is not None:
            with contextlib.suppress(OSError):  # gone with its directory already
                self._ino.rm_watch(wd)

    def _readable(self) -> None:
        if self._ino is None:
            return
        try:
            events = self._ino.read_events()
        except OSError as e:
            log.error("reading log directory events: %s", e)
            return
        calls: dict[Callback, set[str]] = {}
        for ev in events:
            if ev.overflow:
                for _, callbacks in list(self._by_dir.values()):
                    for cb in callbacks:
                        calls.setdefault(cb, set()).add("")
                continue
            key = self._by_wd.get(ev.wd)
            if key is None:
                continue
            if ev.mask & inotify.IN_IGNORED:  # the directory is gone: its watch with it
                self._by_wd.pop(ev.wd, None)
                entry = self._by_dir.pop(key, None)
                for cb in entry[1] if entry else ():
                    calls.setdefault(cb, set()).add("")
                continue
            for cb in self._by_dir[key][1]:
                calls.setdefault(cb, set()).add(ev.name)
        for cb, names in calls.items():
            for name in names:
                try:
                    cb(name)
                except Exception:
                    log.exception("log watch callback failed")

    @property
    def watched(self) -> int:
        return len(self._by_dir)

    def close(self) -> None:
        if self._ino is not None:
            if self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(self._ino.fileno())
            self._ino.close()
            self._ino = None
        self._by_dir.clear()
        self._by_wd.clear()
