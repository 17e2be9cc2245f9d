"""Websocket consumers of the live views: terminal, attach, logs, stats, build output and container events.

Who: the session's user (scope["user"], from AuthMiddlewareStack), or an API token offered as the
subprotocol `bearer.<token>`, which is echoed as the chosen one (a browser cannot set headers on
a websocket, and fails a handshake whose offered subprotocols got no answer). Never the query
string: URLs land in access logs and browser histories.

What: per container (per build). Viewers read logs, stats and build output; the terminal and
attach need operator. An outsider is closed with 4404, just as for a container that does not
exist; a member below the role with 4403. Every refusal comes after the accept, so that the page
gets the code: a refused handshake reaches a browser as 1006 and nothing else.

The consumers only relay: the work is done on the container's node (containers/live/), asked over
the channel layer, so the same path serves a container on any node.

The page speaks JSON in text frames:

    page → server  {"type": "open", ...}    once: the terminal's command, user, rows and cols;
                                            the attach's rows and cols; the logs' tail (null: all)
                   {"type": "resize", "rows": R, "cols": C}      terminal and attach
                   {"type": "ping"}                              answered {"type": "pong"}
                   binary                                        keystrokes (terminal and attach)
    server → page  {"type": "opened", ...}  the session runs (the terminal's command, pid)
                   binary                   terminal output
                   {"type": "lines", "lines": [[stream, time, text], ...], "history"?, "done"?}
                   {"type": "stats", "samples": [...], "history"?}
                   {"type": "state", "status", "exit_code", ...}  the container changed state
                   {"type": "gap"}          some log lines were lost on the way (a slow page)
                   {"type": "ended", "code", "reason"}, then a close with that code: 4000 + the
                   exit code when a terminal's process exited, 4409 the container is not running
                   or stopped, 4401 not logged in, 4403 role too low, 4404 no such container,
                   4400 a bad request, 4503 the node agent does not answer
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.contrib.auth.models import AbstractUser, AnonymousUser

from containers import accounts
from containers.accounts import Target
from containers.choices import AuditOutcome, AuditSource, Role
from containers.live.protocol import (
    KEEPALIVE_S,
    NODE_TIMEOUT_S,
    OPEN_TIMEOUT_S,
    Close,
    container_group,
    logs_group,
    node_channel,
    stats_group,
    team_group,
)
from containers.models import Build, Container
from containers.permissions import NotFoundForUser, Principal, RoleRequired, get_for_user, need, visible_teams
from containers.services import build_group

BEARER = "bearer."
_MAX_COMMAND = 1024
_MAX_TAIL = 1_000_000


def _close_reason(text: str) -> str:
    """Cut a close reason to the 123 bytes a close frame may carry (RFC 6455 5.5), on a character boundary."""
    return text.encode()[:123].decode(errors="ignore")


@database_sync_to_async
def _authenticate(user: AbstractUser | AnonymousUser | None, token: str | None) -> Principal | None:
    if token is not None:
        return accounts.authenticate_token(token, source=AuditSource.WEBSOCKET)
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    return Principal(user, source=AuditSource.WEBSOCKET)


@database_sync_to_async
def _audit(principal: Principal, action: str, target: Any, outcome: str, address: str | None, **detail: Any) -> None:
    accounts.audit(principal, action, target, outcome, address=address, **detail)


class _Authenticated(AsyncJsonWebsocketConsumer):
    """Accept with the offered token echoed, then find who asks; close with a code the page explains."""

    principal: Principal | None = None
    done = False

    async def admit(self) -> Principal | None:
        offered = next((p for p in self.scope.get("subprotocols", []) if p.startswith(BEARER)), None)
        await self.accept(subprotocol=offered)
        token = offered.removeprefix(BEARER) if offered else None
        self.principal = await _authenticate(self.scope.get("user"), token)
        if self.principal is None:
            await self.finish(Close.UNAUTHENTICATED, "log in, or offer an API token as the subprotocol bearer.<token>")
        return self.principal

    async def finish(self, code: int, reason: str) -> None:
        """Tell the page why, then close with `code` (once)."""
        if self.done:
            return
        self.done = True
        await self.send_json({"type": "ended", "code": int(code), "reason": reason})
        await self.close(code=int(code), reason=_close_reason(reason))

    @property
    def address(self) -> str | None:
        client = self.scope.get("client")
        return client[0] if client else None

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        if bytes_data is not None:
            if self.principal is not None and not self.done:
                await self.on_bytes(bytes_data)
            return
        try:
            content = json.loads(text_data or "")
        except ValueError:
            await self.finish(Close.BAD_REQUEST, "a text message must be JSON")
            return
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif self.principal is not None and not self.done:
            await self.on_message(str(kind), content)

    async def on_bytes(self, data: bytes) -> None:
        return None

    async def on_message(self, kind: str, content: dict[str, Any]) -> None:
        return None


class LiveConsumer(_Authenticated):
    """A live session on a container's node: authorise, pass the page's `open` on, relay both ways."""

    kind = ""
    required = Role.VIEWER
    # Audit actions `<audited>.open` and `<audited>.close`, for the sessions that act inside a container.
    audited = ""

    async def connect(self) -> None:
        self.session = uuid.uuid4().hex
        self.container: Container | None = None
        self.node = ""
        self.requested = self.opened = self.node_ended = False
        self.heard = time.monotonic()
        self.tasks: list[asyncio.Task[None]] = []
        self.groups: list[str] = []
        self.next_seq: int | None = None
        if await self.admit() is None:
            return
        assert self.principal is not None
        container_id = self.scope["url_route"]["kwargs"]["container_id"]
        try:
            self.container, role = await database_sync_to_async(get_for_user)(
                self.principal, Container.objects, pk=container_id
            )
            need(role, self.required, f"container {self.container.name}")
        except NotFoundForUser:
            await self.refused(Target("container", container_id), "no such container")
            await self.finish(Close.NOT_FOUND, f"no such container: {container_id}")
            return
        except RoleRequired as err:
            await self.refused(self.container, str(err))
            await self.finish(Close.FORBIDDEN, str(err))
            return
        self.node = node_channel(self.container.node)

    async def refused(self, target: Any, reason: str) -> None:
        if self.audited and self.principal is not None:
            await _audit(
                self.principal, f"{self.audited}.open", target, AuditOutcome.DENIED, self.address, error=reason
            )

    def options(self, content: dict[str, Any]) -> dict[str, Any]:
        """Return the node's options from the page's `open`; ValueError for a bad one."""
        return {}

    async def on_message(self, kind: str, content: dict[str, Any]) -> None:
        try:
            if kind == "open" and not self.requested:
                await self.request_open(content)
            elif kind == "resize" and self.requested:
                rows, cols = _size(content)
                await self.to_node("live.resize", rows=rows, cols=cols)
            elif kind not in ("open", "resize"):
                raise ValueError(f"unknown message type {kind!r}")
        except ValueError as err:
            await self.finish(Close.BAD_REQUEST, str(err))

    async def request_open(self, content: dict[str, Any]) -> None:
        """Ask the node to open the session (ValueError for a bad option)."""
        assert self.container is not None
        options = self.options(content)
        self.requested = True
        await self.to_node(
            "live.open", reply_to=self.channel_name, kind=self.kind, container=self.container.id,
            sent_at=time.time(), **options,
        )  # fmt: skip
        self.tasks.append(asyncio.create_task(self._watch_node()))

    async def to_node(self, message_type: str, **fields: Any) -> None:
        try:
            await self.channel_layer.send(self.node, {"type": message_type, "session": self.session, **fields})
        except ChannelFull:
            # Its requests pile up in Redis: the node agent is not running.
            assert self.container is not None
            await self.finish(Close.UNAVAILABLE, f"the node agent of {self.container.node} is not taking requests")

    async def _watch_node(self) -> None:
        """Give up on a node that does not answer; say every KEEPALIVE_S that this session is still wanted."""
        await asyncio.sleep(OPEN_TIMEOUT_S)
        node = self.container.node if self.container else "?"
        if not self.opened:
            await self.finish(Close.UNAVAILABLE, f"the node agent of {node} does not answer")
            return
        while not self.done:
            if time.monotonic() - self.heard > NODE_TIMEOUT_S:
                await self.finish(Close.UNAVAILABLE, f"the node agent of {node} stopped answering")
                return
            await self.to_node("live.keepalive", reply_to=self.channel_name)
            await asyncio.sleep(KEEPALIVE_S)

    async def join(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups.append(group)

    async def disconnect(self, code: int) -> None:
        self.done = True
        for task in self.tasks:
            task.cancel()
        if self.requested and not self.node_ended:
            await self.to_node("live.close")
        for group in self.groups:
            await self.channel_layer.group_discard(group, self.channel_name)
        await self.closed()

    async def closed(self) -> None:
        return None

    #
    # from the node
    #

    def _ours(self, message: dict[str, Any]) -> bool:
        self.heard = time.monotonic()
        return message.get("session") == self.session

    async def live_opened(self, message: dict[str, Any]) -> None:
        if self._ours(message):
            self.opened = True
            await self.on_opened(message)

    async def on_opened(self, message: dict[str, Any]) -> None:
        return None

    async def live_alive(self, message: dict[str, Any]) -> None:
        self._ours(message)

    async def live_output(self, message: dict[str, Any]) -> None:
        if self._ours(message) and not self.done:
            await self.send(bytes_data=message["data"])

    async def live_text(self, message: dict[str, Any]) -> None:
        if self._ours(message) and not self.done:
            self.opened = True
            if "seq" in message:
                self.next_seq = message["seq"]
            await self.send(text_data=message["text"])

    async def live_ended(self, message: dict[str, Any]) -> None:
        if self._ours(message):
            self.node_ended = True
            await self.on_ended(message)
            await self.finish(message["code"], message["reason"])

    async def on_ended(self, message: dict[str, Any]) -> None:
        return None

    async def container_state(self, message: dict[str, Any]) -> None:
        if not self.done:
            await self.send_json({"type": "state", **{k: v for k, v in message.items() if k != "type"}})


class _StreamConsumer(LiveConsumer):
    """Terminal and attach: keystrokes in, output out; opening and closing are audited."""

    required = Role.OPERATOR
    exit_code: int | None = None

    async def on_bytes(self, data: bytes) -> None:
        if self.requested:
            await self.to_node("live.input", data=data)

    async def on_opened(self, message: dict[str, Any]) -> None:
        assert self.principal is not None
        fields = {k: v for k, v in message.items() if k not in ("type", "session")}
        self.started = time.monotonic()
        await _audit(self.principal, f"{self.audited}.open", self.container, AuditOutcome.SUCCESS, self.address,
                     **fields)  # fmt: skip
        await self.send_json({"type": "opened", **fields})

    async def on_ended(self, message: dict[str, Any]) -> None:
        assert self.principal is not None
        if not self.opened:
            await _audit(self.principal, f"{self.audited}.open", self.container, AuditOutcome.FAILED, self.address,
                         error=message["reason"])  # fmt: skip
        elif Close.SESSION_ENDED <= message["code"] <= Close.SESSION_ENDED + 255:
            self.exit_code = message["code"] - Close.SESSION_ENDED

    async def closed(self) -> None:
        if self.opened and self.principal is not None:
            await _audit(self.principal, f"{self.audited}.close", self.container, AuditOutcome.SUCCESS, self.address,
                         exit_code=self.exit_code, seconds=round(time.monotonic() - self.started, 1))  # fmt: skip


class TerminalConsumer(_StreamConsumer):
    """`ws/containers/<id>/terminal/`: a shell (or a command) in the container, on a PTY."""

    kind = "terminal"
    audited = "exec"

    def options(self, content: dict[str, Any]) -> dict[str, Any]:
        command, user = content.get("command") or "auto", content.get("user") or ""
        if not isinstance(command, str) or len(command) > _MAX_COMMAND or not command.strip():
            raise ValueError(f"open: command must be auto, sh, bash or a command line of at most {_MAX_COMMAND} chars")
        if not isinstance(user, str) or len(user) > 64:
            raise ValueError("open: user must be a user name or uid[:gid]")
        rows, cols = _size(content)
        return {"command": command.strip(), "user": user.strip(), "rows": rows, "cols": cols}


class AttachConsumer(_StreamConsumer):
    """`ws/containers/<id>/attach/`: the container's main process (its stdin when it has one)."""

    kind = "attach"
    audited = "attach"

    def options(self, content: dict[str, Any]) -> dict[str, Any]:
        rows, cols = _size(content)
        return {"rows": rows, "cols": cols}


