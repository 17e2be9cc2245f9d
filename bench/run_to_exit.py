"""Run-to-exit of `true` in busybox: webengine (create, start, wait, remove) against `runc run`.

    .venv/bin/python bench/run_to_exit.py [--runs 30]

Both run the same image with Docker's confinement (capabilities, seccomp, masked paths, a
cgroup and a network namespace of their own); runc runs a bundle made from the same layers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_engine, median_ms, report  # noqa: E402
from containers.engine.engine import Engine  # noqa: E402
from containers.engine.runtime import seccomp, spec  # noqa: E402
from containers.engine.runtime.capabilities import DEFAULT_CAPABILITIES  # noqa: E402
from containers.engine.snapshots.apply import apply_layer  # noqa: E402


def webengine_once(engine: Engine) -> float:
    started = time.perf_counter()
    record = engine.containers.create({"Image": "busybox", "Cmd": ["true"]})
    engine.containers.start(record.id)
    state = engine.containers.wait(record.id)
    engine.containers.remove(record.id)
    elapsed = time.perf_counter() - started
    assert state.exit_code == 0, state
    return elapsed


def runc_bundle(engine: Engine, directory: Path, cgroup_parent: str) -> Path:
    """Unpack busybox into a bundle whose config.json matches what the engine gives a container."""
    image = engine.images.get("busybox:latest")
    rootfs = directory / "rootfs"
    rootfs.mkdir(parents=True)
    for layer in image.layers:
        with engine.images.open_layer(layer) as stream:
            apply_layer(rootfs, stream, overlay_whiteouts=False)
    config = spec.build_spec(
        "bench", spec.with_process_args(["true"]), spec.with_cgroups_path(f"/{cgroup_parent}/runc"),
        spec.with_seccomp(seccomp.docker_default(DEFAULT_CAPABILITIES)),
    )  # fmt: skip
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def runc_once(bundle: Path, root: Path, n: int) -> float:
    started = time.perf_counter()
    subprocess.run(["runc", "--root", str(root), "run", "--bundle", str(bundle), f"bench{n}"],
                   check=True, stdin=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    if shutil.which("runc") is None:
        sys.exit("runc is not installed (make install puts it there)")
    with bench_engine() as engine:
        scratch = Path(tempfile.mkdtemp(prefix="webengine-bench-runc-", dir="/tmp"))
        try:
            bundle = runc_bundle(engine, scratch / "bundle", engine.config.cgroup_parent)
            ours, anchor = [], []
            webengine_once(engine)
            runc_once(bundle, scratch / "state", -1)
            for n in range(args.runs):
                ours.append(webengine_once(engine))
                anchor.append(runc_once(bundle, scratch / "state", n))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    report("run-to-exit of true", median_ms(ours), "runc run", median_ms(anchor), "ms (median)", "<= 1.5x")
    p90 = sorted(ours)[int(len(ours) * 0.9)] * 1000
    print(f"  webengine p90 {p90:.1f} ms over {args.runs} runs")


if __name__ == "__main__":
    main()
