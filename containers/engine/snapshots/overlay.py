"""The overlay snapshotter: each committed snapshot holds one layer's changes; overlayfs stacks them.

A committed snapshot's `fs` directory is one layer's diff, deletions stored the way overlayfs
stores them (a 0:0 character device for a deleted file, `trusted.overlay.opaque=y` on a directory
that hides the layers below), so that it can serve directly as a lowerdir. An active snapshot is
an overlay of its parents (nearest first) with its own `fs` as upperdir.
"""

from __future__ import annotations

import os
from pathlib import Path

from containers.engine.errors import InvalidArgument
from containers.engine.snapshots.base import Kind, Mount
from containers.engine.snapshots.storage import DirectorySnapshotter, Record, make_dir

# mount(2) copies at most one page of option data, NUL included; longer lowerdir lists are cut.
_MAX_OPTIONS = os.sysconf("SC_PAGESIZE") - 1

# Features a kernel may turn on by default (overlayfs(5)), switched off so that an upper dir is a
# plain diff: redirect_dir would record a renamed directory as an xattr pointing into the lower
# layers, and metacopy would copy up a chown'ed file without its data, so neither would survive
# as a layer tar. index=off, as Docker and containerd mount: with an index, overlayfs records the
# lower layers' file handles in the upper dir and refuses later mounts it cannot verify them for.
_WRITABLE_OPTIONS = ("index=off", "redirect_dir=off", "metacopy=off")


class OverlaySnapshotter(DirectorySnapshotter):
    """Snapshots as overlayfs layers; needs root and a filesystem that overlayfs accepts as upper.

    Paths are kept short (`<root>/<id>/fs`) because every lowerdir is spelled out in the mount
    options, which the kernel limits to one page: with the default root that is about a hundred
    layers. A deeper stack is refused with InvalidArgument when the snapshot is created.
    """

    overlay_whiteouts = True

    def __init__(self, root: Path) -> None:
        if {",", ":"} & set(str(Path(root).absolute())):
            raise InvalidArgument(f"overlay snapshotter root {root}: ',' and ':' would split the overlay mount options")
        super().__init__(root)

    def _populate(self, directory: Path, record: Record, parents: list[Record]) -> None:
        directory.mkdir()
        make_dir(directory / "fs", 0o755)
        if record.kind is Kind.ACTIVE:
            make_dir(directory / "work", 0o700)

    def _mounts(self, key: str, record: Record, parents: list[Record]) -> list[Mount]:
        writable = record.kind is Kind.ACTIVE
        if not parents:
            return [Mount("bind", str(self._fs(record)), ("rbind", "rw" if writable else "ro"))]
        if not writable and len(parents) == 1:
            # overlayfs needs an upperdir or at least two lowerdirs; one read-only layer is a bind.
            return [Mount("bind", str(self._fs(parents[0])), ("rbind", "ro"))]
        options = [f"lowerdir={':'.join(str(self._fs(parent)) for parent in parents)}"]
        if writable:
            options += [f"upperdir={self._fs(record)}", f"workdir={self._dir(record) / 'work'}", *_WRITABLE_OPTIONS]
        size = len(",".join(options).encode())
        if size > _MAX_OPTIONS:
            raise InvalidArgument(
                f"snapshot {key}: {len(parents)} layers need {size} bytes of overlay mount options, "
                f"more than the kernel's {_MAX_OPTIONS}; use a shorter snapshotter root"
            )
        return [Mount("overlay", "overlay", tuple(options))]
