"""The REST API's routes under /api/v1/, namespace `containers-api` (e.g. `containers-api:container-detail`)."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from containers.api import views

app_name = "containers-api"

router = DefaultRouter()

# Engine
router.register("containers", views.ContainerViewSet, basename="container")
router.register("images", views.ImageViewSet, basename="image")
router.register("builds", views.BuildViewSet, basename="build")
router.register("jobs", views.JobViewSet, basename="job")

# Accounts
router.register("teams", views.TeamViewSet, basename="team")
router.register("tokens", views.TokenViewSet, basename="token")
router.register("audit", views.AuditEventViewSet, basename="auditevent")

urlpatterns = [
    # A path of its own: as a router action it would end in a slash, and the audit page links a file name.
    path("audit/export.csv", views.AuditEventViewSet.as_view({"get": "export"}), name="auditevent-export"),
    *router.urls,
]
