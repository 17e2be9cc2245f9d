"""The run form: the images a team may use, every docker run option it has, and errors next to their fields."""

from __future__ import annotations

import re

from django.urls import reverse

from containers.choices import AuditOutcome, JobKind
from containers.forms import RunContainerForm
from containers.models import AuditEvent, ImageTag, Job, Team
from tests.web.pages.base import PageTestCase

URL = reverse("containers:container_run")


def field_errors(html: str, field: str) -> str:
    """Return the error list shown under one field."""
    match = re.search(rf'name="{field}".*?<ul class="errors">(.*?)</ul>', html, re.DOTALL)
    return re.sub(r"<[^>]+>", " ", match.group(1)).strip() if match else ""


class RunFormTests(PageTestCase):
    def post(self, user: object = None, **fields: object) -> object:
        data = {"team": "red", "image": "busybox:latest", "restart": "no", **fields}
        return self.client_for(user or self.bob).post(URL, data)

    def test_it_offers_the_teams_images_and_the_shared_ones(self) -> None:
        page = self.html(self.bob, URL)
        assert '<optgroup label="red">' in page and 'value="red-app:1"' in page
        assert '<optgroup label="Shared">' in page and 'value="busybox:latest"' in page
        assert "blue-app" not in page

    def test_it_preselects_the_image_from_the_link(self) -> None:
        page = self.html(self.bob, URL + "?image=red-app:1")
        assert '<option value="red-app:1" selected>' in page

    def test_it_runs_through_a_job_and_shows_it(self) -> None:
        response = self.post(name="red-new", command="sleep 60", env="A=1", memory="64m", cpus="0.5", pids_limit="50")
        job = Job.objects.get(kind=JobKind.RUN)
        assert response.status_code == 302 and response["Location"] == reverse("containers:job", args=[job.id])
        assert (job.target, job.team, job.user) == ("red-new", self.red, self.bob)
        assert AuditEvent.objects.get(action="container.run").outcome == AuditOutcome.SUCCESS

    def test_it_puts_each_error_next_to_its_field(self) -> None:
        response = self.post(
            name="-bad", command="sh -c 'unclosed", env="NOEQUALS", binds="data:/data", memory="lots", cpus="999",
            pids_limit="0", restart="always", max_retries="3", auto_remove="on",
        )  # fmt: skip
        assert response.status_code == 200
        page = response.content.decode()
        assert "starting with a letter or digit" in field_errors(page, "name")
        assert "Cannot split the command" in field_errors(page, "command")
        assert "line 1: &#x27;NOEQUALS&#x27; is not KEY=value" in field_errors(page, "env")
        assert "both paths must be absolute" in field_errors(page, "binds")
        assert "is not a size" in field_errors(page, "memory")
        assert "This node has" in field_errors(page, "cpus")
        assert "greater than or equal to 1" in field_errors(page, "pids_limit")
        assert "on failure policy only" in field_errors(page, "max_retries")
        assert "cannot also restart" in field_errors(page, "auto_remove")
        assert not Job.objects.filter(kind=JobKind.RUN).exists()

    def test_it_refuses_a_memory_limit_too_small_to_start(self) -> None:
        page = self.post(memory="1m").content.decode()
        assert "The smallest memory limit is 6m." in field_errors(page, "memory")

    def test_it_shows_the_use_cases_refusal_next_to_the_field(self) -> None:
        page = self.post(image="nothing:here").content.decode()
        assert "Select a valid choice" in field_errors(page, "image")
        self.make_container("taken", self.blue)
        page = self.post(name="taken").content.decode()
        assert "container name taken: already in use" in field_errors(page, "name")
        assert AuditEvent.objects.get(action="container.run").outcome == AuditOutcome.FAILED

    def test_an_image_of_one_team_cannot_run_in_another(self) -> None:
        ImageTag.objects.filter(familiar="red-app:1").update(team=self.red)
        admin_of_both = self.root
        response = self.client_for(admin_of_both).post(URL, {"team": "blue", "image": "red-app:1", "restart": "no"})
        assert "image red-app:1: no such image in team blue" in field_errors(response.content.decode(), "image")

    def test_a_viewer_may_not_run_anything(self) -> None:
        assert self.client_for(self.vera).get(URL).status_code == 403
        assert self.post(self.vera).status_code == 403
        assert not Job.objects.filter(kind=JobKind.RUN).exists()

    def test_an_operator_cannot_run_in_a_team_of_others(self) -> None:
        response = self.post(self.charlie)
        assert "Select a valid choice" in field_errors(response.content.decode(), "team")


class RunFormConfigTests(PageTestCase):
    def form(self, **fields: object) -> RunContainerForm:
        data = {"team": "red", "image": "busybox:latest", "restart": "no", **fields}
        tags = ImageTag.objects.select_related("team")
        form = RunContainerForm(data, teams=Team.objects.filter(name="red"), image_tags=tags)
        assert form.is_valid(), form.errors
        return form

    def test_it_makes_the_config_docker_run_would_send(self) -> None:
        config, host = self.form(
            command="sh -c 'echo hi; sleep 60'", env="# comment\nA=1\nB=x=y\n\nEMPTY=", binds="/srv:/data:ro",
            memory="1.5g", cpus="0.5", pids_limit="64", restart="on-failure", max_retries="3", interactive="on",
        ).docker_config()  # fmt: skip
        assert config == {
            "Image": "busybox:latest", "Cmd": ["sh", "-c", "echo hi; sleep 60"], "Env": ["A=1", "B=x=y", "EMPTY="],
            "Tty": True, "OpenStdin": True, "AttachStdin": False,
        }  # fmt: skip
        assert host == {
            "Binds": ["/srv:/data:ro"], "Memory": 1536 << 20, "NanoCpus": 500_000_000, "PidsLimit": 64,
            "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
        }  # fmt: skip

    def test_an_empty_form_keeps_the_images_defaults(self) -> None:
        assert self.form().docker_config() == ({"Image": "busybox:latest"}, {})
        assert self.form(auto_remove="on").docker_config()[1] == {"AutoRemove": True}

    def test_it_reads_sizes_as_docker_does(self) -> None:
        for text, size in (("256m", 256 << 20), ("1G", 1 << 30), ("512MiB", 512 << 20), ("10000000", 10_000_000)):
            assert self.form(memory=text).docker_config()[1]["Memory"] == size, text
        assert self.form(cpus="2").docker_config()[1]["NanoCpus"] == 2_000_000_000
