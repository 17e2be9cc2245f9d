"""Builds: what was asked, what the build printed, and the image it made."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from containers.choices import BuildStatus

__all__ = ["Build"]


class Build(models.Model):
    """One image build from a Dockerfile and a context, on one node.

    The engine builds; this row keeps the parameters, the whole output (`log`), the outcome and
    the resulting image, so that a build can be listed, watched and read after it ended. The
    output is also published line by line to the Channels group `build.<id>` while it runs.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    node = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=BuildStatus.choices, default=BuildStatus.PENDING)
    dockerfile = models.CharField(max_length=1024, default="Dockerfile", help_text="Path inside the context")
    tags = models.JSONField(default=list)
    build_args = models.JSONField(default=dict)
    target = models.CharField(max_length=255, blank=True)
    no_cache = models.BooleanField(default=False)
    labels = models.JSONField(default=dict)
    source = models.CharField(max_length=32, default="api", help_text="Where it was asked: web, api or docker")
    log = models.TextField(blank=True)
    image_id = models.CharField(max_length=71, blank=True)
    error = models.TextField(blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    team = models.ForeignKey("containers.Team", on_delete=models.PROTECT, null=True, blank=True, related_name="builds")
    job = models.OneToOneField(
        "containers.Job", on_delete=models.SET_NULL, null=True, blank=True, related_name="build",
        help_text="The job that runs it, when it was queued through the use cases",
    )  # fmt: skip

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"build {self.short_id}"

    @property
    def short_id(self) -> str:
        return str(self.id)[:8]

    @property
    def finished(self) -> bool:
        return self.status in (BuildStatus.SUCCEEDED, BuildStatus.FAILED, BuildStatus.CANCELLED)

    @property
    def duration(self) -> float | None:
        """Return how long the build ran, in seconds (so far, if it is running)."""
        if self.started_at is None:
            return None
        end = self.finished_at or timezone.now()
        return (end - self.started_at).total_seconds()
