"""Who may do what on the Docker API: one rule per route, wrapped around the route's handler.

`RULES` names every route as moby's documentation does ("POST /containers/{id}/start") with its
rule, and `guard` wraps each handler in its rule when the router is built: a route without a rule
stops the server from starting, so that none slips past. A rule, around its handler:

- before it, finds what the request names (a container by ID, name or ID prefix, among those the
  principal sees; an exec by ID; an image by reference or ID) and checks the principal's role on
  it with `permissions`. An outsider gets moby's own 404 (`No such container: x`), so that the CLI
  prints what Docker prints for a missing object; a member whose role is too low, or a read-only
  token, gets 403 and why. Where the name or prefix is also another team's container's, the handler
  is handed the full ID of the one checked, so that it never acts on a namesake.
- after it, narrows lists and counts to what the principal sees: `docker ps`, `docker images`,
  `docker info`, `docker system df`, `docker events`.
- for what the request creates, names the owner: a new container gets the `webengine.team` label
  (a request that sets it itself is refused), and new tags the team of `owner(request)`, which the
  handlers hand to `services`. A tag that another team owns, or a shared image's, is not taken over.

Ownership: a container's team is its `webengine.team` label (`services.TEAM_LABEL`), which only the
create paths set and its Container row copies; images are owned through their tags (ImageTag rows)
and `Image.team`, and the `shared` ones (the busybox base) are every team's to see and run.

Roles (issue 6): a viewer reads (inspect, logs, top, stats, diff, export, cp out, wait, attach
without stdin); an operator also changes (create, start, stop, kill, restart, pause, rename, exec,
attach with stdin, cp in, commit, build, load, import, tag); an admin also deletes (rm, rmi, prune).

Audit: every request that can change something is recorded (`accounts.audit`, source docker, the
TCP peer's address, none on the unix socket) with its outcome: success, denied or failed. An
attempt on another team's object goes to that team's log, where its admins see it; one on nothing
that exists, to the site admins' alone; so the log tells no one who tried whether a name is taken.
Reads are not recorded.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import io
import json
import re
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.core.exceptions import PermissionDenied

from containers import accounts, services, usecases
from containers.accounts import Target
from containers.choices import AuditOutcome, AuditSource, Role
from containers.dockerapi.httpserver import ApiError, Reply, Request, Response, Streamed, json_response
from containers.dockerapi.router import Handler, Route
from containers.dockerapi.state import ACTIVITY, EXECS
from containers.dockerapi.system_routes import container_counts
from containers.engine.errors import AlreadyExists, ImageNotFound, InvalidArgument, NotFound
from containers.engine.images.reference import Reference, parse_any_reference, parse_reference
from containers.engine.images.store import Image as StoredImage
from containers.engine.lifecycle import ContainerNotFound, Record
from containers.engine.snapshots.unpack import chain_ids
from containers.models import Image, ImageTag, Team
from containers.permissions import NotFoundForUser, Principal, need, role_in, scope_queryset, visible_teams

Rule = Callable[[Request, Handler], Reply]

_TEAM_LABEL = services.TEAM_LABEL


def guard(routes: Iterable[Route]) -> list[Route]:
    """Return the routes with each handler wrapped in its rule; LookupError for a route that has none."""
    guarded = []
    for route in routes:
        key = f"{route.method} {_template(route.pattern.pattern)}"
        if key not in RULES:
            raise LookupError(f"{key}: no rule in containers/dockerapi/scoping.py RULES; every route needs one")
        guarded.append(Route(route.method, route.pattern, _wrapped(RULES[key], route.handler)))
    return guarded


def _template(pattern: str) -> str:
    """Write a route's regex as moby's documentation does: `(?P<id>[^/]+)` as `{id}`."""
    return re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern)


def _wrapped(rule: Rule, handler: Handler) -> Handler:
    return lambda request: rule(request, handler)


#
# Principals, teams, roles
#


def _who(request: Request) -> Principal:
    assert request.principal is not None, "server.py finds a principal for every route but /_ping and /version"
    return request.principal


def _everywhere(principal: Principal) -> bool:
    """Whether the principal sees every object, owned or not: a site admin not confined to a team (the unix socket)."""
    return bool(principal.user.is_superuser and principal.team is None)


def owner(request: Request) -> Team | None:
    """Return the team that owns what the request creates: the token's; none for a site admin on the unix socket."""
    return request.principal.team if request.principal is not None else None


