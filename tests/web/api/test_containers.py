"""/api/v1/containers/: lists scoped to your teams, runs and verbs as jobs on the container's node."""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response
from rest_framework.test import APIClient

from containers.choices import AuditOutcome, JobKind, JobStatus
from containers.models import Container, Job
from tests.web.api.base import ApiTestCase

LIST = "/api/v1/containers/"


class ContainerListTests(ApiTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        cls.web = cls.make_container("red-web", cls.red, status="running")
        cls.db = cls.make_container("red-db", cls.red, status="exited")
        cls.blue_web = cls.make_container("blue-web", cls.blue, status="running")

    def test_it_lists_only_the_teams_own_containers_and_counts_them(self) -> None:
        response = self.client_for(self.vera).get(LIST)
        assert response.status_code == 200
        assert response.json()["count"] == 2, "blue's container must not be counted for a member of red"
        assert {row["name"] for row in response.json()["results"]} == {"red-web", "red-db"}
        row = next(row for row in response.json()["results"] if row["name"] == "red-web")
        assert row["team"] == "red" and row["status"] == "running" and row["id"] == self.web.id
        assert row["url"].endswith(f"/api/v1/containers/{self.web.id}/")

    def test_it_shows_a_site_admin_every_team(self) -> None:
        response = self.client_for(self.root).get(LIST)
        assert response.json()["count"] == 3

    def test_search_and_filters_cannot_reach_another_team(self) -> None:
        client = self.client_for(self.bob)
        assert client.get(LIST, {"search": "blue-web"}).json()["count"] == 0
        assert client.get(LIST, {"team": "blue"}).json()["count"] == 0
        assert client.get(LIST, {"name": "web"}).json()["count"] == 1
        assert client.get(LIST, {"status": "exited"}).json()["results"][0]["name"] == "red-db"

    def test_it_orders_and_pages(self) -> None:
        client = self.client_for(self.alice)
        page = client.get(LIST, {"ordering": "name", "limit": 1}).json()
        assert page["count"] == 2 and [row["name"] for row in page["results"]] == ["red-db"]
        assert "offset=1" in page["next"]

    def test_a_token_sees_only_its_team_even_for_a_site_admin(self) -> None:
        response = self.token_client(self.root, self.blue).get(LIST)
        assert {row["name"] for row in response.json()["results"]} == {"blue-web"}

    def test_it_answers_an_outsider_404_for_a_detail_as_for_nothing(self) -> None:
        client = self.client_for(self.charlie)
        outsider = client.get(f"{LIST}{self.web.id}/")
        missing = client.get(f"{LIST}{'f' * 64}/")
        assert outsider.status_code == missing.status_code == 404
        assert outsider.json() == missing.json() == {"detail": "Not found.", "code": "not_found"}

    def test_it_lists_a_page_of_fifty_in_a_fixed_number_of_queries(self) -> None:
        for n in range(60):
            self.make_container(f"red-{n}", self.red)
        client = self.token_client(self.bob, self.red)
        client.get(LIST)  # the token's first use records when it was used
        # token lookup, count, page (with teams joined): no query per row
        with self.assertNumQueries(3):
            response = client.get(LIST)
        assert len(response.json()["results"]) == 50


class ContainerRunTests(ApiTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        cls.busybox = cls.make_image("busybox:latest", shared=True)
        cls.private = cls.make_image("blue-app:1", team=cls.blue)

    def run_request(self, client: APIClient, **body: Any) -> Response:
        return client.post(LIST, {"team": "red", "image": "busybox", "cmd": ["sleep", "60"], **body}, format="json")

    def test_an_operator_runs_a_container_as_a_job_on_this_node(self) -> None:
        with self.queued() as sent:
            response = self.run_request(self.client_for(self.bob), name="web", env=["A=1"])
        assert response.status_code == 202, response.json()
        job = Job.objects.get()
        body = response.json()
        assert (body["id"], body["kind"], body["status"], body["team"]) == (str(job.id), "run", "pending", "red")
        assert response["Location"] == body["url"] and body["url"].endswith(f"/api/v1/jobs/{job.id}/")
        assert (job.user, job.team, job.node, job.target, job.celery_id) == (
            self.bob,
            self.red,
            "test",
            "web",
            str(job.id),
        )
        assert len(sent) == 1
        task = sent[0]
        assert (task.name, task.queue, task.task_id) == ("containers.run_container_job", "node.test", str(job.id))
        assert task.kwargs["config"] == {"Image": "busybox", "Cmd": ["sleep", "60"], "Env": ["A=1"]}
        assert task.kwargs["name"] == "web" and task.kwargs["job_id"] == str(job.id)
        event = self.last_event("container.run")
        assert (event.user, event.team, event.outcome, event.source) == (self.bob, self.red, "success", "api")
        assert event.detail["job"] == str(job.id) and event.pk == task.kwargs["audit_id"]

    def test_a_viewer_cannot_run_one_and_the_refusal_is_recorded(self) -> None:
        with self.queued() as sent:
            response = self.run_request(self.client_for(self.vera))
        assert response.status_code == 403
        assert response.json()["code"] == "role_required" and response.json()["required_role"] == "operator"
        assert not Job.objects.exists() and not sent
        event = self.last_event("container.run")
        assert (event.user, event.team, event.outcome) == (self.vera, self.red, AuditOutcome.DENIED)

    def test_an_outsider_gets_404_for_another_teams_team(self) -> None:
        with self.queued() as sent:
            response = self.run_request(self.client_for(self.charlie))
        assert response.status_code == 404 and response.json()["code"] == "not_found"
        assert not sent and not Job.objects.exists()
        assert self.last_event("container.run").outcome == AuditOutcome.DENIED
        assert self.run_request(self.client_for(self.charlie), team="nosuchteam").json() == response.json()

    def test_it_refuses_an_image_the_team_cannot_see_before_queueing(self) -> None:
        with self.queued() as sent:
            response = self.run_request(self.client_for(self.bob), image="blue-app:1")
        assert response.status_code == 400
        assert response.json() == {"detail": "image blue-app:1: no such image in team red", "code": "invalid_argument"}
        assert not sent and not Job.objects.exists()
        assert self.last_event("container.run").outcome == AuditOutcome.FAILED

    def test_it_pins_an_image_id_prefix_to_the_image_it_checked(self) -> None:
        short = self.busybox.id.removeprefix("sha256:")[:12]
        with self.queued() as sent:
            response = self.run_request(self.client_for(self.bob), image=short)
        assert response.status_code == 202
        assert sent[0].kwargs["config"]["Image"] == self.busybox.id

    def test_it_refuses_a_taken_or_malformed_name(self) -> None:
        self.make_container("taken", self.blue)
        client = self.client_for(self.bob)
        assert self.run_request(client, name="taken").status_code == 409
        assert self.run_request(client, name="-bad").json()["code"] == "invalid_argument"

    def test_it_needs_a_team_when_the_user_is_in_several(self) -> None:
        response = self.client_for(self.root).post(LIST, {"image": "busybox"}, format="json")
        assert response.status_code == 400 and response.json()["detail"].startswith("team: required")

    def test_a_token_runs_in_its_own_team_by_default(self) -> None:
        with self.queued():
            response = self.token_client(self.bob, self.red).post(LIST, {"image": "busybox"}, format="json")
        assert response.status_code == 202 and response.json()["team"] == "red"

    def test_it_reports_a_missing_image_as_a_field_error(self) -> None:
        response = self.client_for(self.bob).post(LIST, {"team": "red"}, format="json")
        assert response.status_code == 400
        assert response.json()["code"] == "invalid" and response.json()["errors"] == {"image": ["required"]}


class ContainerActionTests(ApiTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        cls.web = cls.make_container("red-web", cls.red, status="running")
        cls.url = f"{LIST}{cls.web.id}/"

    def test_an_operator_stops_a_container_with_options(self) -> None:
        with self.queued() as sent:
            response = self.client_for(self.bob).post(self.url + "stop/", {"timeout": 3}, format="json")
        assert response.status_code == 202
        job = Job.objects.get(pk=response.json()["id"])
        assert (job.kind, job.status, job.target, job.team) == (JobKind.STOP, JobStatus.PENDING, "red-web", self.red)
        assert (sent[0].name, sent[0].queue) == ("containers.container_action_job", "node.test")
        assert sent[0].kwargs | {"audit_id": None} == {
            "job_id": str(job.id), "audit_id": None, "container_id": self.web.id, "action": "stop",
            "options": {"timeout": 3},
        }  # fmt: skip
        event = self.last_event("container.stop")
        assert (event.target_type, event.target_id, event.target_name) == ("container", self.web.id, "red-web")

    def test_every_verb_queues_its_job(self) -> None:
        client = self.client_for(self.bob)
        for verb in ("start", "restart", "kill", "pause", "unpause"):
            with self.queued() as sent:
                response = client.post(f"{self.url}{verb}/")
            assert response.status_code == 202, verb
            assert response.json()["kind"] == verb and sent[0].kwargs["action"] == verb
        assert sent[0].kwargs["options"] == {}

    def test_a_viewer_cannot_stop_it(self) -> None:
        with self.queued() as sent:
            response = self.client_for(self.vera).post(self.url + "stop/")
        assert response.status_code == 403 and not sent
        assert self.last_event("container.stop").outcome == AuditOutcome.DENIED

    def test_an_outsiders_attempt_is_404_and_recorded_for_the_owning_team(self) -> None:
        with self.queued() as sent:
            response = self.client_for(self.charlie).post(self.url + "stop/")
        assert response.status_code == 404 and response.json() == {"detail": "Not found.", "code": "not_found"}
        assert not sent and not Job.objects.exists()
        event = self.last_event("container.stop")
        assert (event.user, event.team, event.outcome) == (self.charlie, self.red, AuditOutcome.DENIED)

    def test_removing_is_an_admins(self) -> None:
        with self.queued() as sent:
            refused = self.client_for(self.bob).delete(self.url)
            accepted = self.client_for(self.alice).delete(self.url + "?force=1")
        assert refused.status_code == 403 and refused.json()["required_role"] == "admin"
        assert accepted.status_code == 202 and accepted.json()["kind"] == "remove"
        assert [task.kwargs["options"] for task in sent] == [{"force": True}]
        assert Container.objects.filter(pk=self.web.pk).exists(), "the row goes when the node has removed it"

    def test_commit_queues_an_image_for_the_containers_team(self) -> None:
        with self.queued() as sent:
            response = self.client_for(self.bob).post(self.url + "commit/", {"tag": "red-app:1"}, format="json")
        assert response.status_code == 202 and response.json()["kind"] == "commit"
        assert sent[0].name == "containers.commit_container_job" and sent[0].kwargs["repo_tag"] == "red-app:1"

    def test_commit_refuses_a_tag_of_another_team(self) -> None:
        self.make_image("blue-app:1", team=self.blue)
        response = self.client_for(self.bob).post(self.url + "commit/", {"tag": "blue-app:1"}, format="json")
        assert response.status_code == 409 and response.json()["code"] == "conflict"

    def test_a_read_only_token_cannot_stop_it(self) -> None:
        with self.queued() as sent:
            response = self.token_client(self.alice, self.red, read_only=True).post(self.url + "stop/")
        assert response.status_code == 403 and not sent
        assert self.last_event("api.write").outcome == AuditOutcome.DENIED
