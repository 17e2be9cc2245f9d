"""The freezer: stop every task of a cgroup at once (`docker pause`), and let them go again.

Kernel docs: Documentation/admin-guide/cgroup-v1/freezer-subsystem.rst, and "Core Interface Files"
(cgroup.freeze, cgroup.events) in cgroup-v2.rst. Freezing is asynchronous in both versions: the
write starts it and the state file says when every task has stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from containers.engine.errors import Unavailable

from .common import read, read_keyed, write

# How long freeze() waits for the last task to stop; a task stuck in an uninterruptible sleep (on
# NFS, say) can keep a cgroup FREEZING indefinitely.
FREEZE_TIMEOUT = 5.0


def freeze_v1(path: Path) -> None:
    """Freeze a v1 freezer cgroup and wait until freezer.state reads FROZEN."""

    # A cgroup can stay FREEZING when a task forks while it freezes; writing FROZEN again retries
    # the tasks that are not frozen yet (freezer-subsystem.rst), which runc does in its loop too.
    def frozen() -> bool:
        write(path, "freezer.state", "FROZEN")
        return frozen_v1(path)

    if not _wait_until(frozen):
        thaw_v1(path)
        raise Unavailable(f"cgroup {path}: not frozen after {FREEZE_TIMEOUT:g}s, thawed it again")


def thaw_v1(path: Path) -> None:
    """Thaw a v1 freezer cgroup; unlike freezing, this takes effect at once."""
    write(path, "freezer.state", "THAWED")


def frozen_v1(path: Path) -> bool:
    """Return whether every task of a v1 freezer cgroup is frozen."""
    return read(path, "freezer.state") == "FROZEN"


def freeze_v2(path: Path) -> None:
    """Freeze a v2 cgroup and wait until cgroup.events reports "frozen 1"."""
    write(path, "cgroup.freeze", 1)
    if not _wait_until(lambda: frozen_v2(path)):
        thaw_v2(path)
        raise Unavailable(f"cgroup {path}: not frozen after {FREEZE_TIMEOUT:g}s, thawed it again")


def thaw_v2(path: Path) -> None:
    """Thaw a v2 cgroup and wait until cgroup.events reports "frozen 0"."""
    write(path, "cgroup.freeze", 0)
    if not _wait_until(lambda: not frozen_v2(path)):
        raise Unavailable(f"cgroup {path}: still frozen after {FREEZE_TIMEOUT:g}s")


def frozen_v2(path: Path) -> bool:
    """Return whether a v2 cgroup is frozen (cgroup.events "frozen 1")."""
    return read_keyed(path, "cgroup.events").get("frozen") == 1


def _wait_until(done: Callable[[], bool]) -> bool:
    """Poll `done` with a growing pause until it returns True or FREEZE_TIMEOUT passes."""
    deadline = time.monotonic() + FREEZE_TIMEOUT
    pause = 0.001
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    return True
