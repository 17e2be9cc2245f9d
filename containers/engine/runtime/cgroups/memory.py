"""The memory controller: limit, swap limit, reservation, usage and OOM kills.

Kernel docs: Documentation/admin-guide/cgroup-v1/memory.rst and the "Memory" section of
cgroup-v2.rst. Swap follows Docker: `memory_swap` is memory plus swap, and a container given only
`--memory` may use as much swap as memory (a total of twice the limit).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from containers.engine.errors import InvalidArgument

from .common import UNLIMITED, Resources, read_int, read_keyed, write

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemoryStats:
    """Memory use in bytes; `limit` is the host's memory when the cgroup has no limit, as in `docker stats`."""

    usage: int = 0
    limit: int = 0
    max_usage: int = 0
    cache: int = 0
    stats: dict[str, int] = field(default_factory=dict)


def apply_v1(path: Path, resources: Resources) -> None:
    """Write the limit, the memory+swap limit and the soft limit (reservation) to a v1 memory cgroup."""
    _check(resources)
    if resources.memory_reservation:
        write(path, "memory.soft_limit_in_bytes", resources.memory_reservation)
    total = _swap_total(resources)
    # memory.memsw.* exist only with swap accounting (CONFIG_MEMCG_SWAP, not swapaccount=0).
    if total is not None and not (path / "memory.memsw.limit_in_bytes").exists():
        _warn_swap_ignored(path, resources)
        total = None
    if not resources.memory:
        if total is not None:
            write(path, "memory.memsw.limit_in_bytes", total)
        return
    if total is None:
        write(path, "memory.limit_in_bytes", resources.memory)
        return
    # The kernel keeps memsw.limit >= limit at every write (memory.rst, 2.4), so raising the limits
    # writes memsw first and lowering them writes the limit first, as runc does.
    current = read_int(path, "memory.limit_in_bytes")
    if total == -1 or total > current:
        write(path, "memory.memsw.limit_in_bytes", total)
        write(path, "memory.limit_in_bytes", resources.memory)
    else:
        write(path, "memory.limit_in_bytes", resources.memory)
        write(path, "memory.memsw.limit_in_bytes", total)


def apply_v2(path: Path, resources: Resources) -> None:
    """Write memory.max, memory.swap.max (swap alone, not memory+swap) and memory.low to a v2 cgroup."""
    _check(resources)
    if resources.memory_reservation:
        write(path, "memory.low", resources.memory_reservation)
    total = _swap_total(resources)
    if total is not None:
        swap = UNLIMITED if total == -1 else total - (resources.memory or 0)
        try:
            write(path, "memory.swap.max", swap)
        except FileNotFoundError:
            # memory.swap.max is missing without swap accounting, like v1's memsw files.
            _warn_swap_ignored(path, resources)
    if resources.memory:
        write(path, "memory.max", UNLIMITED if resources.memory == -1 else resources.memory)


def stats_v1(path: Path) -> MemoryStats:
    """Return the usage, limit and memory.stat counters of a v1 memory cgroup."""
    counters = read_keyed(path, "memory.stat")
    return MemoryStats(
        usage=read_int(path, "memory.usage_in_bytes"),
        limit=_capped(read_int(path, "memory.limit_in_bytes")),
        max_usage=read_int(path, "memory.max_usage_in_bytes"),
        cache=counters.get("total_cache", 0),
        stats=counters,
    )


def stats_v2(path: Path) -> MemoryStats:
    """Return the usage, limit and memory.stat counters of a v2 cgroup (memory.peak needs Linux 5.19)."""
    counters = read_keyed(path, "memory.stat")
    return MemoryStats(
        usage=read_int(path, "memory.current"),
        limit=_capped(read_int(path, "memory.max")),
        max_usage=read_int(path, "memory.peak"),
        cache=counters.get("file", 0),
        stats=counters,
    )


def oom_kills_v1(path: Path) -> int:
    """Return how many processes the OOM killer killed in a v1 memory cgroup (Linux 4.13 and later)."""
    return read_keyed(path, "memory.oom_control").get("oom_kill", 0)


def oom_kills_v2(path: Path) -> int:
    """Return how many processes the OOM killer killed in a v2 cgroup and its descendants."""
    return read_keyed(path, "memory.events").get("oom_kill", 0)


def _check(resources: Resources) -> None:
    swap, memory = resources.memory_swap, resources.memory
    if not swap or swap == -1:
        return
    if not memory or memory < 0:
        raise InvalidArgument(f"memory swap limit {swap}: needs a memory limit too")
    if swap < memory:
        raise InvalidArgument(f"memory swap limit {swap}: must be at least the memory limit {memory}")


def _swap_total(resources: Resources) -> int | None:
    """Return the memory+swap limit to write: the one asked for, or Docker's default for a memory limit."""
    if resources.memory_swap:
        return resources.memory_swap
    if not resources.memory:
        return None
    return -1 if resources.memory == -1 else 2 * resources.memory


def _warn_swap_ignored(path: Path, resources: Resources) -> None:
    # Docker warns and runs the container without a swap limit; Docker's default total is silent.
    if resources.memory_swap and resources.memory_swap != -1:
        _log.warning(
            "cgroup %s: swap accounting is off, so memory swap limit %d is ignored", path, resources.memory_swap
        )


def _capped(limit: int) -> int:
    """Return `limit`, or the host's memory when the cgroup has none (or one above the host's)."""
    host = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return host if limit <= 0 or limit > host else limit
