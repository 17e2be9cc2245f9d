"""Account use cases: users, teams, members, tokens shown once and stored hashed, and an audit log without secrets."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from io import StringIO

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from containers import accounts
from containers.choices import AuditOutcome, AuditSource, Role
from containers.engine.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from containers.models import ApiToken, AuditEvent, Membership
from containers.permissions import Principal
from tests.web.base import TeamTestCase


def database_dump() -> str:
    """Return every row of every table, as dumpdata writes them."""
    out = StringIO()
    call_command("dumpdata", stdout=out)
    return out.getvalue()


class UserAndTeamTests(TeamTestCase):
    def test_it_creates_a_user_who_cannot_log_in_without_a_password(self) -> None:
        user = accounts.create_user("dora")
        assert not user.has_usable_password() and not user.is_superuser

    def test_it_refuses_a_weak_password_a_bad_name_and_a_taken_name(self) -> None:
        with self.assertRaisesRegex(InvalidArgument, "too short"):
            accounts.create_user("dora", password="abc")
        with self.assertRaises(InvalidArgument):
            accounts.create_user("dora smith")
        with self.assertRaisesRegex(AlreadyExists, "user alice: already exists"):
            accounts.create_user("alice")
        assert not get_user_model().objects.filter(username__startswith="dora").exists()

    def test_it_creates_teams_with_slug_names_only(self) -> None:
        assert accounts.create_team("web-ops", "the web people").description == "the web people"
        with self.assertRaisesRegex(InvalidArgument, "team 'web ops': use only letters, digits, - and _"):
            accounts.create_team("web ops")
        with self.assertRaisesRegex(AlreadyExists, "team red: already exists"):
            accounts.create_team("red")

    def test_it_adds_a_member_once_and_changes_their_role(self) -> None:
        membership = accounts.add_member(self.red, self.charlie, Role.VIEWER)
        assert membership.role == Role.VIEWER
        with self.assertRaises(AlreadyExists):
            accounts.add_member(self.red, self.charlie, Role.ADMIN)
        accounts.set_role(self.red, self.charlie, Role.OPERATOR)
        membership.refresh_from_db()
        assert membership.role == Role.OPERATOR
        with self.assertRaisesRegex(NotFound, "team blue: vera is not a member"):
            accounts.set_role(self.blue, self.vera, Role.ADMIN)

    def test_the_last_admin_of_a_team_can_neither_leave_nor_step_down(self) -> None:
        with self.assertRaisesRegex(FailedPrecondition, "team red: alice is its last admin"):
            accounts.remove_member(self.red, self.alice)
        with self.assertRaises(FailedPrecondition):
            accounts.set_role(self.red, self.alice, Role.OPERATOR)
        assert Membership.objects.get(team=self.red, user=self.alice).role == Role.ADMIN
        accounts.set_role(self.red, self.bob, Role.ADMIN)
        accounts.remove_member(self.red, self.alice)
        assert not Membership.objects.filter(team=self.red, user=self.alice).exists()

    def test_removing_a_plain_member_needs_no_other_admin(self) -> None:
        accounts.remove_member(self.red, self.vera)
        assert list(Membership.objects.filter(team=self.red).values_list("user__username", flat=True)) == [
            "alice", "bob",
        ]  # fmt: skip


class TokenTests(TeamTestCase):
    def test_it_shows_the_token_once_and_stores_only_its_hash(self) -> None:
        token, secret = accounts.mint_token(self.bob, self.red, "laptop", expires_in=timedelta(days=30))
        assert accounts.TOKEN_PATTERN.fullmatch(secret), f"{secret!r} should read we_<prefix>_<secret>"
        assert secret.startswith(f"we_{token.prefix}_") and str(token) == f"we_{token.prefix}_…"
        token.refresh_from_db()
        assert token.digest == hashlib.sha256(secret.encode()).hexdigest()
        hidden = secret.removeprefix(f"we_{token.prefix}_")
        assert hidden not in database_dump(), "the token's secret must be stored nowhere in the database"
        assert abs(token.expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)

    def test_every_token_is_different(self) -> None:
        secrets = {accounts.mint_token(self.bob, self.red)[1] for _ in range(20)}
        assert len(secrets) == 20 and len({s.split("_")[1] for s in secrets}) == 20

    def test_it_mints_only_for_a_member_of_the_team(self) -> None:
        with self.assertRaisesRegex(FailedPrecondition, "team red: charlie is not a member"):
            accounts.mint_token(self.charlie, self.red)
        with self.assertRaises(InvalidArgument):
            accounts.mint_token(self.bob, self.red, expires_in=timedelta(0))
        assert accounts.mint_token(self.root, self.red)[0].team == self.red, "a site admin is in every team"
        assert ApiToken.objects.count() == 1

    def test_it_notes_the_last_use_at_most_once_a_minute(self) -> None:
        token, secret = accounts.mint_token(self.bob, self.red)
        assert token.last_used_at is None
        with self.assertNumQueries(2):
            accounts.authenticate_token(secret)
        with self.assertNumQueries(1):
            accounts.authenticate_token(secret)
        token.refresh_from_db()
        used = token.last_used_at
        assert used is not None
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=used - timedelta(minutes=2))
        accounts.authenticate_token(secret)
        token.refresh_from_db()
        assert token.last_used_at > used - timedelta(minutes=1)

    def test_revoking_twice_keeps_the_first_time(self) -> None:
        token, secret = accounts.mint_token(self.bob, self.red)
        first = accounts.revoke_token(token).revoked_at
        assert accounts.revoke_token(token).revoked_at == first
        assert token.state() == "revoked" and accounts.authenticate_token(secret) is None


class AuditTests(TeamTestCase):
    def test_it_records_who_did_what_where_from(self) -> None:
        container = self.make_container("red-web", self.red)
        principal = Principal(self.bob, self.red, source=AuditSource.DOCKER)
        event = accounts.audit(principal, "container.start", container, address="::ffff:127.0.0.1", signal="TERM")
        assert event is not None
        event.refresh_from_db()
        assert (event.user, event.username, event.team, event.source) == (self.bob, "bob", self.red, "docker")
        assert (event.action, event.target_type, event.target_id, event.target_name) == (
            "container.start", "container", container.id, "red-web",
        )  # fmt: skip
        assert (event.outcome, event.address, event.detail) == ("success", "::ffff:127.0.0.1", {"signal": "TERM"})

    def test_it_records_refusals_of_names_with_no_row(self) -> None:
        target = accounts.Target("container", name="blue-web")
        event = accounts.audit(self.bob, "container.stop", target, AuditOutcome.DENIED, AuditSource.API, "bogus")
        assert event is not None
        assert (event.target_type, event.target_name, event.outcome, event.address) == (
            "container", "blue-web", "denied", None,
        )  # fmt: skip

    def test_it_keeps_the_name_of_a_failed_login_and_of_a_deleted_user(self) -> None:
        failed = accounts.audit("mallory", "auth.login_failed", outcome=AuditOutcome.FAILED, address="127.0.0.1")
        assert failed is not None and (failed.user, failed.username) == (None, "mallory")
        event = accounts.audit(self.vera, "container.logs", self.make_container("red-web", self.red))
        self.vera.delete()
        assert event is not None
        event.refresh_from_db()
        assert (event.user, event.username, event.team) == (None, "vera", self.red)

    def test_it_never_stores_secrets(self) -> None:
        _, secret = accounts.mint_token(self.bob, self.red)
        event = accounts.audit(
            self.bob, "container.create", self.make_container("red-web", self.red), password="hunter2",
            env={"HOME": "/root", "API_TOKEN": secret, "nested": [{"Authorization": f"Bearer {secret}"}]},
            command=f"curl -H 'Authorization: Bearer {secret}' http://127.0.0.1/", client_secret="s3cr3t",
        )  # fmt: skip
        assert event is not None
        event.refresh_from_db()
        prefix = secret.split("_")[1]
        assert event.detail == {
            "env": {"HOME": "/root", "nested": [{}]},
            "command": f"curl -H 'Authorization: Bearer we_{prefix}_…' http://127.0.0.1/",
        }
        dump = database_dump()
        for value in ("hunter2", "s3cr3t", secret.removeprefix(f"we_{prefix}_")):
            assert value not in dump, f"{value} leaked into the database"

    def test_it_never_raises_and_leaves_the_transaction_usable(self) -> None:
        with self.assertLogs("containers.accounts", "ERROR") as logs:
            assert accounts.audit(self.bob, "container.start", detail=object()) is None
        assert "audit: cannot record container.start" in logs.output[0]
        assert accounts.audit(self.bob, "container.start") is not None
        assert AuditEvent.objects.count() == 1
