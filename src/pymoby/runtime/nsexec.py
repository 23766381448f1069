"""The exec zygote: a small single-threaded process that forks `docker exec` processes into
running containers, doing what `runc exec` (runc 1.1.5's nsexec + setns init) does.

Rule: the zygote is started once by the daemon (`python -m pymoby.runtime.nsexec <fd> <runc
state root>`; the second argument only says whose zygote it is, for ps), reads
one request per SOCK_SEQPACKET message on that fd (an `ExecRequest`, msgpack, with its file
descriptors attached) and forks one child per request; it holds no state and never waits for
anything but the next request. It exits when the daemon closes the socket or dies.

Per request, with the descriptors [ctl, report, pidfd, stdin, stdout, stderr] (no stdio with a
terminal):
- the first child joins the container's PID namespace through the pidfd of its init and forks
  the process to be; it writes that pid into each of the container's `cgroup.procs` files,
  sends `{"pid": N}` on ctl, lets the process go on, closes everything but ctl and sends
  `{"exit": code}` (128 + signal for a signal) when it ends. Its own failures are
  `{"error": text}` on ctl.
- the process: new session, OOM score, rlimits, the remaining namespaces (one setns on the
  pidfd), the session keyring `_ses.<id>`, stdio (or a pty opened in the container's devpts
  whose master goes back on report with `{"pty": 1}`, controlling terminal, console size),
  no_new_privs, seccomp (before the user change without no_new_privs, else last), then
  runc's finalizeNamespace order: fds >= 3 closed (but report), chdir (retried as the user on
  EACCES/EPERM), the bounding set, keep-caps, stdio owned by the user, setgroups/setgid/setuid,
  HOME from the container's /etc/passwd when unset, the capability sets and ambient ones;
  then Go's exec.LookPath on the process's PATH and execve. Any failure is `{"error": text}`
  on report with runc's text (without runc's `exec failed: ` prefix); a successful execve
  closes report (close-on-exec), which is how the daemon knows the process runs.
The syscalls themselves are kernel/procattr's and kernel/cgroupfs's; this module orders them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import resource
import signal
import socket
import stat
import struct
import sys
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from pymoby.kernel import procattr
from pymoby.kernel.procattr import go_strerror
from pymoby.log import go_quote
from pymoby.runtime.users import parse_passwd

CLONE_NEWPID = 0x20000000
MAX_FDS = 6
_RECV = 1 << 20

_NO_LIMIT = (1 << 64) - 1
_libc = ctypes.CDLL(None, use_errno=True)


class ExecRequest(msgspec.Struct, kw_only=True):
    """One process to start in a running container (see the module docstring)."""

    container_id: str
    args: list[str]
    env: list[str]
    cwd: str
    uid: int
    gid: int
    additional_gids: list[int]
    bounding: list[int]
    effective: list[int]
    inheritable: list[int]
    permitted: list[int]
    ambient: list[int]
    no_new_privileges: bool
    rlimits: list[tuple[int, int, int]]  # (resource, soft, hard), 2**64-1 for unlimited
    oom_score_adj: int | None
    namespaces: int  # CLONE_NEW* flags to join besides the PID namespace
    join_pid: bool  # the container has its own PID namespace (else the host's)
    cgroup_dirs: list[str]  # the container's cgroups (runc's state: cgroup_paths)
    cgroup_fallback: str | None  # cgroup v2: the init's own cgroup, joined on EBUSY
    terminal: bool
    console: tuple[int, int] | None  # (height, width)
    seccomp: bytes  # empty: none
    seccomp_flags: int
    cap_last: int


class ExecFailed(Exception):
    """A step before execve failed; the text is runc's."""


def _oserror_text(exc: OSError) -> str:
    return go_strerror(exc.errno) if exc.errno else str(exc)


# -- Go's exec.LookPath (go 1.19, what runc 1.1.5 is built with) ------------------------------


