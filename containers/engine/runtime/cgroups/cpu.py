"""The cpu controller (and v1's cpuacct): CFS bandwidth, relative weight, usage and throttling.

Kernel docs: Documentation/scheduler/sched-bwc.rst (quota and period), Documentation/admin-guide/
cgroup-v1/cpuacct.rst, and the "CPU" section of Documentation/admin-guide/cgroup-v2.rst.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from .common import Resources, read, read_keyed, write

# The range the kernel clamps cpu.shares to (kernel/sched/sched.h, MIN_SHARES and MAX_SHARES).
MIN_SHARES = 2
MAX_SHARES = 262144

_NS_PER_USEC = 1000


@dataclass(frozen=True)
class CpuStats:
    """CPU time used and CFS throttling, all in nanoseconds."""

    usage_ns: int = 0
    user_ns: int = 0
    system_ns: int = 0
    per_cpu_ns: tuple[int, ...] = ()
    nr_periods: int = 0
    throttled_periods: int = 0
    throttled_time_ns: int = 0


def shares_to_weight(shares: int) -> int:
    """Return the cgroup v2 cpu.weight (1..10000) for v1 cpu.shares (2..262144), as runc converts it."""
    shares = min(max(shares, MIN_SHARES), MAX_SHARES)
    return 1 + ((shares - MIN_SHARES) * 9999) // (MAX_SHARES - MIN_SHARES)


def apply_v1(path: Path, resources: Resources) -> None:
    """Write shares, period and quota to a v1 cpu cgroup."""
    if resources.cpu_shares:
        write(path, "cpu.shares", resources.cpu_shares)
    retry_period: int | None = None
    if resources.cpu_period:
        try:
            write(path, "cpu.cfs_period_us", resources.cpu_period)
        except OSError as err:
            # The kernel checks the new quota/period ratio against the parent's (tg_cfs_schedulable_down),
            # so a shorter period can be refused with the old quota; runc sets the quota first and retries.
            if err.errno != errno.EINVAL or not resources.cpu_quota:
                raise
            retry_period = resources.cpu_period
    if resources.cpu_quota:
        # -1 is the only "no limit" cpu.cfs_quota_us accepts (sched-bwc.rst); Docker uses 0 for none.
        write(path, "cpu.cfs_quota_us", resources.cpu_quota if resources.cpu_quota > 0 else -1)
    if retry_period is not None:
        write(path, "cpu.cfs_period_us", retry_period)


def apply_v2(path: Path, resources: Resources) -> None:
    """Write cpu.weight and cpu.max ("$QUOTA $PERIOD", quota "max" for none) to a v2 cgroup."""
    if resources.cpu_shares:
        write(path, "cpu.weight", shares_to_weight(resources.cpu_shares))
    if not resources.cpu_quota and not resources.cpu_period:
        return
    quota = str(resources.cpu_quota) if resources.cpu_quota and resources.cpu_quota > 0 else "max"
    # cpu.max keeps the current period when only the quota is written.
    value = f"{quota} {resources.cpu_period}" if resources.cpu_period else quota
    write(path, "cpu.max", value)


def stats_v1(cpu: Path, cpuacct: Path) -> CpuStats:
    """Return usage from the v1 cpuacct cgroup and throttling from the v1 cpu cgroup."""
    # cpuacct.stat counts user and system time in USER_HZ ticks (cgroup-v1/cpuacct.rst).
    ticks = read_keyed(cpuacct, "cpuacct.stat")
    ns_per_tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    throttling = read_keyed(cpu, "cpu.stat")
    return CpuStats(
        usage_ns=int(read(cpuacct, "cpuacct.usage")),
        user_ns=ticks.get("user", 0) * ns_per_tick,
        system_ns=ticks.get("system", 0) * ns_per_tick,
        per_cpu_ns=tuple(int(n) for n in read(cpuacct, "cpuacct.usage_percpu").split()),
        nr_periods=throttling.get("nr_periods", 0),
        throttled_periods=throttling.get("nr_throttled", 0),
        throttled_time_ns=throttling.get("throttled_time", 0),
    )


def stats_v2(path: Path) -> CpuStats:
    """Return usage and throttling from a v2 cgroup's cpu.stat (microseconds); v2 has no per-CPU usage."""
    stat = read_keyed(path, "cpu.stat")
    return CpuStats(
        usage_ns=stat.get("usage_usec", 0) * _NS_PER_USEC,
        user_ns=stat.get("user_usec", 0) * _NS_PER_USEC,
        system_ns=stat.get("system_usec", 0) * _NS_PER_USEC,
        nr_periods=stat.get("nr_periods", 0),
        throttled_periods=stat.get("nr_throttled", 0),
        throttled_time_ns=stat.get("throttled_usec", 0) * _NS_PER_USEC,
    )
