"""Listen for the Docker Engine API: on a unix socket (trusted) and on TCP 127.0.0.1 (with a token).

The unix socket is made mode 0600, so only root reaches it, as only root (and the docker group)
reaches /run/docker.sock; requests on it are a site admin's. Every request on TCP needs
`Authorization: Bearer <token>`, an API token (see auth.py), or gets 401, except `/_ping` and
`/version`: clients negotiate the API version before they send anything else, and docker-py does
it in its constructor, before a caller can add the header. What the principal may then do is
scoping.py's: every route is wrapped in its rule.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from django.db import connections

from containers import services
from containers.dockerapi import (
    auth,
    build_routes,
    container_fs_routes,
    container_routes,
    exec_routes,
    image_routes,
    scoping,
    system_routes,
    websocket,
)
from containers.dockerapi.httpserver import ApiError, Connection, Reply, Request
from containers.dockerapi.router import Router, parse_target

logger = logging.getLogger(__name__)

_UNAUTHORIZED = (
    "authentication required: send `Authorization: Bearer <token>` with an API token (mint one on the tokens page or "
    'with `manage.py token create <user> --team <team>`; the docker CLI sends it from "HttpHeaders" in config.json)'
)

_OPEN = {"/_ping", "/version"}

# Docker routes this server does not have yet: 501 and what is missing, never a silent 404.
UNIMPLEMENTED = [
    ("POST", r"/containers/[^/]+/update", "docker update"),
    ("POST", r"/build/prune", "docker builder prune"),
    ("POST", r"/images/.+/push", "docker push (it comes with the registry issue)"),
    ("GET", r"/images/search", "docker search (it comes with the registry issue)"),
    ("POST", r"/auth", "docker login (it comes with the registry issue)"),
    ("GET", r"/distribution/.+/json", "registry lookups (they come with the registry issue)"),
    ("*", r"/networks(/.*)?", "networks (they come with the networking issue)"),
    ("*", r"/volumes(/.*)?", "named volumes"),
    ("*", r"/plugins(/.*)?", "plugins"),
    ("*", r"/(swarm|services|nodes|tasks|secrets|configs)(/.*)?", "swarm mode"),
]


def build_router() -> Router:
    routes = [
        *system_routes.ROUTES,
        *container_routes.ROUTES,
        *container_fs_routes.ROUTES,
        *exec_routes.ROUTES,
        *image_routes.ROUTES,
        *build_routes.ROUTES,
        *websocket.ROUTES,
    ]
    return Router(scoping.guard(routes), UNIMPLEMENTED)


class _Handler(socketserver.BaseRequestHandler):
    server: _UnixServer | _TCPServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        if sock.family != socket.AF_UNIX:
            # Small writes (frames, chunks) go out at once instead of waiting for an ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            Connection(sock, self.server.dispatch, parse_target).serve()
        except Exception:
            logger.exception("docker API connection failed")
        finally:
            _keep_usable_connections()


def _keep_usable_connections() -> None:
    """Keep this thread's database connections for its next client, unless they went bad.

    A `docker run` is five connections; opening the database anew on each cost about 1 ms.
    """
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None and (
            connection.in_atomic_block or connection.errors_occurred or not connection.is_usable()
        ):
            connection.close()


class _PooledThreads:
    """socketserver's ThreadingMixIn, but on threads that stay for the next connection.

    A thread is made when none is idle (streams such as `logs -f` hold theirs for long), so no
    client waits for another; an idle one keeps its database connection warm, and goes after
    `_IDLE_S`. Hand-written because ThreadPoolExecutor's threads are not daemons: a follower still
    connected would hold the process at exit.
    """

    _IDLE_S = 300.0

    def process_request(self, request: Any, client_address: Any) -> None:
        with _POOL.lock:
            reserved = _POOL.idle > 0
            if reserved:
                _POOL.idle -= 1
        if reserved:
            _POOL.jobs.put((self, request, client_address))
        else:
            threading.Thread(target=self._work, args=(request, client_address), daemon=True).start()

    def _work(self, request: Any, client_address: Any) -> None:
        job: tuple[Any, Any, Any] | None = (self, request, client_address)
        while job is not None:
            server, request, client_address = job
            server._serve(request, client_address)
            with _POOL.lock:
                _POOL.idle += 1
            job = _POOL.next_job(self._IDLE_S)

    def _serve(self, request: Any, client_address: Any) -> None:
        server = cast(socketserver.BaseServer, self)
        try:
            server.finish_request(request, client_address)
        except Exception:
            server.handle_error(request, client_address)
        finally:
            server.shutdown_request(request)


class _Pool:
    """The idle threads of `_PooledThreads` (each counted in `idle` until a job is reserved for it)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle = 0
        self.jobs: queue.SimpleQueue[tuple[Any, Any, Any]] = queue.SimpleQueue()

    def next_job(self, idle_s: float) -> tuple[Any, Any, Any] | None:
        """Wait for a job; None when none came for `idle_s` and none is reserved for this thread."""
        while True:
            try:
                return self.jobs.get(timeout=idle_s)
            except queue.Empty:
                with self.lock:
                    if self.idle > 0:
                        self.idle -= 1
                        return None


