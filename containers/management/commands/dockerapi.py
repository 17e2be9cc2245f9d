"""Serve the Docker Engine API on this node: what the docker CLI and docker-py talk to."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from containers.dockerapi.server import DockerApiServer


class Command(BaseCommand):
    help = (
        "Serve the Docker Engine API on a root-only unix socket and on TCP 127.0.0.1 (with an API token from "
        "`manage.py token create`). Point the docker CLI at it with DOCKER_HOST."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--socket", default=str(settings.DOCKER_API_SOCKET), help="unix socket ('' for none)")
        parser.add_argument("--port", type=int, default=settings.DOCKER_API_PORT, help="TCP port, 127.0.0.1 (0: none)")

    def handle(self, *args: Any, socket: str, port: int, **options: Any) -> None:
        # Threads wait on sockets most of the time: let one that just got its answer run within
        # 0.5 ms, not the 5 ms a busy thread may otherwise keep the GIL (a `docker run` is a
        # handful of such hand-overs between its requests' threads).
        sys.setswitchinterval(0.0005)
        stopping = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stopping.set())
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
        server = DockerApiServer(Path(socket) if socket else None, port or None)
        server.start()
        try:
            where = [f"unix://{socket}"] if socket else []
            where += [f"tcp://127.0.0.1:{server.port} (token)"] if port else []
            self.stdout.write(f"serving the Docker API on {' and '.join(where)}", ending="\n")
            self.stdout.flush()
            while not stopping.wait(0.5):
                pass
        finally:
            server.stop()