def _seen_teams(principal: Principal) -> set[int] | None:
    """Return the IDs of the teams whose objects the principal sees; None: every object."""
    if _everywhere(principal):
        return None
    return set(visible_teams(principal).values_list("pk", flat=True))


def _team_id(labels: Mapping[str, str] | None) -> int | None:
    """Return the ID of the team a container's labels name as its owner, if any."""
    value = str((labels or {}).get(_TEAM_LABEL, ""))
    return int(value) if value.isdigit() else None


def _sees(teams: set[int] | None, labels: Mapping[str, str] | None) -> bool:
    return teams is None or _team_id(labels) in teams


def _team(labels: Mapping[str, str] | None) -> Team | None:
    found = _team_id(labels)
    return Team.objects.filter(pk=found).first() if found is not None else None


def _role(principal: Principal, team: Team | None) -> Role | None:
    """Return the principal's role on what `team` owns; what no team owns is a site admin's."""
    if team is None:
        return Role.ADMIN if _everywhere(principal) else None
    return role_in(principal, team)


def _need(principal: Principal, role: Role | None, required: Role, subject: str, missing: str) -> None:
    """Refuse unless `role` is at least `required`: `missing` (404) without a role, 403 with too low a one."""
    if role is None:
        raise NotFoundForUser(missing)
    if principal.read_only and required > Role.VIEWER:
        raise PermissionDenied(f"{subject}: a read-only token cannot change anything")
    need(role, required, subject)


def _need_in_team(principal: Principal, required: Role) -> None:
    """Refuse unless the principal has `required` in the team it creates for (a site admin on the socket has)."""
    team = principal.team
    _need(principal, _role(principal, team), required, f"team {team}", f"team {team}: not found")


#
# The audit log
#


@dataclass
class _Attempt:
    """A request that can change something, as the log will record it; rules fill in the target and team."""

    principal: Principal
    action: str
    target: Target
    team: Team | None = None

    def record(self, outcome: str, **detail: Any) -> None:
        user = self.principal.user
        # The user, not the principal: the log's team is then this one's alone (none for an attempt on
        # nothing), never the token's by default. The unix socket's site admin is no stored user: by name.
        who = user if user.pk is not None else user.get_username()
        accounts.audit(
            who, self.action, self.target, outcome, source=AuditSource.DOCKER, address=self.principal.address,
            team=self.team, **detail,
        )  # fmt: skip


def _audited(attempt: _Attempt | None, run: Callable[[], Reply], progress: bool = False) -> Reply:
    """Run the request and record how it went (nothing for a read, `attempt` None).

    A `progress` stream (build, load, import) is recorded when it ends: failed if it carried an error.
    """
    if attempt is None:
        return run()
    try:
        reply = run()
    except (NotFoundForUser, PermissionDenied) as err:
        attempt.record(AuditOutcome.DENIED, reason=str(err))
        raise
    except ApiError as err:
        attempt.record(AuditOutcome.FAILED, error=err.message)
        raise
    except Exception as err:
        attempt.record(AuditOutcome.FAILED, error=str(err))
        raise
    if progress and isinstance(reply, Streamed):
        return dataclasses.replace(reply, chunks=_recorded_at_end(reply.chunks, attempt))
    if isinstance(reply, Response) and reply.status >= 400:
        attempt.record(AuditOutcome.FAILED, error=reply.body.decode(errors="replace").strip())
    elif isinstance(reply, Response):
        # Recorded after the answer: a crash between the change and its record loses the record
        # either way, and the client need not wait for the database. A container's change is
        # recorded once its run's streams are done (`Activity.after_run`): a `docker run`'s create
        # and start are answered while its attach and wait are under way, which a write on the
        # request's thread would hold up (one interpreter runs all); others right after the answer.
        record = partial(attempt.record, AuditOutcome.SUCCESS)
        if attempt.target.type == "container" and attempt.target.id:
            ACTIVITY.after_run(attempt.target.id, record, expect_attach=attempt.action == "container.create")
        else:
            reply.then = record
    else:
        attempt.record(AuditOutcome.SUCCESS)
    return reply


