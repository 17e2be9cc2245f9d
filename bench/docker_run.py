"""`docker run --rm busybox true` through the real docker CLI: webengine's Docker API against a Docker daemon.

    .venv/bin/python bench/docker_run.py [--runs 30] [--docker-host unix:///var/run/docker.sock]

webengine serves its API from a private state root under /tmp (`manage.py dockerapi` on a unix
socket). When a Docker daemon answers on `--docker-host`, the same command runs against it in
the same run (busybox is loaded into it from webengine's saved busybox when missing) and the
ratio is printed; the target is at most 0.25x Docker's time, or at most 65 ms median without a
daemon. Each side gets a few warm-up runs first, as a daemon that has just started is cold.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import daemon_reachable, docker_cli, median_ms, webengine_dockerapi  # noqa: E402

COMMAND = ["run", "--rm", "busybox", "true"]
WARMUP = 3


def timed_runs(host: str, runs: int) -> list[float]:
    for _ in range(WARMUP):
        docker_cli(host, *COMMAND)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        docker_cli(host, *COMMAND)
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--docker-host", default="unix:///var/run/docker.sock")
    options = parser.parse_args()
    if shutil.which("docker") is None:
        sys.exit("the docker CLI is not on PATH")
    with webengine_dockerapi() as api:
        webengine = median_ms(timed_runs(api.host, options.runs))
        if not daemon_reachable(options.docker_host):
            print(f"docker run --rm busybox true: webengine {webengine:.1f} ms median over {options.runs} runs "
                  f"(no Docker daemon at {options.docker_host}; target <= 65 ms)")  # fmt: skip
            return
        loaded = api.load_busybox_into(options.docker_host)
        try:
            daemon = median_ms(timed_runs(options.docker_host, options.runs))
        finally:
            if loaded:
                docker_cli(options.docker_host, "rmi", "busybox")
    print(f"docker run --rm busybox true: webengine {webengine:.1f} ms, Docker daemon {daemon:.1f} ms, "
          f"ratio {webengine / daemon:.2f}x (target <= 0.25x), medians of {options.runs} runs")  # fmt: skip


if __name__ == "__main__":
    main()
