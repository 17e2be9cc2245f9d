"""Loopback in a new network namespace: down when the kernel creates it, up in every container.

The runtime brings it up in stage 1, right after unshare(CLONE_NEWNET), as runc does; the bridge
networks of a later issue add their interfaces to the same namespace.
"""

from __future__ import annotations

import fcntl
import socket
import struct

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = struct.Struct("16sH22x")


def loopback_up() -> None:
    """Bring `lo` up in the calling process's network namespace (netdevice(7), SIOCSIFFLAGS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        flags = _IFREQ.unpack(fcntl.ioctl(sock, _SIOCGIFFLAGS, _IFREQ.pack(b"lo", 0)))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, _IFREQ.pack(b"lo", flags | _IFF_UP))
