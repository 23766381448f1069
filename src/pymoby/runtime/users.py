"""Resolve a container's `User` and `GroupAdd` against the image's /etc/passwd and /etc/group.

Rule: behave exactly like github.com/moby/sys/user (GetExecUser, GetAdditionalGroups) as dockerd
calls them in getUser: the same parsing quirks (passwd lines are not comment-aware, group lines
are; unparsable numbers read as 0), the same first-match-wins lookups, numeric ids accepted
without an entry, and the same error texts. Inputs are file *contents* (`None` when the file
does not exist in the rootfs); nothing here reads a file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from pymoby.runtime.defaults import SpecError

MIN_ID = 0
MAX_ID = (1 << 31) - 1
_INT64_MAX = (1 << 63) - 1
_ATOI = re.compile(r"[+-]?[0-9]+")

ERR_NO_PASSWD = "no matching entries in passwd file"
ERR_NO_GROUP = "no matching entries in group file"
ERR_RANGE = f"uids and gids must be in range {MIN_ID}-{MAX_ID}"


@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class ExecUser:
    uid: int
    gid: int
    sgids: tuple[int, ...] = ()
    home: str = ""


@dataclass(frozen=True)
class ProcessUser:
    """The OCI `process.user` dockerd writes: uid, gid and additionalGids (primary gid first)."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...] = field(default=())


def _go_atoi_lenient(text: str) -> int:
    """parseParts' `strconv.Atoi` with the error ignored: junk is 0, overflow saturates."""
    if not _ATOI.fullmatch(text):
        return 0
    value = int(text)
    return max(-_INT64_MAX - 1, min(_INT64_MAX, value))


def _fields(line: str, count: int) -> list[str]:
    parts = line.split(":")
    return parts[:count] + [""] * (count - len(parts))


def _lines(text: str) -> list[str]:
    # bufio.ScanLines drops a trailing \r; bytes.TrimSpace then strips the rest.
    return [line.strip() for line in text.split("\n")]


def parse_passwd(text: str) -> list[PasswdEntry]:
    """name:password:UID:GID:GECOS:directory:shell; blank lines skipped, `#` lines are not."""
    out = []
    for line in _lines(text):
        if not line:
            continue
        name, _pw, uid, gid, _gecos, home = _fields(line, 6)
        out.append(PasswdEntry(name, _go_atoi_lenient(uid), _go_atoi_lenient(gid), home))
    return out


def parse_group(text: str) -> list[GroupEntry]:
    """group_name:password:GID:user_list; blank lines and `#` comments skipped."""
    out = []
    for line in _lines(text):
        if not line or line.startswith("#"):
            continue
        name, _pw, gid, members = _fields(line, 4)
        out.append(
            GroupEntry(name, _go_atoi_lenient(gid), tuple(members.split(",") if members else ()))
        )
    return out


def parse_numeric(value: str) -> tuple[int, bool]:
    """(id, is_numeric); a number outside 0..2^31-1 is an error, a non-number is a name."""
    if value == "" or not _ATOI.fullmatch(value):
        return 0, False
    num = int(value)
    if num < MIN_ID or num > MAX_ID:
        raise SpecError(ERR_RANGE)
    return num, True


def get_exec_user(user_spec: str, passwd: str | None, group: str | None) -> ExecUser:
    """moby/sys/user GetExecUser with zero defaults (uid 0, gid 0, no sgids).

    `user_spec` is "", "user", "uid", "user:group", "uid:gid", "user:gid" or "uid:group".
    """
    parts = user_spec.split(":")
    user_arg = parts[0]
    group_arg = parts[1] if len(parts) > 1 else ""
    uid_arg, is_uid = parse_numeric(user_arg)
    gid_arg, is_gid = parse_numeric(group_arg)

    uid, gid, home = 0, 0, ""
    sgids: tuple[int, ...] = ()
    users = []
    for u in parse_passwd(passwd) if passwd is not None else ():
        if user_arg == "":
            match = u.uid == uid
        elif is_uid:
            match = u.uid == uid_arg
        else:
            match = u.name == user_arg
        if match:
            users.append(u)

    matched_name = ""
    if users:
        matched_name = users[0].name
        uid, gid, home = users[0].uid, users[0].gid, users[0].home
    elif user_arg != "":
        if not is_uid:
            raise SpecError(f"unable to find user {user_arg}: {ERR_NO_PASSWD}")
        uid = uid_arg

    if group_arg != "" or matched_name != "":
        groups = []
        for g in parse_group(group) if group is not None else ():
            if group_arg == "":
                match = matched_name in g.members
            elif is_gid:
                match = g.gid == gid_arg
            else:
                match = g.name == group_arg
            if match:
                groups.append(g)
        if group_arg != "":
            if groups:
                gid = groups[0].gid
            elif not is_gid:
                raise SpecError(f"unable to find group {group_arg}: {ERR_NO_GROUP}")
            else:
                gid = gid_arg
        elif groups:
            sgids = tuple(g.gid for g in groups)
    return ExecUser(uid=uid, gid=gid, sgids=sgids, home=home)


def get_additional_groups(additional: Sequence[str], group: str | None) -> list[int]:
    """moby/sys/user GetAdditionalGroups: names must exist in /etc/group, numeric ids may not.

    Returns each gid once, in the order of `additional` (moby returns them in map order)."""
    args = [(name, *parse_numeric(name)) for name in additional]
    entries = parse_group(group) if group is not None else []
    gids: list[int] = []
    for name, num, is_num in args:
        found = next(
            (g for g in entries if (g.gid == num if is_num else g.name == name)),
            None,
        )
        if found is not None:
            if found.gid < MIN_ID or found.gid > MAX_ID:
                raise SpecError(ERR_RANGE)
            gid = found.gid
        elif not is_num:
            raise SpecError(f"unable to find group {name}: {ERR_NO_GROUP}")
        else:
            gid = num
        if gid not in gids:
            gids.append(gid)
    return gids


def resolve_process_user(
    user_spec: str, group_add: Sequence[str] | None, passwd: str | None, group: str | None
) -> ProcessUser:
    """dockerd's getUser: uid/gid from GetExecUser; additionalGids = [gid] + the user's
    supplementary groups + the --group-add groups."""
    exec_user = get_exec_user(user_spec, passwd, group)
    extra = get_additional_groups(group_add, group) if group_add else []
    gids = (exec_user.gid, *exec_user.sgids, *extra)
    return ProcessUser(uid=exec_user.uid, gid=exec_user.gid, additional_gids=gids)
