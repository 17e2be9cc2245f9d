"""Containers: the database's copy of what the engine knows, for listing, ownership and history."""

from __future__ import annotations

from django.db import models

from containers.choices import ContainerStatus

__all__ = ["Container"]


class Container(models.Model):
    """A container on a node. The node's state root is the truth; this row is its cache.

    `services.sync_containers` refreshes it after every operation, and the node agent
    reconciles it when it starts, so that pages can list and filter without asking the node.
    """

    id = models.CharField(primary_key=True, max_length=64)
    name = models.CharField(max_length=255, unique=True)
    node = models.CharField(max_length=255)
    image = models.CharField(max_length=71, help_text="Image ID")
    image_ref = models.CharField(max_length=512, help_text="The image as the user named it")
    command = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=ContainerStatus.choices, default=ContainerStatus.CREATED)
    exit_code = models.IntegerField(default=0)
    oom_killed = models.BooleanField(default=False)
    pid = models.IntegerField(default=0)
    restart_count = models.IntegerField(default=0)
    created = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    labels = models.JSONField(default=dict)
    config = models.JSONField(default=dict, help_text="The container's Config as the node recorded it (Docker's names)")
    host_config = models.JSONField(default=dict, help_text="Its HostConfig: mounts, limits, restart policy")
    synced = models.DateTimeField(auto_now=True)
    team = models.ForeignKey(
        "containers.Team", on_delete=models.PROTECT, null=True, blank=True, related_name="containers"
    )

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return self.name

    @property
    def short_id(self) -> str:
        return self.id[:12]
