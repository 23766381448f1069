"""iptables for bridge networks: the only code that runs iptables-save / iptables-restore.

Rule: the host's rules are reconciled, never patched. Callers pass the whole wanted state
(every bridge network, every published port); `reconcile` reads the host once
(`iptables-save`, all tables) and writes the difference in ONE `iptables-restore -w --noflush`
call, or none when nothing changed. Our chains are rewritten whole; in built-in chains only our
own rules are added or deleted (see `iptables_rules` for the layout and how rules are known as
ours). Re-running is always safe: nothing is ever duplicated, foreign rules are never touched,
the user's DOCKER-USER rules are never flushed. IPv4 only.

Each table is committed on its own by iptables-restore (raw, then filter, then nat): a failure
in a later table leaves the earlier ones applied, and the next reconcile completes the job.
All calls block (two short subprocesses): callers use `asyncio.to_thread`.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Sequence

from pymoby.kernel.iptables_rules import (
    BridgeNet,
    Desired,
    IptablesError,
    Layout,
    PortMap,
    TableState,
    parse_save,
)

__all__ = ["BridgeNet", "Iptables", "IptablesError", "PortMap"]

_TIMEOUT = 60.0  # seconds; -w may wait for another holder of the xtables lock
_NO_WAIT = ("option -- 'w'", "option '-w'", "option -w")  # getopt's words for an unknown -w
_LOCK = threading.Lock()  # one save+restore at a time in this process, whatever the instance


class Iptables:
    """dockerd's bridge-network rules on this host, under chain names `prefix + name`."""

    def __init__(self, *, prefix: str = "", binary: str = "iptables") -> None:
        self._layout = Layout(prefix)
        self._save = binary + "-save"
        self._restore = binary + "-restore"
        self._wait = True  # pass -w until the tool says it does not know it
        self._to_top = True  # the first reconcile moves our FORWARD jumps to the top (startup)

    @property
    def prefix(self) -> str:
        return self._layout.prefix

    def render(
        self, nets: Sequence[BridgeNet], ports: Sequence[PortMap], *, userland_proxy: bool
    ) -> dict[str, list[str]]:
        """table -> "-A CHAIN ..." lines: our chains' contents and our rules in built-in chains."""
        return self._layout.desired(nets, ports, userland_proxy=userland_proxy).render()

    def plan(
        self,
        nets: Sequence[BridgeNet],
        ports: Sequence[PortMap],
        *,
        userland_proxy: bool,
        saved: str | None = None,
    ) -> str:
        """The restore script `reconcile` would run against `saved` (default: the host now)."""
        want = self._layout.desired(nets, ports, userland_proxy=userland_proxy)
        return self._layout.plan(self._state(saved), want, to_top=self._to_top)

    def reconcile(
        self, nets: Sequence[BridgeNet], ports: Sequence[PortMap], *, userland_proxy: bool
    ) -> None:
        """Make the host hold exactly these networks' and ports' rules (one save, one restore)."""
        self._apply(self._layout.desired(nets, ports, userland_proxy=userland_proxy))
        self._to_top = False

    def clear(self) -> None:
        """Remove all our chains and rules; DOCKER-USER (and its jump) only while it is empty."""
        self._apply(Layout.nothing())

    # -- host ---------------------------------------------------------------------------------

    def _apply(self, want: Desired) -> None:
        with _LOCK:
            script = self._layout.plan(self._state(None), want, to_top=self._to_top)
            if script:
                self._run_restore(script)

    def _state(self, saved: str | None) -> dict[str, TableState]:
        return parse_save(self._run([self._save], None) if saved is None else saved)

    def _run_restore(self, script: str) -> None:
        if self._wait:
            argv = [self._restore, "-w", "--noflush"]
            rc, _, err = _exec(argv, script)
            if rc == 0:
                return
            if not any(m in err for m in _NO_WAIT):  # a refused option commits nothing
                raise _failed(argv, err, script)
            self._wait = False  # a very old iptables-restore: retry without the lock wait
        argv = [self._restore, "--noflush"]
        rc, _, err = _exec(argv, script)
        if rc != 0:
            raise _failed(argv, err, script)

    @staticmethod
    def _run(argv: list[str], stdin: str | None) -> str:
        rc, out, err = _exec(argv, stdin)
        if rc != 0:
            raise _failed(argv, err, stdin)
        return out


def _exec(argv: list[str], stdin: str | None) -> tuple[int, str, str]:
    try:
        proc = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=_TIMEOUT, check=False
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise IptablesError(f"running {argv[0]}: {e}") from e
    return proc.returncode, proc.stdout, proc.stderr.strip() or f"exit status {proc.returncode}"


def _failed(argv: list[str], err: str, stdin: str | None) -> IptablesError:
    detail = f"\n{stdin[:8000]}" if stdin else ""
    return IptablesError(f"{' '.join(argv)} failed: {err}{detail}")
