"""Container pages: the list with filters and bulk actions, the detail with its tabs, the run form, the verbs."""

from __future__ import annotations

import json
import shlex
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST
from django.views.generic import FormView, ListView, TemplateView

from containers import usecases
from containers.choices import ContainerStatus, JobStatus, Role
from containers.engine.errors import EngineError
from containers.forms import RunContainerForm
from containers.models import Container, ImageTag
from containers.permissions import RoleRequired, get_for_user, scope_queryset
from containers.views.common import (
    OperatorFormMixin,
    back,
    job_queued,
    jobs_queued,
    may,
    query_without,
    roles_by_team,
    template_exists,
)

# The bulk actions the list offers; each verb's role is the use case's.
BULK_ACTIONS = ("start", "stop", "restart", "remove")
DOING = {"start": "Starting", "stop": "Stopping", "restart": "Restarting", "kill": "Killing", "pause": "Pausing",
         "unpause": "Resuming", "remove": "Removing"}  # fmt: skip
SORTS = {"name": "name", "-name": "-name", "image": "image_ref", "status": "status", "created": "created",
         "-created": "-created"}  # fmt: skip
TABS = ("overview", "config", "inspect", "logs", "terminal", "stats")
# What the live issue's panels are called; a tab shows a placeholder until its partial exists.
LIVE_PANELS = {"logs": "containers/panels/logs.html", "terminal": "containers/panels/terminal.html",
               "stats": "containers/panels/stats.html"}  # fmt: skip
LOGS_TOGETHER = "containers/live_logs.html"


def _annotate_rights(rows: list[Container], roles: dict[int, Role]) -> None:
    """Set `can_operate` and `can_remove` on each row from the principal's roles, without a query per row."""
    operate = usecases.CONTAINER_ACTIONS["stop"][1]
    remove = usecases.CONTAINER_ACTIONS["remove"][1]
    for row in rows:
        row.can_operate = may(roles, row.team_id, operate)  # type: ignore[attr-defined]
        row.can_remove = may(roles, row.team_id, remove)  # type: ignore[attr-defined]


class ContainerListView(LoginRequiredMixin, ListView):
    template_name = "containers/container_list.html"
    paginate_by = 50
    context_object_name = "containers"

    def get_queryset(self) -> Any:
        self.principal = usecases.principal_for(self.request)
        self.scoped = usecases.containers_for(self.principal)
        rows = self.scoped
        team = self.request.GET.get("team", "")
        if team:
            rows = rows.filter(team__name=team)
        self.filtered = rows
        state = self.request.GET.get("state", "")
        if state in ContainerStatus.values:
            rows = rows.filter(status=state)
        q = self.request.GET.get("q", "").strip()
        if q:
            rows = rows.filter(
                Q(name__icontains=q) | Q(image_ref__icontains=q) | Q(id__startswith=q.lower()) | Q(command__icontains=q)
            )
        return rows.order_by(SORTS.get(self.request.GET.get("sort", ""), "-created"), "name")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        roles = roles_by_team(self.principal)
        rows = list(context["containers"])
        _annotate_rights(rows, roles)
        counts = dict(self.filtered.order_by().values_list("status").annotate(n=Count("id")))
        states = [(s, counts.get(s, 0)) for s in ContainerStatus.values if s == "running" or counts.get(s)]
        context.update(
            section="containers",
            containers=rows,
            teams=sorted(self.scoped.order_by().values_list("team__name", flat=True).distinct(), key=str),
            states=states,
            total=sum(counts.values()),
            state=self.request.GET.get("state", ""),
            team=self.request.GET.get("team", ""),
            q=self.request.GET.get("q", ""),
            sort=self.request.GET.get("sort", ""),
            can_bulk=any(row.can_operate for row in rows),  # type: ignore[attr-defined]
            can_bulk_remove=any(row.can_remove for row in rows),  # type: ignore[attr-defined]
            logs_together=template_exists(LOGS_TOGETHER),
            can_run=any(role >= Role.OPERATOR for role in roles.values()),
            query=query_without(self.request, "page"),
            query_state=query_without(self.request, "page", "state"),
            query_sort=query_without(self.request, "page", "sort"),
        )
        return context


@login_required
@require_POST
def containers_bulk(request: HttpRequest) -> HttpResponse:
    """Apply one verb to the checked containers; ignore those the user cannot see, refuse if it may act on none."""
    action = request.POST.get("action", "")
    if action not in BULK_ACTIONS:
        messages.error(request, f"bulk action {action!r}: expected one of {', '.join(BULK_ACTIONS)}")
        return back(request, "containers:containers")
    principal = usecases.principal_for(request)
    ids = request.POST.getlist("ids")
    found = list(usecases.containers_for(principal).filter(id__in=ids).order_by("name"))
    if not found:
        if ids:
            raise Http404("no such containers")
        messages.warning(request, "Select the containers first.")
        return back(request, "containers:containers")
    jobs, refused, failed = [], [], []
    for container in found:
        try:
            jobs.append(usecases.container_action(principal, container, action))
        except RoleRequired as err:
            refused.append(str(err))
        except EngineError as err:
            failed.append(str(err))
    if not jobs and refused and not failed:
        raise PermissionDenied("; ".join(refused))
    if jobs:
        jobs_queued(request, jobs, f"{DOING[action]} {', '.join(job.target for job in jobs)}.")
    for error in refused + failed:
        messages.error(request, error)
    return back(request, "containers:containers")


