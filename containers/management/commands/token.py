"""Mint, list and revoke API tokens from the command line, without the web UI."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import CommandParser
from django.utils import timezone

from containers import accounts
from containers.engine.errors import InvalidArgument, NotFound
from containers.management.accounts import AccountsCommand
from containers.models import ApiToken

_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """Return the duration `30d`, `12h`, `90m` or `2w` names."""
    match = re.fullmatch(r"([1-9][0-9]*)([mhdw])", text.strip())
    if match is None:
        raise InvalidArgument(f"duration {text!r}: expected a number and a unit, m, h, d or w, e.g. 30d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _when(moment: datetime | None, default: str) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M") if moment else default


class Command(AccountsCommand):
    help = "Manage API tokens: create (prints the token once), list, revoke."
    actions = {"create": "token.create", "revoke": "token.revoke"}

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="mint a token for a member of a team and print it once")
        create.add_argument("user")
        create.add_argument("--team", required=True, help="the one team the token can reach")
        create.add_argument("--read-only", action="store_true", help="act as a viewer, whatever the user's role")
        create.add_argument("--expires-in", default="", help="e.g. 30d, 12h, 2w (default: never)")
        create.add_argument("--name", default="", help="what it is for, e.g. ci or laptop")
        listing = sub.add_parser("list", help="list tokens, of one user or of all")
        listing.add_argument("user", nargs="?")
        sub.add_parser("revoke", help="revoke a token for good").add_argument("id", type=int)

    def _create(self, user: str, team: str, read_only: bool, expires_in: str, name: str, **options: Any) -> None:
        expiry = parse_duration(expires_in) if expires_in else None
        token, secret = accounts.mint_token(self.user(user), self.team(team), name, read_only, expiry)
        self.audit("token.create", token, name=name, read_only=read_only, expires_at=token.expires_at)
        self.stdout.write(secret)
        self.stderr.write(
            f"token {token.pk} for {user} in team {team}: send it as `Authorization: Bearer <token>`. "
            "It is not shown again."
        )

    def _list(self, user: str | None, **options: Any) -> None:
        tokens = ApiToken.objects.select_related("user", "team")
        if user:
            tokens = tokens.filter(user=self.user(user))
        now = timezone.now()
        table = [("ID", "TOKEN", "USER", "TEAM", "NAME", "ACCESS", "EXPIRES", "LAST USED", "STATE")]
        for t in tokens:
            access = "read-only" if t.read_only else "read-write"
            table.append((str(t.pk), str(t), t.user.get_username(), t.team.name, t.name, access,
                          _when(t.expires_at, "never"), _when(t.last_used_at, "-"), t.state(now)))  # fmt: skip
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        for row in table:
            self.stdout.write("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())

    def _revoke(self, id: int, **options: Any) -> None:
        token = ApiToken.objects.select_related("team").filter(pk=id).first()
        if token is None:
            raise NotFound(f"token {id}: not found")
        accounts.revoke_token(token)
        self.audit("token.revoke", token)
        self.stdout.write(f"revoked token {id} ({token})")
