"""Image endpoints (moby's api/server/router/image): list, inspect, history, tag, rmi, prune, save, load, import.

Pull is answered with a clear refusal until the registry issue. Who may do what is scoping.py's; what
a request makes (tags, images) is owned by `scoping.owner(request)`, a prune removes only what the
principal could remove one by one (`scoping.removable`), and a save only what it sees (`scoping.saved_names`).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Generator, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from containers import services
from containers.dockerapi import scoping
from containers.dockerapi.container_fs_routes import TAR, piped
from containers.dockerapi.httpserver import ApiError, Reply, Request, Streamed, json_response, no_content
from containers.dockerapi.router import Route, route
from containers.dockerapi.system_routes import storage_driver
from containers.engine.errors import EngineError, InvalidArgument, InvalidReference
from containers.engine.images.config import format_time, parse_time
from containers.engine.images.importer import parse_duration
from containers.engine.images.reference import Reference, parse_reference
from containers.engine.images.store import Image, ImageUsage, intermediates
from containers.engine.snapshots.unpack import chain_ids

ZERO_TIME = "0001-01-01T00:00:00Z"
# moby's imagesAcceptedFilters, for the list and for prune.
_LIST_FILTERS = {"reference", "dangling", "label", "label!", "before", "since", "until"}
_PRUNE_FILTERS = {"dangling", "label", "label!", "until"}


def _labels(image: Image) -> dict[str, str]:
    return dict(image.config.config.labels)


def _old_api(request: Request) -> bool:
    """Whether the client is older than API 1.44, which dropped VirtualSize."""
    major, _, minor = request.version.partition(".")
    return (int(major), int(minor or 0)) < (1, 44)


def summary(image: Image, request: Request, usage: ImageUsage | None = None) -> dict[str, Any]:
    """Return an image as `GET /images/json` lists it; with its `usage`, as `GET /system/df` does."""
    item = {
        "Id": image.id, "ParentId": "", "RepoTags": list(image.repo_tags), "RepoDigests": list(image.repo_digests),
        "Created": int(image.created.timestamp()) if image.created else 0, "Size": image.size,
        "SharedSize": usage.shared_size if usage else -1, "Labels": _labels(image),
        "Containers": usage.containers if usage else -1,
    }  # fmt: skip
    if _old_api(request):
        item["VirtualSize"] = image.size
    return item


#
# Filters
#


def _bool_filter(filters: dict[str, list[str]], key: str, default: bool) -> bool:
    """Read a filter that takes one boolean, as moby's `GetBoolOrDefault` does."""
    values = filters.get(key)
    if not values:
        return default
    if len(values) != 1 or values[0].lower() not in ("true", "1", "false", "0"):
        raise ApiError(400, f"invalid filter '{key}={','.join(values)}'")
    return values[0].lower() in ("true", "1")


def _until(text: str) -> datetime:
    """Parse an `until` value as moby's timestamp.GetTimestamp: unix seconds, a Go duration ago, or a date and time."""
    seconds, dot, fraction = text.partition(".")
    if seconds.isdigit() and (not dot or fraction.isdigit()):
        return datetime.fromtimestamp(float(text), UTC)
    try:
        return datetime.now(UTC) - timedelta(microseconds=parse_duration(text) / 1000)
    except InvalidArgument:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, f"invalid value for 'until' filter: {text!r} is not a timestamp or a duration") from None
    # A time without a zone is local, as Go reads it.
    return when if when.tzinfo else when.astimezone()


def _key_values(values: list[str], labels: dict[str, str]) -> bool:
    """Whether every `key` or `key=value` is among the labels (moby's `MatchKVList`)."""
    for value in values:
        key, equals, wanted = value.partition("=")
        if key not in labels or (equals and labels[key] != wanted):
            return False
    return True


def _reference_time(values: list[str], newest: bool) -> datetime | None:
    """Return when the images `values` name were created: the oldest (`before`) or newest (`since`) of them."""
    times = [when for value in values if (when := services.engine().images.get(value).created) is not None]
    if not times:
        return None
    return max(times) if newest else min(times)


