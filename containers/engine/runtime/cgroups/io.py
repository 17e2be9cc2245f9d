"""The io controller (blkio on cgroup v1): proportional weight and bytes read and written.

Kernel docs: Documentation/admin-guide/cgroup-v1/blkio-controller.rst and the "IO" section of
cgroup-v2.rst. `blkio_weight` keeps Docker's v1 scale (10..1000).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .common import Resources, read, write


@dataclass(frozen=True)
class IoStats:
    """Bytes the cgroup read from and wrote to block devices, summed over the devices."""

    read_bytes: int = 0
    write_bytes: int = 0


def weight_to_io_weight(weight: int) -> int:
    """Return the v2 io.weight (1..10000) for a v1 blkio weight (10..1000), as runc converts it."""
    return 1 + (weight - 10) * 9999 // 990


def apply_v1(path: Path, resources: Resources) -> None:
    """Write the weight to blkio.weight (CFQ), or to blkio.bfq.weight on kernels without CFQ."""
    if not resources.blkio_weight:
        return
    # CFQ went away in Linux 5.0 with the legacy block layer; BFQ took its weight file, same scale.
    name = "blkio.weight" if (path / "blkio.weight").exists() else "blkio.bfq.weight"
    write(path, name, resources.blkio_weight)


def apply_v2(path: Path, resources: Resources) -> None:
    """Write the weight to io.bfq.weight (same scale as v1) or, without BFQ, converted to io.weight."""
    if not resources.blkio_weight:
        return
    if (path / "io.bfq.weight").exists():
        write(path, "io.bfq.weight", resources.blkio_weight)
    else:
        write(path, "io.weight", weight_to_io_weight(resources.blkio_weight))


def stats_v1(path: Path) -> IoStats:
    """Return the bytes from blkio.throttle.io_service_bytes_recursive lines ("8:0 Read 4096").

    The throttle files count every request whether or not a throttle is set, and unlike the CFQ
    files they exist on every scheduler, which is why runc and Docker fall back to them.
    """
    totals = {"Read": 0, "Write": 0}
    for line in _lines(path, "blkio.throttle.io_service_bytes_recursive"):
        fields = line.split()
        if len(fields) == 3 and fields[1] in totals:
            totals[fields[1]] += int(fields[2])
    return IoStats(read_bytes=totals["Read"], write_bytes=totals["Write"])


def stats_v2(path: Path) -> IoStats:
    """Return the bytes from io.stat lines ("8:0 rbytes=4096 wbytes=0 rios=1 ...")."""
    read_bytes = write_bytes = 0
    for line in _lines(path, "io.stat"):
        counters = dict(field.split("=", 1) for field in line.split()[1:] if "=" in field)
        read_bytes += int(counters.get("rbytes", 0))
        write_bytes += int(counters.get("wbytes", 0))
    return IoStats(read_bytes=read_bytes, write_bytes=write_bytes)


def _lines(path: Path, name: str) -> list[str]:
    try:
        return read(path, name).splitlines()
    except FileNotFoundError:
        return []
