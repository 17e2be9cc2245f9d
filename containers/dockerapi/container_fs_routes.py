"""A container's files and processes (moby's container and copy routes): diff, commit, export, cp, top, stats."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable, Generator
from typing import Any, BinaryIO

from containers import services
from containers.dockerapi import scoping
from containers.dockerapi.httpserver import ApiError, Reply, Request, Response, Streamed, json_response
from containers.dockerapi.router import Route, route

TAR = "application/x-tar"
STAT_HEADER = "X-Docker-Container-Path-Stat"
_KINDS = {"C": 0, "A": 1, "D": 2}
_STATS_INTERVAL_S = 1.0
# `docker stats --no-stream` gives up after 2 s; two samples this far apart fill precpu_stats.
_NO_STREAM_GAP_S = 0.5


def changes(request: Request) -> Reply:
    found = services.container_changes(request.params["id"])
    return json_response([{"Path": path, "Kind": _KINDS[kind]} for kind, path in found])


def commit(request: Request) -> Reply:
    container = request.arg("container")
    if not container:
        raise ApiError(400, "a container to commit is required (container=...)")
    if request.json():
        raise ApiError(501, "a config in the body of a commit is not implemented yet in webengine; use --change")
    repository, tag = request.arg("repo"), request.arg("tag")
    image = services.commit_container(
        container, f"{repository}:{tag}" if repository and tag else repository or None,
        author=request.arg("author"), message=request.arg("comment"), changes=request.query.get("changes", []),
        pause=request.flag("pause", default=True), team=scoping.owner(request),
    )  # fmt: skip
    return json_response({"Id": image.id}, status=201)


def piped(write: Callable[[BinaryIO], None]) -> Generator[bytes, None, None]:
    """Yield what `write` writes to a file, from a thread: the engine writes tars, the response streams chunks."""
    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []

    def writer() -> None:
        with open(write_fd, "wb") as out:
            try:
                write(out)
            except BaseException as err:  # noqa: BLE001 - raised again in the reading thread
                failure.append(err)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    with open(read_fd, "rb") as pipe:
        try:
            while chunk := pipe.read(65536):
                yield chunk
        finally:
            pipe.close()
            thread.join()
    if failure:
        raise failure[0]


def export(request: Request) -> Reply:
    container_id = services.engine().containers.resolve(request.params["id"])
    return Streamed(piped(lambda out: services.export_container(container_id, out)), TAR)


def _stat_header(stat: dict[str, Any]) -> tuple[str, str]:
    return STAT_HEADER, base64.b64encode(json.dumps(stat).encode()).decode()


def archive_head(request: Request) -> Reply:
    # The tar stream reads nothing until it is iterated: only the stat is used here.
    stat, _ = services.archive_get(request.params["id"], _path(request))
    return Response(200, headers=[_stat_header(stat)], content_type=TAR)


def archive_get(request: Request) -> Reply:
    stat, stream = services.archive_get(request.params["id"], _path(request))

    def body() -> Generator[bytes, None, None]:
        yield from stream

    return Streamed(body(), TAR, headers=[_stat_header(stat)])


def archive_put(request: Request) -> Reply:
    services.archive_put(
        request.params["id"], _path(request), request.stream,
        no_overwrite_dir_non_dir=request.flag("noOverwriteDirNonDir"),
    )  # fmt: skip
    return Response(200)


def _path(request: Request) -> str:
    path = request.arg("path")
    if not path:
        raise ApiError(400, "a path in the container is required (path=...)")
    return path


def top(request: Request) -> Reply:
    return json_response(services.container_top(request.params["id"], request.arg("ps_args") or "-ef"))


def stats(request: Request) -> Reply:
    containers = services.engine().containers
    container_id = containers.resolve(request.params["id"])
    if not request.flag("stream", default=True):
        first = services.container_stats(container_id)
        if request.flag("one-shot") or first["read"].startswith("0001-"):
            return json_response(first)
        time.sleep(_NO_STREAM_GAP_S)
        return json_response(services.container_stats(container_id, first))

    def body() -> Generator[bytes, None, None]:
        previous = None
        while True:
            sample = services.container_stats(container_id, previous)
            yield json.dumps(sample).encode() + b"\n"
            state = containers.state(container_id)
            if not (state.running or state.restarting) or request.disconnected():
                return
            previous = sample
            time.sleep(_STATS_INTERVAL_S)

    return Streamed(body())


ID = r"(?P<id>[^/]+)"

ROUTES: list[Route] = [
    route("GET", rf"/containers/{ID}/changes", changes),
    route("POST", r"/commit", commit),
    route("GET", rf"/containers/{ID}/export", export),
    route("HEAD", rf"/containers/{ID}/archive", archive_head),
    route("GET", rf"/containers/{ID}/archive", archive_get),
    route("PUT", rf"/containers/{ID}/archive", archive_put),
    route("GET", rf"/containers/{ID}/top", top),
    route("GET", rf"/containers/{ID}/stats", stats),
]
