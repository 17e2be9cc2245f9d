"""Log sessions: one follower a container, however many pages follow it, and whole-log downloads.

The follower reads the container's json-file log from where it ends, woken by inotify(7) when the
monitor writes (no polling), and sends each batch of lines once, to the group of its followers: one
Redis operation a batch whatever their number. A newcomer gets the last N lines up to exactly
where the follower stands, then joins the group, so it sees every line once.

Lines go to the page as `{"type": "lines", "lines": [[stream, time, text], ...]}`, stream 1 for
stdout and 2 for stderr (Docker's numbers), time in RFC 3339 with nanoseconds, text as logged
(with its newline; without one, the rest of the line follows in the next record).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import struct
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from containers.engine.lifecycle import ContainerNotFound
from containers.engine.linux.syscalls import libc_call
from containers.engine.shim.logfile import Record, read_before, read_log
from containers.live.protocol import Close, logs_group
from containers.live.session import Refused, Session

if TYPE_CHECKING:
    from containers.live.server import LiveServer

Line = tuple[int, str, str]
_STREAMS = {"stdout": 1, "stderr": 2}
# Lines a history message carries; a batch read from the log is at most _READ_LIMIT bytes.
_HISTORY_CHUNK = 2000
_READ_LIMIT = 1 << 20
# A follower spaces its batches by this much for each follower (at most _MAX_SPACING_S): one
# follower sees a line at once, and two hundred get fewer, larger messages they can keep up with.
_SPACING_PER_FOLLOWER_S = 0.0002
_MAX_SPACING_S = 0.05
# Download chunks in flight before the view has taken one.
_DOWNLOAD_WINDOW = 4
_DOWNLOAD_CHUNK = 256 * 1024
# A log that rotates while a newcomer's history is read is read again, this many times at most.
_ADMIT_ATTEMPTS = 5

logger = logging.getLogger(__name__)


def encode_lines(lines: list[Line], **extra: Any) -> str:
    return json.dumps({"type": "lines", "lines": lines, **extra}, separators=(",", ":"), ensure_ascii=False)


def _from_record(record: Record) -> Line:
    return _STREAMS.get(record.stream, 1), record.timestamp(), record.text.decode("utf-8", "replace")


class Inotify:
    """inotify(7) on directories for the loop: call back when a file in one changes or goes."""

    IN_MODIFY, IN_MOVED_TO, IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_IGNORED = 0x2, 0x80, 0x100, 0x200, 0x400, 0x8000
    IN_NONBLOCK, IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
    _EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len, then len bytes of name

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.fd = libc_call("inotify_init1", self.IN_NONBLOCK | self.IN_CLOEXEC)
        self.callbacks: dict[int, Callable[[bool], None]] = {}
        loop.add_reader(self.fd, self._read)

    def watch(self, directory: Path, callback: Callable[[bool], None]) -> int:
        """Call `callback(deleted)` when a file in `directory` is written, created, moved in or deleted.

        `deleted` says that something was deleted, the directory perhaps: the kernel reports a
        removed directory itself (IN_DELETE_SELF) only once no file in it is open any more, and
        a follower keeps the log open, so a follower checks whether its container is still there.
        """
        mask = self.IN_MODIFY | self.IN_MOVED_TO | self.IN_CREATE | self.IN_DELETE | self.IN_DELETE_SELF
        wd = libc_call("inotify_add_watch", self.fd, os.fsencode(directory), mask, path=directory)
        self.callbacks[wd] = callback
        return wd

    def unwatch(self, wd: int) -> None:
        if self.callbacks.pop(wd, None) is not None:
            with contextlib.suppress(OSError):
                libc_call("inotify_rm_watch", self.fd, wd)

    def _read(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        woken: dict[int, bool] = {}
        offset = 0
        deletions = self.IN_DELETE | self.IN_DELETE_SELF | self.IN_IGNORED
        while offset < len(data):
            wd, mask, _, size = self._EVENT.unpack_from(data, offset)
            offset += self._EVENT.size + size
            woken[wd] = woken.get(wd, False) or bool(mask & deletions)
        for wd, deleted in woken.items():
            callback = self.callbacks.get(wd)
            if callback is not None:
                callback(deleted)

    def close(self) -> None:
        self.loop.remove_reader(self.fd)
        os.close(self.fd)


class _LogReader:
    """Read a log from where it ends now, in steps, across rotation (the current file is renamed `.1`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: BinaryIO | None = None
        self.inode = 0
        self.pending = b""
        self._open(at_end=True)

    def _open(self, at_end: bool) -> None:
        try:
            self.file = open(self.path, "rb")  # noqa: SIM115 - kept open while followed
        except FileNotFoundError:
            self.file = None
            return
        self.inode = os.fstat(self.file.fileno()).st_ino
        if at_end:
            self.file.seek(0, os.SEEK_END)

    @property
    def position(self) -> int:
        """Return the offset in the current file up to which every complete line was read."""
        return self.file.tell() - len(self.pending) if self.file is not None else 0

    def is_current(self) -> bool:
        """Whether the file read is still the log's current file (no rotation since)."""
        try:
            return self.file is not None and os.stat(self.path).st_ino == self.inode
        except FileNotFoundError:
            return self.file is None

    def read(self) -> list[Line]:
        """Return the complete lines written since the last call (at most about _READ_LIMIT bytes of them)."""
        if self.file is None:
            self._open(at_end=False)  # a log that appeared since: read it from its start
            if self.file is None:
                return []
        lines: list[Line] = []
        total = 0
        while total < _READ_LIMIT:
            chunk = self.file.read(65536)
            if chunk:
                total += len(chunk)
                *complete, self.pending = (self.pending + chunk).split(b"\n")
                lines += (line for raw in complete if (line := _decode(raw)) is not None)
                continue
            if self.is_current():
                break
            # Rotated: the rest of the old file is read; go on with the new one from its start.
            self.close()
            self.pending = b""
            self._open(at_end=False)
            if self.file is None:
                break
        return lines

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _decode(raw: bytes) -> Line | None:
    try:
        data = json.loads(raw)
        return _STREAMS.get(data["stream"], 1), data["time"], data["log"]
    except (ValueError, KeyError, TypeError):
        return None


def _history(path: Path, end: int, tail: int | None) -> list[str]:
    """Return the page messages of a newcomer's history: the last `tail` lines before `end`, in chunks."""
    lines = [_from_record(record) for record in read_before(path, end, tail)]
    chunks = [lines[start : start + _HISTORY_CHUNK] for start in range(0, len(lines), _HISTORY_CHUNK)] or [[]]
    return [encode_lines(chunk, history=True, done=n == len(chunks) - 1) for n, chunk in enumerate(chunks)]


class LogFollower:
    """Follow one container's log for all its followers: one reader, one group message a batch."""

    def __init__(self, server: LiveServer, container_id: str) -> None:
        self.server = server
        self.container_id = container_id
        self.group = logs_group(container_id)
        self.sessions: set[LogsSession] = set()
        self.joining: deque[tuple[LogsSession, int | None, asyncio.Future[None]]] = deque()
        self.changed = asyncio.Event()
        self.seq = 0
        self.deleted = False
        self.reading: asyncio.Future[str] | None = None
        self.path = server.containers.log_path(container_id)
        # Watch first, then open at the end: a line written in between wakes the first read.
        self.wd = server.inotify.watch(self.path.parent, self._on_change)
        self.reader = _LogReader(self.path)
        self.task = asyncio.create_task(self._run())

    def _on_change(self, deleted: bool) -> None:
        self.deleted = self.deleted or deleted
        self.changed.set()

    def _removed(self) -> bool:
        """Whether the container has gone, after a deletion in its directory (a rotation deletes too)."""
        if not self.deleted:
            return False
        self.deleted = False
        try:
            self.server.containers.get(self.container_id)
        except ContainerNotFound:
            return True
        return False

    def join(self, session: LogsSession, tail: int | None) -> asyncio.Future[None]:
        """Send `session` the last `tail` lines (None: all), then every new line; the future is done once it follows."""
        admitted = asyncio.get_running_loop().create_future()
        self.joining.append((session, tail, admitted))
        self.changed.set()
        return admitted

    async def leave(self, session: LogsSession) -> None:
        self.sessions.discard(session)
        self.joining = deque(entry for entry in self.joining if entry[0] is not session)
        with contextlib.suppress(Exception):
            await self.server.layer.group_discard(self.group, session.reply_to)
        if not self.sessions and not self.joining:
            self.close()

    def close(self) -> None:
        """Stop following (the task closes the file once a read in flight is done)."""
        self.task.cancel()
        self.server.inotify.unwatch(self.wd)
        if self.server.followers.get(self.container_id) is self:
            del self.server.followers[self.container_id]

    async def _run(self) -> None:
        try:
            await self._follow()
        except Exception as err:
            logger.exception("live: the log follower of %s failed", self.container_id[:12])
            for session in [*self.sessions, *(entry[0] for entry in self.joining)]:
                session.finish(1011, f"the log follower failed: {err}")
        finally:
            if self.reading is not None and not self.reading.done():
                await asyncio.wait([self.reading])  # the reader's file stays open until its read is done
            self.reader.close()

    async def _follow(self) -> None:
        while True:
            await self.changed.wait()
            self.changed.clear()
            # Newcomers are let in between batches: a container that never stops writing must not keep them out.
            while True:
                batch = await self._read()
                await self._send(batch)
                await self._admit_all()
                if not batch:
                    break
            if self._removed():
                for session in list(self.sessions):
                    session.finish(Close.NOT_FOUND, "the container was removed")
                self.close()
                return

    async def _read(self) -> str:
        """Return the next batch as the page's message ("" when there is none), read and encoded in a thread."""
        self.reading = asyncio.ensure_future(asyncio.to_thread(self._read_batch))
        return await asyncio.shield(self.reading)

    def _read_batch(self) -> str:
        lines = self.reader.read()
        return encode_lines(lines) if lines else ""

    async def _send(self, batch: str) -> None:
        """Send a batch to the followers, then leave a pause that grows with their number."""
        if not batch or not self.sessions:
            return
        self.seq += 1
        await self.server.layer.group_send(self.group, {"type": "live.lines", "text": batch, "seq": self.seq})
        spacing = min(_MAX_SPACING_S, _SPACING_PER_FOLLOWER_S * len(self.sessions))
        if spacing > 0.001:
            await asyncio.sleep(spacing)

    async def _admit_all(self) -> None:
        while self.joining:
            session, tail, admitted = self.joining.popleft()
            try:
                await self._admit(session, tail)
            except Exception as err:  # that one session's consumer (a full queue): the others go on
                logger.warning("live: cannot admit a follower of %s: %s", self.container_id[:12], err)
                session.finish(1011, f"the log history could not be sent: {err}")
                continue
            admitted.set_result(None)

    async def _admit(self, session: LogsSession, tail: int | None) -> None:
        """Send the history up to where the reader stands, then add the session to the group: the seam is exact."""
        history: list[str] = []
        for _ in range(_ADMIT_ATTEMPTS):
            if not self.reader.is_current():
                await self._send(await self._read())  # rotated: read on to the new file first
                continue
            history = await asyncio.to_thread(_history, self.path, self.reader.position, tail)
            if self.reader.is_current():
                break
            # Rotated while the history was read: that read may have missed the renamed file.
        for text in history[:-1]:
            await session.reply("live.text", text=text)
        last = history[-1] if history else encode_lines([], history=True, done=True)
        await session.reply("live.text", text=last, seq=self.seq + 1)
        await self.server.layer.group_add(self.group, session.reply_to)
        self.sessions.add(session)


class LogsSession(Session):
    """Follow a container's log: its last `tail` lines (None: all), then every line as it is written."""

    kind = "logs"

    def __init__(self, server: LiveServer, message: dict[str, Any]) -> None:
        super().__init__(server, message)
        self.follower: LogFollower | None = None
        self.ended: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    async def run(self) -> tuple[int, str]:
        tail = self.options.get("tail")
        try:
            self.follower = self.server.follower(self.container_id)
        except ContainerNotFound:
            raise Refused(Close.NOT_FOUND, "the container was removed") from None
        await self.reply("live.opened")
        admitted = self.follower.join(self, None if tail is None else int(tail))
        await asyncio.wait([admitted, self.ended], return_when=asyncio.FIRST_COMPLETED)
        return await self.ended

    def finish(self, code: int, reason: str) -> None:
        if not self.ended.done():
            self.ended.set_result((code, reason))

    async def release(self) -> None:
        if self.follower is not None:
            await self.follower.leave(self)


class DownloadSession(Session):
    """The whole log as text, in chunks the view asks for (each `ack` lets one more go)."""

    kind = "download"

    def __init__(self, server: LiveServer, message: dict[str, Any]) -> None:
        super().__init__(server, message)
        self.credit = asyncio.Semaphore(_DOWNLOAD_WINDOW)
        self.records: Iterator[Record] | None = None

    async def run(self) -> tuple[int, str]:
        try:
            path = await asyncio.to_thread(self.server.containers.log_path, self.container_id)
        except ContainerNotFound:
            raise Refused(Close.NOT_FOUND, "the container was removed") from None
        self.records = read_log(path)
        await self.reply("live.opened")
        timestamps = bool(self.options.get("timestamps", True))
        while data := await asyncio.to_thread(self._chunk, timestamps):
            await self.credit.acquire()
            await self.reply("live.data", data=data)
        return 1000, "the whole log is out"

    def _chunk(self, timestamps: bool) -> bytes:
        assert self.records is not None
        out = bytearray()
        for record in self.records:
            if timestamps:
                out += record.timestamp().encode() + b" "
            out += record.text
            if len(out) >= _DOWNLOAD_CHUNK:
                break
        return bytes(out)

    def ack(self) -> None:
        self.credit.release()

    async def release(self) -> None:
        if self.records is not None:
            with contextlib.suppress(ValueError):  # still being read in its thread: it closes when collected
                self.records.close()  # type: ignore[attr-defined]
