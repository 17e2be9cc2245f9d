"""The build pages: the form turns an editor, an archive or loose files into one context; the list and detail."""

from __future__ import annotations

import io
import tarfile
import zipfile
from typing import IO

import pytest
from django import forms
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import TestCase
from django.urls import reverse
from django.utils.datastructures import MultiValueDict

from containers.choices import AuditOutcome, BuildStatus, JobKind
from containers.forms import BuildForm
from containers.models import AuditEvent, Build, Team
from tests.web.pages.base import PageTestCase, table_rows

NEW = reverse("containers:build_new")


def members(stream: IO[bytes]) -> dict[str, bytes]:
    """Return the files of a tar stream, by name."""
    with tarfile.open(fileobj=stream, mode="r:*") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def tar_of(files: dict[str, bytes], mode: str = "w") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class BuildContextTests(TestCase):
    def context(
        self, text: str = "", files: list[SimpleUploadedFile] | None = None, path: str = "Dockerfile"
    ) -> IO[bytes]:
        form = BuildForm(
            {"team": "red", "dockerfile_text": text, "dockerfile": path},
            MultiValueDict({"context": files or []}),
            teams=Team.objects.all(),
        )  # fmt: skip
        assert form.is_valid(), form.errors
        return form.context_tar()

    @classmethod
    def setUpTestData(cls) -> None:
        Team.objects.create(name="red")

    def test_the_editor_alone_makes_a_context_of_one_dockerfile(self) -> None:
        assert members(self.context("FROM busybox\n")) == {"Dockerfile": b"FROM busybox\n"}

    def test_an_uploaded_tar_goes_as_it_is(self) -> None:
        data = tar_of({"Dockerfile": b"FROM busybox\n", "app/run.sh": b"echo hi\n"}, mode="w:gz")
        upload = SimpleUploadedFile("context.tar.gz", data)
        stream = self.context(files=[upload])
        assert stream.read() == data, "a compressed context is the builder's to unpack"

    def test_the_editor_replaces_the_dockerfile_of_an_archive(self) -> None:
        upload = SimpleUploadedFile("context.tar", tar_of({"Dockerfile": b"FROM old\n", "a.txt": b"a"}))
        assert members(self.context("FROM new\n", [upload])) == {"Dockerfile": b"FROM new\n", "a.txt": b"a"}

    def test_a_zip_becomes_a_tar_with_its_modes(self) -> None:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            info = zipfile.ZipInfo("bin/run.sh")
            info.external_attr = 0o755 << 16
            archive.writestr(info, "#!/bin/sh\n")
            archive.writestr("Dockerfile", "FROM busybox\n")
        stream = self.context(files=[SimpleUploadedFile("context.zip", out.getvalue())])
        with tarfile.open(fileobj=stream) as tar:
            assert tar.getmember("bin/run.sh").mode == 0o755
        stream.seek(0)
        assert members(stream)["Dockerfile"] == b"FROM busybox\n"

    def test_loose_files_sit_beside_the_dockerfile(self) -> None:
        files = [SimpleUploadedFile("index.html", b"<h1>hi</h1>"), SimpleUploadedFile("nginx.conf", b"server {}")]
        found = members(self.context("FROM busybox\nCOPY index.html /www/\n", files, path="build/Dockerfile"))
        assert found == {"index.html": b"<h1>hi</h1>", "nginx.conf": b"server {}",
                         "build/Dockerfile": b"FROM busybox\nCOPY index.html /www/\n"}  # fmt: skip

    def test_a_broken_archive_is_a_field_error(self) -> None:
        form = BuildForm(
            {"team": "red", "dockerfile_text": "FROM x\n", "dockerfile": "Dockerfile"},
            MultiValueDict({"context": [SimpleUploadedFile("c.zip", b"not a zip")]}), teams=Team.objects.all(),
        )  # fmt: skip
        assert form.is_valid()
        with pytest.raises(forms.ValidationError, match="not a readable zip archive"):
            form.context_tar()

    def test_it_needs_a_dockerfile_or_a_context(self) -> None:
        form = BuildForm({"team": "red", "dockerfile": "Dockerfile"}, teams=Team.objects.all())
        assert not form.is_valid() and "Write a Dockerfile" in form.errors["dockerfile_text"][0]

    def test_the_dockerfile_path_stays_inside_the_context(self) -> None:
        form = BuildForm({"team": "red", "dockerfile_text": "FROM x", "dockerfile": "../etc/passwd"},
                         teams=Team.objects.all())  # fmt: skip
        assert not form.is_valid() and "inside the context" in form.errors["dockerfile"][0]


