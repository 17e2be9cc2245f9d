"""The team pages: members see their teams, team admins manage members and roles, site admins make teams."""

from __future__ import annotations

from django.urls import reverse

from containers.choices import AuditOutcome, Role
from containers.models import AuditEvent, Membership, Team
from tests.web.pages.base import PageTestCase, table_rows

TEAMS = reverse("containers:teams")
RED = reverse("containers:team", args=["red"])


def role_url(user: object) -> str:
    return reverse("containers:member_role", args=["red", user.pk])  # type: ignore[attr-defined]


def remove_url(user: object) -> str:
    return reverse("containers:member_remove", args=["red", user.pk])  # type: ignore[attr-defined]


class TeamPagesTests(PageTestCase):
    def test_it_lists_the_users_teams_with_their_role(self) -> None:
        rows = table_rows(self.html(self.bob, TEAMS))
        assert ">red</strong>" in rows and '<span class="badge">operator</span>' in rows and "blue" not in rows
        rows = table_rows(self.html(self.root, TEAMS))
        assert ">red</strong>" in rows and ">blue</strong>" in rows

    def test_it_shows_members_to_everyone_in_the_team(self) -> None:
        page = self.html(self.vera, RED)
        for name in ("alice", "bob", "vera"):
            assert f"<strong>{name}</strong>" in page
        assert "charlie" not in page

    def test_only_admins_get_the_member_controls(self) -> None:
        assert reverse("containers:member_add", args=["red"]) in self.html(self.alice, RED)
        for user in (self.bob, self.vera):
            page = self.html(user, RED)
            assert reverse("containers:member_add", args=["red"]) not in page and "/remove/" not in page

    def test_an_admin_adds_changes_and_removes_a_member(self) -> None:
        client = self.client_for(self.alice)
        response = client.post(
            reverse("containers:member_add", args=["red"]), {"username": "charlie", "role": "viewer"}
        )
        assert response.status_code == 302
        assert Membership.objects.get(team=self.red, user=self.charlie).role == Role.VIEWER
        client.post(role_url(self.charlie), {"role": "operator"})
        assert Membership.objects.get(team=self.red, user=self.charlie).role == Role.OPERATOR
        client.post(remove_url(self.charlie))
        assert not Membership.objects.filter(team=self.red, user=self.charlie).exists()
        actions = list(AuditEvent.objects.filter(team=self.red).order_by("time").values_list("action", "username"))
        assert actions[-3:] == [("member.add", "alice"), ("member.set_role", "alice"), ("member.remove", "alice")]

    def test_it_explains_a_refused_change(self) -> None:
        client = self.client_for(self.alice)
        page = client.post(role_url(self.alice), {"role": "viewer"}, follow=True).content.decode()
        assert "team red: alice is its last admin" in page
        page = client.post(reverse("containers:member_add", args=["red"]), {"username": "nobody"}, follow=True)
        assert "No user has this name." in page.content.decode()
        page = client.post(reverse("containers:member_add", args=["red"]), {"username": "bob", "role": "viewer"},
                           follow=True)  # fmt: skip
        assert "bob is a member already" in page.content.decode()

    def test_a_member_who_is_not_admin_gets_403(self) -> None:
        response = self.client_for(self.bob).post(role_url(self.vera), {"role": "admin"})
        assert response.status_code == 403
        assert Membership.objects.get(team=self.red, user=self.vera).role == Role.VIEWER
        assert AuditEvent.objects.get(action="member.set_role").outcome == AuditOutcome.DENIED
        assert self.client_for(self.vera).post(remove_url(self.bob)).status_code == 403

    def test_an_outsider_gets_404_on_every_team_route(self) -> None:
        client = self.client_for(self.charlie)
        assert client.get(RED).status_code == 404
        assert client.post(role_url(self.vera), {"role": "admin"}).status_code == 404
        assert client.post(remove_url(self.vera)).status_code == 404
        assert client.post(reverse("containers:member_add", args=["red"]), {"username": "charlie"}).status_code == 404
        assert not Membership.objects.filter(team=self.red, user=self.charlie).exists()

    def test_a_site_admin_makes_a_team_and_no_one_else_can(self) -> None:
        assert 'action="/teams/new/"' in self.html(self.root, TEAMS)
        assert 'action="/teams/new/"' not in self.html(self.alice, TEAMS)
        response = self.client_for(self.root).post(reverse("containers:team_create"), {"name": "green"})
        assert response.status_code == 302 and response["Location"] == reverse("containers:team", args=["green"])
        assert self.client_for(self.alice).post(reverse("containers:team_create"), {"name": "mauve"}).status_code == 403
        assert set(Team.objects.values_list("name", flat=True)) == {"red", "blue", "green"}
        assert AuditEvent.objects.filter(action="team.create", outcome=AuditOutcome.DENIED, username="alice").exists()
