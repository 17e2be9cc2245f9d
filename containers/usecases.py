"""Use cases with a principal: every state change that a page, the REST API or a websocket asks for.

Each function takes the `Principal` first and does three things in order:

1. authorise with `permissions`: an outsider gets `NotFoundForUser` (404), a member whose role is
   too low `RoleRequired` (403); both refusals are recorded in the audit log as *denied*;
2. record the action in the audit log (`accounts.audit`) with the principal's edge and address;
3. for anything that touches containers or images, create a `Job` and queue its Celery task on
   the owning node's queue, `node.<name>`, and return the job at once.

The web process is not root and never calls the engine: the node agent runs the task, which
calls `services` and marks the job (`tasks._run_job`). An action's audit event says *success* when
the job is accepted; if the job then fails or errors, the task turns that event to *failed*.

Reads go through the `*_for(principal)` helpers, which return only the rows the principal may see.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any, BinaryIO

from celery import Task
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.db.models import Q
from django.http import HttpRequest

from containers import accounts, services, tasks
from containers.accounts import Target
from containers.choices import AuditOutcome, AuditSource, JobKind, Role
from containers.engine.errors import AlreadyExists, Conflict, EngineError, InvalidArgument, NotFound
from containers.engine.images.reference import parse_reference
from containers.models import ApiToken, AuditEvent, Build, Container, Image, ImageTag, Job, Membership, Team
from containers.permissions import (
    NotFoundForUser,
    Principal,
    RoleRequired,
    need,
    role_in,
    role_of,
    scope_queryset,
    visible_teams,
)

__all__ = [
    "CONTAINER_ACTIONS",
    "add_member",
    "audit_for",
    "builds_for",
    "cancel_build",
    "check_host_access",
    "check_tags",
    "commit_container",
    "container_action",
    "containers_for",
    "create_team",
    "images_for",
    "jobs_for",
    "members_for",
    "mint_token",
    "principal_for",
    "queue_build",
    "removal_role",
    "remove_image",
    "remove_member",
    "revoke_token",
    "run_container",
    "set_role",
    "tokens_for",
    "update_team",
]

# What each container verb needs: deleting is an admin's, the rest an operator's (issue 6's roles).
CONTAINER_ACTIONS: dict[str, tuple[JobKind, Role]] = {
    "start": (JobKind.START, Role.OPERATOR),
    "stop": (JobKind.STOP, Role.OPERATOR),
    "restart": (JobKind.RESTART, Role.OPERATOR),
    "kill": (JobKind.KILL, Role.OPERATOR),
    "pause": (JobKind.PAUSE, Role.OPERATOR),
    "unpause": (JobKind.UNPAUSE, Role.OPERATOR),
    "remove": (JobKind.REMOVE, Role.ADMIN),
}
# The options each verb takes, as the services functions name them.
_ACTION_OPTIONS = {"stop": {"timeout", "signal"}, "restart": {"timeout"}, "kill": {"signal"}, "remove": {"force"}}
_IMAGE_ID = re.compile(r"(sha256:)?[0-9a-f]{12,64}")
_CONTAINER_NAME = re.compile(r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]*")
# The host's namespaces a container may join with `--<flag> host` (HostConfig key, flag).
_HOST_NAMESPACES = [("PidMode", "pid"), ("IpcMode", "ipc"), ("UTSMode", "uts"), ("UsernsMode", "userns"),
                    ("CgroupnsMode", "cgroupns"), ("NetworkMode", "network")]  # fmt: skip


def principal_for(request: HttpRequest, source: str = AuditSource.WEB) -> Principal:
    """Return who asks in a request: the token's principal if the API authenticated one, else the session's user."""
    address = request.META.get("REMOTE_ADDR")
    auth = getattr(request, "auth", None)
    if isinstance(auth, Principal):
        return Principal(auth.user, auth.team, auth.read_only, auth.source, address)
    return Principal(request.user, source=source, address=address)


#
# Authorisation, audit and jobs
#


def _allow(
    principal: Principal,
    action: str,
    target: models.Model | Target,
    team: Team | None,
    role: Role | None,
    required: Role,
    subject: str = "",
) -> Role:
    """Return the principal's role, or record the refusal and raise 404 (outsider) or 403 (role too low)."""
    try:
        need(role, required, subject or _subject(target, seen=role is not None))
    except (NotFoundForUser, RoleRequired) as err:
        accounts.audit(principal, action, target, AuditOutcome.DENIED, team=team, reason=str(err))
        raise
    assert role is not None
    return role


