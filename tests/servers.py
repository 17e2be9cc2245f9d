"""Real servers for tests: redis-server, a node agent, the whole `serve` stack. Each stops what it started."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def wait_for(check: Callable[[], bool], timeout: float, what: str, process: subprocess.Popen | None = None) -> None:
    """Poll `check` until it is true; fail with `what` after `timeout` seconds or if `process` exits."""
    deadline = time.monotonic() + timeout
    while not check():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the process exited with status {process.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.05)


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
    """Stop one process we started, by its pid, and return its exit status."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def redis_server(socket_path: Path) -> Iterator[subprocess.Popen]:
    """Run a private redis-server on a unix socket, without persistence."""
    socket_path.unlink(missing_ok=True)
    process = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700",
         "--save", "", "--appendonly", "no", "--dir", str(socket_path.parent), "--loglevel", "warning"],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for(socket_path.exists, 10, "redis-server socket", process)
        yield process
    finally:
        stop(process)


@contextlib.contextmanager
def node_agent(env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """Run this node's agent (a Celery worker) as `make run` does; yield once it has started."""
    node = (env or os.environ).get("NODE_NAME", "test")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "webengine", "worker", "-n", f"node@{node}", "-Q", f"node.{node}",
         "--concurrency", "1", "--pool", "solo", "--loglevel", "WARNING", "--without-gossip", "--without-mingle"],
        cwd=REPO, env=env, start_new_session=True,
    )
    try:
        yield process
    finally:
        stop(process)
