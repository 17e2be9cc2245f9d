"""Terminal and attach sessions: a monitor's exec or attach stream bridged to a consumer, both ways.

The stream (shim/protocol.py frames on a unix socket) is read by the loop as an asyncio protocol;
output that arrives while a message is on its way goes in the next one, so a fast writer costs
few messages and a keystroke's echo leaves at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
from typing import Any

from containers.engine.errors import Conflict, EngineError, FailedPrecondition
from containers.engine.lifecycle import ContainerNotFound, State
from containers.engine.runtime.state import process_start_time
from containers.engine.shim import protocol
from containers.engine.shim.client import Stream
from containers.live.protocol import Close, session_ended
from containers.live.session import Refused, Session

# Output waiting for a slow consumer beyond this stops reading the stream (the monitor buffers).
_MAX_PENDING = 1 << 20
# After a hang-up, how long a process has to exit before it is killed.
_HANG_UP_GRACE_S = 2.0
# `auto`: bash when the image has it, else sh.
AUTO_COMMAND = ["sh", "-c", "if command -v bash >/dev/null 2>&1; then exec bash; fi; exec sh"]


def command_line(choice: str) -> list[str]:
    """Return the argv for a terminal's command: `auto`, `sh`, `bash`, or a command line of one's own."""
    if choice == "auto":
        return AUTO_COMMAND
    argv = shlex.split(choice)
    if not argv:
        raise Refused(Close.BAD_REQUEST, "the command is empty")
    return argv


class _Pipe(asyncio.Protocol):
    """The frames of one stream, read by the loop: output gathered for the next send, and how it ended."""

    def __init__(self) -> None:
        self.frames = protocol.FrameReader()
        self.output = bytearray()
        self.exit_code: int | None = None
        self.closed = False
        self.changed = asyncio.Event()
        self.transport: asyncio.Transport | None = None
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        for kind, payload in self.frames.feed(data):
            if kind in (protocol.STDOUT, protocol.STDERR):
                self.output += payload
            elif kind == protocol.EXIT:
                self.exit_code = json.loads(payload).get("exit_code")
            elif kind == protocol.ERROR:
                self.output += payload + b"\r\n"
        if len(self.output) > _MAX_PENDING and self.transport is not None and not self._paused:
            self.transport.pause_reading()
            self._paused = True
        self.changed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.changed.set()

    def take(self) -> bytes:
        data = bytes(self.output)
        self.output.clear()
        if self._paused and self.transport is not None:
            self.transport.resume_reading()
            self._paused = False
        return data

    def send(self, kind: int, payload: bytes = b"") -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(protocol.pack(kind, payload))

    async def wait_closed(self) -> None:
        while not self.closed:
            self.changed.clear()
            self.output.clear()
            await self.changed.wait()


class _StreamSession(Session):
    """Relay a stream: output to the consumer as it comes, input and resizes to the stream."""

    def __init__(self, server: Any, message: dict[str, Any]) -> None:
        super().__init__(server, message)
        self.pipe: _Pipe | None = None
        self.early: list[tuple[int, bytes]] = []
        self.rows, self.cols = int(message.get("rows") or 24), int(message.get("cols") or 80)

    async def open(self) -> tuple[Stream, dict[str, Any]]:
        """Open the stream; return it and what the page is told about it."""
        raise NotImplementedError

    async def run(self) -> tuple[int, str]:
        try:
            stream, described = await self.open()
        except ContainerNotFound:
            raise Refused(Close.NOT_FOUND, "the container was removed") from None
        except Conflict as err:
            raise Refused(Close.NOT_RUNNING, str(err)) from None
        except OSError:
            # The monitor's socket is gone: the container stopped between our check and the request.
            raise Refused(Close.NOT_RUNNING, "the container is not running") from None
        loop = asyncio.get_running_loop()
        try:
            _, self.pipe = await loop.create_unix_connection(_Pipe, sock=stream.sock)
        except BaseException:
            stream.close()
            raise
        for kind, payload in self.early:
            self.pipe.send(kind, payload)
        self.early.clear()
        await self.reply("live.opened", **described)
        pipe = self.pipe
        while True:
            # Look before waiting: output and the end may both have come while a message was on its way.
            pipe.changed.clear()
            if pipe.output:
                await self.reply("live.output", data=pipe.take())
            elif pipe.closed:
                return await self.ended(pipe.exit_code)
            else:
                await pipe.changed.wait()

    async def ended(self, exit_code: int | None) -> tuple[int, str]:
        raise NotImplementedError

    def send(self, kind: int, payload: bytes = b"") -> None:
        if self.pipe is None:
            self.early.append((kind, payload))
        else:
            self.pipe.send(kind, payload)

    async def state(self, settle: bool) -> State | None:
        """Return the container's state (None once removed); with `settle`, after it has had a moment to stop."""
        containers = self.server.containers
        try:
            if settle:
                return await asyncio.to_thread(containers.wait, self.container_id, 1.0)
            return await asyncio.to_thread(containers.state, self.container_id)
        except ContainerNotFound:
            return None


