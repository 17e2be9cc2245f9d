"""Engine configuration: one frozen value that every engine constructor receives.

The engine never reads Django settings; `containers/conf.py` builds this from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EngineConfig:
    """Where the engine keeps its state and which drivers it uses.

    Layout below `root` (DESIGN.md, "On disk"):
    `content/` blobs by digest, `images/` tags and image records, `snapshots/` unpacked layers,
    `containers/<id>/` one directory a container, `volumes/<name>/_data` named volumes.
    """

    root: Path
    snapshotter: str = "overlay"
    cgroup_parent: str = "webengine"
    runtime: str = "native"
    # Seconds a standby container waits to be adopted (containers/engine/standby.py); 0: none are made.
    standby_ttl: float = 120.0

    @property
    def content_root(self) -> Path:
        return self.root / "content"

    @property
    def images_root(self) -> Path:
        return self.root / "images"

    @property
    def snapshots_root(self) -> Path:
        return self.root / "snapshots"

    @property
    def containers_root(self) -> Path:
        return self.root / "containers"

    @property
    def volumes_root(self) -> Path:
        return self.root / "volumes"
