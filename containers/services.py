"""Use cases: what the edges (pages, APIs, commands, tasks) ask of the system.

Edges call these functions and never the engine directly, so that permission checks, audit and
the database's cache of engine state stay in one place. `engine()` is the one seam that unit tests
of logic above the engine patch.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import redis
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.utils import timezone

from containers.choices import BuildStatus
from containers.conf import engine_config
from containers.engine import container_fs
from containers.engine.build.builder import BuildCancelled, Builder, BuildOptions
from containers.engine.engine import Engine
from containers.engine.errors import (
    DockerfileError,
    EngineError,
    FailedPrecondition,
    ImageInUse,
    ImageNotFound,
    InvalidArgument,
    SnapshotNotFound,
)
from containers.engine.images import archive, busybox, importer
from containers.engine.images.reference import parse_reference
from containers.engine.images.store import Image as StoredImage
from containers.engine.images.store import intermediates
from containers.engine.lifecycle import ContainerNotFound, Record, State
from containers.engine.shim.client import Stream
from containers.models import Build, Container, Image, ImageTag, Job, Team

logger = logging.getLogger(__name__)

# The label that carries a container's owning team (its primary key) from the web process that
# queued its creation to whichever process syncs its row first (the job, or the node's events).
# `create_container` sets it to its `team`, over one the caller passed; the Docker API, whose
# requests call it without a team, sets it in the request itself and refuses a request that
# sets it (dockerapi/scoping.py), so that no one can claim a team.
TEAM_LABEL = "webengine.team"


@functools.cache
def engine() -> Engine:
    """Return this process's engine for the local node."""
    return Engine(engine_config())


@functools.cache
def builder() -> Builder:
    """Return this process's builder: its cache index is parsed once and again only when it changes."""
    return Builder(engine())


#
# Images
#


def _config_section(image: StoredImage) -> dict[str, Any]:
    """Return the image config's `config` object with Docker's field names (Cmd, Env, ...)."""
    return json.loads(image.config.to_json()).get("config", {})


@transaction.atomic
def sync_images(team: Team | None = None) -> list[Image]:
    """Make the Image and ImageTag rows of this node match its image store, and return the rows.

    Images and tags new to the database are owned by `team`, the team whose job made them; known
    ones keep their owner.
    """
    # A build's steps stay out of the list, as out of `docker images`: they are the build cache.
    listed = engine().images.list()
    hidden = intermediates(listed)
    stored = [image for image in listed if image.id not in hidden]
    rows = [_sync_image_row(image, team) for image in stored]
    references = {str(parse_reference(familiar)) for image in stored for familiar in image.repo_tags}
    ImageTag.objects.filter(image__node=settings.NODE_NAME).exclude(reference__in=references).delete()
    Image.objects.filter(node=settings.NODE_NAME).exclude(id__in={image.id for image in stored}).delete()
    return rows


@transaction.atomic
def sync_image(ref: str, team: Team | None = None) -> Image:
    """Refresh the rows of one image and its tags (a tag it took from another image moves with it).

    Cheaper than `sync_images` after an operation that made or tagged one image, such as a build:
    an image's row, once it has its history, cannot change (everything in it follows from the
    image's ID, a digest), so only its tags are compared and written where they differ.
    """
    image = engine().images.get(ref)
    row = Image.objects.filter(id=image.id).first()
    if row is None or not row.history:
        return _sync_image_row(image, team)
    _sync_tag_rows(row, image, team)
    return row


def _sync_image_row(image: StoredImage, team: Team | None) -> Image:
    fields = {
        "node": settings.NODE_NAME,
        "size": image.size,
        "created": image.created,
        "architecture": image.config.architecture,
        "os": image.config.os,
        "layers": len(image.layers),
        "config": _config_section(image),
        **_layers_and_history(image),
    }
    row, _ = Image.objects.update_or_create(id=image.id, defaults=fields, create_defaults={**fields, "team": team})
    _sync_tag_rows(row, image, team)
    return row


