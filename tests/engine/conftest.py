"""An engine with busybox:latest for the tests that run containers; it leaves nothing behind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from containers.engine.config import EngineConfig
from containers.engine.engine import Engine
from containers.engine.images.busybox import create_busybox_image


@contextmanager
def busybox_engine(root: Path, runtime: str = "native") -> Iterator[Engine]:
    """Yield an engine under `root`; afterwards remove every container and stop the shim server."""
    engine = Engine(EngineConfig(root=root, cgroup_parent=os.environ["WEBENGINE_CGROUP_PARENT"], runtime=runtime))
    create_busybox_image(engine.images)
    try:
        yield engine
    finally:
        try:
            for record in engine.containers.list():
                engine.containers.remove(record.id, force=True)
        finally:
            engine.containers.shim.shutdown()


@pytest.fixture
def engine(state_root: Path) -> Iterator[Engine]:
    with busybox_engine(state_root) as engine:
        yield engine