def image_filter(filters: dict[str, list[str]], accepted: set[str]) -> Callable[[Image], bool]:
    """Check `filters` against the `accepted` keys and return the test an image must pass to be listed or pruned."""
    unknown = sorted(set(filters) - accepted)
    if unknown:
        raise ApiError(400, f"invalid filter '{unknown[0]}'")
    checks: list[Callable[[Image], bool]] = []
    if patterns := filters.get("reference"):
        checks.append(lambda image: any(_named(image, pattern) for pattern in patterns))
    if "dangling" in filters:
        dangling = _bool_filter(filters, "dangling", default=False)
        checks.append(lambda image: dangling == (not image.repo_tags))
    if labels := filters.get("label"):
        checks.append(lambda image: _key_values(labels, _labels(image)))
    if not_labels := filters.get("label!"):
        checks.append(lambda image: not _key_values(not_labels, _labels(image)))
    if (before := _reference_time(filters.get("before", []), newest=False)) is not None:
        checks.append(lambda image: image.created is not None and image.created < before)
    if (since := _reference_time(filters.get("since", []), newest=True)) is not None:
        checks.append(lambda image: image.created is not None and image.created > since)
    if until_values := filters.get("until"):
        if len(until_values) > 1:
            raise ApiError(400, "more than one until filter specified")
        until = _until(until_values[0])
        checks.append(lambda image: image.created is not None and image.created <= until)
    return lambda image: all(check(image) for check in checks)


def _named(image: Image, pattern: str) -> bool:
    names = [*image.repo_tags, *(tag.rpartition(":")[0] for tag in image.repo_tags)]
    return any(fnmatch.fnmatchcase(name, pattern) for name in names)


#
# list, inspect, history, tag, remove, prune
#


def list_images(request: Request) -> Reply:
    wanted = image_filter(request.filters(), _LIST_FILTERS)
    images = services.engine().images.list()
    # A build's steps show only with `docker images -a`, as on Docker.
    hidden = set() if request.flag("all") else intermediates(images)
    return json_response([summary(image, request) for image in images if image.id not in hidden and wanted(image)])


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


def history(image: Image) -> list[dict[str, Any]]:
    """Return the image's history newest first, as moby's ImageHistory fills it.

    Each step that made a layer gets that layer's size. Only the top step carries the image's ID
    and tags: the others would name parent images, which exist only where the image was built,
    so they are `<missing>`, as on Docker for a pulled or loaded image.
    """
    layers = iter(image.layers)
    steps = []
    for step in image.config.history:
        size = 0
        if not step.empty_layer:
            layer = next(layers, None)
            if layer is None:
                raise ApiError(500, f"image {image.short_id}: too many non-empty layers in History section")
            size = layer.unpacked_size
        created = parse_time(step.created)
        steps.append({
            "Id": "<missing>", "Created": int(created.timestamp()) if created else 0, "CreatedBy": step.created_by,
            "Tags": None, "Size": size, "Comment": step.comment,
        })  # fmt: skip
    steps.reverse()
    if steps:
        steps[0].update(Id=image.id, Tags=list(image.repo_tags) or None)
    return steps


def image_history(request: Request) -> Reply:
    _refuse_platform(request, "docker history --platform")
    return json_response(history(services.engine().images.get(request.params["name"])))


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
    services.tag_image(request.params["name"], f"{repository}:{tag}" if tag else repository, scoping.owner(request))
    return no_content(201)


def prune_images(request: Request) -> Reply:
    filters = request.filters()
    dangling_only = _bool_filter(filters, "dangling", default=True)
    wanted = image_filter({key: values for key, values in filters.items() if key != "dangling"}, _PRUNE_FILTERS)
    mine = scoping.removable(request)
    records, reclaimed = services.prune_unused_images(
        lambda image: mine(image) and wanted(image), dangling_only=dangling_only
    )
    return json_response({"ImagesDeleted": records or None, "SpaceReclaimed": reclaimed})


#
# save, load, import: archives in and out
#


def _refuse_platform(request: Request, what: str) -> None:
    """Answer 501 for a platform choice: this node keeps one platform per image, so there is none to make."""
    if any(request.query.get("platform", [])):
        raise ApiError(501, f"{what} is not implemented yet in webengine")


def _started(chunks: Generator[bytes, None, None]) -> Generator[bytes, None, None]:
    """Run `chunks` up to its first item now, so that a failure before any output is answered as an HTTP error.

    Moby does the same for `docker save`: a missing image is a 404, not a cut stream.
    """
    first = next(chunks, b"")

    def rest() -> Generator[bytes, None, None]:
        try:
            yield first
            yield from chunks
        finally:
            chunks.close()

    return rest()


def _save(request: Request, names: list[str]) -> Reply:
    _refuse_platform(request, "docker save --platform")
    # Streamed through a pipe as the engine writes the tar: a big image is never held in memory.
    return Streamed(_started(piped(lambda out: services.save_images(names, out))), TAR)


def save_images(request: Request) -> Reply:
    return _save(request, scoping.saved_names(request, request.query.get("names", [])))


