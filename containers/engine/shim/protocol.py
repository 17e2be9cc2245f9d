"""Frames on a monitor connection once a request has switched it to streaming (attach, exec).

Each frame is a 5-byte header, `kind` (1 byte) and payload length (4 bytes, big-endian), then the
payload. Clients send STDIN, CLOSE_STDIN, RESIZE and HANGUP (an exec's client has left: its
terminal is closed, or its stdin); the monitor sends STDOUT, STDERR and, last, EXIT
(`{"exit_code": N}`) or ERROR (a message). The Docker API edge turns these into Docker's
8-byte multiplexed frames or raw bytes; the websocket edge into websocket messages.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

STDIN, STDOUT, STDERR, RESIZE, CLOSE_STDIN, EXIT, ERROR, HANGUP = range(8)
_HEADER = struct.Struct(">BI")
MAX_LINE = 1 << 20


def read_line(sock: socket.socket) -> dict[str, Any]:
    """Read one JSON line (a request, a reply) and nothing after it: frames that follow belong to a stream.

    Peeks, then takes exactly the line: one or two system calls, where reading a byte at a time
    took one a byte.
    """
    data = b""
    while True:
        peeked = sock.recv(65536, socket.MSG_PEEK)
        if not peeked:
            raise ConnectionError("connection closed before a whole line")
        end = peeked.find(b"\n")
        data += sock.recv(end + 1 if end >= 0 else len(peeked))
        if end >= 0:
            return json.loads(data)
        if len(data) > MAX_LINE:
            raise ValueError("line too long")


def pack(kind: int, payload: bytes = b"") -> bytes:
    return _HEADER.pack(kind, len(payload)) + payload


def pack_json(kind: int, value: Any) -> bytes:
    return pack(kind, json.dumps(value).encode())


class FrameReader:
    """Reassemble frames from a byte stream fed in arbitrary pieces."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= _HEADER.size:
            kind, size = _HEADER.unpack_from(self._buffer)
            end = _HEADER.size + size
            if len(self._buffer) < end:
                break
            frames.append((kind, self._buffer[_HEADER.size : end]))
            self._buffer = self._buffer[end:]
        return frames
