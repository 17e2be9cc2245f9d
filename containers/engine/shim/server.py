"""The shim server: a small, preloaded parent that forks one monitor a container.

A fresh interpreter per container costs tens of milliseconds and several MiB that no other
process shares. Forked from this server, a monitor starts in about a millisecond and shares the
server's pages (its modules are imported, and `gc.freeze()` keeps the collector from touching
them, so copy-on-write leaves them shared). The server is detached from whoever started it, so
web and the node agent can restart freely; monitors are detached from the server in turn.

    python -m containers.engine.shim.server --socket PATH

Requests are one JSON line on the socket: `{"op": "ping"}` or `{"op": "spawn", "config": {...}}`;
a spawned monitor answers the spawn itself, on the same connection.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import socket
import sys
import traceback
from dataclasses import fields
from pathlib import Path
from typing import Any

from containers.engine.runtime import seccomp
from containers.engine.runtime.capabilities import DEFAULT_CAPABILITIES
from containers.engine.runtime.cgroups import favor_dynamic_modifications, look_up_hierarchies
from containers.engine.shim import protocol
from containers.engine.shim.monitor import Config, Monitor, _reply


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


def _spawn(conn: socket.socket, request: dict[str, Any]) -> None:
    known = {f.name for f in fields(Config)}
    config = Config(**{k: v for k, v in request["config"].items() if k in known})
    pid = os.fork()
    if pid:
        return
    code = 0
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        Monitor(config).run(conn, request.get("attach"))
    except BaseException:  # noqa: BLE001 - a monitor must never return into the server's loop
        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


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
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                conn.settimeout(5)
                request = protocol.read_line(conn)
            except (OSError, ValueError):
                continue
            op = request.get("op")
            if op == "spawn":
                _spawn(conn, request)
            elif op == "ping":
                _reply(conn, {"pid": os.getpid()})
            elif op == "shutdown":
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
