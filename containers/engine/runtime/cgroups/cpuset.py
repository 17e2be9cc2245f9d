"""The cpuset controller: which CPUs and memory nodes the container may use.

Kernel docs: Documentation/admin-guide/cgroup-v1/cpusets.rst and the "Cpuset" section of
cgroup-v2.rst. The file names are the same in both versions.
"""

from __future__ import annotations

from pathlib import Path

from .common import Resources, read, write

_FILES = ("cpuset.cpus", "cpuset.mems")


def apply(path: Path, resources: Resources) -> None:
    """Write cpuset.cpus and cpuset.mems (lists like "0-2,4")."""
    if resources.cpuset_cpus:
        write(path, "cpuset.cpus", resources.cpuset_cpus)
    if resources.cpuset_mems:
        write(path, "cpuset.mems", resources.cpuset_mems)


def inherit_v1(path: Path, hierarchy: Path) -> None:
    """Copy the parent's CPUs and memory nodes into every empty cpuset from below `hierarchy` down to `path`.

    A new v1 cpuset starts with empty lists, and the kernel refuses to attach a task to a cpuset
    without CPUs or memory nodes (cpusets.rst, 2.1: "... must be set before you can move tasks");
    cgroup v2 needs no copy because an empty list there means "use the parent's".
    """
    chain = [path, *path.parents]
    below_hierarchy = reversed(chain[: chain.index(hierarchy)])
    for directory in below_hierarchy:
        for name in _FILES:
            if not read(directory, name):
                write(directory, name, read(directory.parent, name))
