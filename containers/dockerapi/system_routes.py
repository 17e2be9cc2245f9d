"""System endpoints: `/_ping`, `/version`, `/info` and `/events` (moby's api/server/router/system)."""

from __future__ import annotations

import itertools
import json
import os
import platform
import sys
import time
from collections.abc import Generator
from typing import Any

from django.conf import settings

from containers import services
from containers.dockerapi.httpserver import (
    API_VERSION,
    MIN_API_VERSION,
    ApiError,
    Reply,
    Request,
    Response,
    Streamed,
    json_response,
    server_version,
)
from containers.dockerapi.router import Route, route
from containers.engine import events
from containers.engine.errors import NotFound
from containers.engine.lifecycle import State
from containers.engine.runtime.cgroups import cgroup_version

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x"}
_EVENT_FILTERS = {"type", "container", "event", "image"}
_DF_TYPES = {"container", "image", "volume", "build-cache"}


def storage_driver() -> str:
    """Return the storage driver's name as Docker's would read: overlay2 over overlayfs, vfs for copies."""
    return "overlay2" if services.engine().config.snapshotter == "overlay" else "vfs"


def ping(request: Request) -> Reply:
    headers = [
        ("Builder-Version", "1"),
        ("Swarm", "inactive"),
        ("Cache-Control", "no-cache, no-store, must-revalidate"),
        ("Pragma", "no-cache"),
    ]
    body = b"" if request.method == "HEAD" else b"OK"
    return Response(200, body, "text/plain; charset=utf-8", headers)


def _details() -> dict[str, str]:
    return {
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": f"python{sys.version_info.major}.{sys.version_info.minor}",
        "Os": "linux",
        "Arch": _ARCH.get(platform.machine(), platform.machine()),
        "KernelVersion": platform.release(),
        "BuildTime": "",
    }


def version(request: Request) -> Reply:
    details = _details()
    return json_response({
        "Platform": {"Name": "webengine"},
        "Version": server_version(),
        **details,
        "Experimental": False,
        "Components": [
            {"Name": "Engine", "Version": server_version(), "Details": {**details, "Experimental": "false"}}
        ],
    })  # fmt: skip


def _operating_system() -> tuple[str, str]:
    fields: dict[str, str] = {}
    try:
        with open("/etc/os-release") as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                fields[key] = value.strip('"')
    except OSError:
        pass
    return fields.get("PRETTY_NAME", "Linux"), fields.get("VERSION_ID", "")


def _memory_total() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def container_counts(states: list[State]) -> dict[str, int]:
    """Return `docker info`'s counts of containers in these states."""
    return {
        "Containers": len(states),
        "ContainersRunning": sum(1 for s in states if s.running and not s.paused),
        "ContainersPaused": sum(1 for s in states if s.paused),
        "ContainersStopped": sum(1 for s in states if not s.running),
    }


def info(request: Request) -> Reply:
    engine = services.engine()
    states = []
    for record in engine.containers.list():
        try:
            states.append(engine.containers.state(record.id))
        except NotFound:
            continue
    system, system_version = _operating_system()
    runtime = engine.config.runtime
    return json_response({
        "ID": settings.NODE_NAME, "Name": settings.NODE_NAME, **container_counts(states),
        "Images": len(engine.images.list()),
        "Driver": storage_driver(), "DriverStatus": [["Snapshotter", engine.config.snapshotter]],
        "Plugins": {"Volume": ["local"], "Network": [], "Log": ["json-file"], "Authorization": None},
        "MemoryLimit": True, "SwapLimit": True, "CpuCfsPeriod": True, "CpuCfsQuota": True, "PidsLimit": True,
        "IPv4Forwarding": False, "Debug": settings.DEBUG, "NFd": 0, "NGoroutines": 0,
        "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs", "CgroupVersion": str(cgroup_version()), "NEventsListener": 0,
        "KernelVersion": platform.release(), "OperatingSystem": system, "OSVersion": system_version,
        "OSType": "linux", "Architecture": platform.machine(), "NCPU": os.cpu_count() or 1,
        "MemTotal": _memory_total(), "IndexServerAddress": "https://index.docker.io/v1/", "RegistryConfig": None,
        "DockerRootDir": str(engine.config.root), "HttpProxy": "", "HttpsProxy": "", "NoProxy": "",
        "Labels": [], "ExperimentalBuild": False, "ServerVersion": server_version(),
        "Runtimes": {runtime: {"path": runtime}}, "DefaultRuntime": runtime,
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                  "Error": "", "RemoteManagers": None},
        # Containers outlive the API server and the node agent: each has its own monitor.
        "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "",
        "ContainerdCommit": {"ID": ""}, "RuncCommit": {"ID": ""}, "InitCommit": {"ID": ""},
        "SecurityOptions": ["name=seccomp,profile=builtin"], "Warnings": [],
    })  # fmt: skip


