"""The REST API's viewsets: reads are scoped querysets, every change goes through `containers.usecases`.

A change names its object from every team's rows, not the principal's: the use case then answers an
outsider 404 (the same 404 as for a missing object) and records the attempt in the audit log.
Long operations answer 202 with the job and its URL in `Location`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import timedelta
from functools import cached_property
from typing import Any

from django.db.models import Count, IntegerField, OuterRef, Prefetch, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, parsers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from containers import usecases
from containers.api import filters, serializers
from containers.choices import AuditSource, Role
from containers.engine.errors import InvalidArgument
from containers.models import ApiToken, AuditEvent, Build, Container, Image, ImageTag, Job, Membership, Team
from containers.permissions import Principal, role_in, scope_queryset, visible_teams

_ERRORS = {
    code: OpenApiResponse(serializers.ErrorSerializer, description=text)
    for code, text in [
        (400, "Invalid input"),
        (401, "Not authenticated"),
        (403, "Role too low, or a read-only token"),
        (404, "Not found, or not yours to see"),
        (409, "Conflicts with the object's state"),
    ]
}


def _responses(ok: int, body: Any) -> dict[int, Any]:
    return {ok: body, **_ERRORS}


class PrincipalMixin:
    """Give a view the principal of its request, as the use cases take it."""

    request: Request

    @cached_property
    def principal(self) -> Principal:
        return usecases.principal_for(self.request, AuditSource.API)

    def default_team(self, team: Team | None) -> Team:
        """Return `team`, else the token's team, else the user's only team (InvalidArgument if it has several)."""
        if team is not None:
            return team
        if self.principal.team is not None:
            return self.principal.team
        teams = list(visible_teams(self.principal)[:2])
        if len(teams) != 1:
            raise InvalidArgument("team: required when you are in several teams" if teams else "team: not in any team")
        return teams[0]

    def accepted(self, job: Job) -> Response:
        """Answer 202 with the job, and its URL in `Location`."""
        data = serializers.JobSerializer(job, context={"request": self.request}).data
        return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": data["url"]})

    def valid(self, serializer_class: type[BaseSerializer], data: Any) -> dict[str, Any]:
        serializer = serializer_class(data=data, context={"request": self.request})
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data  # type: ignore[return-value]


def _job_action(request: type[BaseSerializer] | None = None, summary: str = "") -> Any:
    return extend_schema(request=request, responses=_responses(202, serializers.JobSerializer), summary=summary)


#
# Containers
#


@extend_schema_view(
    create=extend_schema(
        request=serializers.ContainerRunSerializer,
        responses=_responses(202, serializers.JobSerializer),
        summary="Run a container (create and start it) as a job",
    ),
    destroy=extend_schema(
        parameters=[OpenApiParameter("force", bool, description="Kill it first if it runs")],
        responses=_responses(202, serializers.JobSerializer),
        summary="Remove a container as a job (admins)",
    ),
)
class ContainerViewSet(PrincipalMixin, mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet):
    """Containers of your teams; changes are jobs on the container's node."""

    serializer_class = serializers.ContainerSerializer
    filterset_class = filters.ContainerFilterSet
    search_fields = ["name", "image_ref", "command", "id"]
    ordering_fields = ["name", "created", "status", "image_ref", "started_at", "finished_at"]
    ordering = ["-created"]
    queryset = Container.objects.none()  # for the schema; requests use get_queryset

    def get_queryset(self) -> QuerySet[Container]:
        return usecases.containers_for(self.principal)

    def changing(self) -> Container:
        """Return the container a change names, of any team: the use case refuses outsiders (404) and audits them."""
        return get_object_or_404(Container.objects.select_related("team"), pk=self.kwargs["pk"])

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self.valid(serializers.ContainerRunSerializer, request.data)
        team = self.default_team(data.get("team"))
        return self.accepted(
            usecases.run_container(self.principal, team, data["config"], data["host_config"], data["name"])
        )

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        force = request.query_params.get("force", "").lower() in ("1", "true", "yes")
        return self.accepted(usecases.container_action(self.principal, self.changing(), "remove", force=force))

    @_job_action(summary="Start a container")
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str) -> Response:
        return self.accepted(usecases.container_action(self.principal, self.changing(), "start"))

    @_job_action(serializers.ContainerStopSerializer, "Stop a container: its stop signal, then SIGKILL after a timeout")
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, pk: str) -> Response:
        options = self.valid(serializers.ContainerStopSerializer, request.data)
        return self.accepted(usecases.container_action(self.principal, self.changing(), "stop", **options))

    @_job_action(serializers.ContainerRestartSerializer, "Restart a container")
    @action(detail=True, methods=["post"])
    def restart(self, request: Request, pk: str) -> Response:
        options = self.valid(serializers.ContainerRestartSerializer, request.data)
        return self.accepted(usecases.container_action(self.principal, self.changing(), "restart", **options))

    @_job_action(serializers.ContainerKillSerializer, "Send a signal to a container (SIGKILL by default)")
    @action(detail=True, methods=["post"])
    def kill(self, request: Request, pk: str) -> Response:
        options = self.valid(serializers.ContainerKillSerializer, request.data)
        return self.accepted(usecases.container_action(self.principal, self.changing(), "kill", **options))

    @_job_action(summary="Freeze a container's processes")
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str) -> Response:
        return self.accepted(usecases.container_action(self.principal, self.changing(), "pause"))

    @_job_action(summary="Thaw a paused container")
    @action(detail=True, methods=["post"])
    def unpause(self, request: Request, pk: str) -> Response:
        return self.accepted(usecases.container_action(self.principal, self.changing(), "unpause"))

    @_job_action(serializers.ContainerCommitSerializer, "Make an image of a container's filesystem")
    @action(detail=True, methods=["post"])
    def commit(self, request: Request, pk: str) -> Response:
        data = self.valid(serializers.ContainerCommitSerializer, request.data)
        job = usecases.commit_container(
            self.principal, self.changing(), data["tag"], author=data["author"], message=data["message"],
            changes=data["changes"], pause=data["pause"],
        )  # fmt: skip
        return self.accepted(job)


