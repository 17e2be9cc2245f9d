"""Websockets on the Docker API: moby's `attach/ws`, and an exec websocket, which moby lacks (moby #9372).

`GET /containers/{id}/attach/ws?stdin=1&stdout=1&stderr=1&logs=1&stream=1`, as moby serves it: the
stream flags count from API 1.42 (before, all three are on). The container's output goes out as
binary messages (text messages before API 1.28) of raw bytes, never with the 8-byte multiplexing:
the websocket frames them already. Every message from the client, text or binary, is written to the
container's stdin (if it was made with OpenStdin). The server closes (1000) when the output ends:
the container has exited, or `stream` was off and the logs are out. A client that closes detaches;
the container keeps running (with StdinOnce its stdin is closed, as for the hijacked attach).

`GET /exec/{id}/start/ws` starts an exec made by `POST /containers/{id}/exec` and speaks:

    client → server  binary  stdin, raw (dropped unless the exec was made with AttachStdin)
                     text    {"type": "resize", "rows": R, "cols": C}: set the terminal's size
                             {"type": "close_stdin"}: end of stdin without a TTY (a websocket has
                             no half-close; a terminal takes Ctrl-D)
    server → client  binary  output: with a TTY, raw; without, one byte for the stream, 1 stdout or
                             2 stderr (Docker's numbers, as in Kubernetes' channel.k8s.io), then the bytes
                     text    {"type": "exit", "code": N}: the process has exited and all of its output
                             is out (N is null if the container went first); then a close with 1000

It takes no query parameters: Tty, AttachStdin and ConsoleSize come from the exec's creation, as for
`POST /exec/{id}/start`. An unknown exec answers 404 and one started already 409, before the upgrade,
in moby's words. A command that cannot start is told in-band, its message as output and an exit
message with 126 or 127, since a browser sees nothing of a refused handshake but its failure. A text
message the server does not understand closes the connection with 1008 and the reason (1009 past
64 KiB).

Either side may close; a client that closes or vanishes (the server pings a client quiet for 30 s and
gives up after 30 s more, which also keeps proxies from dropping an idle terminal) hangs up the
process: with a TTY, its terminal is closed and the kernel sends it SIGHUP, as when an ssh
connection drops; without, its stdin ends. Its exit code is still recorded for `GET /exec/{id}/json`.

Authentication and the checks are those of every route (auth.py, scoping.py): a site admin on the
unix socket, an API token's principal on TCP; attaching with stdin or starting an exec needs the
operator role in the container's team. A browser cannot set headers on a websocket (the WebSocket
constructor takes a URL and subprotocols, nothing else), so the token may also come as the
subprotocol `bearer.<token>`. The server echoes
it as the chosen subprotocol: RFC 6455 (4.2.2) has a server pick one of those offered, and browsers
fail a handshake that offered subprotocols and got none back. Never in the query string:
URLs land in access logs and browser histories. No Origin check: the token is no ambient credential
(a cookie would be), so another site's page has nothing to borrow.
"""

from __future__ import annotations

import codecs
import json
import select
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    TextMessage,
)
from wsproto.events import Request as Handshake
from wsproto.utilities import RemoteProtocolError

from containers import services
from containers.dockerapi import streams
from containers.dockerapi.auth import BEARER
from containers.dockerapi.container_routes import _active, _attach_stream
from containers.dockerapi.exec_routes import _failed_exit_code
from containers.dockerapi.httpserver import ApiError, Reply, Request, Switch, common_headers, error_response
from containers.dockerapi.router import Route, route
from containers.dockerapi.state import ACTIVITY, EXECS, Exec, PendingAttach
from containers.engine.errors import Conflict, EngineError, FailedPrecondition
from containers.engine.shim import protocol
from containers.engine.shim.client import Stream
from containers.engine.shim.logfile import read_log

NORMAL, POLICY_VIOLATION, MESSAGE_TOO_BIG = 1000, 1008, 1009
_PING_INTERVAL_S = 30.0
_CLOSE_TIMEOUT_S = 5.0
# A client that stops reading blocks a send; after this long without progress it counts as gone.
_SEND_TIMEOUT_S = 60.0
_MAX_TEXT = 64 * 1024
_KINDS = {protocol.STDOUT: streams.STDOUT, protocol.STDERR: streams.STDERR}