def _sync_tag_rows(row: Image, image: StoredImage, team: Team | None) -> None:
    """Point the image's tag rows at `row`, writing only those that differ; new ones are owned by `team`."""
    wanted = {str(parse_reference(familiar)): familiar for familiar in image.repo_tags}
    known = {tag.reference: tag for tag in ImageTag.objects.filter(reference__in=wanted)}
    for reference, familiar in wanted.items():
        tag = known.get(reference)
        if tag is None:
            ImageTag.objects.create(reference=reference, image=row, familiar=familiar, team=team)
        elif (tag.image_id, tag.familiar) != (row.id, familiar):
            tag.image, tag.familiar = row, familiar
            tag.save(update_fields=["image", "familiar"])


def _layers_and_history(image: StoredImage) -> dict[str, list[dict[str, Any]]]:
    """Return the image's layers and history as the Image row keeps them, so pages need not read the store."""
    layers = [{"digest": layer.digest, "diff_id": layer.diff_id, "size": layer.unpacked_size,
               "compressed": layer.size} for layer in image.layers]  # fmt: skip
    remaining = iter(layers)
    history = []
    for step in image.config.history:
        layer = None if step.empty_layer else next(remaining, None)
        history.append({"created": step.created, "created_by": step.created_by, "comment": step.comment,
                        "size": layer["size"] if layer else 0, "empty_layer": step.empty_layer})  # fmt: skip
    return {"layer_list": layers, "history": history}


def create_busybox_image(busybox_path: str = "/usr/bin/busybox") -> StoredImage:
    """Create `busybox:latest` from the host's static busybox (Debian busybox-static)."""
    image = busybox.create_busybox_image(engine().images, busybox_path=busybox_path)
    sync_images()
    return image


def import_image(
    stream: BinaryIO,
    tags: list[str],
    changes: list[str],
    message: str = "",
    platform: str | None = None,
    team: Team | None = None,
) -> StoredImage:
    """Import a rootfs tarball (`docker import`); the image and its new tags are owned by `team`."""
    image = importer.import_rootfs(
        engine().images, stream, tags=tags, changes=changes, message=message, platform=platform
    )
    sync_images(team)
    return image


def load_images(
    stream: BinaryIO, team: Team | None = None, check_tags: Callable[[list[str]], None] | None = None
) -> list[StoredImage]:
    """Load an image archive (`docker load`) for `team`; `check_tags` may refuse its tags before any is made."""
    images = archive.load(engine().images, stream, check_tags)
    sync_images(team)
    return images


def save_images(refs: list[str], out: BinaryIO) -> None:
    archive.save(engine().images, refs, out)


def save_images_oci(refs: list[str], directory: Path) -> None:
    archive.save_oci_layout(engine().images, refs, directory)


def tag_image(source: str, target: str, team: Team | None = None) -> StoredImage:
    """Tag an image; a new tag is owned by `team`."""
    image = engine().images.tag(source, target)
    sync_images(team)
    return image


def remove_image(ref: str, force: bool = False, prune: bool = True) -> list[dict[str, str]]:
    result = engine().images.remove(ref, force=force, prune=prune)
    sync_images()
    return result


def prune_images() -> dict[str, int]:
    result = engine().images.gc(grace_s=0)
    sync_images()
    return result


def prune_unused_images(
    wanted: Callable[[StoredImage], bool], dangling_only: bool = True
) -> tuple[list[dict[str, str]], int]:
    """Remove the images no container uses, as `docker image prune` does; return the records and bytes freed.

    Only untagged images go unless `dangling_only` is false, and only those `wanted` accepts. An
    image a container uses is skipped whole: moby would untag all but its last tag first. The
    bytes freed are what the layers no remaining image shares took (the drop in `LayersSize`).
    """
    images = engine().images
    before = images.usage()
    used = {usage.id for usage in before.images if usage.containers}
    stored = images.list()
    # A build's steps are not dangling but its cache, which `docker image prune` keeps (-a takes them).
    kept = used | (intermediates(stored) if dangling_only else set())
    records: list[dict[str, str]] = []
    for image in stored:
        if image.id in kept or (dangling_only and image.repo_tags) or not wanted(image):
            continue
        for ref in [*image.repo_tags, *image.repo_digests] or [image.id]:
            try:
                records += images.remove(ref)
            except (ImageNotFound, ImageInUse):
                continue  # gone with an earlier reference, or a container took the image meanwhile
    sync_images()
    return records, max(0, before.layers_size - images.usage().layers_size)


