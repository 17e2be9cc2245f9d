"""Celery tasks run by the node agent: thin wrappers that call the services on this node."""

import logging
import threading
from typing import Any

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown
from django.db import close_old_connections

from containers import services
from containers.engine import events

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


@shared_task(name="containers.run_container")
def run_container(config: dict[str, Any], host_config: dict[str, Any], name: str = "") -> str:
    """Create and start a container on this node; return its ID."""
    container = services.create_container(config, host_config, name)
    services.start_container(container.id)
    return container.id


@shared_task(name="containers.stop_container")
def stop_container(ref: str, timeout: int | None = None) -> bool:
    return services.stop_container(ref, timeout)


@shared_task(name="containers.kill_container")
def kill_container(ref: str, signal: str = "SIGKILL") -> None:
    services.kill_container(ref, signal)


@shared_task(name="containers.restart_container")
def restart_container(ref: str, timeout: int | None = None) -> None:
    services.restart_container(ref, timeout)


@shared_task(name="containers.remove_container")
def remove_container(ref: str, force: bool = False) -> None:
    services.remove_container(ref, force)


def follow_events(stopped: threading.Event) -> None:
    """Keep this node's Container rows in step with its engine's events, until `stopped`."""
    root = services.engine().config.root
    for event in events.follow(root, stopped.is_set):
        try:
            services.sync_container(event.id)
        except Exception:
            logger.exception("could not apply the engine event %s of %s", event.action, event.id[:12])
        finally:
            close_old_connections()


_event_follower = threading.Event()


@worker_ready.connect
def _follow_events_on_start(sender: object, **kwargs: object) -> None:
    """The node agent keeps the database in step with its node from start to shutdown."""
    threading.Thread(target=follow_events, args=(_event_follower,), name="engine-events", daemon=True).start()


@worker_shutdown.connect
def _stop_following_events(sender: object, **kwargs: object) -> None:
    _event_follower.set()
