"""/api/v1/audit/: the admins' view of who did what, with filters, and the same rows as CSV."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from django.utils import timezone

from containers.models import AuditEvent
from tests.web.api.base import ApiTestCase


class AuditTests(ApiTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        now = timezone.now()
        rows = [
            (now - timedelta(days=2), cls.bob, cls.red, "container.start", "red-web", "success"),
            (now - timedelta(hours=1), cls.charlie, cls.red, "container.stop", "red-web", "denied"),
            (now, cls.alice, cls.red, "member.add", "dave", "success"),
            (now, cls.charlie, cls.blue, "container.start", "blue-web", "success"),
        ]
        for time, user, team, action, target, outcome in rows:
            AuditEvent.objects.create(time=time, user=user, username=user.username, team=team, action=action,
                                      target_type=action.split(".")[0], target_name=target, source="api",
                                      outcome=outcome, address="127.0.0.1", detail={"why": "test"})  # fmt: skip

    def names(self, **params: str) -> list[str]:
        rows = self.client_for(self.alice).get("/api/v1/audit/", params).json()["results"]
        return [f"{row['user']} {row['action']} {row['target_name']}" for row in rows]

    def test_an_admin_reads_the_teams_log_newest_first(self) -> None:
        assert self.names() == [
            "alice member.add dave",
            "charlie container.stop red-web",
            "bob container.start red-web",
        ]

    def test_it_filters_by_user_action_target_outcome_and_time(self) -> None:
        assert self.names(user="charlie") == ["charlie container.stop red-web"]
        assert self.names(action="container.") == ["charlie container.stop red-web", "bob container.start red-web"]
        assert self.names(action="container.start") == ["bob container.start red-web"]
        assert self.names(target="dave") == ["alice member.add dave"]
        assert self.names(outcome="denied") == ["charlie container.stop red-web"]
        since = (timezone.now() - timedelta(days=1)).isoformat()
        assert self.names(since=since, until=(timezone.now() - timedelta(minutes=5)).isoformat()) == [
            "charlie container.stop red-web"
        ]
        assert self.names(team="blue") == [], "another team's rows are not reachable by filtering"

    def test_the_csv_export_has_the_filtered_rows(self) -> None:
        response = self.client_for(self.alice).get("/api/v1/audit/export.csv", {"action": "container."})
        assert response.status_code == 200 and response["Content-Type"] == "text/csv"
        assert response["Content-Disposition"] == 'attachment; filename="audit.csv"'
        rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
        assert [(r["user"], r["action"], r["outcome"], r["team"]) for r in rows] == [
            ("charlie", "container.stop", "denied", "red"), ("bob", "container.start", "success", "red")
        ]  # fmt: skip
        assert rows[0]["address"] == "127.0.0.1" and rows[0]["detail"] == '{"why": "test"}'

    def test_members_who_are_not_admins_see_nothing_and_site_admins_see_everything(self) -> None:
        assert self.client_for(self.bob).get("/api/v1/audit/").json()["count"] == 0
        export = self.client_for(self.bob).get("/api/v1/audit/export.csv")
        assert b"".join(export.streaming_content).decode().strip().count("\n") == 0, "only the header"
        assert self.client_for(self.root).get("/api/v1/audit/").json()["count"] == 4
        assert self.client_for().get("/api/v1/audit/export.csv").status_code == 401
