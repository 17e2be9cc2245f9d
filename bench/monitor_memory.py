"""Memory of the per-container monitors: PSS over 50 sleeping containers.

    .venv/bin/python bench/monitor_memory.py [--containers 50]

PSS (proportional set size, /proc/<pid>/smaps_rollup) charges each shared page to its sharers
in equal parts, so the sum over all monitors is what they really cost together. The anchor is
Docker's containerd-shim-runc-v2, measured the same way when a Docker daemon answers on
/var/run/docker.sock; otherwise the figure the issue quotes for this machine (3 MiB).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_engine, report  # noqa: E402

DOCKER_SHIM_REFERENCE_MIB = 3.0


def pss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def docker_shim_mib(count: int) -> float | None:
    """Start `count` sleeping containers in a real Docker daemon and return the shims' PSS each."""
    if not os.path.exists("/var/run/docker.sock"):
        return None
    names = [f"webengine-bench-{n}" for n in range(count)]
    try:
        for name in names:
            subprocess.run(["docker", "run", "-d", "--name", name, "busybox", "sleep", "1000"],
                           check=True, capture_output=True)  # fmt: skip
        pids = subprocess.run(["pgrep", "-f", "containerd-shim"], capture_output=True, text=True).stdout.split()
        return sum(pss_kib(int(pid)) for pid in pids) / 1024 / count
    except (OSError, subprocess.CalledProcessError):
        return None
    finally:
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--containers", type=int, default=50)
    args = parser.parse_args()
    with bench_engine() as engine:
        ids = []
        for _ in range(args.containers):
            record = engine.containers.create({"Image": "busybox", "Cmd": ["sleep", "1000"]})
            engine.containers.start(record.id)
            ids.append(record.id)
        monitors = []
        for container_id in ids:
            status = json.loads((engine.config.containers_root / container_id / "monitor.json").read_text())
            monitors.append(status["monitor_pid"])
        total_kib = sum(pss_kib(pid) for pid in monitors)
        server_kib = pss_kib(engine.containers.shim.ping() or 0)
    ours = total_kib / 1024 / args.containers
    anchor = docker_shim_mib(args.containers)
    label = "containerd-shim (measured)" if anchor is not None else "containerd-shim (issue's figure)"
    report(f"monitor PSS over {args.containers} containers", ours, label, anchor or DOCKER_SHIM_REFERENCE_MIB,
           "MiB each", "<= 1.0 MiB each")  # fmt: skip
    print(f"  total {total_kib / 1024:.1f} MiB for {args.containers} monitors; "
          f"the shim server itself {server_kib / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
