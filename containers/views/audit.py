"""The audit page: who did what, where and how it ended, with filters, pages and a CSV export of the same rows."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.mixins import LoginRequiredMixin
from django.views.generic import ListView

from containers import usecases
from containers.choices import Role
from containers.forms import AuditFilterForm
from containers.models import Team
from containers.views.common import query_without, roles_by_team

# The REST API serves the export; the page links to it with the same filters, in the API's terms.
EXPORT_URL = "/api/v1/audit/export.csv"


class AuditListView(LoginRequiredMixin, ListView):
    template_name = "containers/audit.html"
    paginate_by = 50
    context_object_name = "events"

    def get_queryset(self) -> Any:
        self.principal = usecases.principal_for(self.request)
        roles = roles_by_team(self.principal)
        self.admin_of = Team.objects.filter(pk__in=[t for t, role in roles.items() if role >= Role.ADMIN])
        self.form = AuditFilterForm(self.request.GET or None, teams=self.admin_of.order_by("name"))
        events = usecases.audit_for(self.principal)
        if self.form.is_bound and self.form.is_valid():
            events = self.form.filter(events)
        return events.order_by("-time")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        valid = self.form.is_bound and self.form.is_valid()
        export = self.form.export_query() if valid else ""
        return super().get_context_data(
            section="audit", form=self.form, query=query_without(self.request, "page"),
            export_url=f"{EXPORT_URL}?{export}" if export else EXPORT_URL,
            can_read=self.request.user.is_superuser or self.admin_of.exists(), **kwargs,
        )  # fmt: skip
