"""Container endpoints (moby's api/server/router/container): list, create, inspect, the verbs, wait, logs, attach.

Changes go through `containers.services`, which keeps the database's copy in step; reads use the
engine's `Containers` that `services.engine()` returns.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable, Generator
from functools import partial
from pathlib import Path
from typing import Any

from containers import services
from containers.dockerapi import image_routes, streams
from containers.dockerapi.httpserver import (
    ApiError,
    Hijack,
    Reply,
    Request,
    Response,
    Streamed,
    json_response,
    no_content,
)
from containers.dockerapi.router import Route, route
from containers.dockerapi.state import ACTIVITY, EXECS, PendingAttach
from containers.dockerapi.system_routes import storage_driver
from containers.engine import events
from containers.engine.errors import EngineError, FailedPrecondition, NotFound
from containers.engine.lifecycle import Containers, Record, State
from containers.engine.shim.client import Stream
from containers.engine.shim.logfile import parse_time, read_log

ID = r"(?P<id>[^/]+)"
_STATUSES = {"created", "restarting", "running", "removing", "paused", "exited", "dead"}
_LIST_FILTERS = {"status", "name", "id", "label", "exited", "ancestor"}
_DOCKER_LIST_FILTERS = {"before", "since", "volume", "network", "publish", "expose", "health", "is-task"}
_PRUNE_FILTERS = {"until", "label", "label!"}
_WAIT_CONDITIONS = ("not-running", "next-exit", "removed")
_PIPES_GRACE_S = 5.0
_SHM_SIZE = 64 * 1024 * 1024


def _containers() -> Containers:
    return services.engine().containers


def _record(request: Request) -> Record:
    """Return the container the path names: the record its access rule checked (scoping.py), else read now."""
    found = request.found.get("container")
    return found if isinstance(found, Record) else _containers().get(request.params["id"])


def _active(state: State) -> bool:
    return state.running or state.paused or state.restarting


#
# Docker's words for times and states
#


def human_duration(seconds: float) -> str:
    """Return go-units' HumanDuration: `Less than a second`, `3 seconds`, `About a minute`, `5 hours`, ..."""
    if int(seconds) < 1:
        return "Less than a second"
    if int(seconds) == 1:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def _since(rfc3339: str) -> str:
    return human_duration(time.time() - parse_time(rfc3339) / 1e9)


def status_text(state: State) -> str:
    """Return `docker ps`'s STATUS as moby's container/state.go words it."""
    if state.paused:
        return f"Up {_since(state.started_at)} (Paused)"
    if state.restarting:
        return f"Restarting ({state.exit_code}) {_since(state.finished_at)} ago"
    if state.running:
        return f"Up {_since(state.started_at)}"
    if state.status == "dead":
        return "Dead"
    if state.started_at.startswith("0001-"):
        return "Created"
    return f"Exited ({state.exit_code}) {_since(state.finished_at)} ago"


def _network_mode(host_config: dict[str, Any]) -> str:
    mode = host_config.get("NetworkMode") or "default"
    return "bridge" if mode == "default" else mode


def _mounts(host_config: dict[str, Any]) -> list[dict[str, Any]]:
    """Return inspect's Mounts: the -v binds, then the --mount ones (moby lists --tmpfs under HostConfig only)."""
    mounts = []
    for bind in host_config.get("Binds") or []:
        source, destination, *rest = bind.split(":")
        options = rest[0].split(",") if rest else []
        mounts.append({
            "Type": "bind", "Source": source, "Destination": destination, "Mode": rest[0] if rest else "",
            "RW": "ro" not in options, "Propagation": "rprivate",
        })  # fmt: skip
    for mount in host_config.get("Mounts") or []:
        propagation = ""
        if mount.get("Type") == "bind":
            propagation = (mount.get("BindOptions") or {}).get("Propagation") or "rprivate"
        mounts.append({
            "Type": mount.get("Type"), "Source": mount.get("Source") or "", "Destination": mount.get("Target"),
            "Mode": "", "RW": not mount.get("ReadOnly"), "Propagation": propagation,
        })  # fmt: skip
    return mounts


