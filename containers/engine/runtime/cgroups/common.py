"""What every controller module shares: the `Resources` record and the cgroupfs file helpers.

Controller modules read and write cgroupfs files with the helpers here and let `OSError` escape;
the managers turn it into an `EngineError` at their boundary, so the errno survives until then
for the few callers that react to it (the CFS period retry in `cpu.py`, for one).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from containers.engine.errors import InvalidArgument

# The value cgroup files print for "no limit": v1 prints the page-aligned LLONG_MAX, v2 prints "max".
UNLIMITED = "max"


@dataclass(frozen=True)
class DeviceRule:
    """One OCI `linux.resources.devices` entry: allow or deny `access` to matching device nodes.

    `type` is "c" (character), "b" (block) or "a" (both); a `major` or `minor` of None matches
    any number; `access` is a combination of r (read), w (write) and m (mknod).
    """

    allow: bool
    type: str = "a"
    major: int | None = None
    minor: int | None = None
    access: str = "rwm"

    def __post_init__(self) -> None:
        if self.type not in ("a", "b", "c"):
            raise InvalidArgument(f"device rule type {self.type!r}: must be a, b or c")
        if not self.access or set(self.access) - set("rwm"):
            raise InvalidArgument(f"device rule access {self.access!r}: must be a combination of r, w and m")
        for number in (self.major, self.minor):
            if number is not None and number < 0:
                raise InvalidArgument(f"device rule number {number}: must not be negative")

    @property
    def matches_everything(self) -> bool:
        """Return whether the rule covers every device and every access, like `a *:* rwm`."""
        everything = self.type == "a" and self.major is None and self.minor is None
        return everything and set(self.access) == set("rwm")


@dataclass(frozen=True)
class Resources:
    """The limits of one container, in kernel units, with Docker's `docker run` meanings.

    None, or 0 as in Docker's API, means "leave the kernel's value alone"; `pids_limit` <= 0 means
    unlimited. `memory_swap` is memory plus swap, as in `--memory-swap`, with -1 for unlimited; when
    only `memory` is set, swap is limited to twice `memory` as Docker does. `cpu_quota` and
    `cpu_period` are microseconds (`--cpus 0.5` is quota 50000 in period 100000). `cpu_shares` and
    `blkio_weight` use cgroup v1 scales and are converted on v2.
    """

    memory: int | None = None
    memory_reservation: int | None = None
    memory_swap: int | None = None
    cpu_shares: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    pids_limit: int | None = None
    blkio_weight: int | None = None
    devices: tuple[DeviceRule, ...] = ()

    @classmethod
    def from_oci(cls, resources: Mapping[str, Any]) -> Resources:
        """Return the resources of an OCI runtime spec's `linux.resources` object."""
        memory = _section(resources, "memory")
        cpu = _section(resources, "cpu")
        return cls(
            memory=_integer(memory, "limit", "memory"),
            memory_reservation=_integer(memory, "reservation", "memory"),
            memory_swap=_integer(memory, "swap", "memory"),
            cpu_shares=_integer(cpu, "shares", "cpu"),
            cpu_quota=_integer(cpu, "quota", "cpu"),
            cpu_period=_integer(cpu, "period", "cpu"),
            cpuset_cpus=_string(cpu, "cpus", "cpu"),
            cpuset_mems=_string(cpu, "mems", "cpu"),
            pids_limit=_integer(_section(resources, "pids"), "limit", "pids"),
            blkio_weight=_integer(_section(resources, "blockIO"), "weight", "blockIO"),
            devices=tuple(_device_rule(entry) for entry in resources.get("devices") or ()),
        )


def _section(resources: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = resources.get(name, {})
    if not isinstance(section, Mapping):
        raise InvalidArgument(f"linux.resources.{name}: expected an object, got {section!r}")
    return section


def _integer(section: Mapping[str, Any], key: str, where: str) -> int | None:
    value = section.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"linux.resources.{where}.{key}: expected an integer, got {value!r}")
    return value


def _string(section: Mapping[str, Any], key: str, where: str) -> str | None:
    value = section.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"linux.resources.{where}.{key}: expected a string, got {value!r}")
    return value


def _device_rule(entry: Mapping[str, Any]) -> DeviceRule:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("allow"), bool):
        raise InvalidArgument(f"linux.resources.devices entry {entry!r}: needs a boolean allow")

    def number(key: str) -> int | None:
        # runc reads -1, which OCI generators write for "any", the same as a missing number.
        value = _integer(entry, key, "devices")
        return None if value is None or value == -1 else value

    return DeviceRule(
        allow=entry["allow"],
        type=entry.get("type") or "a",
        major=number("major"),
        minor=number("minor"),
        access=entry.get("access") or "rwm",
    )


def write(directory: Path, name: str, value: str | int) -> None:
    """Write `value` to the cgroup file `directory/name` in one write(2).

    cgroupfs parses each write(2) as a whole value, so it must not be split; the file is opened
    without O_CREAT because a missing file means a missing controller or feature, never a file
    to make.
    """
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        write_open(fd, path, value)
    finally:
        os.close(fd)


def write_open(fd: int, path: Path, value: str | int) -> None:
    """Write `value` in one write(2) to `fd`, the cgroup file `path` opened for writing (see `write`)."""
    try:
        os.write(fd, str(value).encode())
    except OSError as err:
        raise OSError(err.errno, f"{err.strerror} (writing {str(value)!r})", os.fspath(path)) from err


def read(directory: Path, name: str) -> str:
    """Return the content of the cgroup file `directory/name` without the trailing newline."""
    return (directory / name).read_text().rstrip("\n")


def read_int(directory: Path, name: str) -> int:
    """Return the number in a single-value cgroup file, with 0 for "max" or a missing file."""
    try:
        text = read(directory, name)
    except FileNotFoundError:
        return 0
    return 0 if text == UNLIMITED else int(text)


def read_keyed(directory: Path, name: str) -> dict[str, int]:
    """Return a flat-keyed cgroup file (`key value` lines, like memory.stat) as a dict; {} if missing."""
    try:
        text = read(directory, name)
    except FileNotFoundError:
        return {}
    pairs = (line.split() for line in text.splitlines())
    return {fields[0]: int(fields[1]) for fields in pairs if len(fields) == 2 and fields[1].lstrip("-").isdigit()}
