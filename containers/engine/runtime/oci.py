"""OCI runtimes by name: our native one, or runc / crun driven through their command lines.

The engine and its monitors use one interface (NativeRuntime's: create, start, state, kill,
pause, resume, delete, exec, list); `new_runtime("runc", root)` gives the same over the runc
binary, so the setting `WEBENGINE_RUNTIME` swaps runtimes without anything else changing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from containers.engine.errors import AlreadyExists, EngineError, FailedPrecondition, NotFound, Unavailable
from containers.engine.runtime import sync
from containers.engine.runtime.container import NativeRuntime, load_spec
from containers.engine.runtime.state import State, Status, process_start_time

RUNTIMES = ("native", "runc", "crun")


class Runtime(Protocol):
    root: Path

    def create(self, container_id: str, bundle: Path, *, stdio: tuple[int, int, int] | None = None,
               console_socket: socket.socket | None = None, pid_file: Path | None = None) -> State: ...
    def start(self, container_id: str) -> None: ...
    def state(self, container_id: str) -> State: ...
    def kill(self, container_id: str, sig: int = signal.SIGTERM, all_processes: bool = False) -> None: ...
    def pause(self, container_id: str) -> None: ...
    def resume(self, container_id: str) -> None: ...
    def delete(self, container_id: str, force: bool = False) -> None: ...
    def exec(self, container_id: str, process: Mapping[str, Any], *, stdio: tuple[int, int, int] | None = None,
             console_socket: socket.socket | None = None, pid_file: Path | None = None) -> int: ...
    def list(self) -> list[State]: ...  # fmt: skip


def new_runtime(kind: str, root: Path) -> Runtime:
    """Return the runtime named `kind` keeping its state under `root`."""
    if kind == "native":
        return NativeRuntime(root)
    if kind in ("runc", "crun"):
        binary = shutil.which(kind)
        if binary is None:
            raise Unavailable(f"runtime {kind}: not installed")
        return BinaryRuntime(root, binary)
    raise Unavailable(f"runtime {kind!r}: unknown (expected one of {', '.join(RUNTIMES)})")


_STATUS = {"creating": Status.CREATING, "created": Status.CREATED, "running": Status.RUNNING,
           "paused": Status.PAUSED, "stopped": Status.STOPPED}  # fmt: skip


class BinaryRuntime:
    """runc or crun, through the OCI runtime command line both implement."""

    def __init__(self, root: Path, binary: str) -> None:
        self.root = root
        self.binary = binary

    def _run(self, *args: str, stdio: tuple[int, int, int] | None = None, check: bool = True) -> str:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        log = self.root / "runtime.log"
        log.unlink(missing_ok=True)
        command = [self.binary, "--root", str(self.root), "--log", str(log), "--log-format", "json", *args]
        in_, out, err = stdio if stdio is not None else (subprocess.DEVNULL, subprocess.PIPE, subprocess.PIPE)
        result = subprocess.run(command, stdin=in_, stdout=out, stderr=err, check=False)
        if result.returncode != 0 and check:
            raise _error(_last_error(log) or (result.stderr or b"").decode(errors="replace").strip() or
                         f"{os.path.basename(self.binary)} {args[0]} failed with status {result.returncode}")
        return (result.stdout or b"").decode() if stdio is None else ""

    def create(self, container_id: str, bundle: Path, *, stdio: tuple[int, int, int] | None = None,
               console_socket: socket.socket | None = None, pid_file: Path | None = None) -> State:
        with tempfile.TemporaryDirectory(dir=self.root.parent) as scratch:
            pid_path = Path(scratch) / "pid"
            args = ["create", "--bundle", str(bundle), "--pid-file", str(pid_path)]
            with _ConsoleRelay(Path(scratch), console_socket) as relay:
                if relay.path:
                    args += ["--console-socket", relay.path]
                self._run(*args, container_id, stdio=stdio or _devnull_stdio())
            if pid_file is not None:
                shutil.copyfile(pid_path, pid_file)
        return self.state(container_id)

    def start(self, container_id: str) -> None:
        self._run("start", container_id)

    def state(self, container_id: str) -> State:
        try:
            data = json.loads(self._run("state", container_id))
        except EngineError as err:
            raise NotFound(f"container {container_id} does not exist") from err
        spec = load_spec(Path(data["bundle"]))
        return State(
            id=data["id"], pid=data.get("pid", 0), bundle=data["bundle"], status=_STATUS[data["status"]],
            created=data.get("created", ""), rootfs=data.get("rootfs", ""),
            cgroup=spec.get("linux", {}).get("cgroupsPath", "").strip("/"),
            start_time=process_start_time(data.get("pid", 0)) or 0, annotations=data.get("annotations") or {},
        )  # fmt: skip

    def kill(self, container_id: str, sig: int = signal.SIGTERM, all_processes: bool = False) -> None:
        self._run("kill", *(["--all"] if all_processes else []), container_id, str(int(sig)))

    def pause(self, container_id: str) -> None:
        self._run("pause", container_id)

    def resume(self, container_id: str) -> None:
        self._run("resume", container_id)

    def delete(self, container_id: str, force: bool = False) -> None:
        try:
            self._run("delete", *(["--force"] if force else []), container_id)
        except FailedPrecondition:
            raise
        except EngineError as err:
            if "does not exist" in str(err) or "not found" in str(err):
                raise NotFound(f"container {container_id} does not exist") from err
            raise

    def exec(self, container_id: str, process: Mapping[str, Any], *, stdio: tuple[int, int, int] | None = None,
             console_socket: socket.socket | None = None, pid_file: Path | None = None) -> int:
        state = self.state(container_id)
        merged = {**load_spec(Path(state.bundle))["process"], **process}
        with tempfile.TemporaryDirectory(dir=self.root.parent) as scratch:
            process_path, pid_path = Path(scratch) / "process.json", Path(scratch) / "pid"
            process_path.write_text(json.dumps(merged))
            args = ["exec", "--detach", "--process", str(process_path), "--pid-file", str(pid_path)]
            with _ConsoleRelay(Path(scratch), console_socket) as relay:
                if relay.path:
                    args += ["--console-socket", relay.path]
                self._run(*args, container_id, stdio=stdio or _devnull_stdio())
            pid = int(pid_path.read_text())
            if pid_file is not None:
                pid_file.write_text(str(pid))
        return pid

    def list(self) -> list[State]:
        output = self._run("list", "--format", "json").strip()
        return [self.state(item["id"]) for item in json.loads(output or "[]") or []]


class _ConsoleRelay:
    """runc sends a pty master to a listening unix socket (--console-socket); pass it on to ours."""

    def __init__(self, directory: Path, target: socket.socket | None) -> None:
        self.target = target
        self.path = str(directory / "console.sock") if target is not None else ""
        self.listener: socket.socket | None = None

    def __enter__(self) -> _ConsoleRelay:
        if self.target is not None:
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(self.path)
            self.listener.listen(1)
            self.listener.settimeout(30)
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self.listener is None:
            return
        try:
            if exc_type is None and self.target is not None:
                conn, _ = self.listener.accept()
                with conn:
                    name, fd = sync.recv_fd(conn)
                sync.send_fd(self.target, name, fd)
                os.close(fd)
        finally:
            self.listener.close()


def _devnull_stdio() -> tuple[int, int, int]:
    return (subprocess.DEVNULL, subprocess.DEVNULL, subprocess.DEVNULL)


def _last_error(log: Path) -> str:
    try:
        lines = log.read_text().splitlines()
    except FileNotFoundError:
        return ""
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") == "error":
            return str(entry.get("msg", ""))
    return ""


def _error(message: str) -> EngineError:
    lowered = message.lower()
    if "does not exist" in lowered or "not found" in lowered and "executable" not in lowered:
        return NotFound(message)
    if "already exists" in lowered:
        return AlreadyExists(message)
    if "not stopped" in lowered or "not running" in lowered or "cannot" in lowered:
        return FailedPrecondition(message)
    return EngineError(message)