@pytest.mark.requires("redis-server")
@pytest.mark.usefixtures("redis")
class BuildFormPageTests(PageTestCase):
    def test_an_operator_queues_a_build_with_every_option(self) -> None:
        response = self.client_for(self.bob).post(NEW, {
            "team": "red", "dockerfile_text": "FROM busybox AS base\nFROM base AS final\n", "dockerfile": "Dockerfile",
            "tags": "red-site:1, red-site:latest", "build_args": "VERSION=1.2", "target": "base", "no_cache": "on",
            "labels": "owner=red",
        })  # fmt: skip
        build = Build.objects.get(tags=["red-site:1", "red-site:latest"])
        assert response.status_code == 302 and response["Location"] == reverse("containers:build", args=[build.id])
        assert (build.team, build.build_args, build.target) == (self.red, {"VERSION": "1.2"}, "base")
        assert build.no_cache
        assert build.labels == {"owner": "red"} and build.source == "web"
        assert build.job is not None and build.job.kind == JobKind.BUILD
        assert AuditEvent.objects.get(action="build.create").outcome == AuditOutcome.SUCCESS

    def test_a_tag_of_another_team_is_refused_next_to_the_tags(self) -> None:
        response = self.client_for(self.bob).post(
            NEW, {"team": "red", "dockerfile_text": "FROM busybox\n", "dockerfile": "Dockerfile", "tags": "blue-app:1"}
        )
        assert response.status_code == 200 and "tag blue-app:1: in use by another team" in response.content.decode()


class BuildPagesTests(PageTestCase):
    def test_a_viewer_may_not_build(self) -> None:
        assert self.client_for(self.vera).get(NEW).status_code == 403
        response = self.client_for(self.vera).post(NEW, {"team": "red", "dockerfile_text": "FROM busybox\n"})
        assert response.status_code == 403

    def test_the_form_starts_from_an_example_dockerfile(self) -> None:
        page = self.html(self.bob, NEW)
        assert "FROM busybox" in page and 'enctype="multipart/form-data"' in page and 'name="no_cache"' in page

    def test_the_list_shows_status_tags_and_team(self) -> None:
        rows = table_rows(self.html(self.bob, reverse("containers:builds")))
        assert "red-app:2" in rows and '<span class="pill running">running</span>' in rows
        rows = table_rows(self.html(self.bob, reverse("containers:builds") + "?status=succeeded"))
        assert "red-app:2" not in rows

    def test_the_detail_follows_a_running_build_and_offers_cancel(self) -> None:
        self.red_build.log = "Step 1/2 : FROM busybox\n"
        self.red_build.save()
        page = self.html(self.bob, reverse("containers:build", args=[self.red_build.id]))
        assert 'data-refresh="1500"' in page and "Step 1/2 : FROM busybox" in page
        assert reverse("containers:build_cancel", args=[self.red_build.id]) in page
        assert reverse("containers:build_cancel", args=[self.red_build.id]) not in self.html(
            self.vera, reverse("containers:build", args=[self.red_build.id])
        )

    def test_an_operator_cancels_and_a_viewer_cannot(self) -> None:
        url = reverse("containers:build_cancel", args=[self.red_build.id])
        assert self.client_for(self.vera).post(url).status_code == 403
        assert self.client_for(self.charlie).post(url).status_code == 404
        response = self.client_for(self.bob).post(url, follow=True)
        assert f"Cancelling build {self.red_build.short_id}." in response.content.decode()
        self.red_build.refresh_from_db()
        assert self.red_build.cancel_requested

    def test_cancelling_a_finished_build_says_why_not(self) -> None:
        Build.objects.filter(pk=self.red_build.pk).update(status=BuildStatus.SUCCEEDED)
        url = reverse("containers:build_cancel", args=[self.red_build.id])
        response = self.client_for(self.bob).post(url, follow=True)
        assert "has already finished (succeeded)" in response.content.decode()
