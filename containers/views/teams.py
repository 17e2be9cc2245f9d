"""Team pages: the teams a user is in, and a team's members, whom its admins add, remove and give roles."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_POST
from django.views.generic import ListView, TemplateView

from containers import accounts, usecases
from containers.choices import AuditOutcome, Role
from containers.engine.errors import EngineError
from containers.forms import MemberForm, RoleForm, TeamForm
from containers.models import Team
from containers.permissions import NotFoundForUser, Principal, role_in, visible_teams
from containers.views.common import back, roles_by_team


def _team(principal: Principal, name: str) -> tuple[Team, Role]:
    """Return a team the principal is in, and its role there; 404 for anyone else."""
    team = visible_teams(principal).filter(name=name).first()
    role = role_in(principal, team) if team is not None else None
    if team is None or role is None:
        raise NotFoundForUser(f"team {name}: not found")
    return team, role


class TeamListView(LoginRequiredMixin, ListView):
    template_name = "containers/team_list.html"
    context_object_name = "teams"

    def get_queryset(self) -> Any:
        self.principal = usecases.principal_for(self.request)
        return (
            visible_teams(self.principal)
            .annotate(members=Count("memberships", distinct=True), container_count=Count("containers", distinct=True))
            .order_by("name")
        )

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        roles = roles_by_team(self.principal)
        context = super().get_context_data(**kwargs)
        for team in context["teams"]:
            team.role = roles.get(team.pk)
        context.update(section="teams", can_create=self.request.user.is_superuser, form=TeamForm())
        return context


@login_required
@require_POST
def team_create(request: HttpRequest) -> HttpResponse:
    """Create a team (site admins only)."""
    principal = usecases.principal_for(request)
    if not request.user.is_superuser:
        accounts.audit(principal, "team.create", outcome=AuditOutcome.DENIED, name=request.POST.get("name", ""))
        raise PermissionDenied("creating a team is for site admins")
    form = TeamForm(request.POST)
    if not form.is_valid():
        for field, errors in form.errors.items():
            messages.error(request, f"{field}: {' '.join(errors)}")
        return redirect("containers:teams")
    try:
        team = accounts.create_team(form.cleaned_data["name"], form.cleaned_data["description"])
    except EngineError as err:
        messages.error(request, str(err))
        return redirect("containers:teams")
    accounts.audit(principal, "team.create", team)
    messages.success(request, f"Team {team} created. Add its first admin below.")
    return redirect("containers:team", team.name)


class TeamDetailView(LoginRequiredMixin, TemplateView):
    template_name = "containers/team_detail.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        principal = usecases.principal_for(self.request)
        team, role = _team(principal, kwargs["name"])
        return super().get_context_data(
            section="teams", team=team, role=role, members=usecases.members_for(principal, team),
            is_admin=role >= Role.ADMIN, roles=Role.choices, form=MemberForm(),
            containers=usecases.containers_for(principal).filter(team=team).count(),
            **kwargs,
        )  # fmt: skip


def _member(team: Team, user_id: int) -> Any:
    return get_object_or_404(get_user_model(), pk=user_id, memberships__team=team)


@login_required
@require_POST
def member_add(request: HttpRequest, name: str) -> HttpResponse:
    principal = usecases.principal_for(request)
    team, _ = _team(principal, name)
    form = MemberForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            messages.error(request, " ".join(errors))
        return redirect("containers:team", team.name)
    try:
        usecases.add_member(principal, team, form.cleaned_data["username"], Role(form.cleaned_data["role"]))
    except EngineError as err:
        messages.error(request, str(err))
    else:
        messages.success(request, f"{form.cleaned_data['username']} is now {form.cleaned_data['role']} of {team}.")
    return redirect("containers:team", team.name)


@login_required
@require_POST
def member_role(request: HttpRequest, name: str, user_id: int) -> HttpResponse:
    principal = usecases.principal_for(request)
    team, _ = _team(principal, name)
    user = _member(team, user_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose viewer, operator or admin.")
        return redirect("containers:team", team.name)
    try:
        usecases.set_role(principal, team, user, Role(form.cleaned_data["role"]))
    except EngineError as err:
        messages.error(request, str(err))
    else:
        messages.success(request, f"{user} is now {form.cleaned_data['role']} of {team}.")
    return redirect("containers:team", team.name)


@login_required
@require_POST
def member_remove(request: HttpRequest, name: str, user_id: int) -> HttpResponse:
    principal = usecases.principal_for(request)
    team, _ = _team(principal, name)
    user = _member(team, user_id)
    try:
        usecases.remove_member(principal, team, user)
    except EngineError as err:
        messages.error(request, str(err))
        return redirect("containers:team", team.name)
    messages.success(request, f"{user} is no longer in {team}.")
    if user == request.user:
        return redirect("containers:teams")
    return back(request, reverse("containers:team", args=[team.name]))
