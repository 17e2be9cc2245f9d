"""Layers unpacked into the overlay snapshotter, seen through real overlay mounts."""

from __future__ import annotations

from tests.engine.suites.layers import LayerSuite


class TestOverlayLayers(LayerSuite):
    kind = "overlay"
