"""The native OCI runtime: create, start, state, kill, pause, resume, delete and exec of containers.

One directory a container under the runtime's root (`--root`, like runc's /run/runc) holds its
state.json and, between create and start, the exec fifo that init blocks on. The verbs follow the
OCI runtime spec's lifecycle and refuse illegal moves with `InvalidStateTransition`.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import socket
import struct
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from containers.engine.errors import (
    AlreadyExists,
    EngineError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from containers.engine.linux.syscalls import SO_SNDBUFFORCE
from containers.engine.runtime import plan, seccomp, sync
from containers.engine.runtime.cgroups import Manager, Resources, new_manager
from containers.engine.runtime.rootfs import secure_join
from containers.engine.runtime.spec import process_identity
from containers.engine.runtime.state import State, Status, check_transition, process_start_time

# A deferred container's state directory: the fifo `start` writes its process to, and what init
# applied before (the stand-in's `process_identity`), which the process must match.
PROCESS_FIFO = "process.fifo"
DEFERRED = "deferred.json"

_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def _check_id(container_id: str) -> None:
    if not container_id or not set(container_id) <= _ID_CHARS or container_id in (".", ".."):
        raise InvalidArgument(f"invalid container id format: {container_id}")


def init_path() -> Path:
    """Return where `make` builds init.c: `<sys.prefix>/libexec/webengine/webengine-init`."""
    return Path(sys.prefix, "libexec", "webengine", "webengine-init")


def load_spec(bundle: Path) -> dict[str, Any]:
    try:
        return json.loads((bundle / "config.json").read_text())
    except FileNotFoundError:
        raise NotFound(f"bundle {bundle}: config.json not found") from None
    except json.JSONDecodeError as err:
        raise InvalidArgument(f"bundle {bundle}: config.json: {err}") from err


class NativeRuntime:
    """Our OCI runtime. `root` holds one state directory a container."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, container_id: str) -> Path:
        _check_id(container_id)
        return self.root / container_id

    def _cgroup(self, spec: Mapping[str, Any]) -> Manager:
        return new_manager(spec.get("linux", {}).get("cgroupsPath", "").strip("/"))

    #
    # create and start
    #

    def create(
        self,
        container_id: str,
        bundle: Path,
        *,
        stdio: tuple[int, int, int] | None = None,
        console_socket: socket.socket | None = None,
        pid_file: Path | None = None,
        deferred: bool = False,
    ) -> State:
        """Set up the container and leave its init waiting for `start`; return its state.

        With `deferred`, the spec's process is a stand-in: `start` gives the one to run, so a
        container can be made ready before anyone knows its command (see `start`).
        """
        directory = self._dir(container_id)
        bundle = bundle.resolve()
        spec = load_spec(bundle)
        rootfs = os.path.join(bundle, spec["root"]["path"])
        if not os.path.isdir(rootfs):
            raise InvalidArgument(f"rootfs ({rootfs}) does not exist")
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            directory.mkdir(mode=0o711)
        except FileExistsError:
            raise AlreadyExists(f"container with id exists: {container_id}") from None
        cgroup = self._cgroup(spec)
        pid = 0
        try:
            fifo = directory / "exec.fifo"
            os.mkfifo(fifo, 0o622)
            if deferred:
                os.mkfifo(directory / PROCESS_FIFO, 0o600)
                (directory / DEFERRED).write_text(json.dumps(process_identity(spec["process"])))
            cgroup.create()
            cgroup.apply(Resources.from_oci(spec.get("linux", {}).get("resources", {})))
            pid = self._spawn_init(spec, rootfs, fifo, cgroup, stdio, console_socket, directory if deferred else None)
            state = State(
                id=container_id, pid=pid, bundle=str(bundle), rootfs=rootfs, cgroup=cgroup.path,
                created=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                start_time=process_start_time(pid) or 0, annotations=spec.get("annotations", {}),
            )  # fmt: skip
            state.save(directory / "state.json")
        except BaseException:
            if pid:
                _kill_and_wait(pid)
            cgroup.kill_all()
            cgroup.destroy()
            shutil.rmtree(directory, ignore_errors=True)
            raise
        if pid_file is not None:
            pid_file.write_text(str(pid))
        return state

    def _spawn_init(
        self,
        spec: Mapping[str, Any],
        rootfs: str,
        fifo: Path,
        cgroup: Manager,
        stdio: tuple[int, int, int] | None,
        console_socket: socket.socket | None,
        deferred_in: Path | None,
    ) -> int:
        linux = spec.get("linux", {})
        seccomp_filter = seccomp.compile_filter(linux["seccomp"]) if linux.get("seccomp") else None
        steps = plan.create_plan(spec, rootfs, deferred=deferred_in is not None, seccomp_filter=seccomp_filter)
        opened = [os.open(fifo, os.O_PATH | os.O_CLOEXEC)]
        fds = {plan.FIFO_FD: opened[0]}
        if deferred_in is not None:
            opened.append(os.open(deferred_in / PROCESS_FIFO, os.O_RDWR | os.O_CLOEXEC))
            fds[plan.PROCESS_FD] = opened[-1]
        if console_socket is not None:
            fds[plan.CONSOLE_FD] = console_socket.fileno()
        try:
            return _spawn_and_sync(steps, stdio, fds, cgroup)
        finally:
            for fd in opened:
                os.close(fd)

    def start(self, container_id: str, process: Mapping[str, Any] | None = None) -> None:
        """Let the created container's init exec the user's process.

        A container created `deferred` is given its `process` (the spec's process object) here;
        then an error starting it (no such executable, ...) raises `SyncError` as create would.
        """
        state = self.state(container_id)
        check_transition(state.status, "start")
        directory = self._dir(container_id)
        message = None if process is None else _process_message(directory, state, process)
        fifo = directory / "exec.fifo"
        # Non-blocking, so that an init that died after create cannot hang us on open (fifo(7)).
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if message is not None:
                _send_process(directory / PROCESS_FIFO, message, container_id)
            data = _read_fifo(fd, state.pid, until_closed=process is not None)
        finally:
            os.close(fd)
        fifo.unlink(missing_ok=True)
        (directory / PROCESS_FIFO).unlink(missing_ok=True)
        if not data:
            raise FailedPrecondition(f"container {container_id}: init exited before start")
        if len(data) > 1:
            raise sync.SyncError(json.loads(data[1:])["message"])

    #
    # state and signals
    #

    def state(self, container_id: str) -> State:
        directory = self._dir(container_id)
        try:
            state = State.load(directory / "state.json")
        except FileNotFoundError:
            raise NotFound(f"container {container_id} does not exist") from None
        state.status = self._status(state, directory)
        return state

    def _status(self, state: State, directory: Path) -> Status:
        if process_start_time(state.pid) != state.start_time:
            return Status.STOPPED
        if (directory / "exec.fifo").exists():
            return Status.CREATED
        try:
            frozen = new_manager(state.cgroup).frozen()
        except EngineError:
            # The cgroup went away under us: the container is being deleted as it exits.
            return Status.STOPPED if process_start_time(state.pid) != state.start_time else Status.RUNNING
        return Status.PAUSED if frozen else Status.RUNNING

    def list(self) -> list[State]:
        if not self.root.exists():
            return []
        return [self.state(d.name) for d in sorted(self.root.iterdir()) if (d / "state.json").exists()]

    def kill(self, container_id: str, sig: int = signal.SIGTERM, all_processes: bool = False) -> None:
        state = self.state(container_id)
        if state.status is Status.STOPPED:
            raise FailedPrecondition("container not running")
        if all_processes:
            new_manager(state.cgroup).kill_all(sig)
        else:
            os.kill(state.pid, sig)

    def pause(self, container_id: str) -> None:
        state = self.state(container_id)
        check_transition(state.status, "pause")
        new_manager(state.cgroup).freeze()

    def resume(self, container_id: str) -> None:
        state = self.state(container_id)
        check_transition(state.status, "resume")
        new_manager(state.cgroup).thaw()

    def delete(self, container_id: str, force: bool = False) -> None:
        """Remove a stopped (or, with force, any) container's cgroup and state."""
        state = self.state(container_id)
        if state.status in (Status.RUNNING, Status.PAUSED) and not force:
            raise FailedPrecondition(f"cannot delete container {container_id} that is not stopped: {state.status}")
        cgroup = new_manager(state.cgroup)
        if state.status is not Status.STOPPED:
            if state.status is Status.PAUSED:
                cgroup.thaw()
            cgroup.kill_all(signal.SIGKILL)
            _wait_gone(state.pid, state.start_time)
        cgroup.destroy()
        shutil.rmtree(self._dir(container_id), ignore_errors=True)

    #
    # exec
    #

    def exec(
        self,
        container_id: str,
        process: Mapping[str, Any],
        *,
        stdio: tuple[int, int, int] | None = None,
        console_socket: socket.socket | None = None,
        pid_file: Path | None = None,
    ) -> int:
        """Start another process in a running container's namespaces and cgroup; return its pid."""
        state = self.state(container_id)
        check_transition(state.status, "exec")
        spec = load_spec(Path(state.bundle))
        linux = spec.get("linux", {})
        process = {**spec["process"], **process}
        seccomp_filter = seccomp.compile_filter(linux["seccomp"]) if linux.get("seccomp") else None
        types = [ns["type"] for ns in linux.get("namespaces", [])]
        steps = plan.exec_plan(state.pid, types, process, seccomp_filter)
        fds = {plan.CONSOLE_FD: console_socket.fileno()} if console_socket is not None else {}
        pid = _spawn_and_sync(steps, stdio, fds, new_manager(state.cgroup))
        if pid_file is not None:
            pid_file.write_text(str(pid))
        return pid


