"""The node's event log: one JSON line an event, appended by whoever changes a container.

Monitors append `start`, `die` (with the exit code), `oom` and `destroy` (with --rm); the
lifecycle appends `create` (with the container's labels, as moby's does), `destroy`, `kill`,
`stop`, `pause`, `unpause` and `rename`; the container filesystem verbs `commit`, `export`,
`archive-path`, `extract-to-dir` and `top`. Each line is written with
one O_APPEND write(2), so lines from many processes never interleave. The node agent follows the
log to keep the database in step, and the Docker API's /events reads it (Docker's event names).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

MAX_SIZE = 8 * 1024 * 1024


@dataclass(frozen=True)
class Event:
    action: str
    id: str
    time_ns: int
    attributes: Mapping[str, str] = field(default_factory=dict)
    type: str = "container"


def events_path(root: Path) -> Path:
    return root / "events.jsonl"


def append(root: Path, action: str, container_id: str, /, **attributes: str | int) -> None:
    """Record one event; the log starts again (keeping the previous one) past MAX_SIZE.

    Positional-only parameters: any attribute name is free, a container's label included.
    """
    path = events_path(root)
    line = json.dumps(
        {"type": "container", "action": action, "id": container_id, "time_ns": time.time_ns(),
         "attributes": {k: str(v) for k, v in attributes.items()}},
        separators=(",", ":"),
    ).encode() + b"\n"  # fmt: skip
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(fd).st_size > MAX_SIZE:
            os.replace(path, path.with_suffix(".jsonl.1"))
        os.write(fd, line)
    finally:
        os.close(fd)


def _decode(line: bytes) -> Event | None:
    try:
        data = json.loads(line)
        return Event(data["action"], data["id"], data["time_ns"], data.get("attributes", {}), data.get("type", ""))
    except (ValueError, KeyError):
        return None


def read(root: Path, since_ns: int = 0, until_ns: int = 0) -> list[Event]:
    """Return the events recorded between the two times (0: no bound), oldest first."""
    found = []
    for path in (events_path(root).with_suffix(".jsonl.1"), events_path(root)):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        for line in data.splitlines():
            event = _decode(line)
            if event and event.time_ns >= since_ns and (not until_ns or event.time_ns <= until_ns):
                found.append(event)
    return found


def follow(root: Path, stopped: Callable[[], bool], poll_interval: float = 0.05) -> Iterator[Event]:
    """Yield events appended from now on until `stopped()`, across the log starting again."""
    path = events_path(root)
    path.touch(mode=0o600, exist_ok=True)
    f = open(path, "rb")  # noqa: SIM115 - reopened when the log starts again
    f.seek(0, os.SEEK_END)
    pending = b""
    try:
        while not stopped():
            chunk = f.read()
            if chunk:
                *lines, pending = (pending + chunk).split(b"\n")
                yield from (e for e in map(_decode, lines) if e is not None)
                continue
            if path.exists() and os.stat(path).st_ino != os.fstat(f.fileno()).st_ino:
                f.close()
                f = open(path, "rb")  # noqa: SIM115
                continue
            time.sleep(poll_interval)
    finally:
        f.close()
