"""Use cases: what the edges (pages, APIs, commands, tasks) ask of the system.

Edges call these functions and never the engine directly, so that permission checks, audit and
the database's cache of engine state stay in one place. `engine()` is the one seam that unit tests
of logic above the engine patch.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import redis
from django.conf import settings
from django.db import connection, transaction

from containers.conf import engine_config
from containers.engine import container_fs
from containers.engine.engine import Engine
from containers.engine.images import archive, busybox, importer
from containers.engine.images.reference import parse_reference
from containers.engine.images.store import Image as StoredImage
from containers.engine.lifecycle import ContainerNotFound, State
from containers.engine.shim.client import Stream
from containers.models import Container, Image, ImageTag

logger = logging.getLogger(__name__)


@functools.cache
def engine() -> Engine:
    """Return this process's engine for the local node."""
    return Engine(engine_config())


#
# Images
#


def _config_section(image: StoredImage) -> dict[str, Any]:
    """Return the image config's `config` object with Docker's field names (Cmd, Env, ...)."""
    return json.loads(image.config.to_json()).get("config", {})


@transaction.atomic
def sync_images() -> list[Image]:
    """Make the Image and ImageTag rows of this node match its image store, and return the rows."""
    stored = engine().images.list()
    rows = []
    references: set[str] = set()
    for image in stored:
        row, _ = Image.objects.update_or_create(
            id=image.id,
            defaults={
                "node": settings.NODE_NAME,
                "size": image.size,
                "created": image.created,
                "architecture": image.config.architecture,
                "os": image.config.os,
                "layers": len(image.layers),
                "config": _config_section(image),
            },
        )
        rows.append(row)
        for familiar in image.repo_tags:
            reference = str(parse_reference(familiar))
            references.add(reference)
            ImageTag.objects.update_or_create(reference=reference, defaults={"image": row, "familiar": familiar})
    ImageTag.objects.filter(image__node=settings.NODE_NAME).exclude(reference__in=references).delete()
    Image.objects.filter(node=settings.NODE_NAME).exclude(id__in={image.id for image in stored}).delete()
    return rows


def create_busybox_image(busybox_path: str = "/usr/bin/busybox") -> StoredImage:
    """Create `busybox:latest` from the host's static busybox (Debian busybox-static)."""
    image = busybox.create_busybox_image(engine().images, busybox_path=busybox_path)
    sync_images()
    return image


def import_image(stream: BinaryIO, tags: list[str], changes: list[str], message: str = "") -> StoredImage:
    image = importer.import_rootfs(engine().images, stream, tags=tags, changes=changes, message=message)
    sync_images()
    return image


def load_images(stream: BinaryIO) -> list[StoredImage]:
    images = archive.load(engine().images, stream)
    sync_images()
    return images


def save_images(refs: list[str], out: BinaryIO) -> None:
    archive.save(engine().images, refs, out)


def save_images_oci(refs: list[str], directory: Path) -> None:
    archive.save_oci_layout(engine().images, refs, directory)


def tag_image(source: str, target: str) -> StoredImage:
    image = engine().images.tag(source, target)
    sync_images()
    return image


def remove_image(ref: str, force: bool = False, prune: bool = True) -> list[dict[str, str]]:
    result = engine().images.remove(ref, force=force, prune=prune)
    sync_images()
    return result


def prune_images() -> dict[str, int]:
    result = engine().images.gc(grace_s=0)
    sync_images()
    return result


#
# Containers
#


def _when(text: str) -> datetime | None:
    if not text or text.startswith("0001-"):
        return None
    return datetime.fromisoformat(text[:26].rstrip("Z") + "+00:00")


def sync_container(ref: str) -> Container | None:
    """Refresh one container's row from the engine; delete the row if the container is gone."""
    containers = engine().containers
    try:
        record = containers.get(ref)
    except ContainerNotFound:
        Container.objects.filter(id=ref).delete()
        return None
    state = containers.state(record.id)
    # Names are unique among the engine's containers: a row with this name and another ID is a
    # container that went while nobody synced (one removed by --rm at its exit), so it goes too.
    Container.objects.filter(node=settings.NODE_NAME, name=record.name).exclude(id=record.id).delete()
    row, _ = Container.objects.update_or_create(
        id=record.id,
        defaults={
            "name": record.name, "node": settings.NODE_NAME, "image": record.image, "image_ref": record.image_ref,
            "command": " ".join([record.path, *record.args]), "status": state.status, "exit_code": state.exit_code,
            "oom_killed": state.oom_killed, "pid": state.pid, "restart_count": state.restart_count,
            "created": _when(record.created), "started_at": _when(state.started_at),
            "finished_at": _when(state.finished_at), "labels": record.config.get("Labels") or {},
        },
    )  # fmt: skip
    return row


@transaction.atomic
def sync_containers() -> list[Container]:
    """Make this node's Container rows match its engine."""
    records = engine().containers.list()
    rows = [row for record in records if (row := sync_container(record.id)) is not None]
    Container.objects.filter(node=settings.NODE_NAME).exclude(id__in=[r.id for r in records]).delete()
    return rows


def create_container(config: dict[str, Any], host_config: dict[str, Any], name: str = "") -> Container:
    record = engine().containers.create(config, host_config, name)
    row = sync_container(record.id)
    assert row is not None
    return row


def start_container(ref: str, attach: dict[str, bool] | None = None) -> Stream | None:
    try:
        return engine().containers.start(ref, attach)
    finally:
        sync_container(ref)


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
    ref: str, repo_tag: str | None, *, author: str = "", message: str = "", changes: list[str], pause: bool = True
) -> StoredImage:
    image = container_fs.commit(
        engine().containers, ref, repo_tag, author=author, message=message, changes=changes, pause=pause
    )
    sync_images()
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
