"""How the REST API shows each resource, and what it takes to create one."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from containers.choices import Role
from containers.models import ApiToken, AuditEvent, Build, Container, Image, ImageTag, Job, Membership, Team

_API = "containers-api"


class TeamNameField(serializers.SlugRelatedField):
    """A team, written and read by its name; any team's name is accepted, the use case decides (404 or 403)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(slug_field="name", queryset=Team.objects.all(), **kwargs)

    def to_internal_value(self, data: Any) -> Team:
        team = Team.objects.filter(name=str(data)).first()
        if team is None:
            raise Http404  # as the use case answers for a team one is not in: names are not to be probed
        return team


#
# Containers
#


class ContainerSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name=f"{_API}:container-detail")
    team = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Container
        fields = [
            "id", "url", "short_id", "name", "team", "node", "image", "image_ref", "command", "status", "exit_code",
            "oom_killed", "pid", "restart_count", "created", "started_at", "finished_at", "labels",
        ]  # fmt: skip
        read_only_fields = fields


class ContainerRunSerializer(serializers.Serializer):
    """Run a container: the shortcuts (image, cmd, env, labels) fill in Docker's `config`, which may say more."""

    team = TeamNameField(required=False, help_text="Owner; defaults to the token's team, or the user's only team")
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=255)
    image = serializers.CharField(required=False, max_length=512, help_text="A reference or an image ID")
    cmd = serializers.ListField(child=serializers.CharField(), required=False)
    env = serializers.ListField(child=serializers.CharField(), required=False, help_text="KEY=value items")
    labels = serializers.DictField(child=serializers.CharField(), required=False)
    config = serializers.DictField(required=False, help_text="Docker's container config (Image, Cmd, Env, ...)")
    host_config = serializers.DictField(required=False, help_text="Docker's HostConfig (Binds, Memory, ...)")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        config = dict(attrs.get("config") or {})
        for field, key in (("image", "Image"), ("cmd", "Cmd"), ("env", "Env"), ("labels", "Labels")):
            if field in attrs:
                config[key] = attrs[field]
        if not config.get("Image"):
            raise serializers.ValidationError({"image": "required"})
        attrs["config"] = config
        attrs["host_config"] = dict(attrs.get("host_config") or {})
        return attrs


class ContainerStopSerializer(serializers.Serializer):
    timeout = serializers.IntegerField(required=False, min_value=0, help_text="Seconds before SIGKILL")
    signal = serializers.CharField(required=False, max_length=16)


class ContainerRestartSerializer(serializers.Serializer):
    timeout = serializers.IntegerField(required=False, min_value=0)


class ContainerKillSerializer(serializers.Serializer):
    signal = serializers.CharField(required=False, default="SIGKILL", max_length=16)


class ContainerCommitSerializer(serializers.Serializer):
    tag = serializers.CharField(required=False, allow_blank=True, default="", help_text="e.g. myapp:1")
    author = serializers.CharField(required=False, allow_blank=True, default="")
    message = serializers.CharField(required=False, allow_blank=True, default="")
    changes = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    pause = serializers.BooleanField(required=False, default=True)


#
# Images
#


class ImageTagSerializer(serializers.ModelSerializer):
    team = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = ImageTag
        fields = ["reference", "familiar", "team"]
        read_only_fields = fields


class ImageSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name=f"{_API}:image-detail")
    tags = ImageTagSerializer(many=True, read_only=True, source="visible_tags")
    used_by = serializers.IntegerField(read_only=True, help_text="Containers you can see that use it")

    class Meta:
        model = Image
        fields = [
            "id", "url", "short_id", "node", "size", "created", "architecture", "os", "layers", "shared", "tags",
            "used_by",
        ]  # fmt: skip
        read_only_fields = fields


class ImageDetailSerializer(ImageSerializer):
    class Meta(ImageSerializer.Meta):
        fields = [*ImageSerializer.Meta.fields, "config"]
        read_only_fields = fields


class ImageUntagSerializer(serializers.Serializer):
    tag = serializers.CharField(help_text="The tag to remove, e.g. myapp:1")


#
# Jobs and builds
#


class JobSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name=f"{_API}:job-detail")
    team = serializers.SlugRelatedField(slug_field="name", read_only=True)
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Job
        fields = [
            "id", "url", "kind", "status", "progress", "target", "team", "user", "node", "result", "error",
            "created", "started_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields


class JobDetailSerializer(JobSerializer):
    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "log"]
        read_only_fields = fields


class BuildSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name=f"{_API}:build-detail")
    team = serializers.SlugRelatedField(slug_field="name", read_only=True)
    job = serializers.HyperlinkedRelatedField(view_name=f"{_API}:job-detail", read_only=True)
    duration = serializers.FloatField(read_only=True, allow_null=True, help_text="Seconds")

    class Meta:
        model = Build
        fields = [
            "id", "url", "short_id", "status", "team", "job", "node", "dockerfile", "tags", "build_args", "target",
            "no_cache", "labels", "source", "image_id", "error", "exit_code", "cancel_requested", "created",
            "started_at", "finished_at", "duration",
        ]  # fmt: skip
        read_only_fields = fields


class BuildDetailSerializer(BuildSerializer):
    class Meta(BuildSerializer.Meta):
        fields = [*BuildSerializer.Meta.fields, "log"]
        read_only_fields = fields


class BuildCreateSerializer(serializers.Serializer):
    """A build from a context upload: a tar (optionally gzip-compressed) in `context`, or the whole body as a tar."""

    context = serializers.FileField(required=False, help_text="The build context as a tar archive")
    team = TeamNameField(required=False)
    dockerfile = serializers.CharField(required=False, default="Dockerfile", max_length=1024)
    tags = serializers.ListField(child=serializers.CharField(max_length=512), required=False, default=list)
    build_args = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False, default=dict)
    target = serializers.CharField(required=False, allow_blank=True, default="")
    no_cache = serializers.BooleanField(required=False, default=False)
    labels = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False, default=dict)


#
# Teams, members and tokens
#


class TeamSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name=f"{_API}:team-detail", lookup_field="name")
    role = serializers.SerializerMethodField(help_text="Your role in the team")

    class Meta:
        model = Team
        fields = ["id", "url", "name", "description", "created", "role"]
        read_only_fields = ["id", "url", "created", "role"]

    @extend_schema_field(serializers.ChoiceField(choices=Role.choices, allow_null=True))
    def get_role(self, team: Team) -> str | None:
        roles = self.context.get("roles", {})
        return roles.get(team.pk)


class TeamCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64, help_text="Letters, digits, - and _")
    description = serializers.CharField(required=False, allow_blank=True, default="")


class TeamUpdateSerializer(TeamSerializer):
    class Meta(TeamSerializer.Meta):
        read_only_fields = ["id", "url", "name", "created", "role"]


class MembershipSerializer(serializers.ModelSerializer):
    username = serializers.SlugRelatedField(
        source="user", slug_field="username", queryset=get_user_model().objects.all()
    )
    role = serializers.ChoiceField(choices=Role.choices)

    class Meta:
        model = Membership
        fields = ["username", "role", "created"]
        read_only_fields = ["created"]


class MembershipRoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class TokenSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name=f"{_API}:token-detail")
    team = serializers.SlugRelatedField(slug_field="name", read_only=True)
    state = serializers.SerializerMethodField()

    class Meta:
        model = ApiToken
        fields = [
            "id", "url", "name", "team", "prefix", "read_only", "expires_at", "revoked_at", "created", "last_used_at",
            "state",
        ]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=["active", "expired", "revoked"]))
    def get_state(self, token: ApiToken) -> str:
        return token.state()


class TokenCreateSerializer(serializers.Serializer):
    team = TeamNameField(required=False, help_text="Defaults to your only team")
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)
    read_only = serializers.BooleanField(required=False, default=False)
    expires_in_days = serializers.IntegerField(required=False, min_value=1, max_value=3650, allow_null=True)


class TokenCreatedSerializer(TokenSerializer):
    token = serializers.SerializerMethodField(help_text="The token itself: shown this once, kept nowhere")

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "token"]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.STR)
    def get_token(self, token: ApiToken) -> str:
        return self.context["secret"]


#
# Audit
#


class AuditEventSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name=f"{_API}:auditevent-detail")
    team = serializers.SlugRelatedField(slug_field="name", read_only=True)
    user = serializers.CharField(source="username", read_only=True)

    class Meta:
        model = AuditEvent
        fields = [
            "id", "url", "time", "user", "team", "action", "target_type", "target_id", "target_name", "source",
            "address", "outcome", "detail",
        ]  # fmt: skip
        read_only_fields = fields


class ErrorSerializer(serializers.Serializer):
    """Every error the API answers: a one-line message and a stable code."""

    detail = serializers.CharField()
    code = serializers.CharField()