@contextmanager
def _attempt(principal: Principal, action: str, target: models.Model | Target, team: Team | None) -> Iterator[None]:
    """Record an expected error in the block (a bad argument, a conflict) as a failed attempt, and raise it on."""
    try:
        yield
    except EngineError as err:
        accounts.audit(principal, action, target, AuditOutcome.FAILED, team=team, error=str(err))
        raise


def _subject(target: models.Model | Target, seen: bool) -> str:
    """Name the target in a refusal: by name for a member, by key only for an outsider, who learns nothing new."""
    if isinstance(target, Target):
        return f"{target.type} {target.name or target.id}".strip()
    return f"{target._meta.verbose_name} {target if seen else target.pk}"


def _queue(
    principal: Principal,
    team: Team | None,
    kind: JobKind,
    node: str,
    target: str,
    action: str,
    subject: models.Model | Target,
    task: Task,
    /,
    **kwargs: Any,
) -> Job:
    """Record the action, create its job and queue `task(job_id, audit_id, **kwargs)` on the node after the commit."""
    job = Job(kind=kind, user=_user(principal), team=team, node=node, target=target)
    job.celery_id = str(job.id)  # the task's ID is the job's, so either finds the other
    job.save()
    event = accounts.audit(principal, action, subject, team=team, job=str(job.id))
    task_kwargs = {"job_id": str(job.id), "audit_id": event.pk if event else None, **kwargs}
    # After the commit: a node agent that took the task first would not find the job.
    transaction.on_commit(lambda: task.apply_async(kwargs=task_kwargs, queue=f"node.{node}", task_id=str(job.id)))
    return job


def _user(principal: Principal) -> AbstractUser | None:
    return principal.user if principal.user.is_authenticated else None  # type: ignore[return-value]


def _site_admin(principal: Principal) -> bool:
    """Whether the principal has a site admin's rights over what it sees: a superuser, not through a read-only token.

    A token confined to a team narrows what its user sees, not what a site admin may do there: move or
    remove a shared image's tags, mount host paths.
    """
    user = principal.user
    return bool(user.is_authenticated and user.is_active and user.is_superuser and not principal.read_only)


def _everywhere(principal: Principal) -> bool:
    """Whether the principal is a site admin acting as one everywhere: not confined to a team."""
    return _site_admin(principal) and principal.team is None


#
# Containers
#


def containers_for(principal: Principal) -> models.QuerySet[Container]:
    """Return the containers the principal may see, with their teams."""
    return scope_queryset(principal, Container.objects.select_related("team"))


def run_container(
    principal: Principal, team: Team, config: Mapping[str, Any], host_config: Mapping[str, Any], name: str = ""
) -> Job:
    """Queue creating and starting a container owned by `team` on this node; return the job.

    `config` and `host_config` are Docker-shaped (`{"Image": "busybox", "Cmd": [...]}`, `{"Memory": ...}`),
    as `engine.lifecycle` takes them. What can be checked without the engine is checked here, with
    InvalidArgument (400): the image must be one the team can see, the name well-formed and free
    (AlreadyExists, 409). The job's result is `{"container": <id>, "name": <name>}`.
    """
    image_ref = str(config.get("Image") or "")
    target = Target("container", name=name or image_ref)
    _allow(principal, "container.run", target, team, role_in(principal, team), Role.OPERATOR, f"team {team}")
    try:
        check_host_access(principal, host_config)
    except PermissionDenied as err:
        accounts.audit(principal, "container.run", target, AuditOutcome.DENIED, team=team, reason=str(err))
        raise
    with _attempt(principal, "container.run", target, team):
        image = _image_for_team(team, image_ref)
        if name:
            _check_container_name(name)
    # An ID prefix is pinned to the image checked: the engine, which sees every team's images, could match another.
    if _IMAGE_ID.fullmatch(image_ref) and image.id.startswith("sha256:" + image_ref.removeprefix("sha256:")):
        config = {**config, "Image": image.id}
    return _queue(
        principal, team, JobKind.RUN, settings.NODE_NAME, name or image_ref, "container.run", target,
        tasks.run_container_job, config=dict(config), host_config=dict(host_config), name=name,
    )  # fmt: skip