def container_size_rw(container_id: str) -> int:
    """Return the bytes in the container's own layer (Docker's SizeRw); 0 once the layer is gone.

    With the native snapshotter the container's layer is a full copy, so this counts the image's files too.
    """
    try:
        return engine().snapshotter.usage(container_id)
    except SnapshotNotFound:
        return 0


#
# Containers
#


def _when(text: str) -> datetime | None:
    if not text or text.startswith("0001-"):
        return None
    return datetime.fromisoformat(text[:26].rstrip("Z") + "+00:00")


def sync_container(ref: str) -> Container | None:
    """Refresh one container's row from the engine; delete the row if the container is gone.

    A new row is owned by the team its `TEAM_LABEL` names, if that team exists.
    """
    containers = engine().containers
    try:
        record = containers.get(ref)
        state = containers.state(record.id)
    except ContainerNotFound:
        # Gone, also between the two reads: one removed at its exit can go while it is synced.
        Container.objects.filter(id=ref).delete()
        return None
    _drop_stale_namesake(record)
    fields = _row_fields(record, state)
    row, _ = Container.objects.update_or_create(
        id=record.id, defaults=fields, create_defaults={**fields, "team": _labelled_team(fields["labels"])}
    )
    return row


def _drop_stale_namesake(record: Record) -> None:
    """Delete a row with the record's name and another ID: names are unique among the engine's
    containers, so that is one that went while nobody synced (removed by --rm at its exit).
    """
    stale = Container.objects.filter(node=settings.NODE_NAME, name=record.name).exclude(id=record.id)
    if stale.exists():  # one query in the usual case, where delete() would make its collector's several
        stale.delete()


def _row_fields(record: Record, state: State) -> dict[str, Any]:
    """Return a Container row's fields for the engine's record and state."""
    return {
        "name": record.name, "node": settings.NODE_NAME, "image": record.image, "image_ref": record.image_ref,
        "command": " ".join([record.path, *record.args]), "status": state.status, "exit_code": state.exit_code,
        "oom_killed": state.oom_killed, "pid": state.pid, "restart_count": state.restart_count,
        "created": _when(record.created), "started_at": _when(state.started_at),
        "finished_at": _when(state.finished_at), "labels": record.config.get("Labels") or {},
        "config": record.config, "host_config": record.host_config,
    }  # fmt: skip


def _labelled_team(labels: Mapping[str, str]) -> Team | None:
    team_id = labels.get(TEAM_LABEL, "")
    return Team.objects.filter(pk=int(team_id)).first() if team_id.isdigit() else None


@transaction.atomic
def sync_containers() -> list[Container]:
    """Make this node's Container rows match its engine."""
    records = engine().containers.list()
    rows = [row for record in records if (row := sync_container(record.id)) is not None]
    Container.objects.filter(node=settings.NODE_NAME).exclude(id__in=[r.id for r in records]).delete()
    return rows


def create_container(
    config: dict[str, Any], host_config: dict[str, Any], name: str = "", team: Team | None = None
) -> Container:
    """Create a container owned by `team`; without one, by the team its `TEAM_LABEL` names, if any (see TEAM_LABEL)."""
    record, write_row = create_engine_container(config, host_config, name, team)
    row = write_row()
    if row is None:
        raise ContainerNotFound(record.id)
    return row


