"""The audit log: every state change and every refused attempt, whatever edge it came through."""

from __future__ import annotations

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from containers.choices import AuditOutcome, AuditSource

from .teams import Team

__all__ = ["AuditEvent"]


class AuditEvent(models.Model):
    """One recorded action: who, in which team, did what to which object, from where, and how it ended.

    Rows outlive what they mention: `username` and the `target_*` columns keep the names as text
    after a user, team or container is gone. `accounts.audit` writes them and keeps secrets out
    of `detail`.
    """

    time = models.DateTimeField(default=timezone.now)
    # The composite indexes below start with these columns, so the foreign keys need none of their own.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, db_index=False, related_name="+"
    )
    username = models.CharField(max_length=150, blank=True)
    team = models.ForeignKey(
        Team, on_delete=models.SET_NULL, null=True, blank=True, db_index=False, related_name="audit_events"
    )
    action = models.CharField(max_length=64, help_text="A dotted verb, e.g. container.start")
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=128, blank=True)
    target_name = models.CharField(max_length=255, blank=True)
    source = models.CharField(max_length=16, choices=AuditSource.choices)
    address = models.GenericIPAddressField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=AuditOutcome.choices, default=AuditOutcome.SUCCESS)
    detail = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

    class Meta:
        ordering = ["-time"]
        indexes = [
            models.Index(fields=["-time"], name="auditevent_time"),
            models.Index(fields=["team", "-time"], name="auditevent_team_time"),
            models.Index(fields=["user", "-time"], name="auditevent_user_time"),
            models.Index(fields=["action", "-time"], name="auditevent_action_time"),
        ]

    def __str__(self) -> str:
        return f"{self.username or '-'} {self.action} {self.target_name or self.target_id} ({self.outcome})"
