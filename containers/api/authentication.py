"""How the REST API knows who asks: a session (with CSRF), or an `Authorization: Bearer we_...` token."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from containers import accounts
from containers.choices import AuditSource
from containers.permissions import Principal


class TokenAuthentication(authentication.BaseAuthentication):
    """Authenticate `Authorization: Bearer we_<prefix>_<secret>`; `request.auth` is the token's Principal.

    A header with another scheme is left to the next authenticator; a bearer token that is unknown,
    revoked or expired is refused with 401, rather than treated as anonymous.
    """

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[AbstractUser, Principal] | None:
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0].lower() != self.keyword.lower():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("invalid bearer header: expected one token")
        principal = accounts.authenticate_token(header[1], AuditSource.API)
        if principal is None:
            raise exceptions.AuthenticationFailed("token: invalid, revoked or expired")
        return principal.user, principal  # type: ignore[return-value]

    def authenticate_header(self, request: Request) -> str:
        # Named in the 401's WWW-Authenticate; without it DRF would answer anonymous requests with 403.
        return f'{self.keyword} realm="api"'


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    """Describe the bearer token in the OpenAPI schema."""

    target_class = "containers.api.authentication.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "we_<prefix>_<secret>",
            "description": "An API token from /api/v1/tokens/ or `manage.py token create`.",
        }