class TerminalSession(_StreamSession):
    """A shell (or a command of one's choice) in the container, on a PTY of the page's size."""

    kind = "terminal"

    def __init__(self, server: Any, message: dict[str, Any]) -> None:
        super().__init__(server, message)
        self.pid = 0
        self.started: int | None = None

    async def open(self) -> tuple[Stream, dict[str, Any]]:
        choice = str(self.options.get("command") or "auto")
        argv = command_line(choice)
        user = str(self.options.get("user") or "")
        try:
            stream = await asyncio.to_thread(
                self.server.containers.exec, self.container_id, argv, user=user, env=["TERM=xterm-256color"],
                tty=True, stdin=True, console_size=[self.rows, self.cols],
            )  # fmt: skip
        except (ContainerNotFound, Conflict):
            raise
        except FailedPrecondition as err:
            # The monitor could not start the command: Docker's 127 when it is missing, else 126.
            missing = "not found" in str(err) or "no such file" in str(err)
            raise Refused(session_ended(127 if missing else 126), str(err)) from None
        except EngineError as err:
            raise Refused(Close.BAD_REQUEST, str(err)) from None
        self.pid = int(stream.reply.get("pid") or 0)
        self.started = process_start_time(self.pid) if self.pid else None
        return stream, {"command": choice, "user": user, "pid": self.pid, "tty": True}

    def input(self, data: bytes) -> None:
        self.send(protocol.STDIN, data)

    def resize(self, rows: int, cols: int) -> None:
        self.send(protocol.RESIZE, json.dumps({"h": rows, "w": cols}).encode())

    async def ended(self, exit_code: int | None) -> tuple[int, str]:
        # A shell killed by a signal, or gone without an exit code, most often went with its container.
        state = await self.state(settle=exit_code is None or exit_code > 128)
        if state is None:
            return Close.NOT_FOUND, "the container was removed"
        if not state.running:
            return Close.NOT_RUNNING, f"the container stopped (exit code {state.exit_code})"
        code = 255 if exit_code is None else exit_code
        return session_ended(code), f"the session ended (exit code {code})"

    async def release(self) -> None:
        pipe = self.pipe
        if pipe is None or pipe.closed:
            return
        # The monitor closes the PTY: the kernel sends the shell SIGHUP, as sshd does when a client goes.
        pipe.send(protocol.HANGUP)
        try:
            await asyncio.wait_for(pipe.wait_closed(), _HANG_UP_GRACE_S)
        except TimeoutError:
            if self.started is not None and process_start_time(self.pid) == self.started:
                os.kill(self.pid, signal.SIGKILL)
            try:
                await asyncio.wait_for(pipe.wait_closed(), _HANG_UP_GRACE_S)
            except TimeoutError:
                pass
        finally:
            if pipe.transport is not None:
                pipe.transport.close()


class AttachSession(_StreamSession):
    """The container's main process: its output from now on, and its stdin when it was made with one."""

    kind = "attach"

    def __init__(self, server: Any, message: dict[str, Any]) -> None:
        super().__init__(server, message)
        self.tty = False
        self.stdin = False

    async def open(self) -> tuple[Stream, dict[str, Any]]:
        containers = self.server.containers
        record = await asyncio.to_thread(containers.get, self.container_id)
        self.tty = bool(record.config.get("Tty"))
        self.stdin = bool(record.config.get("OpenStdin"))
        state = await self.state(settle=False)
        if state is None or not state.running:
            raise Refused(Close.NOT_RUNNING, "the container is not running")
        stream = await asyncio.to_thread(containers.attach, self.container_id, stdin=self.stdin)
        if self.tty:
            await asyncio.to_thread(containers.resize, self.container_id, self.rows, self.cols)
        return stream, {"tty": self.tty, "stdin": self.stdin, "pid": state.pid}

    def input(self, data: bytes) -> None:
        if self.stdin:
            self.send(protocol.STDIN, data)

    def resize(self, rows: int, cols: int) -> None:
        if self.tty:
            task = asyncio.create_task(asyncio.to_thread(self.server.containers.resize, self.container_id, rows, cols))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def ended(self, exit_code: int | None) -> tuple[int, str]:
        state = await self.state(settle=True)
        if state is None:
            return Close.NOT_FOUND, "the container was removed"
        return Close.NOT_RUNNING, f"the container stopped (exit code {state.exit_code})"

    async def release(self) -> None:
        pipe = self.pipe
        if pipe is None or pipe.transport is None:
            return
        if self.stdin:
            pipe.send(protocol.CLOSE_STDIN)  # a container made with StdinOnce sees its stdin end, as in Docker
        pipe.transport.close()
