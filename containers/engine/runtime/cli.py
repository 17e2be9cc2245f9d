"""The OCI runtime command line, so that our runtime can stand in for runc (and runc for ours).

    python -m containers.engine.runtime [--root DIR] create [--bundle DIR] [--pid-file F] [--console-socket S] ID
    ... start ID | state ID | kill ID [SIGNAL] [--all] | delete [--force] ID | run [--bundle DIR] ID
    ... pause ID | resume ID | exec [--process F] [--pid-file F] ID [ARGS...] | list

Errors go to stderr (and to --log as JSON lines, as runc writes them) with exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import sys
import termios
import tty
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from containers.engine.errors import EngineError
from containers.engine.linux.syscalls import set_child_subreaper
from containers.engine.runtime import sync
from containers.engine.runtime.container import NativeRuntime, load_spec
from containers.engine.runtime.state import reap_exited

DEFAULT_ROOT = "/run/webengine/runtime"


def _signal(name: str) -> int:
    name = name.upper()
    if name.isdigit():
        return int(name)
    return int(getattr(signal, name if name.startswith("SIG") else "SIG" + name))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="webengine-runtime", description="webengine's OCI runtime")
    parser.add_argument("--root", default=DEFAULT_ROOT, help="directory for container state")
    parser.add_argument("--log", help="append errors to this file")
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("--systemd-cgroup", action="store_true", help="accepted for runc compatibility; ignored")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("create", "run"):
        sub = commands.add_parser(name)
        sub.add_argument("--bundle", "-b", default=".")
        sub.add_argument("--pid-file")
        sub.add_argument("--console-socket")
        sub.add_argument("--detach", "-d", action="store_true")
        sub.add_argument("--no-pivot", action="store_true", help="refused: pivot_root is always used")
        sub.add_argument("id")
    for name in ("start", "state", "pause", "resume"):
        commands.add_parser(name).add_argument("id")
    kill = commands.add_parser("kill")
    kill.add_argument("--all", "-a", action="store_true")
    kill.add_argument("id")
    kill.add_argument("signal", nargs="?", default="SIGTERM")
    delete = commands.add_parser("delete")
    delete.add_argument("--force", "-f", action="store_true")
    delete.add_argument("id")
    execute = commands.add_parser("exec")
    execute.add_argument("--process", "-p")
    execute.add_argument("--pid-file")
    execute.add_argument("--console-socket")
    execute.add_argument("--tty", "-t", action="store_true")
    execute.add_argument("--cwd")
    execute.add_argument("--env", "-e", action="append", default=[])
    execute.add_argument("--detach", "-d", action="store_true")
    execute.add_argument("id")
    execute.add_argument("args", nargs=argparse.REMAINDER)
    commands.add_parser("list")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    runtime = NativeRuntime(Path(args.root))
    try:
        return _dispatch(runtime, args)
    except (EngineError, OSError) as err:
        _log_error(args, str(err))
        return 1


def _log_error(args: argparse.Namespace, message: str) -> None:
    print(f"webengine-runtime: {message}", file=sys.stderr)
    if args.log:
        with open(args.log, "a") as f:
            if args.log_format == "json":
                now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
                f.write(json.dumps({"level": "error", "msg": message, "time": now}) + "\n")
            else:
                f.write(message + "\n")


def _dispatch(runtime: NativeRuntime, args: argparse.Namespace) -> int:
    command = args.command
    if command in ("create", "run"):
        return _create_or_run(runtime, args)
    if command == "start":
        runtime.start(args.id)
    elif command == "state":
        print(json.dumps(runtime.state(args.id).to_oci(), indent=2))
    elif command == "kill":
        runtime.kill(args.id, _signal(args.signal), all_processes=args.all)
    elif command == "delete":
        _delete(runtime, args.id, args.force)
    elif command == "pause":
        runtime.pause(args.id)
    elif command == "resume":
        runtime.resume(args.id)
    elif command == "exec":
        return _exec(runtime, args)
    elif command == "list":
        for state in runtime.list():
            print(f"{state.id}\t{state.pid}\t{state.status}\t{state.bundle}")
    return 0


def _delete(runtime: NativeRuntime, container_id: str, force: bool) -> None:
    try:
        runtime.delete(container_id, force=force)
    except EngineError as err:
        if not (force and "does not exist" in str(err)):
            raise


def _connect(path: str | None) -> socket.socket | None:
    if path is None:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    return sock


def _create_or_run(runtime: NativeRuntime, args: argparse.Namespace) -> int:
    if args.no_pivot:
        raise EngineError("--no-pivot is not supported: containers always enter their rootfs with pivot_root")
    bundle = Path(args.bundle)
    pid_file = Path(args.pid_file) if args.pid_file else None
    if args.command == "create" or args.detach:
        console = _connect(args.console_socket)
        runtime.create(args.id, bundle, console_socket=console, pid_file=pid_file)
        if args.command == "run":
            runtime.start(args.id)
        return 0
    # Foreground run: we become the subreaper that waits for the container (prctl(2)), with
    # SIGCHLD blocked so that sigtimedwait() wakes the moment it exits.
    set_child_subreaper()
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])
    terminal = bool(load_spec(bundle)["process"].get("terminal"))
    ours, theirs = socket.socketpair() if terminal else (None, None)
    state = runtime.create(args.id, bundle, console_socket=theirs, pid_file=pid_file)
    try:
        master = sync.recv_fd(ours)[1] if ours is not None else None
        with _ForwardSignals(state.pid):
            runtime.start(args.id)
            return _proxy_and_wait(state.pid, master)
    finally:
        # A run that failed half-way must not leave its container (and cgroup) behind either.
        runtime.delete(args.id, force=True)


def _exec(runtime: NativeRuntime, args: argparse.Namespace) -> int:
    if args.process:
        process = json.loads(Path(args.process).read_text())
    else:
        process = {"args": args.args, "terminal": args.tty}
        if args.cwd:
            process["cwd"] = args.cwd
        if args.env:
            spec_env = load_spec(Path(runtime.state(args.id).bundle))["process"].get("env", [])
            process["env"] = [*spec_env, *args.env]
    if not process.get("args"):
        raise EngineError("exec: no command given")
    pid_file = Path(args.pid_file) if args.pid_file else None
    if args.detach:
        runtime.exec(args.id, process, console_socket=_connect(args.console_socket), pid_file=pid_file)
        return 0
    set_child_subreaper()
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])
    ours, theirs = socket.socketpair() if process.get("terminal") else (None, None)
    pid = runtime.exec(args.id, process, console_socket=theirs, pid_file=pid_file)
    master = sync.recv_fd(ours)[1] if ours is not None else None
    with _ForwardSignals(pid):
        return _proxy_and_wait(pid, master)


class _ForwardSignals:
    """Send the signals we get to the container's process, as `runc run` does."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def __enter__(self) -> None:
        for sig in self.SIGNALS:
            signal.signal(sig, lambda signum, frame: os.kill(self.pid, signum))

    def __exit__(self, *exc: object) -> None:
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_DFL)


