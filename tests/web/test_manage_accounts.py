"""`manage.py user|team|token ...`: accounts without the web UI, each action in the audit log as `cli`."""

from __future__ import annotations

import getpass
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone

from containers import accounts
from containers.choices import Role
from containers.models import ApiToken, AuditEvent, Image, Membership
from containers.permissions import scope_queryset
from tests.web.base import TeamTestCase


def manage(*args: str, stdin: str | None = None) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    extra = {"stdin": StringIO(stdin)} if stdin is not None else {}
    call_command(*args, stdout=out, stderr=err, **extra)
    return out.getvalue(), err.getvalue()


class ManageAccountsTests(TeamTestCase):
    def last_event(self) -> AuditEvent:
        event = AuditEvent.objects.first()
        assert event is not None, "the command should have written an audit event"
        return event

    def test_user_create_reads_the_password_from_stdin(self) -> None:
        out, _ = manage("user", "create", "dora", "--password-stdin", stdin="correct horse battery staple\n")
        assert out == "created user dora\n"
        assert authenticate(username="dora", password="correct horse battery staple") is not None
        event = self.last_event()
        assert (event.action, event.source, event.username, event.target_name) == (
            "user.create", "cli", getpass.getuser(), "dora",
        )  # fmt: skip

    def test_user_create_without_a_password_makes_a_site_admin_who_uses_tokens(self) -> None:
        out, _ = manage("user", "create", "ops", "--superuser")
        assert out == "created site admin ops (no password: it cannot log in)\n"
        ops = get_user_model().objects.get(username="ops")
        assert ops.is_superuser and not ops.has_usable_password()

    def test_user_create_refuses_a_weak_password_and_records_the_failure(self) -> None:
        with pytest.raises(CommandError, match="user dora: This password is too short"):
            manage("user", "create", "dora", "--password-stdin", stdin="abc\n")
        with pytest.raises(CommandError, match="password read from stdin is empty"):
            manage("user", "create", "dora", "--password-stdin", stdin="")
        assert not get_user_model().objects.filter(username="dora").exists()
        event = self.last_event()
        assert (event.action, event.outcome) == ("user.create", "failed")
        assert "abc" not in str(event.detail)

    def test_team_create_add_member_set_role_and_list(self) -> None:
        assert manage("team", "create", "green", "--description", "the green team")[0] == "created team green\n"
        assert manage("team", "add-member", "green", "charlie", "--role", "operator")[0] == (
            "charlie is now operator of team green\n"
        )
        manage("team", "add-member", "green", "vera")
        manage("team", "set-role", "green", "vera", "--role", "admin")
        roles = dict(Membership.objects.filter(team__name="green").values_list("user__username", "role"))
        assert roles == {"charlie": Role.OPERATOR, "vera": Role.ADMIN}
        assert "green: charlie (operator), vera (admin)" in manage("team", "list")[0]
        events = list(AuditEvent.objects.order_by("time").values_list("action", "target_name", "team__name"))
        assert events == [
            ("team.create", "green", "green"), ("member.add", "charlie", "green"),
            ("member.add", "vera", "green"), ("member.set_role", "vera", "green"),
        ]  # fmt: skip

    def test_team_remove_member_refuses_the_last_admin(self) -> None:
        with pytest.raises(CommandError, match="team red: alice is its last admin"):
            manage("team", "remove-member", "red", "alice")
        assert (self.last_event().action, self.last_event().outcome) == ("member.remove", "failed")
        assert manage("team", "remove-member", "red", "vera")[0] == "vera is no longer in team red\n"
        with pytest.raises(CommandError, match="team nowhere: not found"):
            manage("team", "add-member", "nowhere", "vera")

    def test_token_create_prints_the_token_once_and_it_works(self) -> None:
        out, err = manage("token", "create", "bob", "--team", "red", "--name", "ci", "--expires-in", "30d")
        secret = out.strip()
        assert accounts.TOKEN_PATTERN.fullmatch(secret), f"stdout should be the token alone, got {out!r}"
        assert "not shown again" in err and secret not in err
        principal = accounts.authenticate_token(secret)
        assert principal is not None and (principal.user, principal.team) == (self.bob, self.red)
        token = ApiToken.objects.get()
        assert (token.name, token.read_only) == ("ci", False)
        assert abs(token.expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
        event = self.last_event()
        assert (event.action, event.source, event.team, event.target_name) == (
            "token.create", "cli", self.red, f"we_{token.prefix}_…",
        )  # fmt: skip
        assert secret.split("_", 2)[2] not in str(event.detail)

    def test_token_create_read_only_caps_the_role(self) -> None:
        secret = manage("token", "create", "alice", "--team", "red", "--read-only")[0].strip()
        principal = accounts.authenticate_token(secret)
        assert principal is not None and principal.read_only
        assert ApiToken.objects.get().expires_at is None, "without --expires-in a token never expires"

    def test_token_create_refuses_an_outsider_and_a_bad_duration(self) -> None:
        with pytest.raises(CommandError, match="team red: charlie is not a member"):
            manage("token", "create", "charlie", "--team", "red")
        with pytest.raises(CommandError, match="duration '30 days'"):
            manage("token", "create", "bob", "--team", "red", "--expires-in", "30 days")
        assert not ApiToken.objects.exists()
        assert (self.last_event().action, self.last_event().outcome) == ("token.create", "failed")

    def test_token_list_shows_prefixes_never_secrets_and_revoke_ends_a_token(self) -> None:
        bob_secret = manage("token", "create", "bob", "--team", "red", "--name", "laptop")[0].strip()
        manage("token", "create", "charlie", "--team", "blue", "--read-only")
        bob_token = ApiToken.objects.get(user=self.bob)
        listing = manage("token", "list")[0]
        assert listing.splitlines()[0].split() == [
            "ID", "TOKEN", "USER", "TEAM", "NAME", "ACCESS", "EXPIRES", "LAST", "USED", "STATE",
        ]  # fmt: skip
        assert f"we_{bob_token.prefix}_…" in listing and bob_secret not in listing
        only_bob = manage("token", "list", "bob")[0].splitlines()
        assert len(only_bob) == 2 and "laptop" in only_bob[1] and "read-write" in only_bob[1]

        revoked = manage("token", "revoke", str(bob_token.pk))[0]
        assert revoked == f"revoked token {bob_token.pk} (we_{bob_token.prefix}_…)\n"
        assert accounts.authenticate_token(bob_secret) is None
        assert manage("token", "list", "bob")[0].splitlines()[1].endswith("revoked")
        assert (self.last_event().action, self.last_event().target_id) == ("token.revoke", str(bob_token.pk))
        with pytest.raises(CommandError, match="token 999: not found"):
            manage("token", "revoke", "999")


@pytest.mark.requires("busybox")
class BootstrapTests(TeamTestCase):
    def test_bootstrap_shares_busybox_with_every_team(self) -> None:
        manage("bootstrap")
        busybox = Image.objects.get(tags__familiar="busybox:latest")
        assert busybox.shared, "bootstrap should mark the base image shared"
        for user in (self.alice, self.charlie):
            assert busybox in scope_queryset(user, Image.objects.all()), f"{user} should see busybox"
