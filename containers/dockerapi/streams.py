"""Docker's stdio streams: 8-byte multiplexed frames or raw bytes, and the pipe of a hijacked connection.

A container or exec made with `Tty=false` streams frames with a header of 8 bytes (stream type:
1 stdout, 2 stderr, 3 an error; three zero bytes; the payload's length, big-endian); with
`Tty=true` the bytes go out raw (the terminal merged stderr already). Stdin from the client is
always raw. The clients choose the framing from the Tty they know, not from the Content-Type.
"""

from __future__ import annotations

import select
import socket
import struct
from collections.abc import Callable

from containers.engine.shim import protocol
from containers.engine.shim.client import Stream

RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"
STDOUT, STDERR, SYSTEMERR = 1, 2, 3
_HEADER = struct.Struct(">BxxxI")
_KINDS = {protocol.STDOUT: STDOUT, protocol.STDERR: STDERR}


def content_type(tty: bool, version: str) -> str:
    """Return moby's media type: multiplexed from API 1.42 on when there is no terminal, raw otherwise."""
    major, _, minor = version.partition(".")
    multiplexed = not tty and (int(major), int(minor or 0)) >= (1, 42)
    return MULTIPLEXED_STREAM if multiplexed else RAW_STREAM


def frame(kind: int, payload: bytes) -> bytes:
    return _HEADER.pack(kind, len(payload)) + payload


def encode(kind: int, payload: bytes, tty: bool) -> bytes:
    """Encode one stream's bytes (STDOUT, STDERR, SYSTEMERR) for a client: raw with a terminal, framed without."""
    return payload if tty else frame(kind, payload)


def close_client(sock: socket.socket) -> None:
    """Half-close, then close: both clients read until EOF."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    sock.close()


def pipe(
    client: socket.socket,
    received: bytes,
    stream: Stream,
    *,
    tty: bool,
    stdin: bool,
    write: Callable[[bytes], None] | None = None,
    close_stdin: Callable[[], None] | None = None,
) -> None:
    """Copy the client's bytes to the process's stdin and its output to the client until either ends.

    Return when the stream ends (its EXIT frame sets `stream.exit_code`) or the client can no
    longer be written to. A read EOF from the client means that its stdin ended, not that it went
    away: the docker CLI half-closes right after the 101 when it has no stdin to send, and reads
    the output until we close. `write` and `close_stdin` default to the stream's own (an exec
    passes locked ones, as resizes share its stream).
    """
    write = write or stream.write
    close_stdin = close_stdin or stream.close_stdin
    reading = True
    try:
        if received and stdin:
            write(received)
    except OSError:
        reading = False
    while True:
        readable, _, _ = select.select([stream.sock, client] if reading else [stream.sock], [], [])
        if client in readable:
            try:
                data = client.recv(65536)
            except OSError:
                data = b""
            try:
                if data and stdin:
                    write(data)
                elif not data:
                    reading = False
                    if stdin:
                        close_stdin()
            except OSError:
                reading = False
        if stream.sock in readable:
            try:
                frames = stream.receive()
            except OSError:
                frames = None
            if frames is None:
                return
            out = b"".join(encode(_KINDS[kind], payload, tty) for kind, payload in frames if kind in _KINDS)
            if out:
                try:
                    client.sendall(out)
                except OSError:
                    return
