"""Teams and memberships: who owns what, and who may do what with it."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from containers.choices import Role

__all__ = ["Membership", "Team"]


class Team(models.Model):
    """A group of people sharing containers, images and builds; every owned row points at one.

    Site admins (`is_superuser`) need no membership: they see and manage every team.
    """

    name = models.SlugField(max_length=64, unique=True, help_text="Letters, digits, - and _, e.g. red or web-ops")
    description = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's role in one team."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team__name", "user__username"]
        constraints = [models.UniqueConstraint(fields=["user", "team"], name="membership_unique_user_team")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"