def _spawn_and_sync(
    steps: plan.Plan, stdio: tuple[int, int, int] | None, fds: Mapping[int, int], cgroup: Manager
) -> int:
    """Start webengine-init in the cgroup with its plan, collect init's pid, wait until it is ready; return the pid."""
    program = init_path()
    if not os.access(program, os.X_OK):
        raise Unavailable(f"the runtime's init is not built at {program}: run make")
    if ("hand-console",) in steps.steps and plan.CONSOLE_FD not in fds:
        raise InvalidArgument("process.terminal is set but no console socket was given")
    message = steps.encode()
    if len(message) > plan.MAX_PLAN:
        raise InvalidArgument(f"the container's set-up takes {len(message)} bytes, more than its init reads")
    parent, child = sync.channel_pair()
    # Each descriptor is first copied above the ones init gets, so that no dup2 overwrites another's source.
    wanted = {**(dict(enumerate(stdio)) if stdio is not None else {}), plan.SYNC_FD: child.fileno(), **fds}
    copies = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in wanted.values()]
    try:
        actions = [(os.POSIX_SPAWN_DUP2, copy, target) for copy, target in zip(copies, wanted, strict=True)]
        first = os.posix_spawn(program, ["webengine-init"], {}, file_actions=actions)
    except BaseException:
        parent.close()
        raise
    finally:
        for fd in copies:
            os.close(fd)
        child.close()
    try:
        cgroup.add(first)
        # One message, which a unix socket takes only within its send buffer (socket(7), SO_SNDBUFFORCE).
        parent.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, len(message) + 4096)
        parent.send(message)
    except BaseException:
        _kill_and_wait(first)
        parent.close()
        raise
    return _sync(parent, first)


