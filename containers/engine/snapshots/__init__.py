"""Snapshotters: image layers unpacked once and shared, and the writable layers of containers."""

from __future__ import annotations

from pathlib import Path

from containers.engine.errors import InvalidArgument
from containers.engine.snapshots.base import Info, Kind, Mount, Snapshotter
from containers.engine.snapshots.native import NativeSnapshotter
from containers.engine.snapshots.overlay import OverlaySnapshotter
from containers.engine.snapshots.storage import DirectorySnapshotter

__all__ = ["Info", "Kind", "Mount", "NativeSnapshotter", "OverlaySnapshotter", "Snapshotter", "new_snapshotter"]

_DRIVERS: dict[str, type[DirectorySnapshotter]] = {
    "overlay": OverlaySnapshotter,
    "native": NativeSnapshotter,
}


def new_snapshotter(kind: str, root: Path) -> Snapshotter:
    """Return the snapshotter `kind` ("overlay" or "native") keeping its state under `root`."""
    try:
        driver = _DRIVERS[kind]
    except KeyError:
        raise InvalidArgument(f"snapshotter {kind}: unknown, expected one of {', '.join(_DRIVERS)}") from None
    return driver(root)