#
# list, create, inspect
#


def _match(values: list[str], source: str) -> bool:
    """moby's filters.Match: a value equal to the source or a regular expression found in it."""
    for value in values:
        try:
            if value == source or re.search(value, source):
                return True
        except re.error:
            continue
    return False


def _image_id(reference: str) -> str | None:
    try:
        return services.engine().images.get(reference).id
    except EngineError:
        return None


def _listed(record: Record, state: State, filters: dict[str, list[str]]) -> bool:
    labels = record.config.get("Labels") or {}
    checks: dict[str, Callable[[str], bool]] = {
        "status": lambda v: v == state.status,
        # moby matches the name with and without its slash: `name=^web$` and `name=^/web$` both find /web.
        "name": lambda v: _match([v], "/" + record.name) or _match([v], record.name),
        "id": lambda v: _match([v], record.id),
        "label": lambda v: labels.get(v.partition("=")[0]) == v.partition("=")[2] if "=" in v else v in labels,
        "exited": lambda v: state.status == "exited" and str(state.exit_code) == v,
        "ancestor": lambda v: v == record.image_ref or _image_id(v) == record.image,
    }
    return all(any(checks[key](v) for v in values) for key, values in filters.items() if values)


def _list_filters(request: Request) -> dict[str, list[str]]:
    filters = request.filters()
    for key, values in filters.items():
        if key in _DOCKER_LIST_FILTERS:
            raise ApiError(501, f"the {key} filter is not implemented yet in webengine")
        if key not in _LIST_FILTERS:
            raise ApiError(400, f"invalid filter '{key}'")
        for value in values:
            if key == "status" and value not in _STATUSES:
                raise ApiError(400, f"invalid filter 'status={value}'")
            if key == "exited" and not value.lstrip("-").isdigit():
                raise ApiError(400, f"invalid filter 'exited={value}'")
    return filters


def _command(record: Record) -> str:
    """Return `docker ps`'s COMMAND as moby words it: the arguments with a space in single quotes."""
    return " ".join([record.path, *(f"'{arg}'" if " " in arg else arg for arg in record.args)])


def summary(record: Record, state: State) -> dict[str, Any]:
    """Return a container as `GET /containers/json` lists it."""
    return {
        "Id": record.id, "Names": ["/" + record.name], "Image": record.image_ref, "ImageID": record.image,
        "Command": _command(record), "Created": parse_time(record.created) // 1_000_000_000,
        "Ports": [], "Labels": record.config.get("Labels") or {}, "State": state.status,
        "Status": status_text(state), "HostConfig": {"NetworkMode": _network_mode(record.host_config)},
        "NetworkSettings": {"Networks": {}}, "Mounts": _mounts(record.host_config),
    }  # fmt: skip


def list_containers(request: Request) -> Reply:
    filters = _list_filters(request)
    limit = request.int_arg("limit", -1)
    everything = request.flag("all") or limit > 0 or bool(filters.get("status"))
    containers = _containers()
    found = []
    for record in containers.list():
        try:
            state = containers.state(record.id)
        except NotFound:
            continue
        if (everything or _active(state)) and _listed(record, state, filters):
            found.append(summary(record, state))
    return json_response(found[:limit] if limit > 0 else found)


def create_container(request: Request) -> Reply:
    body = request.json()
    if not isinstance(body, dict):
        raise ApiError(400, "config cannot be empty in order to create a container")
    host_config = body.pop("HostConfig", None) or {}
    # The network to join is NetworkMode's; endpoint settings come with the networking issue.
    body.pop("NetworkingConfig", None)
    record, write_row = services.create_engine_container(body, host_config, request.arg("name"))
    request.found["container"] = record  # for the audit record (scoping.py), which names it
    # The dashboard's row: once a `docker run` of it has had its answers (gone by then, none).
    ACTIVITY.after_run(record.id, write_row, expect_attach=True)
    return json_response({"Id": record.id, "Warnings": []}, status=201)