class LogsConsumer(LiveConsumer):
    """`ws/containers/<id>/logs/`: the last lines, then every line as it is written, and state changes."""

    kind = "logs"

    def options(self, content: dict[str, Any]) -> dict[str, Any]:
        tail = content.get("tail", 1000)
        if tail is not None and (type(tail) is not int or not 0 <= tail <= _MAX_TAIL):
            raise ValueError(f"open: tail must be null (all) or a number of lines from 0 to {_MAX_TAIL}")
        return {"tail": tail}

    async def request_open(self, content: dict[str, Any]) -> None:
        assert self.container is not None
        self.options(content)
        await self.join(container_group(self.container.id))
        # The node adds us to the follower's group; leaving it here too covers a node that died.
        self.groups.append(logs_group(self.container.id))
        await super().request_open(content)

    async def live_lines(self, message: dict[str, Any]) -> None:
        self.heard = time.monotonic()
        if self.done:
            return
        if self.next_seq is not None and message["seq"] != self.next_seq:
            await self.send_json({"type": "gap", "expected": self.next_seq, "got": message["seq"]})
        self.next_seq = message["seq"] + 1
        await self.send(text_data=message["text"])


class StatsConsumer(LiveConsumer):
    """`ws/containers/<id>/stats/`: a sample a second while the page watches, and state changes."""

    kind = "stats"

    async def request_open(self, content: dict[str, Any]) -> None:
        assert self.container is not None
        await self.join(container_group(self.container.id))
        self.groups.append(stats_group(self.container.id))
        await super().request_open(content)

    async def live_stats(self, message: dict[str, Any]) -> None:
        self.heard = time.monotonic()
        if not self.done:
            await self.send(text_data=message["text"])


