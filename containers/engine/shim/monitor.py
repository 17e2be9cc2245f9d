"""The per-container monitor (containerd's shim): it owns the container's stdio and outlives everyone else.

A monitor is forked from the shim server (a small, preloaded parent; see server.py), moves into a
session of its own, and becomes the subreaper of its container, so that web, the node agent or
redis can restart or die without touching the container. It:

- creates and starts the container through the runtime, with pipes (or a pty) as its stdio;
- writes every line of output to the json-file log and to attached clients;
- serves `<state dir>/monitor.sock`: attach, exec, resize, wait and status requests;
- reaps the container and exec'd processes, records exit code, OOM kill, start and finish times in
  `<state dir>/monitor.json`, restarts the container as its restart policy says, and finally
  unmounts the rootfs and exits; or, if the container was removed at its exit (`--rm`), goes
  back to the shim server to supervise the next container (see server.py).

A standby monitor (`Config.standby`, see containers/engine/standby.py) creates its container with
the process deferred and waits on monitor.sock: a `go` request brings the process and the
container's own config, and from then on it is a monitor like any other; an `abort`, its time to
live running out or its init dying release the container instead.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import selectors
import shutil
import signal
import socket
import struct
import termios
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, cast

from containers.engine import events
from containers.engine.errors import EngineError
from containers.engine.linux.syscalls import set_child_subreaper
from containers.engine.runtime import sync
from containers.engine.runtime.cgroups import new_manager
from containers.engine.runtime.container import NativeRuntime
from containers.engine.runtime.oci import new_runtime
from containers.engine.runtime.state import reap_exited
from containers.engine.shim import protocol
from containers.engine.shim.logfile import LogWriter, format_time, parse_time
from containers.engine.shim.paths import short_path
from containers.engine.snapshots import new_snapshotter
from containers.engine.snapshots.mount import unmount

MAX_CLIENT_BUFFER = 8 * 1024 * 1024
MANUAL_STOP = "manual-stop"
# `<containers root>/.standby/<id>` is there while a standby's monitor waits (containers/engine/standby.py).
STANDBY_INDEX = ".standby"
# `<containers root>/.removing/<id>` is there while an auto-removed container is released (`Monitor._forget`).
REMOVING_INDEX = ".removing"


@dataclass
class Status:
    """What `<state dir>/monitor.json` holds; the engine reads it for inspect and wait."""

    monitor_pid: int
    pid: int = 0
    status: str = "created"  # running | restarting | exited
    started_at: str = ""
    finished_at: str = ""
    exit_code: int = 0
    oom_killed: bool = False
    restart_count: int = 0
    error: str = ""


@dataclass
class Config:
    """A spawn request: everything the monitor needs, as plain JSON from the engine."""

    id: str
    bundle: str
    runtime: str
    runtime_root: str
    state_dir: str
    log_path: str
    rootfs: str = ""
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    console_size: list[int] = field(default_factory=list)
    log_max_size: int = 20 * 1024 * 1024
    log_max_files: int = 5
    restart_policy: str = "no"
    restart_max: int = 0
    auto_remove: bool = False
    snapshotter: str = "overlay"
    snapshots_root: str = ""
    events_root: str = ""
    standby: bool = False
    standby_ttl: float = 0.0

    @classmethod
    def of(cls, values: dict[str, Any]) -> Config:
        """Return the config a request carries; keys this version does not know are left out."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


def _now() -> str:
    return format_time(time.time_ns())


