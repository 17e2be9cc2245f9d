"""A Job moves pending → running → completed, or ends failed or errored, saving only what each step changes."""

from __future__ import annotations

from django.db import IntegrityError

from containers.choices import JobKind, JobStatus
from containers.engine.errors import InvalidStateTransition
from containers.models import Job
from tests.web.base import TeamTestCase


class JobTests(TeamTestCase):
    def job(self) -> Job:
        return Job.objects.create(kind=JobKind.PULL, node="test", target="alpine:3", user=self.bob, team=self.red)

    def test_it_runs_to_completion_with_its_result(self) -> None:
        job = self.job()
        assert (job.status, job.progress, job.finished) == (JobStatus.PENDING, 0, False)
        job.start()
        job.finish({"image": "sha256:ab12"})
        job.refresh_from_db()
        assert (job.status, job.progress, job.finished) == ("completed", 100, True)
        assert job.result == {"image": "sha256:ab12"}
        assert job.started_at is not None and job.finished_at is not None and job.started_at <= job.finished_at

    def test_it_fails_with_a_message_or_errors_out_with_a_traceback(self) -> None:
        failed, errored = self.job(), self.job()
        failed.fail("alpine:3: not found")
        errored.start()
        errored.error_out("Traceback (most recent call last):\n  ...\nKeyError: 'x'")
        failed.refresh_from_db()
        errored.refresh_from_db()
        assert (failed.status, failed.error, failed.started_at) == ("failed", "alpine:3: not found", None)
        assert errored.status == "errored" and errored.error.startswith("Traceback")

    def test_it_refuses_moves_its_lifecycle_does_not_have(self) -> None:
        job = self.job()
        with self.assertRaisesRegex(InvalidStateTransition, "cannot move from pending to completed"):
            job.finish()
        job.start()
        with self.assertRaises(InvalidStateTransition):
            job.start()
        job.finish()
        with self.assertRaises(InvalidStateTransition):
            job.fail("too late")
        job.refresh_from_db()
        assert job.status == "completed"

    def test_log_lines_from_two_writers_all_land(self) -> None:
        job = self.job()
        writer, other = job, Job.objects.get(pk=job.pk)
        writer.start()
        writer.append_log("pulling layer 1\n")
        other.append_log("pulling layer 2\n")
        writer.append_log("done\n")
        job.refresh_from_db()
        assert job.log == "pulling layer 1\npulling layer 2\ndone\n"
        assert job.status == "running", "appending to the log must not overwrite the status"

    def test_a_step_saves_only_its_own_fields(self) -> None:
        job = self.job()
        stale = Job.objects.get(pk=job.pk)
        job.start()
        job.append_log("working\n")
        stale.fail("cancelled")
        job.refresh_from_db()
        assert (job.log, job.status, job.error) == ("working\n", "failed", "cancelled")
        assert job.started_at is not None, "failing a stale copy must not erase when the job started"

    def test_a_stale_copy_cannot_move_a_job_that_has_ended(self) -> None:
        job = self.job()
        stale = Job.objects.get(pk=job.pk)
        job.start()
        job.finish({"image": "sha256:ab12"})
        with self.assertRaisesRegex(InvalidStateTransition, "cannot move from completed to failed"):
            stale.fail("cancelled")
        job.refresh_from_db()
        assert (job.status, job.error) == ("completed", "")

    def test_progress_is_a_percentage(self) -> None:
        job = self.job()
        job.progress = 101
        with self.assertRaises(IntegrityError):
            job.save(update_fields=["progress"])