def _at_least(version: str, wanted: tuple[int, int]) -> bool:
    major, _, minor = version.partition(".")
    return (int(major), int(minor or 0)) >= wanted


class WebSocket:
    """The server's side of one websocket once the 101 is out: wsproto's frames over a blocking socket."""

    def __init__(self, sock: socket.socket, connection: WSConnection, received: bytes) -> None:
        self.sock = sock
        self.connection = connection
        self.gone = False
        self._heard = time.monotonic()
        self._pinged = False
        sock.settimeout(_SEND_TIMEOUT_S)
        # What came right behind the handshake: the first events, read by `receive(read=False)`.
        connection.receive_data(received)

    def send(self, event: Message[Any] | CloseConnection | Ping) -> None:
        self.sock.sendall(self.connection.send(event))

    def send_json(self, value: dict[str, Any]) -> None:
        self.send(TextMessage(data=json.dumps(value)))

    def receive(self, read: bool = True) -> list[Message[Any]]:
        """Read once, answer pings and a close; return the messages (or pieces), and set `gone` if the client left."""
        if read:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            self.connection.receive_data(data or None)
            self._heard, self._pinged = time.monotonic(), False
        messages: list[Message[Any]] = []
        for event in self.connection.events():
            if isinstance(event, Message):
                messages.append(event)
            elif isinstance(event, Ping):
                self.send(event.response())
            elif isinstance(event, CloseConnection):
                # The client's close, answered with its code; or a frame that wsproto refused, with the reason.
                if self.connection.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                    self.send(CloseConnection(code=event.code, reason=event.reason))
                self.gone = True
        return messages

    def quiet_for(self) -> float:
        """Return how long the client may stay quiet before `keepalive` has something to do."""
        return max(0.0, self._heard + _PING_INTERVAL_S * (2 if self._pinged else 1) - time.monotonic())

    def keepalive(self) -> None:
        """Ping a client quiet for an interval; count it gone once it has been quiet for another."""
        if self.quiet_for() > 0:
            return
        if self._pinged:
            self.gone = True
        else:
            self.send(Ping(payload=b"keepalive"))
            self._pinged = True

    def close(self, code: int = NORMAL, reason: str = "") -> None:
        """Send a close unless the client has gone, wait a little for its answer, and end the connection."""
        try:
            if not self.gone and self.connection.state is ConnectionState.OPEN:
                self.send(CloseConnection(code=code, reason=reason or None))
                deadline = time.monotonic() + _CLOSE_TIMEOUT_S
                while not self.gone and time.monotonic() < deadline:
                    readable, _, _ = select.select([self.sock], [], [], deadline - time.monotonic())
                    if not readable:
                        break
                    self.receive()
        except OSError:
            pass
        self.gone = True
        streams.close_client(self.sock)