def _recorded_at_end(chunks: Generator[bytes, None, None], attempt: _Attempt) -> Generator[bytes, None, None]:
    error, ended = "", False
    try:
        for chunk in chunks:
            if b'"errorDetail"' in chunk:
                try:
                    error = json.loads(chunk).get("error") or "failed"
                except ValueError:
                    error = "failed"
            yield chunk
        ended = True
    finally:
        chunks.close()
        if error or not ended:
            attempt.record(AuditOutcome.FAILED, error=error or "the client went away")
        else:
            attempt.record(AuditOutcome.SUCCESS)


#
# Containers
#


def _lookup(records: list[Record], ref: str) -> Record | None:
    """Find `ref` as the engine does: a full ID, then a name (with or without its slash), then a unique ID prefix."""
    for record in records:
        if record.id == ref:
            return record
    for record in records:
        if record.name == ref.lstrip("/"):
            return record
    matches = [record for record in records if ref and record.id.startswith(ref)]
    if len(matches) > 1:
        raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
    return matches[0] if matches else None


def _container(principal: Principal, ref: str, attempt: _Attempt | None) -> Record:
    """Return the container `ref` names among those the principal sees; `No such container` (404) otherwise."""
    containers = services.engine().containers
    if _everywhere(principal):
        record = containers.get(ref)
    else:
        records = containers.list()
        teams = _seen_teams(principal)
        found = _lookup([r for r in records if _sees(teams, r.config.get("Labels"))], ref)
        if found is None:
            try:
                other = _lookup(records, ref)
            except InvalidArgument:
                other = None
            if other is None:
                raise ContainerNotFound(ref)
            if attempt is not None:
                attempt.target = Target("container", other.id, other.name)
                attempt.team = _team(other.config.get("Labels"))
            raise NotFoundForUser(f"No such container: {ref}")
        record = found
    if attempt is not None:
        attempt.target = Target("container", record.id, record.name)
        attempt.team = _team(record.config.get("Labels"))
    return record


def _resolves_to(ref: str, record: Record) -> bool:
    """Whether the engine, which sees every team's containers, finds `record` for `ref` too."""
    try:
        return services.engine().containers.resolve(ref) == record.id
    except (NotFound, InvalidArgument):
        return False


def container(
    required: Role, action: str = "", *, query: str = "", check: Callable[[Request], None] | None = None
) -> Rule:
    """The container the path names (or the query's `query` argument): `required` in its team; `action` recorded.

    `check` runs once the role is checked, for what else the request must not do (take a name, a tag).
    """

    def rule(request: Request, handler: Handler) -> Reply:
        principal = _who(request)
        ref = request.arg(query) if query else request.params["id"]
        attempt = _Attempt(principal, action, Target("container", name=ref)) if action else None

        def run() -> Reply:
            if not ref:
                return handler(request)  # which answers moby's 400 for the missing argument
            record = _container(principal, ref, attempt)
            team = _team(record.config.get("Labels"))
            missing = f"No such container: {ref}"
            _need(principal, _role(principal, team), required, f"container {record.name}", missing)
            if check is not None:
                check(request)
            if not _resolves_to(ref, record):
                # A name or prefix that is also another team's: the handler gets the ID of the one checked.
                if query:
                    request.query[query] = [record.id]
                else:
                    request.params["id"] = record.id
            if not query:
                request.found["container"] = record
            return handler(request)

        return _audited(attempt, run)

    return rule


_LOOK = container(Role.VIEWER)
_ATTACH_STDIN = container(Role.OPERATOR, "container.attach")


def _attach(request: Request, handler: Handler) -> Reply:
    """An attach reads, unless it writes to the container's stdin."""
    return (_ATTACH_STDIN if request.flag("stdin") else _LOOK)(request, handler)


def _attach_ws(request: Request, handler: Handler) -> Reply:
    """As `_attach`; before API 1.42 the websocket attach takes every stream, stdin included (websocket.py)."""
    major, _, minor = request.version.partition(".")
    stdin = request.flag("stdin") or (int(major), int(minor or 0)) < (1, 42)
    return (_ATTACH_STDIN if stdin else _LOOK)(request, handler)


def _name_free(principal: Principal, name: str) -> None:
    """Refuse a name another team's container has, without naming that container (the engine's message would)."""
    name = name.lstrip("/")
    if not name or _everywhere(principal):
        return
    teams = _seen_teams(principal)
    for record in services.engine().containers.list():
        if record.name == name and not _sees(teams, record.config.get("Labels")):
            raise AlreadyExists(
                f'Conflict. The container name "/{name}" is already in use by a container of another team. '
                "Choose another name."
            )


