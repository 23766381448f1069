"""User and group resolution against an image's /etc/passwd and /etc/group (moby/sys/user)."""

from __future__ import annotations

import pytest

from pymoby import errdefs
from pymoby.runtime import users
from pymoby.runtime.defaults import SpecError

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/sh
bob:x:1001:100::/home/bob:/bin/sh
dup:x:2000:2000::/a:/bin/sh
dup:x:2001:2001::/b:/bin/sh
junk:x:notanumber:7::/j:/bin/sh
"""

GROUP = """\
# comment lines are skipped in /etc/group
root:x:0:
users:x:100:alice
staff:x:50:alice,bob
alice:x:1000:
video:x:44:bob
"""


@pytest.mark.parametrize(
    ("spec", "uid", "gid", "additional"),
    [
        ("", 0, 0, (0,)),  # default: uid 0 as found in passwd
        ("root", 0, 0, (0,)),
        ("alice", 1000, 1000, (1000, 100, 50)),  # primary gid first, then member groups
        ("1000", 1000, 1000, (1000, 100, 50)),  # numeric ids are looked up by uid
        ("bob", 1001, 100, (100, 50, 44)),
        ("alice:staff", 1000, 50, (50,)),  # explicit group: no supplementary groups
        ("alice:44", 1000, 44, (44,)),
        ("1000:1000", 1000, 1000, (1000,)),
        ("4242", 4242, 0, (0,)),  # a uid without an entry is allowed
        ("4242:4343", 4242, 4343, (4343,)),
        ("dup", 2000, 2000, (2000,)),  # first match wins
        ("junk", 0, 7, (7,)),  # an unparsable uid reads as 0, as Go's parser
        ("alice:staff:extra", 1000, 50, (50,)),  # fields after the group are ignored
    ],
)
def test_resolution(spec: str, uid: int, gid: int, additional: tuple[int, ...]) -> None:
    user = users.resolve_process_user(spec, None, PASSWD, GROUP)
    assert (user.uid, user.gid, user.additional_gids) == (uid, gid, additional)


@pytest.mark.parametrize(
    ("spec", "group_add", "additional"),
    [
        ("alice", ["video"], (1000, 100, 50, 44)),
        ("alice", ["video", "44", "999"], (1000, 100, 50, 44, 999)),  # each gid once
        ("root", ["staff", "12345"], (0, 50, 12345)),
    ],
)
def test_group_add(spec: str, group_add: list[str], additional: tuple[int, ...]) -> None:
    user = users.resolve_process_user(spec, group_add, PASSWD, GROUP)
    assert user.additional_gids == additional


def test_missing_files() -> None:
    # No /etc/passwd or /etc/group: names cannot resolve, numbers can.
    assert users.resolve_process_user("", None, None, None).additional_gids == (0,)
    user = users.resolve_process_user("1000:1000", ["5"], None, None)
    assert (user.uid, user.gid, user.additional_gids) == (1000, 1000, (1000, 5))
    with pytest.raises(SpecError, match=r"^unable to find user alice: no matching entries"):
        users.resolve_process_user("alice", None, None, None)


@pytest.mark.parametrize(
    ("spec", "group_add", "message"),
    [
        ("nosuch", None, "unable to find user nosuch: no matching entries in passwd file"),
        ("alice:nogroup", None, "unable to find group nogroup: no matching entries in group file"),
        ("root", ["nogroup"], "unable to find group nogroup: no matching entries in group file"),
        ("-1", None, "uids and gids must be in range 0-2147483647"),
        ("2147483648", None, "uids and gids must be in range 0-2147483647"),
        ("root:-5", None, "uids and gids must be in range 0-2147483647"),
        ("root", ["99999999999"], "uids and gids must be in range 0-2147483647"),
    ],
)
def test_errors(spec: str, group_add: list[str] | None, message: str) -> None:
    with pytest.raises(SpecError) as exc:
        users.resolve_process_user(spec, group_add, PASSWD, GROUP)
    assert str(exc.value) == message
    assert isinstance(exc.value, errdefs.System)  # dockerd fails the start with a 500


def test_parsers_follow_go() -> None:
    assert users.parse_passwd("  a:x:1:2:g:/h:/s  \r\n\n#c:x:3:4::/:/\n")[1].name == "#c"
    assert users.parse_passwd("short:x:5\n")[0] == users.PasswdEntry("short", 5, 0, "")
    groups = users.parse_group("#x:x:1:\n g:x:+7:a,b \n")
    assert groups == [users.GroupEntry("g", 7, ("a", "b"))]
    assert users.parse_numeric("+12") == (12, True)
    assert users.parse_numeric("1_0") == (0, False)
    assert users.parse_numeric("") == (0, False)
