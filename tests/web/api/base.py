"""What the REST API tests share: clients for the personas, tokens, and the one seam, the task queue.

The web process never runs a task: it queues one on a node's queue after its transaction commits.
`queued()` patches Celery's `Task.apply_async`, runs the on-commit callbacks, and collects what
would have gone to the broker, so that a test can assert the Job row and the task it names.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

from celery import Task
from django.contrib.auth.models import AbstractUser
from rest_framework.test import APIClient

from containers import accounts
from containers.models import AuditEvent, Team
from tests.web.base import TeamTestCase


@dataclass
class Queued:
    """A task that would have been sent to the broker."""

    name: str
    queue: str
    kwargs: dict[str, Any]
    args: list[Any]
    task_id: str | None


class ApiTestCase(TeamTestCase):
    """A TeamTestCase with API clients for each persona."""

    def client_for(self, user: AbstractUser | None = None, *, csrf: bool = False) -> APIClient:
        """Return a client logged in as `user` by session (anonymous without one), enforcing CSRF if asked."""
        client = APIClient(enforce_csrf_checks=csrf)
        if user is not None:
            client.force_login(user)
        return client

    def token_client(self, user: AbstractUser, team: Team, read_only: bool = False) -> APIClient:
        """Return a client that sends `Authorization: Bearer we_...` for a new token of `user` in `team`."""
        _, token = accounts.mint_token(user, team, "test", read_only=read_only)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return client

    @contextmanager
    def queued(self) -> Iterator[list[Queued]]:
        """Collect the tasks queued in the block, once its transaction would have committed."""
        sent: list[Queued] = []

        def apply_async(task: Task, args: Any = None, kwargs: Any = None, **options: Any) -> mock.Mock:
            sent.append(
                Queued(task.name, options.get("queue", ""), kwargs or {}, list(args or []), options.get("task_id"))
            )
            return mock.Mock(id=options.get("task_id"))

        with mock.patch.object(Task, "apply_async", autospec=True, side_effect=apply_async):
            with self.captureOnCommitCallbacks(execute=True):
                yield sent

    @staticmethod
    def last_event(action: str) -> AuditEvent:
        event = AuditEvent.objects.filter(action=action).order_by("-pk").first()
        assert event is not None, f"no audit event {action} was recorded"
        return event
