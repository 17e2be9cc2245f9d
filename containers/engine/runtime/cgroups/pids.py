"""The pids controller: a limit on the number of tasks, which stops fork bombs.

Kernel docs: Documentation/admin-guide/cgroup-v1/pids.rst and the "PID" section of cgroup-v2.rst.
The file names are the same in both versions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .common import UNLIMITED, Resources, read_int, write


@dataclass(frozen=True)
class PidsStats:
    """The number of tasks in the cgroup, and its limit (0 when unlimited)."""

    current: int = 0
    limit: int = 0


def apply(path: Path, resources: Resources) -> None:
    """Write pids.max; Docker's limit of 0 or less means "max"."""
    if resources.pids_limit is not None:
        write(path, "pids.max", resources.pids_limit if resources.pids_limit > 0 else UNLIMITED)


def stats(path: Path) -> PidsStats:
    """Return pids.current and pids.max."""
    return PidsStats(current=read_int(path, "pids.current"), limit=read_int(path, "pids.max"))
