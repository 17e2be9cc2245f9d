"""/api/v1/images/: your teams' images and the shared ones; removal as a job, refused while in use."""

from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext

from containers.choices import AuditOutcome
from containers.models import Image, Job
from tests.web.api.base import ApiTestCase

LIST = "/api/v1/images/"


class ImageTests(ApiTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        cls.busybox = cls.make_image("busybox:latest", shared=True)
        cls.app = cls.make_image("red-app:1", "red-app:latest", team=cls.red)
        cls.make_container("red-web", cls.red, image=cls.busybox.id)
        cls.make_container("blue-web", cls.blue, image=cls.busybox.id)

    def test_it_lists_tags_and_counts_only_the_users_it_may_see(self) -> None:
        response = self.client_for(self.vera).get(LIST, {"ordering": "id"})
        assert response.status_code == 200 and response.json()["count"] == 2
        rows = {row["id"]: row for row in response.json()["results"]}
        assert rows[self.busybox.id]["used_by"] == 1, "blue's container must not count for red"
        assert rows[self.busybox.id]["shared"] is True
        assert [tag["familiar"] for tag in rows[self.app.id]["tags"]] == ["red-app:1", "red-app:latest"]
        assert rows[self.app.id]["tags"][0]["team"] == "red" and rows[self.app.id]["used_by"] == 0
        assert self.client_for(self.root).get(f"{LIST}{self.busybox.id}/").json()["used_by"] == 2

    def test_it_finds_an_image_by_an_unambiguous_short_id_and_filters_by_tag(self) -> None:
        image = Image.objects.create(id="sha256:" + "ab12" * 16, node="test", size=1, config={"Cmd": ["sh"]})
        image.tags.create(reference="docker.io/library/red-tool:1", familiar="red-tool:1", team=self.red)
        client = self.client_for(self.bob)
        detail = client.get(f"{LIST}ab12ab12ab12/")
        assert detail.status_code == 200 and detail.json()["id"] == image.id
        assert detail.json()["config"] == {"Cmd": ["sh"]}
        assert client.get(f"{LIST}{self.app.short_id}/").status_code == 404, "the test IDs share their first digits"
        assert [row["id"] for row in client.get(LIST, {"tag": "red-app"}).json()["results"]] == [self.app.id]
        assert self.client_for(self.charlie).get(f"{LIST}ab12ab12ab12/").status_code == 404

    def test_an_admin_removes_an_image_as_a_job_on_its_node(self) -> None:
        with self.queued() as sent:
            response = self.client_for(self.alice).delete(f"{LIST}{self.app.id}/")
        assert response.status_code == 202
        job = Job.objects.get(pk=response.json()["id"])
        assert (job.kind, job.target, job.team) == ("remove", self.app.id, self.red)
        assert (sent[0].name, sent[0].queue, sent[0].kwargs["ref"]) == ("containers.remove_image_job", "node.test",
                                                                        self.app.id)  # fmt: skip
        assert self.last_event("image.remove").team == self.red

    def test_it_refuses_to_remove_an_image_in_use_and_says_which_container(self) -> None:
        used = self.make_image("red-base:1", team=self.red)
        self.make_container("red-api", self.red, image=used.id)
        with self.queued() as sent:
            response = self.client_for(self.alice).delete(f"{LIST}{used.id}/?force=1")
        assert response.status_code == 409
        assert response.json() == {"detail": "image " + used.id + ": in use by container red-api", "code": "conflict"}
        assert not sent and not Job.objects.exists()
        assert self.last_event("image.remove").outcome == AuditOutcome.FAILED

    def test_untagging_one_of_two_tags_is_allowed_while_the_image_is_in_use(self) -> None:
        self.make_container("red-app-1", self.red, image=self.app.id)
        with self.queued() as sent:
            response = self.client_for(self.alice).post(f"{LIST}{self.app.id}/untag/", {"tag": "red-app:1"})
        assert response.status_code == 202 and sent[0].kwargs["ref"] == "red-app:1"

    def test_a_shared_image_is_removed_by_site_admins_only(self) -> None:
        refused = self.client_for(self.alice).delete(f"{LIST}{self.busybox.id}/")
        assert refused.status_code == 403 and refused.json()["required_role"] == "admin"
        response = self.client_for(self.root).delete(f"{LIST}{self.busybox.id}/")
        assert response.status_code == 409, "a site admin is still refused while containers use it"
        assert response.json()["detail"] == f"image {self.busybox.id}: in use by container blue-web, red-web"

    def test_an_image_tagged_by_two_teams_needs_an_admin_of_both(self) -> None:
        both = self.make_image("red-x:1", team=self.red)
        both.tags.create(reference="docker.io/library/blue-x:1", familiar="blue-x:1", team=self.blue)
        assert self.client_for(self.alice).delete(f"{LIST}{both.id}/").status_code == 403
        assert self.client_for(self.alice).post(f"{LIST}{both.id}/untag/", {"tag": "red-x:1"}).status_code == 202

    def test_the_list_costs_the_same_queries_for_two_images_or_twenty(self) -> None:
        client = self.client_for(self.bob)
        with CaptureQueriesContext(connection) as few:
            client.get(LIST)
        for n in range(18):
            self.make_image(f"red-many:{n}", f"red-many:{n}-latest", team=self.red)
            self.make_container(f"red-user-{n}", self.red, image=self.app.id)
        with CaptureQueriesContext(connection) as many:
            response = client.get(LIST)
        assert response.json()["count"] == 20
        assert len(many) == len(few), [query["sql"] for query in many.captured_queries]
