"""Who may do what: the one place access is decided, as pure functions over the models.

Glossary:
- a *principal* is who asks, as the edges see it: a user with the teams a session grants (all of
  theirs), or with the one team of an API token; a read-only token caps the role at viewer.
  Every function here takes a `Principal` or a plain user (a session's principal).
- a *role* is what a principal may do in a team: viewer < operator < admin. Site admins
  (`is_superuser`) are admin in every team a principal can reach.
- an *owned* row has a `team`; a principal sees the rows of its teams, and images that are
  `shared` (the busybox base) besides. Images are owned through their tags, and by the team
  whose job stored them (`Image.team`), which keeps one left without tags its team's.

Outsiders get `NotFoundForUser` (404), never a hint that the resource exists; a member whose
role is too low gets `RoleRequired` (403) with the role needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from django.contrib.auth.models import AbstractUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Q
from django.http import Http404

from containers.choices import AuditSource, Role
from containers.engine.errors import NotFound
from containers.models import Image, ImageTag, Membership, Team

__all__ = [
    "NotFoundForUser",
    "Principal",
    "Role",
    "RoleRequired",
    "can",
    "get_for_user",
    "need",
    "role_in",
    "role_of",
    "scope_queryset",
    "visible_teams",
]

M = TypeVar("M", bound=models.Model)


# Both bases on purpose: the Docker API maps engine categories and Django and DRF map Http404, so
# every edge answers 404 without a handler of its own.
class NotFoundForUser(NotFound, Http404):
    """The object does not exist, or the principal may not know that it does (HTTP 404)."""


class RoleRequired(PermissionDenied):
    """A member whose role in the object's team is too low for the operation (HTTP 403)."""

    def __init__(self, required: Role, actual: Role, subject: str = "") -> None:
        self.required = required
        self.actual = actual
        prefix = f"{subject}: " if subject else ""
        super().__init__(f"{prefix}needs the {required} role, you have {actual}")


@dataclass(frozen=True)
class Principal:
    """Who asks: a user, the team a token confines it to (None: all its teams), through which edge, from where."""

    user: AbstractUser | AnonymousUser
    team: Team | None = None
    read_only: bool = False
    source: str = AuditSource.WEB
    address: str | None = None


Who = Principal | AbstractUser | AnonymousUser


def _principal(who: Who) -> Principal:
    return who if isinstance(who, Principal) else Principal(who)


def _active(principal: Principal) -> bool:
    return bool(principal.user.is_authenticated and principal.user.is_active)


def _everywhere(principal: Principal) -> bool:
    """Whether the principal sees every row: a site admin not confined to a team by a token."""
    return _active(principal) and principal.user.is_superuser and principal.team is None


def _cap(principal: Principal, role: Role | None) -> Role | None:
    if role is not None and principal.read_only:
        return min(role, Role.VIEWER)
    return role


def role_in(who: Who, team: Team | None) -> Role | None:
    """Return the principal's role in a team, or None if it is not in it (or cannot reach it)."""
    principal = _principal(who)
    if team is None or not _active(principal):
        return None
    if principal.team is not None and principal.team.pk != team.pk:
        return None
    if principal.user.is_superuser:
        return _cap(principal, Role.ADMIN)
    role = Membership.objects.filter(user=principal.user, team=team).values_list("role", flat=True).first()
    return _cap(principal, Role(role) if role else None)


def can(who: Who, team: Team | None, need: Role) -> bool:
    """Whether the principal has at least the role `need` in the team."""
    role = role_in(who, team)
    return role is not None and role >= need


def visible_teams(who: Who) -> models.QuerySet[Team]:
    """Return the teams the principal can reach."""
    principal = _principal(who)
    if not _active(principal):
        return Team.objects.none()
    teams = Team.objects.all()
    if principal.team is not None:
        teams = teams.filter(pk=principal.team.pk)
    if not principal.user.is_superuser:
        teams = teams.filter(memberships__user=principal.user)
    return teams


def scope_queryset(who: Who, qs: models.QuerySet[M], field: str = "team") -> models.QuerySet[M]:
    """Return the rows of `qs` the principal may see: those owned (through `field`) by its teams.

    Images are owned through their tags: a principal sees the images its teams tagged or stored
    and the shared ones; of tags, its teams' own, and those of shared images that no team owns.
    """
    principal = _principal(who)
    if _everywhere(principal):
        return qs
    teams = visible_teams(principal)
    if qs.model is Image:
        tagged = ImageTag.objects.filter(team__in=teams).values("image_id")
        return qs.filter(Q(shared=True) | Q(team__in=teams) | Q(pk__in=tagged))
    if qs.model is ImageTag:
        return qs.filter(Q(team__in=teams) | Q(team__isnull=True, image__shared=True))
    return qs.filter(**{f"{field}__in": teams})


def role_of(who: Who, obj: models.Model) -> Role | None:
    """Return the principal's role on one object: its role in the object's team.

    A shared image, or a tag of one that no team owns, is anyone's to read and a site admin's to change.
    """
    principal = _principal(who)
    if isinstance(obj, Team):
        return role_in(principal, obj)
    if isinstance(obj, Image):
        teams = Team.objects.filter(Q(image_tags__image=obj) | Q(pk=obj.team_id)).distinct()
        roles = [role for team in teams if (role := role_in(principal, team)) is not None]
        if roles:
            return max(roles)
        return _unowned_role(principal, shared=obj.shared)
    team = obj.team  # type: ignore[attr-defined]
    if team is not None:
        return role_in(principal, team)
    return _unowned_role(principal, shared=isinstance(obj, ImageTag) and obj.image.shared)


def _unowned_role(principal: Principal, shared: bool) -> Role | None:
    if _everywhere(principal):
        return _cap(principal, Role.ADMIN)
    if shared and _active(principal):
        return Role.VIEWER
    return None


def get_for_user(who: Who, qs: models.QuerySet[M], **lookup: Any) -> tuple[M, Role]:
    """Return the object `qs.get(**lookup)` and the principal's role on it; 404 if it may not see it."""
    try:
        obj = scope_queryset(who, qs).get(**lookup)
    except qs.model.DoesNotExist:
        raise _not_found(qs.model, lookup) from None
    role = role_of(who, obj)
    if role is None:
        raise _not_found(qs.model, lookup)
    return obj, role


def _not_found(model: type[models.Model], lookup: dict[str, Any]) -> NotFoundForUser:
    name = " ".join(str(value) for value in lookup.values())
    return NotFoundForUser(f"{model._meta.verbose_name} {name}: not found")


def need(role: Role | None, required: Role, subject: str = "") -> None:
    """Refuse unless `role` is at least `required`: 404 for an outsider (no role), 403 for a member."""
    if role is None:
        raise NotFoundForUser(f"{subject}: not found" if subject else "not found")
    if role < required:
        raise RoleRequired(required, role, subject)
