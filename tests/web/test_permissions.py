"""Who sees and does what: roles, scoping, 404 for outsiders and 403 for members below the role needed."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.utils import timezone

from containers import accounts
from containers.choices import AuditSource, JobKind, Role
from containers.engine.errors import NotFound
from containers.models import ApiToken, Build, Container, Image, ImageTag, Job, Membership, Team
from containers.permissions import (
    NotFoundForUser,
    Principal,
    RoleRequired,
    can,
    get_for_user,
    need,
    role_in,
    role_of,
    scope_queryset,
    visible_teams,
)
from tests.web.base import TeamTestCase


def names(qs: object) -> set[str]:
    return {str(row) for row in qs}  # type: ignore[attr-defined]


class RoleTests(TeamTestCase):
    def test_it_orders_roles_from_viewer_to_admin(self) -> None:
        assert Role.VIEWER < Role.OPERATOR < Role.ADMIN
        assert max(Role.VIEWER, Role.ADMIN, Role.OPERATOR) is Role.ADMIN
        assert Role.ADMIN >= "operator", "a role compares by rank with its stored string too"

    def test_it_gives_each_persona_their_role_in_red(self) -> None:
        roles = {user.username: role_in(user, self.red) for user in (self.alice, self.bob, self.vera, self.charlie)}
        assert roles == {"alice": Role.ADMIN, "bob": Role.OPERATOR, "vera": Role.VIEWER, "charlie": None}
        assert role_in(self.root, self.red) is Role.ADMIN, "a site admin is admin of every team"
        assert role_in(self.root, self.blue) is Role.ADMIN

    def test_it_answers_can_by_rank(self) -> None:
        assert can(self.bob, self.red, Role.OPERATOR) and can(self.bob, self.red, Role.VIEWER)
        assert not can(self.bob, self.red, Role.ADMIN)
        assert not can(self.vera, self.red, Role.OPERATOR)
        assert not can(self.charlie, self.red, Role.VIEWER)

    def test_it_lists_only_the_teams_a_user_is_in(self) -> None:
        assert names(visible_teams(self.alice)) == {"red"}
        assert names(visible_teams(self.charlie)) == {"blue"}
        assert names(visible_teams(self.root)) == {"red", "blue"}

    def test_it_gives_nothing_to_anonymous_or_deactivated_users(self) -> None:
        anonymous = AnonymousUser()
        assert role_in(anonymous, self.red) is None
        assert not visible_teams(anonymous).exists()
        self.make_container("red-web", self.red)
        assert not scope_queryset(anonymous, Container.objects.all()).exists()
        self.alice.is_active = False
        self.alice.save()
        assert role_in(self.alice, self.red) is None
        assert not scope_queryset(self.alice, Container.objects.all()).exists()


class ScopingTests(TeamTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        cls.red_web = cls.make_container("red-web", cls.red)
        cls.make_container("red-db", cls.red)
        cls.make_container("blue-web", cls.blue)
        cls.make_container("orphan", None)

    def test_it_shows_members_their_teams_containers_only(self) -> None:
        for user in (self.alice, self.bob, self.vera):
            assert names(scope_queryset(user, Container.objects.all())) == {"red-web", "red-db"}, user
        assert names(scope_queryset(self.charlie, Container.objects.all())) == {"blue-web"}

    def test_it_shows_a_site_admin_every_container_even_unowned_ones(self) -> None:
        assert names(scope_queryset(self.root, Container.objects.all())) == {"red-web", "red-db", "blue-web", "orphan"}

    def test_it_scopes_builds_jobs_and_memberships_the_same_way(self) -> None:
        Build.objects.create(node="test", tags=["red/app"], team=self.red)
        Build.objects.create(node="test", tags=["blue/app"], team=self.blue)
        Job.objects.create(kind=JobKind.PULL, node="test", target="alpine", team=self.red)
        Job.objects.create(kind=JobKind.PULL, node="test", target="debian", team=self.blue)
        assert [b.tags for b in scope_queryset(self.charlie, Build.objects.all())] == [["blue/app"]]
        assert names(scope_queryset(self.vera, Job.objects.all())) == {"pull alpine"}
        members = scope_queryset(self.charlie, Membership.objects.all())
        assert {m.user.username for m in members} == {"charlie"}, "an outsider must not learn who is in red"

    def test_it_answers_not_found_to_an_outsider_exactly_as_for_a_missing_container(self) -> None:
        with self.assertRaises(NotFoundForUser) as outsider:
            get_for_user(self.charlie, Container.objects.all(), name="red-web")
        with self.assertRaises(NotFoundForUser) as missing:
            get_for_user(self.charlie, Container.objects.all(), name="red-nothing")
        assert str(outsider.exception) == "container red-web: not found"
        assert str(missing.exception) == "container red-nothing: not found"
        assert isinstance(outsider.exception, NotFound), "the Docker API maps engine NotFound to 404"
        assert isinstance(outsider.exception, Http404), "Django and DRF map Http404 to 404"

    def test_it_returns_the_object_with_the_members_role(self) -> None:
        expected = {self.alice: Role.ADMIN, self.bob: Role.OPERATOR, self.vera: Role.VIEWER, self.root: Role.ADMIN}
        for user, role in expected.items():
            assert get_for_user(user, Container.objects.all(), name="red-web") == (self.red_web, role), user

    def test_it_refuses_a_viewer_who_tries_to_change_something(self) -> None:
        container, role = get_for_user(self.vera, Container.objects.all(), pk=self.red_web.pk)
        need(role, Role.VIEWER, f"container {container}")
        with self.assertRaises(RoleRequired) as refused:
            need(role, Role.OPERATOR, f"container {container}")
        assert str(refused.exception) == "container red-web: needs the operator role, you have viewer"
        assert isinstance(refused.exception, PermissionDenied), "Django and DRF map PermissionDenied to 403"
        assert (refused.exception.required, refused.exception.actual) == (Role.OPERATOR, Role.VIEWER)

    def test_it_lets_an_operator_change_but_not_administer(self) -> None:
        _, role = get_for_user(self.bob, Container.objects.all(), name="red-web")
        need(role, Role.OPERATOR)
        with self.assertRaises(RoleRequired):
            need(role, Role.ADMIN)

    def test_need_answers_not_found_when_there_is_no_role(self) -> None:
        with self.assertRaises(NotFoundForUser):
            need(role_in(self.charlie, self.red), Role.VIEWER, "team red")

    def test_a_removed_member_loses_access_at_once(self) -> None:
        Membership.objects.filter(user=self.bob, team=self.red).delete()
        with self.assertRaises(NotFoundForUser):
            get_for_user(self.bob, Container.objects.all(), name="red-web")


class TokenPrincipalTests(TeamTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        cls.make_container("red-web", cls.red)
        cls.make_container("blue-web", cls.blue)
        # bob is in both teams: a token must confine him to one.
        Membership.objects.create(user=cls.bob, team=cls.blue, role=Role.ADMIN)

    def principal(self, user: object, team: Team, read_only: bool = False) -> Principal:
        _, secret = accounts.mint_token(user, team, "test", read_only=read_only)  # type: ignore[arg-type]
        principal = accounts.authenticate_token(secret, AuditSource.DOCKER)
        assert principal is not None, "a fresh token should authenticate"
        return principal

    def test_a_session_reaches_all_the_users_teams(self) -> None:
        assert names(scope_queryset(self.bob, Container.objects.all())) == {"red-web", "blue-web"}

    def test_a_token_reaches_its_team_only(self) -> None:
        red = self.principal(self.bob, self.red)
        assert (red.user, red.team, red.read_only, red.source) == (self.bob, self.red, False, "docker")
        assert names(scope_queryset(red, Container.objects.all())) == {"red-web"}
        assert names(visible_teams(red)) == {"red"}
        assert role_in(red, self.red) is Role.OPERATOR
        assert role_in(red, self.blue) is None, "bob is admin of blue, but not through his red token"
        with self.assertRaises(NotFoundForUser):
            get_for_user(red, Container.objects.all(), name="blue-web")

    def test_a_read_only_token_caps_the_role_at_viewer(self) -> None:
        read_only = self.principal(self.alice, self.red, read_only=True)
        container, role = get_for_user(read_only, Container.objects.all(), name="red-web")
        assert role is Role.VIEWER, "alice is admin of red, but this token only reads"
        with self.assertRaises(RoleRequired):
            need(role, Role.OPERATOR, f"container {container}")
        assert not can(read_only, self.red, Role.OPERATOR)

    def test_a_site_admins_token_is_confined_to_its_team_too(self) -> None:
        token = self.principal(self.root, self.blue)
        assert names(scope_queryset(token, Container.objects.all())) == {"blue-web"}
        assert role_in(token, self.blue) is Role.ADMIN and role_in(token, self.red) is None

    def test_a_token_of_a_removed_member_reaches_nothing(self) -> None:
        token = self.principal(self.vera, self.red)
        Membership.objects.filter(user=self.vera, team=self.red).delete()
        assert not scope_queryset(token, Container.objects.all()).exists()
        assert role_in(token, self.red) is None

    def test_expired_revoked_unknown_and_tampered_tokens_fail(self) -> None:
        expired, expired_secret = accounts.mint_token(self.bob, self.red, expires_in=timedelta(days=1))
        ApiToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        revoked, revoked_secret = accounts.mint_token(self.bob, self.red)
        accounts.revoke_token(revoked)
        _, good = accounts.mint_token(self.bob, self.red)
        tampered = good[:-1] + ("A" if good[-1] != "A" else "B")
        unknown = "we_0123456789ab_" + "x" * 40
        for secret in (expired_secret, revoked_secret, tampered, unknown, "", "Bearer nonsense", good[:-1]):
            assert accounts.authenticate_token(secret) is None, secret
        assert accounts.authenticate_token(good) is not None

    def test_a_deactivated_users_tokens_fail(self) -> None:
        _, secret = accounts.mint_token(self.bob, self.red)
        self.bob.is_active = False
        self.bob.save()
        assert accounts.authenticate_token(secret) is None


class SharedImageTests(TeamTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        cls.busybox = cls.make_image("busybox:latest", shared=True)
        cls.red_app = cls.make_image("red/app:1", "red/app:latest", team=cls.red)
        cls.blue_app = cls.make_image("blue/app:1", team=cls.blue)
        cls.dangling = cls.make_image()

    def test_a_shared_image_is_visible_to_every_team(self) -> None:
        assert set(scope_queryset(self.vera, Image.objects.all())) == {self.busybox, self.red_app}
        assert set(scope_queryset(self.charlie, Image.objects.all())) == {self.busybox, self.blue_app}
        assert names(scope_queryset(self.charlie, ImageTag.objects.all())) == {"busybox:latest", "blue/app:1"}

    def test_a_shared_image_can_be_read_by_all_but_changed_only_by_a_site_admin(self) -> None:
        _, role = get_for_user(self.charlie, Image.objects.all(), pk=self.busybox.pk)
        assert role is Role.VIEWER
        with self.assertRaises(RoleRequired):
            need(role, Role.OPERATOR, "image busybox:latest")
        assert role_of(self.root, self.busybox) is Role.ADMIN
        tag = ImageTag.objects.get(familiar="busybox:latest")
        assert role_of(self.alice, tag) is Role.VIEWER and role_of(self.root, tag) is Role.ADMIN

    def test_a_teams_tag_of_a_shared_image_stays_the_teams(self) -> None:
        ImageTag.objects.create(image=self.busybox, reference="docker.io/red/base:1", familiar="red/base:1",
                                team=self.red)  # fmt: skip
        assert "red/base:1" in names(scope_queryset(self.bob, ImageTag.objects.all()))
        assert "red/base:1" not in names(scope_queryset(self.charlie, ImageTag.objects.all()))
        _, role = get_for_user(self.bob, Image.objects.all(), pk=self.busybox.pk)
        assert role is Role.OPERATOR, "red tagged the shared image, so its operators act on it as red's"

    def test_an_image_is_the_teams_through_its_tags(self) -> None:
        assert get_for_user(self.alice, Image.objects.all(), pk=self.red_app.pk)[1] is Role.ADMIN
        with self.assertRaises(NotFoundForUser):
            get_for_user(self.charlie, Image.objects.all(), pk=self.red_app.pk)
        with self.assertRaises(NotFoundForUser):
            get_for_user(self.charlie, ImageTag.objects.all(), familiar="red/app:1")

    def test_a_site_admin_sees_every_image_even_untagged_ones(self) -> None:
        assert set(scope_queryset(self.root, Image.objects.all())) == {
            self.busybox, self.red_app, self.blue_app, self.dangling,
        }  # fmt: skip
        assert self.dangling not in scope_queryset(self.alice, Image.objects.all())