#
# Images
#


@extend_schema_view(
    retrieve=extend_schema(responses=serializers.ImageDetailSerializer),
    destroy=extend_schema(
        parameters=[OpenApiParameter("force", bool, description="Remove it even if several tags name it")],
        responses=_responses(202, serializers.JobSerializer),
        summary="Remove an image and its tags as a job (admins); refused while a container uses it",
    ),
)
class ImageViewSet(PrincipalMixin, mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet):
    """Images of your teams and the shared ones; `used_by` counts only the containers you can see."""

    filterset_class = filters.ImageFilterSet
    search_fields = ["id", "tags__familiar"]
    ordering_fields = ["created", "size", "id"]
    ordering = ["-created"]
    lookup_value_regex = "[^/]+"
    queryset = Image.objects.none()

    def get_serializer_class(self) -> type[BaseSerializer]:
        return serializers.ImageDetailSerializer if self.action == "retrieve" else serializers.ImageSerializer

    def get_queryset(self) -> QuerySet[Image]:
        principal = self.principal
        users = scope_queryset(principal, Container.objects.filter(image=OuterRef("pk")))
        used_by = users.order_by().values("image").annotate(n=Count("pk")).values("n")
        tags = scope_queryset(principal, ImageTag.objects.select_related("team"))
        return (
            usecases.images_for(principal)
            .annotate(used_by=Coalesce(Subquery(used_by, output_field=IntegerField()), 0))
            .prefetch_related(Prefetch("tags", queryset=tags, to_attr="visible_tags"))
        )

    def get_object(self) -> Image:
        image = _by_id(self.filter_queryset(self.get_queryset()), self.kwargs["pk"])
        if image is None:
            raise Http404
        return image

    def changing(self) -> Image:
        image = _by_id(Image.objects.all(), self.kwargs["pk"])
        if image is None:
            raise Http404
        return image

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        force = request.query_params.get("force", "").lower() in ("1", "true", "yes")
        return self.accepted(usecases.remove_image(self.principal, self.changing(), force=force))

    @_job_action(serializers.ImageUntagSerializer, "Remove one tag (the image goes with its last tag)")
    @action(detail=True, methods=["post"])
    def untag(self, request: Request, pk: str) -> Response:
        name = self.valid(serializers.ImageUntagSerializer, request.data)["tag"]
        tags = self.changing().tags.select_related("image", "team")
        tag = tags.filter(familiar=name).first() or tags.filter(reference=name).first()
        if tag is None:
            raise Http404
        return self.accepted(usecases.remove_image(self.principal, tag))


