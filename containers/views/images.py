"""Image pages: the list with sizes and users, the detail with layers, history and config, and removal."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.mixins import LoginRequiredMixin
from django.db.models import Count, Prefetch, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_POST
from django.views.generic import ListView, TemplateView

from containers import usecases
from containers.choices import Role
from containers.engine.errors import EngineError
from containers.models import Image, ImageTag, Team
from containers.permissions import Principal, get_for_user
from containers.views.common import back, job_queued, query_without, roles_by_team


def _visible_tags(image: Image, roles: dict[int, Role], everywhere: bool) -> list[ImageTag]:
    """Return the tags of an image (prefetched, all of them) that the principal may see."""
    return [
        tag for tag in image.tags.all()
        if everywhere or tag.team_id in roles or (tag.team_id is None and image.shared)
    ]  # fmt: skip


def _can_remove(image: Image, roles: dict[int, Role], everywhere: bool) -> bool:
    """Whether removing the whole image is the principal's to do: admin of every team owning one of its tags."""
    if everywhere:
        return True
    tags = list(image.tags.all())
    if image.shared or not tags or any(tag.team_id is None for tag in tags):
        return False
    return all(roles.get(tag.team_id) == Role.ADMIN for tag in tags)


def _everywhere(principal: Principal) -> bool:
    return bool(principal.user.is_superuser and principal.team is None and not principal.read_only)


def _tags_with_teams() -> Prefetch:
    return Prefetch("tags", queryset=ImageTag.objects.select_related("team").order_by("familiar"))


class ImageListView(LoginRequiredMixin, ListView):
    template_name = "containers/image_list.html"
    paginate_by = 50
    context_object_name = "images"

    def get_queryset(self) -> Any:
        self.principal = usecases.principal_for(self.request)
        images = usecases.images_for(self.principal)
        q = self.request.GET.get("q", "").strip()
        if q:
            hexa = q.lower().removeprefix("sha256:")
            images = images.filter(Q(tags__familiar__icontains=q) | Q(id__startswith="sha256:" + hexa)).distinct()
        team = self.request.GET.get("team", "")
        if team == "shared":
            images = images.filter(shared=True)
        elif team:
            images = images.filter(tags__team__name=team).distinct()
        return images.prefetch_related(_tags_with_teams()).order_by("-created", "id")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        roles = roles_by_team(self.principal)
        everywhere = _everywhere(self.principal)
        rows = list(context["images"])
        used = dict(
            usecases.containers_for(self.principal).order_by()
            .filter(image__in=[image.id for image in rows]).values_list("image").annotate(n=Count("id"))
        )  # fmt: skip
        for image in rows:
            image.visible_tags = _visible_tags(image, roles, everywhere)  # type: ignore[attr-defined]
            image.used_by = used.get(image.id, 0)  # type: ignore[attr-defined]
            image.can_remove = _can_remove(image, roles, everywhere)  # type: ignore[attr-defined]
            image.run_ref = next((t.familiar for t in image.visible_tags), image.short_id)  # type: ignore[attr-defined]
        context.update(
            section="images", images=rows, q=self.request.GET.get("q", ""), team=self.request.GET.get("team", ""),
            teams=Team.objects.filter(pk__in=roles).order_by("name").values_list("name", flat=True),
            query=query_without(self.request, "page"),
            can_run=any(role >= Role.OPERATOR for role in roles.values()),
            can_build=any(role >= Role.OPERATOR for role in roles.values()),
        )  # fmt: skip
        return context


def _history(image: Image) -> list[dict[str, Any]]:
    """Return the image's history newest first, as `docker history` lists it, from its row."""
    steps = []
    for step in reversed(image.history):
        try:
            created: datetime | None = parse_datetime(step["created"]) if step["created"] else None
        except ValueError:
            created = None
        steps.append({**step, "created": created, "empty": step["empty_layer"]})
    return steps


class ImageDetailView(LoginRequiredMixin, TemplateView):
    template_name = "containers/image_detail.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        principal = usecases.principal_for(self.request)
        image, role = get_for_user(principal, Image.objects.prefetch_related(_tags_with_teams()),
                                   id="sha256:" + kwargs["hex"])  # fmt: skip
        roles = roles_by_team(principal)
        everywhere = _everywhere(principal)
        tags = _visible_tags(image, roles, everywhere)
        for tag in tags:
            tag.can_remove = everywhere or (tag.team_id is not None and roles.get(tag.team_id) == Role.ADMIN)  # type: ignore[attr-defined]
        config = image.config or {}
        context = super().get_context_data(**kwargs)
        context.update(
            section="images", image=image, role=role, tags=tags,
            layers=image.layer_list, history=_history(image),
            env=config.get("Env") or [], labels=config.get("Labels") or {}, config=config,
            users=usecases.containers_for(principal).filter(image=image.id).order_by("name")[:50],
            can_remove=_can_remove(image, roles, everywhere),
            can_run=any(r >= Role.OPERATOR for r in roles.values()),
            run_ref=tags[0].familiar if tags else image.short_id,
        )  # fmt: skip
        return context


@login_required
@require_POST
def image_remove(request: HttpRequest, hex: str) -> HttpResponse:
    """Remove the image, or one of its tags (`tag`, an ImageTag id); refused while a container uses it."""
    principal = usecases.principal_for(request)
    image, _ = get_for_user(principal, Image.objects.all(), id="sha256:" + hex)
    target: Image | ImageTag = image
    if request.POST.get("tag"):
        target = get_object_or_404(
            ImageTag.objects.select_related("image", "team"), pk=request.POST["tag"], image=image
        )
        get_for_user(principal, ImageTag.objects.all(), pk=target.pk)
    try:
        job = usecases.remove_image(principal, target)
    except EngineError as err:
        messages.error(request, f"Not removed: {err}")
        return back(request, reverse("containers:image", args=[hex]))
    job_queued(request, job, f"Removing {target}.")
    if isinstance(target, ImageTag):
        return back(request, reverse("containers:image", args=[hex]))
    return redirect("containers:images")