def _proxy_and_wait(pid: int, master: int | None) -> int:
    """Copy our terminal to the container's pty (if any) until `pid` exits; return its exit status."""
    saved = None
    if master is not None and os.isatty(0):
        saved = termios.tcgetattr(0)
        tty.setraw(0)
    # An fd at end of file stays readable forever (select(2)): ours at EOF (stdin from /dev/null),
    # or the master once no process holds the pty's slave (read fails with EIO, pty(7)), so each
    # is dropped from the watch list when it ends, and we wait for SIGCHLD once none is left.
    watched = [] if master is None else [0, master]
    try:
        while True:
            status = _reap(pid)
            if status is not None:
                if master in watched:
                    _drain(master)
                return status
            if not watched:
                signal.sigtimedwait([signal.SIGCHLD], 1.0)
                continue
            ready, _, _ = select.select(watched, [], [], 0.05)
            for fd in ready:
                data = _read(fd)
                if not data:
                    watched.remove(fd)
                elif fd == master:
                    _write_all(1, data)
                elif master is not None:
                    _write_all(master, data)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)


def _drain(master: int) -> None:
    """Copy what the exited process wrote to the pty and we did not read yet: the pty keeps it until read."""
    while select.select([master], [], [], 0)[0]:
        data = _read(master)
        if not data:
            return
        _write_all(1, data)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _reap(pid: int) -> int | None:
    """Reap every exited child (we are a subreaper); return `pid`'s status once it has exited."""
    result = None
    for child, status in reap_exited():
        if child == pid:
            result = os.waitstatus_to_exitcode(status)
            result = 128 - result if result < 0 else result
    return result


if __name__ == "__main__":
    sys.exit(main())
