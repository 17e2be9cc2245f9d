"""Layers unpacked into the native snapshotter, seen through bind mounts."""

from __future__ import annotations

from tests.engine.suites.layers import LayerSuite


class TestNativeLayers(LayerSuite):
    kind = "native"
