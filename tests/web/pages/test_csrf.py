"""Every form that changes state is a POST with a CSRF token; without one the answer is 403 and nothing changes."""

from __future__ import annotations

from django.test import Client
from django.urls import reverse

from containers.models import AuditEvent, Job, Membership
from tests.web.pages.base import PageTestCase


class CsrfTests(PageTestCase):
    def posts(self) -> list[tuple[str, dict[str, str]]]:
        return [
            (reverse("containers:container_action", args=[self.red_web.id, "stop"]), {}),
            (reverse("containers:containers_bulk"), {"action": "stop", "ids": self.red_web.id}),
            (reverse("containers:container_run"), {"team": "red", "image": "busybox:latest", "restart": "no"}),
            (reverse("containers:image_remove", args=[self.red_image.id.removeprefix("sha256:")]), {}),
            (reverse("containers:build_new"), {"team": "red", "dockerfile_text": "FROM busybox\n"}),
            (reverse("containers:build_cancel", args=[self.red_build.id]), {}),
            (reverse("containers:team_create"), {"name": "green"}),
            (reverse("containers:member_add", args=["red"]), {"username": "charlie", "role": "admin"}),
            (reverse("containers:member_role", args=["red", self.vera.pk]), {"role": "admin"}),
            (reverse("containers:member_remove", args=["red", self.vera.pk]), {}),
            (reverse("containers:tokens"), {"team": "red", "expires": ""}),
            (reverse("password_change"), {}),
            (reverse("logout"), {}),
        ]

    def test_it_refuses_every_post_without_a_token(self) -> None:
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.alice)
        for url, data in self.posts():
            assert client.post(url, data).status_code == 403, f"{url} must check the CSRF token"
        assert not Job.objects.exclude(pk__in=[self.red_job.pk, self.blue_job.pk]).exists()
        assert Membership.objects.get(team=self.red, user=self.vera).role == "viewer"
        assert not AuditEvent.objects.exclude(action="container.start").exists()

    def test_it_accepts_a_post_with_the_pages_token(self) -> None:
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.bob)
        detail = reverse("containers:container", args=[self.red_web.id])
        page = client.get(detail).content.decode()
        token = page.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
        response = client.post(reverse("containers:container_action", args=[self.red_web.id, "stop"]),
                               {"csrfmiddlewaretoken": token})  # fmt: skip
        assert response.status_code == 302 and Job.objects.filter(kind="stop").exists()

    def test_gets_change_nothing(self) -> None:
        client = self.client_for(self.alice)
        for url in (reverse("containers:container_action", args=[self.red_web.id, "stop"]),
                    reverse("containers:containers_bulk"), reverse("containers:build_cancel", args=[self.red_build.id]),
                    reverse("containers:member_remove", args=["red", self.vera.pk])):  # fmt: skip
            assert client.get(url).status_code == 405, url
