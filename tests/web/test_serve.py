"""What `make run` does after installing: migrate, bootstrap, serve; Ctrl-C stops everything it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.servers import REPO, free_port, stop, wait_for


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except OSError:
        return 0, b""


def _command_lines() -> list[str]:
    lines = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                lines.append(f.read().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, NotADirectoryError):
            continue
    return lines


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry))
    return found


@pytest.mark.requires("root", "redis-server", "busybox", "overlayfs")
def test_run_serves_the_dashboard_and_healthz_then_stops_cleanly(state_root: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "SECRET_KEY")}
    env |= {
        "WEBENGINE_ROOT": str(state_root),
        "DJANGO_SETTINGS_MODULE": "webengine.settings",
        "WEBENGINE_ADMIN_PASSWORD": "correct horse battery staple",
    }

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
        )

    assert manage("migrate", "--noinput").returncode == 0
    first = manage("bootstrap")
    assert first.returncode == 0, first.stderr
    assert "created busybox:latest sha256:" in first.stdout
    assert "created admin user 'admin'" in first.stdout
    again = manage("bootstrap")
    assert again.returncode == 0 and "busybox:latest is present" in again.stdout
    assert "created admin" not in again.stdout, "bootstrap must be idempotent"

    port, docker_port, docker_socket = free_port(), free_port(), state_root / "docker.sock"
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port), "--docker-port", str(docker_port),
         "--docker-socket", str(docker_socket)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _get(base + "/healthz")[0] == 200, 60, "/healthz all green", server)
        body = json.loads(_get(base + "/healthz")[1])
        assert [c["status"] for c in body["checks"].values()] == ["ok", "ok", "ok"]
        status, page = _get(base + "/login/")
        assert status == 200 and b"Log in" in page
        wait_for(docker_socket.exists, 30, "the Docker API's socket", server)
        status, version = _get(f"http://127.0.0.1:{docker_port}/version")
        assert status == 200 and json.loads(version)["ApiVersion"] == "1.51"
        children = _children(server.pid)
        assert len(children) == 4, "serve should run redis, the node agent, web and the Docker API"
        hello = manage("container", "run", "--rm", "busybox", "echo", "hello")
        assert hello.stdout == "hello\n", hello.stderr
    finally:
        code = stop(server, signal.SIGINT, timeout=40)
    assert code == 0, server.stdout.read().decode()[-2000:] if server.stdout else ""
    leftover = [pid for pid in children if os.path.exists(f"/proc/{pid}")]
    assert not leftover, f"Ctrl-C must stop everything serve started; still running: {leftover}"
    shim = str(state_root / "run" / "shim.sock")
    assert not [line for line in _command_lines() if shim in line], "the shim server must stop with serve"