def _prune_filter(filters: dict[str, list[str]]) -> Callable[[Record], bool]:
    """Return the test a stopped container passes to be pruned (moby's until, label and label! filters).

    The values read as they do for `docker image prune`, so image_routes' parsers serve both.
    """
    unknown = sorted(set(filters) - _PRUNE_FILTERS)
    if unknown:
        raise ApiError(400, f"invalid filter '{unknown[0]}'")
    checks: list[Callable[[Record], bool]] = []
    if until_values := filters.get("until"):
        if len(until_values) > 1:
            raise ApiError(400, "more than one until filter specified")
        until_ns = int(image_routes._until(until_values[0]).timestamp() * 1e9)
        checks.append(lambda record: parse_time(record.created) <= until_ns)
    if labels := filters.get("label"):
        checks.append(lambda record: image_routes._key_values(labels, record.config.get("Labels") or {}))
    if not_labels := filters.get("label!"):
        checks.append(lambda record: not image_routes._key_values(not_labels, record.config.get("Labels") or {}))
    return lambda record: all(check(record) for check in checks)


def prune_containers(request: Request) -> Reply:
    deleted, reclaimed = services.prune_containers(_prune_filter(request.filters()))
    ACTIVITY.changed()
    return json_response({"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed})


def inspect(record: Record, state: State, log_path: str) -> dict[str, Any]:
    """Return a container as `docker inspect` shows it (the fields the clients read, typed as Go decodes them)."""
    host_config = dict(record.host_config)
    log_config = host_config.get("LogConfig") or {}
    host_config |= {
        "NetworkMode": _network_mode(host_config),
        "LogConfig": {"Type": log_config.get("Type") or "json-file", "Config": log_config.get("Config") or {}},
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0, **(host_config.get("RestartPolicy") or {})},
        "AutoRemove": bool(host_config.get("AutoRemove")),
        "PortBindings": host_config.get("PortBindings") or {},
        # What every container gets here, as moby fills them in: its own IPC and cgroup namespaces, 64 MB /dev/shm.
        "IpcMode": host_config.get("IpcMode") or "private",
        "CgroupnsMode": host_config.get("CgroupnsMode") or "private",
        "ShmSize": host_config.get("ShmSize") or _SHM_SIZE,
    }
    host_config["RestartPolicy"]["Name"] = host_config["RestartPolicy"]["Name"] or "no"
    config = {"Domainname": "", "OnBuild": None, **record.config}
    # Go's omitempty drops an empty ExposedPorts; an empty Volumes is null.
    if not config.get("ExposedPorts"):
        config.pop("ExposedPorts", None)
    config["Volumes"] = config.get("Volumes") or None
    exec_ids = EXECS.of_container(record.id)
    return {
        "Id": record.id, "Created": record.created, "Path": record.path, "Args": record.args,
        "State": {
            "Status": state.status, "Running": state.running or state.restarting, "Paused": state.paused,
            "Restarting": state.restarting, "OOMKilled": state.oom_killed, "Dead": state.status == "dead",
            "Pid": state.pid, "ExitCode": state.exit_code, "Error": state.error, "StartedAt": state.started_at,
            "FinishedAt": state.finished_at,
        },
        "Image": record.image, "ResolvConfPath": "", "HostnamePath": "", "HostsPath": "", "LogPath": log_path,
        "Name": "/" + record.name, "RestartCount": state.restart_count, "Driver": storage_driver(), "Platform": "linux",
        "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "", "ExecIDs": exec_ids or None,
        "HostConfig": host_config, "GraphDriver": {"Name": storage_driver(), "Data": {}},
        "Mounts": _mounts(record.host_config), "Config": config,
        "NetworkSettings": {
            "Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": {}, "HairpinMode": False,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "SecondaryIPAddresses": None,
            "SecondaryIPv6Addresses": None, "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
            "Networks": {},
        },
    }  # fmt: skip


def inspect_container(request: Request) -> Reply:
    containers = _containers()
    record = _record(request)
    state = containers.state(record.id)
    return json_response(inspect(record, state, str(containers.log_path(record.id))))


#
# verbs
#


def start_container(request: Request) -> Reply:
    containers = _containers()
    record = _record(request)
    if _active(containers.state(record.id)):
        return no_content(304)
    waiting = ACTIVITY.take_waiting(record.id)
    attach = {key: any(p.streams[key] for p in waiting) for key in ("stdin", "stdout", "stderr")} if waiting else None
    try:
        # `docker run` creates and starts: keep a container of the same kind ready for the next one.
        # The row is synced after the run's answers (`ACTIVITY.after_run` below), not before them.
        stream = services.start_container(record.id, attach=attach, keep_warm=True, sync=False)
    except FailedPrecondition as err:
        _not_started(waiting, record.id)
        # The runtime refused the process (no such executable, ...): moby answers 400, and the CLI
        # derives `docker run`'s exit code (125, 126, 127) from the words.
        raise ApiError(400, str(err)) from err
    except BaseException:
        _not_started(waiting, record.id)
        raise
    for index, pending in enumerate(waiting):
        pending.give(stream if index == 0 else None, started=True)
    ACTIVITY.changed()
    ACTIVITY.after_run(record.id, partial(services.sync_container, record.id))
    return no_content()


def _not_started(waiting: list[PendingAttach], container_id: str) -> None:
    for pending in waiting:
        pending.give(None, started=False)
    ACTIVITY.changed()
    services.sync_container(container_id)


def _timeout(request: Request) -> int | None:
    return request.int_arg("t", 0) if request.arg("t") else None


def stop_container(request: Request) -> Reply:
    stopped = services.stop_container(request.params["id"], _timeout(request), request.arg("signal") or None)
    ACTIVITY.changed()
    return no_content(204 if stopped else 304)


def restart_container(request: Request) -> Reply:
    services.restart_container(request.params["id"], _timeout(request))
    ACTIVITY.changed()
    return no_content()


def kill_container(request: Request) -> Reply:
    services.kill_container(request.params["id"], request.arg("signal") or "SIGKILL")
    ACTIVITY.changed()
    return no_content()


def pause_container(request: Request) -> Reply:
    services.pause_container(request.params["id"])
    return no_content()


def unpause_container(request: Request) -> Reply:
    services.unpause_container(request.params["id"])
    return no_content()


def remove_container(request: Request) -> Reply:
    if request.flag("link"):
        raise ApiError(501, "container links are not implemented in webengine")
    services.remove_container(request.params["id"], force=request.flag("force"))
    ACTIVITY.changed()
    return no_content()


def rename_container(request: Request) -> Reply:
    services.rename_container(request.params["id"], request.arg("name"))
    return no_content()


def resize_container(request: Request) -> Reply:
    containers = _containers()
    record = _record(request)
    try:
        containers.resize(record.id, request.int_arg("h", 0), request.int_arg("w", 0))
    except OSError:
        raise ApiError(409, f"Container {record.id} is not running") from None
    return Response(200)


#
# wait
#


def _snapshot(state: State) -> tuple[str, str, str]:
    return state.status, state.started_at, state.finished_at


def _died_with(container_id: str, since_ns: int) -> int | None:
    """Return the exit code of the container's last `die` event since `since_ns` (it may be removed now)."""
    root = services.engine().config.root
    for event in reversed(events.read(root, since_ns)):
        if event.id == container_id and event.action == "die":
            return int(event.attributes.get("exitCode", 0))
    return None


def _wait_for(
    container_id: str, condition: str, initial: State, seen: int, since_ns: int, gone: Callable[[], bool]
) -> dict[str, Any] | None:
    """Block until `condition` holds for the container; return Docker's wait answer (None if the client is gone).

    `initial` and `seen` were taken before the response's headers went out, so that a start
    (and a quick exit) that follows them is never missed: `next-exit` waits for a state other
    than the initial one, after running; `removed` until the container is gone.
    """
    containers = _containers()
    last, ran, ended = initial, False, None
    while True:
        if gone():
            return None
        try:
            state = containers.state(container_id)
        except NotFound:
            break
        if _active(state):
            ran = True
            try:
                ended = containers.wait(container_id)
            except NotFound:
                break
            continue
        last = state
        # "created" is no exit: a start reads so between the last run's status and its monitor's first.
        exited = state.status != "created" and _snapshot(state) != _snapshot(initial)
        if condition == "not-running" or (condition == "next-exit" and exited):
            ACTIVITY.wait_pipes(container_id, _PIPES_GRACE_S)
            return {"StatusCode": state.exit_code, "Error": {"Message": state.error} if state.error else None}
        seen = ACTIVITY.wait_change(seen, 0.25)
    # Gone (removed, or auto-removed at its exit): the exit code is what its monitor told this wait,
    # else what its pipe or the event log saw.
    code = None if ended is None else ended.exit_code
    if code is None:
        ACTIVITY.wait_pipes(container_id, _PIPES_GRACE_S)
        code = ACTIVITY.exit_code(container_id)
    # The monitor logs `die` just after it removes an auto-removed container: give it a moment.
    deadline = time.monotonic() + (1.0 if ran else 0.0)
    while code is None and time.monotonic() < deadline:
        code = _died_with(container_id, since_ns)
        if code is None:
            time.sleep(0.02)
    return {"StatusCode": last.exit_code if code is None else code, "Error": None}


def wait_container(request: Request) -> Reply:
    condition = request.arg("condition") or "not-running"
    if condition not in _WAIT_CONDITIONS:
        raise ApiError(400, f"invalid condition: {condition!r}")
    containers = _containers()
    record = _record(request)
    since_ns = time.time_ns()
    seen = ACTIVITY.generation()
    initial = containers.state(record.id)

    def body() -> Generator[bytes, None, None]:
        with ACTIVITY.waiting(record.id):
            answer = _wait_for(record.id, condition, initial, seen, since_ns, request.disconnected)
            if answer is not None:
                yield json.dumps(answer).encode() + b"\n"

    return Streamed(body())


#
# logs and attach
#


def logs(request: Request) -> Reply:
    containers = _containers()
    record = _record(request)
    wanted = {name for name in ("stdout", "stderr") if request.flag(name)}
    if not wanted:
        raise ApiError(400, "Bad parameters: you must choose at least one stream")
    tty = bool(record.config.get("Tty"))
    tail = request.arg("tail", "all")
    timestamps = request.flag("timestamps")

    started_at = containers.state(record.id).started_at

    def stopped() -> bool:
        try:
            state = containers.state(record.id)
        except NotFound:
            return True
        # A restart ends the follow too, as moby's ends when the run it follows dies.
        return request.disconnected() or not _active(state) or state.started_at != started_at

    records = read_log(
        containers.log_path(record.id), tail=int(tail) if tail.isdigit() else None,
        since_ns=request.time_ns("since"), until_ns=request.time_ns("until"), follow=request.flag("follow"),
        stopped=stopped,
    )  # fmt: skip

    def body() -> Generator[bytes, None, None]:
        for item in records:
            if item.stream in wanted:
                text = item.timestamp().encode() + b" " + item.text if timestamps else item.text
                yield streams.encode(streams.STDOUT if item.stream == "stdout" else streams.STDERR, text, tty)

    return Streamed(body(), streams.content_type(tty, request.version))


def _attach_stream(pending: PendingAttach | None, container_id: str, wanted: dict[str, bool]) -> Stream | None:
    """Return the stream to pipe: the start's (attached from the first byte), or one attached now."""
    containers = _containers()
    if pending is not None:
        while not pending.wait(0.5):
            try:
                state: State | None = containers.state(container_id)
            except NotFound:
                state = None
            if state is not None and not _active(state):
                continue
            # Started by someone else (the web UI, a restart policy) or removed: stop waiting,
            # unless a start through this server has just taken this attach.
            if ACTIVITY.withdraw(pending):
                if state is None:
                    return None
                pending = None
                break
        if pending is not None:
            if not pending.started:
                return None
            if pending.stream is not None:
                return pending.stream
    try:
        return containers.attach(container_id, **wanted)
    except (EngineError, OSError):
        return None


def _replay(sock: socket.socket, log_path: Path, wanted: dict[str, bool], tty: bool) -> None:
    out = b"".join(
        streams.encode(streams.STDOUT if item.stream == "stdout" else streams.STDERR, item.text, tty)
        for item in read_log(log_path)
        if wanted.get(item.stream)
    )
    if out:
        sock.sendall(out)


def attach(request: Request) -> Reply:
    containers = _containers()
    record = _record(request)
    tty = bool(record.config.get("Tty"))
    wanted = {
        "stdin": request.flag("stdin") and bool(record.config.get("OpenStdin")),
        "stdout": request.flag("stdout"),
        "stderr": request.flag("stderr"),
    }
    follow, replay = request.flag("stream"), request.flag("logs")
    if request.arg("detachKeys"):
        raise ApiError(501, "detach keys chosen by the server are not implemented yet; the CLI handles Ctrl-P Ctrl-Q")
    log_path = containers.log_path(record.id)
    pending = None
    if follow:
        # Registered before the 101 goes out, so that a start right after it finds this attach.
        if _active(containers.state(record.id)):
            ACTIVITY.begin(record.id)
        else:
            pending = ACTIVITY.expect_start(record.id, wanted)
    python_client = request.headers.get("user-agent", "").startswith("docker-sdk-python")

    def run(sock: socket.socket, received: bytes) -> None:
        stream = None
        try:
            if python_client:
                # docker-py reads the 101 through a buffered reader and loses the bytes that came
                # with it (docker-py #2042, #3332): let it finish reading the headers first.
                time.sleep(0.05)
            if replay:
                _replay(sock, log_path, wanted, tty)
            if follow:
                stream = _attach_stream(pending, record.id, wanted)
                if stream is not None:
                    streams.pipe(sock, received, stream, tty=tty, stdin=wanted["stdin"])
        finally:
            if follow:
                ACTIVITY.end(record.id, stream.exit_code if stream is not None else None, pending)
            if stream is not None:
                stream.close()
            streams.close_client(sock)

    def abandon() -> None:
        if follow:
            ACTIVITY.end(record.id, None, pending)

    return Hijack(run, streams.content_type(tty, request.version), abandon)


ROUTES: list[Route] = [
    route("GET", r"/containers/json", list_containers),
    route("POST", r"/containers/create", create_container),
    route("POST", r"/containers/prune", prune_containers),
    route("GET", rf"/containers/{ID}/json", inspect_container),
    route("POST", rf"/containers/{ID}/start", start_container),
    route("POST", rf"/containers/{ID}/stop", stop_container),
    route("POST", rf"/containers/{ID}/restart", restart_container),
    route("POST", rf"/containers/{ID}/kill", kill_container),
    route("POST", rf"/containers/{ID}/pause", pause_container),
    route("POST", rf"/containers/{ID}/unpause", unpause_container),
    route("POST", rf"/containers/{ID}/rename", rename_container),
    route("POST", rf"/containers/{ID}/resize", resize_container),
    route("POST", rf"/containers/{ID}/wait", wait_container),
    route("GET", rf"/containers/{ID}/logs", logs),
    route("POST", rf"/containers/{ID}/attach", attach),
    route("DELETE", rf"/containers/{ID}", remove_container),
]
