"""The engine of one node: content store, snapshotter, image store and containers, wired from one config."""

from __future__ import annotations

from containers.engine.config import EngineConfig
from containers.engine.content.local import LocalStore
from containers.engine.errors import NotFound
from containers.engine.images.store import ImageStore
from containers.engine.lifecycle import Containers
from containers.engine.snapshots import new_snapshotter


class Engine:
    """Everything a node agent needs to hold images and run containers under one root."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.content = LocalStore(config.content_root)
        self.snapshotter = new_snapshotter(config.snapshotter, config.snapshots_root)
        self.images = ImageStore(
            config, self.content, self.snapshotter, is_running=self._is_running,
            before_remove=lambda: self.containers.release_image_holders(),
            is_container=lambda key: not self.containers.standbys.unadopted(key),
        )  # fmt: skip
        self.containers = Containers(config, self.images, self.snapshotter)

    def _is_running(self, container_id: str) -> bool:
        try:
            state = self.containers.state(container_id)
        except NotFound:
            return False
        return state.running or state.paused or state.restarting
