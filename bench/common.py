"""Shared helpers for the benchmarks: a private engine under /tmp, medians and ratio lines."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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
