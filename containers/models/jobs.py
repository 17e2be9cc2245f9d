"""Jobs: the long operations (build, pull, run, ...) that a node runs for a user, and how they went."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models.functions import Concat
from django.utils import timezone

from containers.choices import JobKind, JobStatus
from containers.engine.errors import InvalidStateTransition

from .teams import Team

__all__ = ["Job"]


class Job(models.Model):
    """A long operation as a Celery task on its node's queue, with its status, progress, log and result.

    The lifecycle is pending → running → completed, and a job that is pending or running can end
    as *failed* (an expected error, e.g. a missing image) or *errored* (a surprise, with its
    traceback). The methods below write only the fields they change, and move the status only
    if the row's current status allows it, so that the task writing the log, a cancel and the
    task finishing never overwrite each other.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=16, choices=JobKind.choices)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="jobs"
    )
    team = models.ForeignKey(Team, on_delete=models.CASCADE, null=True, blank=True, related_name="jobs")
    node = models.CharField(max_length=255)
    target = models.CharField(max_length=512, blank=True, help_text="What it works on, e.g. an image reference")
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent done, 0 to 100")
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    log = models.TextField(blank=True)
    celery_id = models.CharField(max_length=255, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        constraints = [models.CheckConstraint(condition=models.Q(progress__lte=100), name="job_progress_percent")]

    def __str__(self) -> str:
        return f"{self.kind} {self.target}".strip()

    @property
    def finished(self) -> bool:
        return self.status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.ERRORED)

    def _move(self, allowed_from: tuple[JobStatus, ...], to: JobStatus, **fields: Any) -> None:
        """Move to `to` and save `fields`, only if the row's status (not this copy's) allows it."""
        moved = Job.objects.filter(pk=self.pk, status__in=allowed_from).update(status=to, **fields)
        if not moved:
            current = Job.objects.filter(pk=self.pk).values_list("status", flat=True).first()
            raise InvalidStateTransition(current or self.status, to, subject=f"job {self.id}")
        self.status = to
        for name, value in fields.items():
            setattr(self, name, value)

    def start(self) -> None:
        """Mark the job running."""
        self._move((JobStatus.PENDING,), JobStatus.RUNNING, started_at=timezone.now())

    def finish(self, result: dict[str, Any] | None = None) -> None:
        """Mark the job completed with its result."""
        self._move((JobStatus.RUNNING,), JobStatus.COMPLETED, result=result or {}, progress=100,
                   finished_at=timezone.now())  # fmt: skip

    def fail(self, error: str) -> None:
        """Mark the job failed for an expected reason, said in one line for the user."""
        self._move((JobStatus.PENDING, JobStatus.RUNNING), JobStatus.FAILED, error=error, finished_at=timezone.now())

    def error_out(self, traceback: str) -> None:
        """Mark the job errored by a surprise, keeping the traceback."""
        self._move((JobStatus.PENDING, JobStatus.RUNNING), JobStatus.ERRORED, error=traceback,
                   finished_at=timezone.now())  # fmt: skip

    def append_log(self, text: str) -> None:
        """Add text to the log in the database itself, so that concurrent appends all land."""
        appended = Concat(models.F("log"), models.Value(text), output_field=models.TextField())
        Job.objects.filter(pk=self.pk).update(log=appended)
        self.log += text
