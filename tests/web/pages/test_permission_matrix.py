"""Every page against every persona: members see their team's rows, outsiders get 404, nothing leaks through lists."""

from __future__ import annotations

from django.urls import reverse

from tests.web.pages.base import PageTestCase, table_rows


class PermissionMatrixTests(PageTestCase):
    def red_detail_urls(self) -> list[str]:
        container = reverse("containers:container", args=[self.red_web.id])
        return [
            container,
            *[f"{container}?tab={tab}" for tab in ("config", "inspect", "logs", "terminal", "stats")],
            reverse("containers:image", args=[self.red_image.id.removeprefix("sha256:")]),
            reverse("containers:build", args=[self.red_build.id]),
            reverse("containers:job", args=[self.red_job.id]),
            reverse("containers:team", args=["red"]),
        ]

    def list_urls(self) -> list[str]:
        names = ("overview", "containers", "images", "builds", "jobs", "teams", "tokens", "audit")
        return [reverse(f"containers:{name}") for name in names] + [reverse("password_change")]

    def test_it_shows_every_list_page_to_every_member(self) -> None:
        for user in (self.alice, self.bob, self.vera, self.charlie, self.root):
            client = self.client_for(user)
            for url in self.list_urls():
                assert client.get(url).status_code == 200, f"{user} should see {url}"

    def test_it_shows_red_details_to_red_members_and_site_admins(self) -> None:
        for user in (self.alice, self.bob, self.vera, self.root):
            client = self.client_for(user)
            for url in self.red_detail_urls():
                assert client.get(url).status_code == 200, f"{user} should see {url}"

    def test_it_answers_404_to_an_outsider_on_every_red_detail_page(self) -> None:
        client = self.client_for(self.charlie)
        for url in self.red_detail_urls():
            response = client.get(url)
            assert response.status_code == 404, f"charlie must not learn that {url} exists"
            assert b"red-" not in response.content

    def test_it_sends_anonymous_visitors_to_the_login_page(self) -> None:
        for url in self.list_urls() + self.red_detail_urls():
            response = self.client.get(url)
            assert response.status_code == 302 and response["Location"].startswith("/login/"), url

    def test_no_list_shows_another_teams_rows(self) -> None:
        for url in self.list_urls():
            page = self.html(self.charlie, url)
            assert "red-" not in page, f"{url} shows charlie a red row"
            page = self.html(self.vera, url)
            assert "blue-" not in page, f"{url} shows vera a blue row"

    def test_lists_show_the_members_own_rows(self) -> None:
        assert "blue-api" in self.html(self.charlie, reverse("containers:containers"))
        assert "blue-app:1" in self.html(self.charlie, reverse("containers:images"))
        assert "blue-app:2" in self.html(self.charlie, reverse("containers:builds"))
        assert "blue-job" in self.html(self.charlie, reverse("containers:jobs"))
        assert "busybox:latest" in self.html(self.charlie, reverse("containers:images")), "shared images are everyone's"

    def test_search_finds_nothing_of_another_team(self) -> None:
        for url, q in (
            ("containers:containers", "red"),
            ("containers:images", "red-app"),
            ("containers:containers", ""),
        ):
            page = self.html(self.charlie, reverse(url) + f"?q={q}")
            assert "red-" not in table_rows(page)
        page = self.html(self.charlie, reverse("containers:containers") + f"?q={self.red_web.id[:12]}")
        assert "red-web" not in page, "an ID prefix must not find another team's container"
        page = self.html(self.charlie, reverse("containers:containers") + "?team=red")
        assert "red-web" not in page and "No container matches" in page

    def test_counts_do_not_include_other_teams(self) -> None:
        page = self.html(self.charlie, reverse("containers:overview"))
        assert '<div class="label">All containers</div><div class="value">1</div>' in page
        page = self.html(self.root, reverse("containers:overview"))
        assert '<div class="label">All containers</div><div class="value">3</div>' in page

    def test_the_audit_page_shows_team_admins_their_teams_only(self) -> None:
        assert "red-web" in self.html(self.alice, reverse("containers:audit"))
        assert "blue-api" not in self.html(self.alice, reverse("containers:audit"))
        for user in (self.bob, self.vera, self.charlie):
            page = self.html(user, reverse("containers:audit"))
            assert "red-web" not in page and "blue-api" not in page, f"{user} is admin of no team"
        page = self.html(self.root, reverse("containers:audit"))
        assert "red-web" in page and "blue-api" in page