def create_engine_container(
    config: dict[str, Any], host_config: dict[str, Any], name: str = "", team: Team | None = None
) -> tuple[Record, Callable[[], Container | None]]:
    """Create the container as `create_container` does; return its record and what writes its row.

    For who answers before writing the row (the Docker API: `docker run` waits on the create).
    """
    labels = dict(config.get("Labels") or {})
    if team is not None:
        labels[TEAM_LABEL] = str(team.pk)
    record = engine().containers.create({**config, "Labels": labels}, host_config, name)
    return record, functools.partial(_write_new_row, record)


def _write_new_row(record: Record) -> Container | None:
    """Write a new container's row; None if it is gone already (run and removed before this)."""
    try:
        state = engine().containers.state(record.id)
    except ContainerNotFound:
        return None
    # A new ID has no row yet: one INSERT, where a sync's update_or_create would make four queries.
    _drop_stale_namesake(record)
    fields = _row_fields(record, state)
    try:
        with transaction.atomic():
            row = Container.objects.create(id=record.id, team=_labelled_team(fields["labels"]), **fields)
    except IntegrityError:
        # Written first by another: the node agent's events follower, or a sync after a start.
        return sync_container(record.id)
    try:
        engine().containers.get(record.id)
    except ContainerNotFound:
        # Run and removed at its exit while this was written: the sync after its start found no row.
        row.delete()
        return None
    return row


def start_container(
    ref: str, attach: dict[str, bool] | None = None, keep_warm: bool = False, sync: bool = True
) -> Stream | None:
    """Start the container (see `Containers.start`); with `sync`, refresh its row after, whatever happened."""
    try:
        return engine().containers.start(ref, attach, keep_warm=keep_warm)
    finally:
        if sync:
            sync_container(ref)


def drain_standbys() -> None:
    """Give up this node's standby containers (see containers/engine/standby.py), as a server stops."""
    engine().containers.standbys.drain()


def stop_container(ref: str, timeout: int | None = None, signal: str | None = None) -> bool:
    try:
        return engine().containers.stop(ref, timeout, signal)
    finally:
        sync_container(ref)


def kill_container(ref: str, signal: str = "SIGKILL") -> None:
    engine().containers.kill(ref, signal)
    engine().containers.wait(ref, timeout=1)
    sync_container(ref)


def restart_container(ref: str, timeout: int | None = None) -> None:
    try:
        engine().containers.restart(ref, timeout)
    finally:
        sync_container(ref)


def pause_container(ref: str) -> None:
    engine().containers.pause(ref)
    sync_container(ref)


def unpause_container(ref: str) -> None:
    engine().containers.unpause(ref)
    sync_container(ref)


def rename_container(ref: str, name: str) -> None:
    record = engine().containers.get(ref)
    engine().containers.rename(record.id, name)
    sync_container(record.id)


def remove_container(ref: str, force: bool = False) -> None:
    record = engine().containers.get(ref)
    engine().containers.remove(record.id, force=force)
    Container.objects.filter(id=record.id).delete()


def wait_container(ref: str) -> State:
    state = engine().containers.wait(ref)
    sync_container(ref)
    return state


def prune_containers(wanted: Callable[[Record], bool]) -> tuple[list[str], int]:
    """Remove the stopped containers `wanted` accepts, as `docker container prune` does; return IDs and bytes freed.

    Running, paused and restarting containers stay, as in moby; so does one that starts meanwhile.
    """
    containers = engine().containers
    deleted, reclaimed = [], 0
    for record in containers.list():
        try:
            state = containers.state(record.id)
        except ContainerNotFound:
            continue
        if state.running or state.paused or state.restarting or not wanted(record):
            continue
        size = container_size_rw(record.id)
        try:
            containers.remove(record.id)
        except EngineError:
            continue
        Container.objects.filter(id=record.id).delete()
        deleted.append(record.id)
        reclaimed += size
    return deleted, reclaimed


def reconcile_node() -> list[str]:
    """What a node agent does when it starts: repair the engine, then refresh the database."""
    done = engine().containers.reconcile()
    sync_images()
    sync_containers()
    return done


#
# Container filesystems and processes: docker diff, commit, export, cp, top, stats
#