def _new_name_free(request: Request) -> None:
    _name_free(_who(request), request.arg("name"))


def _labelled(principal: Principal, labels: dict[str, str]) -> dict[str, str]:
    """Return the labels with the owner's `webengine.team`; a request may not set it, but a site admin's may."""
    claimed = labels.get(_TEAM_LABEL)
    if claimed is None:
        # Set even to "" for no team: a label the image carries would otherwise name the owner.
        return {**labels, _TEAM_LABEL: str(principal.team.pk) if principal.team is not None else ""}
    if not _everywhere(principal):
        raise PermissionDenied(f"label {_TEAM_LABEL}: set by the server to the token's team, not by a request")
    if claimed and not Team.objects.filter(pk=_team_id(labels) or 0).exists():
        raise InvalidArgument(f"label {_TEAM_LABEL}={claimed}: no team has that ID")
    return labels


def _create_container(request: Request, handler: Handler) -> Reply:
    principal = _who(request)
    name = request.arg("name").lstrip("/")
    attempt = _Attempt(principal, "container.create", Target("container", name=name), principal.team)

    def run() -> Reply:
        _need_in_team(principal, Role.OPERATOR)
        body = request.json()
        if not isinstance(body, dict):
            return handler(request)  # which answers moby's 400
        labels, host_config = body.get("Labels") or {}, body.get("HostConfig") or {}
        if not isinstance(labels, dict) or not isinstance(host_config, dict):
            raise ApiError(400, "invalid Labels or HostConfig: expected JSON objects")
        body["Labels"] = _labelled(principal, labels)
        usecases.check_host_access(principal, host_config)
        if isinstance(body.get("Image"), str) and body["Image"]:
            _usable_image(principal, body["Image"])
        _name_free(principal, name)
        request.stream = io.BytesIO(json.dumps(body).encode())
        reply = handler(request)
        created = request.found.get("container")
        if isinstance(reply, Response) and reply.status == 201 and isinstance(created, Record):
            attempt.target = Target("container", created.id, created.name)
        return reply

    return _audited(attempt, run)


def _prune_containers(request: Request, handler: Handler) -> Reply:
    """Prune the team's stopped containers only: its label joins the request's label filters (all must match)."""
    principal = _who(request)
    attempt = _Attempt(principal, "container.prune", Target("container"), principal.team)

    def run() -> Reply:
        _need_in_team(principal, Role.ADMIN)
        if principal.team is not None:
            filters = request.filters()
            filters["label"] = [*filters.get("label", []), f"{_TEAM_LABEL}={principal.team.pk}"]
            request.query["filters"] = [json.dumps(filters)]
        return handler(request)

    return _audited(attempt, run)


def _containers_listed(request: Request, handler: Handler) -> Reply:
    """`docker ps`: the principal's containers; a `limit` (`-n`, `-l`) counts among those."""
    teams = _seen_teams(_who(request))
    if teams is None:
        return handler(request)
    limit = request.int_arg("limit", -1)
    if limit > 0:
        # moby lists stopped containers too when a limit is given.
        request.query.pop("limit")
        request.query["all"] = ["1"]
    reply = handler(request)
    assert isinstance(reply, Response)
    shown = [item for item in json.loads(reply.body) if _sees(teams, item.get("Labels"))]
    return json_response(shown[:limit] if limit > 0 else shown, reply.status)


#
# Execs
#


def exec_instance(required: Role, action: str = "") -> Rule:
    """The exec the path names: `required` in its container's team; `action` recorded."""

    def rule(request: Request, handler: Handler) -> Reply:
        principal = _who(request)
        exec_id = request.params["id"]
        attempt = _Attempt(principal, action, Target("exec", id=exec_id)) if action else None

        def run() -> Reply:
            instance = EXECS.get(exec_id)
            try:
                labels = services.engine().containers.get(instance.container_id).config.get("Labels")
            except ContainerNotFound:
                labels = None  # gone with its container: the site admins' to look at
            team = _team(labels)
            if attempt is not None:
                attempt.team = team
            missing = f"No such exec instance: {exec_id}"
            _need(principal, _role(principal, team), required, f"exec {exec_id}", missing)
            return handler(request)

        return _audited(attempt, run)

    return rule


