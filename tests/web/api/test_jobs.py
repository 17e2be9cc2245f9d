"""/api/v1/jobs/: what your teams' long operations are doing, and how they ended."""

from __future__ import annotations

from containers.choices import JobKind
from containers.models import Job
from tests.web.api.base import ApiTestCase

LIST = "/api/v1/jobs/"


class JobTests(ApiTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        cls.pull = Job.objects.create(kind=JobKind.PULL, node="test", team=cls.red, user=cls.bob, target="alpine:3")
        cls.run_job = Job.objects.create(kind=JobKind.RUN, node="test", team=cls.red, user=cls.bob, target="web")
        cls.blue_run = Job.objects.create(kind=JobKind.RUN, node="test", team=cls.blue, target="blue-web")
        cls.pull.start()
        cls.pull.append_log("pulling layer 1\n")
        cls.pull.finish({"image": "sha256:ab12"})
        cls.run_job.fail("image busybox: not found")

    def test_it_lists_the_teams_jobs_with_their_outcome(self) -> None:
        response = self.client_for(self.vera).get(LIST, {"ordering": "created"})
        rows = response.json()["results"]
        assert response.json()["count"] == 2
        assert [(r["kind"], r["status"], r["user"], r["team"]) for r in rows] == [
            ("pull", "completed", "bob", "red"), ("run", "failed", "bob", "red")
        ]  # fmt: skip
        assert rows[0]["result"] == {"image": "sha256:ab12"} and rows[0]["progress"] == 100
        assert rows[1]["error"] == "image busybox: not found" and "log" not in rows[0]

    def test_it_filters_by_status_and_kind(self) -> None:
        client = self.client_for(self.bob)
        assert [r["target"] for r in client.get(LIST, {"status": "failed"}).json()["results"]] == ["web"]
        assert [r["target"] for r in client.get(LIST, {"kind": "pull"}).json()["results"]] == ["alpine:3"]

    def test_the_detail_has_the_log_and_outsiders_get_404(self) -> None:
        assert self.client_for(self.bob).get(f"{LIST}{self.pull.id}/").json()["log"] == "pulling layer 1\n"
        assert self.client_for(self.charlie).get(f"{LIST}{self.pull.id}/").status_code == 404
        assert self.client_for(self.charlie).get(f"{LIST}{self.blue_run.id}/").status_code == 200
