"""Use cases for accounts: users, teams and members, API tokens, and the audit log.

The services layer's sibling, and like it these functions trust their caller: an edge checks the
principal with `permissions` first, calls one of them, then records what happened with `audit`
(the edge is also where a refusal is known, and refusals are recorded too). Errors are the
engine's categories, so that every edge maps them as it maps the engine's.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import string
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, AnonymousUser
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import models, transaction
from django.utils import timezone

from containers.choices import AuditOutcome, AuditSource, Role
from containers.engine.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from containers.models import ApiToken, AuditEvent, Membership, Team
from containers.permissions import Principal, role_in

logger = logging.getLogger(__name__)

# `we_<prefix>_<secret>`: recognisable in a leaked log or config file, as GitHub's `ghp_` tokens
# are, and all word characters, so that a double click selects the whole token.
TOKEN_PATTERN = re.compile(r"we_([0-9a-f]{12})_[A-Za-z0-9]{40}")
_SECRET_ALPHABET = string.ascii_letters + string.digits
# Writing last_used_at on every request would make each read a write; a minute is precise enough.
LAST_USED_RESOLUTION = timedelta(minutes=1)
_SECRET_WORDS = ("password", "passwd", "token", "secret", "authorization", "cookie", "credential")


#
# Users, teams and members
#


def create_user(username: str, password: str | None = None, superuser: bool = False) -> AbstractUser:
    """Create a user; without a password, one that cannot log in (it can still use API tokens)."""
    users = get_user_model()
    try:
        users.username_validator(username)
    except ValidationError as err:
        raise InvalidArgument(f"user {username!r}: {' '.join(err.messages)}") from None
    if users.objects.filter(username=username).exists():
        raise AlreadyExists(f"user {username}: already exists")
    user = users(username=username, is_superuser=superuser, is_staff=superuser)
    if password is None:
        user.set_unusable_password()
    else:
        try:
            validate_password(password, user)
        except ValidationError as err:
            raise InvalidArgument(f"user {username}: {' '.join(err.messages)}") from None
        user.set_password(password)
    user.save()
    return user


def create_team(name: str, description: str = "") -> Team:
    """Create a team; its name is slug-like (letters, digits, - and _)."""
    try:
        validate_slug(name)
    except ValidationError:
        raise InvalidArgument(f"team {name!r}: use only letters, digits, - and _") from None
    if Team.objects.filter(name=name).exists():
        raise AlreadyExists(f"team {name}: already exists")
    return Team.objects.create(name=name, description=description)


def add_member(team: Team, user: AbstractUser, role: Role) -> Membership:
    """Make a user a member of a team with a role."""
    if Membership.objects.filter(team=team, user=user).exists():
        raise AlreadyExists(f"team {team}: {user} is a member already")
    return Membership.objects.create(team=team, user=user, role=Role(role))


def set_role(team: Team, user: AbstractUser, role: Role) -> Membership:
    """Change a member's role; the last admin of a team cannot step down."""
    with transaction.atomic():
        membership = _membership(team, user)
        if Role(role) != Role.ADMIN:
            _refuse_last_admin(membership)
        membership.role = Role(role)
        membership.save(update_fields=["role"])
    return membership


def remove_member(team: Team, user: AbstractUser) -> None:
    """Remove a user from a team, unless they are its last admin."""
    with transaction.atomic():
        membership = _membership(team, user)
        _refuse_last_admin(membership)
        membership.delete()


def _membership(team: Team, user: AbstractUser) -> Membership:
    membership = Membership.objects.select_for_update().filter(team=team, user=user).first()
    if membership is None:
        raise NotFound(f"team {team}: {user} is not a member")
    return membership


def _refuse_last_admin(membership: Membership) -> None:
    if membership.role != Role.ADMIN:
        return
    admins = Membership.objects.select_for_update().filter(team=membership.team_id, role=Role.ADMIN)
    if not admins.exclude(pk=membership.pk).exists():
        raise FailedPrecondition(f"team {membership.team}: {membership.user} is its last admin")


