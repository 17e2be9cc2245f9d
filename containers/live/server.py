"""The live server: an asyncio loop in a thread of the node agent, serving this node's live sessions.

It listens on `node-live.<node>` (protocol.py), runs each session as a task, shares one log
follower and one stats sampler per container among all the sessions watching it, and ends every
session whose consumer went (live.close, or silence for SESSION_TIMEOUT_S). It holds no database
connection: authorisation happened in the consumer, and the channel layer is reachable only by
processes of this installation (a root-only Redis socket, or a Redis the operator secures).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Coroutine
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer
from django.conf import settings
from django.utils.module_loading import import_string

from containers import services
from containers.engine.lifecycle import Containers
from containers.live.logs import DownloadSession, Inotify, LogFollower, LogsSession
from containers.live.protocol import OPEN_TIMEOUT_S, SESSION_TIMEOUT_S, Close, node_channel
from containers.live.session import Refused, Session
from containers.live.stats import StatsSampler, StatsSession
from containers.live.terminal import AttachSession, TerminalSession

logger = logging.getLogger(__name__)

KINDS: dict[str, type[Session]] = {
    "terminal": TerminalSession,
    "attach": AttachSession,
    "logs": LogsSession,
    "stats": StatsSession,
    "download": DownloadSession,
}

# A send to a consumer's process queue may wait this long in all for room before the session gives up.
_FULL_RETRIES_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
# How deep a consumer process's queue may grow with our messages. channels_redis checks the
# capacity of the *sender's* layer, and all consumers of one web process share one queue.
SEND_CAPACITY = 2000


def _new_layer() -> BaseChannelLayer:
    """Return a channel layer of the server's own, for its loop (the default one is shared with other loops)."""
    config = settings.CHANNEL_LAYERS["default"]
    return import_string(config["BACKEND"])(**{**config.get("CONFIG", {}), "capacity": SEND_CAPACITY})


