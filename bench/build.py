"""`docker build` of a 6-step Dockerfile through the real docker CLI (legacy builder): webengine against Docker.

    .venv/bin/python bench/build.py [--runs 10] [--docker-host unix:///var/run/docker.sock]

The same context is built with `DOCKER_BUILDKIT=0 docker build` against webengine's Docker API
(`manage.py dockerapi` on a fresh state root under /tmp) and, when one answers on `--docker-host`,
against a Docker daemon (busybox loaded into it from webengine's when it has none):

- cold: `--no-cache`, every step built; the image is removed after each run (not timed);
- cached: the same build again once it was built, every step served by the cache.

Medians over `--runs` runs, after a warm-up build on each side; the two sides take turns, so that
the rest of the machine's load weighs on both alike. Targets: cold at most 1.0x and
cached at most 0.5x Docker's time; without a daemon, the issue's figures for Docker stand in
(691 ms cold, 52 ms cached). Exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import daemon_reachable, docker_cli, median_ms, webengine_dockerapi  # noqa: E402

DOCKERFILE = """\
FROM busybox
WORKDIR /app
COPY package.json app.js util.js ./
RUN mkdir dist && cat util.js app.js > dist/bundle.js && echo built > dist/stamp
ENV APP_ENV=production
CMD ["cat", "dist/stamp"]
"""
FILES = {
    "package.json": '{"name": "bench", "version": "1.0.0"}\n',
    "app.js": "const util = require('./util');\nconsole.log(util.greet('bench'));\n",
    "util.js": "exports.greet = (name) => `hello ${name}`;\n",
}
LEGACY = {"DOCKER_BUILDKIT": "0"}
# Docker 20.10's legacy builder on this machine, as the issue quotes it.
ISSUE_DOCKER_MS = {"cold": 691.0, "cached": 52.0}
TARGETS = {"cold": 1.0, "cached": 0.5}


def build_once(host: str, context: Path, tag: str, *, cold: bool) -> float:
    args = ["build", *(["--no-cache"] if cold else []), "-t", tag, str(context)]
    started = time.perf_counter()
    docker_cli(host, *args, env=LEGACY)
    return time.perf_counter() - started


def measure(hosts: dict[str, str], context: Path, runs: int) -> dict[str, dict[str, float]]:
    """Return the median cold and cached build times (ms) against each host; leave no image of the bench behind.

    The hosts take turns, run after run, so that whatever else the machine does weighs on both alike.
    """
    tag = f"webengine-bench-build:{secrets.token_hex(4)}"
    samples: dict[str, dict[str, list[float]]] = {name: {"cold": [], "cached": []} for name in hosts}
    built: list[str] = []
    try:
        for host in hosts.values():
            build_once(host, context, tag, cold=True)  # warm-up: a daemon that has just started is cold
            built.append(host)
        for _ in range(runs):
            for name, host in hosts.items():
                docker_cli(host, "rmi", tag)
                samples[name]["cold"].append(build_once(host, context, tag, cold=True))
        for _ in range(runs):
            for name, host in hosts.items():
                samples[name]["cached"].append(build_once(host, context, tag, cold=False))
    finally:
        for host in built:
            docker_cli(host, "rmi", tag, check=False)
    return {name: {kind: median_ms(times) for kind, times in kinds.items()} for name, kinds in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--docker-host", default="unix:///var/run/docker.sock")
    options = parser.parse_args()
    if shutil.which("docker") is None:
        sys.exit("the docker CLI is not on PATH")

    context = Path(tempfile.mkdtemp(prefix="webengine-bench-context-", dir="/tmp"))
    try:
        (context / "Dockerfile").write_text(DOCKERFILE)
        for name, text in FILES.items():
            (context / name).write_text(text)
        with webengine_dockerapi() as api:
            if daemon_reachable(options.docker_host):
                loaded = api.load_busybox_into(options.docker_host)
                try:
                    figures = measure({"webengine": api.host, "docker": options.docker_host}, context, options.runs)
                finally:
                    if loaded:
                        docker_cli(options.docker_host, "rmi", "busybox")
                ours, docker, anchor = figures["webengine"], figures["docker"], "Docker daemon"
            else:
                ours = measure({"webengine": api.host}, context, options.runs)["webengine"]
                docker, anchor = ISSUE_DOCKER_MS, f"Docker as the issue quotes it (no daemon at {options.docker_host})"
    finally:
        shutil.rmtree(context, ignore_errors=True)

    missed = False
    for kind in ("cold", "cached"):
        ratio = ours[kind] / docker[kind]
        missed |= ratio > TARGETS[kind]
        print(f"{kind} build, 6 steps: webengine {ours[kind]:.0f} ms, {anchor} {docker[kind]:.0f} ms, "
              f"ratio {ratio:.2f}x (target <= {TARGETS[kind]}x), medians of {options.runs} runs")  # fmt: skip
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
