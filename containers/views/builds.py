"""Build pages: the form (Dockerfile editor, context upload, args, target, no-cache, tags), the list, the detail."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST
from django.views.generic import FormView, ListView, TemplateView

from containers import usecases
from containers.choices import BuildStatus, Role
from containers.engine.errors import EngineError
from containers.forms import BuildForm
from containers.models import Build
from containers.permissions import get_for_user
from containers.views.common import OperatorFormMixin, back, query_without, roles_by_team, template_exists

# The live issue's partial that streams a build's output; until it exists the page shows the saved log.
BUILD_OUTPUT_PANEL = "containers/panels/build_output.html"
EXAMPLE_DOCKERFILE = 'FROM busybox\nRUN echo built by webengine > /hello\nCMD ["cat", "/hello"]\n'


class BuildListView(LoginRequiredMixin, ListView):
    template_name = "containers/build_list.html"
    paginate_by = 50
    context_object_name = "builds"

    def get_queryset(self) -> Any:
        self.principal = usecases.principal_for(self.request)
        builds = usecases.builds_for(self.principal)
        status = self.request.GET.get("status", "")
        if status in BuildStatus.values:
            builds = builds.filter(status=status)
        team = self.request.GET.get("team", "")
        if team:
            builds = builds.filter(team__name=team)
        return builds.order_by("-created")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        roles = roles_by_team(self.principal)
        return super().get_context_data(
            section="builds", statuses=BuildStatus.values, status=self.request.GET.get("status", ""),
            can_build=any(role >= Role.OPERATOR for role in roles.values()), query=query_without(self.request, "page"),
            **kwargs,
        )  # fmt: skip


class BuildCreateView(OperatorFormMixin, FormView):
    template_name = "containers/build_form.html"
    form_class = BuildForm

    refusal = "building an image needs the operator role in a team"

    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "teams": self.teams}

    def get_initial(self) -> dict[str, Any]:
        return {"team": self.request.GET.get("team", ""), "dockerfile_text": EXAMPLE_DOCKERFILE}

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(section="builds", **kwargs)

    def form_valid(self, form: BuildForm) -> HttpResponse:
        data = form.cleaned_data
        try:
            upload = form.context_tar()
        except forms.ValidationError as err:
            form.add_error("context", err)
            return self.form_invalid(form)
        try:
            build = usecases.queue_build(
                self.principal, data["team"], upload, dockerfile=data["dockerfile"], tags=data["tags"],
                build_args=data["build_args"], target=data["target"], no_cache=data["no_cache"], labels=data["labels"],
            )  # fmt: skip
        except EngineError as err:
            form.add_engine_error(err)
            return self.form_invalid(form)
        finally:
            upload.close()
        messages.success(self.request, f"Build {build.short_id} queued.")
        return redirect("containers:build", build.id)


class BuildDetailView(LoginRequiredMixin, TemplateView):
    template_name = "containers/build_detail.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        principal = usecases.principal_for(self.request)
        build, role = get_for_user(principal, Build.objects.select_related("team", "job"), id=kwargs["pk"])
        return super().get_context_data(
            section="builds", build=build, role=role, can_cancel=role >= Role.OPERATOR and not build.finished,
            live_output=BUILD_OUTPUT_PANEL if template_exists(BUILD_OUTPUT_PANEL) else None, **kwargs,
        )  # fmt: skip


@login_required
@require_POST
def build_cancel(request: HttpRequest, pk: str) -> HttpResponse:
    principal = usecases.principal_for(request)
    build, _ = get_for_user(principal, Build.objects.select_related("team"), id=pk)
    try:
        usecases.cancel_build(principal, build)
    except EngineError as err:
        messages.error(request, str(err))
    else:
        messages.success(request, f"Cancelling build {build.short_id}.")
    return back(request, reverse("containers:build", args=[build.id]))
