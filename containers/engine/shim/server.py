"""The shim server: a small, preloaded parent that forks one monitor a container.

A fresh interpreter per container costs tens of milliseconds and several MiB that no other
process shares. Forked from this server, a monitor starts in about a millisecond and shares the
server's pages (its modules are imported, and `gc.freeze()` keeps the collector from touching
them, so copy-on-write leaves them shared). The server is detached from whoever started it, so
web and the node agent can restart freely; monitors are detached from the server in turn. A
monitor whose container was removed at its exit waits for the next container instead of exiting
(see IDLE_MAX).

    python -m containers.engine.shim.server --socket PATH

Requests are one JSON line on the socket: `{"op": "ping"}` or `{"op": "spawn", "config": {...}}`;
the monitor, forked or waiting, answers the spawn itself, on the same connection.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import selectors
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from containers.engine.linux.syscalls import SO_SNDBUFFORCE
from containers.engine.runtime import seccomp
from containers.engine.runtime.capabilities import DEFAULT_CAPABILITIES
from containers.engine.runtime.cgroups import favor_dynamic_modifications, look_up_hierarchies
from containers.engine.runtime.state import reap_exited, wait_exited
from containers.engine.shim import protocol
from containers.engine.shim.monitor import Config, Monitor, _reply

# A monitor whose container was removed at its exit (`docker run --rm`) has released all of it and
# holds nothing of it: rather than exit, it waits for the server to hand it the next container. A
# new monitor is a fork whose first touches copy about a thousand of this server's pages (3 us each
# here), then an exit that unmaps them: a monitor kept for the next container spares that, about a
# quarter of the CPU webengine spends on a `docker run --rm` (50 `docker run --rm busybox true` in
# a row, CPU from /proc/stat: 40 -> 31 ms a run, or 48 -> 39 in a slow spell). Kept: IDLE_MAX waiting
# at most, each for IDLE_S at most, and a process serves SERVES_MAX containers at most (its heap
# only grows).
IDLE_MAX = 4
IDLE_S = 60.0
SERVES_MAX = 200
_IDLE = b"idle"


def _preload() -> None:
    """Do once here what every container start would otherwise repeat."""
    favor_dynamic_modifications()
    look_up_hierarchies()
    try:
        seccomp.compile_filter(seccomp.docker_default(DEFAULT_CAPABILITIES))
    except Exception:  # noqa: BLE001 - a missing profile is reported when a container asks for it
        pass
    gc.collect()
    gc.freeze()


class _Monitors:
    """The server's ends of the socket pairs it shares with its monitors.

    A monitor says `idle` on its socket when it waits for the next container; the server hands it
    a spawn (the request, and the client's connection by SCM_RIGHTS) or, to let it go, closes the
    socket. A monitor that exits closes its end, which the server reads as the end of file.
    """

    def __init__(self, limits: tuple[int, int], listener: socket.socket) -> None:
        # The descriptor limits the server was started with, which its monitors keep.
        self.limits = limits
        self.busy: dict[socket.socket, int] = {}
        # (socket, pid, since when), the monitor that waited longest first.
        self.idle: list[tuple[socket.socket, int, float]] = []
        # The listener and every monitor's socket, kept registered: a busy node has thousands of
        # monitors, which a select(2) or poll(2) set rebuilt for every request would go through.
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ)

    def inherited(self) -> list[Any]:
        """What a forked monitor must close: the server's sockets to the others, and the selector."""
        return [*self.busy, *(ours for ours, _, _ in self.idle), self.selector]

    def ready(self) -> list[Any]:
        """Wait until the listener or a monitor's socket is readable, or a waiting monitor's time is up."""
        return [key.fileobj for key, _ in self.selector.select(self.timeout())]

    def timeout(self) -> float | None:
        """Seconds until the monitor that waited longest is let go; None if none waits."""
        return max(0.0, self.idle[0][2] + IDLE_S - time.monotonic()) if self.idle else None

    def forked(self, ours: socket.socket, pid: int) -> None:
        self.busy[ours] = pid
        self.selector.register(ours, selectors.EVENT_READ)

    def _drop(self, ours: socket.socket) -> None:
        self.selector.unregister(ours)
        ours.close()

    def heard(self, ours: socket.socket) -> None:
        """Read what a monitor said: it waits for a container, or it has exited."""
        try:
            said = ours.recv(16)
        except OSError:
            said = b""
        pid = self.busy.pop(ours, None)
        self.idle = [entry for entry in self.idle if entry[0] is not ours]
        if said != _IDLE or pid is None:
            self._drop(ours)
            return
        self.idle.append((ours, pid, time.monotonic()))
        if len(self.idle) > IDLE_MAX:
            self._drop(self.idle.pop(0)[0])

    def let_go_of_old(self) -> None:
        while self.idle and time.monotonic() - self.idle[0][2] >= IDLE_S:
            self._drop(self.idle.pop(0)[0])

    def hand(self, conn: socket.socket, request: dict[str, Any]) -> bool:
        """Give the spawn to the monitor that waited least (its pages are the warmest); False if none took it."""
        message = json.dumps(request).encode()
        while self.idle:
            ours, pid, _ = self.idle.pop()
            try:
                # One message however long the request (one line, at most protocol.MAX_LINE).
                ours.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, len(message) + 4096)
                socket.send_fds(ours, [message], [conn.fileno()])
            except OSError:  # it died while it waited
                self._drop(ours)
                continue
            self.busy[ours] = pid
            return True
        return False

    def let_go(self, timeout: float = 5.0) -> None:
        """Let every waiting monitor go, and wait until they have exited; busy ones exit when done."""
        idle, self.idle = self.idle, []
        for ours, _, _ in idle:
            self._drop(ours)
        for _, pid, _ in idle:
            wait_exited(pid, timeout)