def _size(content: dict[str, Any]) -> tuple[int, int]:
    rows, cols = content.get("rows", 24), content.get("cols", 80)
    if not all(type(n) is int and 0 < n < 1000 for n in (rows, cols)):
        raise ValueError("rows and cols must be numbers from 1 to 999")
    return rows, cols


class BuildConsumer(_Authenticated):
    """`ws/builds/<id>/`: a build's output so far, then as it comes, then how it ended.

    The output so far comes from the Build row, which the build saves twice a second, while each
    piece is published to the group `build.<id>` at once. So the row read on connecting may lack
    the last pieces published before we joined, or hold the first ones received after: received
    pieces are cut where they overlap the row's end, and once the row has caught up (_ROW_LAG_S)
    the page gets the row again with what came since. When the build ends, it gets the whole log
    from the row, which is the record.
    """

    async def connect(self) -> None:
        self.group = ""
        self.reconciling: asyncio.Task[None] | None = None
        if await self.admit() is None:
            return
        assert self.principal is not None
        build_id = self.scope["url_route"]["kwargs"]["build_id"]
        try:
            build, _ = await database_sync_to_async(get_for_user)(self.principal, Build.objects, pk=build_id)
        except (NotFoundForUser, ValueError):
            await self.finish(Close.NOT_FOUND, f"no such build: {build_id}")
            return
        self.build_id = build.pk
        self.group = build_group(build.id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        build = await self._row()
        await self.send_json({"type": "log", "text": build.log, "status": build.status})
        if build.finished:
            await self._finished(build)
            return
        self.known = build.log
        self.received: list[str] = []
        self.reconciling = asyncio.create_task(self._reconcile())

    async def _row(self) -> Build:
        return await database_sync_to_async(Build.objects.get)(pk=self.build_id)

    async def build_output(self, message: dict[str, Any]) -> None:
        if self.done:
            return
        text = message["text"]
        if self.reconciling is not None:
            self.received.append(text)
            text = text[_overlap(self.known, text) :]
            self.known += text
        if text:
            await self.send_json({"type": "output", "text": text})

    async def _reconcile(self) -> None:
        await asyncio.sleep(_ROW_LAG_S)
        build = await self._row()
        received = "".join(self.received)
        self.reconciling = None
        if not self.done:
            text = build.log + received[_overlap(build.log, received) :]
            await self.send_json({"type": "log", "text": text, "status": build.status})

    async def build_finished(self, message: dict[str, Any]) -> None:
        await self._finished(await self._row())

    async def _finished(self, build: Build) -> None:
        if self.reconciling is not None:
            self.reconciling.cancel()
        await self.send_json({
            "type": "finished", "status": build.status, "image_id": build.image_id, "error": build.error,
            "exit_code": build.exit_code, "log": build.log,
        })  # fmt: skip
        self.done = True
        await self.close(code=1000)

    async def disconnect(self, code: int) -> None:
        if self.reconciling is not None:
            self.reconciling.cancel()
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)


