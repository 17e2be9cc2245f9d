"""What the page tests share: each team owns a bit of everything, so that every page has rows to leak."""

from __future__ import annotations

import re
from typing import Any

from django.test import Client

from containers.choices import AuditSource, BuildStatus, ContainerStatus, JobKind
from containers.models import AuditEvent, Build, Job
from tests.web.base import TeamTestCase


class PageTestCase(TeamTestCase):
    """The personas of TeamTestCase, and in red and blue: containers, images, a build, a job and an audit event.

    Every red row's name starts with `red-` and every blue row's with `blue-`, so that a page that
    leaks can be caught by searching its HTML for the other team's prefix.
    """

    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        cls.red_web = cls.make_container("red-web", cls.red, status=ContainerStatus.RUNNING, command="httpd -f")
        cls.red_db = cls.make_container("red-db", cls.red, status=ContainerStatus.EXITED, exit_code=137)
        cls.blue_api = cls.make_container("blue-api", cls.blue, status=ContainerStatus.RUNNING, image_ref="blue-app:1")
        cls.busybox = cls.make_image("busybox:latest", shared=True)
        cls.red_image = cls.make_image("red-app:1", team=cls.red)
        cls.blue_image = cls.make_image("blue-app:1", team=cls.blue)
        cls.red_build = Build.objects.create(node="test", team=cls.red, tags=["red-app:2"], status=BuildStatus.RUNNING)
        cls.blue_build = Build.objects.create(node="test", team=cls.blue, tags=["blue-app:2"])
        cls.red_job = Job.objects.create(kind=JobKind.PULL, node="test", team=cls.red, user=cls.bob, target="red-job")
        cls.blue_job = Job.objects.create(kind=JobKind.PULL, node="test", team=cls.blue, user=cls.charlie,
                                          target="blue-job")  # fmt: skip
        AuditEvent.objects.create(user=cls.bob, username="bob", team=cls.red, action="container.start",
                                  target_type="container", target_name="red-web", source=AuditSource.WEB)  # fmt: skip
        AuditEvent.objects.create(user=cls.charlie, username="charlie", team=cls.blue, action="container.start",
                                  target_type="container", target_name="blue-api", source=AuditSource.WEB)  # fmt: skip

    def client_for(self, user: Any, **kwargs: Any) -> Client:
        client = Client(**kwargs)
        client.force_login(user)
        return client

    def html(self, user: Any, url: str, status: int = 200) -> str:
        response = self.client_for(user).get(url)
        assert response.status_code == status, f"{user} GET {url}: {response.status_code}, expected {status}"
        return response.content.decode()


def table_rows(html: str) -> str:
    """Return the body rows of every table in a page, without the filters and search box that echo a query."""
    return "".join(re.findall(r"<tbody>(.*?)</tbody>", html, re.DOTALL))
