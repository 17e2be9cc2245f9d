"""The overview: containers by state, recent jobs, and the disk each team's images take."""

from __future__ import annotations

import re

from django.urls import reverse

from containers.choices import ContainerStatus
from tests.web.pages.base import PageTestCase

URL = reverse("containers:overview")


def stat(page: str, label: str) -> int:
    return int(re.search(rf'<div class="label">{label}</div><div class="value">(\d+)</div>', page).group(1))  # type: ignore[union-attr]


class OverviewTests(PageTestCase):
    def test_it_counts_running_paused_and_stopped(self) -> None:
        self.make_container("red-paused", self.red, status=ContainerStatus.PAUSED)
        page = self.html(self.bob, URL)
        assert (stat(page, "Running"), stat(page, "Paused"), stat(page, "Stopped")) == (1, 1, 1)

    def test_it_shows_recent_jobs_of_the_users_teams(self) -> None:
        page = self.html(self.bob, URL)
        assert "red-job" in page and "blue-job" not in page

    def test_it_shows_disk_use_per_team_counting_an_image_once(self) -> None:
        self.make_image("red-more:1", "red-more:2", team=self.red)
        page = self.html(self.root, URL)
        red = page[page.index('href="/teams/red/"') :].split("</tr>")[0]
        assert re.search(r'<td class="num">2</td>\s*<td class="num">2.05kB</td>', red), red
        assert "Shared base images" in page

    def test_a_viewer_is_not_offered_to_run(self) -> None:
        assert "Run container" not in self.html(self.vera, URL)
        assert "Run container" in self.html(self.bob, URL)
