"""API tokens: a user's credential for scripts and the docker CLI, scoped to one team."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone

from .teams import Team

__all__ = ["ApiToken"]


class ApiToken(models.Model):
    """A bearer token `we_<prefix>_<secret>` that acts as its user, in its team only.

    Only the SHA-256 of the whole token is stored; the secret is shown once, when it is minted
    (`accounts.mint_token`). The prefix is not secret: it finds the row and names the token in
    lists. A read-only token caps its user's role at viewer.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64, help_text="SHA-256 of the whole token, in hex")
    read_only = models.BooleanField(default=False)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never")
    revoked_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"we_{self.prefix}_…"

    def state(self, now: datetime | None = None) -> str:
        """Return `revoked`, `expired` or `active`."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or timezone.now()):
            return "expired"
        return "active"
