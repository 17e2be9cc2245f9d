"""What the API server holds in memory: attaches waiting for a start, running pipes, exec records.

`docker run` sends attach, wait and start on three connections, in that order:

```
attach ──► 101, then waits here (Activity.expect_start) ──────────► pipes the stream ──► EOF
wait   ──► 200 headers, then waits for a change ───────────────────────────────────────► {"StatusCode": N}
start  ──► takes the waiting attaches, starts the container with its stdio attached ──► 204
```

The start hands the stream it got from the engine (attached from the container's first byte) to
the first waiting attach. A waiter answers only once the container's pipes are done, so that the
client has all the output before the exit code (moby flushes the attach stream first).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from containers.engine.errors import Conflict, NotFound
from containers.engine.shim.client import Stream

logger = logging.getLogger(__name__)

_KEEP_EXIT_CODES = 1000
_KEEP_FINISHED_EXECS_S = 600.0
# The longest that work `after_run` is asked for waits for the container's attach streams.
AFTER_RUN_S = 0.05


class PendingAttach:
    """An attach connection waiting for its container to start; see the module docstring."""

    def __init__(self, container_id: str, streams: dict[str, bool]) -> None:
        self.container_id = container_id
        self.streams = streams
        self.stream: Stream | None = None
        self.started = False
        self._ready = threading.Event()

    def give(self, stream: Stream | None, started: bool) -> None:
        """Hand over the start's outcome: the stream (None: attach on your own), or a failed start."""
        self.stream, self.started = stream, started
        self._ready.set()

    def wait(self, timeout: float) -> bool:
        return self._ready.wait(timeout)


@dataclass
class _AfterRun:
    container_id: str
    work: Callable[[], object]
    expect_attach: bool
    deadline: float
    attached: bool = False


class Activity:
    """Changes to containers made through this server, and the pipes that stream their output."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0
        self._waiting: dict[str, list[PendingAttach]] = {}
        self._pipes: Counter[str] = Counter()
        self._waits: Counter[str] = Counter()
        self._exit_codes: OrderedDict[str, int] = OrderedDict()
        self._after: list[_AfterRun] = []
        self._after_thread: threading.Thread | None = None

    def generation(self) -> int:
        with self._cond:
            return self._generation

    def changed(self) -> None:
        """Wake the waiters: a container was started, stopped or removed through this server."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def wait_change(self, seen: int, timeout: float) -> int:
        """Wait until the generation passes `seen` or `timeout` elapses (changes made elsewhere); return it."""
        with self._cond:
            self._cond.wait_for(lambda: self._generation != seen, timeout)
            return self._generation

    def expect_start(self, container_id: str, streams: dict[str, bool]) -> PendingAttach:
        pending = PendingAttach(container_id, streams)
        with self._cond:
            self._waiting.setdefault(container_id, []).append(pending)
            self._pipes[container_id] += 1
            self._cond.notify_all()
        return pending

    def take_waiting(self, container_id: str) -> list[PendingAttach]:
        with self._cond:
            return self._waiting.pop(container_id, [])

    def withdraw(self, pending: PendingAttach) -> bool:
        """Stop waiting for a start; False if a start has taken the attach already (its `give` follows)."""
        with self._cond:
            return self._withdraw(pending)

    def _withdraw(self, pending: PendingAttach) -> bool:
        waiting = self._waiting.get(pending.container_id, [])
        if pending not in waiting:
            return False
        waiting.remove(pending)
        if not waiting:
            del self._waiting[pending.container_id]
        return True

    def begin(self, container_id: str) -> None:
        with self._cond:
            self._pipes[container_id] += 1
            self._cond.notify_all()

    def end(self, container_id: str, exit_code: int | None, pending: PendingAttach | None = None) -> None:
        """A pipe is done (with the exit code it saw, if any); a pending attach stops waiting."""
        with self._cond:
            if pending is not None:
                self._withdraw(pending)
            self._pipes[container_id] -= 1
            if self._pipes[container_id] <= 0:
                del self._pipes[container_id]
            if exit_code is not None:
                self._exit_codes[container_id] = exit_code
                while len(self._exit_codes) > _KEEP_EXIT_CODES:
                    self._exit_codes.popitem(last=False)
            self._generation += 1
            self._cond.notify_all()

    @contextmanager
    def waiting(self, container_id: str) -> Iterator[None]:
        """Mark a wait on the container as under way (the after-run work waits for it too)."""
        with self._cond:
            self._waits[container_id] += 1
        try:
            yield
        finally:
            with self._cond:
                self._waits[container_id] -= 1
                if self._waits[container_id] <= 0:
                    del self._waits[container_id]
                self._cond.notify_all()

    def wait_pipes(self, container_id: str, timeout: float) -> None:
        """Wait until no pipe of the container runs, so that its output is out before the wait's answer."""
        with self._cond:
            self._cond.wait_for(lambda: container_id not in self._pipes, timeout)

    def after_run(self, container_id: str, work: Callable[[], object], expect_attach: bool = False) -> None:
        """Have this server's after-run thread do `work` once the container's attach streams and
        waits are done (with `expect_attach`, once one has come and gone: a create's), or
        AFTER_RUN_S on.

        For what the client need not wait for, the database's rows and audit records: a quick
        `docker run` is a create, an attach, a wait and a start whose container exits within
        milliseconds, and that work on the request threads would delay their answers (one
        interpreter runs all).
        """
        with self._cond:
            self._after.append(_AfterRun(container_id, work, expect_attach, time.monotonic() + AFTER_RUN_S))
            if self._after_thread is None:
                self._after_thread = threading.Thread(target=self._after_runs, name="after runs", daemon=True)
                self._after_thread.start()
            self._cond.notify_all()

    def _after_runs(self) -> None:
        while True:
            with self._cond:
                while not (ready := self._take_ready()):
                    soonest = min((a.deadline for a in self._after), default=None)
                    self._cond.wait(None if soonest is None else max(0.0, soonest - time.monotonic()))
            for after in ready:
                try:
                    after.work()
                except Exception:
                    logger.exception("the work after the run of container %s failed", after.container_id[:12])

    def _take_ready(self) -> list[_AfterRun]:
        now, ready, waiting = time.monotonic(), [], []
        for after in self._after:
            attached = after.container_id in self._pipes or after.container_id in self._waits
            after.attached = after.attached or attached
            done = not attached and (after.attached or not after.expect_attach)
            (ready if done or now >= after.deadline else waiting).append(after)
        self._after = waiting
        return ready

    def exit_code(self, container_id: str) -> int | None:
        """Return the exit code a pipe saw last for the container (the only trace of an auto-removed one)."""
        with self._cond:
            return self._exit_codes.get(container_id)


