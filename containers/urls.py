from django.urls import path

from containers.views import audit, builds, containers, images, jobs, live, overview, teams, tokens

app_name = "containers"

# Fixed paths come before the patterns that would take them: `containers/logs/` before `containers/<pk>/`,
# `containers/<pk>/live/` before `containers/<pk>/<action>/`.
urlpatterns = [
    path("", overview.overview, name="overview"),
    path("healthz", overview.healthz, name="healthz"),
    # Containers
    path("containers/", containers.ContainerListView.as_view(), name="containers"),
    path("containers/new/", containers.RunContainerView.as_view(), name="container_run"),
    path("containers/bulk/", containers.containers_bulk, name="containers_bulk"),
    path("containers/logs/", live.logs_together, name="container_logs_together"),
    path("containers/<str:pk>/", containers.ContainerDetailView.as_view(), name="container"),
    path("containers/<str:pk>/live/", live.container_live, name="container_live"),
    path("containers/<str:pk>/live/<str:panel>/", live.container_live, name="container_live_panel"),
    path("containers/<str:pk>/logs/download/", live.logs_download, name="container_logs_download"),
    path("containers/<str:pk>/<str:action>/", containers.container_action, name="container_action"),
    # Images, builds and jobs
    path("images/", images.ImageListView.as_view(), name="images"),
    path("images/<str:hex>/", images.ImageDetailView.as_view(), name="image"),
    path("images/<str:hex>/remove/", images.image_remove, name="image_remove"),
    path("builds/", builds.BuildListView.as_view(), name="builds"),
    path("builds/new/", builds.BuildCreateView.as_view(), name="build_new"),
    path("builds/<uuid:pk>/", builds.BuildDetailView.as_view(), name="build"),
    path("builds/<uuid:pk>/cancel/", builds.build_cancel, name="build_cancel"),
    path("builds/<uuid:pk>/live/", live.build_live, name="build_live"),
    path("jobs/", jobs.JobListView.as_view(), name="jobs"),
    path("jobs/<uuid:pk>/", jobs.JobDetailView.as_view(), name="job"),
    # Teams, tokens, audit
    path("teams/", teams.TeamListView.as_view(), name="teams"),
    path("teams/new/", teams.team_create, name="team_create"),
    path("teams/<slug:name>/", teams.TeamDetailView.as_view(), name="team"),
    path("teams/<slug:name>/members/", teams.member_add, name="member_add"),
    path("teams/<slug:name>/members/<int:user_id>/role/", teams.member_role, name="member_role"),
    path("teams/<slug:name>/members/<int:user_id>/remove/", teams.member_remove, name="member_remove"),
    path("tokens/", tokens.tokens, name="tokens"),
    path("tokens/<int:pk>/revoke/", tokens.token_revoke, name="token_revoke"),
    path("audit/", audit.AuditListView.as_view(), name="audit"),
]