def _docker_event(event: events.Event, names: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """Return an event in Docker's shape, with the container's name and image added when the log lacks them."""
    attributes = dict(event.attributes)
    if event.id not in names:
        try:
            record = services.engine().containers.get(event.id)
            names[event.id] = (record.name, record.image_ref)
        except NotFound:
            names[event.id] = (attributes.get("name", ""), attributes.get("image", ""))
    name, image = names[event.id]
    attributes.setdefault("name", name)
    attributes.setdefault("image", image)
    return {
        "Type": event.type, "Action": event.action, "Actor": {"ID": event.id, "Attributes": attributes},
        "scope": "local", "time": event.time_ns // 1_000_000_000, "timeNano": event.time_ns,
        "status": event.action, "id": event.id, "from": attributes["image"],
    }  # fmt: skip


def _wanted(event: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    actor = event["Actor"]
    checks = {
        "type": [event["Type"]],
        "event": [event["Action"]],
        "container": [actor["ID"], actor["Attributes"].get("name", "")],
        "image": [actor["Attributes"].get("image", "")],
    }
    for key, values in filters.items():
        if not values:
            continue
        candidates = checks[key]
        if key == "container":
            if not any(actor["ID"].startswith(v) or v in candidates for v in values):
                return False
        elif not any(v in candidates for v in values):
            return False
    return True


def events_stream(request: Request) -> Reply:
    since, until = request.time_ns("since"), request.time_ns("until")
    filters = request.filters()
    unknown = set(filters) - _EVENT_FILTERS
    if unknown:
        raise ApiError(400, f"invalid filter '{sorted(unknown)[0]}'")
    root = services.engine().config.root

    def body() -> Generator[bytes, None, None]:
        names: dict[str, tuple[str, str]] = {}
        history = events.read(root, since, until) if since else []

        def done() -> bool:
            return request.disconnected() or bool(until and time.time_ns() > until)

        for event in itertools.chain(history, events.follow(root, done)):
            shaped = _docker_event(event, names)
            if until and event.time_ns > until:
                return
            if _wanted(shaped, filters):
                yield json.dumps(shaped).encode() + b"\n"

    return Streamed(body())


def disk_usage(request: Request) -> Reply:
    """`docker system df`: images with their shared sizes and users, containers with their sizes; no volumes yet."""
    # Imported here, as both import storage_driver from this module.
    from containers.dockerapi import container_routes, image_routes

    types = set(request.query.get("type", [])) or _DF_TYPES
    unknown = sorted(types - _DF_TYPES)
    if unknown:
        raise ApiError(400, f"unknown object type: {unknown[0]}")
    engine = services.engine()
    images = engine.images.list()
    found: dict[str, Any] = {"LayersSize": 0, "Images": None, "Containers": None, "Volumes": None, "BuildCache": None}
    if "image" in types:
        usage = engine.images.usage()
        by_id = {item.id: item for item in usage.images}
        found["LayersSize"] = usage.layers_size
        found["Images"] = [image_routes.summary(image, request, by_id.get(image.id)) for image in images]
    if "container" in types:
        sizes = {image.id: image.size for image in images}
        found["Containers"] = []
        for record in engine.containers.list():
            try:
                state = engine.containers.state(record.id)
            except NotFound:
                continue
            size_rw = services.container_size_rw(record.id)
            found["Containers"].append({
                **container_routes.summary(record, state), "SizeRw": size_rw,
                "SizeRootFs": size_rw + sizes.get(record.image, 0),
            })  # fmt: skip
    if "volume" in types:
        found["Volumes"] = []
    if "build-cache" in types:
        found["BuildCache"] = []
    return json_response(found)


def network(request: Request) -> Reply:
    name = request.params["name"]
    if name in ("bridge", "host", "none"):
        raise ApiError(501, "networks are not implemented yet in webengine (they come with the networking issue)")
    raise ApiError(404, f"network {name} not found")


def volume(request: Request) -> Reply:
    raise ApiError(404, f"get {request.params['name']}: no such volume")


def plugin(request: Request) -> Reply:
    raise ApiError(404, f'plugin "{request.params["name"]}" not found')


ROUTES: list[Route] = [
    route("GET", r"/_ping", ping),
    route("HEAD", r"/_ping", ping),
    route("GET", r"/version", version),
    route("GET", r"/info", info),
    route("GET", r"/events", events_stream),
    route("GET", r"/system/df", disk_usage),
    # `docker inspect x` looks for x among these after containers and images: none exist here.
    route("GET", r"/networks/(?P<name>[^/]+)", network),
    route("GET", r"/volumes/(?P<name>[^/]+)", volume),
    route("GET", r"/plugins/(?P<name>.+)/json", plugin),
]