def _spawn(conn: socket.socket, request: dict[str, Any], inherited: list[Any], monitors: _Monitors) -> None:
    """Fork a monitor for the container `request` describes (it closes what the server's `inherited` holds).

    Only the monitor of a container removed at its exit, or of a standby (which such a run may
    adopt), gets a socket to the server: the others exit with their container.
    """
    config = request["config"]
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) if (
        config.get("auto_remove") or config.get("standby")
    ) else (None, None)  # fmt: skip
    pid = os.fork()
    if pid:
        if ours is not None and theirs is not None:
            theirs.close()
            monitors.forked(ours, pid)
        return
    code = 0
    try:
        for held in [*inherited, *([ours] if ours is not None else [])]:
            held.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, monitors.limits)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _supervise(conn, request, theirs)
    except BaseException:  # noqa: BLE001 - a monitor must never return into the server's loop
        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


def _supervise(conn: socket.socket, request: dict[str, Any], theirs: socket.socket | None) -> None:
    """Be the monitor of the container `request` describes, then of those the server hands over
    next on `theirs`, while each was removed at its exit and left nothing behind (see IDLE_MAX)."""
    held = _open_descriptors() - {conn.fileno()}
    for served in range(1, SERVES_MAX + 1):
        monitor = Monitor(Config.of(request["config"]))
        monitor.run(conn, request.get("attach"))
        reusable = monitor.reusable
        del monitor
        conn.close()
        if theirs is None or served == SERVES_MAX or not reusable or not _left_nothing(held):
            return
        try:
            theirs.send(_IDLE)
            message, fds, _, _ = socket.recv_fds(theirs, protocol.MAX_LINE + 1, 1)
        except OSError:
            return
        if not (message and fds):  # let go, or the server is gone
            return
        request, conn = json.loads(message), socket.socket(fileno=fds[0])


def _left_nothing(held: set[int]) -> bool:
    """Whether this process holds only what it held before its first container: no child, no descriptor."""
    gc.collect()  # what the last monitor's objects still held, closed as they go
    for _ in reap_exited():
        pass
    try:
        os.waitpid(-1, os.WNOHANG)
        return False  # a child that still runs
    except ChildProcessError:
        pass
    return _open_descriptors() == held


def _open_descriptors() -> set[int]:
    # lexists: the listing's own descriptor is in it, and closed by the time it is looked at.
    return {int(fd) for fd in os.listdir("/proc/self/fd") if os.path.lexists(f"/proc/self/fd/{fd}")}


def serve(path: Path) -> None:
    _preload()
    # The kernel reaps our monitors for us (sigaction(2), SIGCHLD set to SIG_IGN).
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = path.with_name(path.name + f".{os.getpid()}")
    tmp.unlink(missing_ok=True)
    listener.bind(str(tmp))
    os.chmod(tmp, 0o600)
    listener.listen(128)
    os.replace(tmp, path)
    # A socket to each monitor a container may be kept for: thousands on a busy node, so the hard
    # descriptor limit for the server (its children get back the limit it was started with, which
    # containers inherit).
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits[1], limits[1]))
    monitors = _Monitors(limits, listener)
    while True:
        ready = monitors.ready()
        for ours in ready:
            if ours is not listener:
                monitors.heard(ours)
        monitors.let_go_of_old()
        if listener not in ready:
            continue
        conn, _ = listener.accept()
        with conn:
            try:
                conn.settimeout(5)
                request = protocol.read_line(conn)
            except (OSError, ValueError):
                continue
            op = request.get("op")
            if op == "spawn":
                if not monitors.hand(conn, request):
                    _spawn(conn, request, [listener, *monitors.inherited()], monitors)
            elif op == "ping":
                _reply(conn, {"pid": os.getpid(), "waiting": [pid for _, pid, _ in monitors.idle]})
            elif op == "shutdown":
                monitors.let_go()
                _reply(conn, {"pid": os.getpid()})
                if path.exists() and os.stat(path).st_ino == os.fstat(listener.fileno()).st_ino:
                    path.unlink()
                return
            else:
                _reply(conn, {"error": f"unknown request {json.dumps(op)}"})


def main() -> None:
    parser = argparse.ArgumentParser(description="webengine shim server")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--foreground", action="store_true", help="do not detach")
    args = parser.parse_args()
    if not args.foreground and os.fork():
        # Detach: whoever started us reaps this parent at once, and the server is nobody's child
        # (so never a zombie of a web or node-agent process that does not wait for it).
        os._exit(0)
    serve(Path(args.socket))


if __name__ == "__main__":
    sys.exit(main())