def _by_id(images: QuerySet[Image], value: str) -> Image | None:
    """Return the image with this ID, or the one whose ID starts with this hex prefix (12 digits at least)."""
    found = images.filter(pk=value).first()
    hex_digits = value.removeprefix("sha256:")
    if found is None and len(hex_digits) >= 12 and all(c in "0123456789abcdef" for c in hex_digits):
        matches = list(images.filter(pk__startswith=f"sha256:{hex_digits}")[:2])
        found = matches[0] if len(matches) == 1 else None
    return found


#
# Builds and jobs
#


class TarParser(parsers.BaseParser):
    """Take the whole body as the build context, as `docker build` sends it."""

    media_type = "application/x-tar"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> dict[str, Any]:
        return {"context": stream}


class GzipTarParser(TarParser):
    media_type = "application/gzip"


@extend_schema_view(
    retrieve=extend_schema(responses=serializers.BuildDetailSerializer),
    create=extend_schema(
        request={
            "multipart/form-data": serializers.BuildCreateSerializer,
            "application/x-tar": OpenApiTypes.BINARY,
            "application/gzip": OpenApiTypes.BINARY,
        },
        parameters=[
            OpenApiParameter("team", str, description="With a tar body: the owner"),
            OpenApiParameter("tags", str, many=True, description="With a tar body: the tags, repeated"),
            OpenApiParameter("dockerfile", str, description="With a tar body: the Dockerfile's path in the context"),
            OpenApiParameter("target", str, description="With a tar body: the stage to build"),
            OpenApiParameter("no_cache", bool, description="With a tar body: build every step again"),
        ],
        responses=_responses(202, serializers.BuildSerializer),
        summary="Build an image from a context upload, as a job; the build's `job` links it",
    ),
)
class BuildViewSet(PrincipalMixin, mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Image builds of your teams, with their parameters, output and outcome."""

    filterset_class = filters.BuildFilterSet
    search_fields = ["tags", "image_id"]
    ordering_fields = ["created", "status", "finished_at"]
    ordering = ["-created"]
    parser_classes = [parsers.MultiPartParser, parsers.FormParser, parsers.JSONParser, TarParser, GzipTarParser]
    queryset = Build.objects.none()

    def get_serializer_class(self) -> type[BaseSerializer]:
        return serializers.BuildDetailSerializer if self.action == "retrieve" else serializers.BuildSerializer

    def get_queryset(self) -> QuerySet[Build]:
        return usecases.builds_for(self.principal)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        raw = request.content_type.split(";")[0].strip() in (TarParser.media_type, GzipTarParser.media_type)
        data = self.valid(serializers.BuildCreateSerializer, request.query_params if raw else request.data)
        upload = request.data.get("context") if raw else data.get("context")
        if upload is None:
            raise InvalidArgument("context: required, as a tar file field or as the request body")
        build = usecases.queue_build(
            self.principal, self.default_team(data.get("team")), upload, dockerfile=data["dockerfile"],
            tags=data["tags"], build_args=data["build_args"], target=data["target"], no_cache=data["no_cache"],
            labels=data["labels"],
        )  # fmt: skip
        body = serializers.BuildSerializer(build, context={"request": request}).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})

    @extend_schema(request=None, responses=_responses(200, serializers.BuildSerializer), summary="Cancel a build")
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        build = get_object_or_404(Build.objects.select_related("team"), pk=pk)
        build = usecases.cancel_build(self.principal, build)
        return Response(serializers.BuildSerializer(build, context={"request": request}).data)


@extend_schema_view(retrieve=extend_schema(responses=serializers.JobDetailSerializer))
class JobViewSet(PrincipalMixin, viewsets.ReadOnlyModelViewSet):
    """The long operations of your teams: status, progress, result, and the log in the detail."""

    filterset_class = filters.JobFilterSet
    search_fields = ["target"]
    ordering_fields = ["created", "status", "kind", "finished_at"]
    ordering = ["-created"]
    queryset = Job.objects.none()

    def get_serializer_class(self) -> type[BaseSerializer]:
        return serializers.JobDetailSerializer if self.action == "retrieve" else serializers.JobSerializer

    def get_queryset(self) -> QuerySet[Job]:
        return usecases.jobs_for(self.principal)


#
# Teams, members and tokens
#


@extend_schema_view(
    create=extend_schema(
        request=serializers.TeamCreateSerializer,
        responses=_responses(201, serializers.TeamSerializer),
        summary="Create a team (site admins)",
    ),
    update=extend_schema(request=serializers.TeamUpdateSerializer, responses=serializers.TeamSerializer),
    partial_update=extend_schema(request=serializers.TeamUpdateSerializer, responses=serializers.TeamSerializer),
)
class TeamViewSet(
    PrincipalMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin, viewsets.ReadOnlyModelViewSet
):  # fmt: skip
    """The teams you are in, your role in each, and their members (team admins manage them)."""

    serializer_class = serializers.TeamSerializer
    lookup_field = "name"
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created"]
    ordering = ["name"]
    queryset = Team.objects.none()

    def get_queryset(self) -> QuerySet[Team]:
        return visible_teams(self.principal)

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        if self.request is not None and self.request.user.is_authenticated:
            context["roles"] = _roles(self.principal)
        return context

    def changing(self) -> Team:
        return get_object_or_404(Team, name=self.kwargs["name"])

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # Not the model serializer's checks: its "already exists" would tell anyone which teams there are.
        data = self.valid(serializers.TeamCreateSerializer, request.data)
        team = usecases.create_team(self.principal, data["name"], data["description"])
        return Response(self.get_serializer(team).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self.valid(serializers.TeamUpdateSerializer, request.data)
        team = usecases.update_team(self.principal, self.changing(), data.get("description", ""))
        return Response(self.get_serializer(team).data)

    @extend_schema(methods=["GET"], responses=serializers.MembershipSerializer(many=True), summary="List members")
    @extend_schema(
        methods=["POST"], request=serializers.MembershipSerializer,
        responses=_responses(201, serializers.MembershipSerializer), summary="Add a member (team admins)",
    )  # fmt: skip
    @action(detail=True, methods=["get", "post"], pagination_class=None)
    def members(self, request: Request, name: str) -> Response:
        if request.method == "GET":
            members = usecases.members_for(self.principal, self.get_object())
            return Response(serializers.MembershipSerializer(members, many=True).data)
        data = request.data
        role = self.valid(serializers.MembershipRoleSerializer, {"role": data.get("role", Role.VIEWER)})["role"]
        membership = usecases.add_member(self.principal, self.changing(), str(data.get("username", "")), role)
        return Response(serializers.MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        methods=["PATCH"], request=serializers.MembershipRoleSerializer,
        responses=_responses(200, serializers.MembershipSerializer), summary="Change a member's role (team admins)",
    )  # fmt: skip
    @extend_schema(methods=["DELETE"], responses=_responses(204, None), summary="Remove a member (team admins)")
    @action(detail=True, methods=["patch", "delete"], url_path=r"members/(?P<username>[^/]+)")
    def member(self, request: Request, name: str, username: str) -> Response:
        team = self.changing()
        if request.method == "DELETE":
            usecases.remove_member(self.principal, team, username)
            return Response(status=status.HTTP_204_NO_CONTENT)
        role = self.valid(serializers.MembershipRoleSerializer, request.data)["role"]
        membership = usecases.set_role(self.principal, team, username, role)
        return Response(serializers.MembershipSerializer(membership).data)


def _roles(principal: Principal) -> dict[int, str | None]:
    """Return the principal's role in each team it sees, in one query."""
    if principal.user.is_superuser:
        return {team.pk: role_in(principal, team) for team in visible_teams(principal)}
    memberships = Membership.objects.filter(user=principal.user).values_list("team_id", "role")
    roles = {team_id: Role(role) for team_id, role in memberships}
    if principal.read_only:
        roles = {team_id: min(role, Role.VIEWER) for team_id, role in roles.items()}
    return {team_id: str(role) for team_id, role in roles.items()}


@extend_schema_view(
    create=extend_schema(
        request=serializers.TokenCreateSerializer,
        responses=_responses(201, serializers.TokenCreatedSerializer),
        summary="Mint a token; the answer is the only time the token is shown",
    ),
    destroy=extend_schema(responses=_responses(204, None), summary="Revoke a token"),
)
class TokenViewSet(PrincipalMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet):
    """Your own API tokens: listed by prefix, never with their secret."""

    serializer_class = serializers.TokenSerializer
    ordering_fields = ["created", "last_used_at", "expires_at"]
    ordering = ["-created"]
    queryset = ApiToken.objects.none()

    def get_queryset(self) -> QuerySet[ApiToken]:
        return usecases.tokens_for(self.principal)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self.valid(serializers.TokenCreateSerializer, request.data)
        days = data.get("expires_in_days")
        token, secret = usecases.mint_token(
            self.principal, self.default_team(data.get("team")), data["name"], data["read_only"],
            timedelta(days=days) if days else None,
        )  # fmt: skip
        body = serializers.TokenCreatedSerializer(token, context={"request": request, "secret": secret}).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": body["url"]})

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        usecases.revoke_token(
            self.principal, get_object_or_404(ApiToken.objects.select_related("team"), pk=kwargs["pk"])
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


#
# Audit
#


class Echo:
    """A file-like object whose write returns the line, for csv.writer into a streaming response."""

    def write(self, value: str) -> str:
        return value


_CSV_COLUMNS = ["time", "user", "team", "action", "target_type", "target_id", "target_name", "source", "address",
                "outcome", "detail"]  # fmt: skip


class AuditEventViewSet(PrincipalMixin, viewsets.ReadOnlyModelViewSet):
    """The audit log of the teams you administer (all of it for site admins), newest first."""

    serializer_class = serializers.AuditEventSerializer
    filterset_class = filters.AuditEventFilterSet
    search_fields = ["action", "target_name", "target_id", "username"]
    ordering_fields = ["time", "action", "outcome"]
    ordering = ["-time"]
    queryset = AuditEvent.objects.none()

    def get_queryset(self) -> QuerySet[AuditEvent]:
        return usecases.audit_for(self.principal)

    @extend_schema(
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="One event a row")},
        summary="Export the filtered audit log as CSV",
        operation_id="audit_export_csv",
        filters=True,
    )
    def export(self, request: Request) -> StreamingHttpResponse:
        events = self.filter_queryset(self.get_queryset())
        response = StreamingHttpResponse(_csv_rows(events.iterator(chunk_size=2000)), content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="audit.csv"'
        return response


def _csv_rows(events: Iterator[AuditEvent]) -> Iterator[str]:
    writer = csv.writer(Echo())
    yield writer.writerow(_CSV_COLUMNS)
    for event in events:
        yield writer.writerow([
            event.time.isoformat(), event.username, event.team.name if event.team else "", event.action,
            event.target_type, event.target_id, event.target_name, event.source, event.address or "", event.outcome,
            json.dumps(event.detail, sort_keys=True, default=str) if event.detail else "",
        ])  # fmt: skip
