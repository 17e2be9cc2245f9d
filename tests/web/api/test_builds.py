"""/api/v1/builds/: a context upload becomes a Build owned by a team, with its Job queued on the node."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from containers.choices import BuildStatus, JobKind
from containers.models import Build, Job
from tests.web.api.base import ApiTestCase
from tests.web.api.test_permission_matrix import context_tar

LIST = "/api/v1/builds/"


class BuildTests(ApiTestCase):
    def setUp(self) -> None:
        contexts = tempfile.TemporaryDirectory(prefix="contexts-")
        self.addCleanup(contexts.cleanup)
        self.contexts = Path(contexts.name)
        override = self.settings(BUILD_CONTEXT_DIR=self.contexts)
        override.enable()
        self.addCleanup(override.disable)

    def test_a_multipart_upload_queues_a_build_job_for_the_team(self) -> None:
        form = {
            "team": "red", "tags": ["red-app:1", "red-app:latest"], "target": "final", "no_cache": "true",
            "build_args.VERSION": "1.2", "context": io.BytesIO(context_tar()),
        }  # fmt: skip
        with self.queued() as sent:
            response = self.client_for(self.bob).post(LIST, form)
        assert response.status_code == 202, response.json()
        body = response.json()
        build = Build.objects.get(pk=body["id"])
        assert (body["status"], body["team"], body["tags"]) == ("pending", "red", ["red-app:1", "red-app:latest"])
        assert response["Location"] == body["url"] and body["job"].endswith(f"/api/v1/jobs/{build.job_id}/")
        assert (build.team, build.target, build.no_cache, build.build_args) == (self.red, "final", True,
                                                                                {"VERSION": "1.2"})  # fmt: skip
        assert (build.job.kind, build.job.team, build.job.user) == (JobKind.BUILD, self.red, self.bob)
        assert len(sent) == 1 and sent[0].name == "containers.build_image" and sent[0].queue == "node.test"
        assert sent[0].kwargs["job_id"] == str(build.job_id) and sent[0].task_id == str(build.job_id)
        assert Path(sent[0].args[1]).read_bytes() == context_tar(), "the context waits for the node in its file"
        assert self.last_event("build.create").target_id == str(build.id)

    def test_a_raw_tar_body_takes_its_parameters_from_the_query(self) -> None:
        with self.queued() as sent:
            response = self.token_client(self.bob, self.red).post(
                f"{LIST}?tags=red-app:2&dockerfile=Dockerfile", context_tar(), content_type="application/x-tar"
            )
        assert response.status_code == 202, response.json()
        assert response.json()["tags"] == ["red-app:2"] and response.json()["team"] == "red"
        assert Path(sent[0].args[1]).read_bytes() == context_tar()

    def test_it_refuses_a_build_without_context_or_with_another_teams_tag(self) -> None:
        self.make_image("blue-app:1", team=self.blue)
        client = self.client_for(self.bob)
        missing = client.post(LIST, {"team": "red"})
        taken = client.post(LIST, {"team": "red", "tags": ["blue-app:1"], "context": io.BytesIO(context_tar())})
        assert missing.status_code == 400 and missing.json()["code"] == "invalid_argument"
        assert taken.status_code == 409 and taken.json()["detail"] == "tag blue-app:1: in use by another team"
        assert not Build.objects.exists() and not Job.objects.exists()
        assert list(self.contexts.iterdir()) == []

    def test_an_operator_cancels_a_running_build_but_not_a_finished_one(self) -> None:
        running = Build.objects.create(node="test", team=self.red, status=BuildStatus.RUNNING)
        done = Build.objects.create(node="test", team=self.red, status=BuildStatus.SUCCEEDED)
        client = self.client_for(self.bob)
        response = client.post(f"{LIST}{running.id}/cancel/")
        assert response.status_code == 200 and response.json()["cancel_requested"] is True
        running.refresh_from_db()
        assert running.cancel_requested
        refused = client.post(f"{LIST}{done.id}/cancel/")
        assert refused.status_code == 409 and refused.json()["code"] == "failed_precondition"

    def test_the_detail_has_the_log_and_the_list_does_not(self) -> None:
        build = Build.objects.create(node="test", team=self.red, log="Step 1/2 : FROM busybox\n")
        client = self.client_for(self.vera)
        assert client.get(f"{LIST}{build.id}/").json()["log"] == "Step 1/2 : FROM busybox\n"
        assert "log" not in client.get(LIST).json()["results"][0]
