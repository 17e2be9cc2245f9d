"""Celery tasks run by the node agent: thin wrappers that call the services on this node."""

import logging

from celery import shared_task
from celery.signals import worker_ready

from containers import services

logger = logging.getLogger(__name__)


@shared_task(name="containers.sync_images")
def sync_images() -> int:
    """Refresh the database's copy of this node's images; return how many there are."""
    return len(services.sync_images())


@shared_task(name="containers.reconcile")
def reconcile() -> list[str]:
    """Repair containers and caches after the node agent (or the machine) restarted."""
    return services.reconcile_node()


@worker_ready.connect
def _reconcile_on_start(sender: object, **kwargs: object) -> None:
    """A node agent that starts reconciles its node before it takes work."""
    try:
        done = services.reconcile_node()
    except Exception:
        logger.exception("reconcile failed; the node agent goes on")
        return
    for line in done:
        logger.info("reconcile: %s", line)
