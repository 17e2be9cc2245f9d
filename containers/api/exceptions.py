"""Map every error the API can raise to one JSON shape, `{"detail": ..., "code": ...}`, and a status.

The engine's categories map here and nowhere else in the API (STYLE §3). A 404 always reads the
same, so that an outsider cannot tell a resource it may not see from one that does not exist; an
unexpected error is logged and answered 500 without its traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from containers.engine.errors import (
    AlreadyExists,
    Conflict,
    EngineError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from containers.permissions import RoleRequired

logger = logging.getLogger(__name__)

# Checked in order: a subclass before its category.
ENGINE_ERRORS: list[tuple[type[EngineError], int, str]] = [
    (NotFound, status.HTTP_404_NOT_FOUND, "not_found"),
    (AlreadyExists, status.HTTP_409_CONFLICT, "already_exists"),
    (Conflict, status.HTTP_409_CONFLICT, "conflict"),
    (FailedPrecondition, status.HTTP_409_CONFLICT, "failed_precondition"),
    (InvalidArgument, status.HTTP_400_BAD_REQUEST, "invalid_argument"),
    (Unavailable, status.HTTP_503_SERVICE_UNAVAILABLE, "unavailable"),
]
NOT_FOUND = {"detail": "Not found.", "code": "not_found"}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """Return the JSON error response for `exc` (the REST_FRAMEWORK EXCEPTION_HANDLER)."""
    if isinstance(exc, Http404 | exceptions.NotFound):
        return Response(NOT_FOUND, status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, RoleRequired):
        body = {"detail": str(exc), "code": "role_required", "required_role": str(exc.required)}
        return Response(body, status=status.HTTP_403_FORBIDDEN)
    if isinstance(exc, PermissionDenied):
        return Response({"detail": str(exc) or "permission denied", "code": "permission_denied"}, status=403)
    if isinstance(exc, EngineError):
        for category, code, name in ENGINE_ERRORS:
            if isinstance(exc, category):
                return Response({"detail": str(exc), "code": name}, status=code)
        logger.error("engine error without a category: %r", exc)
        return Response({"detail": str(exc), "code": "engine_error"}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    if isinstance(exc, exceptions.ValidationError):
        body = {"detail": _first_message(exc.detail), "code": "invalid", "errors": exc.detail}
        return Response(body, status=exc.status_code)
    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("unexpected error in %s", context.get("view").__class__.__name__, exc_info=exc)
        body = {"detail": "internal server error", "code": "error"}
        return Response(body, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    if isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        response.data = {"detail": str(exc.detail), "code": codes if isinstance(codes, str) else "error"}
    return response


def _first_message(detail: Any) -> str:
    """Return the first message of a ValidationError's detail, prefixed with its field: a one-line summary."""
    if isinstance(detail, dict):
        field, value = next(iter(detail.items()))
        inner = _first_message(value)
        return inner if field == "non_field_errors" else f"{field}: {inner}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)
