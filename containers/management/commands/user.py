"""Manage users from the command line, without the web UI."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import CommandParser

from containers import accounts
from containers.engine.errors import InvalidArgument
from containers.management.accounts import AccountsCommand


class Command(AccountsCommand):
    help = "Manage users: create."
    actions = {"create": "user.create"}
    # call_command(..., stdin=StringIO(...)) feeds --password-stdin in tests.
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a user (without --password-stdin, one that cannot log in)")
        create.add_argument("name")
        create.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
        create.add_argument("--superuser", action="store_true", help="a site admin, who sees every team")

    def _create(self, name: str, password_stdin: bool, superuser: bool, **options: Any) -> None:
        password = None
        if password_stdin:
            password = (options.get("stdin") or sys.stdin).readline().rstrip("\r\n")
            if not password:
                raise InvalidArgument(f"user {name}: the password read from stdin is empty")
        user = accounts.create_user(name, password, superuser=superuser)
        self.audit("user.create", user, superuser=superuser)
        kind = "site admin" if superuser else "user"
        self.stdout.write(f"created {kind} {name}" + ("" if password else " (no password: it cannot log in)"))
