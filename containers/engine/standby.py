"""Standby containers: `docker run` without waiting for the container to be made.

`docker run` is a create, then a start a few milliseconds later; most of a start is making the
container: its snapshot and mount, cgroup, namespaces, filesystem and init (about 25 ms here,
more than half of the whole command). A standby is a container made ahead of time, for an image
just run with the same settings, with its process deferred (the runtime's `create(deferred=True)`)
and its monitor waiting for `go` (shim/monitor.py). Its init has applied all that the process's
user, capabilities and limits decide, and it waits in C (runtime/init.c's `stand_by`).
Create adopts a standby whose spec, but for the process's arguments, environment and working
directory, is exactly the one the new container would get, so the container is the one it would
have been; start then hands those three to the waiting program, which execs the process. Nothing
else changes: `docker ps` never shows a standby, and an adopted one is an ordinary created container.

On disk, `<containers root>/.standby/<id>` (the image, the monitor's pid and the settings it is made
for, JSON) is there while the standby's monitor waits, and until it has answered the `go`; its
directory `<containers root>/<id>/` has no container.json until it is adopted. A standby lives
`ttl` seconds, then its monitor releases it (one adopted by then stays a created container, started
the usual way). Only starts asked to `keep_warm` (the Docker API's) leave them behind: `PER_IMAGE`
of an image and settings, `MAXIMUM` in all. `release()` gives up those not adopted (before images
are removed, as they hold their layers), `drain()` all of them (at shutdown).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from containers.engine.runtime.state import process_running, wait_exited
from containers.engine.shim import client as shim_client
from containers.engine.shim.monitor import STANDBY_INDEX

logger = logging.getLogger(__name__)

# Standbys in all, and of one image and settings: two, so that back-to-back runs find one while the
# next is made.
MAXIMUM = 4
PER_IMAGE = 2


@dataclass(frozen=True)
class Standby:
    """One index entry: the container's ID, the image it was made from, its waiting monitor, and
    what it was made for (the settings but for the process's own, as a digest: lifecycle's `_kind`)."""

    id: str
    image: str
    monitor_pid: int
    kind: str = ""


class Standbys:
    """The standby containers under one containers root."""

    def __init__(self, containers_root: Path, ttl: float, release_orphan: Callable[[str], None]) -> None:
        """`release_orphan(id)` does what a standby's monitor would, for one whose monitor died."""
        self.root = containers_root
        self.index = containers_root / STANDBY_INDEX
        self.ttl = ttl
        self._release_orphan = release_orphan
        self._lock = threading.Lock()
        self._filling: set[str] = set()
        # Images whose standbys were taken while their fill ran: it looks again before it ends.
        self._taken_meanwhile: set[str] = set()
        self._requests: queue.Queue[tuple[str, Callable[[], bool]]] = queue.Queue()
        self._filler: threading.Thread | None = None
        self._drained = False

    def get(self, container_id: str) -> Standby | None:
        """Return the entry of `container_id` while its monitor waits for `go`."""
        try:
            return Standby(**json.loads((self.index / container_id).read_text()))
        except (FileNotFoundError, NotADirectoryError, ValueError, TypeError):
            return None

    def all(self) -> list[Standby]:
        if not self.index.is_dir():
            return []
        return [s for entry in self.index.iterdir() if (s := self.get(entry.name)) is not None]

    def waiting(self, image: str) -> list[Standby]:
        """Return the standbys of `image` that nobody adopted and whose monitor still waits."""
        return [
            s for s in self.all()
            if s.image == image and not self._adopted(s.id) and process_running(s.monitor_pid)
        ]  # fmt: skip

    def _adopted(self, container_id: str) -> bool:
        return (self.root / container_id / "container.json").exists()

    def unadopted(self, container_id: str) -> bool:
        """Whether `container_id` is a standby that no create has adopted (yet)."""
        return self.get(container_id) is not None and not self._adopted(container_id)

    def add(self, standby: Standby) -> None:
        self.index.mkdir(mode=0o700, exist_ok=True)
        tmp = self.index / f".{standby.id}.tmp"
        tmp.write_text(json.dumps(asdict(standby)))
        os.replace(tmp, self.index / standby.id)

    def abort(self, container_id: str) -> None:
        """Have the standby's monitor release it, and wait until the monitor is gone."""
        standby = self.get(container_id)
        if standby is None:
            return
        try:
            reply, sock = shim_client.request(self.root / container_id / "monitor.sock", {"op": "abort"}, timeout=30)
            sock.close()
        except (OSError, ValueError):
            reply = {}
        if "error" not in reply:
            wait_exited(standby.monitor_pid, timeout=30)
        if (self.index / container_id).exists():
            # Its monitor died before it could release it (killed): release it here.
            self._release_orphan(container_id)
            (self.index / container_id).unlink(missing_ok=True)

    def release(self) -> None:
        """Give up every standby not adopted yet (they hold their images' layers)."""
        self._join_fills()
        for standby in self.all():
            if not self._adopted(standby.id):
                self.abort(standby.id)

    def drain(self) -> None:
        """Give up every standby, adopted or not, and make no more (a server's shutdown)."""
        with self._lock:
            self._drained = True
        self._join_fills()
        for standby in self.all():
            self.abort(standby.id)

    def fill_in_background(self, image: str, fill: Callable[[], bool]) -> None:
        """Have the filler thread call `fill` (make a standby of `image`) while it wants more (see `_fill`).

        One thread for all, started once: starting a thread takes a while on a busy interpreter,
        and each `docker run`'s start would wait for it.
        """
        with self._lock:
            if self.ttl <= 0 or self._drained:
                return
            if image in self._filling:
                self._taken_meanwhile.add(image)
                return
            if len(self._filling) >= MAXIMUM:
                return
            self._filling.add(image)
            if self._filler is None:
                self._filler = threading.Thread(target=self._fill_forever, name="standbys", daemon=True)
                self._filler.start()
            # Queued under the lock: a drain that has the lock next waits for this fill too.
            self._requests.put((image, fill))

    def _fill_forever(self) -> None:
        while True:
            image, fill = self._requests.get()
            try:
                self._fill(image, fill)
            finally:
                self._requests.task_done()

    def _fill(self, image: str, fill: Callable[[], bool]) -> None:
        """Call `fill` while it says another is wanted, or a start took a standby of the image
        meanwhile (back to back runs), PER_IMAGE times at most: a standby that dies as soon as it is
        made (its init killed, out of memory) no longer counts, and must not have the next made forever."""
        try:
            for _ in range(PER_IMAGE):
                with self._lock:
                    self._taken_meanwhile.discard(image)
                if not fill() and not self._was_taken_meanwhile(image):
                    break
        except Exception:  # a standby is an optimisation: the next run is made on the spot instead
            logger.exception("could not make a standby container of %s", image)
        finally:
            with self._lock:
                self._filling.discard(image)
                self._taken_meanwhile.discard(image)

    def _was_taken_meanwhile(self, image: str) -> bool:
        with self._lock:
            return image in self._taken_meanwhile

    def _join_fills(self) -> None:
        self._requests.join()
