"""Celery tasks run by the node agent: thin wrappers that call the services on this node."""

from celery import shared_task

from containers import services


@shared_task(name="containers.sync_images")
def sync_images() -> int:
    """Refresh the database's copy of this node's images; return how many there are."""
    return len(services.sync_images())
