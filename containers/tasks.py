"""Celery tasks run by the node agent: thin wrappers that call the services on this node.

The `*_job` tasks are queued by `usecases` with a Job row: they mark it running, call the
services, and mark how it ended (`_run_job`).
"""

import logging
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections

from containers import live, services
from containers.choices import AuditOutcome
from containers.engine import events
from containers.engine.errors import EngineError
from containers.models import AuditEvent, Build, Container, Job

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


@shared_task(name="containers.build_image")
def build_image(build_id: str, context_path: str, job_id: str | None = None, audit_id: int | None = None) -> str:
    """Run a recorded build from the context file its upload left; return the image ID ("" if it failed).

    The outcome and the whole output are on the Build row either way, and on its job if it has one;
    the context file is removed.
    """
    build = Build.objects.get(pk=build_id)
    path = Path(context_path)

    def work(job: Job | None = None) -> dict[str, Any]:
        with path.open("rb") as context:
            services.run_build(build, context)
        return {"build": str(build.id), "image_id": build.image_id}

    try:
        if job_id is not None:
            _run_job(job_id, audit_id, work)
        else:
            work()
    except EngineError:
        return ""
    finally:
        path.unlink(missing_ok=True)
    return build.image_id


#
# Jobs: what usecases queue
#


def _run_job(job_id: str, audit_id: int | None, work: Callable[[Job], dict[str, Any]]) -> dict[str, Any]:
    """Run `work` as the job: an expected EngineError fails it with the message, a surprise errors it out.

    Either way the action's audit event `audit_id` turns to failed; a surprise is raised again for Celery to log.
    """
    job = Job.objects.select_related("team").get(pk=job_id)
    job.start()
    try:
        result = work(job)
    except EngineError as err:
        job.fail(str(err))
        _audit_failed(audit_id, str(err))
        return {"error": str(err)}
    except Exception as err:
        job.error_out(traceback.format_exc())
        _audit_failed(audit_id, f"{type(err).__name__}: {err}")
        raise
    job.finish(result)
    return result


def _audit_failed(audit_id: int | None, error: str) -> None:
    event = AuditEvent.objects.filter(pk=audit_id).first() if audit_id is not None else None
    if event is not None:
        event.outcome = AuditOutcome.FAILED
        event.detail = {**event.detail, "error": error}
        event.save(update_fields=["outcome", "detail"])


@shared_task(name="containers.run_container_job")
def run_container_job(
    job_id: str, audit_id: int | None, config: dict[str, Any], host_config: dict[str, Any], name: str = ""
) -> dict[str, Any]:
    """Create a container owned by the job's team and start it; the result names it."""

    def work(job: Job) -> dict[str, Any]:
        container = services.create_container(config, host_config, name, team=job.team)
        services.start_container(container.id)
        return {"container": container.id, "name": container.name}

    return _run_job(job_id, audit_id, work)


_CONTAINER_VERBS: dict[str, Callable[..., object]] = {
    "start": services.start_container,
    "stop": services.stop_container,
    "restart": services.restart_container,
    "kill": services.kill_container,
    "pause": services.pause_container,
    "unpause": services.unpause_container,
    "remove": services.remove_container,
}


@shared_task(name="containers.container_action_job")
def container_action_job(
    job_id: str, audit_id: int | None, container_id: str, action: str, options: dict[str, Any]
) -> dict[str, Any]:
    """Start, stop, restart, kill, pause, unpause or remove a container, with the verb's options."""

    def work(job: Job) -> dict[str, Any]:
        _CONTAINER_VERBS[action](container_id, **options)
        return {"container": container_id, "action": action}

    return _run_job(job_id, audit_id, work)


@shared_task(name="containers.remove_image_job")
def remove_image_job(job_id: str, audit_id: int | None, ref: str, force: bool = False) -> dict[str, Any]:
    """Remove an image or a tag; the result lists what was untagged and deleted, as Docker's does."""
    return _run_job(job_id, audit_id, lambda job: {"removed": services.remove_image(ref, force=force)})


@shared_task(name="containers.commit_container_job")
def commit_container_job(
    job_id: str,
    audit_id: int | None,
    container_id: str,
    repo_tag: str | None,
    author: str,
    message: str,
    changes: list[str],
    pause: bool,
) -> dict[str, Any]:
    """Make an image of a container; its new tag is owned by the job's team."""

    def work(job: Job) -> dict[str, Any]:
        image = services.commit_container(
            container_id, repo_tag, author=author, message=message, changes=changes, pause=pause, team=job.team
        )
        return {"image_id": image.id}

    return _run_job(job_id, audit_id, work)


def follow_events(stopped: threading.Event) -> None:
    """Keep this node's Container rows in step with its engine's events, until `stopped`."""
    root = services.engine().config.root
    for event in events.follow(root, stopped.is_set):
        try:
            # The team is read first: a removed container's row goes with the sync.
            team_id = Container.objects.filter(pk=event.id).values_list("team_id", flat=True).first()
            live.publish_container_state(event.action, event.id, services.sync_container(event.id), team_id)
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


@worker_ready.connect
def _serve_live_sessions(sender: object, **kwargs: object) -> None:
    """The node agent serves its node's terminals, logs and stats to the websocket consumers (containers.live)."""
    live.start(settings.NODE_NAME)


@worker_shutdown.connect
def _stop_live_sessions(sender: object, **kwargs: object) -> None:
    live.stop()
