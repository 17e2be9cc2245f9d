"""Perform the mounts that snapshotters describe, and undo them."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Sequence
from pathlib import Path

from containers.engine.linux.syscalls import (
    MNT_DETACH,
    MS_BIND,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    MS_STRICTATIME,
    Syscalls,
)
from containers.engine.snapshots.base import Mount

# Options that are mount(2) flags rather than filesystem data; "rw" is the default and sets none.
_FLAGS = {
    "ro": MS_RDONLY,
    "rw": 0,
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
    "strictatime": MS_STRICTATIME,
    "bind": MS_BIND,
    "rbind": MS_BIND | MS_REC,
}


def mount_all(mounts: Sequence[Mount], target: Path, syscalls: Syscalls | None = None) -> None:
    """Perform `mounts` on `target` in order, each on top of the previous; undo them all if one fails."""
    calls = syscalls or Syscalls()
    done = 0
    try:
        for mount in mounts:
            _mount(mount, target, calls)
            done += 1
    except BaseException:
        for _ in range(done):
            unmount(target, calls)
        raise


def _mount(mount: Mount, target: Path, calls: Syscalls) -> None:
    flags = 0
    data: list[str] = []
    for option in mount.options:
        if option in _FLAGS:
            flags |= _FLAGS[option]
        else:
            data.append(option)
    try:
        if mount.type == "bind" or flags & MS_BIND:
            # mount(2), "Creating a bind mount": flags other than MS_REC are ignored when the bind
            # is made, so read-only (and nosuid, ...) takes a second call with MS_REMOUNT | MS_BIND.
            calls.mount(mount.source, target, None, MS_BIND | (flags & MS_REC))
            if flags & ~(MS_BIND | MS_REC):
                calls.mount(None, target, None, MS_REMOUNT | MS_BIND | (flags & ~MS_REC))
        else:
            calls.mount(mount.source, target, mount.type, flags, ",".join(data) or None)
    except OSError as err:
        raise OSError(err.errno, f"failed to mount {mount.type} on {target}: {err.strerror}") from err


def unmount(target: Path, syscalls: Syscalls | None = None) -> None:
    """Unmount the topmost mount on `target`; nothing happens if nothing is mounted there.

    A busy mount (a process still has its cwd or a file in it) is detached instead: it disappears
    from the tree now and the kernel frees it when the last user goes (umount2(2), MNT_DETACH).
    """
    calls = syscalls or Syscalls()
    try:
        calls.umount2(target, 0)
    except OSError as err:
        # umount2(2): EINVAL means "target is not a mount point".
        if err.errno == errno.EINVAL:
            return
        if err.errno != errno.EBUSY:
            raise
        calls.umount2(target, MNT_DETACH)


def is_mounted(target: Path) -> bool:
    """Return whether something is mounted on `target`, as /proc/self/mountinfo (proc(5)) lists it."""
    point = os.fsencode(os.path.realpath(target))
    with open("/proc/self/mountinfo", "rb") as f:
        return any(_unescape(line.split(b" ")[4]) == point for line in f)


def _unescape(field: bytes) -> bytes:
    r"""Undo mountinfo's octal escapes of space, tab, newline and backslash (`\040` for a space)."""
    return re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), field)
