"""Container state as the OCI runtime spec defines it, kept in `<runtime root>/<id>/state.json`."""

from __future__ import annotations

import enum
import json
import os
import select
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from containers.engine.errors import InvalidStateTransition


class Status(enum.StrEnum):
    """The OCI states, plus `paused` as runc reports a frozen container."""

    CREATING = "creating"
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


# Which verbs each state allows (runc state_linux.go; youki state.rs `can_*`).
TRANSITIONS: dict[str, set[Status]] = {
    "start": {Status.CREATED},
    "kill": {Status.CREATED, Status.RUNNING, Status.PAUSED},
    "pause": {Status.RUNNING},
    "resume": {Status.PAUSED},
    "delete": {Status.STOPPED, Status.CREATED},
    "exec": {Status.RUNNING},
}


def check_transition(status: Status, verb: str) -> None:
    """Raise InvalidStateTransition unless `verb` is allowed in `status`."""
    if status not in TRANSITIONS[verb]:
        raise InvalidStateTransition(status.value, verb)


@dataclass
class State:
    """What `state` prints, plus what the runtime needs to find the process again safely."""

    id: str
    pid: int
    bundle: str
    status: Status = Status.CREATED
    created: str = ""
    rootfs: str = ""
    cgroup: str = ""
    # The process start time (field 22 of /proc/<pid>/stat) tells our pid from a reused one.
    start_time: int = 0
    annotations: dict[str, str] = field(default_factory=dict)

    def to_oci(self) -> dict[str, Any]:
        return {
            "ociVersion": "1.0.2",
            "id": self.id,
            "status": self.status.value,
            "pid": self.pid if self.status is not Status.STOPPED else 0,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "annotations": self.annotations,
        }

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> State:
        data = json.loads(path.read_text())
        data["status"] = Status(data["status"])
        return cls(**data)


def process_start_time(pid: int) -> int | None:
    """Return the start time of `pid` in clock ticks since boot, or None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def process_running(pid: int) -> bool:
    """Whether `pid` still runs; a zombie (exited, not yet reaped) does not."""
    return process_start_time(pid) is not None


def wait_exited(pid: int, timeout: float = 5.0) -> bool:
    """Wait until `pid`, a process that is not our child (a monitor, a container's init), has exited,
    or `timeout` passes; return whether it has.

    A pidfd (pidfd_open(2)) is readable once its process has exited: no polling.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    return bool(readable)


def reap_exited() -> Iterator[tuple[int, int]]:
    """Reap every child that has exited, without waiting for the others; yield each (pid, wait status)."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, status