#
# Images
#


def _full(tag: str) -> str:
    try:
        return str(parse_reference(tag))
    except InvalidArgument:
        return tag


def _no_such_image(ref: str) -> str:
    """Return the engine's words for an image it does not have (`No such image: busybox:latest`)."""
    try:
        return f"No such image: {parse_reference(ref).familiar()}"
    except InvalidArgument:
        return f"No such image: {ref}"


def _named_by(image: StoredImage, ref: str) -> ImageTag | Image | None:
    """Return the row the principal's right to `ref` is judged on: the tag it names, else the image."""
    try:
        reference = parse_reference(ref)
    except InvalidArgument:
        reference = None
    if reference is not None and not reference.digest and str(reference) in {_full(t) for t in image.repo_tags}:
        return ImageTag.objects.select_related("image", "team").filter(reference=str(reference)).first()
    return Image.objects.filter(pk=image.id).first()


def _owning_team(row: ImageTag | Image | None) -> Team | None:
    if isinstance(row, ImageTag):
        return row.team
    if row is None:
        return None
    return row.team or next((tag.team for tag in row.tags.select_related("team") if tag.team), None)


def _image(principal: Principal, ref: str, attempt: _Attempt | None) -> tuple[StoredImage, ImageTag | Image | None]:
    """Return the image `ref` names and its row (tag or image), if the principal sees it; `No such image` (404)."""
    image = services.engine().images.get(ref)
    row = _named_by(image, ref)
    if attempt is not None:
        attempt.target, attempt.team = Target("image", image.id, ref), _owning_team(row)
    if _everywhere(principal):
        return image, row
    if row is None or not scope_queryset(principal, type(row).objects.filter(pk=row.pk)).exists():
        raise NotFoundForUser(_no_such_image(ref))
    return image, row


def _usable_image(principal: Principal, ref: str) -> None:
    """Refuse an image the principal does not see exactly as a missing one (the CLI then tries a pull)."""
    if _everywhere(principal):
        return
    try:
        _image(principal, ref, None)
    except NotFoundForUser:
        raise ImageNotFound(_no_such_image(ref)) from None


def _look_image(request: Request, handler: Handler) -> Reply:
    """The image the path names: anyone who sees it may read it, with the tags it sees (inspect, history)."""
    principal = _who(request)
    _image(principal, request.params["name"], None)
    reply = handler(request)
    view = _image_view(principal)
    if view is None or not isinstance(reply, Response) or reply.status != 200:
        return reply
    found = json.loads(reply.body)
    if isinstance(found, dict):
        return json_response(view.narrowed(found))
    for step in found:
        step["Tags"] = view.tags(step["Tags"] or []) or None
    return json_response(found)


def _images_saved(request: Request, handler: Handler) -> Reply:
    """`docker save`: the handler saves what `saved_names` lets it, which checks each name."""
    return handler(request)


def saved_names(request: Request, names: list[str]) -> list[str]:
    """Return what the principal may save for `names`: `No such image` (404) for one it does not see.

    A bare repository name stands for every tag of that repository, in the engine; here, for every
    tag of it that the principal sees.
    """
    principal = _who(request)
    view = _image_view(principal)
    if view is None:
        return names
    saved: list[str] = []
    for name in names:
        try:
            parsed = parse_any_reference(name)
            bare = parse_reference(name, default_tag=False) if isinstance(parsed, Reference) else None
        except InvalidArgument:
            bare = None
        if bare is not None and bare.tag is None and bare.digest is None:
            tags = [
                tag for image in services.engine().images.list() for tag in image.repo_tags
                if parse_reference(tag).name == bare.name and _full(tag) in view.references
            ]  # fmt: skip
            if tags:
                saved += tags
                continue
        _image(principal, name, None)
        saved.append(name)
    return saved


def _remove_image(request: Request, handler: Handler) -> Reply:
    """`docker rmi`: an admin of every team that owns a tag that goes (a shared image's are the site admins')."""
    principal = _who(request)
    ref = request.params["name"]
    attempt = _Attempt(principal, "image.remove", Target("image", name=ref))

    def run() -> Reply:
        _, row = _image(principal, ref, attempt)
        role = usecases.removal_role(principal, row) if row is not None else _role(principal, None)
        _need(principal, role, Role.ADMIN, f"image {ref}", _no_such_image(ref))
        return handler(request)

    return _audited(attempt, run)


