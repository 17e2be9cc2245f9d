"""Every REST endpoint against every persona: who gets in, who gets 403, who gets 404, and what lists show.

- anonymous: 401 everywhere (the token scheme is announced in WWW-Authenticate)
- charlie, an outsider to red: 404 for red's objects, as for objects that do not exist
- vera, viewer of red: reads; any change is 403
- bob, operator of red: runs, stops, builds; deleting and managing members is 403
- alice, admin of red: everything in red; with a read-only token, no change at all (403)
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from typing import Any

from rest_framework.test import APIClient

from containers import accounts
from containers.choices import JobKind, Role
from containers.models import AuditEvent, Build, Job
from tests.web.api.base import ApiTestCase


def context_tar() -> bytes:
    data = b"FROM busybox\nRUN true\n"
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class PermissionMatrixTests(ApiTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        cls.busybox = cls.make_image("busybox:latest", shared=True)
        cls.red_image = cls.make_image("red-app:1", team=cls.red)
        cls.blue_image = cls.make_image("blue-app:1", team=cls.blue)
        cls.web = cls.make_container("red-web", cls.red, status="running")
        cls.blue_web = cls.make_container("blue-web", cls.blue, status="running")
        cls.build = Build.objects.create(node="test", team=cls.red, tags=["red-app:2"])
        cls.blue_build = Build.objects.create(node="test", team=cls.blue, tags=["blue-app:2"])
        cls.job = Job.objects.create(kind=JobKind.PULL, node="test", team=cls.red, user=cls.bob, target="alpine")
        cls.blue_job = Job.objects.create(kind=JobKind.PULL, node="test", team=cls.blue, target="alpine")
        cls.event = AuditEvent.objects.create(action="container.start", team=cls.red, source="api", target_name="x")
        cls.blue_event = AuditEvent.objects.create(action="container.start", team=cls.blue, source="api")

    def setUp(self) -> None:
        contexts = tempfile.TemporaryDirectory(prefix="contexts-")
        self.addCleanup(contexts.cleanup)
        override = self.settings(BUILD_CONTEXT_DIR=contexts.name)
        override.enable()
        self.addCleanup(override.disable)

    def personas(self) -> list[tuple[str, APIClient]]:
        return [
            ("anonymous", self.client_for()),
            ("charlie", self.client_for(self.charlie)),
            ("read-only alice", self.token_client(self.alice, self.red, read_only=True)),
            ("vera", self.client_for(self.vera)),
            ("bob", self.client_for(self.bob)),
            ("alice", self.client_for(self.alice)),
        ]

    def send(self, client: APIClient, method: str, path: str, body: Any) -> Any:
        if method == "post_tar":
            return client.post(path, {"team": "red", "tags": ["red-app:3"], "context": io.BytesIO(context_tar())})
        return getattr(client, method)(path, body, format="json")

    def check_change(self, method: str, path: str, body: Any, needs: Role, ok: int) -> None:
        """Send the change as each persona, from the least to the most allowed, and check each answer."""
        allowed = {"vera": needs == Role.VIEWER, "bob": needs <= Role.OPERATOR, "alice": True}
        with self.queued():
            for name, client in self.personas():
                response = self.send(client, method, path, body)
                if name == "anonymous":
                    expected = 401
                elif name == "charlie":
                    expected = 404
                elif name == "read-only alice":
                    expected = 403
                else:
                    expected = ok if allowed[name] else 403
                assert response.status_code == expected, f"{method} {path} as {name}: {response.content[:300]!r}"
                body_json = response.json() if response.content else {}
                if expected >= 400:
                    assert set(body_json) >= {"detail", "code"}, f"{method} {path} as {name}: {body_json}"

    def check_read(self, path: str, members: tuple[str, ...] = ("vera", "bob", "alice")) -> None:
        for name, client in self.personas():
            response = client.get(path)
            expected = 401 if name == "anonymous" else 200 if name in members or name == "read-only alice" else 404
            assert response.status_code == expected, f"GET {path} as {name}: {response.content[:300]!r}"

    #
    # Reads
    #

    def test_red_objects_are_readable_by_its_members_and_404_to_outsiders(self) -> None:
        for path in [
            f"/api/v1/containers/{self.web.id}/",
            f"/api/v1/images/{self.red_image.id}/",
            f"/api/v1/builds/{self.build.id}/",
            f"/api/v1/jobs/{self.job.id}/",
            "/api/v1/teams/red/",
            "/api/v1/teams/red/members/",
        ]:
            self.check_read(path)

    def test_the_audit_log_is_read_by_admins_only(self) -> None:
        self.check_read(f"/api/v1/audit/{self.event.pk}/", members=("alice",))

    def test_a_shared_image_is_readable_by_every_member(self) -> None:
        for name, client in self.personas()[1:]:
            assert client.get(f"/api/v1/images/{self.busybox.id}/").status_code == 200, name

    def test_lists_and_counts_show_only_the_callers_teams(self) -> None:
        outsider = self.client_for(self.charlie)
        seen = {
            "containers": {row["name"] for row in outsider.get("/api/v1/containers/").json()["results"]},
            "images": {tag["familiar"] for row in outsider.get("/api/v1/images/").json()["results"]
                       for tag in row["tags"]},
            "builds": {row["id"] for row in outsider.get("/api/v1/builds/").json()["results"]},
            "jobs": {row["id"] for row in outsider.get("/api/v1/jobs/").json()["results"]},
            "teams": {row["name"] for row in outsider.get("/api/v1/teams/").json()["results"]},
        }  # fmt: skip
        assert seen == {
            "containers": {"blue-web"},
            "images": {"busybox:latest", "blue-app:1"},
            "builds": {str(self.blue_build.id)},
            "jobs": {str(self.blue_job.id)},
            "teams": {"blue"},
        }
        assert outsider.get("/api/v1/images/").json()["count"] == 2
        assert outsider.get("/api/v1/audit/").json()["count"] == 0, "charlie administers no team"
        admin = self.client_for(self.alice)
        assert [row["id"] for row in admin.get("/api/v1/audit/").json()["results"]] == [self.event.pk]

    def test_search_finds_nothing_of_another_team(self) -> None:
        client = self.client_for(self.charlie)
        for path, term in [
            ("/api/v1/containers/", "red-web"),
            ("/api/v1/images/", "red-app"),
            ("/api/v1/builds/", "red-app"),
            ("/api/v1/jobs/", "alpine"),
            ("/api/v1/teams/", "red"),
        ]:
            results = client.get(path, {"search": term}).json()["results"]
            assert all(row.get("team") in (None, "blue") and row.get("name") != "red" for row in results), path
        assert client.get("/api/v1/jobs/", {"search": "alpine"}).json()["count"] == 1

    #
    # Changes
    #

    def test_running_a_container_needs_an_operator(self) -> None:
        self.check_change("post", "/api/v1/containers/", {"team": "red", "image": "busybox"}, Role.OPERATOR, 202)

    def test_container_verbs_need_an_operator(self) -> None:
        for verb in ("start", "stop", "restart", "kill", "pause", "unpause", "commit"):
            self.check_change("post", f"/api/v1/containers/{self.web.id}/{verb}/", {}, Role.OPERATOR, 202)

    def test_removing_a_container_needs_an_admin(self) -> None:
        self.check_change("delete", f"/api/v1/containers/{self.web.id}/", None, Role.ADMIN, 202)

    def test_removing_an_image_or_a_tag_needs_an_admin(self) -> None:
        self.check_change("delete", f"/api/v1/images/{self.red_image.id}/", None, Role.ADMIN, 202)
        path = f"/api/v1/images/{self.red_image.id}/untag/"
        self.check_change("post", path, {"tag": "red-app:1"}, Role.ADMIN, 202)

    def test_building_and_cancelling_need_an_operator(self) -> None:
        self.check_change("post_tar", "/api/v1/builds/", None, Role.OPERATOR, 202)
        self.check_change("post", f"/api/v1/builds/{self.build.id}/cancel/", None, Role.OPERATOR, 200)

    def test_team_settings_and_members_need_an_admin(self) -> None:
        accounts.create_user("newbie")
        self.check_change("patch", "/api/v1/teams/red/", {"description": "reds"}, Role.ADMIN, 200)
        self.check_change("post", "/api/v1/teams/red/members/", {"username": "newbie"}, Role.ADMIN, 201)
        self.check_change("patch", "/api/v1/teams/red/members/newbie/", {"role": "operator"}, Role.ADMIN, 200)
        self.check_change("delete", "/api/v1/teams/red/members/newbie/", None, Role.ADMIN, 204)

    def test_any_member_mints_tokens_for_their_team(self) -> None:
        self.check_change("post", "/api/v1/tokens/", {"team": "red", "name": "ci"}, Role.VIEWER, 201)

    def test_creating_a_team_is_for_site_admins(self) -> None:
        assert self.client_for(self.alice).post("/api/v1/teams/", {"name": "green"}).status_code == 403
        assert self.client_for().post("/api/v1/teams/", {"name": "green"}).status_code == 401
        response = self.client_for(self.root).post("/api/v1/teams/", {"name": "green"}, format="json")
        assert response.status_code == 201 and response.json()["name"] == "green"
        assert self.last_event("team.create").outcome == "success"
        taken = self.client_for(self.alice).post("/api/v1/teams/", {"name": "blue"}, format="json")
        assert taken.status_code == 403, "a taken name must not be told to someone who may not create teams"
        assert self.client_for(self.root).post("/api/v1/teams/", {"name": "blue"}).json()["code"] == "already_exists"
