"""The native snapshotter: each snapshot is a full copy of its parent, mounted with bind mounts.

It works on any filesystem and without overlayfs, at the price of disk space and copy time. Layers
are applied with deletions done for real (no whiteouts are stored).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from containers.engine.snapshots.base import Kind, Mount
from containers.engine.snapshots.storage import DirectorySnapshotter, Record, make_dir


class NativeSnapshotter(DirectorySnapshotter):
    """Snapshots as full directory copies."""

    overlay_whiteouts = False

    def _populate(self, directory: Path, record: Record, parents: list[Record]) -> None:
        directory.mkdir()
        if parents:
            copy_tree(self._fs(parents[0]), directory / "fs")
        else:
            make_dir(directory / "fs", 0o755)

    def _mounts(self, key: str, record: Record, parents: list[Record]) -> list[Mount]:
        return [Mount("bind", str(self._fs(record)), ("rbind", "rw" if record.kind is Kind.ACTIVE else "ro"))]


def copy_tree(source: Path, target: Path) -> None:
    """Copy the tree `source` to the new directory `target`, keeping everything a layer can hold.

    GNU `cp -a` keeps owners, modes, times, xattrs, hard links, symlinks and device nodes, and never
    follows a symlink in the tree; `-T` copies `source` itself as `target` (not into it).
    """
    result = subprocess.run(["cp", "-a", "-T", "--", str(source), str(target)], capture_output=True, text=True)
    if result.returncode != 0:
        raise OSError(f"failed to copy snapshot files {source} to {target}: {result.stderr.strip()}")