def check_tags(request: Request, tags: Iterable[str]) -> None:
    """Refuse (409) to take over a tag another team owns, or a shared image's: see `usecases.check_tags`."""
    usecases.check_tags(_who(request), owner(request), [tag for tag in tags if "@" not in tag])


def _tag_image(request: Request, handler: Handler) -> Reply:
    principal = _who(request)
    repository, tag = request.arg("repo"), request.arg("tag")
    target = f"{repository}:{tag}" if tag else repository
    attempt = _Attempt(principal, "image.tag", Target("image", name=target))

    def run() -> Reply:
        _image(principal, request.params["name"], attempt)
        attempt.team = principal.team
        _need_in_team(principal, Role.OPERATOR)
        if repository:
            check_tags(request, [target])
        return handler(request)

    return _audited(attempt, run)


def _commit_tag(request: Request) -> None:
    repository, tag = request.arg("repo"), request.arg("tag")
    if repository:
        check_tags(request, [f"{repository}:{tag}" if tag else repository])


def _create_image(request: Request, handler: Handler) -> Reply:
    """`docker import` (fromSrc) and `docker pull` (fromImage): an operator's, for the team."""
    principal = _who(request)
    pulling = bool(request.arg("fromImage"))
    repository, tag = request.arg("repo"), request.arg("tag")
    name = request.arg("fromImage") if pulling else f"{repository}:{tag}" if tag else repository
    action = "image.pull" if pulling else "image.import"
    attempt = _Attempt(principal, action, Target("image", name=name), principal.team)

    def run() -> Reply:
        _need_in_team(principal, Role.OPERATOR)
        if repository and not pulling:
            check_tags(request, [name])
        return handler(request)

    return _audited(attempt, run, progress=True)


def _team_action(required: Role, action: str, progress: bool = False) -> Rule:
    """A request that acts for the principal's team as a whole: `required` in it; `action` recorded."""

    def rule(request: Request, handler: Handler) -> Reply:
        principal = _who(request)
        attempt = _Attempt(principal, action, Target(action.partition(".")[0]), principal.team)

        def run() -> Reply:
            _need_in_team(principal, required)
            return handler(request)

        return _audited(attempt, run, progress)

    return rule


def removable(request: Request) -> Callable[[StoredImage], bool]:
    """Return which images the principal may remove whole: those its teams' admins may (the prunes touch no other)."""
    principal = _who(request)
    if _everywhere(principal):
        return lambda _: True
    rows = scope_queryset(principal, Image.objects.all())
    allowed = {row.id for row in rows if (usecases.removal_role(principal, row) or Role.VIEWER) >= Role.ADMIN}
    return lambda stored: stored.id in allowed


def _build(request: Request, handler: Handler) -> Reply:
    principal = _who(request)
    tags = [tag for tag in request.query.get("t", []) if tag]
    attempt = _Attempt(principal, "build.create", Target("build", name=", ".join(tags)), principal.team)

    def run() -> Reply:
        _need_in_team(principal, Role.OPERATOR)
        check_tags(request, tags)
        return handler(request)

    return _audited(attempt, run, progress=True)


@dataclass(frozen=True)
class _ImageView:
    """What of the image store a principal sees: image IDs, and tags by full reference."""

    ids: set[str]
    references: set[str]

    def tags(self, tags: list[str]) -> list[str]:
        return [tag for tag in tags if _full(tag) in self.references]

    def narrowed(self, item: dict[str, Any]) -> dict[str, Any]:
        """Return an image summary or inspection with only the tags (and the digests of their repositories) seen."""
        tags = self.tags(item.get("RepoTags") or [])
        repositories = {tag.rpartition(":")[0] for tag in tags}
        digests = [digest for digest in item.get("RepoDigests") or [] if digest.partition("@")[0] in repositories]
        return {**item, "RepoTags": tags, "RepoDigests": digests}


def _image_view(principal: Principal) -> _ImageView | None:
    """Return what of the image store the principal sees; None: all of it."""
    if _everywhere(principal):
        return None
    ids = set(scope_queryset(principal, Image.objects.all()).values_list("id", flat=True))
    references = set(scope_queryset(principal, ImageTag.objects.all()).values_list("reference", flat=True))
    return _ImageView(ids, references)


