"""new_snapshotter: choosing a snapshotter by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from containers.engine.errors import InvalidArgument
from containers.engine.snapshots import NativeSnapshotter, OverlaySnapshotter, new_snapshotter


def test_it_returns_the_snapshotter_named(state_root: Path) -> None:
    assert isinstance(new_snapshotter("overlay", state_root / "o"), OverlaySnapshotter)
    assert isinstance(new_snapshotter("native", state_root / "n"), NativeSnapshotter)


def test_it_rejects_an_unknown_snapshotter(state_root: Path) -> None:
    with pytest.raises(InvalidArgument, match="snapshotter zfs: unknown, expected one of overlay, native"):
        new_snapshotter("zfs", state_root)
