"""The API's coarse gate; what each principal may do to each object is decided in `containers.permissions`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework import permissions
from rest_framework.request import Request

from containers import accounts
from containers.accounts import Target
from containers.choices import AuditOutcome
from containers.permissions import Principal

if TYPE_CHECKING:  # rest_framework.views imports the permission classes that settings name: a cycle at run time
    from rest_framework.views import APIView


class IsAuthenticatedWritable(permissions.IsAuthenticated):
    """Let in authenticated users; refuse (403, audited) what a read-only token may not do: any unsafe method."""

    message = "a read-only token cannot change anything"

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not super().has_permission(request, view):
            return False
        principal = request.auth
        if isinstance(principal, Principal) and principal.read_only and request.method not in permissions.SAFE_METHODS:
            target = Target("request", name=f"{request.method} {request.path}")
            address = request.META.get("REMOTE_ADDR")
            accounts.audit(principal, "api.write", target, AuditOutcome.DENIED, address=address, reason=self.message)
            return False
        return True
