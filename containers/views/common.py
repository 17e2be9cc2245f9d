"""What the pages share: who asks, roles per team, pagination, and the answers to an action."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.db import models
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.template import TemplateDoesNotExist
from django.template.loader import get_template
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme

from containers import usecases
from containers.choices import Role
from containers.models import Job, Membership, Team
from containers.permissions import Principal

PAGE_SIZE = 50


def roles_by_team(principal: Principal) -> dict[int, Role]:
    """Return the principal's role in each team it can reach, in one query (site admins: admin everywhere)."""
    user = principal.user
    if not user.is_authenticated:
        return {}
    if user.is_superuser:
        teams = Team.objects.all() if principal.team is None else Team.objects.filter(pk=principal.team.pk)
        roles = dict.fromkeys(teams.values_list("pk", flat=True), Role.ADMIN)
    else:
        roles = {team: Role(role) for team, role in Membership.objects.filter(user=user).values_list("team", "role")}
    if principal.read_only:
        roles = dict.fromkeys(roles, Role.VIEWER)
    return roles


def may(roles: dict[int, Role], team_id: int | None, required: Role) -> bool:
    """Whether a role looked up in `roles_by_team` for an owned row reaches `required`."""
    role = roles.get(team_id) if team_id is not None else None
    return role is not None and role >= required


def teams_where(principal: Principal, required: Role) -> models.QuerySet[Team]:
    """Return the teams in which the principal has at least `required`, by name."""
    allowed = [team for team, role in roles_by_team(principal).items() if role >= required]
    return Team.objects.filter(pk__in=allowed).order_by("name")


class OperatorFormMixin(LoginRequiredMixin):
    """A form that acts in one of the teams where the user is an operator; 403 with `refusal` if there is none."""

    refusal = "this needs the operator role in a team"

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        self.principal = usecases.principal_for(request)
        self.teams = teams_where(self.principal, Role.OPERATOR)
        if not self.teams.exists():
            raise PermissionDenied(self.refusal)
        return super().dispatch(request, *args, **kwargs)


def paginate(request: HttpRequest, rows: models.QuerySet[Any] | list[Any], per_page: int = PAGE_SIZE) -> Page:
    return Paginator(rows, per_page).get_page(request.GET.get("page"))


def query_without(request: HttpRequest, *names: str) -> str:
    """Return the query string without `names` (e.g. the page number), for links that change them."""
    query = request.GET.copy()
    for name in names:
        query.pop(name, None)
    return query.urlencode()


def job_queued(request: HttpRequest, job: Job, what: str) -> None:
    """Tell the user an action was accepted, with a link to the job that carries it out."""
    url = reverse("containers:job", args=[job.id])
    messages.success(request, format_html('{} <a href="{}">Job {}</a>', what, url, str(job.id)[:8]))


def jobs_queued(request: HttpRequest, jobs: Iterable[Job], what: str) -> None:
    links = format_html_join(
        ", ", '<a href="{}">{}</a>', ((reverse("containers:job", args=[j.id]), str(j.id)[:8]) for j in jobs)
    )
    messages.success(request, format_html("{} Jobs: {}", what, links))


def back(request: HttpRequest, fallback: str) -> HttpResponseRedirect:
    """Redirect to the form's `next` if it is a path of this site, else to `fallback`."""
    target = request.POST.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure()):
        return HttpResponseRedirect(target)
    return redirect(fallback)


def template_exists(name: str) -> bool:
    """Whether a template exists: the live issue's partials are included only once they do."""
    try:
        get_template(name)
    except TemplateDoesNotExist:
        return False
    return True
