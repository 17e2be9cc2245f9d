"""The containers page: state, image, command, created and team; filters, search, bulk actions, 50 rows a page."""

from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from containers.choices import AuditOutcome, ContainerStatus, JobKind, JobStatus
from containers.models import AuditEvent, Job
from tests.web.pages.base import PageTestCase, table_rows

URL = reverse("containers:containers")
BULK = reverse("containers:containers_bulk")


class ContainerListTests(PageTestCase):
    def test_it_lists_state_image_command_created_and_team(self) -> None:
        rows = table_rows(self.html(self.bob, URL))
        assert "red-web" in rows and "red-db" in rows
        assert '<span class="pill running" data-container-status>running</span>' in rows
        assert f'<tr data-container-id="{self.red_web.id}">' in rows, "live_list.js finds the row to update"
        assert "httpd -f" in rows and "busybox" in rows and ">red</td>" in rows
        assert "just now</td>" in rows

    def test_it_filters_by_state_and_team_and_searches(self) -> None:
        rows = table_rows(self.html(self.alice, URL + "?state=exited"))
        assert "red-db" in rows and "red-web" not in rows
        rows = table_rows(self.html(self.root, URL + "?team=blue"))
        assert "blue-api" in rows and "red-web" not in rows
        rows = table_rows(self.html(self.alice, URL + "?q=httpd"))
        assert "red-web" in rows and "red-db" not in rows, "search looks in the command too"
        rows = table_rows(self.html(self.alice, URL + f"?q={self.red_db.id}"))
        assert "red-db" in rows and "red-web" not in rows, "search finds an ID"

    def test_it_counts_states_for_the_filter(self) -> None:
        page = self.html(self.alice, URL)
        assert 'Running<span class="n">1</span>' in page and 'Exited<span class="n">1</span>' in page

    def test_it_gives_operators_checkboxes_and_bulk_buttons(self) -> None:
        page = self.html(self.bob, URL)
        assert 'id="bulk"' in page and f'name="ids" value="{self.red_web.id}"' in page
        assert '<button class="sm" type="submit">Stop</button>' in page
        assert 'value="remove"' not in page, "removing is for admins"
        assert 'value="remove"' in self.html(self.alice, URL)

    def test_it_gives_viewers_no_action_buttons(self) -> None:
        page = self.html(self.vera, URL)
        assert 'id="bulk"' not in page and 'name="ids"' not in page
        assert "<button" not in table_rows(page)
        assert "Run container" not in page

    def test_it_pages_at_50_rows(self) -> None:
        for n in range(60):
            self.make_container(f"red-many-{n:02d}", self.red)
        page = self.html(self.alice, URL)
        assert table_rows(page).count('name="ids"') == 50
        assert "1–50 of 62" in page
        assert table_rows(self.html(self.alice, URL + "?page=2")).count('name="ids"') == 12

    def test_its_queries_do_not_grow_with_the_rows(self) -> None:
        client = self.client_for(self.alice)
        client.get(URL)
        with CaptureQueriesContext(connection) as few:
            assert client.get(URL).status_code == 200
        for n in range(500):
            self.make_container(f"red-bulk-{n:03d}", self.red, status=ContainerStatus.RUNNING)
        with self.assertNumQueries(len(few.captured_queries)):
            assert client.get(URL).status_code == 200
        assert len(few.captured_queries) <= 8, [q["sql"] for q in few.captured_queries]


class BulkActionTests(PageTestCase):
    def test_it_queues_a_job_per_checked_container(self) -> None:
        response = self.client_for(self.bob).post(
            BULK, {"action": "stop", "ids": [self.red_web.id, self.red_db.id], "next": URL + "?state=running"}
        )
        assert response.status_code == 302 and response["Location"] == URL + "?state=running"
        jobs = Job.objects.filter(kind=JobKind.STOP, user=self.bob)
        assert sorted(jobs.values_list("target", flat=True)) == ["red-db", "red-web"]
        assert set(jobs.values_list("status", flat=True)) == {JobStatus.PENDING}
        events = AuditEvent.objects.filter(action="container.stop", username="bob")
        assert events.count() == 2 and set(events.values_list("outcome", flat=True)) == {AuditOutcome.SUCCESS}

    def test_it_ignores_containers_the_user_cannot_see(self) -> None:
        response = self.client_for(self.bob).post(BULK, {"action": "stop", "ids": [self.red_web.id, self.blue_api.id]})
        assert response.status_code == 302
        assert list(Job.objects.filter(kind=JobKind.STOP).values_list("target", flat=True)) == ["red-web"]

    def test_it_answers_404_when_none_are_visible(self) -> None:
        response = self.client_for(self.charlie).post(BULK, {"action": "stop", "ids": [self.red_web.id]})
        assert response.status_code == 404
        assert not Job.objects.filter(kind=JobKind.STOP).exists()

    def test_it_refuses_a_viewer_with_403_and_records_it(self) -> None:
        response = self.client_for(self.vera).post(BULK, {"action": "stop", "ids": [self.red_web.id]})
        assert response.status_code == 403
        assert not Job.objects.filter(kind=JobKind.STOP).exists()
        assert AuditEvent.objects.filter(action="container.stop", username="vera", outcome=AuditOutcome.DENIED).exists()

    def test_removing_needs_an_admin(self) -> None:
        response = self.client_for(self.bob).post(BULK, {"action": "remove", "ids": [self.red_db.id]})
        assert response.status_code == 403
        response = self.client_for(self.alice).post(BULK, {"action": "remove", "ids": [self.red_db.id]}, follow=True)
        assert response.status_code == 200 and "Removing red-db." in response.content.decode()
        assert Job.objects.filter(kind=JobKind.REMOVE, target="red-db").exists()

    def test_it_refuses_an_unknown_action(self) -> None:
        response = self.client_for(self.bob).post(BULK, {"action": "explode", "ids": [self.red_web.id]}, follow=True)
        page = response.content.decode()
        assert "bulk action &#x27;explode&#x27;: expected one of start, stop, restart, remove" in page
        assert not Job.objects.exclude(pk__in=[self.red_job.pk, self.blue_job.pk]).exists()

    def test_it_ignores_a_next_that_leaves_the_site(self) -> None:
        response = self.client_for(self.bob).post(
            BULK, {"action": "start", "ids": [self.red_db.id], "next": "https://evil.example/"}
        )
        assert response["Location"] == URL
