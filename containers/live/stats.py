"""Stats sessions: one sampler a container, a sample a second to every page that watches it.

A sample, as the page gets it (`{"type": "stats", "samples": [...]}`):

    t          seconds since the epoch
    running    false when the container is not running (the other figures are then missing)
    cpu        percent of one CPU over the last second (None for the first sample)
    cpus       CPUs the container may use
    mem        memory in use, bytes; mem_limit its limit (0: none, the host's memory is host_mem)
    pids       processes; pids_limit their limit (0: none)
    read, write              block I/O since the start, bytes
    read_rate, write_rate    block I/O over the last second, bytes a second
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from containers.engine.lifecycle import ContainerNotFound
from containers.engine.runtime.cgroups.manager import Stats
from containers.live.protocol import Close, stats_group
from containers.live.session import Refused, Session

if TYPE_CHECKING:
    from containers.live.server import LiveServer

logger = logging.getLogger(__name__)

INTERVAL_S = 1.0
# Samples a newcomer gets at once, so that its chart starts with the last five minutes.
HISTORY = 300


def _host_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _encode(samples: list[dict[str, Any]], **extra: Any) -> str:
    return json.dumps({"type": "stats", "samples": samples, **extra}, separators=(",", ":"))


class StatsSampler:
    """Sample one container every second for all the sessions watching it."""

    def __init__(self, server: LiveServer, container_id: str) -> None:
        self.server = server
        self.container_id = container_id
        self.group = stats_group(container_id)
        self.sessions: set[StatsSession] = set()
        self.joining: deque[StatsSession] = deque()
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.wake = asyncio.Event()
        self.previous: tuple[Stats, int] | None = None
        self.host_memory = _host_memory()
        self.task = asyncio.create_task(self._run())

    def join(self, session: StatsSession) -> None:
        self.joining.append(session)
        self.wake.set()

    async def leave(self, session: StatsSession) -> None:
        self.sessions.discard(session)
        with contextlib.suppress(ValueError):
            self.joining.remove(session)
        with contextlib.suppress(Exception):
            await self.server.layer.group_discard(self.group, session.reply_to)
        if not self.sessions and not self.joining:
            self.task.cancel()
            if self.server.samplers.get(self.container_id) is self:
                del self.server.samplers[self.container_id]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        try:
            while True:
                if loop.time() >= due:
                    due += INTERVAL_S
                    sample = await asyncio.to_thread(self._sample)
                    self.history.append(sample)
                    if self.sessions:
                        message = {"type": "live.stats", "text": _encode([sample])}
                        await self.server.layer.group_send(self.group, message)
                while self.joining:
                    session = self.joining.popleft()
                    await session.reply("live.text", text=_encode(list(self.history), history=True))
                    await self.server.layer.group_add(self.group, session.reply_to)
                    self.sessions.add(session)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), max(0.0, due - loop.time()))
                self.wake.clear()
        except ContainerNotFound:
            for session in [*self.sessions, *self.joining]:
                session.finish(Close.NOT_FOUND, "the container was removed")
        except Exception as err:
            logger.exception("live: the stats sampler of %s failed", self.container_id[:12])
            for session in [*self.sessions, *self.joining]:
                session.finish(1011, f"the stats sampler failed: {err}")
        finally:
            if self.server.samplers.get(self.container_id) is self:
                del self.server.samplers[self.container_id]

    def _sample(self) -> dict[str, Any]:
        stats = self.server.containers.stats(self.container_id)
        now = time.time()
        if stats is None:
            self.previous = None
            return {"t": round(now, 3), "running": False}
        clock = time.monotonic_ns()
        sample: dict[str, Any] = {
            "t": round(now, 3), "running": True, "cpu": None, "cpus": stats.online_cpus,
            "mem": stats.memory_usage, "mem_limit": 0 if stats.memory_limit >= self.host_memory else stats.memory_limit,
            "host_mem": self.host_memory, "pids": stats.pids_current, "pids_limit": stats.pids_limit,
            "read": stats.blkio_read_bytes, "write": stats.blkio_write_bytes, "read_rate": None, "write_rate": None,
        }  # fmt: skip
        if self.previous is not None:
            before, then = self.previous
            seconds = max((clock - then) / 1e9, 1e-3)
            sample["cpu"] = round(max(0, stats.cpu_usage_ns - before.cpu_usage_ns) / 1e9 / seconds * 100, 2)
            sample["read_rate"] = round(max(0, stats.blkio_read_bytes - before.blkio_read_bytes) / seconds)
            sample["write_rate"] = round(max(0, stats.blkio_write_bytes - before.blkio_write_bytes) / seconds)
        self.previous = (stats, clock)
        return sample


class StatsSession(Session):
    """Watch a container's resource use: the samples so far, then one a second."""

    kind = "stats"

    def __init__(self, server: LiveServer, message: dict[str, Any]) -> None:
        super().__init__(server, message)
        self.sampler: StatsSampler | None = None
        self.ended: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    async def run(self) -> tuple[int, str]:
        try:
            await asyncio.to_thread(self.server.containers.get, self.container_id)
        except ContainerNotFound:
            raise Refused(Close.NOT_FOUND, "the container was removed") from None
        await self.reply("live.opened")
        self.sampler = self.server.sampler(self.container_id)
        self.sampler.join(self)
        return await self.ended

    def finish(self, code: int, reason: str) -> None:
        if not self.ended.done():
            self.ended.set_result((code, reason))

    async def release(self) -> None:
        if self.sampler is not None:
            await self.sampler.leave(self)
