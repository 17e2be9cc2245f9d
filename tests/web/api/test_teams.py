"""/api/v1/teams/: the teams you are in with your role; their admins manage members."""

from __future__ import annotations

from containers import accounts
from containers.choices import AuditOutcome, Role
from containers.models import Membership
from tests.web.api.base import ApiTestCase


class TeamTests(ApiTestCase):
    def test_it_lists_your_teams_with_your_role_in_each(self) -> None:
        rows = self.client_for(self.bob).get("/api/v1/teams/").json()["results"]
        assert [(row["name"], row["role"]) for row in rows] == [("red", "operator")]
        rows = self.client_for(self.root).get("/api/v1/teams/").json()["results"]
        assert [(row["name"], row["role"]) for row in rows] == [("blue", "admin"), ("red", "admin")]
        rows = self.token_client(self.alice, self.red, read_only=True).get("/api/v1/teams/").json()["results"]
        assert [(row["name"], row["role"]) for row in rows] == [("red", "viewer")]

    def test_members_see_the_members(self) -> None:
        response = self.client_for(self.vera).get("/api/v1/teams/red/members/")
        assert response.status_code == 200
        assert [(m["username"], m["role"]) for m in response.json()] == [
            ("alice", "admin"), ("bob", "operator"), ("vera", "viewer")
        ]  # fmt: skip

    def test_an_admin_adds_changes_and_removes_a_member(self) -> None:
        accounts.create_user("dave")
        client = self.client_for(self.alice)
        added = client.post("/api/v1/teams/red/members/", {"username": "dave", "role": "operator"}, format="json")
        assert added.status_code == 201 and added.json()["username"] == "dave"
        assert Membership.objects.get(team=self.red, user__username="dave").role == Role.OPERATOR
        changed = client.patch("/api/v1/teams/red/members/dave/", {"role": "admin"}, format="json")
        assert changed.status_code == 200 and changed.json()["role"] == "admin"
        assert client.delete("/api/v1/teams/red/members/dave/").status_code == 204
        assert not Membership.objects.filter(team=self.red, user__username="dave").exists()
        actions = [e.action for e in self.red.audit_events.order_by("time", "pk")]
        assert actions == ["member.add", "member.set_role", "member.remove"]

    def test_it_refuses_a_duplicate_member_an_unknown_user_and_the_last_admin_leaving(self) -> None:
        client = self.client_for(self.alice)
        duplicate = client.post("/api/v1/teams/red/members/", {"username": "bob"}, format="json")
        unknown = client.post("/api/v1/teams/red/members/", {"username": "nobody"}, format="json")
        last = client.patch("/api/v1/teams/red/members/alice/", {"role": "viewer"}, format="json")
        assert (duplicate.status_code, duplicate.json()["code"]) == (409, "already_exists")
        assert (unknown.status_code, unknown.json()["detail"]) == (404, "user nobody: not found")
        assert (last.status_code, last.json()["code"]) == (409, "failed_precondition")
        assert self.last_event("member.set_role").outcome == AuditOutcome.FAILED

    def test_an_outsider_cannot_probe_usernames_through_another_team(self) -> None:
        client = self.client_for(self.charlie)
        known = client.post("/api/v1/teams/red/members/", {"username": "vera"}, format="json")
        unknown = client.post("/api/v1/teams/red/members/", {"username": "nobody"}, format="json")
        assert known.status_code == unknown.status_code == 404 and known.json() == unknown.json()
        assert self.last_event("member.add").team == self.red

    def test_an_admin_edits_the_description_but_not_the_name(self) -> None:
        response = self.client_for(self.alice).patch("/api/v1/teams/red/", {"description": "reds", "name": "x"})
        assert response.status_code == 200 and response.json()["description"] == "reds"
        self.red.refresh_from_db()
        assert (self.red.name, self.red.description) == ("red", "reds")
