"""Job pages: the long operations of the user's teams, and one job's status, progress, log and result."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.mixins import LoginRequiredMixin
from django.views.generic import ListView, TemplateView

from containers import usecases
from containers.choices import JobKind, JobStatus
from containers.models import Build, Job
from containers.permissions import get_for_user
from containers.views.common import query_without


class JobListView(LoginRequiredMixin, ListView):
    template_name = "containers/job_list.html"
    paginate_by = 50
    context_object_name = "jobs"

    def get_queryset(self) -> Any:
        jobs = usecases.jobs_for(usecases.principal_for(self.request))
        status = self.request.GET.get("status", "")
        if status in JobStatus.values:
            jobs = jobs.filter(status=status)
        kind = self.request.GET.get("kind", "")
        if kind in JobKind.values:
            jobs = jobs.filter(kind=kind)
        return jobs.order_by("-created")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(
            section="jobs", statuses=JobStatus.values, status=self.request.GET.get("status", ""),
            kinds=JobKind.values, kind=self.request.GET.get("kind", ""), query=query_without(self.request, "page"),
            **kwargs,
        )  # fmt: skip


class JobDetailView(LoginRequiredMixin, TemplateView):
    """One job; the page refreshes itself while the job runs, then links to what it made."""

    template_name = "containers/job_detail.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        principal = usecases.principal_for(self.request)
        job, _ = get_for_user(principal, Job.objects.select_related("team", "user"), id=kwargs["pk"])
        container = None
        container_id = (job.result or {}).get("container")
        if container_id:
            container = usecases.containers_for(principal).filter(id=container_id).first()
        build = Build.objects.filter(job=job).first() if job.kind == JobKind.BUILD else None
        return super().get_context_data(section="jobs", job=job, container=container, build=build, **kwargs)