def container_changes(ref: str) -> list[tuple[str, str]]:
    return container_fs.changes(engine().containers, ref)


def commit_container(
    ref: str,
    repo_tag: str | None,
    *,
    author: str = "",
    message: str = "",
    changes: list[str],
    pause: bool = True,
    team: Team | None = None,
) -> StoredImage:
    """Make an image of a container's filesystem; a new tag is owned by `team`."""
    image = container_fs.commit(
        engine().containers, ref, repo_tag, author=author, message=message, changes=changes, pause=pause
    )
    sync_image(image.id, team)
    return image


def export_container(ref: str, out: BinaryIO) -> None:
    container_fs.export(engine().containers, ref, out)


def archive_get(ref: str, path: str) -> tuple[dict[str, Any], Iterator[bytes]]:
    return container_fs.archive_get(engine().containers, ref, path)


def archive_put(ref: str, path: str, stream: BinaryIO, no_overwrite_dir_non_dir: bool = False) -> None:
    container_fs.archive_put(engine().containers, ref, path, stream, no_overwrite_dir_non_dir=no_overwrite_dir_non_dir)


def container_top(ref: str, ps_args: str = "-ef") -> dict[str, Any]:
    return container_fs.top(engine().containers, ref, ps_args)


def container_stats(ref: str, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    return container_fs.stats(engine().containers, ref, previous)


#
# Builds
#


class _Publisher:
    """Forward messages to Channels groups from one thread of this process, in batches.

    One thread and one event loop for the process keep one Redis connection (async_to_sync would
    make a loop and a connection a call, and a thread a build costs a build its start); lines of
    one group that pile up while a message is on its way go out joined in the next one. It is best
    effort: a build's row is its record, so a Redis that is down costs the live view, not the build.
    """

    RETRY_S = 5.0

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[tuple[str, dict[str, Any]]] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def send(self, group: str, message: dict[str, Any]) -> None:
        with self.lock:
            # A forked child (a Celery pool process) has the queue but not the thread: start its own.
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="publish to groups", daemon=True)
                self.thread.start()
        self.queue.put((group, message))

    def _run(self) -> None:
        layer = get_channel_layer()
        loop = asyncio.new_event_loop()
        quiet_until = 0.0
        while True:
            batch = [self.queue.get()]
            while not self.queue.empty():
                batch.append(self.queue.get())
            for group, message in _joined(batch):
                if layer is None or time.monotonic() < quiet_until:
                    continue
                try:
                    loop.run_until_complete(layer.group_send(group, message))
                except Exception as err:  # noqa: BLE001 - see the docstring: the live view is best effort
                    logger.warning("live output not published to %s for %ss: %s", group, self.RETRY_S, err)
                    # Dropped, not retried message by message: a Redis that is down would cost every line a
                    # connection attempt.
                    quiet_until = time.monotonic() + self.RETRY_S