@dataclass
class Exec:
    """An exec instance as `POST /containers/{id}/exec` made it and `GET /exec/{id}/json` shows it."""

    id: str
    container_id: str
    cmd: list[str]
    user: str = ""
    env: list[str] = field(default_factory=list)
    workdir: str = ""
    tty: bool = False
    attach_stdin: bool = False
    attach_stdout: bool = True
    attach_stderr: bool = True
    console_size: list[int] = field(default_factory=list)
    detach_keys: str = ""
    privileged: bool = False
    started: bool = False
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    finished_at: float = 0.0
    stream: Stream | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def inspect(self) -> dict[str, Any]:
        return {
            "ID": self.id, "Running": self.running, "ExitCode": self.exit_code, "Pid": self.pid,
            "ContainerID": self.container_id, "OpenStdin": self.attach_stdin, "OpenStdout": self.attach_stdout,
            "OpenStderr": self.attach_stderr, "CanRemove": False, "DetachKeys": self.detach_keys,
            "ProcessConfig": {
                "tty": self.tty, "entrypoint": self.cmd[0] if self.cmd else "", "arguments": self.cmd[1:],
                "privileged": self.privileged, "user": self.user,
            },
        }  # fmt: skip

    def resize(self, height: int, width: int) -> None:
        with self.lock:
            if self.stream is None or not self.running:
                raise Conflict(f"Exec {self.id} is not running")
            self.stream.resize(height, width)

    def write(self, data: bytes) -> None:
        with self.lock:
            if self.stream is not None:
                self.stream.write(data)

    def close_stdin(self) -> None:
        with self.lock:
            if self.stream is not None:
                self.stream.close_stdin()

    def finish(self, exit_code: int | None) -> None:
        """Record the exit code; the stream to the client closes only after this (the CLI inspects at once)."""
        with self.lock:
            self.running, self.exit_code, self.finished_at, self.stream = False, exit_code, time.time(), None


class Execs:
    """The exec instances of this server; finished ones are forgotten after ten minutes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._execs: dict[str, Exec] = {}

    def add(self, record: Exec) -> None:
        with self._lock:
            horizon = time.time() - _KEEP_FINISHED_EXECS_S
            for old in [e for e in self._execs.values() if e.finished_at and e.finished_at < horizon]:
                del self._execs[old.id]
            self._execs[record.id] = record

    def get(self, exec_id: str) -> Exec:
        with self._lock:
            record = self._execs.get(exec_id)
        if record is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return record

    def of_container(self, container_id: str) -> list[str]:
        with self._lock:
            return [e.id for e in self._execs.values() if e.container_id == container_id and e.running]


ACTIVITY = Activity()
EXECS = Execs()
