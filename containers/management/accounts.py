"""What the account commands (`user`, `team`, `token`) share: subcommand dispatch, lookups and audit."""

from __future__ import annotations

import getpass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.core.management.base import BaseCommand, CommandError
from django.db import models

from containers import accounts
from containers.choices import AuditOutcome, AuditSource
from containers.engine.errors import EngineError, NotFound
from containers.models import Team


class AccountsCommand(BaseCommand):
    """Run `<command> <action> ...` as the method `_<action>`, and record every action in the audit log.

    The actor is the unix user running manage.py, with the source `cli`; an action that changes
    something and fails is recorded as failed, under the name that `actions` gives it.
    """

    actions: dict[str, str] = {}

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            getattr(self, "_" + action.replace("-", "_"))(**options)
        except EngineError as err:
            if action in self.actions:
                self.audit(self.actions[action], outcome=AuditOutcome.FAILED, error=str(err))
            raise CommandError(str(err)) from err

    def audit(
        self, action: str, target: models.Model | None = None, outcome: str = AuditOutcome.SUCCESS, **detail: Any
    ) -> None:
        accounts.audit(getpass.getuser(), action, target, outcome, source=AuditSource.CLI, **detail)

    @staticmethod
    def user(name: str) -> AbstractUser:
        user = get_user_model().objects.filter(username=name).first()
        if user is None:
            raise NotFound(f"user {name}: not found")
        return user

    @staticmethod
    def team(name: str) -> Team:
        team = Team.objects.filter(name=name).first()
        if team is None:
            raise NotFound(f"team {name}: not found")
        return team