_POOL = _Pool()


class _UnixServer(_PooledThreads, socketserver.UnixStreamServer):
    # The docker CLI opens a connection per container at once (`docker rm -f $(docker ps -aq)`),
    # without blocking: beyond socketserver's backlog of 5 it fails with "Cannot connect".
    request_queue_size = socket.SOMAXCONN

    def __init__(self, path: Path, dispatch: Callable[[Request], Reply]) -> None:
        self.dispatch = dispatch
        super().__init__(str(path), _Handler, bind_and_activate=False)

    def server_bind(self) -> None:
        # Created 0600 from the start (umask), not chmod-ed after a window where others could connect.
        previous = os.umask(0o177)
        try:
            super().server_bind()
        finally:
            os.umask(previous)


class _TCPServer(_PooledThreads, socketserver.TCPServer):
    request_queue_size = socket.SOMAXCONN
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], dispatch: Callable[[Request], Reply]) -> None:
        self.dispatch = dispatch
        super().__init__(address, _Handler, bind_and_activate=False)


def _in_use(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


class DockerApiServer:
    """The API on `socket_path` and on `host:port` (either may be None); `start()` returns once both listen."""

    def __init__(self, socket_path: Path | None, port: int | None, host: str = "127.0.0.1") -> None:
        self.socket_path = socket_path
        self.port = port
        self.host = host
        self.router = build_router()
        self.servers: list[socketserver.BaseServer] = []

    def _dispatch(self, trusted: bool) -> Callable[[Request], Reply]:
        def dispatch(request: Request) -> Reply:
            if trusted:
                request.principal = auth.unix_principal(request.sock)
            elif request.path not in _OPEN:
                request.principal = auth.token_principal(request)
                if request.principal is None:
                    raise ApiError(401, _UNAUTHORIZED)
            return self.router.dispatch(request)

        return dispatch

    def start(self) -> None:
        if self.socket_path is not None:
            if self.socket_path.exists():
                if _in_use(self.socket_path):
                    raise OSError(f"{self.socket_path}: another server is listening there")
                self.socket_path.unlink()
            self.socket_path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            unix = _UnixServer(self.socket_path, self._dispatch(trusted=True))
            self._activate(unix)
        if self.port is not None:
            tcp = _TCPServer((self.host, self.port), self._dispatch(trusted=False))
            self._activate(tcp)
            self.port = tcp.server_address[1]
        for server in self.servers:
            threading.Thread(target=server.serve_forever, name=f"listen {server.server_address}", daemon=True).start()

    def _activate(self, server: _UnixServer | _TCPServer) -> None:
        try:
            server.server_bind()
            server.server_activate()
        except BaseException:
            server.server_close()
            raise
        self.servers.append(server)

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()
        self.servers.clear()
        if self.socket_path is not None:
            self.socket_path.unlink(missing_ok=True)
        services.drain_standbys()
