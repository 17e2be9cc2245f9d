"""Manage teams and their members from the command line, without the web UI."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from containers import accounts
from containers.choices import Role
from containers.management.accounts import AccountsCommand
from containers.models import Team


class Command(AccountsCommand):
    help = "Manage teams: create, list, add-member, set-role, remove-member."
    actions = {
        "create": "team.create",
        "add-member": "member.add",
        "set-role": "member.set_role",
        "remove-member": "member.remove",
    }

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a team")
        create.add_argument("name", help="letters, digits, - and _")
        create.add_argument("--description", default="")
        sub.add_parser("list", help="list teams and their members")
        for action, text in (("add-member", "add a user to a team"), ("set-role", "change a member's role")):
            member = sub.add_parser(action, help=text)
            member.add_argument("team")
            member.add_argument("user")
            member.add_argument("--role", choices=Role.values, default=Role.VIEWER if action == "add-member" else None,
                                required=action == "set-role")  # fmt: skip
        remove = sub.add_parser("remove-member", help="remove a user from a team (not its last admin)")
        remove.add_argument("team")
        remove.add_argument("user")

    def _create(self, name: str, description: str, **options: Any) -> None:
        team = accounts.create_team(name, description)
        self.audit("team.create", team)
        self.stdout.write(f"created team {team}")

    def _list(self, **options: Any) -> None:
        for team in Team.objects.prefetch_related("memberships__user"):
            members = ", ".join(f"{m.user} ({m.role})" for m in team.memberships.all())
            self.stdout.write(f"{team.name}: {members or 'no members'}")

    def _add_member(self, team: str, user: str, role: str, **options: Any) -> None:
        membership = accounts.add_member(self.team(team), self.user(user), Role(role))
        self.audit("member.add", membership.user, team=membership.team, role=role)
        self.stdout.write(f"{user} is now {role} of team {team}")

    def _set_role(self, team: str, user: str, role: str, **options: Any) -> None:
        membership = accounts.set_role(self.team(team), self.user(user), Role(role))
        self.audit("member.set_role", membership.user, team=membership.team, role=role)
        self.stdout.write(f"{user} is now {role} of team {team}")

    def _remove_member(self, team: str, user: str, **options: Any) -> None:
        found_team, found_user = self.team(team), self.user(user)
        accounts.remove_member(found_team, found_user)
        self.audit("member.remove", found_user, team=found_team)
        self.stdout.write(f"{user} is no longer in team {team}")