def _joined(batch: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Join each run of `build.output` messages to one group into one message, keeping the order."""
    joined: list[tuple[str, dict[str, Any]]] = []
    for group, message in batch:
        if joined and message["type"] == "build.output" and joined[-1][0] == group \
                and joined[-1][1]["type"] == "build.output":  # fmt: skip
            joined[-1] = (group, {"type": "build.output", "text": joined[-1][1]["text"] + message["text"]})
        else:
            joined.append((group, message))
    return joined


_PUBLISHER = _Publisher()


class _Tender:
    """Tend every build this process runs, twice a second, from one thread (no thread a build to start)."""

    EVERY_S = 0.5

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.builds: dict[uuid.UUID, tuple[_BuildLog, threading.Event]] = {}
        self.thread: threading.Thread | None = None

    def add(self, log: _BuildLog, cancel: threading.Event) -> None:
        with self.lock:
            self.builds[log.build.pk] = (log, cancel)
            # A forked child (a Celery pool process) has the registry but not the thread: start its own.
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="tend builds", daemon=True)
                self.thread.start()

    def remove(self, log: _BuildLog) -> None:
        """Stop tending `log`; once this returns, no tend of it is under way."""
        with self.lock:
            self.builds.pop(log.build.pk, None)

    def _run(self) -> None:
        while True:
            time.sleep(self.EVERY_S)
            with self.lock:
                if not self.builds:
                    continue
                for log, cancel in list(self.builds.values()):
                    try:
                        log.tend(cancel)
                    except Exception:
                        logger.exception("could not tend build %s", log.build.pk)
                close_old_connections()


class _BuildLog:
    """Keep a build's output: live in its group and to `forward` at once, in its row twice a second.

    The build's thread only appends; `tend`, called by the process's `_Tender`, saves what came
    since the last save and looks for a cancel asked through the row, so that a step that prints a line and
    then runs for minutes shows that line in the row within half a second.
    """

    TEND_EVERY_S = 0.5

    def __init__(self, build: Build, forward: Callable[[str], None] | None) -> None:
        self.build = build
        self.forward = forward
        self.parts: list[str] = []
        self.saved = 0
        self.lock = threading.Lock()
        self.group = build_group(build.id)

    def __call__(self, text: str) -> None:
        with self.lock:
            self.parts.append(text)
        _PUBLISHER.send(self.group, {"type": "build.output", "text": text})
        if self.forward is not None:
            self.forward(text)

    def save(self, **fields: Any) -> None:
        with self.lock:
            self.build.log = "".join(self.parts)
            self.saved = len(self.parts)
        for name, value in fields.items():
            setattr(self.build, name, value)
        Build.objects.filter(pk=self.build.pk).update(log=self.build.log, **fields)

    def tend(self, cancel: threading.Event) -> None:
        """Save new output, and set `cancel` when the row asks for it (cancel_build, from anywhere)."""
        if len(self.parts) != self.saved:
            self.save()
        if not cancel.is_set() and Build.objects.filter(pk=self.build.pk, cancel_requested=True).exists():
            cancel.set()

    def finish(self, **fields: Any) -> None:
        self.save(finished_at=timezone.now(), **fields)
        _PUBLISHER.send(self.group, {"type": "build.finished", "status": self.build.status,
                                     "image_id": self.build.image_id, "error": self.build.error})  # fmt: skip


_TENDER = _Tender()


def build_group(build_id: uuid.UUID | str) -> str:
    """Return the Channels group that a build's output is published to."""
    return f"build.{build_id}"


def create_build(
    *,
    dockerfile: str = "Dockerfile",
    tags: Sequence[str] = (),
    build_args: Mapping[str, str | None] | None = None,
    target: str = "",
    no_cache: bool = False,
    labels: Mapping[str, str] | None = None,
    source: str = "api",
    team: Team | None = None,
) -> Build:
    """Record a build that is asked for; InvalidArgument for a tag that is not a valid reference."""
    for tag in tags:
        ref = parse_reference(tag)
        if ref.digest:
            raise InvalidArgument(f"invalid tag {tag!r}: a tag cannot be a digest reference")
    return Build.objects.create(
        node=settings.NODE_NAME, dockerfile=dockerfile or "Dockerfile", tags=list(tags),
        build_args=dict(build_args or {}), target=target, no_cache=no_cache, labels=dict(labels or {}), source=source,
        team=team,
    )  # fmt: skip


def run_build(
    build: Build,
    context: BinaryIO,
    forward: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
) -> Build:
    """Build on this node from the tar stream `context`; keep the output and the outcome in `build`.

    The output goes to the row, to the build's Channels group and to `forward` as it comes.
    The build stops when `cancel` is set or when someone sets `cancel_requested` on the row
    (`cancel_build`, from any process). A failure is recorded, then raised again.
    """
    cancel = cancel or threading.Event()
    log = _BuildLog(build, forward)
    log.save(status=BuildStatus.RUNNING, started_at=timezone.now())
    options = BuildOptions(
        dockerfile=build.dockerfile, tags=tuple(build.tags), build_args=build.build_args, target=build.target,
        no_cache=build.no_cache, labels=build.labels, context_limit=settings.BUILD_CONTEXT_LIMIT,
    )  # fmt: skip
    _TENDER.add(log, cancel)
    try:
        result = builder().build(context, options, log, cancel)
    except BaseException as err:
        _TENDER.remove(log)
        if isinstance(err, BuildCancelled):
            log.finish(status=BuildStatus.CANCELLED, error=str(err))
        elif isinstance(err, EngineError):
            # The Docker API says what moby says; the row, which the pages show, also says where.
            line = getattr(err, "line_start", 0)
            error = f"{build.dockerfile}:{line}: {err}" if line and not isinstance(err, DockerfileError) else str(err)
            log.finish(status=BuildStatus.FAILED, error=error, exit_code=getattr(err, "code", 1) or 1)
        else:
            log.finish(status=BuildStatus.FAILED, error=f"{type(err).__name__}: {err}", exit_code=1)
        raise
    finally:
        _TENDER.remove(log)
        close_old_connections()
    sync_image(result.image_id, build.team)
    log.finish(status=BuildStatus.SUCCEEDED, image_id=result.image_id, exit_code=0)
    return build


def queue_build(build: Build, upload: BinaryIO, job: Job | None = None, audit_id: int | None = None) -> None:
    """Keep the uploaded context where the build's node reads it, and queue the build there.

    With a `job`, the task marks it (its Celery ID is the job's), and turns the audit event `audit_id`
    to failed if the build fails.
    """
    from containers.tasks import build_image  # tasks import this module: import at call time

    directory = Path(settings.BUILD_CONTEXT_DIR)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{build.id}.tar"
    try:
        with path.open("xb") as out:
            shutil.copyfileobj(upload, out, 1 << 20)
        build_image.apply_async(
            args=[str(build.id), str(path)],
            kwargs={"job_id": str(job.id), "audit_id": audit_id} if job else {},
            queue=f"node.{build.node}",
            task_id=str(job.id) if job else None,
        )
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def cancel_build(build_id: uuid.UUID | str) -> Build:
    """Ask a pending or running build to stop; FailedPrecondition once it has finished."""
    build = Build.objects.get(pk=build_id)
    if build.finished:
        raise FailedPrecondition(f"build {build.id} has already finished ({build.status})")
    Build.objects.filter(pk=build.pk).update(cancel_requested=True)
    build.refresh_from_db()
    return build


#
# Health
#


def _check_database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"status": "ok", "vendor": connection.vendor}
    except Exception as err:  # noqa: BLE001 - any failure is the answer here
        return {"status": "error", "error": str(err)}


