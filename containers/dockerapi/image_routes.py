"""Image endpoints (moby's api/server/router/image): list, inspect, tag, remove, and pull's clear refusal."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Generator
from typing import Any

from containers import services
from containers.dockerapi.httpserver import ApiError, Reply, Request, Streamed, json_response, no_content
from containers.dockerapi.router import Route, route
from containers.dockerapi.system_routes import storage_driver
from containers.engine.errors import InvalidReference
from containers.engine.images.config import format_time
from containers.engine.images.reference import parse_reference
from containers.engine.images.store import Image

ZERO_TIME = "0001-01-01T00:00:00Z"
_LIST_FILTERS = {"reference", "dangling", "label"}
_DOCKER_LIST_FILTERS = {"before", "since", "until"}


def _labels(image: Image) -> dict[str, str]:
    return dict(image.config.config.labels)


def _old_api(request: Request) -> bool:
    """Whether the client is older than API 1.44, which dropped VirtualSize."""
    major, _, minor = request.version.partition(".")
    return (int(major), int(minor or 0)) < (1, 44)


def summary(image: Image, request: Request) -> dict[str, Any]:
    """Return an image as `GET /images/json` lists it."""
    item = {
        "Id": image.id, "ParentId": "", "RepoTags": list(image.repo_tags), "RepoDigests": list(image.repo_digests),
        "Created": int(image.created.timestamp()) if image.created else 0, "Size": image.size, "SharedSize": -1,
        "Labels": _labels(image), "Containers": -1,
    }  # fmt: skip
    if _old_api(request):
        item["VirtualSize"] = image.size
    return item


def _matches(image: Image, filters: dict[str, list[str]]) -> bool:
    for pattern in filters.get("reference", []):
        names = [*image.repo_tags, *(tag.rpartition(":")[0] for tag in image.repo_tags)]
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            return False
    for value in filters.get("dangling", []):
        if value.lower() not in ("true", "1", "false", "0"):
            raise ApiError(400, f"invalid filter 'dangling={value}'")
        if (value.lower() in ("true", "1")) != (not image.repo_tags):
            return False
    labels = _labels(image)
    for value in filters.get("label", []):
        key, equals, wanted = value.partition("=")
        if key not in labels or (equals and labels[key] != wanted):
            return False
    return True


def list_images(request: Request) -> Reply:
    filters = request.filters()
    for key in filters:
        if key in _DOCKER_LIST_FILTERS:
            raise ApiError(501, f"the {key} filter is not implemented yet in webengine")
        if key not in _LIST_FILTERS:
            raise ApiError(400, f"invalid filter '{key}'")
    images = services.engine().images.list()
    return json_response([summary(image, request) for image in images if _matches(image, filters)])


def inspect(image: Image, request: Request) -> dict[str, Any]:
    """Return an image as `docker image inspect` shows it."""
    section = json.loads(image.config.to_json()).get("config", {})
    config = {
        "User": "", "Env": None, "Cmd": None, "Entrypoint": None, "WorkingDir": "", "ExposedPorts": None,
        "Volumes": None, "Labels": None, "StopSignal": "", **section,
    }  # fmt: skip
    found = {
        "Id": image.id, "RepoTags": list(image.repo_tags), "RepoDigests": list(image.repo_digests), "Parent": "",
        "Comment": image.config.comment, "Created": format_time(image.created) if image.created else ZERO_TIME,
        "DockerVersion": "", "Author": image.config.author, "Config": config,
        "Architecture": image.config.architecture, "Os": image.config.os, "Size": image.size,
        "GraphDriver": {"Name": storage_driver(), "Data": {}},
        "RootFS": {"Type": "layers", "Layers": [layer.diff_id for layer in image.layers]},
        "Metadata": {"LastTagTime": format_time(image.last_tag_time) if image.last_tag_time else ZERO_TIME},
    }  # fmt: skip
    if image.config.variant:
        found["Variant"] = image.config.variant
    if _old_api(request):
        found["VirtualSize"] = image.size
    return found


def inspect_image(request: Request) -> Reply:
    return json_response(inspect(services.engine().images.get(request.params["name"]), request))


def remove_image(request: Request) -> Reply:
    records = services.remove_image(
        request.params["name"], force=request.flag("force"), prune=not request.flag("noprune")
    )
    return json_response(records)


def tag_image(request: Request) -> Reply:
    repository = request.arg("repo")
    if not repository:
        raise ApiError(400, "repository name must have at least one component")
    tag = request.arg("tag")
    services.tag_image(request.params["name"], f"{repository}:{tag}" if tag else repository)
    return no_content(201)


def create_image(request: Request) -> Reply:
    """Answer a pull with its error in the progress stream, where both clients look for it."""
    if request.arg("fromSrc"):
        raise ApiError(501, "docker import is not implemented yet in the Docker API; use `manage.py image import`")
    name, tag = request.arg("fromImage"), request.arg("tag")
    text = f"{name}@{tag}" if tag.startswith("sha256:") else f"{name}:{tag}" if tag else name
    try:
        text = parse_reference(text).familiar()
    except InvalidReference:
        pass
    message = (
        f"pull is not supported yet: cannot pull {text}: webengine reaches no registry until the registry issue; "
        "only images already on this node can run (docker images)"
    )

    def body() -> Generator[bytes, None, None]:
        yield json.dumps({"errorDetail": {"message": message}, "error": message}).encode() + b"\r\n"

    return Streamed(body())


NAME = r"(?P<name>.+)"

ROUTES: list[Route] = [
    route("GET", r"/images/json", list_images),
    route("POST", r"/images/create", create_image),
    route("GET", rf"/images/{NAME}/json", inspect_image),
    route("POST", rf"/images/{NAME}/tag", tag_image),
    route("DELETE", rf"/images/{NAME}", remove_image),
]