def _named(tags: list[str], patterns: list[str]) -> bool:
    """Whether a tag or its repository matches a `reference` filter, as image_routes matches them."""
    names = [*tags, *(tag.rpartition(":")[0] for tag in tags)]
    return any(fnmatch.fnmatchcase(name, pattern) for name in names for pattern in patterns)


def _images_listed(request: Request, handler: Handler) -> Reply:
    """`docker images`: the images seen, with the tags seen; `before`/`since` must name one seen too."""
    principal = _who(request)
    view = _image_view(principal)
    if view is None:
        return handler(request)
    filters = request.filters()
    for value in [*filters.get("before", []), *filters.get("since", [])]:
        _usable_image(principal, value)
    reply = handler(request)
    assert isinstance(reply, Response)
    patterns = filters.get("reference", [])
    shown = []
    for item in json.loads(reply.body):
        if item["Id"] in view.ids:
            item = view.narrowed(item)
            if not patterns or _named(item["RepoTags"], patterns):
                shown.append(item)
    return json_response(shown, reply.status)


#
# System: counts, events, disk use
#


def _anyone(request: Request, handler: Handler) -> Reply:
    """Answer any principal: the answer shows nothing that a team owns."""
    return handler(request)


def _open(request: Request, handler: Handler) -> Reply:
    """Answer without a principal: clients negotiate the API version before they send a token."""
    return handler(request)


def _seen_records(teams: set[int] | None) -> list[Record]:
    return [r for r in services.engine().containers.list() if _sees(teams, r.config.get("Labels"))]


def _info(request: Request, handler: Handler) -> Reply:
    """`docker info`: the counts of containers and images are of those the principal sees."""
    principal = _who(request)
    teams, view = _seen_teams(principal), _image_view(principal)
    reply = handler(request)
    if teams is None or view is None:
        return reply
    assert isinstance(reply, Response)
    containers = services.engine().containers
    states = []
    for record in _seen_records(teams):
        try:
            states.append(containers.state(record.id))
        except NotFound:
            continue
    found = json.loads(reply.body)
    found.update(container_counts(states))
    found["Images"] = sum(1 for image in services.engine().images.list() if image.id in view.ids)
    return json_response(found, reply.status)


def _events(request: Request, handler: Handler) -> Reply:
    """`docker events`: of the containers the principal sees.

    The owner comes from the `create` event, which carries the labels, else from the container; so
    the events of one removed before a stream that did not see its creation are not shown.
    """
    teams = _seen_teams(_who(request))
    reply = handler(request)
    if teams is None or not isinstance(reply, Streamed):
        return reply
    return dataclasses.replace(reply, chunks=_seen_events(reply.chunks, teams))


def _seen_events(chunks: Generator[bytes, None, None], teams: set[int]) -> Generator[bytes, None, None]:
    owners: dict[str, int | None] = {}
    try:
        for chunk in chunks:
            event = json.loads(chunk)
            container_id, attributes = event["id"], event["Actor"]["Attributes"]
            if _TEAM_LABEL in attributes:
                owners[container_id] = _team_id(attributes)
            elif container_id not in owners:
                try:
                    owners[container_id] = _team_id(services.engine().containers.get(container_id).config.get("Labels"))
                except ContainerNotFound:
                    owners[container_id] = None
            if owners[container_id] in teams:
                yield chunk
    finally:
        chunks.close()


def _layer_usage(images: list[StoredImage]) -> tuple[int, dict[str, int]]:
    """Return the bytes of the distinct layers of `images`, and each one's bytes shared with another of them.

    As the store's usage counts them, but among these images only: what is shared with an image
    the principal does not see is the image's own, as far as it can tell.
    """
    layers = {image.id: list(zip(chain_ids([layer.diff_id for layer in image.layers]),
                                 (layer.unpacked_size for layer in image.layers), strict=True))
              for image in images}  # fmt: skip
    holders = Counter(link for pairs in layers.values() for link in {link for link, _ in pairs})
    sizes = {link: size for pairs in layers.values() for link, size in pairs}
    shared = {image: sum(size for link, size in pairs if holders[link] > 1) for image, pairs in layers.items()}
    return sum(sizes.values()), shared


