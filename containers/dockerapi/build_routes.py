"""`POST /build`: the legacy builder's protocol, which `DOCKER_BUILDKIT=0 docker build` and docker-py use.

The whole context arrives first (moby reads it all before it answers), then the answer is a
JSON stream (§3.1 of the reference): the builder's text in `stream` messages as it is printed,
`aux` with the image ID, and on failure `errorDetail` (the CLI's exit status is its `code`) with
`error` beside it (what docker-py checks). The build runs in a thread of its own and is
cancelled when the client goes away, as moby cancels a build whose connection closes.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Generator
from typing import Any, BinaryIO

from containers import services
from containers.dockerapi import scoping
from containers.dockerapi.httpserver import ApiError, Reply, Request, Streamed
from containers.dockerapi.router import Route, route
from containers.engine.errors import EngineError

_UNSUPPORTED = {
    "squash": "squashing build results",
    "remote": "remote build contexts (the docker CLI fetches git and URL contexts itself)",
    "cachefrom": "external cache sources",
}


def _json_arg(request: Request, name: str) -> dict[str, Any]:
    text = request.arg(name)
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise ApiError(400, f"invalid {name}: {text!r} is not JSON") from None
    if not isinstance(value, dict):
        raise ApiError(400, f"invalid {name}: expected a JSON object")
    return value


def _message(**fields: Any) -> bytes:
    return json.dumps(fields).encode() + b"\r\n"


def build(request: Request) -> Reply:
    if request.arg("version") == "2":
        raise ApiError(400, "BuildKit is not supported by webengine: build with DOCKER_BUILDKIT=0 (the legacy builder)")
    for name, what in _UNSUPPORTED.items():
        if request.arg(name) not in ("", "[]", "false", "False", "0"):
            raise ApiError(501, f"{what} is not implemented in webengine")
    if request.arg("networkmode") not in ("", "default"):
        raise ApiError(501, "build network modes are not implemented yet in webengine (they come with networking)")
    platform = request.arg("platform")
    if platform not in ("", "linux", "linux/amd64"):
        raise ApiError(400, f"platform {platform!r} is not supported: webengine builds linux/amd64 images")
    record = services.create_build(
        dockerfile=request.arg("dockerfile", "Dockerfile"),
        tags=[tag for tag in request.query.get("t", []) if tag],
        build_args=_json_arg(request, "buildargs"),
        target=request.arg("target"),
        no_cache=request.flag("nocache"),
        labels=_json_arg(request, "labels"),
        source="docker",
        team=scoping.owner(request),
    )
    quiet = request.flag("q")
    return Streamed(_stream(record, request.stream, quiet))


def _stream(record: Any, context: BinaryIO, quiet: bool) -> Generator[bytes, None, None]:
    pieces: queue.SimpleQueue[str | None] = queue.SimpleQueue()
    cancel = threading.Event()
    failure: list[EngineError | BaseException] = []

    def work() -> None:
        try:
            services.run_build(record, context, forward=None if quiet else pieces.put, cancel=cancel)
        except BaseException as err:  # noqa: BLE001 - reported to the client in the stream
            failure.append(err)
        finally:
            pieces.put(None)

    worker = threading.Thread(target=work, name=f"build {record.short_id}", daemon=True)
    worker.start()
    try:
        ended = False
        while not ended:
            # What piled up while the last chunk went out goes in one chunk (the clients split it).
            batch = [pieces.get()]
            while not pieces.empty():
                batch.append(pieces.get())
            ended = batch[-1] is None
            chunk = b"".join(_message(stream=text) for text in batch if text is not None)
            if chunk:
                yield chunk
        worker.join()
        if failure:
            err = failure[0]
            message = str(err) if isinstance(err, EngineError) else f"{type(err).__name__}: {err}"
            code = getattr(err, "code", 1) or 1
            yield _message(errorDetail={"code": code, "message": message}, error=message)
            return
        # run_build set the image on this very row object.
        if quiet:
            yield _message(stream=record.image_id + "\n")
        yield _message(aux={"ID": record.image_id})
    finally:
        # The client went away (or we are done): a build still running is cancelled.
        cancel.set()
        worker.join()


ROUTES: list[Route] = [route("POST", r"/build", build)]
