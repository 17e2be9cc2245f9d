"""The images pages: tags, size, created and used-by counts; detail with config; removal refused while in use."""

from __future__ import annotations

from django.urls import reverse

from containers.choices import AuditOutcome, JobKind
from containers.models import AuditEvent, Container, Image, Job, Team
from tests.web.pages.base import PageTestCase, table_rows

URL = reverse("containers:images")


def hex_of(image: Image) -> str:
    return image.id.removeprefix("sha256:")


class ImagePageTestCase(PageTestCase):
    def use(self, image: Image, name: str, team: Team) -> None:
        """Make a container of `team` that runs `image`."""
        Container.objects.filter(pk=self.make_container(name, team).pk).update(image=image.id)


class ImageListTests(ImagePageTestCase):
    def test_it_lists_tags_size_and_the_containers_using_each(self) -> None:
        self.use(self.red_image, "red-user", self.red)
        rows = table_rows(self.html(self.bob, URL))
        assert '<span class="tag">red-app:1</span>' in rows and "1.02kB" in rows
        assert '?q=red-app%3A1">1</a>' in rows, "used by one container, linked to the list of them"

    def test_used_by_counts_only_the_containers_a_user_can_see(self) -> None:
        self.use(self.busybox, "blue-user", self.blue)
        rows = table_rows(self.html(self.bob, URL))
        busybox_row = rows[rows.index("busybox:latest") :].split("</tr>")[0]
        assert '<span class="faint">0</span>' in busybox_row, "blue's container must not show in red's count"

    def test_it_offers_remove_to_admins_of_the_owning_team_only(self) -> None:
        remove = f'action="{reverse("containers:image_remove", args=[hex_of(self.red_image)])}"'
        assert remove in self.html(self.alice, URL)
        assert remove not in self.html(self.bob, URL)
        busybox = reverse("containers:image_remove", args=[hex_of(self.busybox)])
        assert busybox not in self.html(self.alice, URL), "a shared image is the site admins'"
        assert busybox in self.html(self.root, URL)

    def test_it_greys_out_remove_with_the_reason_while_in_use(self) -> None:
        self.use(self.red_image, "red-user", self.red)
        page = self.html(self.alice, URL)
        assert 'disabled title="In use by 1 container: remove it first">Remove</button>' in page

    def test_it_searches_tags(self) -> None:
        rows = table_rows(self.html(self.bob, URL + "?q=red-app"))
        assert "red-app:1" in rows and "busybox" not in rows


class ImageDetailTests(ImagePageTestCase):
    def url(self, image: Image) -> str:
        return reverse("containers:image", args=[hex_of(image)])

    def test_it_shows_the_image_its_config_and_a_run_button(self) -> None:
        self.red_image.config = {"Cmd": ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/app", "Labels": {"team": "red"}}
        self.red_image.save()
        page = self.html(self.bob, self.url(self.red_image))
        assert "<h1>red-app:1</h1>" in page and "PATH=/bin" in page and "/app" in page
        assert f'href="{reverse("containers:container_run")}?image=red-app%3A1"' in page

    def test_a_viewer_sees_no_run_or_remove(self) -> None:
        page = self.html(self.vera, self.url(self.red_image))
        assert "?image=" not in page and "image_remove" not in page and "/remove/" not in page

    def test_history_and_layers_come_from_the_row_newest_first(self) -> None:
        self.red_image.layer_list = [{"digest": "sha256:" + "a" * 64, "diff_id": "sha256:" + "b" * 64,
                                      "size": 3 << 20, "compressed": 1 << 20}]  # fmt: skip
        self.red_image.history = [
            {"created": "2026-01-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:base in /", "comment": "",
             "size": 3 << 20, "empty_layer": False},
            {"created": "2026-01-02T00:00:00Z", "created_by": '/bin/sh -c #(nop)  CMD ["sh"]', "comment": "",
             "size": 0, "empty_layer": True},
        ]  # fmt: skip
        self.red_image.save()
        page = self.html(self.bob, self.url(self.red_image))
        assert page.index("CMD [&quot;sh&quot;]") < page.index("ADD file:base"), "docker history lists newest first"
        assert "sha256:bbbbbbbbbbbb" in page and "3.15MB" in page, "the layer is listed with its unpacked size"

    def test_it_names_the_containers_that_keep_it_from_removal(self) -> None:
        self.use(self.red_image, "red-user", self.red)
        page = self.html(self.alice, self.url(self.red_image))
        assert "cannot be removed while 1 container uses it" in page and ">red-user</a>" in page

    def test_an_outsider_gets_404(self) -> None:
        assert self.client_for(self.charlie).get(self.url(self.red_image)).status_code == 404


class ImageRemoveTests(ImagePageTestCase):
    def remove(self, user: object, image: Image, **data: object) -> object:
        return self.client_for(user).post(reverse("containers:image_remove", args=[hex_of(image)]), data, follow=True)

    def test_an_admin_removes_an_unused_image_through_a_job(self) -> None:
        response = self.remove(self.alice, self.red_image)
        assert response.redirect_chain[-1][0] == URL
        job = Job.objects.get(kind=JobKind.REMOVE)
        assert job.target == self.red_image.id and job.team == self.red
        assert "Removing" in response.content.decode()

    def test_removal_is_refused_while_a_container_uses_it_with_the_reason(self) -> None:
        self.use(self.red_image, "red-user", self.red)
        page = self.remove(self.alice, self.red_image).content.decode()
        assert f"Not removed: image {self.red_image.id}: in use by container red-user" in page
        assert not Job.objects.filter(kind=JobKind.REMOVE).exists()
        assert AuditEvent.objects.get(action="image.remove").outcome == AuditOutcome.FAILED

    def test_an_operator_gets_403_and_an_outsider_404(self) -> None:
        assert self.remove(self.bob, self.red_image).status_code == 403
        assert self.remove(self.charlie, self.red_image).status_code == 404
        assert not Job.objects.filter(kind=JobKind.REMOVE).exists()

    def test_an_admin_untags_one_tag(self) -> None:
        image = self.make_image("red-two:1", "red-two:2", team=self.red)
        tag = image.tags.get(familiar="red-two:2")
        self.remove(self.alice, image, tag=tag.pk)
        assert Job.objects.get(kind=JobKind.REMOVE).target == "red-two:2"

    def test_a_tag_of_another_image_is_not_found(self) -> None:
        other = self.red_image.tags.get()
        response = self.remove(self.alice, self.busybox, tag=other.pk)
        assert response.status_code == 404
