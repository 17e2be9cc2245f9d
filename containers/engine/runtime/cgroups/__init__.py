"""Cgroups for the native runtime: limits, accounting, freezing and device control, on cgroup v1 or v2.

    manager = new_manager(f"webengine/{container_id}")
    manager.create()
    manager.apply(Resources.from_oci(spec["linux"]["resources"]))
    manager.add(init_pid)

See `Manager` for the lifecycle, and the controller modules for what each limit writes where.
"""

from .common import DeviceRule, Resources
from .manager import (
    DEFAULT_ROOT,
    Manager,
    Stats,
    cgroup_version,
    favor_dynamic_modifications,
    look_up_hierarchies,
    new_manager,
    remove_parent_if_empty,
)

__all__ = [
    "DEFAULT_ROOT",
    "DeviceRule",
    "Manager",
    "Resources",
    "Stats",
    "cgroup_version",
    "favor_dynamic_modifications",
    "look_up_hierarchies",
    "new_manager",
    "remove_parent_if_empty",
]
