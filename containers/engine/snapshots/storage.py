"""What the on-disk snapshotters share: the metadata file and the bookkeeping of the lifecycle.

State under a snapshotter's root:

    metadata.json    every snapshot by key or name: id, kind, parent, labels, created
    metadata.lock    flock(2)ed around every read (shared) and change (exclusive)
    <id>/fs          the snapshot's own files
    <id>/work        overlayfs' work directory (active overlay snapshots only)

Several processes (web, node agent) share one root, so every change takes the exclusive lock,
reads the file, and replaces it with write-to-temporary + rename(2), which is atomic: a reader
sees the old or the new file, never half of one. Ids only grow, so a directory of a removed
snapshot is never confused with a new one, and paths stay short for overlay's option limit.
"""

from __future__ import annotations

import abc
import fcntl
import json
import os
import shutil
import stat
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from containers.engine.errors import AlreadyExists, FailedPrecondition, SnapshotNotFound
from containers.engine.snapshots.base import Info, Kind, Mount


@dataclass
class Record:
    """One snapshot as stored in metadata.json."""

    id: int
    kind: Kind
    parent: str | None
    labels: dict[str, str]
    created: float

    def info(self, name: str) -> Info:
        """Return the public view of this record."""
        return Info(name=name, kind=self.kind, parent=self.parent, labels=dict(self.labels), created=self.created)


