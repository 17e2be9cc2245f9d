"""The container page: overview, config, inspect JSON, the live tabs, and the verbs by role."""

from __future__ import annotations

import json
import re

from django.conf import settings
from django.test import override_settings
from django.urls import reverse

from containers.choices import AuditOutcome, ContainerStatus, JobKind, JobStatus
from containers.models import AuditEvent, Job
from tests.web.pages.base import PageTestCase


def with_templates(extra: dict[str, str]) -> override_settings:
    """Serve `extra` templates besides the project's, as the live issue's partials will be."""
    base = settings.TEMPLATES[0]
    loaders = [("django.template.loaders.locmem.Loader", extra), "django.template.loaders.filesystem.Loader",
               "django.template.loaders.app_directories.Loader"]  # fmt: skip
    options = {**base["OPTIONS"], "loaders": loaders}
    return override_settings(TEMPLATES=[{**base, "APP_DIRS": False, "OPTIONS": options}])


class ContainerDetailTests(PageTestCase):
    def url(self, tab: str = "") -> str:
        return reverse("containers:container", args=[self.red_web.id]) + (f"?tab={tab}" if tab else "")

    def action(self, verb: str, container: object = None) -> str:
        return reverse("containers:container_action", args=[(container or self.red_web).id, verb])  # type: ignore[attr-defined]

    def test_it_shows_the_container_and_its_state(self) -> None:
        page = self.html(self.vera, self.url())
        assert "<h1>red-web</h1>" in page and self.red_web.id in page and "httpd -f" in page
        assert 'data-state="running"' in page

    def test_it_offers_an_operator_the_verbs_of_the_state_it_is_in(self) -> None:
        page = self.html(self.bob, self.url())
        for verb in ("stop", "restart", "pause", "kill"):
            assert f'action="{self.action(verb)}"' in page, verb
        assert f'action="{self.action("start")}"' not in page
        assert f'action="{self.action("remove")}"' not in page, "removing needs the admin role, and a stopped container"
        stopped = self.html(self.alice, reverse("containers:container", args=[self.red_db.id]))
        assert f'action="{self.action("start", self.red_db)}"' in stopped
        assert f'action="{self.action("remove", self.red_db)}"' in stopped

    def test_it_gives_a_viewer_no_action_buttons(self) -> None:
        page = self.html(self.vera, self.url())
        assert "/stop/" not in page and "/start/" not in page and '<button type="submit" class="primary">' not in page

    def test_the_inspect_tab_shows_docker_inspect_json(self) -> None:
        page = self.html(self.bob, self.url("inspect"))
        text = re.search(r'<pre class="code" id="inspect">(.*?)</pre>', page, re.DOTALL).group(1)  # type: ignore[union-attr]
        found = json.loads(text.replace("&quot;", '"').replace("&#x27;", "'").replace("&amp;", "&"))
        assert found["Id"] == self.red_web.id and found["Name"] == "/red-web"
        assert found["State"]["Status"] == "running" and found["State"]["Running"] is True
        assert found["Team"] == "red"

    def test_the_config_tab_shows_what_the_node_recorded_without_asking_it(self) -> None:
        self.red_web.config = {"Env": ["PATH=/bin", "MODE=prod"], "WorkingDir": "/srv", "User": "nobody"}
        self.red_web.host_config = {
            "Memory": 64 << 20, "Binds": ["/srv/data:/data:ro"], "RestartPolicy": {"Name": "always"},
        }  # fmt: skip
        self.red_web.save()
        page = self.html(self.bob, self.url("config"))
        for shown in ("MODE=prod", "/srv", "nobody", "64 MiB", "/srv/data:/data:ro", "always"):
            assert shown in page, shown

    def test_the_live_tabs_hold_the_live_panels(self) -> None:
        for tab in ("logs", "terminal", "stats"):
            page = self.html(self.bob, self.url(tab))
            assert f'data-panel="{tab}"' in page
            assert 'aria-current="page">' + tab.capitalize() in page

    def test_a_viewer_gets_no_terminal_tab(self) -> None:
        page = self.html(self.vera, self.url("terminal"))
        assert "?tab=terminal" not in page and 'data-panel="terminal"' not in page
        assert 'aria-current="page">Overview' in page

    def test_the_live_tabs_include_the_live_partials_once_they_exist(self) -> None:
        with with_templates({"containers/panels/logs.html": "<div id=live-logs>{{ container.name }}</div>"}):
            page = self.html(self.vera, self.url("logs"))
            assert "<div id=live-logs>red-web</div>" in page and "Live view loading" not in page
            assert reverse("containers:container_live_panel", args=[self.red_web.id, "logs"]) in page

    def test_an_operator_stops_it_through_a_job(self) -> None:
        response = self.client_for(self.bob).post(self.action("stop"), {"next": self.url()})
        assert response.status_code == 302 and response["Location"] == self.url()
        job = Job.objects.get(kind=JobKind.STOP)
        assert (job.target, job.status, job.user, job.team) == ("red-web", JobStatus.PENDING, self.bob, self.red)
        event = AuditEvent.objects.get(action="container.stop")
        assert (event.username, event.outcome, event.source) == ("bob", AuditOutcome.SUCCESS, "web")
        assert event.address == "127.0.0.1"

    def test_the_page_follows_a_pending_job_until_it_ends(self) -> None:
        self.client_for(self.bob).post(self.action("stop"))
        page = self.html(self.bob, self.url())
        assert 'id="container-state"' in page and 'data-refresh="1000"' in page and "stop pending" in page
        assert f'action="{self.action("stop")}"' not in page, "no second click while the first runs"
        job = Job.objects.get(kind=JobKind.STOP)
        job.start()
        job.finish({"container": self.red_web.id})
        self.red_web.status = ContainerStatus.EXITED
        self.red_web.save()
        page = self.html(self.bob, self.url())
        assert "data-refresh" not in page and 'data-state="exited"' in page

    def test_it_tells_the_job_in_a_message(self) -> None:
        response = self.client_for(self.bob).post(self.action("restart"), follow=True)
        job = Job.objects.get(kind=JobKind.RESTART)
        assert f'Restarting red-web. <a href="/jobs/{job.id}/">Job {str(job.id)[:8]}</a>' in response.content.decode()

    def test_a_viewer_gets_403_and_the_refusal_is_recorded(self) -> None:
        response = self.client_for(self.vera).post(self.action("stop"))
        assert response.status_code == 403
        assert not Job.objects.filter(kind=JobKind.STOP).exists()
        assert AuditEvent.objects.get(action="container.stop").outcome == AuditOutcome.DENIED

    def test_an_outsider_gets_404(self) -> None:
        assert self.client_for(self.charlie).post(self.action("stop")).status_code == 404
        assert not Job.objects.filter(kind=JobKind.STOP).exists()

    def test_removing_needs_an_admin_and_goes_back_to_the_list(self) -> None:
        assert self.client_for(self.bob).post(self.action("remove", self.red_db)).status_code == 403
        response = self.client_for(self.alice).post(self.action("remove", self.red_db))
        assert response.status_code == 302 and response["Location"] == reverse("containers:containers")
        assert Job.objects.filter(kind=JobKind.REMOVE, target="red-db").exists()

    def test_an_unknown_verb_is_an_error_message(self) -> None:
        response = self.client_for(self.bob).post(self.action("explode"), follow=True)
        assert "container action &#x27;explode&#x27;: expected one of" in response.content.decode()

    def test_get_on_a_verb_is_not_allowed(self) -> None:
        assert self.client_for(self.bob).get(self.action("stop")).status_code == 405
