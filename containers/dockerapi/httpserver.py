"""HTTP/1.1 for the Docker Engine API: h11 over blocking sockets, one thread a connection.

Why not ASGI: attach and exec answer `101 UPGRADED` and then use the raw connection both ways,
which ASGI servers cannot hand over. Why threads: every engine call blocks (monitor sockets, log
files, waits), and one `docker run` keeps attach, wait and start open at once.

A handler takes a `Request` and returns one of:

- `Response`: a whole body, sent with Content-Length;
- `Streamed`: the headers at once, then each item of an iterator as one chunk, sent as it comes
  (wait, events, logs: the clients wait for the headers before they go on);
- `Hijack`: `101 UPGRADED` in a send of its own, then `Hijack.run` owns the socket, a raw duplex
  pipe, and is given the bytes that arrived after the request (the start of stdin);
- `Switch`: the same with a 101 the handler wrote, for other protocols (websocket.py).
"""

from __future__ import annotations

import functools
import json
import logging
import select
import socket
import tempfile
import urllib.parse
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from http import HTTPStatus
from importlib import metadata
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import h11

from containers.engine.shim.logfile import parse_time

if TYPE_CHECKING:
    from containers.permissions import Principal

logger = logging.getLogger(__name__)

API_VERSION = "1.51"
MIN_API_VERSION = "1.24"
JSON = "application/json"
_FALSE = {"", "0", "no", "false", "none"}
_MAX_HEADERS = 64 * 1024
_SPOOL_MAX_BYTES = 4 << 20