def check_host_access(principal: Principal, host_config: Mapping[str, Any]) -> None:
    """Refuse (PermissionDenied, 403) what would hand a container the node itself, unless a site admin asks.

    Whoever may bind-mount `/` is root on the node (Portainer #1015), so host paths are a site
    admin's, except below the directories of `WEBENGINE_BIND_MOUNT_ROOTS` (symbolic links resolved
    first); so are `--privileged`, `--cap-add`, `--device`, the node's namespaces (`--pid host` and
    the like) and lifting seccomp, AppArmor or SELinux confinement (`_site_admin`: through a
    token confined to a team too, never through a read-only one). The Docker API
    (dockerapi/scoping.py) and `run_container` both ask here.
    """
    if _site_admin(principal):
        return
    problem = _host_access(host_config)
    if problem:
        raise PermissionDenied(problem)


def _host_access(host_config: Mapping[str, Any]) -> str:
    """Return why a non-admin may not have this host config, or ""."""
    if host_config.get("Privileged"):
        return "--privileged: only site admins may run privileged containers"
    if host_config.get("CapAdd"):
        return f"--cap-add {','.join(map(str, host_config['CapAdd']))}: only site admins may add capabilities"
    if host_config.get("Devices") or host_config.get("DeviceCgroupRules") or host_config.get("DeviceRequests"):
        return "--device: only site admins may give a container the node's devices"
    for key, flag in _HOST_NAMESPACES:
        if str(host_config.get(key) or "") == "host":
            return f"--{flag} host: only site admins may share the node's {flag} namespace"
    for option in host_config.get("SecurityOpt") or []:
        # Only no-new-privileges confines more; seccomp=, apparmor=, label=, systempaths= can all lift confinement.
        name = str(option).replace(":", "=", 1).partition("=")[0]
        if name != "no-new-privileges":
            return f"--security-opt {name}: only site admins may change a container's confinement"
    roots = [os.path.realpath(root) for root in settings.BIND_MOUNT_ROOTS]
    for source in _bind_sources(host_config):
        real = os.path.realpath(source)
        if not any(os.path.commonpath([real, root]) == root for root in roots):
            where = f" outside {', '.join(roots)}" if roots else ""
            return f"bind mount of {source}: only site admins may mount host paths{where}"
    return ""


def _bind_sources(host_config: Mapping[str, Any]) -> list[str]:
    """Return the host paths of `-v /path:/dest` and `--mount type=bind`."""
    sources = [str(bind).split(":")[0] for bind in host_config.get("Binds") or []]
    sources += [str(m.get("Source") or "") for m in host_config.get("Mounts") or [] if m.get("Type") == "bind"]
    return [source for source in sources if source.startswith("/")]


def _image_for_team(team: Team, ref: str) -> Image:
    """Return the image `ref` (a reference or an ID) names among those the team sees: its own and shared ones."""
    if not ref:
        raise InvalidArgument("image: required")
    images = Image.objects.filter(
        Q(shared=True) | Q(team=team) | Q(pk__in=ImageTag.objects.filter(team=team).values("image_id"))
    )
    if _IMAGE_ID.fullmatch(ref):
        found = images.filter(id__startswith="sha256:" + ref.removeprefix("sha256:")).first()
        if found is not None:
            return found
    try:
        reference = str(parse_reference(ref))
    except InvalidArgument:
        raise InvalidArgument(f"image {ref!r}: not a valid reference") from None
    tagged = ImageTag.objects.filter(reference=reference).filter(
        Q(team=team) | Q(team__isnull=True, image__shared=True)
    )
    image = images.filter(pk__in=tagged.values("image_id")).first()
    if image is None:
        raise InvalidArgument(f"image {ref}: no such image in team {team}")
    return image