def _find_executable(path: str) -> str | None:
    """None when `path` is a runnable file, else Go's error text."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"stat {path}: {_oserror_text(exc)}"
    if not stat.S_ISDIR(st.st_mode) and st.st_mode & 0o111:
        return None
    return "permission denied"


def look_path(name: str, env: dict[str, str]) -> str:
    if "/" in name:
        err = _find_executable(name)
        if err is None:
            return name
        raise ExecFailed(f"exec: {go_quote(name)}: {err}")
    path = env.get("PATH", "")
    for d in path.split(":") if path else []:
        candidate = os.path.join(d or ".", name)
        if _find_executable(candidate) is None:
            if not os.path.isabs(candidate):
                raise ExecFailed(
                    f"exec: {go_quote(name)}: cannot run executable found relative to current "
                    "directory"
                )
            return candidate
    raise ExecFailed(f"exec: {go_quote(name)}: executable file not found in $PATH")


# -- the process's steps ----------------------------------------------------------------------


def _send(sock: socket.socket, doc: dict[str, Any], fds: Sequence[int] = ()) -> None:
    data = msgspec.msgpack.encode(doc)
    try:
        if fds:
            socket.send_fds(sock, [data], list(fds))
        else:
            sock.send(data)
    except OSError:
        pass


def _open_pty(req: ExecRequest, report: socket.socket) -> None:
    """runc's setupConsole + Setctty: a pty of the container's devpts, master to the daemon."""
    master, slave_path = procattr.open_pty(req.console)
    _send(report, {"pty": 1}, [master])
    os.close(master)
    slave = os.open(slave_path, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
    procattr.set_controlling_terminal(0)


def _home(uid: int) -> str:
    """HOME of `uid` in the container's /etc/passwd, read as root (runc's GetExecUserPath: the
    first entry with that uid; "/" when there is none)."""
    try:
        with open("/etc/passwd", "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return "/"
    return next((e.home for e in parse_passwd(text) if e.uid == uid), "/")


def _fix_stdio(uid: int) -> None:
    """runc's fixStdioPermissions: stdio owned by the user (not /dev/null)."""
    null = os.stat("/dev/null").st_rdev
    for fd in (0, 1, 2):
        st = os.fstat(fd)
        if st.st_uid == uid or st.st_rdev == null:
            continue
        try:
            os.fchown(fd, uid, st.st_gid)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EPERM, errno.EROFS):
                raise


def go_environment(pairs: Sequence[str]) -> dict[str, str]:
    """runc's populateProcessEnvironment: os.Setenv of each pair in order (a name keeps its
    first place and takes its last value); bad pairs fail with runc's text."""
    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ExecFailed(f"invalid environment variable: {go_quote(pair)}")
        if not name:
            raise ExecFailed(f"environment variable name can't be empty: {go_quote(pair)}")
        if "\0" in name:
            raise ExecFailed(
                f"environment variable name can't contain null(\\x00): {go_quote(pair)}"
            )
        if "\0" in value:
            raise ExecFailed(
                f"environment variable value can't contain null(\\x00): {go_quote(pair)}"
            )
        env[name] = value
    return env


def _finalize(req: ExecRequest, env: dict[str, str]) -> None:
    """runc's finalizeNamespace with setupUser."""
    chdir_later = False
    try:
        os.chdir(req.cwd)
    except PermissionError:
        chdir_later = True
    except OSError as exc:
        raise ExecFailed(
            f"chdir to cwd ({go_quote(req.cwd)}) set in config.json failed: {_oserror_text(exc)}"
        ) from None
    procattr.apply_bounding(req.bounding, req.cap_last)
    procattr.set_keep_caps(True)
    home = _home(req.uid)
    try:
        _fix_stdio(req.uid)
        with open("/proc/self/setgroups", "rb") as f:
            deny = f.read().strip() == b"deny"
        if not deny:
            os.setgroups(req.additional_gids)
        os.setgid(req.gid)
        os.setuid(req.uid)
    except OSError as exc:
        raise ExecFailed(f"unable to setup user: {_oserror_text(exc)}") from None
    if not env.get("HOME"):
        env["HOME"] = home
    if chdir_later:
        try:
            os.chdir(req.cwd)
        except OSError as exc:
            raise ExecFailed(
                f"chdir to cwd ({go_quote(req.cwd)}) set in config.json failed: "
                f"{_oserror_text(exc)}"
            ) from None
    procattr.set_keep_caps(False)
    procattr.apply_caps(req.effective, req.permitted, req.inheritable, req.ambient, req.cap_last)


