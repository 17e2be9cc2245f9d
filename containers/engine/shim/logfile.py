"""Container logs in Docker's json-file format: one JSON record a line, rotated by size.

    {"log":"hello\\n","stream":"stdout","time":"2026-11-28T12:00:00.123456789Z"}

The monitor writes them (`LogWriter`); anyone may read them (`read_log`), with Docker's tail,
since, until and follow semantics, across rotated files (`<name>.N` is older than `<name>`).
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

_encode_string = json.encoder.encode_basestring  # type: ignore[attr-defined]

# Docker splits a line longer than its 16 KiB buffer into several records (a "partial" line).
MAX_RECORD = 16 * 1024


@functools.lru_cache(maxsize=4)
def _second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def format_time(ns: int) -> str:
    """RFC 3339 with nanoseconds, in UTC, as Docker writes log times."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    return f"{_second(seconds)}.{fraction:09d}Z"


def parse_time(text: str) -> int:
    """Parse an RFC 3339 time with up to nanosecond precision into nanoseconds since the epoch."""
    main, _, rest = text.partition(".")
    if rest:
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
    else:
        main, digits, zone = text[:19], "", text[19:]
    moment = datetime.fromisoformat(main + (zone.replace("Z", "+00:00") or "+00:00"))
    return int(moment.timestamp()) * 1_000_000_000 + int((digits + "000000000")[:9])


@dataclass(frozen=True)
class Record:
    stream: str
    time_ns: int
    text: bytes

    def timestamp(self) -> str:
        return format_time(self.time_ns)


