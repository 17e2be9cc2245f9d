"""Exec endpoints (moby's api/server/router/container/exec.go): create, start (hijacked), inspect, resize.

Exec instances live in this server's memory (`state.EXECS`), as in moby they live in the daemon's.
The CLI inspects an exec the moment its stream ends, to take the exit code: the code is recorded
before the stream to the client is closed.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time

from containers import services
from containers.dockerapi import streams
from containers.dockerapi.httpserver import ApiError, Hijack, Reply, Request, Response, json_response
from containers.dockerapi.router import Route, route
from containers.dockerapi.state import EXECS, Exec
from containers.engine.errors import Conflict, FailedPrecondition, InvalidArgument
from containers.engine.shim.client import Stream


def _strings(value: object, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise ApiError(400, f"invalid {name}: expected a list of strings")


def create_exec(request: Request) -> Reply:
    containers = services.engine().containers
    record = containers.get(request.params["id"])
    body = request.json() or {}
    cmd = _strings(body.get("Cmd"), "Cmd")
    if not cmd:
        raise ApiError(400, "No exec command specified")
    if body.get("Privileged"):
        raise ApiError(501, "privileged exec is not implemented yet in webengine")
    state = containers.state(record.id)
    if state.paused:
        raise Conflict(f"Container {record.id} is paused, unpause the container before exec")
    if not state.running:
        raise Conflict(f"Container {record.id} is not running")
    instance = Exec(
        id=secrets.token_hex(32), container_id=record.id, cmd=cmd, user=body.get("User") or "",
        env=_strings(body.get("Env"), "Env"), workdir=body.get("WorkingDir") or "", tty=bool(body.get("Tty")),
        attach_stdin=bool(body.get("AttachStdin")), attach_stdout=bool(body.get("AttachStdout", True)),
        attach_stderr=bool(body.get("AttachStderr", True)), console_size=list(body.get("ConsoleSize") or []),
        detach_keys=body.get("DetachKeys") or "",
    )  # fmt: skip
    EXECS.add(instance)
    return json_response({"Id": instance.id}, status=201)


def _failed_exit_code(message: str) -> int:
    """Return moby's exit code for an exec that could not start: 127 when the command is missing, else 126."""
    missing = "executable file not found" in message or "no such file or directory" in message
    return 127 if missing else 126


def _drain(instance: Exec, stream: Stream) -> None:
    """Read the stream to its end (output nobody reads any more) and record the exit code."""
    with stream:
        for _ in stream.frames():
            pass
        instance.finish(stream.exit_code)


def _drain_in_background(instance: Exec, stream: Stream) -> None:
    threading.Thread(target=_drain, args=(instance, stream), daemon=True).start()


def start_exec(request: Request) -> Reply:
    instance = EXECS.get(request.params["id"])
    body = request.json() or {}
    detach = bool(body.get("Detach"))
    with instance.lock:
        if instance.started:
            raise Conflict(f"Exec {instance.id} has already run")
        instance.started = True
    size = list(body.get("ConsoleSize") or instance.console_size)
    try:
        stream = services.engine().containers.exec(
            instance.container_id, instance.cmd, user=instance.user, env=instance.env, workdir=instance.workdir,
            tty=instance.tty, stdin=instance.attach_stdin and not detach, console_size=size or None,
            exec_id=instance.id,
        )  # fmt: skip
    except (FailedPrecondition, InvalidArgument) as err:
        # The runtime refused the process, or its user is unknown: moby reports both in the stream.
        failure = str(err)
        instance.finish(_failed_exit_code(failure))
        if detach:
            raise ApiError(400, failure) from err
        media = streams.content_type(instance.tty, request.version)
        return Hijack(lambda sock, _: _report(sock, failure, instance.tty), media)
    with instance.lock:
        instance.running, instance.pid, instance.stream = True, int(stream.reply.get("pid", 0)), stream
    if detach:
        # Moby runs a detached exec with its output discarded; drain it to learn the exit code.
        _drain_in_background(instance, stream)
        return Response(200)
    python_client = request.headers.get("user-agent", "").startswith("docker-sdk-python")

    def run(sock: socket.socket, received: bytes) -> None:
        try:
            if python_client:
                time.sleep(0.05)  # see container_routes.attach: docker-py loses bytes sent with the 101
            streams.pipe(
                sock, received, stream, tty=instance.tty, stdin=instance.attach_stdin,
                write=instance.write, close_stdin=instance.close_stdin,
            )  # fmt: skip
        finally:
            _drain(instance, stream)
            streams.close_client(sock)

    return Hijack(
        run, streams.content_type(instance.tty, request.version), lambda: _drain_in_background(instance, stream)
    )


def _report(sock: socket.socket, message: str, tty: bool) -> None:
    """Write why the exec did not start into the stream (as moby does), then close it."""
    try:
        sock.sendall(streams.encode(streams.STDERR, message.encode() + b"\r\n", tty))
    except OSError:
        pass
    streams.close_client(sock)


def inspect_exec(request: Request) -> Reply:
    return json_response(EXECS.get(request.params["id"]).inspect())


def resize_exec(request: Request) -> Reply:
    EXECS.get(request.params["id"]).resize(request.int_arg("h", 0), request.int_arg("w", 0))
    return Response(200)


ROUTES: list[Route] = [
    route("POST", r"/containers/(?P<id>[^/]+)/exec", create_exec),
    route("POST", r"/exec/(?P<id>[^/]+)/start", start_exec),
    route("GET", r"/exec/(?P<id>[^/]+)/json", inspect_exec),
    route("POST", r"/exec/(?P<id>[^/]+)/resize", resize_exec),
]