#
# API tokens
#


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def mint_token(
    user: AbstractUser, team: Team, name: str = "", read_only: bool = False, expires_in: timedelta | None = None
) -> tuple[ApiToken, str]:
    """Make a token for a member of a team; return the row and the token, which is kept nowhere in clear."""
    if role_in(user, team) is None:
        raise FailedPrecondition(f"team {team}: {user} is not a member")
    if expires_in is not None and expires_in <= timedelta(0):
        raise InvalidArgument(f"token expiry {expires_in}: must be in the future")
    prefix = secrets.token_hex(6)
    token = f"we_{prefix}_{''.join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))}"
    row = ApiToken.objects.create(
        user=user, team=team, name=name, prefix=prefix, digest=_digest(token), read_only=read_only,
        expires_at=timezone.now() + expires_in if expires_in is not None else None,
    )  # fmt: skip
    return row, token


def revoke_token(token: ApiToken) -> ApiToken:
    """Revoke a token for good; revoking it again changes nothing."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def authenticate_token(token: str, source: str = AuditSource.API) -> Principal | None:
    """Return the principal a token stands for, or None if it is unknown, revoked or expired."""
    match = TOKEN_PATTERN.fullmatch(token.strip())
    if match is None:
        return None
    row = ApiToken.objects.select_related("user", "team").filter(prefix=match.group(1)).first()
    if row is None or not hmac.compare_digest(row.digest, _digest(token.strip())):
        return None
    now = timezone.now()
    if row.state(now) != "active" or not row.user.is_active:
        return None
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
        row.last_used_at = now
    return Principal(row.user, row.team, row.read_only, source)


#
# Audit
#


@dataclass(frozen=True)
class Target:
    """What an action was aimed at when there is no row to point to, e.g. a name an outsider tried."""

    type: str
    id: str = ""
    name: str = ""


def audit(
    who: Principal | AbstractUser | AnonymousUser | str | None,
    action: str,
    target: models.Model | Target | None = None,
    outcome: str = AuditOutcome.SUCCESS,
    source: str | None = None,
    address: str | None = None,
    team: Team | None = None,
    **detail: Any,
) -> AuditEvent | None:
    """Record an action; never raise, since a failed record must not fail the action it records.

    `who` is a principal, a user, or the name given by someone who is not one (a failed login,
    the unix user of a management command). The team is `team`, else the target's, else the
    principal's token's. Keys of `detail` that look secret are dropped, and tokens in its text are cut to
    their prefix. `source` and `address` default to the principal's.
    """
    try:
        principal = who if isinstance(who, Principal) else None
        user, username = _actor(principal.user if principal else who)
        team = team or (target if isinstance(target, Team) else getattr(target, "team", None))
        if isinstance(target, Target):
            target_type, target_id, target_name = target.type, target.id, target.name
        elif target is not None:
            target_type, target_id, target_name = target._meta.model_name or "", str(target.pk), str(target)
        else:
            target_type = target_id = target_name = ""
        with transaction.atomic():
            return AuditEvent.objects.create(
                user=user, username=username, team=team or (principal.team if principal else None), action=action,
                target_type=target_type, target_id=target_id, target_name=target_name[:255],
                source=source or (principal.source if principal else AuditSource.WEB),
                address=_address(address or (principal.address if principal else None)),
                outcome=outcome, detail=_scrub(detail),
            )  # fmt: skip
    except Exception:
        logger.exception("audit: cannot record %s", action)
        return None


def _actor(who: AbstractUser | AnonymousUser | str | None) -> tuple[AbstractUser | None, str]:
    """Return the user to link, if any, and the name to keep."""
    if who is None or isinstance(who, str):
        return None, who or ""
    if not who.is_authenticated:
        return None, ""
    return who, who.get_username()


def _address(text: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(text)) if text else None
    except ValueError:
        return None


def _scrub(value: Any) -> Any:
    """Drop the keys that look secret, at any depth, and cut tokens in text down to their prefix."""
    if isinstance(value, dict):
        return {
            key: _scrub(item)
            for key, item in value.items()
            if not any(word in str(key).lower() for word in _SECRET_WORDS)
        }
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    if isinstance(value, str):
        return TOKEN_PATTERN.sub(lambda match: f"we_{match.group(1)}_…", value)
    return value