def _container_and_role(request: HttpRequest, pk: str) -> tuple[Any, Role]:
    principal = usecases.principal_for(request)
    return get_for_user(principal, Container.objects.select_related("team"), id=pk)


def _inspect(container: Container) -> dict[str, Any]:
    """Return the container as `docker inspect` shows its main fields, from its row (the node's copy)."""
    when = {name: value.isoformat() if value else None
            for name, value in (("created", container.created), ("started", container.started_at),
                                ("finished", container.finished_at))}  # fmt: skip
    command = shlex.split(container.command)
    return {
        "Id": container.id,
        "Name": "/" + container.name,
        "Created": when["created"],
        "Path": command[0] if command else "",
        "Args": command[1:],
        "State": {
            "Status": container.status, "Running": container.status == ContainerStatus.RUNNING,
            "Paused": container.status == ContainerStatus.PAUSED, "OOMKilled": container.oom_killed,
            "Pid": container.pid, "ExitCode": container.exit_code, "StartedAt": when["started"],
            "FinishedAt": when["finished"],
        },
        "Image": container.image,
        "RestartCount": container.restart_count,
        "Node": container.node,
        "Team": container.team.name if container.team else None,
        "HostConfig": container.host_config,
        "Config": container.config,
    }  # fmt: skip


class ContainerDetailView(LoginRequiredMixin, TemplateView):
    template_name = "containers/container_detail.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        container, role = _container_and_role(self.request, kwargs["pk"])
        principal = usecases.principal_for(self.request)
        can_operate = role >= usecases.CONTAINER_ACTIONS["stop"][1]
        # A terminal runs commands in the container: an operator's, as `docker exec` is.
        tabs = [name for name in TABS if name != "terminal" or can_operate]
        tab = self.request.GET.get("tab", "overview")
        if tab not in tabs:
            tab = "overview"
        context = super().get_context_data(**kwargs)
        busy = (
            usecases.jobs_for(principal)
            .filter(target=container.name, status__in=[JobStatus.PENDING, JobStatus.RUNNING])
            .order_by("-created")
            .first()
        )
        context.update(
            section="containers", container=container, role=role, tab=tab, tabs=tabs, busy=busy,
            can_operate=can_operate,
            can_remove=role >= usecases.CONTAINER_ACTIONS["remove"][1],
            live_panel=LIVE_PANELS[tab] if tab in LIVE_PANELS and template_exists(LIVE_PANELS[tab]) else None,
        )  # fmt: skip
        if tab in ("config", "inspect"):
            context.update(
                command=container.command,
                inspect_json=json.dumps(_inspect(container), indent=2, default=str),
            )  # fmt: skip
        return context


@login_required
@require_POST
def container_action(request: HttpRequest, pk: str, action: str) -> HttpResponse:
    """Queue one verb on one container and go back to where the button was, with a link to the job."""
    container, _ = _container_and_role(request, pk)
    principal = usecases.principal_for(request)
    detail = reverse("containers:container", args=[container.id])
    try:
        job = usecases.container_action(principal, container, action)
    except EngineError as err:
        messages.error(request, str(err))
        return back(request, detail)
    job_queued(request, job, f"{DOING[action]} {container.name}.")
    if action == "remove":
        return redirect("containers:containers")
    return back(request, detail)


class RunContainerView(OperatorFormMixin, FormView):
    """The run form: image, name, command, env, bind mounts, limits and restart policy, checked field by field."""

    template_name = "containers/container_run.html"
    form_class = RunContainerForm

    refusal = "running a container needs the operator role in a team"

    def get_form_kwargs(self) -> dict[str, Any]:
        kwargs = super().get_form_kwargs()
        tags = scope_queryset(self.principal, ImageTag.objects.select_related("team", "image")).filter(
            Q(team__in=self.teams) | Q(team__isnull=True, image__shared=True)
        )
        kwargs.update(teams=self.teams, image_tags=tags.order_by("familiar"))
        return kwargs

    def get_initial(self) -> dict[str, Any]:
        return {"image": self.request.GET.get("image", ""), "team": self.request.GET.get("team", "")}

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(section="containers", **kwargs)

    def form_valid(self, form: RunContainerForm) -> HttpResponse:
        config, host_config = form.docker_config()
        try:
            job = usecases.run_container(
                self.principal, form.cleaned_data["team"], config, host_config, name=form.cleaned_data["name"]
            )
        except EngineError as err:
            form.add_engine_error(err)
            return self.form_invalid(form)
        job_queued(self.request, job, f"Starting a container from {config['Image']}.")
        return redirect("containers:job", job.id)