class LogWriter:
    """Append records to `path`, rotating when it passes `max_size` and keeping `max_files` files."""

    def __init__(self, path: Path, max_size: int = 20 * 1024 * 1024, max_files: int = 5) -> None:
        self.path = path
        self.max_size = max_size
        self.max_files = max(1, max_files)
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - kept open for the container's life
        self._size = self._file.tell()
        self._partial: dict[str, bytes] = {}

    def write(self, stream: str, data: bytes) -> None:
        """Split `data` into lines and append one record each; hold a trailing partial line."""
        buffered = self._partial.pop(stream, b"") + data
        lines = buffered.split(b"\n")
        tail = lines.pop()
        now = time.time_ns()
        out = [self._encode(stream, line + b"\n", now) for line in lines]
        while len(tail) >= MAX_RECORD:
            out.append(self._encode(stream, tail[:MAX_RECORD], now))
            tail = tail[MAX_RECORD:]
        if tail:
            self._partial[stream] = tail
        if out:
            self._append(b"".join(out))

    def flush_partial(self) -> None:
        """Write held partial lines without a newline (the stream ended)."""
        now = time.time_ns()
        out = [self._encode(stream, text, now) for stream, text in self._partial.items() if text]
        self._partial.clear()
        if out:
            self._append(b"".join(out))

    @staticmethod
    def _encode(stream: str, text: bytes, now: int) -> bytes:
        # What json.dumps would write for {"log", "stream", "time"}, built directly: this runs
        # once a line, and the C string encoder is several times faster than dumps of a dict.
        log = _encode_string(text.decode("utf-8", errors="replace"))
        return f'{{"log":{log},"stream":"{stream}","time":"{format_time(now)}"}}\n'.encode()

    def _append(self, data: bytes) -> None:
        if self._size and self._size + len(data) > self.max_size:
            self._rotate()
        self._file.write(data)
        self._size += len(data)

    def _rotate(self) -> None:
        self._file.close()
        if self.max_files == 1:
            self.path.unlink(missing_ok=True)
        else:
            for n in range(self.max_files - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{n}")
                newer = self.path if n == 1 else self.path.with_name(f"{self.path.name}.{n - 1}")
                if newer.exists():
                    os.replace(newer, older)
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115
        self._size = 0

    def close(self) -> None:
        self.flush_partial()
        self._file.close()


def _files(path: Path) -> list[Path]:
    """Return the log's files, oldest first."""
    rotated = sorted(
        (p for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit()),
        key=lambda p: -int(p.suffix[1:]),
    )
    return [*rotated, path] if path.exists() else rotated


def _decode(line: bytes) -> Record | None:
    try:
        data = json.loads(line)
        return Record(data["stream"], parse_time(data["time"]), data["log"].encode())
    except (ValueError, KeyError):
        return None


def _tail_lines(files: list[Path], count: int, end: int) -> list[bytes]:
    """Return the last `count` lines across `files` (the last read only up to `end`), reading backwards."""
    lines: list[bytes] = []
    for index, path in enumerate(reversed(files)):
        with open(path, "rb") as f:
            position = end if index == 0 else f.seek(0, os.SEEK_END)
            leftover = b""
            while position > 0 and len(lines) < count:
                step = min(65536, position)
                position -= step
                f.seek(position)
                chunk = f.read(step) + leftover
                parts = chunk.split(b"\n")
                leftover = parts.pop(0)
                lines[:0] = [p for p in parts if p]
            if position == 0 and leftover:
                lines.insert(0, leftover)
        if len(lines) >= count:
            break
    return lines[-count:] if count else []


def read_log(
    path: Path,
    *,
    tail: int | None = None,
    since_ns: int = 0,
    until_ns: int = 0,
    follow: bool = False,
    stopped: Callable[[], bool] = lambda: True,
    poll_interval: float = 0.01,
) -> Iterator[Record]:
    """Yield records with Docker's `logs` semantics; with `follow`, keep going until `stopped()`.

    `tail` None means all lines. `since_ns`/`until_ns` of 0 mean no bound. Following starts
    exactly where the history ends (nothing written in between is lost) and survives rotation:
    when the file is replaced, the rest of the old one is read, then the new one.
    """
    try:
        current = open(path, "rb")  # noqa: SIM115 - handed to _follow, closed there
    except FileNotFoundError:
        current = None
    try:
        end = os.fstat(current.fileno()).st_size if current is not None else 0
        files = _files(path)
        if tail is not None:
            lines: Iterator[bytes] = iter(_tail_lines(files, tail, end))
        else:
            lines = (line for f in files for line in _read_lines(f, end if f == path else None))
        for line in lines:
            record = _decode(line)
            if record is None or record.time_ns < since_ns:
                continue
            if until_ns and record.time_ns > until_ns:
                return
            yield record
        if follow and current is not None:
            current.seek(end)
            yield from _follow(path, current, until_ns, stopped, poll_interval)
    finally:
        if current is not None:
            current.close()


def read_before(path: Path, end: int, tail: int | None = None) -> list[Record]:
    """Return the records before byte `end` of the current file, after the rotated ones; the last `tail` of them.

    A follower that has read the current file up to `end` gives a newcomer this history, then
    what it reads from `end` on: nothing twice, nothing missed (the caller checks that `path` is
    still the file it reads, i.e. that the log did not rotate in between).
    """
    files = _files(path)
    if tail is not None:
        lines: Iterator[bytes] = iter(_tail_lines(files, tail, end))
    else:
        lines = (line for f in files for line in _read_lines(f, end if f == path else None))
    return [record for line in lines if (record := _decode(line)) is not None]


def _read_lines(path: Path, end: int | None) -> Iterator[bytes]:
    with open(path, "rb") as f:
        data = f.read() if end is None else f.read(end)
    for line in data.splitlines(keepends=True):
        if line.endswith(b"\n"):
            yield line


def _follow(
    path: Path, f: BinaryIO, until_ns: int, stopped: Callable[[], bool], poll_interval: float
) -> Iterator[Record]:
    inode = os.fstat(f.fileno()).st_ino
    pending = b""
    try:
        while True:
            chunk = f.read(65536)
            if chunk:
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    record = _decode(line)
                    if record is None:
                        continue
                    if until_ns and record.time_ns > until_ns:
                        return
                    yield record
                continue
            try:
                rotated = os.stat(path).st_ino != inode
            except FileNotFoundError:
                rotated = False
            if rotated:
                f.close()
                f = open(path, "rb")  # noqa: SIM115
                inode = os.fstat(f.fileno()).st_ino
                continue
            if stopped():
                # One last read: the writer may have appended just before it stopped.
                tail = f.read()
                if not tail:
                    return
                f.seek(-len(tail), os.SEEK_CUR)
                continue
            time.sleep(poll_interval)
    finally:
        f.close()
