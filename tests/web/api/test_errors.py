"""Every error has one JSON shape, `{"detail", "code"}`, with the engine's categories mapped in one place."""

from __future__ import annotations

from django.http import Http404
from rest_framework import exceptions

from containers.api.exceptions import exception_handler
from containers.engine.errors import (
    AlreadyExists,
    ImageInUse,
    ImageNotFound,
    InvalidReference,
    InvalidStateTransition,
    Unavailable,
)
from containers.permissions import NotFoundForUser, Role, RoleRequired


def answer(exc: Exception) -> tuple[int, dict]:
    response = exception_handler(exc, {"view": None})
    return response.status_code, response.data


def test_it_maps_engine_categories_to_statuses() -> None:
    assert answer(ImageNotFound("No such image: nope")) == (404, {"detail": "No such image: nope", "code": "not_found"})
    assert answer(AlreadyExists("team red: already exists"))[0] == 409
    assert answer(ImageInUse("image x: in use"))[1]["code"] == "conflict"
    assert answer(InvalidStateTransition("exited", "paused")) == (
        409, {"detail": "container: cannot move from exited to paused", "code": "failed_precondition"}
    )  # fmt: skip
    assert answer(InvalidReference("invalid reference format"))[0] == 400
    assert answer(Unavailable("node agent: not answering")) == (
        503, {"detail": "node agent: not answering", "code": "unavailable"}
    )  # fmt: skip


def test_every_404_reads_the_same_whatever_it_hides() -> None:
    expected = (404, {"detail": "Not found.", "code": "not_found"})
    assert answer(NotFoundForUser("container red-web: not found")) == expected
    assert answer(Http404("No Container matches")) == expected
    assert answer(exceptions.NotFound()) == expected


def test_a_role_too_low_says_which_role_is_needed() -> None:
    assert answer(RoleRequired(Role.ADMIN, Role.OPERATOR, "container red-web")) == (403, {
        "detail": "container red-web: needs the admin role, you have operator", "code": "role_required",
        "required_role": "admin",
    })  # fmt: skip


def test_a_validation_error_keeps_its_fields_under_a_one_line_summary() -> None:
    status, body = answer(exceptions.ValidationError({"image": ["required"]}))
    assert (status, body["detail"], body["code"], body["errors"]) == (400, "image: required", "invalid",
                                                                      {"image": ["required"]})  # fmt: skip


def test_a_surprise_is_a_500_without_its_traceback() -> None:
    status, body = answer(KeyError("secret internals"))
    assert (status, body) == (500, {"detail": "internal server error", "code": "error"})
