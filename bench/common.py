"""Shared helpers for the benchmarks: a private engine under /tmp, medians and ratio lines."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from containers.engine.config import EngineConfig
from containers.engine.engine import Engine
from containers.engine.errors import ImageNotFound
from containers.engine.images.busybox import create_busybox_image


@contextmanager
def bench_engine() -> Iterator[Engine]:
    """An engine with busybox:latest under a fresh /tmp root; everything is removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="webengine-bench-", dir="/tmp"))
    engine = Engine(EngineConfig(root=root, cgroup_parent=root.name))
    try:
        try:
            engine.images.get("busybox:latest")
        except ImageNotFound:
            create_busybox_image(engine.images)
        engine.containers.shim.ensure()
        yield engine
    finally:
        for record in engine.containers.list():
            engine.containers.remove(record.id, force=True)
        engine.containers.shim.shutdown()
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            if (hierarchy / root.name).exists():
                os.rmdir(hierarchy / root.name)
        shutil.rmtree(root, ignore_errors=True)


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def report(name: str, ours: float, anchor_name: str, anchor: float, unit: str, target: str) -> None:
    ratio = ours / anchor if anchor else float("inf")
    print(f"{name}: webengine {ours:.2f} {unit}, {anchor_name} {anchor:.2f} {unit}, "
          f"ratio {ratio:.2f}x (target {target})")


# The real docker CLI against webengine's Docker API and a Docker daemon (bench/build.py).

REPO = Path(__file__).resolve().parent.parent


def docker_cli(
    host: str, *args: str, env: Mapping[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """Run the docker CLI against `host` (plus `env`); with `check`, exit with its output if it fails."""
    done = subprocess.run(["docker", *args], env={**os.environ, **(env or {}), "DOCKER_HOST": host},
                          capture_output=True)  # fmt: skip
    if check and done.returncode != 0:
        sys.exit(f"docker {' '.join(args)} against {host} failed:\n{(done.stdout + done.stderr).decode()}")
    return done


def daemon_reachable(host: str) -> bool:
    env = {**os.environ, "DOCKER_HOST": host}
    return subprocess.run(["docker", "version"], env=env, capture_output=True, timeout=10).returncode == 0


@dataclass(frozen=True)
class DockerApi:
    """webengine's Docker API served from a private state root: its DOCKER_HOST, its root, its manage.py env."""

    host: str
    root: Path
    env: dict[str, str]

    def manage(self, *args: str) -> None:
        subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=self.env, check=True, capture_output=True)

    def load_busybox_into(self, host: str) -> bool:
        """Load webengine's busybox into the daemon at `host` when it has none; return whether it was loaded."""
        if docker_cli(host, "images", "-q", "busybox").stdout.strip():
            return False
        self.manage("image", "save", "-o", str(self.root / "busybox.tar"), "busybox")
        docker_cli(host, "load", "-i", str(self.root / "busybox.tar"))
        return True


@contextmanager
def webengine_dockerapi() -> Iterator[DockerApi]:
    """Serve webengine's Docker API (with busybox) from a fresh state root under /tmp; remove it all afterwards."""
    root = Path(tempfile.mkdtemp(prefix="webengine-bench-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")}
    env |= {"WEBENGINE_ROOT": str(root), "WEBENGINE_CGROUP_PARENT": root.name,
            "DJANGO_SETTINGS_MODULE": "webengine.settings"}  # fmt: skip
    api = DockerApi(f"unix://{root}/docker.sock", root, env)
    server: subprocess.Popen[bytes] | None = None
    try:
        api.manage("migrate", "--noinput")
        api.manage("image", "create-busybox")
        with open(root / "dockerapi.log", "wb") as log:
            server = subprocess.Popen(
                [sys.executable, "manage.py", "dockerapi", "--socket", str(root / "docker.sock"), "--port", "0"],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while not (root / "docker.sock").exists():
            if server.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"the Docker API did not start; see {root / 'dockerapi.log'}")
            time.sleep(0.05)
        yield api
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        subprocess.run([sys.executable, "manage.py", "shell", "-c",
                        "from containers import services; services.engine().containers.shim.shutdown()"],
                       cwd=REPO, env=env, capture_output=True)  # fmt: skip
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            if (hierarchy / root.name).exists():
                os.rmdir(hierarchy / root.name)
        shutil.rmtree(root, ignore_errors=True)
