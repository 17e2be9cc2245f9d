"""Talk to the shim server and to monitors: start the server when needed, spawn, attach, wait."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from containers.engine.errors import Unavailable
from containers.engine.runtime.state import process_start_time
from containers.engine.shim import protocol
from containers.engine.shim.monitor import Config
from containers.engine.shim.paths import short_path


def request(path: Path, message: dict[str, Any], timeout: float | None = 30.0) -> tuple[dict[str, Any], socket.socket]:
    """Send one request line to the socket at `path`; return the reply line and the open connection."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        with short_path(path) as name:
            sock.connect(name)
        sock.sendall(json.dumps(message).encode() + b"\n")
        return protocol.read_line(sock), sock
    except BaseException:
        sock.close()
        raise


class ShimServer:
    """The node's shim server at `socket_path`, started on first use."""

    def __init__(self, socket_path: Path, log_path: Path) -> None:
        self.socket_path = socket_path
        self.log_path = log_path

    def ping(self) -> int | None:
        try:
            reply, sock = request(self.socket_path, {"op": "ping"}, timeout=2)
        except (OSError, ValueError):
            return None
        sock.close()
        return int(reply["pid"])

    def ensure(self) -> None:
        """Start the server unless one answers; a lock keeps two callers from starting two."""
        if self.ping() is not None:
            return
        self.socket_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.socket_path.with_name("shim.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.ping() is not None:
                return
            with open(self.log_path, "ab") as log:
                subprocess.run(
                    [sys.executable, "-m", "containers.engine.shim.server", "--socket", str(self.socket_path)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True,
                    cwd="/", env={**os.environ, "PYTHONPATH": _package_root()}, check=True,
                )  # fmt: skip
            deadline = time.monotonic() + 15
            while self.ping() is None:
                if time.monotonic() > deadline:
                    raise Unavailable(f"shim server did not start; see {self.log_path}")
                time.sleep(0.01)

    def spawn(self, config: Config, attach: dict[str, bool] | None = None) -> Stream | dict[str, Any]:
        """Start a monitor for a container; return its answer (`pid`, or `error` with `exit_code`).

        With `attach` ({"stdin", "stdout", "stderr"}), return the attach stream instead (its
        `reply` is the answer), open from the container's first byte of output. The server is
        started on first use (no ping first: a start is one round trip).
        """
        message = {"op": "spawn", "config": asdict(config), "attach": attach}
        try:
            reply, sock = request(self.socket_path, message, timeout=60)
        except (FileNotFoundError, ConnectionRefusedError):
            self.ensure()
            reply, sock = request(self.socket_path, message, timeout=60)
        return stream_or_reply(sock, reply, attach)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the server and wait until it has exited (monitors keep running)."""
        try:
            reply, sock = request(self.socket_path, {"op": "shutdown"}, timeout=timeout)
            sock.close()
        except (OSError, ValueError):
            return
        deadline = time.monotonic() + timeout
        # Not our child, so a zombie until init reaps it: gone once it is no longer running.
        while process_start_time(int(reply["pid"])) is not None and time.monotonic() < deadline:
            time.sleep(0.005)


def stream_or_reply(
    sock: socket.socket, reply: dict[str, Any], attach: dict[str, bool] | None
) -> Stream | dict[str, Any]:
    """Return a start's answer: the attach stream if one was asked for and the start worked, else the reply."""
    if attach and "error" not in reply:
        sock.settimeout(None)
        return Stream(sock, reply)
    sock.close()
    return reply


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[3])


class Stream:
    """The client side of an attach or exec connection: frames in, frames out (see protocol.py)."""

    def __init__(self, sock: socket.socket, reply: dict[str, Any]) -> None:
        self.sock = sock
        self.reply = reply
        self.reader = protocol.FrameReader()
        self.exit_code: int | None = None

    def write(self, data: bytes) -> None:
        self.sock.sendall(protocol.pack(protocol.STDIN, data))

    def close_stdin(self) -> None:
        self.sock.sendall(protocol.pack(protocol.CLOSE_STDIN))

    def resize(self, height: int, width: int) -> None:
        self.sock.sendall(protocol.pack_json(protocol.RESIZE, {"h": height, "w": width}))

    def hang_up(self) -> None:
        """Tell an exec's monitor that its user has left; the stream still ends with the exit code."""
        self.sock.sendall(protocol.pack(protocol.HANGUP))

    def receive(self) -> list[tuple[int, bytes]] | None:
        """Read once from the socket; return the whole frames it completed, or None at the end."""
        data = self.sock.recv(65536)
        if not data:
            return None
        frames = self.reader.feed(data)
        for kind, payload in frames:
            if kind == protocol.EXIT:
                self.exit_code = int(json.loads(payload)["exit_code"])
        return frames

    def frames(self) -> Iterator[tuple[int, bytes]]:
        """Yield (kind, payload) until the monitor ends the stream; EXIT sets `exit_code`."""
        while (frames := self.receive()) is not None:
            yield from frames

    def collect(self) -> tuple[bytes, bytes]:
        """Read to the end; return (stdout, stderr)."""
        out, err = bytearray(), bytearray()
        for kind, payload in self.frames():
            if kind == protocol.STDOUT:
                out += payload
            elif kind == protocol.STDERR:
                err += payload
        return bytes(out), bytes(err)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
