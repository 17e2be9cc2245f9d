"""Build the engine's configuration from Django settings, filling in defaults (as DRF's api_settings)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from containers.engine.config import EngineConfig

DEFAULTS = {
    "ROOT": "/var/lib/webengine", "SNAPSHOTTER": "overlay", "CGROUP_PARENT": "webengine", "RUNTIME": "native",
    "STANDBY_TTL": 120,
}  # fmt: skip


def engine_config() -> EngineConfig:
    """Return the `EngineConfig` that `settings.CONTAINERS_ENGINE` describes."""
    options = {**DEFAULTS, **getattr(settings, "CONTAINERS_ENGINE", {})}
    return EngineConfig(
        root=Path(options["ROOT"]),
        snapshotter=options["SNAPSHOTTER"],
        cgroup_parent=options["CGROUP_PARENT"],
        runtime=options["RUNTIME"],
        standby_ttl=float(options["STANDBY_TTL"]),
    )