def set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class StartError(EngineError):
    """The container could not be started; `exit_code` is Docker's (127 not found, 126 not runnable)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Client:
    """One connection on monitor.sock that streams frames (attach or exec)."""

    def __init__(self, monitor: Monitor, conn: socket.socket, streams: set[int]) -> None:
        self.monitor = monitor
        self.conn = conn
        # The container's output streams this client gets (an attach's; an exec gets its own process's).
        self.streams = streams
        self.reader = protocol.FrameReader()
        self.out = bytearray()
        self.closing = False
        self.stdin_fd: int | None = None
        self.tty_fd: int | None = None
        # An exec's client owns its process's stdin pipe; an attach client shares the container's.
        self.owns_stdin = False
        self.on_close_stdin: Callable[[], None] | None = None
        self.on_hang_up: Callable[[], None] | None = None
        conn.setblocking(False)
        monitor.sel.register(conn, selectors.EVENT_READ, self._readable)

    def send(self, kind: int, payload: bytes) -> None:
        if self.conn.fileno() < 0:
            return
        self.out += protocol.pack(kind, payload)
        if len(self.out) > MAX_CLIENT_BUFFER:
            self.close()
            return
        self._flush()

    def _flush(self) -> None:
        try:
            sent = self.conn.send(self.out)
            del self.out[:sent]
        except BlockingIOError:
            pass
        except OSError:
            self.close()
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.out else 0)
        self.monitor.sel.modify(self.conn, events, self._readable)
        if self.closing and not self.out:
            self.close()

    def finish(self, kind: int, payload: bytes) -> None:
        """Send the last frame and close once it is out."""
        self.send(kind, payload)
        self.closing = True
        if self.conn.fileno() >= 0:
            self._flush()

    def _readable(self, conn: socket.socket, events: int) -> None:
        if events & selectors.EVENT_WRITE:
            self._flush()
        if not events & selectors.EVENT_READ or conn.fileno() < 0:
            return
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            # The client is gone (a half-close is sent as CLOSE_STDIN, never as EOF).
            self.close()
            return
        for kind, payload in self.reader.feed(data):
            self._frame(kind, payload)

    def _frame(self, kind: int, payload: bytes) -> None:
        target = self.tty_fd if self.tty_fd is not None else self.stdin_fd
        if kind == protocol.STDIN and target is not None:
            _write_all(target, payload)
        elif kind == protocol.CLOSE_STDIN and self.on_close_stdin is not None:
            self.on_close_stdin()
        elif kind == protocol.HANGUP and self.on_hang_up is not None:
            self.on_hang_up()
        elif kind == protocol.RESIZE and self.tty_fd is not None:
            size = json.loads(payload)
            set_winsize(self.tty_fd, int(size["h"]), int(size["w"]))

    def close_own_stdin(self) -> None:
        """Close an exec's stdin pipe when its client half-closes (the process sees EOF)."""
        if self.stdin_fd is not None:
            os.close(self.stdin_fd)
            self.stdin_fd = None

    def close(self) -> None:
        if self.owns_stdin:
            self.close_own_stdin()
        if self.conn.fileno() >= 0:
            self.monitor.sel.unregister(self.conn)
            self.conn.close()
        self.monitor.clients.discard(self)


def _drain(wake: int) -> None:
    """Empty the signal wake-up pipe (signal.set_wakeup_fd), which only says that a signal came."""
    try:
        os.read(wake, 512)
    except BlockingIOError:
        pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            time.sleep(0.001)
        except OSError:
            return


@dataclass
class ExecSession:
    client: Client | None
    exec_id: str
    outputs: dict[int, int]
    exit_code: int | None = None


