"""The job pages: a job refreshes itself while it runs, then links to the container or build it made."""

from __future__ import annotations

from django.urls import reverse

from containers.choices import JobKind
from containers.models import Build, Job
from tests.web.pages.base import PageTestCase, table_rows


class JobPageTests(PageTestCase):
    def test_a_pending_job_refreshes_itself(self) -> None:
        page = self.html(self.bob, reverse("containers:job", args=[self.red_job.id]))
        assert 'id="job" data-refresh="1000"' in page and "Waiting for node test" in page

    def test_a_finished_run_links_to_its_container(self) -> None:
        job = Job.objects.create(kind=JobKind.RUN, node="test", team=self.red, user=self.bob, target="red-web")
        job.start()
        job.finish({"container": self.red_web.id, "name": "red-web"})
        page = self.html(self.bob, reverse("containers:job", args=[job.id]))
        assert "data-refresh" not in page
        assert f'href="{reverse("containers:container", args=[self.red_web.id])}">Open red-web</a>' in page

    def test_a_failed_job_says_why(self) -> None:
        self.red_job.fail("image nothing: not found")
        page = self.html(self.vera, reverse("containers:job", args=[self.red_job.id]))
        assert "Why it failed" in page and "image nothing: not found" in page

    def test_a_build_job_links_to_its_build(self) -> None:
        job = Job.objects.create(kind=JobKind.BUILD, node="test", team=self.red, target="red-app:2")
        Build.objects.filter(pk=self.red_build.pk).update(job=job)
        page = self.html(self.bob, reverse("containers:job", args=[job.id]))
        assert reverse("containers:build", args=[self.red_build.id]) in page

    def test_the_list_filters_by_status_and_kind(self) -> None:
        rows = table_rows(self.html(self.bob, reverse("containers:jobs") + "?kind=pull&status=pending"))
        assert "red-job" in rows
        assert "red-job" not in table_rows(self.html(self.bob, reverse("containers:jobs") + "?kind=build"))
