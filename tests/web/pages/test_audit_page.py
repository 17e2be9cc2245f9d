"""The audit page: filters by team, user, action, outcome, source and day, 50 a page, a CSV link of the same rows."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from django.urls import reverse
from django.utils import timezone

from containers.choices import AuditOutcome, AuditSource
from containers.models import AuditEvent
from tests.web.pages.base import PageTestCase, table_rows

URL = reverse("containers:audit")


class AuditPageTests(PageTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        old = timezone.now() - timedelta(days=10)
        AuditEvent.objects.create(username="vera", team=cls.red, action="container.stop", target_name="red-old",
                                  source=AuditSource.API, outcome=AuditOutcome.DENIED, time=old)  # fmt: skip

    def test_it_filters_by_action_prefix_outcome_source_and_user(self) -> None:
        rows = table_rows(self.html(self.alice, URL + "?action=container.&outcome=denied"))
        assert "red-old" in rows and "red-web" not in rows
        rows = table_rows(self.html(self.alice, URL + "?action=container"))
        assert "red-old" not in rows, "an action without a trailing dot matches exactly"
        rows = table_rows(self.html(self.alice, URL + "?source=web&user=bob"))
        assert "red-web" in rows and "red-old" not in rows

    def test_it_filters_by_day(self) -> None:
        today = timezone.now().date()
        rows = table_rows(self.html(self.alice, URL + f"?since={today}"))
        assert "red-web" in rows and "red-old" not in rows
        rows = table_rows(self.html(self.alice, URL + f"?until={today - timedelta(days=1)}"))
        assert "red-old" in rows and "red-web" not in rows

    def test_the_export_link_carries_the_filters_in_the_apis_terms(self) -> None:
        today = timezone.now().date()
        page = self.html(self.alice, URL + f"?team=red&action=container.&until={today}&page=1")
        href = page.split('class="btn" href="')[1].split('"')[0].replace("&amp;", "&")
        url = urlsplit(href)
        assert url.path == "/api/v1/audit/export.csv"
        query = parse_qs(url.query)
        assert query["team"] == ["red"] and query["action"] == ["container."]
        assert query["until"] == [f"{today + timedelta(days=1)}T00:00:00+00:00"], "the last day is included"
        assert "page" not in query
        export = self.client_for(self.alice).get(href)
        assert export.status_code == 200 and export["Content-Type"] == "text/csv"
        body = b"".join(export.streaming_content).decode()  # type: ignore[attr-defined]
        assert "red-web" in body and "red-old" in body and "blue-api" not in body

    def test_it_pages_at_50(self) -> None:
        AuditEvent.objects.bulk_create(
            AuditEvent(username="bob", team=self.red, action="container.start", target_name=f"red-{n}",
                       source=AuditSource.WEB) for n in range(60)
        )  # fmt: skip
        page = self.html(self.alice, URL)
        assert table_rows(page).count("<tr>") == 50 and "1–50 of 62" in page

    def test_it_tells_a_non_admin_why_it_is_empty(self) -> None:
        page = self.html(self.bob, URL)
        assert "you are admin of none" in page and "Export CSV" not in page