class _Refused(Exception):
    """A message the server does not accept: it closes the connection with `code` and this reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class Session(Protocol):
    """What runs on an accepted websocket: `run` talks until either side is done, `end` releases it after."""

    def run(self, ws: WebSocket) -> None: ...

    def end(self) -> None: ...


def _relay(
    ws: WebSocket, stream: Stream, output: Callable[[int, bytes], None], message: Callable[[Message[Any]], None]
) -> bool:
    """Carry the stream's output to `output` (Docker's stream number, bytes) and the client's messages to `message`.

    Return True when the stream has ended (its EXIT frame sets `stream.exit_code`), False when the
    client has gone.
    """
    for event in ws.receive(read=False):
        message(event)
    while not ws.gone:
        readable, _, _ = select.select([ws.sock, stream.sock], [], [], ws.quiet_for())
        if ws.sock in readable:
            for event in ws.receive():
                message(event)
        if stream.sock in readable:
            try:
                frames = stream.receive()
            except OSError:
                frames = None
            if frames is None:
                return True
            for kind, payload in frames:
                if kind in _KINDS:
                    output(_KINDS[kind], payload)
        ws.keepalive()
    return False


def _serve(ws: WebSocket, session: Session) -> None:
    try:
        session.run(ws)
    except _Refused as refused:
        ws.close(refused.code, str(refused))
    except OSError:
        ws.gone = True
    finally:
        ws.close()
        session.end()


def _upgrade(request: Request, prepare: Callable[[], Session]) -> Reply:
    """Answer a websocket handshake: refused in HTTP, or a switch to the session that `prepare` makes.

    `prepare` runs only for a valid handshake, and its errors are still answered in HTTP.
    """
    connection = WSConnection(ConnectionType.SERVER)
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in request.headers.items()]
    try:
        connection.initiate_upgrade_connection(headers, request.target)
    except RemoteProtocolError as err:
        hint = err.event_hint if isinstance(err.event_hint, RejectConnection) else RejectConnection(status_code=400)
        refusal = error_response(hint.status_code, f"websocket handshake refused: {err}")
        # A version we do not speak answers 426 with the one we do (RFC 6455 4.4).
        refusal.headers += [(name.decode(), value.decode()) for name, value in hint.headers]
        return refusal
    handshake = next(event for event in connection.events() if isinstance(event, Handshake))
    subprotocol = next((offered for offered in handshake.subprotocols if offered.startswith(BEARER)), None)
    session = prepare()
    extra = [(name.encode(), value.encode()) for name, value in common_headers()]
    head = connection.send(AcceptConnection(subprotocol=subprotocol, extra_headers=extra))
    return Switch(head, lambda sock, received: _serve(WebSocket(sock, connection, received), session), session.end)


#
# attach
#


class _AttachSession:
    """moby's attach/ws: the logs and the output as raw messages; the client's messages to stdin."""

    def __init__(self, container_id: str, wanted: dict[str, bool], replay: bool, follow: bool, binary: bool) -> None:
        self.container_id = container_id
        self.wanted = wanted
        self.replay, self.follow, self.binary = replay, follow, binary
        containers = services.engine().containers
        self.log_path = containers.log_path(container_id)
        self.stream: Stream | None = None
        self.pending: PendingAttach | None = None
        if follow:
            # Registered before the 101 goes out, so that a start right after it finds this attach.
            if _active(containers.state(container_id)):
                ACTIVITY.begin(container_id)
            else:
                self.pending = ACTIVITY.expect_start(container_id, wanted)

    def run(self, ws: WebSocket) -> None:
        # Before API 1.28 moby sent text messages; a character cut between two reads is joined first.
        decoder = None if self.binary else codecs.getincrementaldecoder("utf-8")(errors="replace")

        def send(data: bytes) -> None:
            if decoder is None:
                ws.send(BytesMessage(data=data))
            elif text := decoder.decode(data):
                ws.send(TextMessage(data=text))

        if self.replay:
            for item in read_log(self.log_path):
                if self.wanted.get(item.stream):
                    send(item.text)
        if self.follow:
            self.stream = _attach_stream(self.pending, self.container_id, self.wanted)
        if self.stream is not None:
            ended = _relay(ws, self.stream, lambda _, data: send(data), self._stdin)
            if not ended and self.wanted["stdin"]:
                self.stream.close_stdin()  # a container made with StdinOnce sees its stdin end

    def _stdin(self, event: Message[Any]) -> None:
        data = event.data if isinstance(event, BytesMessage) else event.data.encode()
        if self.wanted["stdin"] and data and self.stream is not None:
            self.stream.write(data)

    def end(self) -> None:
        if self.follow:
            ACTIVITY.end(self.container_id, self.stream.exit_code if self.stream is not None else None, self.pending)
        if self.stream is not None:
            self.stream.close()


def attach(request: Request) -> Reply:
    record = services.engine().containers.get(request.params["id"])
    every = not _at_least(request.version, (1, 42))
    wanted = {
        "stdin": (every or request.flag("stdin")) and bool(record.config.get("OpenStdin")),
        "stdout": every or request.flag("stdout"),
        "stderr": every or request.flag("stderr"),
    }
    if request.arg("detachKeys"):
        raise ApiError(501, "detach keys chosen by the server are not implemented yet in webengine")
    binary = _at_least(request.version, (1, 28))
    return _upgrade(
        request, lambda: _AttachSession(record.id, wanted, request.flag("logs"), request.flag("stream"), binary)
    )


#
# exec
#


class _ExecSession:
    """The exec protocol of the module docstring, on a started exec."""

    def __init__(self, instance: Exec, stream: Stream) -> None:
        self.instance = instance
        self.stream = stream
        self.ended = False
        self.text: list[str] = []

    def run(self, ws: WebSocket) -> None:
        tty = self.instance.tty
        self.ended = _relay(
            ws, self.stream, lambda kind, data: ws.send(BytesMessage(data=data if tty else bytes([kind]) + data)),
            self._message,
        )  # fmt: skip
        if self.ended:
            self._finish()
            ws.send_json({"type": "exit", "code": self.instance.exit_code})

    def _message(self, event: Message[Any]) -> None:
        if isinstance(event, BytesMessage):
            if self.instance.attach_stdin and event.data:
                self.instance.write(event.data)
            return
        self.text.append(event.data)
        if sum(len(piece) for piece in self.text) > _MAX_TEXT:
            raise _Refused(MESSAGE_TOO_BIG, f"a text message is limited to {_MAX_TEXT} characters")
        if event.message_finished:
            text = "".join(self.text)
            self.text.clear()
            self._control(text)

    def _control(self, text: str) -> None:
        try:
            value = json.loads(text)
        except ValueError:
            raise _Refused(POLICY_VIOLATION, "a text message must be JSON") from None
        kind = value.get("type") if isinstance(value, dict) else None
        if kind == "resize":
            rows, cols = value.get("rows"), value.get("cols")
            if not all(type(n) is int and 0 < n < 65536 for n in (rows, cols)):
                raise _Refused(POLICY_VIOLATION, "resize: rows and cols must be integers from 1 to 65535")
            if self.instance.tty:
                self.instance.resize(rows, cols)
        elif kind == "close_stdin":
            if self.instance.attach_stdin:
                self.instance.close_stdin()
        else:
            raise _Refused(POLICY_VIOLATION, f"unknown message type {kind!r}")

    def _finish(self) -> None:
        """Read the stream to its end (the EXIT frame) and record the exit code."""
        with self.stream:
            for _ in self.stream.frames():
                pass
        self.instance.finish(self.stream.exit_code)

    def end(self) -> None:
        if self.ended:
            return
        # The client has gone: the monitor closes the process's terminal (or stdin), and the
        # stream still ends with the exit code.
        try:
            with self.instance.lock:
                self.stream.hang_up()
        except OSError:
            pass
        self._finish()


class _FailedExec:
    """Tell why an exec did not start (moby writes it into the hijacked stream), then its exit code."""

    def __init__(self, instance: Exec, failure: str) -> None:
        self.instance = instance
        self.failure = failure

    def run(self, ws: WebSocket) -> None:
        data = self.failure.encode() + b"\r\n"
        ws.send(BytesMessage(data=data if self.instance.tty else bytes([streams.STDERR]) + data))
        ws.send_json({"type": "exit", "code": self.instance.exit_code})

    def end(self) -> None:
        return None


def start_exec(request: Request) -> Reply:
    instance = EXECS.get(request.params["id"])

    def prepare() -> Session:
        with instance.lock:
            if instance.exit_code is not None:
                raise Conflict(f"exec command {instance.id} has already run")
            if instance.started:
                raise Conflict(f"exec command {instance.id} is already running")
            instance.started = True
        try:
            stream = services.engine().containers.exec(
                instance.container_id, instance.cmd, user=instance.user, env=instance.env,
                workdir=instance.workdir, tty=instance.tty, stdin=instance.attach_stdin,
                console_size=instance.console_size or None, exec_id=instance.id,
            )  # fmt: skip
        except FailedPrecondition as err:
            instance.finish(_failed_exit_code(str(err)))
            return _FailedExec(instance, str(err))
        except EngineError:
            instance.finish(126)  # moby's exit code for an exec that did not start
            raise
        with instance.lock:
            instance.running, instance.pid, instance.stream = True, int(stream.reply.get("pid", 0)), stream
        return _ExecSession(instance, stream)

    return _upgrade(request, prepare)


ROUTES: list[Route] = [
    route("GET", r"/containers/(?P<id>[^/]+)/attach/ws", attach),
    route("GET", r"/exec/(?P<id>[^/]+)/start/ws", start_exec),
]