def _check_container_name(name: str) -> None:
    if not _CONTAINER_NAME.fullmatch(name):
        raise InvalidArgument(f"container name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    if Container.objects.filter(name=name.lstrip("/")).exists():
        raise AlreadyExists(f"container name {name.lstrip('/')}: already in use")


def container_action(principal: Principal, container: Container, action: str, **options: Any) -> Job:
    """Queue a verb on a container (start, stop, restart, kill, pause, unpause or remove); return the job.

    Options: stop `timeout`, `signal`; restart `timeout`; kill `signal`; remove `force`. Removing
    needs the admin role, the other verbs the operator role.
    """
    if action not in CONTAINER_ACTIONS:
        raise InvalidArgument(f"container action {action!r}: expected one of {', '.join(CONTAINER_ACTIONS)}")
    kind, required = CONTAINER_ACTIONS[action]
    audit_action = f"container.{action}"
    _allow(principal, audit_action, container, container.team, role_of(principal, container), required)
    unknown = set(options) - _ACTION_OPTIONS.get(action, set())
    if unknown:
        with _attempt(principal, audit_action, container, container.team):
            raise InvalidArgument(f"container {action}: unknown options {', '.join(sorted(unknown))}")
    return _queue(
        principal, container.team, kind, container.node, container.name, audit_action, container,
        tasks.container_action_job, container_id=container.id, action=action, options=options,
    )  # fmt: skip


def commit_container(
    principal: Principal,
    container: Container,
    repo_tag: str = "",
    *,
    author: str = "",
    message: str = "",
    changes: Sequence[str] = (),
    pause: bool = True,
) -> Job:
    """Queue making an image of a container (`docker commit`); its tag is owned by the container's team.

    The job's result is `{"image_id": ...}`.
    """
    _allow(principal, "container.commit", container, container.team, role_of(principal, container), Role.OPERATOR)
    with _attempt(principal, "container.commit", container, container.team):
        check_tags(principal, container.team, [repo_tag] if repo_tag else [])
    return _queue(
        principal, container.team, JobKind.COMMIT, container.node, repo_tag or container.name, "container.commit",
        container, tasks.commit_container_job, container_id=container.id, repo_tag=repo_tag or None,
        author=author, message=message, changes=list(changes), pause=pause,
    )  # fmt: skip


#
# Images
#


def images_for(principal: Principal) -> models.QuerySet[Image]:
    """Return the images the principal may see: its teams' and the shared ones."""
    return scope_queryset(principal, Image.objects.all())


def remove_image(principal: Principal, image_or_tag: Image | ImageTag, force: bool = False) -> Job:
    """Queue removing an image (with all its tags) or one tag (the image goes with its last); return the job.

    Who may is `removal_role`'s. Refused with Conflict (409), naming the containers, while a
    container uses an image that would go; `force` does not override that.
    """
    if isinstance(image_or_tag, ImageTag):
        image, ref, team = image_or_tag.image, image_or_tag.familiar, image_or_tag.team
    else:
        image, ref = image_or_tag, image_or_tag.id
        owners = {tag.team for tag in image.tags.select_related("team") if tag.team is not None}
        team = owners.pop() if len(owners) == 1 else None if owners else image.team
    _allow(principal, "image.remove", image_or_tag, team, removal_role(principal, image_or_tag), Role.ADMIN)
    if isinstance(image_or_tag, Image) or image.tags.count() <= 1:
        with _attempt(principal, "image.remove", image_or_tag, team):
            _refuse_in_use(principal, image, ref)
    return _queue(
        principal, team, JobKind.REMOVE, image.node, ref, "image.remove", image_or_tag, tasks.remove_image_job,
        ref=ref, force=force,
    )  # fmt: skip


def removal_role(principal: Principal, image_or_tag: Image | ImageTag) -> Role | None:
    """Return the role that removing an image or tag is judged by: none if unseen, else the lowest over what goes.

    What goes is the tag, or all the image's tags, each judged by the principal's role in its team,
    and with the last tag the image. A tag no team owns is the site admins', and so is a shared
    image (a team may still untag its own tag of one); an image without tags is its team's (`Image.team`).
    """
    if role_of(principal, image_or_tag) is None:
        return None
    if isinstance(image_or_tag, ImageTag):
        image, goes = image_or_tag.image, [image_or_tag]
        image_goes = image.tags.count() <= 1
    else:
        image, goes, image_goes = image_or_tag, list(image_or_tag.tags.select_related("team")), True
    site_admins = Role.ADMIN if _site_admin(principal) else Role.VIEWER
    roles = [(role_in(principal, tag.team) or Role.VIEWER) if tag.team is not None else site_admins for tag in goes]
    if image_goes and image.shared:
        roles.append(site_admins)
    if not goes:
        roles.append((role_in(principal, image.team) or Role.VIEWER) if image.team is not None else site_admins)
    return min(roles)


def _refuse_in_use(principal: Principal, image: Image, ref: str) -> None:
    users = Container.objects.filter(image=image.id)
    if not users.exists():
        return
    seen = sorted(scope_queryset(principal, users).values_list("name", flat=True))
    raise Conflict(f"image {ref}: in use by container {', '.join(seen)}" if seen else f"image {ref}: in use")


#
# Builds
#


def builds_for(principal: Principal) -> models.QuerySet[Build]:
    """Return the builds the principal may see."""
    return scope_queryset(principal, Build.objects.select_related("team", "job"))


def queue_build(
    principal: Principal,
    team: Team,
    upload: BinaryIO,
    *,
    dockerfile: str = "Dockerfile",
    tags: Sequence[str] = (),
    build_args: Mapping[str, str | None] | None = None,
    target: str = "",
    no_cache: bool = False,
    labels: Mapping[str, str] | None = None,
) -> Build:
    """Record a build for `team` from the tar stream `upload` and queue it on this node; return the Build.

    Its job is `build.job`. A tag another team owns is refused (Conflict, 409): the build would take it over.
    """
    subject = Target("build", name=", ".join(tags))
    _allow(principal, "build.create", subject, team, role_in(principal, team), Role.OPERATOR, f"team {team}")
    with _attempt(principal, "build.create", subject, team), transaction.atomic():
        check_tags(principal, team, tags)
        build = services.create_build(
            dockerfile=dockerfile, tags=tags, build_args=build_args, target=target, no_cache=no_cache, labels=labels,
            source=principal.source, team=team,
        )  # fmt: skip
        job = Job(kind=JobKind.BUILD, user=_user(principal), team=team, node=build.node,
                  target=", ".join(tags) or str(build))  # fmt: skip
        job.celery_id = str(job.id)
        job.save()
        build.job = job
        build.save(update_fields=["job"])
    event = accounts.audit(principal, "build.create", build, team=team, job=str(job.id), tags=list(tags))
    services.queue_build(build, upload, job, audit_id=event.pk if event else None)
    return build


def check_tags(principal: Principal, team: Team | None, tags: Sequence[str]) -> None:
    """Refuse (Conflict, 409) to make for `team` a tag that exists and is not the team's, unless a site admin asks.

    Making a tag that exists moves it: another team's would then name our image, and one of no
    team (the shared busybox's) would stop naming the base every team runs.
    """
    for tag in tags:
        try:
            reference = str(parse_reference(tag))
        except InvalidArgument as err:
            raise InvalidArgument(f"tag {tag!r}: {err}") from None
        owners = list(ImageTag.objects.filter(reference=reference).values_list("team", flat=True)[:1])
        if not owners or _site_admin(principal):
            continue
        if owners[0] is None:
            raise Conflict(f"tag {tag}: owned by no team; only site admins may move it")
        if owners[0] != (team.pk if team else None):
            raise Conflict(f"tag {tag}: in use by another team")


def cancel_build(principal: Principal, build: Build) -> Build:
    """Ask a pending or running build to stop (FailedPrecondition, 409, once it has finished)."""
    _allow(principal, "build.cancel", build, build.team, role_of(principal, build), Role.OPERATOR)
    with _attempt(principal, "build.cancel", build, build.team):
        build = services.cancel_build(build.id)
    accounts.audit(principal, "build.cancel", build, team=build.team)
    return build


#
# Jobs and the audit log
#


def jobs_for(principal: Principal) -> models.QuerySet[Job]:
    """Return the jobs of the teams the principal may see."""
    return scope_queryset(principal, Job.objects.select_related("team", "user"))


def audit_for(principal: Principal) -> models.QuerySet[AuditEvent]:
    """Return the audit events the principal may read: its teams' where it is admin; all for a site admin."""
    events = AuditEvent.objects.select_related("team")
    # A read-only token caps what its user may change, not what it may read: an admin's can export the log.
    reader = replace(principal, read_only=False)
    if _everywhere(reader):
        return events
    admin_of = [team.pk for team in visible_teams(reader) if role_in(reader, team) == Role.ADMIN]
    return events.filter(team__in=admin_of)


#
# Teams, members and tokens
#


def create_team(principal: Principal, name: str, description: str = "") -> Team:
    """Create a team (site admins only); its first admin is added with `add_member`."""
    subject = Target("team", name=name)
    _allow(principal, "team.create", subject, None, Role.ADMIN if _everywhere(principal) else Role.VIEWER, Role.ADMIN)
    with _attempt(principal, "team.create", subject, None):
        team = accounts.create_team(name, description)
    accounts.audit(principal, "team.create", team)
    return team


def update_team(principal: Principal, team: Team, description: str) -> Team:
    """Change a team's description (team admins)."""
    _allow(principal, "team.update", team, team, role_in(principal, team), Role.ADMIN, f"team {team}")
    team.description = description
    team.save(update_fields=["description"])
    accounts.audit(principal, "team.update", team)
    return team


def members_for(principal: Principal, team: Team) -> models.QuerySet[Membership]:
    """Return a team's members, for anyone in it (404 for outsiders)."""
    need(role_in(principal, team), Role.VIEWER, f"team {team}")
    return Membership.objects.filter(team=team).select_related("user", "team")


def add_member(principal: Principal, team: Team, user: AbstractUser | str, role: Role) -> Membership:
    """Make a user (or a username) a member of a team (team admins only; AlreadyExists if they are one)."""
    subject = user if isinstance(user, models.Model) else Target("user", name=user)
    _allow(principal, "member.add", subject, team, role_in(principal, team), Role.ADMIN, f"team {team}")
    with _attempt(principal, "member.add", subject, team):
        membership = accounts.add_member(team, _resolve_user(user), role)
    accounts.audit(principal, "member.add", membership.user, team=team, role=str(role))
    return membership


def set_role(principal: Principal, team: Team, user: AbstractUser | str, role: Role) -> Membership:
    """Change a member's role (team admins only; the last admin cannot step down: FailedPrecondition)."""
    subject = user if isinstance(user, models.Model) else Target("user", name=user)
    _allow(principal, "member.set_role", subject, team, role_in(principal, team), Role.ADMIN, f"team {team}")
    with _attempt(principal, "member.set_role", subject, team):
        membership = accounts.set_role(team, _resolve_user(user), role)
    accounts.audit(principal, "member.set_role", membership.user, team=team, role=str(role))
    return membership


def remove_member(principal: Principal, team: Team, user: AbstractUser | str) -> None:
    """Remove a user from a team (team admins only; not its last admin)."""
    subject = user if isinstance(user, models.Model) else Target("user", name=user)
    _allow(principal, "member.remove", subject, team, role_in(principal, team), Role.ADMIN, f"team {team}")
    with _attempt(principal, "member.remove", subject, team):
        found = _resolve_user(user)
        accounts.remove_member(team, found)
    accounts.audit(principal, "member.remove", found, team=team)


def _resolve_user(user: AbstractUser | str) -> AbstractUser:
    if not isinstance(user, str):
        return user
    found = get_user_model().objects.filter(username=user).first()
    if found is None:
        raise NotFound(f"user {user}: not found")
    return found


def tokens_for(principal: Principal) -> models.QuerySet[ApiToken]:
    """Return the principal's own tokens (a token sees those of its team only)."""
    tokens = ApiToken.objects.filter(user=_user(principal)).select_related("team")
    return tokens.filter(team=principal.team) if principal.team is not None else tokens


def mint_token(
    principal: Principal, team: Team, name: str = "", read_only: bool = False, expires_in: timedelta | None = None
) -> tuple[ApiToken, str]:
    """Make a token for the principal's own user in one of its teams; return the row and the secret, shown once.

    Any member may have tokens; a token's principal mints only for its own team, and a read-only one not at all.
    """
    subject = Target("token", name=name)
    _allow(principal, "token.create", subject, team, role_in(principal, team), Role.VIEWER, f"team {team}")
    _refuse_read_only(principal, "token.create", subject, team)
    with _attempt(principal, "token.create", subject, team):
        token, secret = accounts.mint_token(principal.user, team, name, read_only, expires_in)  # type: ignore[arg-type]
    accounts.audit(principal, "token.create", token, name=name, read_only=read_only, expires_at=token.expires_at)
    return token, secret


def revoke_token(principal: Principal, token: ApiToken) -> ApiToken:
    """Revoke one of the principal's own tokens (404 for anyone else's); revoking twice changes nothing."""
    mine = tokens_for(principal).filter(pk=token.pk).exists()
    _allow(principal, "token.revoke", token, token.team, Role.VIEWER if mine else None, Role.VIEWER, "token")
    _refuse_read_only(principal, "token.revoke", token, token.team)
    token = accounts.revoke_token(token)
    accounts.audit(principal, "token.revoke", token)
    return token


def _refuse_read_only(principal: Principal, action: str, target: models.Model | Target, team: Team) -> None:
    if principal.read_only:
        err = PermissionDenied("a read-only token cannot manage tokens")
        accounts.audit(principal, action, target, AuditOutcome.DENIED, team=team, reason=str(err))
        raise err