class LiveServer:
    """Serve the live sessions of `node` from a thread of this process until `stop()`."""

    def __init__(self, node: str, containers: Containers | None = None) -> None:
        self.node = node
        self.channel = node_channel(node)
        self._containers = containers
        self.loop = asyncio.new_event_loop()
        self.sessions: dict[str, tuple[Session, asyncio.Task[None]]] = {}
        self.followers: dict[str, LogFollower] = {}
        self.samplers: dict[str, StatsSampler] = {}
        self.stopping = False
        self._pending: set[asyncio.Task[None]] = set()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"live {node}", daemon=True)

    @property
    def containers(self) -> Containers:
        if self._containers is None:
            self._containers = services.engine().containers
        return self._containers

    #
    # the thread
    #

    def start(self) -> LiveServer:
        self._thread.start()
        if not self._ready.wait(15) or self._failure is not None:
            raise RuntimeError(f"the live server of {self.node} did not start: {self._failure}")
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """End every session (telling its consumer), then the loop and the thread."""
        if not self._thread.is_alive():
            return
        self.loop.call_soon_threadsafe(self._done.set)
        self._thread.join(timeout)

    def call(self, function: Any, *args: Any) -> None:
        """Run `function(*args)` on the loop, from any thread (not at all once the server has stopped)."""
        with contextlib.suppress(RuntimeError):  # the loop is closed
            self.loop.call_soon_threadsafe(function, *args)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as err:
            self._failure = err
            self._ready.set()
            logger.exception("the live server of %s stopped", self.node)
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        self.layer = _new_layer()
        self.inotify = Inotify(self.loop)
        self._done = asyncio.Event()
        tasks = [asyncio.create_task(self._receive()), asyncio.create_task(self._reap())]
        self._ready.set()
        try:
            await self._done.wait()
        finally:
            self.stopping = True
            for task in tasks:
                task.cancel()
            running = [task for _, task in self.sessions.values()]
            for task in running:
                task.cancel()
            await asyncio.gather(*tasks, *running, return_exceptions=True)
            # What the sessions left behind: followers and samplers stopping, messages on their way.
            rest = asyncio.all_tasks() - {asyncio.current_task()}
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
            self.inotify.close()
            with contextlib.suppress(Exception):
                await self.layer.close_pools()

    #
    # requests
    #

    async def _receive(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("live: cannot receive on %s; trying again", self.channel)
                await asyncio.sleep(1)
                continue
            try:
                self._dispatch(message)
            except Exception:
                logger.exception("live: cannot handle %s", message.get("type"))

    def _dispatch(self, message: dict[str, Any]) -> None:
        """Act on one request at once: what may wait (a reply to a full queue) waits in a task of its own."""
        kind = message.get("type")
        if kind == "live.open":
            self._open(message)
            return
        entry = self.sessions.get(message.get("session", ""))
        if entry is None:
            if kind == "live.keepalive":
                self._background(self.send(message["reply_to"], {
                    "type": "live.ended", "session": message["session"], "code": Close.UNAVAILABLE,
                    "reason": "the node agent restarted: reconnect",
                }))  # fmt: skip
            return
        session, task = entry
        session.heard = time.monotonic()
        if kind == "live.input":
            session.input(message["data"])
        elif kind == "live.resize":
            session.resize(int(message["rows"]), int(message["cols"]))
        elif kind == "live.ack":
            session.ack()
        elif kind == "live.keepalive":
            self._background(session.reply("live.alive"))
        elif kind == "live.close":
            task.cancel()

    def _open(self, message: dict[str, Any]) -> None:
        if time.time() - float(message.get("sent_at", 0)) > OPEN_TIMEOUT_S:
            return  # waited in Redis while no server ran: its consumer has given up already
        session = KINDS[message["kind"]](self, message)
        self.sessions[session.id] = (session, asyncio.create_task(self._run_session(session)))

    async def _run_session(self, session: Session) -> None:
        code: int | None = None
        reason = ""
        try:
            code, reason = await session.run()
        except Refused as refused:
            code, reason = refused.code, refused.reason
        except asyncio.CancelledError:
            if self.stopping:
                code, reason = Close.UNAVAILABLE, "the node agent stopped"
        except Exception as err:
            logger.exception("live: %s session on %s failed", session.kind, session.container_id[:12])
            code, reason = 1011, f"the node failed: {err}"
        finally:
            try:
                await session.release()
            except Exception:
                logger.exception("live: cannot release a %s session", session.kind)
            self.sessions.pop(session.id, None)
        if code is not None:
            with contextlib.suppress(Exception):
                await session.reply("live.ended", code=int(code), reason=reason)

    async def _reap(self) -> None:
        """End the sessions whose consumer has not been heard of for SESSION_TIMEOUT_S (its process died)."""
        while True:
            await asyncio.sleep(SESSION_TIMEOUT_S / 5)
            quiet = time.monotonic() - SESSION_TIMEOUT_S
            for session, task in list(self.sessions.values()):
                if session.heard < quiet:
                    task.cancel()

    #
    # what sessions use
    #

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Send to one consumer; wait a little for room in a full queue, then give up (ChannelFull)."""
        for delay in (*_FULL_RETRIES_S, None):
            try:
                await self.layer.send(channel, message)
                return
            except ChannelFull:
                if delay is None:
                    raise
                await asyncio.sleep(delay)

    def publish(self, groups: list[str], message: dict[str, Any]) -> None:
        """Send a message to groups, in the background (for the events follower's thread, through `call`)."""
        for group in groups:
            self._background(self.layer.group_send(group, message))

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._pending.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._pending.discard)
        task.add_done_callback(_log_failure)

    def follower(self, container_id: str) -> LogFollower:
        """Return the container's log follower, started for the first session that wants it."""
        if container_id not in self.followers:
            self.followers[container_id] = LogFollower(self, container_id)
        return self.followers[container_id]

    def sampler(self, container_id: str) -> StatsSampler:
        if container_id not in self.samplers:
            self.samplers[container_id] = StatsSampler(self, container_id)
        return self.samplers[container_id]


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("live: a message was not sent: %s", task.exception())