# services._BuildLog saves the output to the row every half second: a row read this long after we
# joined the group holds everything published before.
_ROW_LAG_S = 1.5


def _overlap(before: str, text: str) -> int:
    """Return the length of the longest start of `text` that `before` ends with, in linear time.

    It is the last value of the KMP prefix function of `text + separator + end of before`.
    """
    size = min(len(before), len(text))
    joined = text[:size] + "\0" + before[len(before) - size :]
    prefix = [0] * len(joined)
    for i in range(1, len(joined)):
        k = prefix[i - 1]
        while k and joined[i] != joined[k]:
            k = prefix[k - 1]
        prefix[i] = k + 1 if joined[i] == joined[k] else k
    found = min(prefix[-1], size) if joined else 0
    # A NUL in the text could stand in for the separator: check the answer.
    return found if before.endswith(text[:found]) else 0


class EventsConsumer(_Authenticated):
    """`ws/events/`: every state change of the containers the principal can see, for list pages."""

    async def connect(self) -> None:
        self.groups: list[str] = []
        principal = await self.admit()
        if principal is None:
            return
        for group in await _event_groups(principal):
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups.append(group)

    async def container_state(self, message: dict[str, Any]) -> None:
        await self.send_json({"type": "container", **{k: v for k, v in message.items() if k != "type"}})

    async def disconnect(self, code: int) -> None:
        for group in self.groups:
            await self.channel_layer.group_discard(group, self.channel_name)


@database_sync_to_async
def _event_groups(principal: Principal) -> list[str]:
    groups = [team_group(pk) for pk in visible_teams(principal).values_list("pk", flat=True)]
    if principal.user.is_superuser and principal.team is None:
        groups.append(team_group(None))
    return groups
