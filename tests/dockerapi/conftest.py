"""One Docker API server for these tests: `manage.py dockerapi` on a state root of its own, a free port and a token.

The token is the site admin's for the team `fixture`: it sees and may do all that the tests make
through it, and what they make belongs to that team. test_teams.py adds users and teams of its own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from containers.engine.config import EngineConfig
from containers.engine.engine import Engine
from tests.servers import REPO, free_port, stop, wait_for


@dataclass
class ApiServer:
    """The running server and what a client needs to reach it."""

    process: subprocess.Popen[bytes]
    env: dict[str, str]
    root: Path
    port: int
    socket_path: Path
    token: str
    docker_config: Path

    TEAM = "fixture"

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def docker(
        self, *args: str, host: str = "", config: Path | None = None, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the real docker CLI against the server (TCP unless `host`), with the token from its config.json."""
        env = {**os.environ, "DOCKER_HOST": host or self.url, "DOCKER_CONFIG": str(config or self.docker_config)}
        env.pop("DOCKER_API_VERSION", None)
        return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, input=input, timeout=60)

    def client(self) -> docker.DockerClient:
        """Return a docker-py client over TCP with the token on its session."""
        client = docker.DockerClient(base_url=self.url, timeout=30)
        client.api.headers["Authorization"] = f"Bearer {self.token}"
        return client

    def engine(self) -> Engine:
        return Engine(EngineConfig(root=self.root, cgroup_parent=self.env["WEBENGINE_CGROUP_PARENT"]))

    def manage(self, *args: str) -> str:
        """Run a management command on the server's state root and database; return what it printed."""
        return _manage(self.env, *args)

    @property
    def database(self) -> Path:
        """The server's SQLite database, to read what it recorded (the audit log)."""
        return self.root / "webengine.sqlite3"


def _manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)}: {result.stderr}"
    return result.stdout


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="package")
def api() -> Iterator[ApiServer]:
    root = Path(tempfile.mkdtemp(prefix="dockerapi-", dir=os.environ["WEBENGINE_TEST_ROOT"]))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")}
    env |= {"WEBENGINE_ROOT": str(root), "DJANGO_SETTINGS_MODULE": "webengine.settings"}
    _manage(env, "migrate", "--noinput")
    # busybox:latest, shared with every team, and the first site admin, `admin`.
    _manage(env, "bootstrap")
    _manage(env, "team", "create", ApiServer.TEAM)
    token = _manage(env, "token", "create", "admin", "--team", ApiServer.TEAM, "--name", "tests").strip()
    config = root / "docker-config"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"HttpHeaders": {"Authorization": f"Bearer {token}"}}))
    port, socket_path = free_port(), root / "docker.sock"
    with open(root / "dockerapi.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "dockerapi", "--socket", str(socket_path), "--port", str(port)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = ApiServer(process, env, root, port, socket_path, token, config)
    try:
        wait_for(lambda: _listening(port) and socket_path.exists(), 30, "the Docker API to listen", process)
        yield server
    finally:
        stop(process, signal.SIGTERM)
        engine = server.engine()
        for record in engine.containers.list():
            engine.containers.remove(record.id, force=True)
        engine.containers.shim.shutdown()


@pytest.fixture
def only_busybox_left(api: ApiServer) -> Iterator[None]:
    """Leave the store as the other tests expect it: no containers, and busybox:latest the only image."""
    yield
    client = api.client()
    for container in client.containers.list(all=True):
        container.remove(force=True)
    for image in client.images.list():
        if "busybox:latest" not in image.tags:
            client.images.remove(image.id, force=True)
            continue
        for tag in set(image.tags) - {"busybox:latest"}:
            client.images.remove(tag)
