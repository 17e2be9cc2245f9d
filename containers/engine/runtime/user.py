"""Resolve `--user` (name, uid, name:group, uid:gid) against the image's /etc/passwd and /etc/group."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from containers.engine.errors import InvalidArgument
from containers.engine.runtime.rootfs import secure_join


@dataclass(frozen=True)
class ExecUser:
    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    home: str


def _entries(rootfs: str, path: str) -> list[list[str]]:
    try:
        with open(secure_join(rootfs, path), errors="replace") as f:
            return [line.rstrip("\n").split(":") for line in f if line.strip() and not line.startswith("#")]
    except OSError:
        return []


def resolve_user(rootfs: str, spec: str) -> ExecUser:
    """Resolve a Docker `User` value as runc's user.GetExecUser does; unknown names are an error."""
    user_part, _, group_part = (spec or "0").partition(":")
    passwd = [e for e in _entries(rootfs, "/etc/passwd") if len(e) >= 7]
    groups = [e for e in _entries(rootfs, "/etc/group") if len(e) >= 3]
    entry = next((e for e in passwd if e[0] == user_part or (user_part.isdigit() and e[2] == user_part)), None)
    if entry is None and not user_part.isdigit():
        raise InvalidArgument(f"unable to find user {user_part}: no matching entries in passwd file")
    uid = int(user_part) if entry is None else int(entry[2])
    gid = int(entry[3]) if entry is not None else 0
    home = entry[5] if entry is not None else "/"
    if group_part:
        group = next((g for g in groups if g[0] == group_part or (group_part.isdigit() and g[2] == group_part)), None)
        if group is None and not group_part.isdigit():
            raise InvalidArgument(f"unable to find group {group_part}: no matching entries in group file")
        gid = int(group_part) if group is None else int(group[2])
    # An explicit group replaces the groups /etc/group makes the user a member of.
    name = entry[0] if entry is not None and not group_part else None
    members = {int(g[2]) for g in groups if name is not None and name in g[3].split(",") and g[2].isdigit()}
    # The primary group is a supplementary one too, as moby sets them since CVE-2023-25173: `id`
    # shows `groups=0(root),10(wheel)` for root in busybox, as on Docker.
    additional = (gid, *sorted(members - {gid}))
    return ExecUser(uid, gid, additional, home)


def home_directory(rootfs: str, uid: int) -> str:
    """Return the home /etc/passwd gives `uid`, or "/" when it has no entry (runc's default ExecUser.Home)."""
    passwd = [e for e in _entries(rootfs, "/etc/passwd") if len(e) >= 7]
    return next((e[5] for e in passwd if e[2] == str(uid)), "/")


def environ(env: Sequence[str], uid: int, root: str = "/") -> dict[str, str]:
    """Turn OCI `KEY=value` strings into the mapping execve wants; a later duplicate wins.

    Without HOME in the spec, it is the user's home from the container's /etc/passwd (under
    `root`), as runc sets it (libcontainer/init_linux.go, setupUser): Docker leaves HOME to the runtime.
    """
    environ = dict(item.split("=", 1) for item in env if "=" in item)
    if "HOME" not in environ:
        environ["HOME"] = home_directory(root, uid)
    return environ
