"""Declarative layers and tree comparisons for tests (containerd's fstest, in tar form).

    layer(create_dir("/etc"), create_file("/etc/motd", b"hi\n", 0o644), whiteout("/old"))

returns the bytes of an uncompressed layer tar, entries in the order given.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from containers.engine.archive import walk_tree
from containers.engine.snapshots.base import Mount
from containers.engine.snapshots.mount import mount_all, unmount
from containers.engine.snapshots.unpack import Layer

MTIME = 1_600_000_000


class Entry:
    """One tar entry: its header and, for regular files, its content."""

    def __init__(self, info: tarfile.TarInfo, data: bytes = b"") -> None:
        self.info = info
        self.data = data


def _info(
    path: str,
    kind: bytes,
    mode: int,
    *,
    uid: int = 0,
    gid: int = 0,
    mtime: float = MTIME,
    xattrs: Mapping[str, bytes] | None = None,
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path)
    info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, gid, mtime
    info.pax_headers = {
        f"SCHILY.xattr.{key}": value.decode("utf-8", "surrogateescape") for key, value in (xattrs or {}).items()
    }
    return info


def create_file(path: str, data: bytes = b"", mode: int = 0o644, **attrs: Any) -> Entry:
    """Return a regular file entry; `attrs` are uid, gid, mtime and xattrs (as for every entry)."""
    info = _info(path, tarfile.REGTYPE, mode, **attrs)
    info.size = len(data)
    return Entry(info, data)


def create_dir(path: str, mode: int = 0o755, **attrs: Any) -> Entry:
    """Return a directory entry."""
    return Entry(_info(path, tarfile.DIRTYPE, mode, **attrs))


def symlink(path: str, target: str, **attrs: Any) -> Entry:
    """Return a symlink entry `path -> target`."""
    info = _info(path, tarfile.SYMTYPE, 0o777, **attrs)
    info.linkname = target
    return Entry(info)


def hardlink(path: str, target: str) -> Entry:
    """Return a hard link entry: `path` is another name of the earlier entry `target`."""
    info = _info(path, tarfile.LNKTYPE, 0o644)
    info.linkname = target
    return Entry(info)


def device(path: str, kind: str, major: int, minor: int, mode: int = 0o666, **attrs: Any) -> Entry:
    """Return a character ("c") or block ("b") device entry."""
    info = _info(path, tarfile.CHRTYPE if kind == "c" else tarfile.BLKTYPE, mode, **attrs)
    info.devmajor, info.devminor = major, minor
    return Entry(info)


def fifo(path: str, mode: int = 0o644) -> Entry:
    """Return a named pipe entry."""
    return Entry(_info(path, tarfile.FIFOTYPE, mode))


def whiteout(path: str) -> Entry:
    """Return the whiteout that deletes `path` from the layers below."""
    directory, _, base = path.rpartition("/")
    return create_file(f"{directory}/.wh.{base}", mode=0o600)


def opaque(path: str) -> Entry:
    """Return the marker that hides what the layers below have in the directory `path`."""
    return create_file(f"{path.rstrip('/')}/.wh..wh..opq", mode=0o600)


def layer(*entries: Entry) -> bytes:
    """Return the bytes of an uncompressed PAX tar holding `entries` in order."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            tar.addfile(entry.info, io.BytesIO(entry.data) if entry.info.isreg() else None)
    return out.getvalue()


def digest(data: bytes) -> str:
    """Return the sha256 digest of `data`, as a diff ID."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def as_layer(data: bytes, opened: list[str] | None = None) -> Layer:
    """Return `data` as an unpackable Layer; each open is recorded in `opened` when given."""

    def open_() -> io.BytesIO:
        if opened is not None:
            opened.append(digest(data))
        return io.BytesIO(data)

    return Layer(digest(data), open_)


@contextmanager
def mounted(mounts: list[Mount], target: Path) -> Iterator[Path]:
    """Mount `mounts` on `target` (created if needed) for the duration of the block."""
    target.mkdir(parents=True, exist_ok=True)
    mount_all(mounts, target)
    try:
        yield target
    finally:
        unmount(target)


def tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Describe everything below `root` for comparisons: type, mode, owner, content, link, device, xattrs.

    Directory mtimes are left out (a mount or a copy may touch them); file mtimes are kept.
    """
    result: dict[str, tuple[object, ...]] = {}
    for name, st in walk_tree(root):
        path = root / name
        if stat.S_ISREG(st.st_mode):
            detail: object = (path.read_bytes(), int(st.st_mtime))
        elif stat.S_ISLNK(st.st_mode):
            detail = os.readlink(path)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            detail = (os.major(st.st_rdev), os.minor(st.st_rdev))
        else:
            detail = None
        xattrs = {
            key: os.getxattr(path, key, follow_symlinks=False)
            for key in os.listxattr(path, follow_symlinks=False)
            if not key.startswith("trusted.overlay.")
        }
        result[name] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, detail, xattrs)
    return result
