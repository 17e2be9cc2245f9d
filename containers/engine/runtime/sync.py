"""The messages between the runtime and webengine-init (init.c) while a container is created or a
process is exec'd into one: over one `socketpair(AF_UNIX, SOCK_SEQPACKET)`, the plan goes one way
(plan.py), then one JSON object a message comes back ({"type": "pid"}, {"type": "ready"} or
{"type": "error"}), as runc's sync pipe does. plan.py shows the whole sequence.

A console (TTY) master goes to the console socket the caller gave, as the OCI runtime command
line defines: its name, the descriptor in SCM_RIGHTS.
"""

from __future__ import annotations

import array
import json
import os
import socket
from typing import Any

from containers.engine.errors import EngineError


class SyncError(EngineError):
    """Init failed before the container could run; the message is init's own."""


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """Return (parent end, child end); both close on exec, so a successful execve closes init's."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send_fd(sock: socket.socket, name: str, fd: int) -> None:
    """Send one file descriptor as runc does on a console socket: the file's name, the fd in SCM_RIGHTS."""
    sock.sendmsg([name.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])


def recv_fd(sock: socket.socket) -> tuple[str, int]:
    """Receive what `send_fd` sent (or what runc sends to a console socket): (name, fd)."""
    fds = array.array("i")
    data, ancdata, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: fds.itemsize])
    if not fds:
        raise SyncError("no file descriptor received on the console socket")
    return data.decode(errors="replace"), fds[0]


def recv(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """Return the next message and any file descriptors with it; (None, []) when the peer closed."""
    fds = array.array("i")
    data, ancdata, _flags, _addr = sock.recvmsg(65536, socket.CMSG_SPACE(4 * fds.itemsize))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    if not data:
        return None, list(fds)
    return json.loads(data), list(fds)


def expect(sock: socket.socket, kind: str) -> dict[str, Any]:
    """Return the next message, which must be of `kind`; raise SyncError with init's error otherwise."""
    message, fds = recv(sock)
    for fd in fds:
        os.close(fd)
    if message is None:
        raise SyncError(f"container init exited before sending {kind}")
    if message.get("type") == "error":
        raise SyncError(message.get("message", "container init failed"))
    if message.get("type") != kind:
        raise SyncError(f"container init sent {message.get('type')!r}, expected {kind!r}")
    return message
