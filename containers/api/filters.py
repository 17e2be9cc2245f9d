"""Filter sets for the API's lists (django-filter): `?status=running&team=red`, time ranges for the audit log."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from containers.choices import AuditOutcome, AuditSource, BuildStatus, ContainerStatus, JobKind, JobStatus
from containers.models import AuditEvent, Build, Container, Image, Job


class TeamFilterSet(django_filters.FilterSet):
    """Filter by team name; the list is already scoped, so naming another team finds nothing."""

    team = django_filters.CharFilter(field_name="team__name")


class ContainerFilterSet(TeamFilterSet):
    status = django_filters.MultipleChoiceFilter(choices=ContainerStatus.choices)
    name = django_filters.CharFilter(lookup_expr="icontains")
    image = django_filters.CharFilter(field_name="image_ref", lookup_expr="icontains")

    class Meta:
        model = Container
        fields = ["team", "status", "name", "image", "node"]


class ImageFilterSet(django_filters.FilterSet):
    tag = django_filters.CharFilter(field_name="tags__familiar", lookup_expr="icontains", distinct=True)
    dangling = django_filters.BooleanFilter(field_name="tags", lookup_expr="isnull", distinct=True)

    class Meta:
        model = Image
        fields = ["tag", "shared", "node", "dangling"]


class BuildFilterSet(TeamFilterSet):
    status = django_filters.MultipleChoiceFilter(choices=BuildStatus.choices)

    class Meta:
        model = Build
        fields = ["team", "status", "node"]


class JobFilterSet(TeamFilterSet):
    status = django_filters.MultipleChoiceFilter(choices=JobStatus.choices)
    kind = django_filters.MultipleChoiceFilter(choices=JobKind.choices)

    class Meta:
        model = Job
        fields = ["team", "status", "kind", "node"]


class AuditEventFilterSet(TeamFilterSet):
    user = django_filters.CharFilter(field_name="username")
    action = django_filters.CharFilter(
        help_text="Exact, or a prefix ending with a dot: `container.`", method="by_action"
    )
    target = django_filters.CharFilter(help_text="A target's ID or name, exactly", method="by_target")
    target_type = django_filters.CharFilter()
    outcome = django_filters.MultipleChoiceFilter(choices=AuditOutcome.choices)
    source = django_filters.MultipleChoiceFilter(choices=AuditSource.choices)
    since = django_filters.IsoDateTimeFilter(field_name="time", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="time", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["team", "user", "action", "target", "target_type", "outcome", "source", "since", "until"]

    def by_action(self, queryset: QuerySet[AuditEvent], name: str, value: str) -> QuerySet[AuditEvent]:
        if value.endswith("."):
            return queryset.filter(action__startswith=value)
        return queryset.filter(action=value)

    def by_target(self, queryset: QuerySet[AuditEvent], name: str, value: str) -> QuerySet[AuditEvent]:
        return queryset.filter(Q(target_id=value) | Q(target_name=value))