def _disk_usage(request: Request, handler: Handler) -> Reply:
    """`docker system df`: the images and containers the principal sees, with their layers and users among those."""
    principal = _who(request)
    teams, view = _seen_teams(principal), _image_view(principal)
    reply = handler(request)
    if teams is None or view is None:
        return reply
    assert isinstance(reply, Response)
    found = json.loads(reply.body)
    if found.get("Containers") is not None:
        found["Containers"] = [item for item in found["Containers"] if _sees(teams, item.get("Labels"))]
    if found.get("Images") is not None:
        users = Counter(record.image for record in _seen_records(teams))
        size, shared = _layer_usage([i for i in services.engine().images.list() if i.id in view.ids])
        found["LayersSize"] = size
        found["Images"] = [
            {**view.narrowed(item), "Containers": users[item["Id"]], "SharedSize": shared.get(item["Id"], 0)}
            for item in found["Images"]
            if item["Id"] in view.ids
        ]
    return json_response(found, reply.status)


#
# The rules, route by route
#

RULES: dict[str, Rule] = {
    # System
    "GET /_ping": _open,
    "HEAD /_ping": _open,
    "GET /version": _open,
    "GET /info": _info,
    "GET /events": _events,
    "GET /system/df": _disk_usage,
    "GET /networks/{name}": _anyone,
    "GET /volumes/{name}": _anyone,
    "GET /plugins/{name}/json": _anyone,
    # Containers
    "GET /containers/json": _containers_listed,
    "POST /containers/create": _create_container,
    "POST /containers/prune": _prune_containers,
    "GET /containers/{id}/json": _LOOK,
    "POST /containers/{id}/start": container(Role.OPERATOR, "container.start"),
    "POST /containers/{id}/stop": container(Role.OPERATOR, "container.stop"),
    "POST /containers/{id}/restart": container(Role.OPERATOR, "container.restart"),
    "POST /containers/{id}/kill": container(Role.OPERATOR, "container.kill"),
    "POST /containers/{id}/pause": container(Role.OPERATOR, "container.pause"),
    "POST /containers/{id}/unpause": container(Role.OPERATOR, "container.unpause"),
    "POST /containers/{id}/rename": container(Role.OPERATOR, "container.rename", check=_new_name_free),
    # A terminal's size, sent on every change of a window: checked, not recorded.
    "POST /containers/{id}/resize": container(Role.OPERATOR),
    "POST /containers/{id}/wait": _LOOK,
    "GET /containers/{id}/logs": _LOOK,
    "POST /containers/{id}/attach": _attach,
    "GET /containers/{id}/attach/ws": _attach_ws,
    "DELETE /containers/{id}": container(Role.ADMIN, "container.remove"),
    # A container's files and processes
    "GET /containers/{id}/changes": _LOOK,
    "GET /containers/{id}/export": _LOOK,
    "HEAD /containers/{id}/archive": _LOOK,
    "GET /containers/{id}/archive": _LOOK,
    "PUT /containers/{id}/archive": container(Role.OPERATOR, "container.cp"),
    "GET /containers/{id}/top": _LOOK,
    "GET /containers/{id}/stats": _LOOK,
    "POST /commit": container(Role.OPERATOR, "container.commit", query="container", check=_commit_tag),
    # Execs
    "POST /containers/{id}/exec": container(Role.OPERATOR, "exec.create"),
    "POST /exec/{id}/start": exec_instance(Role.OPERATOR, "exec.start"),
    "GET /exec/{id}/start/ws": exec_instance(Role.OPERATOR, "exec.start"),
    "GET /exec/{id}/json": exec_instance(Role.VIEWER),
    "POST /exec/{id}/resize": exec_instance(Role.OPERATOR),
    # Images
    "GET /images/json": _images_listed,
    "POST /images/create": _create_image,
    "GET /images/get": _images_saved,
    "POST /images/load": _team_action(Role.OPERATOR, "image.load", progress=True),
    "POST /images/prune": _team_action(Role.ADMIN, "image.prune"),
    "GET /images/{name}/json": _look_image,
    "GET /images/{name}/history": _look_image,
    "GET /images/{name}/get": _images_saved,
    "POST /images/{name}/tag": _tag_image,
    "DELETE /images/{name}": _remove_image,
    # Builds
    "POST /build": _build,
}
