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
def busybox_engine(root: Path, runtime: str = "native", standby_ttl: float = 600.0) -> Iterator[Engine]:
    """Yield an engine under `root`; afterwards remove every container and standby, and stop the shim server."""
    config = EngineConfig(
        root=root, cgroup_parent=os.environ["WEBENGINE_CGROUP_PARENT"], runtime=runtime, standby_ttl=standby_ttl
    )
    engine = Engine(config)
    create_busybox_image(engine.images)
    try:
        yield engine
    finally:
        try:
            engine.containers.standbys.drain()
            for record in engine.containers.list():
                engine.containers.remove(record.id, force=True)
        finally:
            engine.containers.shim.shutdown()


@pytest.fixture
def engine(state_root: Path) -> Iterator[Engine]:
    with busybox_engine(state_root) as engine:
        yield engine
