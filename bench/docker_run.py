"""`docker run --rm busybox true` through the real docker CLI: webengine's Docker API against a Docker daemon.

    .venv/bin/python bench/docker_run.py [--runs 30] [--docker-host unix:///var/run/docker.sock]

webengine serves its API from a private state root under /tmp (`manage.py dockerapi` on a unix
socket). When a Docker daemon answers on `--docker-host`, the same command runs against it in
the same run (busybox is loaded into it from webengine's saved busybox when missing) and the
ratio is printed; the target is at most 0.25x Docker's time, or at most 65 ms median without a
daemon. Each side gets a few warm-up runs first, as a daemon that has just started is cold.

Two figures a side: back to back (each side's runs in blocks of ten in a row, so that what a run
leaves to do in the background, webengine's next standby or the daemon's cleanup, slows its own
next run; the sides take turns block by block), and one at a time (the sides in turns, each run
half a second after the last: what one command takes on a quiet machine). Either way every side
meets the same drift of this machine's speed, which over a few seconds is as large as the
differences measured.

The CLI's own share is measured too: the same command against a server that answers each of its
requests at once (ping, create, attach, wait, start) and runs nothing. No server can be faster.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import socketserver
import sys
import tempfile
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import daemon_reachable, docker_cli, median_ms, webengine_dockerapi  # noqa: E402
from containers.dockerapi.httpserver import (  # noqa: E402
    Connection,
    Hijack,
    Reply,
    Request,
    Response,
    Streamed,
    json_response,
    no_content,
)
from containers.dockerapi.router import parse_target  # noqa: E402

COMMAND = ["run", "--rm", "busybox", "true"]
WARMUP = 3
SETTLE_S = 0.5
BLOCK = 10


def back_to_back(hosts: dict[str, str], runs: int) -> dict[str, list[float]]:
    """Time the command `runs` times against each host, in blocks of BLOCK runs in a row (what each
    run leaves to do slows the next), the hosts taking turns block by block, SETTLE_S apart."""
    for host in hosts.values():
        for _ in range(WARMUP):
            docker_cli(host, *COMMAND)
    samples: dict[str, list[float]] = {name: [] for name in hosts}
    names = list(hosts)
    for turn in range(-(-runs // BLOCK)):
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            time.sleep(SETTLE_S)
            for _ in range(min(BLOCK, runs - turn * BLOCK)):
                started = time.perf_counter()
                docker_cli(hosts[name], *COMMAND)
                samples[name].append(time.perf_counter() - started)
    return samples


def one_at_a_time(hosts: dict[str, str], runs: int) -> dict[str, list[float]]:
    """Time the command `runs` times against each host in turns, each run SETTLE_S after the last:
    every run meets a quiet machine, and a machine whose speed drifts slows every side alike."""
    samples: dict[str, list[float]] = {name: [] for name in hosts}
    names = list(hosts)
    for turn in range(runs):
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            time.sleep(SETTLE_S)
            started = time.perf_counter()
            docker_cli(hosts[name], *COMMAND)
            samples[name].append(time.perf_counter() - started)
    return samples


class _InstantApi:
    """Answers `docker run --rm`'s requests at once: the container "runs" when started and is gone."""

    def __init__(self) -> None:
        self.started = threading.Event()

    def dispatch(self, request: Request) -> Reply:
        verb = request.path.rsplit("/", 1)[-1]
        if verb == "_ping":
            return Response(200, b"OK", "text/plain")
        if verb == "create":
            self.started.clear()
            return json_response({"Id": "0" * 64, "Warnings": []}, status=201)
        if verb == "start":
            self.started.set()
            return no_content()
        if verb == "wait":
            return Streamed(self._exited())
        if verb == "attach":
            return Hijack(self._attached, "application/vnd.docker.multiplexed-stream")
        return Response(404, b'{"message": "page not found"}', "application/json")

    def _exited(self) -> Generator[bytes, None, None]:
        self.started.wait(10)
        yield b'{"StatusCode": 0, "Error": null}\n'

    def _attached(self, sock: socket.socket, received: bytes) -> None:
        self.started.wait(10)
        sock.shutdown(socket.SHUT_WR)
        sock.close()


@contextmanager
def instant_api() -> Iterator[str]:
    """Serve `_InstantApi` on a unix socket under /tmp; yield its DOCKER_HOST."""
    api = _InstantApi()

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            Connection(self.request, api.dispatch, parse_target).serve()

    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

    with tempfile.TemporaryDirectory(prefix="webengine-bench-", dir="/tmp") as directory:
        path = f"{directory}/docker.sock"
        with Server(path, Handler) as server:
            threading.Thread(target=server.serve_forever, daemon=True).start()
            try:
                yield f"unix://{path}"
            finally:
                server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--docker-host", default="unix:///var/run/docker.sock")
    options = parser.parse_args()
    if shutil.which("docker") is None:
        sys.exit("the docker CLI is not on PATH")
    with instant_api() as floor_host, webengine_dockerapi() as api:
        hosts = {"the docker CLI alone": floor_host, "webengine": api.host}
        reachable = daemon_reachable(options.docker_host)
        loaded = reachable and api.load_busybox_into(options.docker_host)
        if reachable:
            hosts["Docker daemon"] = options.docker_host
        try:
            in_a_row = {name: median_ms(times) for name, times in back_to_back(hosts, options.runs).items()}
            apart = {name: median_ms(times) for name, times in one_at_a_time(hosts, options.runs).items()}
        finally:
            if loaded:
                docker_cli(options.docker_host, "rmi", "busybox")
    for title, medians in ((f"back to back, in turns of {BLOCK} runs in a row", in_a_row),
                           (f"one at a time, in turns {SETTLE_S} s apart", apart)):  # fmt: skip
        figures = ", ".join(f"{name} {ms:.1f} ms" for name, ms in medians.items())
        print(f"docker run --rm busybox true, {title} (medians of {options.runs}): {figures}")
        if "Docker daemon" in medians:
            ratio = medians["webengine"] / medians["Docker daemon"]
            print(f"  ratio {ratio:.2f}x (target <= 0.25x)")
        else:
            print(f"  no Docker daemon at {options.docker_host}: target <= 65 ms")

if __name__ == "__main__":
    main()
