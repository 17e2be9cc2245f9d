from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from containers import services
from containers.models import Image


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Report database, redis and node agents; 200 when all are ok, 503 otherwise."""
    report = services.health()
    return JsonResponse(report, status=200 if report["status"] == "ok" else 503)


@login_required
def overview(request: HttpRequest) -> HttpResponse:
    images = Image.objects.prefetch_related("tags")
    return render(request, "containers/overview.html", {"images": images})
