"""The thin syscall layer: one function per system call the engine needs and Python does not offer.

Python 3.11 has no `os.mount`, `os.unshare`, `os.setns` or `os.pivot_root`, so they are called
through ctypes here. Every call goes through `libc_call()`, which retries on EINTR and turns a
failure into `OSError(errno, os.strerror(errno), path)`, the same exception `os` functions raise.

Code above this layer does not call these functions directly: it receives a `Syscalls` object,
so that unit tests can pass a recording fake and never need root.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from typing import Any

StrPath = str | os.PathLike[str]

# Mount flags, from <sys/mount.h>; see mount(2).
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000

# umount2(2) flags.
MNT_FORCE = 0x1
MNT_DETACH = 0x2
MNT_EXPIRE = 0x4
UMOUNT_NOFOLLOW = 0x8

# Namespace types, from <sched.h>; see unshare(2) and setns(2).
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# A send buffer beyond the rmem/wmem limits, for root (socket(7)); Python's socket module does not name it.
SO_SNDBUFFORCE = 32

# glibc has no pivot_root() wrapper (pivot_root(2), "NOTES"), so it is called through syscall(2).

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def libc_call(name: str, *args: Any, path: StrPath | None = None) -> int:
    """Call the libc function `name`, retrying on EINTR, and raise OSError on failure.

    A signal can interrupt a blocking call before it did anything (signal(7), "Interruption of
    system calls"); retrying is what the `os` module does too (PEP 475).
    """
    function = getattr(_libc, name)
    while True:
        result = function(*args)
        if result != -1:
            return int(result)
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise OSError(err, os.strerror(err), None if path is None else os.fspath(path))


def _bytes(value: StrPath | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(source: StrPath | None, target: StrPath, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    """Attach a filesystem, a bind mount or a propagation change to `target` (mount(2))."""
    libc_call(
        "mount",
        ctypes.c_char_p(_bytes(source)),
        ctypes.c_char_p(_bytes(target)),
        ctypes.c_char_p(_bytes(fstype)),
        ctypes.c_ulong(flags),
        ctypes.c_char_p(_bytes(data)),
        path=target,
    )


def umount2(target: StrPath, flags: int = 0) -> None:
    """Detach the topmost mount at `target` (umount2(2))."""
    libc_call("umount2", ctypes.c_char_p(_bytes(target)), ctypes.c_int(flags), path=target)


def unshare(flags: int) -> None:
    """Move the calling thread into new namespaces of the given CLONE_NEW* types (unshare(2)).

    CLONE_NEWPID affects only children created afterwards, so callers fork after it.
    """
    libc_call("unshare", ctypes.c_int(flags))


_PR_SET_CHILD_SUBREAPER = 36


def set_child_subreaper() -> None:
    """Make orphaned descendants of the caller its children rather than init's (prctl(2)).

    A monitor needs this: the runtime forks the container's init from an intermediate process
    that exits, and without it the container would be reparented away from its monitor.
    """
    libc_call("prctl", ctypes.c_int(_PR_SET_CHILD_SUBREAPER), ctypes.c_ulong(1), ctypes.c_ulong(0),
               ctypes.c_ulong(0), ctypes.c_ulong(0))


class Syscalls:
    """The kernel calls the engine makes, as methods so that tests can inject a recording fake."""

    def mount(
        self, source: StrPath | None, target: StrPath, fstype: str | None, flags: int = 0, data: str | None = None
    ) -> None:
        """See `mount()`."""
        mount(source, target, fstype, flags, data)

    def umount2(self, target: StrPath, flags: int = 0) -> None:
        """See `umount2()`."""
        umount2(target, flags)

    def unshare(self, flags: int) -> None:
        """See `unshare()`."""
        unshare(flags)

