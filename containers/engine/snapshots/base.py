"""The snapshotter interface: layered filesystems described as mounts.

A snapshotter stores the unpacked layers of images and the writable layers of containers. It never
mounts anything itself: it *describes* the mounts (`Mount`) that make a snapshot visible, and the
runtime (or `snapshots.mount.mount_all`) performs them. This is containerd's snapshotter model.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Mount:
    """One mount(2) call: `mount -t <type> -o <options> <source> <target>`.

    `type` is "overlay" or "bind"; `options` are the comma-separated words of `-o`, e.g.
    `("lowerdir=a:b", "upperdir=u", "workdir=w")` or `("rbind", "ro")`. The target is chosen by
    whoever performs the mount.
    """

    type: str
    source: str
    options: tuple[str, ...] = ()


class Kind(enum.StrEnum):
    """What a snapshot is for: written (active), read (view), or a parent for others (committed)."""

    ACTIVE = "active"
    VIEW = "view"
    COMMITTED = "committed"


@dataclass(frozen=True)
class Info:
    """What is known about one snapshot: its key or name, kind, parent, labels and creation time."""

    name: str
    kind: Kind
    parent: str | None
    labels: dict[str, str] = field(default_factory=dict)
    created: float = 0.0


class Snapshotter(Protocol):
    """Stores layered filesystems: committed layers, and writable or read-only snapshots on top of them.

    Glossary:

    - key: the name of an *active* or *view* snapshot, chosen by the caller (a container ID, or
      `extract-<random>-<chain id>` while a layer is unpacked). Active snapshots are writable.
    - name: the name of a *committed* snapshot. Committed snapshots never change; image layers are
      committed under their chain ID so that images sharing layers share snapshots.
    - parent: the committed snapshot that a new snapshot starts from. A snapshot's contents are
      its parent's contents plus its own changes. A committed snapshot with children cannot be
      removed.

    Keys and names share one namespace: no key may equal another snapshot's key or name.

    Lifecycle:

        prepare(key, parent) -> mounts    an active snapshot on top of `parent`; mount it, write
        commit(name, key)                 freeze the active snapshot `key` as `name`; `key` is gone
        prepare(key2, parent=name)        a new layer on top of it, and so on
        view(key, parent) -> mounts       a read-only snapshot of `parent`; remove it when done
        remove(key or name)               drop a snapshot without children, and its files

    Unpacking a layer is: prepare under a temporary key, apply the layer's tar into
    `upper_dir(key)`, commit under the chain ID; on failure, remove the temporary key.

    Implementations keep their state under one root directory, shared safely by several
    processes (web and node agent). Labels are free-form strings; the engine records which image
    a container's snapshot belongs to as `labels={"webengine.image": "sha256:..."}`.
    """

    overlay_whiteouts: bool
    """True if deletions are stored as overlayfs whiteouts (a 0:0 char device, an opaque xattr)."""

    def prepare(self, key: str, parent: str | None = None, labels: Mapping[str, str] | None = None) -> list[Mount]:
        """Create the active snapshot `key` on top of the committed `parent`; return its mounts.

        Raises AlreadyExists if `key` is taken, SnapshotNotFound if `parent` does not exist and
        FailedPrecondition if `parent` is not committed.
        """
        ...

    def view(self, key: str, parent: str | None = None, labels: Mapping[str, str] | None = None) -> list[Mount]:
        """Create the read-only snapshot `key` of the committed `parent`; return its mounts.

        Raises like `prepare`.
        """
        ...

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        """Turn the active snapshot `key` into the committed snapshot `name`; `key` no longer exists.

        The committed snapshot keeps the active one's labels, updated with `labels`. Raises
        SnapshotNotFound, FailedPrecondition if `key` is not active, AlreadyExists if `name` is
        taken. The active snapshot must no longer be mounted.
        """
        ...

    def remove(self, key: str) -> None:
        """Remove the snapshot `key` (active, view or committed) and its files.

        Raises SnapshotNotFound, or FailedPrecondition if other snapshots have it as parent.
        The snapshot must no longer be mounted.
        """
        ...

    def mounts(self, key: str) -> list[Mount]:
        """Return the mounts of the active or view snapshot `key` again, as `prepare`/`view` did.

        Raises SnapshotNotFound, or FailedPrecondition for a committed snapshot.
        """
        ...

    def stat(self, key: str) -> Info:
        """Return what is known about the snapshot `key`; raise SnapshotNotFound if there is none."""
        ...

    def walk(self) -> Iterator[Info]:
        """Iterate over all snapshots, in no particular order."""
        ...

    def usage(self, key: str) -> int:
        """Return the bytes held in the snapshot's own directory, its parents not counted.

        Each inode is counted once (hard links share their bytes), by apparent size.
        """
        ...

    def upper_dir(self, key: str) -> Path:
        """Return the directory that holds the snapshot's own files.

        For an active overlay snapshot this is the writable upper directory (its changes, to be
        turned into a layer tar); for a native snapshot it is the full filesystem tree.
        """
        ...