def _process(req: ExecRequest, report: socket.socket, stdio: list[int], go: int) -> None:
    """The exec'd process from fork to execve (never returns on success). Its own setup runs
    while the first child moves it into the container's cgroups (a cgroup v1 move waits for an
    RCU grace period, 5-12 ms); it runs nothing of the container's before the go byte says
    that is done and the daemon took its pid."""
    env = go_environment(req.env)
    os.setsid()
    if req.oom_score_adj is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(req.oom_score_adj))
    for kind, soft, hard in req.rlimits:
        resource.setrlimit(kind, (_limit(soft), _limit(hard)))
    if all(kind != resource.RLIMIT_NOFILE for kind, _, _ in req.rlimits):
        # runc's Go runtime raises its own soft limit of open files to the hard one, and the
        # processes it starts inherit that when the spec sets none (the container's init too)
        _, hard_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard_nofile, hard_nofile))
    failed = procattr.join_session_keyring(f"_ses.{req.container_id}")
    if failed and failed != errno.ENOSYS:
        raise ExecFailed(f"unable to join session keyring: {go_strerror(failed)}")
    if req.terminal:
        _open_pty(req, report)
    else:
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
        for fd in stdio:
            if fd > 2:
                os.close(fd)
    seccomp = procattr.seccomp_loader(req.seccomp, req.seccomp_flags) if req.seccomp else None
    if req.no_new_privileges:
        procattr.set_no_new_privs()
    elif seccomp is not None:
        seccomp()
    low, high = sorted((report.fileno(), go))
    os.closerange(3, low)  # runc closes every fd it does not pass (CVE-2024-21626)
    os.closerange(low + 1, high)
    os.closerange(high + 1, 1 << 20)
    _finalize(req, env)
    name = look_path(req.args[0], env)
    for sig in signal.valid_signals():
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    argv, envp = _cstrings(req.args), _cstrings([f"{k}={v}" for k, v in env.items()])
    if os.read(go, 1) != b"\0":  # not placed, or the daemon gave up: run nothing
        os._exit(1)
    os.close(go)
    if req.no_new_privileges and seccomp is not None:
        seccomp()  # as close to execve as can be
    _libc.execve(os.fsencode(name), argv, envp)
    raise ExecFailed(f"exec {name}: {go_strerror(ctypes.get_errno())}")


def _limit(value: int) -> int:
    return resource.RLIM_INFINITY if value == _NO_LIMIT else value


def _cstrings(items: Sequence[str]) -> Any:
    array = (ctypes.c_char_p * (len(items) + 1))()
    for i, item in enumerate(items):
        array[i] = os.fsencode(item)
    return array


# -- the zygote and the first child -------------------------------------------------------------


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _second(req: ExecRequest, fds: list[int], go: int) -> None:
    """The process: its steps, with the go byte (cgroups joined, daemon told) awaited right
    before execve."""
    _ctl, report_fd, pidfd, *stdio = fds
    report = socket.socket(fileno=report_fd)
    text = ""
    try:
        os.close(_ctl)
        os.close(pidfd)
        _process(req, report, stdio, go)
    except ExecFailed as exc:
        text = str(exc)
    except OSError as exc:
        text = exc.strerror or str(exc)
    except BaseException as exc:  # reported, then the process ends
        text = f"{type(exc).__name__}: {exc}"
    finally:
        _send(report, {"error": text or "unknown failure"})
        os._exit(1)


def _cgroup_files(req: ExecRequest) -> tuple[list[int], int]:
    """The container's cgroup.procs files, opened while this process still sees the host's
    cgroupfs; and the v2 fallback (the init's own cgroup), or -1."""
    files = [os.open(os.path.join(d, "cgroup.procs"), os.O_WRONLY) for d in req.cgroup_dirs]
    fallback = -1
    if req.cgroup_fallback:
        with contextlib.suppress(OSError):
            fallback = os.open(os.path.join(req.cgroup_fallback, "cgroup.procs"), os.O_WRONLY)
    return files, fallback