def _sync(parent: socket.socket, first: int) -> int:
    """Reap the first process, collect the container process's pid from it, and wait until that is ready."""
    pid = 0
    try:
        _, status = os.waitpid(first, 0)
        message, fds = sync.recv(parent)
        ready = message is not None and message.get("type") == "ready"
        if ready:
            # On a busy machine init can get to "ready" before its parent sends the pid.
            message, fds = sync.recv(parent)
        if message is None or message.get("type") != "pid":
            raise sync.SyncError((message or {}).get("message") or f"webengine-init failed (wait status {status:#x})")
        pid = message["pid"]
        if not ready:
            sync.expect(parent, "ready")
        return pid
    except BaseException:
        if pid:
            _kill_and_wait(pid)
        raise
    finally:
        parent.close()


def _process_message(directory: Path, state: State, process: Mapping[str, Any]) -> bytes:
    """Return the process as a waiting init reads it (init.c's `stand_by`), its working directory made.

    Done here, as root on the host, what init would have done as root in the container: the
    directory (inside the rootfs, symlinks resolved in it) and HOME from its /etc/passwd.
    """
    made_for = json.loads((directory / DEFERRED).read_text())
    if process_identity(process) != made_for:
        raise InvalidArgument(
            f"container {state.id}: its init was made for another user, capabilities or limits than the process's"
        )
    steps = plan.Plan()
    plan.add_process_step(steps, process, state.rootfs)
    payload = steps.encode()
    if len(payload) > plan.MAX_PLAN:
        raise InvalidArgument(f"container {state.id}: the process takes {len(payload)} bytes, more than its init reads")
    os.makedirs(secure_join(state.rootfs, process.get("cwd", "/")), mode=0o755, exist_ok=True)
    return struct.pack("=I", len(payload)) + payload


def _send_process(path: Path, message: bytes, container_id: str) -> None:
    """Write the process to the process fifo, which the waiting init holds open (ENXIO: it is gone)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise FailedPrecondition(f"container {container_id}: init exited before start") from err
    try:
        os.set_blocking(fd, True)
        view = memoryview(message)
        while view:
            view = view[os.write(fd, view) :]
    except BrokenPipeError as err:
        raise FailedPrecondition(f"container {container_id}: init exited before start") from err
    finally:
        os.close(fd)


def _read_fifo(fd: int, pid: int, until_closed: bool = False) -> bytes:
    """Read init's byte from the fifo (`until_closed`: and all it writes until its execve closes it)."""
    start = process_start_time(pid)
    data = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            chunk = os.read(fd, 65536 if until_closed else 1)
            if not until_closed or not chunk:
                return data + chunk
            data += chunk
        elif start is None or process_start_time(pid) != start:
            return data


def _kill_and_wait(pid: int) -> None:
    start = process_start_time(pid)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    _wait_gone(pid, start or 0)


def _wait_gone(pid: int, start_time: int, timeout: float = 10.0) -> None:
    """Wait until `pid` has exited (reaped by its parent or a zombie), as a subreaper would see it."""
    deadline = time.monotonic() + timeout
    while process_start_time(pid) == start_time and time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        time.sleep(0.005)