class Monitor:
    """Supervise one container; see the module docstring."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.dir = Path(config.state_dir)
        self.runtime = new_runtime(config.runtime, Path(config.runtime_root))
        self.sel = selectors.DefaultSelector()
        self.clients: set[Client] = set()
        self.waiters: list[socket.socket] = []
        self.execs: dict[int, ExecSession] = {}
        self.status = Status(monitor_pid=os.getpid())
        self.outputs: dict[int, str] = {}
        self.stdin_w: int | None = None
        self.master: int | None = None
        self.pending_outputs: list[tuple[int, str]] = []
        # The container's cgroup, as its create made it (read for the OOM verdict at its exit).
        self.cgroup = ""
        self.removing = False
        self.exit_status: int | None = None
        # What the waiters heard at the end, for a wait that comes as the monitor finishes.
        self.result: dict[str, Any] | None = None
        self.done = False
        self.log = LogWriter(Path(config.log_path), config.log_max_size, config.log_max_files)

    #
    # life
    #

    def run(self, conn: socket.socket, attach: dict[str, bool] | None = None) -> None:
        """Start the container, answer `conn` with its pid or the error, then supervise until the end.

        With `attach`, `conn` stays open as an attach stream from the container's very first byte
        (`docker run` attaches before it starts the container, and loses nothing). Returns once
        the container is released, having closed what it opened; `reusable` then says whether
        this process may go on to supervise another container (see server.py).
        """
        if os.getsid(0) != os.getpid():  # a monitor that supervised a container before is a leader already
            os.setsid()
        set_child_subreaper()
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self._run(conn, attach, wake_r)
        finally:
            signal.set_wakeup_fd(-1)
            self.sel.close()
            os.close(wake_r)
            os.close(wake_w)

    @property
    def reusable(self) -> bool:
        """Whether this process may supervise another container once `run` has returned (see server.py):
        its container was removed at its exit, so nothing is left of it, and nobody knows this
        process as its monitor any more."""
        return self.removing

    def _run(self, conn: socket.socket, attach: dict[str, bool] | None, wake_r: int) -> None:
        self.sel.register(wake_r, selectors.EVENT_READ, self._on_signal)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        path = self.dir / "monitor.sock"
        path.unlink(missing_ok=True)
        with short_path(path) as name:
            listener.bind(name)
        os.chmod(path, 0o600)
        listener.listen(64)
        standby = self.config.standby
        if standby:
            go = self._stand_by(conn, listener, wake_r)
            if go is None:
                return
            conn, request = go
            attach = request.get("attach")
        try:
            if standby:
                self._go(request)
            else:
                self._start_container()
        except StartError as err:
            if standby:
                self._drop_standby_entry()
            self.status.status, self.status.error, self.status.exit_code = "exited", str(err), err.exit_code
            self._save()
            # Released (and with --rm removed) before the caller hears of it, as after an exit.
            self._release()
            if self.config.auto_remove:
                self._event("destroy")
            _reply(conn, {"error": str(err), "exit_code": self.status.exit_code})
            path.unlink(missing_ok=True)
            return
        self.sel.register(listener, selectors.EVENT_READ, self._on_accept)
        _reply(conn, {"pid": self.status.pid, "monitor_pid": os.getpid(), "tty": self.config.tty})
        if standby:
            # After the answer, which need not wait for it (0.2 ms here); before the loop, which
            # answers an abort that came meanwhile: whoever hears that this is no standby finds no entry.
            self._drop_standby_entry()
        if attach:
            self._attach_client(conn, attach)
        else:
            conn.close()
        self._loop()
        # What came as the container finished (a wait that just missed its exit) is answered; a
        # client that comes after hears at once that it is over, not after the release: closed,
        # the listener resets what waits in its backlog.
        while select.select([listener], [], [], 0)[0]:
            self._on_accept(listener, selectors.EVENT_READ)
        listener.close()
        path.unlink(missing_ok=True)
        if self.removing:
            self._release_removed()

    def _loop(self) -> None:
        while not (self.done and not any(c.out for c in self.clients)):
            for key, mask in self.sel.select(timeout=1.0 if not self.done else 0.05):
                key.data(key.fileobj, mask)
            if self.done and not self.clients:
                break

    def _save(self) -> None:
        tmp = self.dir / "monitor.json.tmp"
        tmp.write_text(json.dumps(asdict(self.status)))
        os.replace(tmp, self.dir / "monitor.json")

    #
    # the container
    #

    def _start_container(self, deferred: bool = False) -> None:
        """Create and start the container (with `deferred`, only create it: see `_stand_by`)."""
        cfg = self.config
        ours = theirs = None
        stdio: tuple[int, int, int] | None = None
        if cfg.tty:
            ours, theirs = socket.socketpair()
        else:
            stdin_r = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            if cfg.open_stdin:
                os.close(stdin_r)
                stdin_r, self.stdin_w = os.pipe2(os.O_CLOEXEC)
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            stdio = (stdin_r, out_w, err_w)

        def create_and_start() -> dict[str, Any]:
            if deferred:
                # Standbys are made only over the native runtime (see containers/engine/standby.py).
                native = cast(NativeRuntime, self.runtime)
                state = native.create(cfg.id, Path(cfg.bundle), stdio=stdio, console_socket=theirs, deferred=True)
                return {"pid": state.pid, "cgroup": state.cgroup}
            state = self.runtime.create(cfg.id, Path(cfg.bundle), stdio=stdio, console_socket=theirs)
            self.runtime.start(cfg.id)
            return {"pid": state.pid, "cgroup": state.cgroup}

        # In the monitor itself, as every runtime step (exec, delete): the pages they touch are
        # copied away from the shim server's and stay for the container's life, about 1.2 MiB a
        # monitor; a forked helper that spared them cost 6-7 ms a `docker run` or `docker exec` here.
        answer = _answer(create_and_start)
        if theirs is not None:
            theirs.close()
        for fd in stdio or ():
            os.close(fd)
        if "error" in answer:
            if ours is not None:
                ours.close()
            for fd in (out_r, err_r) if stdio else ():
                os.close(fd)
            raise StartError(answer["error"], answer["exit_code"])
        if ours is not None:
            self.master = sync.recv_fd(ours)[1]
            ours.close()
            if cfg.console_size:
                set_winsize(self.master, *cfg.console_size[:2])
            self.pending_outputs = [(self.master, "stdout")]
        else:
            self.pending_outputs = [(out_r, "stdout"), (err_r, "stderr")]
        self.status.pid, self.cgroup = answer["pid"], answer["cgroup"]
        if not deferred:
            self._running()

    def _stand_by(
        self, conn: socket.socket, listener: socket.socket, wake: int
    ) -> tuple[socket.socket, dict[str, Any]] | None:
        """Create the container with its process deferred, answer `conn`, and wait for `go`.

        Return the `go` request and its connection; None once the container is released instead
        (abort, time to live over, init gone).
        """
        try:
            self._start_container(deferred=True)
        except StartError as err:
            self._tear_down_standby()
            _reply(conn, {"error": str(err), "exit_code": err.exit_code})
            return None
        _reply(conn, {"pid": self.status.pid, "monitor_pid": os.getpid()})
        conn.close()
        deadline = time.monotonic() + self.config.standby_ttl
        while (remaining := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([listener, wake], [], [], remaining)
            if wake in readable and self._standby_died(wake):
                break
            if listener not in readable:
                continue
            client, _ = listener.accept()
            try:
                client.settimeout(2.0)
                request = protocol.read_line(client)
            except (OSError, ValueError):
                client.close()
                continue
            if request.get("op") == "go":
                client.settimeout(None)
                return client, request
            if request.get("op") == "abort":
                self._tear_down_standby()
                _reply(client, {})
                client.close()
                return None
            _reply(client, {"error": "the container is not running"})
            client.close()
        self._tear_down_standby()
        return None

    def _standby_died(self, wake: int) -> bool:
        """Reap what exited while standing by; return whether it was the container's init."""
        _drain(wake)
        return self.status.pid in [pid for pid, _ in reap_exited()]

    def _go(self, request: dict[str, Any]) -> None:
        """Become the monitor of the container `request` describes, and start its process."""
        self.config = Config.of(request["config"])
        self.log = LogWriter(Path(self.config.log_path), self.config.log_max_size, self.config.log_max_files)

        def start() -> dict[str, Any]:
            cast(NativeRuntime, self.runtime).start(self.config.id, request["process"])
            return {}

        answer = _answer(start)
        if "error" in answer:
            self._abandon()
            raise StartError(answer["error"], answer["exit_code"])
        self._running()

    def _drop_standby_entry(self) -> None:
        (self.dir.parent / STANDBY_INDEX / self.config.id).unlink(missing_ok=True)

    def _abandon(self) -> None:
        """Let go of a container whose process never ran: its output pipes and its runtime state."""
        for fd, _ in self.pending_outputs:
            os.close(fd)
        self.pending_outputs = []
        try:
            self.runtime.delete(self.config.id, force=True)
        except EngineError:
            pass

    def _tear_down_standby(self) -> None:
        """Release a container that never ran: its runtime state, mounts and, unless adopted, its files.

        Under the containers' lock, as create adopts standbys: an adopted one (its container.json
        written) stays as a created container, which a later start starts as usual.
        """
        self._abandon()
        with open(self.dir.parent / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._drop_standby_entry()
            adopted = (self.dir / "container.json").exists()
            self.config.auto_remove = not adopted
            self._release()
        (self.dir / "monitor.sock").unlink(missing_ok=True)

    def _running(self) -> None:
        """The container's process runs: read its output, and say so."""
        for fd, stream in self.pending_outputs:
            self._watch_output(fd, stream)
        self.pending_outputs = []
        self.status.status = "running"
        self.status.started_at = _now()
        self.status.finished_at = ""
        self._save()
        self._event("start")

    def _watch_output(self, fd: int, stream: str) -> None:
        os.set_blocking(fd, False)
        self.outputs[fd] = stream
        self.sel.register(fd, selectors.EVENT_READ, self._on_output)

    def _on_output(self, fd: int, events: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO from a pty master once the last slave is closed
            data = b""
        stream = self.outputs[fd]
        if not data:
            self.sel.unregister(fd)
            os.close(fd)
            del self.outputs[fd]
            if fd == self.master:
                self.master = None
            self._maybe_finish()
            return
        self.log.write(stream, data)
        kind = protocol.STDOUT if stream == "stdout" else protocol.STDERR
        for client in list(self.clients):
            if kind in client.streams:
                client.send(kind, data)

    def _close_stdin(self) -> None:
        if self.stdin_w is not None:
            os.close(self.stdin_w)
            self.stdin_w = None

    def _on_signal(self, fd: int, events: int) -> None:
        _drain(fd)
        for pid, status in reap_exited():
            if pid == self.status.pid and self.exit_status is None:
                self.exit_status = status
                self._maybe_finish()
            elif pid in self.execs:
                session = self.execs[pid]
                session.exit_code = _exit_code(status)
                self._maybe_finish_exec(pid)

    def _maybe_finish(self) -> None:
        """Finish once the container has exited and all of its output has been read."""
        if self.exit_status is None or self.outputs:
            return
        status, self.exit_status = self.exit_status, None
        self.log.flush_partial()
        self.status.exit_code = _exit_code(status)
        self.status.finished_at = _now()
        restart = self._should_restart()
        self.removing = self.config.auto_remove and not restart

        def finish() -> dict[str, Any]:
            self.status.oom_killed = new_manager(self.cgroup).oom_kills() > 0
            if self.removing:
                self._forget()
                return {"oom_killed": self.status.oom_killed}
            self.runtime.delete(self.config.id, force=True)
            if not restart:
                # Released before the status says so: whoever reads "exited" may start it again at once.
                try:
                    self._release_now()
                finally:
                    self.status.status = "exited"
                    self._save()
            return {"oom_killed": self.status.oom_killed}

        # The cgroup's verdict, the runtime's delete, the final status and the release, before
        # anyone hears of the exit: a `wait` then `rm` finds nothing mounted. With --rm the
        # container is forgotten instead, and released once everyone has heard (see `_forget`).
        answer = _answer(finish)
        self.status.oom_killed = bool(answer.get("oom_killed"))
        if not restart:
            self.status.status = "exited"
        self._close_stdin()
        for session_pid in list(self.execs):
            self.execs[session_pid].outputs.clear()
            self._maybe_finish_exec(session_pid)
        if self.status.oom_killed:
            self._event("oom")
        self._event("die", exitCode=self.status.exit_code)
        if not restart and self.config.auto_remove:
            self._event("destroy")
        result = {"exit_code": self.status.exit_code, "oom_killed": self.status.oom_killed}
        self.result = result
        for waiter in self.waiters:
            _reply(waiter, result)
            waiter.close()
        self.waiters.clear()
        if restart:
            self._restart()
            return
        for client in list(self.clients):
            client.finish(protocol.EXIT, json.dumps(result).encode())
        self.done = True

    def _forget(self) -> None:
        """Make an auto-removed container gone for everyone at once: its record and name.

        Its cgroup, mount and files are released after the waiters and attached clients have
        heard (`_release_removed`): `docker run --rm` returns that much sooner. Until then
        `<containers root>/.removing/<id>` (this monitor's pid) says a release is under way, for
        those who must wait for it (removing the container's image).
        """
        marker = self.dir.parent / REMOVING_INDEX / self.config.id
        marker.parent.mkdir(mode=0o700, exist_ok=True)
        marker.write_text(str(os.getpid()))
        (self.dir / "container.json").unlink(missing_ok=True)

    def _release_removed(self) -> None:
        """Release what a forgotten container held, then drop its `.removing` marker."""
        try:
            self.runtime.delete(self.config.id, force=True)
        except EngineError:
            pass
        self._release()
        (self.dir.parent / REMOVING_INDEX / self.config.id).unlink(missing_ok=True)

    def _event(self, action: str, **attributes: str | int) -> None:
        if self.config.events_root:
            events.append(Path(self.config.events_root), action, self.config.id, **attributes)

    def _should_restart(self) -> bool:
        policy, code = self.config.restart_policy, self.status.exit_code
        if (self.dir / MANUAL_STOP).exists() or policy in ("", "no"):
            return False
        if policy == "on-failure":
            return code != 0 and (not self.config.restart_max or self.status.restart_count < self.config.restart_max)
        return policy in ("always", "unless-stopped")

    def _restart(self) -> None:
        """Restart with Docker's backoff: 100 ms doubling per restart, reset after 10 s of running."""
        self.status.status = "restarting"
        self._save()
        delay = min(0.1 * 2 ** min(self.status.restart_count, 10), 60.0)
        if self.status.started_at and time.time() - _seconds(self.status.started_at) >= 10:
            delay = 0.1
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            if (self.dir / MANUAL_STOP).exists():
                break
            time.sleep(0.02)
        if (self.dir / MANUAL_STOP).exists():
            self.status.status = "exited"
            self._save()
            self._release()
            self.done = True
            return
        self.status.restart_count += 1
        try:
            self._start_container()
        except StartError as err:
            self.status.status, self.status.error, self.status.exit_code = "exited", str(err), err.exit_code
            self._save()
            self._release()
            self.done = True

    def _release(self) -> None:
        """Release (see `_release_now`), errors aside."""
        _answer(self._release_now)

    def _release_now(self) -> dict[str, Any]:
        """Unmount the rootfs; with auto-remove, remove the container."""
        cfg = self.config
        if cfg.rootfs:
            unmount(Path(cfg.rootfs))
        if cfg.auto_remove:
            try:
                new_snapshotter(cfg.snapshotter, Path(cfg.snapshots_root)).remove(cfg.id)
            except EngineError:
                pass
            shutil.rmtree(self.dir, ignore_errors=True)
        return {}

    #
    # requests on monitor.sock
    #

    def _on_accept(self, listener: socket.socket, events: int) -> None:
        conn, _ = listener.accept()
        conn.settimeout(2.0)
        try:
            request = protocol.read_line(conn)
        except (OSError, ValueError):
            conn.close()
            return
        handler = getattr(self, f"_op_{request.get('op')}", None)
        if handler is None:
            _reply(conn, {"error": f"unknown request {request.get('op')!r}"})
            conn.close()
            return
        handler(conn, request)

    def _op_status(self, conn: socket.socket, request: dict[str, Any]) -> None:
        _reply(conn, asdict(self.status))
        conn.close()

    def _op_wait(self, conn: socket.socket, request: dict[str, Any]) -> None:
        _reply(conn, {"waiting": True})
        if self.done and self.result is not None:
            _reply(conn, self.result)
            conn.close()
            return
        self.waiters.append(conn)

    def _op_resize(self, conn: socket.socket, request: dict[str, Any]) -> None:
        if self.master is not None:
            set_winsize(self.master, int(request["h"]), int(request["w"]))
            _reply(conn, {"ok": True})
        else:
            _reply(conn, {"error": "the container has no terminal"})
        conn.close()

    def _op_attach(self, conn: socket.socket, request: dict[str, Any]) -> None:
        if self.status.status == "exited":
            _reply(conn, {"error": "container is not running", "exit_code": self.status.exit_code})
            conn.close()
            return
        _reply(conn, {"ok": True, "tty": self.config.tty})
        self._attach_client(conn, request)

    def _attach_client(self, conn: socket.socket, request: dict[str, Any]) -> None:
        streams = {kind for kind, key in ((protocol.STDOUT, "stdout"), (protocol.STDERR, "stderr")) if request.get(key)}
        client = Client(self, conn, streams)
        if request.get("stdin"):
            client.stdin_fd = self.stdin_w
            client.tty_fd = self.master
            if self.config.stdin_once:
                client.on_close_stdin = self._close_stdin
        self.clients.add(client)

    def _op_exec(self, conn: socket.socket, request: dict[str, Any]) -> None:
        process = request["process"]
        outputs: dict[int, int] = {}
        stdin_w = master = None
        ours = theirs = None
        stdio: tuple[int, int, int] | None = None
        if process.get("terminal"):
            ours, theirs = socket.socketpair()
        else:
            stdin_r = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            if request.get("stdin"):
                os.close(stdin_r)
                stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            stdio = (stdin_r, out_w, err_w)
        answer = _answer(
            lambda: {"pid": self.runtime.exec(self.config.id, process, stdio=stdio, console_socket=theirs)}
        )
        if theirs is not None:
            theirs.close()
        for fd in stdio or ():
            os.close(fd)
        if "error" in answer:
            for fd in [*((out_r, err_r) if stdio else ()), *((stdin_w,) if stdin_w is not None else ())]:
                os.close(fd)
            if ours is not None:
                ours.close()
            _reply(conn, answer)
            conn.close()
            return
        pid = answer["pid"]
        if ours is not None:
            master = sync.recv_fd(ours)[1]
            ours.close()
            size = request.get("console_size")
            if size:
                set_winsize(master, *size[:2])
            outputs[master] = protocol.STDOUT
        else:
            outputs = {out_r: protocol.STDOUT, err_r: protocol.STDERR}
        _reply(conn, {"pid": pid})
        client = None
        if not request.get("detach"):
            # Of the container's own streams, none: the exec's output goes to it (`_on_exec_output`).
            client = Client(self, conn, set())
            client.tty_fd = master
            client.stdin_fd = stdin_w
            client.owns_stdin = True
            client.on_close_stdin = client.close_own_stdin
            self.clients.add(client)
        else:
            conn.close()
        session = ExecSession(client, request.get("exec_id", ""), outputs)
        self.execs[pid] = session
        if client is not None:
            client.on_hang_up = lambda: self._hang_up(pid)
        for fd in outputs:
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_READ, lambda f, e, p=pid: self._on_exec_output(p, f))

    def _on_exec_output(self, pid: int, fd: int) -> None:
        session = self.execs.get(pid)
        if session is None or fd not in session.outputs:
            return  # a hang-up closed the terminal after this select() saw it readable
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.sel.unregister(fd)
            os.close(fd)
            session.outputs.pop(fd, None)
            self._maybe_finish_exec(pid)
            return
        if session.client is not None:
            session.client.send(session.outputs[fd], data)

    def _hang_up(self, pid: int) -> None:
        """Close an exec's terminal (the kernel sends its session SIGHUP, as when sshd loses a client) or stdin."""
        session = self.execs.get(pid)
        if session is None or session.client is None:
            return
        client = session.client
        client.close_own_stdin()
        master, client.tty_fd = client.tty_fd, None
        if master is not None and master in session.outputs:
            self.sel.unregister(master)
            os.close(master)
            del session.outputs[master]
            self._maybe_finish_exec(pid)

    def _maybe_finish_exec(self, pid: int) -> None:
        session = self.execs[pid]
        if session.exit_code is None or session.outputs:
            return
        del self.execs[pid]
        result = {"exit_code": session.exit_code}
        if session.exec_id:
            record = self.dir / f"exec-{session.exec_id}.json"
            record.write_text(json.dumps({**result, "pid": pid, "finished_at": _now()}))
        if session.client is not None:
            session.client.finish(protocol.EXIT, json.dumps(result).encode())


def _answer(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Return what `work` returns, or its error as `{"error", "exit_code"}`."""
    try:
        return work()
    except (EngineError, OSError) as err:
        return {"error": str(err), "exit_code": _exit_code_for(err)}
    except BaseException as err:  # noqa: BLE001 - reported to the monitor, never raised into its loop
        return {"error": f"{type(err).__name__}: {err}", "exit_code": 125}


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _exit_code_for(err: BaseException) -> int:
    """Docker's exit codes for a process that could not start: 127 not found, 126 not runnable."""
    text = str(err)
    if "executable file not found" in text or "no such file or directory" in text:
        return 127
    if "permission denied" in text or "is a directory" in text:
        return 126
    return 125


def _seconds(rfc3339: str) -> float:
    return parse_time(rfc3339) / 1e9


def _reply(conn: socket.socket, message: dict[str, Any]) -> None:
    try:
        conn.setblocking(True)
        conn.sendall(json.dumps(message).encode() + b"\n")
    except OSError:
        pass