def save_image(request: Request) -> Reply:
    return _save(request, scoping.saved_names(request, [request.params["name"]]))


def _messages(messages: Iterable[dict[str, Any]]) -> Generator[bytes, None, None]:
    """Yield a JSON progress stream: one object and CRLF a message, as moby writes it."""
    for message in messages:
        yield json.dumps(message).encode() + b"\r\n"


def _error(message: str) -> dict[str, Any]:
    # The CLI looks at errorDetail, docker-py at error.
    return {"errorDetail": {"message": message}, "error": message}


def _loading(images: list[Image]) -> Iterator[dict[str, Any]]:
    """Yield moby's `Loading layer` progress, each layer once by its chain ID, as done (the load is over)."""
    seen: set[str] = set()
    for image in images:
        for layer, chain in zip(image.layers, chain_ids([layer.diff_id for layer in image.layers]), strict=True):
            if chain not in seen:
                seen.add(chain)
                done = {"current": layer.unpacked_size, "total": layer.unpacked_size}
                yield {"status": "Loading layer", "progressDetail": done, "id": chain.removeprefix("sha256:")[:12]}


def _loaded(image: Image) -> list[dict[str, Any]]:
    """Say what a load brought, as moby does: each tag, or the ID of an untagged image."""
    if not image.repo_tags:
        return [{"stream": f"Loaded image ID: {image.id}\n"}]
    return [{"stream": f"Loaded image: {tag}\n"} for tag in image.repo_tags]


def load_images(request: Request) -> Reply:
    _refuse_platform(request, "docker load --platform")
    try:
        images = services.load_images(
            request.stream, scoping.owner(request), lambda tags: scoping.check_tags(request, tags)
        )
    except EngineError as err:
        # Moby reports a failed load inside the stream (status 200), where both clients look for it;
        # the engine has removed whatever the archive had stored by then.
        return Streamed(_messages([_error(str(err))]))
    progress = [] if request.flag("quiet", default=True) else list(_loading(images))
    return Streamed(_messages([*progress, *(message for image in images for message in _loaded(image))]))


def _import_reference(repository: str, tag: str) -> Reference:
    """Name an imported image as moby's `RepoTagReference` does: `latest` unless a tag is given; no digests."""
    ref = parse_reference(repository)
    if ref.digest:
        raise ApiError(400, "cannot import digest reference")
    return ref.with_tag(tag) if tag else ref


def _import(request: Request, source: str) -> Reply:
    """`docker import`: the body is a rootfs tarball; answer the new image's ID as a status message."""
    if not source:
        raise ApiError(400, "an image to pull (fromImage) or a source to import (fromSrc) is required")
    if source != "-":
        raise ApiError(
            501, f"importing from {source} is not implemented in webengine: send the tarball itself "
            "(docker import <file>, or pipe it to docker import -)",
        )  # fmt: skip
    repository, tag = request.arg("repo"), request.arg("tag")
    tags = [str(_import_reference(repository, tag))] if repository else []
    image = services.import_image(
        request.stream, tags, request.query.get("changes", []), message=request.arg("message"),
        platform=request.arg("platform") or None, team=scoping.owner(request),
    )  # fmt: skip
    return Streamed(_messages([{"status": image.id}]))


def create_image(request: Request) -> Reply:
    """Import an image (`fromSrc`), or answer a pull with its error in the progress stream, where both clients look."""
    name, tag = request.arg("fromImage"), request.arg("tag")
    if not name:
        return _import(request, request.arg("fromSrc"))
    text = f"{name}@{tag}" if tag.startswith("sha256:") else f"{name}:{tag}" if tag else name
    try:
        text = parse_reference(text).familiar()
    except InvalidReference:
        pass
    message = (
        f"pull is not supported yet: cannot pull {text}: webengine reaches no registry until the registry issue; "
        "only images already on this node can run (docker images)"
    )
    return Streamed(_messages([_error(message)]))


NAME = r"(?P<name>.+)"

ROUTES: list[Route] = [
    route("GET", r"/images/json", list_images),
    route("POST", r"/images/create", create_image),
    route("GET", r"/images/get", save_images),
    route("POST", r"/images/load", load_images),
    route("POST", r"/images/prune", prune_images),
    route("GET", rf"/images/{NAME}/json", inspect_image),
    route("GET", rf"/images/{NAME}/history", image_history),
    route("GET", rf"/images/{NAME}/get", save_image),
    route("POST", rf"/images/{NAME}/tag", tag_image),
    route("DELETE", rf"/images/{NAME}", remove_image),
]
