"""The node's side of a job: the task marks the Job, calls the services, and the new rows belong to the job's team.

The engine is the one seam patched here (`containers.services.engine`): a small fake that keeps
containers and images in dicts, so that these tests need neither root nor a node agent.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest

from containers import services, tasks, usecases
from containers.choices import AuditOutcome, AuditSource, JobStatus
from containers.engine.errors import ImageNotFound
from containers.engine.lifecycle import ContainerNotFound, Record, State
from containers.models import AuditEvent, Build, Container, ImageTag, Job
from containers.permissions import Principal
from tests.web.api.base import ApiTestCase


def _state(status: str) -> State:
    return State(status=status, running=status == "running", paused=False, restarting=False, oom_killed=False,
                 pid=42 if status == "running" else 0, exit_code=0, error="", started_at="2026-01-02T03:04:05Z",
                 finished_at="0001-01-01T00:00:00Z")  # fmt: skip


class FakeContainers:
    def __init__(self, images: set[str]) -> None:
        self.images = images
        self.records: dict[str, Record] = {}
        self.states: dict[str, State] = {}
        self.calls: list[tuple[str, Any]] = []

    def create(self, config: dict[str, Any], host_config: dict[str, Any], name: str = "") -> Record:
        if config["Image"] not in self.images:
            raise ImageNotFound(f"No such image: {config['Image']}")
        container_id = f"{len(self.records) + 1:064x}"
        record = Record(id=container_id, name=name or f"fake-{len(self.records)}", created="2026-01-02T03:04:05Z",
                        image="sha256:" + "1" * 64, image_ref=config["Image"], path="sleep", args=["60"],
                        config=config, host_config=host_config)  # fmt: skip
        self.records[container_id] = record
        self.states[container_id] = _state("created")
        return record

    def get(self, ref: str) -> Record:
        for record in self.records.values():
            if ref in (record.id, record.name):
                return record
        raise ContainerNotFound(ref)

    def state(self, ref: str) -> State:
        return self.states[self.get(ref).id]

    def list(self) -> list[Record]:
        return list(self.records.values())

    def start(self, ref: str, attach: Any = None, keep_warm: bool = False) -> None:
        self.states[self.get(ref).id] = _state("running")

    def stop(self, ref: str, timeout: int | None = None, signal: str | None = None) -> bool:
        self.calls.append(("stop", (ref, timeout, signal)))
        self.states[self.get(ref).id] = _state("exited")
        return True


def stored_image(image_id: str, *tags: str) -> SimpleNamespace:
    layer = SimpleNamespace(digest="sha256:" + "1" * 64, diff_id="sha256:" + "2" * 64, unpacked_size=10, size=10)
    config = SimpleNamespace(architecture="amd64", os="linux", to_json=lambda: json.dumps({"config": {}}),
                             history=(), diff_ids=(layer.diff_id,))  # fmt: skip
    return SimpleNamespace(id=image_id, size=10, created=None, config=config, layers=[layer], repo_tags=list(tags),
                           repo_digests=[])  # fmt: skip


class FakeImages:
    def __init__(self) -> None:
        self.stored: list[SimpleNamespace] = []

    def list(self) -> list[SimpleNamespace]:
        return self.stored


class JobTaskTests(ApiTestCase):
    def setUp(self) -> None:
        self.containers = FakeContainers({"busybox"})
        self.images = FakeImages()
        fake = SimpleNamespace(containers=self.containers, images=self.images)
        patcher = mock.patch.object(services, "engine", return_value=fake)
        patcher.start()
        self.addCleanup(patcher.stop)
        self.make_image("busybox:latest", shared=True)
        self.bob_api = Principal(self.bob, source=AuditSource.API, address="127.0.0.1")

    def queue_run(self, image: str = "busybox", name: str = "web") -> tuple[Job, dict[str, Any]]:
        with self.queued() as sent:
            job = usecases.run_container(self.bob_api, self.red, {"Image": "busybox", "Cmd": ["sleep", "60"]}, {}, name)
        kwargs = sent[0].kwargs
        kwargs["config"]["Image"] = image
        return job, kwargs

    def test_a_run_job_creates_and_starts_a_container_owned_by_the_team(self) -> None:
        job, kwargs = self.queue_run()
        result = tasks.run_container_job(**kwargs)
        job.refresh_from_db()
        container = Container.objects.get(name="web")
        assert (job.status, job.result, job.progress) == (JobStatus.COMPLETED, result, 100)
        assert result == {"container": container.id, "name": "web"}
        assert (container.team, container.status) == (self.red, "running")
        assert container.labels == {services.TEAM_LABEL: str(self.red.pk)}, "the node learns the team from the label"
        event = AuditEvent.objects.get(pk=kwargs["audit_id"])
        assert (event.outcome, event.address, event.detail["job"]) == (AuditOutcome.SUCCESS, "127.0.0.1", str(job.id))

    def test_an_expected_engine_error_fails_the_job_and_its_audit_event(self) -> None:
        job, kwargs = self.queue_run(image="nope")
        assert tasks.run_container_job(**kwargs) == {"error": "No such image: nope"}
        job.refresh_from_db()
        assert (job.status, job.error) == (JobStatus.FAILED, "No such image: nope")
        event = AuditEvent.objects.get(pk=kwargs["audit_id"])
        assert (event.outcome, event.detail["error"]) == (AuditOutcome.FAILED, "No such image: nope")
        assert not Container.objects.exists()

    def test_a_surprise_errors_the_job_out_with_its_traceback(self) -> None:
        job, kwargs = self.queue_run()
        with mock.patch.object(self.containers, "start", side_effect=KeyError("cgroup")):
            with pytest.raises(KeyError):
                tasks.run_container_job(**kwargs)
        job.refresh_from_db()
        assert job.status == JobStatus.ERRORED and job.error.startswith("Traceback (most recent call last)")
        assert "KeyError: 'cgroup'" in job.error
        assert AuditEvent.objects.get(pk=kwargs["audit_id"]).outcome == AuditOutcome.FAILED

    def test_a_stop_job_passes_its_options_to_the_engine(self) -> None:
        _, kwargs = self.queue_run()
        tasks.run_container_job(**kwargs)
        container = Container.objects.get(name="web")
        with self.queued() as sent:
            job = usecases.container_action(self.bob_api, container, "stop", timeout=2)
        tasks.container_action_job(**sent[0].kwargs)
        job.refresh_from_db()
        container.refresh_from_db()
        assert (job.status, job.result) == (JobStatus.COMPLETED, {"container": container.id, "action": "stop"})
        assert self.containers.calls == [("stop", (container.id, 2, None))]
        assert container.status == "exited"

    def test_no_one_claims_a_team_through_a_label_of_their_own(self) -> None:
        # A job passes its team, over the label; the Docker API refuses the label itself (dockerapi/scoping.py).
        spoofed = {"Image": "busybox", "Labels": {services.TEAM_LABEL: str(self.red.pk), "app": "x"}}
        owned = services.create_container(spoofed, {}, "owned", team=self.blue)
        assert owned.team == self.blue and owned.labels[services.TEAM_LABEL] == str(self.blue.pk)

    def test_images_new_to_the_database_belong_to_the_team_whose_job_made_them(self) -> None:
        busybox_id = ImageTag.objects.get(familiar="busybox:latest").image_id
        self.images.stored = [stored_image(busybox_id, "busybox:latest"), stored_image("sha256:" + "2" * 64, "app:1")]
        services.sync_images(self.red)
        owners = dict(ImageTag.objects.values_list("familiar", "team__name"))
        assert owners == {"busybox:latest": None, "app:1": "red"}, "a known tag keeps its owner"

    def test_a_build_job_whose_context_is_gone_errors_out(self) -> None:
        build = Build.objects.create(node="test", team=self.red)
        job = Job.objects.create(kind="build", node="test", team=self.red)
        with pytest.raises(FileNotFoundError):
            tasks.build_image(str(build.id), "/nonexistent/context.tar", job_id=str(job.id))
        job.refresh_from_db()
        assert job.status == JobStatus.ERRORED and "/nonexistent/context.tar" in job.error
