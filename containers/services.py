"""Use cases: what the edges (pages, APIs, commands, tasks) ask of the system.

Edges call these functions and never the engine directly, so that permission checks, audit and
the database's cache of engine state stay in one place. `engine()` is the one seam that unit tests
of logic above the engine patch.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any, BinaryIO

import redis
from django.conf import settings
from django.db import connection, transaction

from containers.conf import engine_config
from containers.engine.engine import Engine
from containers.engine.images import archive, busybox, importer
from containers.engine.images.reference import parse_reference
from containers.engine.images.store import Image as StoredImage
from containers.models import Image, ImageTag

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


def remove_image(ref: str, force: bool = False) -> list[dict[str, str]]:
    result = engine().images.remove(ref, force=force)
    sync_images()
    return result


def prune_images() -> dict[str, int]:
    result = engine().images.gc(grace_s=0)
    sync_images()
    return result


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