class ApiError(Exception):
    """An error answered as `{"message": ...}` with this status (engine errors are mapped in router.py)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    """One request, its body read whole (chunked bodies decoded); `path` is percent-decoded, unversioned.

    `stream` holds the body: in memory up to a few MiB, in an unlinked temporary file beyond, so
    that a `docker load` or a build context of gigabytes costs disk, not the server's memory.
    """

    method: str
    target: str
    path: str
    version: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    stream: BinaryIO
    sock: socket.socket
    params: dict[str, str] = field(default_factory=dict)
    # Who asks, as server.py found out; None only on the routes that need no one (/_ping, /version).
    principal: Principal | None = None
    # What the route's access rule looked up to check the request (the container the path names),
    # for its handler, or what the handler made, for the rule's audit record: read once, not twice.
    found: dict[str, Any] = field(default_factory=dict)

    @property
    def body(self) -> bytes:
        """Return the whole body (for the small JSON bodies; big ones are read from `stream`)."""
        self.stream.seek(0)
        return self.stream.read()

    def arg(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[-1] if values else default

    def flag(self, name: str, default: bool = False) -> bool:
        """Parse a boolean as moby does: "", 0, no, false, none (any case) are false, the rest true."""
        if name not in self.query:
            return default
        return self.arg(name).strip().lower() not in _FALSE

    def int_arg(self, name: str, default: int) -> int:
        text = self.arg(name).strip()
        if not text:
            return default
        try:
            return int(text)
        except ValueError:
            raise ApiError(400, f"invalid value for {name}: {text!r} is not an integer") from None

    def time_ns(self, name: str) -> int:
        """Parse moby's `since`/`until`: unix seconds with an optional fraction, or RFC 3339; "" or 0 is no bound."""
        text = self.arg(name).strip()
        seconds, dot, fraction = text.partition(".")
        if not text:
            return 0
        if seconds.isdigit() and (not dot or fraction.isdigit()):
            return int(seconds) * 1_000_000_000 + int((fraction + "000000000")[:9])
        try:
            return parse_time(text)
        except ValueError:
            raise ApiError(400, f"invalid value for {name}: {text!r}") from None

    def json(self) -> Any:
        """Return the JSON body, or None when there is none."""
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except ValueError as err:
            raise ApiError(400, f"invalid JSON in the request body: {err}") from None

    def filters(self) -> dict[str, list[str]]:
        """Return `filters` as {key: [values]}; the Go client sends {key: {value: true}}, docker-py lists."""
        text = self.arg("filters")
        if not text:
            return {}
        try:
            raw = json.loads(text)
        except ValueError:
            raise ApiError(400, f"invalid filter: {text!r} is not JSON") from None
        if not isinstance(raw, dict):
            raise ApiError(400, f"invalid filter: {text!r} is not an object")
        found: dict[str, list[str]] = {}
        for key, value in raw.items():
            if isinstance(value, dict):
                found[key] = [str(v) for v, on in value.items() if on]
            elif isinstance(value, list):
                found[key] = [str(v) for v in value]
            else:
                found[key] = [str(value)]
        return found

    @property
    def upgrade(self) -> bool:
        return "upgrade" in self.headers

    def disconnected(self) -> bool:
        """Whether the client has closed its connection (it sends nothing while it waits for our answer)."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
            return bool(readable) and not self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (OSError, ValueError):
            return True


@dataclass
class Response:
    """A whole answer; 204 and 304 go without a body and without Content-Length.

    `then` is work the client need not wait for (the audit record of a change): run on the
    connection's thread once the answer is out, before the next request on it, so keep it short.
    """

    status: int
    body: bytes = b""
    content_type: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    then: Callable[[], object] | None = None


@dataclass
class Streamed:
    """Headers at once, then one chunk an item; the generator is closed when the client goes."""

    chunks: Generator[bytes, None, None]
    content_type: str = JSON
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)


def _nothing() -> None:
    return None


@dataclass
class Hijack:
    """Switch to a raw stream of `content_type`; `run(sock, received)` then owns the connection.

    `abandon` is called instead of `run` if the switch cannot be sent (the client is gone), to
    undo what the handler prepared for `run`.
    """

    run: Callable[[socket.socket, bytes], None]
    content_type: str
    abandon: Callable[[], None] = _nothing


@dataclass
class Switch:
    """Send `head`, a whole 101 answer, then hand the connection to `run(sock, received)` as Hijack does."""

    head: bytes
    run: Callable[[socket.socket, bytes], None]
    abandon: Callable[[], None] = _nothing


Reply = Response | Streamed | Hijack | Switch


def json_response(value: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(value).encode() + b"\n", JSON)


def no_content(status: int = 204) -> Response:
    return Response(status)


def _run_after(work: Callable[[], object], request: Request) -> None:
    """Run a response's `then`; its answer is out, so a failure is only logged."""
    try:
        work()
    except Exception:
        logger.exception("the work after answering %s %s failed", request.method, request.path)


def error_response(status: int, message: str) -> Response:
    # Exactly application/json, or the Go client prints the body raw instead of the message.
    return Response(status, json.dumps({"message": message}).encode() + b"\n", JSON)


def common_headers() -> list[tuple[str, str]]:
    """Return what moby sends on every response; the clients negotiate from Api-Version."""
    return [
        ("Api-Version", API_VERSION),
        ("Docker-Experimental", "false"),
        ("Ostype", "linux"),
        ("Server", f"webengine/{server_version()} (linux)"),
    ]


@functools.cache
def server_version() -> str:
    try:
        return metadata.version("webengine")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


Dispatch = Callable[[Request], Reply]