def _check_redis() -> dict[str, Any]:
    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
        client.ping()
        return {"status": "ok"}
    except redis.RedisError as err:
        return {"status": "error", "error": str(err)}


def _check_node_agents(timeout: float) -> dict[str, Any]:
    from webengine.celery import app

    try:
        # A connection of our own, closed at once: kombu's pooled connections would otherwise
        # outlive the request and be "cleaned up" in every process this one forks.
        with app.connection_for_write() as conn:
            replies = app.control.ping(timeout=timeout, connection=conn)
    except Exception as err:  # noqa: BLE001 - the broker may be down in many ways
        return {"status": "error", "error": str(err), "nodes": []}
    nodes = sorted(name for reply in replies for name in reply)
    if not nodes:
        return {"status": "error", "error": f"no node agent answered within {timeout}s", "nodes": []}
    return {"status": "ok", "nodes": nodes}


def health(timeout: float = 0.5) -> dict[str, Any]:
    """Check the database, redis and the node agents; `status` is ok only when every check is."""
    checks = {"database": _check_database(), "redis": _check_redis()}
    if checks["redis"]["status"] == "ok":
        checks["node_agents"] = _check_node_agents(timeout)
    else:
        checks["node_agents"] = {"status": "error", "error": "redis is unreachable", "nodes": []}
    ok = all(check["status"] == "ok" for check in checks.values())
    return {"status": "ok" if ok else "error", "checks": checks}
