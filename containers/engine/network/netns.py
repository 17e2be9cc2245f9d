"""Network namespaces kept alive by a bind mount of their nsfs file, as `ip netns add` does.

The engine gives every container that does not share the host's network a namespace of its own
with loopback up, prepared before the runtime runs, so that runc and our runtime alike just join
it by path (and the bridge networks of a later issue plug into the same place).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
from pathlib import Path

from containers.engine.errors import EngineError
from containers.engine.linux import syscalls as sc

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def loopback_up() -> None:
    """Bring `lo` up in the calling process's network namespace (netdevice(7), SIOCSIFFLAGS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))


def create_netns(path: Path) -> None:
    """Create a network namespace with loopback up and pin it at `path`."""
    path.touch(mode=0o444)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            # unshare(2) moves only this child; its mount namespace is still the host's, so the
            # bind mount that pins the new namespace is visible to everyone.
            sc.unshare(sc.CLONE_NEWNET)
            loopback_up()
            sc.mount("/proc/self/ns/net", path, None, sc.MS_BIND)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        path.unlink(missing_ok=True)
        raise EngineError(f"failed to create network namespace at {path}")


def remove_netns(path: Path) -> None:
    """Unpin and remove a namespace made by `create_netns`; a missing one is not an error."""
    try:
        sc.umount2(path, sc.MNT_DETACH)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOENT):
            raise
    path.unlink(missing_ok=True)
