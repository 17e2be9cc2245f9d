"""The overview: containers by state, recent jobs and builds, and the disk each team's images take; and /healthz."""

from __future__ import annotations

from collections import defaultdict

from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from containers import services, usecases
from containers.choices import ContainerStatus, Role
from containers.models import Image, ImageTag
from containers.permissions import visible_teams
from containers.views.common import roles_by_team


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Report database, redis and node agents; 200 when all are ok, 503 otherwise."""
    report = services.health()
    return JsonResponse(report, status=200 if report["status"] == "ok" else 503)


@login_required
def overview(request: HttpRequest) -> HttpResponse:
    principal = usecases.principal_for(request)
    containers = usecases.containers_for(principal).order_by()
    counts = dict(containers.values_list("status").annotate(n=Count("id")))
    stopped = sum(counts.get(s, 0) for s in (ContainerStatus.EXITED, ContainerStatus.CREATED, ContainerStatus.DEAD))
    teams = list(visible_teams(principal).order_by("name"))
    per_team = {
        row["team"]: row
        for row in containers.values("team").annotate(
            total=Count("id"), running=Count("id", filter=Q(status=ContainerStatus.RUNNING))
        )
    }
    # An image tagged by a team counts once for it, however many of its tags the team owns.
    images: dict[int, dict[str, int]] = defaultdict(lambda: {"images": 0, "bytes": 0})
    owned = ImageTag.objects.filter(team__in=teams).order_by().values_list("team", "image", "image__size").distinct()
    for team, _image, size in owned:
        images[team]["images"] += 1
        images[team]["bytes"] += size
    shared = Image.objects.filter(shared=True).aggregate(images=Count("id"), bytes=Sum("size"))
    disk = [
        {"team": team, "images": images[team.pk]["images"], "bytes": images[team.pk]["bytes"],
         "containers": per_team.get(team.pk, {}).get("total", 0),
         "running": per_team.get(team.pk, {}).get("running", 0)}
        for team in teams
    ]  # fmt: skip
    largest = max([row["bytes"] for row in disk] + [shared["bytes"] or 0, 1])
    for row in disk:
        row["percent"] = round(100 * row["bytes"] / largest)
    roles = roles_by_team(principal)
    return render(request, "containers/overview.html", {
        "section": "overview",
        "running": counts.get(ContainerStatus.RUNNING, 0),
        "paused": counts.get(ContainerStatus.PAUSED, 0),
        "stopped": stopped,
        "total": sum(counts.values()),
        "jobs": usecases.jobs_for(principal).order_by("-created")[:8],
        "builds": usecases.builds_for(principal).order_by("-created")[:5],
        "disk": disk,
        "shared": {"images": shared["images"], "bytes": shared["bytes"] or 0,
                   "percent": round(100 * (shared["bytes"] or 0) / largest)},
        "can_run": any(role >= Role.OPERATOR for role in roles.values()),
    })  # fmt: skip