class Transaction:
    """The snapshot records as read under the lock; `save()` writes them back (exclusive lock only)."""

    def __init__(self, path: Path, writable: bool) -> None:
        self._path = path
        self._writable = writable
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            data = {"next_id": 1, "snapshots": {}}
        self._next_id: int = data["next_id"]
        self.records: dict[str, Record] = {
            key: Record(**{**value, "kind": Kind(value["kind"])}) for key, value in data["snapshots"].items()
        }

    def get(self, key: str) -> Record:
        """Return the record of `key`; raise SnapshotNotFound if there is none."""
        try:
            return self.records[key]
        except KeyError:
            raise SnapshotNotFound(f"snapshot {key}: not found") from None

    def claim(self, key: str) -> None:
        """Raise AlreadyExists if `key` is already some snapshot's key or name."""
        if key in self.records:
            raise AlreadyExists(f"snapshot {key}: already exists")

    def parents(self, parent: str | None) -> list[Record]:
        """Return the committed chain starting at `parent`, nearest first."""
        chain: list[Record] = []
        name = parent
        while name is not None:
            record = self.get(name)
            if record.kind is not Kind.COMMITTED:
                raise FailedPrecondition(f"snapshot {name}: is {record.kind}, only committed snapshots can be parents")
            chain.append(record)
            name = record.parent
        return chain

    def children(self, key: str) -> list[str]:
        """Return the keys and names of the snapshots whose parent is `key`."""
        return sorted(child for child, record in self.records.items() if record.parent == key)

    def add(self, key: str, kind: Kind, parent: str | None, labels: Mapping[str, str] | None) -> Record:
        """Record a new snapshot under a fresh id."""
        record = Record(self._next_id, kind, parent, dict(labels or {}), time.time())
        self._next_id += 1
        self.records[key] = record
        return record

    def save(self) -> None:
        """Write the records back atomically: a temporary file, fsync(2), then rename(2) over the old one."""
        if not self._writable:
            raise RuntimeError("a read-only snapshot metadata transaction cannot save")
        # Every container's create and removal rewrites this file: compact, and without asdict's deep copies.
        snapshots = {key: {**vars(r), "kind": r.kind.value} for key, r in self.records.items()}
        tmp = self._path.with_name(self._path.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump({"next_id": self._next_id, "snapshots": snapshots}, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path)
        directory = os.open(self._path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


class MetaStore:
    """The metadata file of one snapshotter root, with its lock."""

    def __init__(self, root: Path) -> None:
        self._path = root / "metadata.json"
        self._lock = root / "metadata.lock"

    @contextmanager
    def transaction(self, *, writable: bool) -> Iterator[Transaction]:
        """Hold the lock (exclusive if `writable`) while the caller reads or changes the records.

        flock(2) locks belong to the open file description, so two threads of one process that
        each open the lock file exclude each other as two processes do.
        """
        fd = os.open(self._lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if writable else fcntl.LOCK_SH)
            yield Transaction(self._path, writable)
        finally:
            os.close(fd)


class DirectorySnapshotter(abc.ABC):
    """A snapshotter that keeps each snapshot in `<root>/<id>/`; subclasses say what goes in and how it mounts."""

    overlay_whiteouts: bool

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self.root.mkdir(parents=True, exist_ok=True)
        self._store = MetaStore(self.root)

    @abc.abstractmethod
    def _populate(self, directory: Path, record: Record, parents: list[Record]) -> None:
        """Create the files of a new snapshot in `directory`, which does not exist yet."""

    @abc.abstractmethod
    def _mounts(self, key: str, record: Record, parents: list[Record]) -> list[Mount]:
        """Describe the mounts of an active or view snapshot."""

    def _dir(self, record: Record) -> Path:
        return self.root / str(record.id)

    def _fs(self, record: Record) -> Path:
        return self._dir(record) / "fs"

    def prepare(self, key: str, parent: str | None = None, labels: Mapping[str, str] | None = None) -> list[Mount]:
        """Create the active snapshot `key` on top of the committed `parent`; return its mounts."""
        return self._create(Kind.ACTIVE, key, parent, labels)

    def view(self, key: str, parent: str | None = None, labels: Mapping[str, str] | None = None) -> list[Mount]:
        """Create the read-only snapshot `key` of the committed `parent`; return its mounts."""
        return self._create(Kind.VIEW, key, parent, labels)

    def _create(self, kind: Kind, key: str, parent: str | None, labels: Mapping[str, str] | None) -> list[Mount]:
        with self._store.transaction(writable=True) as tx:
            tx.claim(key)
            parents = tx.parents(parent)
            record = tx.add(key, kind, parent, labels)
            mounts = self._mounts(key, record, parents)
            directory = self._dir(record)
            # The id was never saved, so a directory there is what a crash before save() left behind.
            shutil.rmtree(directory, ignore_errors=True)
            try:
                self._populate(directory, record, parents)
                tx.save()
            except BaseException:
                shutil.rmtree(directory, ignore_errors=True)
                raise
        return mounts

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        """Turn the active snapshot `key` into the committed snapshot `name`."""
        with self._store.transaction(writable=True) as tx:
            record = tx.get(key)
            if record.kind is not Kind.ACTIVE:
                raise FailedPrecondition(f"snapshot {key}: is {record.kind}, only an active snapshot can be committed")
            tx.claim(name)
            del tx.records[key]
            record.kind = Kind.COMMITTED
            record.labels.update(labels or {})
            record.created = time.time()
            tx.records[name] = record
            tx.save()

    def remove(self, key: str) -> None:
        """Remove the snapshot `key` and its files; refuse while it has children."""
        with self._store.transaction(writable=True) as tx:
            record = tx.get(key)
            children = tx.children(key)
            if children:
                raise FailedPrecondition(f"snapshot {key}: has {len(children)} children ({', '.join(children[:3])})")
            del tx.records[key]
            tx.save()
        shutil.rmtree(self._dir(record))

    def mounts(self, key: str) -> list[Mount]:
        """Return the mounts of the active or view snapshot `key`."""
        with self._store.transaction(writable=False) as tx:
            record = tx.get(key)
            if record.kind is Kind.COMMITTED:
                raise FailedPrecondition(f"snapshot {key}: is committed; mount a view or an active child of it")
            return self._mounts(key, record, tx.parents(record.parent))

    def stat(self, key: str) -> Info:
        """Return what is known about the snapshot `key`."""
        with self._store.transaction(writable=False) as tx:
            return tx.get(key).info(key)

    def walk(self) -> Iterator[Info]:
        """Iterate over all snapshots (read at once, so the lock is not held while the caller iterates)."""
        with self._store.transaction(writable=False) as tx:
            infos = [record.info(key) for key, record in tx.records.items()]
        return iter(infos)

    def usage(self, key: str) -> int:
        """Return the apparent size of the snapshot's own non-directory files, each inode once (like Docker)."""
        return disk_usage(self.upper_dir(key))

    def upper_dir(self, key: str) -> Path:
        """Return the directory that holds the snapshot's own files."""
        with self._store.transaction(writable=False) as tx:
            return self._fs(tx.get(key))


def make_dir(path: Path, mode: int) -> None:
    """Create `path` with exactly `mode`, whatever the umask (a rootfs `/` must be 0755 for every user)."""
    os.mkdir(path)
    os.chmod(path, mode)


def disk_usage(root: Path) -> int:
    """Sum the sizes of the non-directory entries under `root`, counting hard-linked inodes once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode) or (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total