def _enter_cgroups(pid: int, files: list[int], fallback: int) -> None:
    """runc 1.1.5's setnsProcess: WriteCgroupProc on every path (EINVAL retried: the task may
    be new), on cgroup v2 EBUSY the init's own cgroup instead."""
    for fd in files:
        for attempt in range(5):
            try:
                os.write(fd, str(pid).encode())
                break
            except OSError as exc:
                if exc.errno == errno.EINVAL and attempt < 4:
                    time.sleep(0.03)
                    continue
                if exc.errno == errno.EBUSY and fallback >= 0:
                    os.write(fallback, str(pid).encode())
                    break
                if exc.errno == errno.ESRCH:
                    return  # its own setup failed first: its report says why
                raise ExecFailed(
                    f"error adding pid {pid} to cgroups: failed to write {pid}: "
                    f"{go_strerror(exc.errno or 0)}"
                ) from None


def _first(req: ExecRequest, fds: list[int]) -> None:
    """Join the container's namespaces, fork the process, place it in the container's cgroups,
    hand the daemon its pid and pidfd, wait for the daemon's word, let the process go, and
    report its exit. Like runc's stage 1, the process is in every namespace from its birth."""
    ctl = socket.socket(fileno=fds[0])
    pid = 0
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        files, fallback = _cgroup_files(req)
        flags = req.namespaces | (CLONE_NEWPID if req.join_pid else 0)
        if flags:
            procattr.setns(fds[2], flags)
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(go_w)
            _second(req, fds, go_r)
        os.close(go_r)
        for fd in fds[1:]:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        _enter_cgroups(pid, files, fallback)
        _send(ctl, {"pid": pid}, [pidfd])
        os.close(pidfd)
        if not ctl.recv(16):  # the daemon gave up on this exec: nothing may run unattended
            raise ExecFailed("the daemon left")
        with contextlib.suppress(BrokenPipeError):  # it may have failed already
            os.write(go_w, b"\0")
        os.close(go_w)
        _, status = os.waitpid(pid, 0)
        pid = 0
        _send(ctl, {"exit": _exit_code(status)})
    except BaseException as exc:  # reported, then this process ends
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        _send(ctl, {"error": str(exc) if isinstance(exc, ExecFailed) else f"exec helper: {exc}"})
    finally:
        os._exit(0)


def recv_fds(sock: socket.socket, size: int, maxfds: int) -> tuple[bytes, list[int]]:
    """One message and its descriptors, received close-on-exec (socket.recv_fds drops the
    flags argument)."""
    data, ancdata, _, _ = sock.recvmsg(size, socket.CMSG_SPACE(maxfds * 4), socket.MSG_CMSG_CLOEXEC)
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds.extend(struct.unpack(f"{usable // 4}i", payload[:usable]))
    return data, fds


def serve(sock: socket.socket) -> None:
    """The zygote's loop: one fork per request, until the daemon hangs up."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # first children are reaped by the kernel
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    procattr.set_dumpable(False)  # as runc's nsexec: no ptrace or /proc/<pid>/mem until execve
    decoder = msgspec.msgpack.Decoder(ExecRequest)
    while True:
        try:
            data, fds = recv_fds(sock, _RECV, MAX_FDS)
        except InterruptedError:
            continue
        if not data:
            return
        try:
            req = decoder.decode(data)
        except msgspec.DecodeError:
            req = None
        if req is not None and len(fds) >= 3 and os.fork() == 0:
            sock.close()
            _first(req, list(fds))
        for fd in fds:
            os.close(fd)


def main(argv: list[str]) -> int:
    fd = int(argv[1])
    os.set_inheritable(fd, False)
    # Everything is imported now: a later import must never be looked up on the filesystem,
    # which after setns(2) is the container's.
    sys.path.clear()
    serve(socket.socket(fileno=fd))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