class Connection:
    """Serve requests on one accepted socket until the client closes it or a hijack takes it."""

    def __init__(self, sock: socket.socket, dispatch: Dispatch, parse_target: Callable[[str], tuple[str, str]]) -> None:
        self.sock = sock
        self.dispatch = dispatch
        self.parse_target = parse_target
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEADERS)

    def serve(self) -> None:
        try:
            while self._exchange():
                self.h11.start_next_cycle()
        except h11.RemoteProtocolError as err:
            if self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                self._send_whole(error_response(err.error_status_hint, f"bad request: {err}"))
        except OSError:
            pass

    def _exchange(self) -> bool:
        """Answer one request; return whether the connection can carry another."""
        request = self._receive()
        if request is None:
            return False
        with request.stream:
            try:
                reply = self.dispatch(request)
            except ApiError as err:
                reply = error_response(err.status, err.message)
            if isinstance(reply, Hijack):
                self._hijack(request, reply)
                return False
            if isinstance(reply, Switch):
                self._switch(reply)
                return False
            if isinstance(reply, Streamed):
                self._send_streamed(reply)
            else:
                self._send_whole(reply, head=request.method == "HEAD")
                if reply.then is not None:
                    _run_after(reply.then, request)
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    def _receive(self) -> Request | None:
        head: h11.Request | None = None
        body = cast(BinaryIO, tempfile.SpooledTemporaryFile(max_size=_SPOOL_MAX_BYTES))
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(self.sock.recv(65536))
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body.write(event.data)
            elif isinstance(event, h11.EndOfMessage):
                body.seek(0)
                break
            else:  # ConnectionClosed, or PAUSED before any request
                body.close()
                return None
        assert head is not None
        target = head.target.decode("latin-1")
        raw_path, _, raw_query = target.partition("?")
        version, path = self.parse_target(urllib.parse.unquote(raw_path))
        headers: dict[str, str] = {}
        for name, value in head.headers:
            key = name.decode("latin-1").lower()
            headers[key] = f"{headers[key]}, {value.decode('latin-1')}" if key in headers else value.decode("latin-1")
        return Request(
            method=head.method.decode("ascii"), target=target, path=path, version=version,
            query=urllib.parse.parse_qs(raw_query, keep_blank_values=True), headers=headers, stream=body,
            sock=self.sock,
        )  # fmt: skip

    def _start(self, status: int, headers: list[tuple[str, str]]) -> None:
        head = h11.Response(status_code=status, headers=[*common_headers(), *headers], reason=_reason(status))
        self.sock.sendall(self.h11.send(head) or b"")

    def _send_whole(self, response: Response, head: bool = False) -> None:
        headers = list(response.headers)
        if response.content_type:
            headers.append(("Content-Type", response.content_type))
        if response.status not in (204, 304):
            headers.append(("Content-Length", str(len(response.body))))
        self._start(response.status, headers)
        # A HEAD answer tells the body's length and sends no body (h11 enforces it).
        data = self.h11.send(h11.Data(data=response.body)) if response.body and not head else b""
        self.sock.sendall((data or b"") + (self.h11.send(h11.EndOfMessage()) or b""))

    def _send_streamed(self, streamed: Streamed) -> None:
        self._start(streamed.status, [("Content-Type", streamed.content_type), *streamed.headers])
        try:
            for chunk in streamed.chunks:
                if chunk:
                    self.sock.sendall(self.h11.send(h11.Data(data=chunk)) or b"")
        except OSError:
            raise
        except Exception as err:
            # The status is out already: log, and end the connection without the last chunk, so
            # that the client sees the stream was cut.
            logger.exception("a %s stream failed after its headers", streamed.content_type)
            raise OSError("the stream failed") from err
        finally:
            streamed.chunks.close()
        self.sock.sendall(self.h11.send(h11.EndOfMessage()) or b"")

    def _hijack(self, request: Request, hijack: Hijack) -> None:
        if request.upgrade:
            status = "HTTP/1.1 101 UPGRADED"
            extra = [("Connection", "Upgrade"), ("Upgrade", "tcp")]
        else:
            # Clients older than the upgrade protocol (and curl) get the stream after a 200.
            status, extra = "HTTP/1.1 200 OK", [("Connection", "close")]
        lines = [status, f"Content-Type: {hijack.content_type}"]
        lines += [f"{name}: {value}" for name, value in [*extra, *common_headers()]]
        self._switch(Switch(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), hijack.run, hijack.abandon))

    def _switch(self, switch: Switch) -> None:
        received, _ = self.h11.trailing_data
        try:
            self.sock.sendall(switch.head)
        except OSError:
            switch.abandon()
            raise
        switch.run(self.sock, bytes(received))
