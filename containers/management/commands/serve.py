"""Serve the whole system on this machine, the way `make run` does, and stop it cleanly on Ctrl-C."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from containers import services


class Command(BaseCommand):
    help = (
        "Start web (Daphne), this node's agent (a Celery worker on queue node.<NODE_NAME>), the Docker Engine API "
        "and, when REDIS_URL is not set, a private redis-server on a root-only unix socket. Ctrl-C stops them in "
        "reverse order."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default=os.environ.get("WEBENGINE_BIND", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("WEBENGINE_PORT", "8000")))
        parser.add_argument("--concurrency", type=int, default=2, help="worker processes of the node agent")
        parser.add_argument("--docker-socket", default=str(settings.DOCKER_API_SOCKET), help="the Docker API's socket")
        parser.add_argument("--docker-port", type=int, default=settings.DOCKER_API_PORT, help="its TCP port (0: none)")

    def handle(
        self, *args: Any, bind: str, port: int, concurrency: int, docker_socket: str, docker_port: int, **options: Any
    ) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.stopping = False
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        try:
            if not os.environ.get("REDIS_URL"):
                self._start_redis()
            node = settings.NODE_NAME
            self._start(
                "node-agent",
                [sys.executable, "-m", "celery", "-A", "webengine", "worker", "-n", f"node@{node}",
                 "-Q", f"node.{node}", "--concurrency", str(concurrency), "--loglevel", "INFO"],
            )
            web = [sys.executable, "-m", "daphne", "-b", bind, "-p", str(port), "webengine.asgi:application"]
            self._start("web", web)
            manage = str(settings.BASE_DIR / "manage.py")
            docker_api = ["dockerapi", "--socket", docker_socket, "--port", str(docker_port)]
            self._start("docker-api", [sys.executable, manage, *docker_api])
            self.stdout.write(self.style.SUCCESS(f"webengine is serving http://{bind}:{port}/ (Ctrl-C stops it)"))
            self.stdout.write(f"docker CLI: DOCKER_HOST=unix://{docker_socket} docker ps")
            self._supervise()
        finally:
            self._stop_all()

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        # Each child gets its own session so that Ctrl-C reaches only us, and we stop them in order.
        process = subprocess.Popen(argv, start_new_session=True)
        self.children.append((name, process))
        self.stdout.write(f"started {name} (pid {process.pid})")
        return process

    def _start_redis(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise CommandError("redis-server is not installed and REDIS_URL is not set: run `make run` to install it")
        socket_path = Path(settings.REDIS_URL.removeprefix("unix://"))
        data = settings.WEBENGINE_ROOT / "redis"
        for directory in (socket_path.parent, data):
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o700)
        socket_path.unlink(missing_ok=True)
        process = self._start(
            "redis",
            [server, "--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700",
             "--dir", str(data), "--save", "60 1", "--appendonly", "no", "--loglevel", "warning"],
        )
        deadline = time.monotonic() + 10
        while not socket_path.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise CommandError(f"redis-server did not open {socket_path}")
            time.sleep(0.05)

    def _supervise(self) -> None:
        while not self.stopping:
            for name, process in self.children:
                if process.poll() is not None:
                    raise CommandError(f"{name} exited with status {process.returncode}; stopping the rest")
            time.sleep(0.2)

    def _stop_all(self) -> None:
        for name, process in reversed(self.children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.stderr.write(f"{name} did not stop within 15s: killing it")
                    process.kill()
                    process.wait()
            self.stdout.write(f"stopped {name}")
        self.children.clear()
        # The shim server was started on demand by the node agent or the Docker API. Running
        # containers do not need it (their monitors are detached from it); the next start
        # brings it back.
        services.engine().containers.shim.shutdown()
