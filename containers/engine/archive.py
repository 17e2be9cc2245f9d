"""Tar archives of directory trees: whole trees (`docker export`) and layers from overlay upper dirs.

Archives are deterministic: entries come in sorted depth-first order (a directory, then its
children by name), names are relative with no leading `/`, mtimes are whole seconds and user and
group names are left out (as Docker does), so the same tree always gives the same bytes and digest.
Symlinks are stored, never followed.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from containers.engine.snapshots.apply import OVERLAY_XATTR_PREFIX, WHITEOUT_OPAQUE, WHITEOUT_PREFIX

_TYPES = {
    stat.S_IFDIR: tarfile.DIRTYPE,
    stat.S_IFLNK: tarfile.SYMTYPE,
    stat.S_IFCHR: tarfile.CHRTYPE,
    stat.S_IFBLK: tarfile.BLKTYPE,
    stat.S_IFIFO: tarfile.FIFOTYPE,
    stat.S_IFREG: tarfile.REGTYPE,
}


def tar_directory(root: Path, out: BinaryIO) -> None:
    """Write the tree below `root` (not `root` itself) to `out` as a tar, like `docker export`.

    Owners, modes (setuid and sticky bits included), mtimes, xattrs (PAX `SCHILY.xattr.*`), hard
    links (LNKTYPE to the first name), symlinks, devices and fifos are kept; sockets are skipped,
    as a tar cannot hold them.
    """
    with TarWriter(root, out) as writer:
        for name, st in walk_tree(root):
            writer.add(name, st)


def diff_upper(upper: Path, out: BinaryIO) -> None:
    """Write the layer tar of an overlay upper directory to `out`, whiteouts in OCI form.

    A 0:0 character device (a deleted file) becomes an empty `.wh.<name>` file, and a directory
    with `trusted.overlay.opaque=y` becomes the directory followed by `<dir>/.wh..wh..opq`;
    overlayfs' own `trusted.overlay.*` xattrs are not emitted.
    """
    with TarWriter(upper, out) as writer:
        for name, st in walk_tree(upper):
            if is_whiteout(st):
                writer.add_whiteout(name, st)
                continue
            writer.add(name, st)
            if stat.S_ISDIR(st.st_mode) and is_opaque(upper / name):
                writer.add_opaque(name, st)


def changes(upper: Path, lower_exists: Callable[[str], bool]) -> list[tuple[str, str]]:
    """Return the changes an overlay upper directory holds, as `docker diff` lists them.

    Each change is ("A" added | "C" changed | "D" deleted, "/path"), in sorted depth-first order.
    A path in the upper directory is "C" if `lower_exists(path)` says the layers below have it,
    else "A"; a whiteout is "D". An opaque directory (deleted and made again) is "C" or "A" like
    any other; Docker's overlay2 reports it as "D".
    """
    result = []
    for name, st in walk_tree(upper):
        path = "/" + name
        if is_whiteout(st):
            result.append(("D", path))
        else:
            result.append(("C" if lower_exists(path) else "A", path))
    return result


def walk_tree(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Yield (relative name, lstat) for everything below `root`: each directory, then its children by name."""
    stack = [""]
    while stack:
        name = stack.pop()
        st = os.lstat(os.path.join(root, name))
        if name:
            yield name, st
        if stat.S_ISDIR(st.st_mode):
            children = sorted(os.listdir(os.path.join(root, name)), reverse=True)
            stack.extend(f"{name}/{child}" if name else child for child in children)


def is_whiteout(st: os.stat_result) -> bool:
    """Return whether this is an overlayfs whiteout: a character device numbered 0/0 (overlayfs(5))."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: Path) -> bool:
    """Return whether the directory hides the lower layers' directory (overlayfs(5), "opaque")."""
    try:
        return os.getxattr(path, OVERLAY_XATTR_PREFIX + "opaque", follow_symlinks=False) == b"y"
    except OSError as err:
        if err.errno in (errno.ENODATA, errno.ENOTSUP):
            return False
        raise


class TarWriter:
    """A PAX tar stream of one tree, remembering inodes already written to emit hard links."""

    def __init__(self, root: Path, out: BinaryIO) -> None:
        self._root = root
        self._tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)
        self._inodes: dict[tuple[int, int], str] = {}

    def __enter__(self) -> TarWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._tar.close()

    def add(self, name: str, st: os.stat_result) -> None:
        """Add the entry `name` as it is on disk."""
        kind = _TYPES.get(stat.S_IFMT(st.st_mode))
        if kind is None:
            return
        path = os.path.join(self._root, name)
        info = _header(name, st, kind)
        if kind != tarfile.DIRTYPE and st.st_nlink > 1:
            first = self._inodes.setdefault((st.st_dev, st.st_ino), name)
            if first != name:
                info.type, info.linkname = tarfile.LNKTYPE, first
                self._tar.addfile(info)
                return
        info.pax_headers = _xattrs(path)
        if kind == tarfile.SYMTYPE:
            info.linkname = os.readlink(path)
        elif kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif kind == tarfile.REGTYPE:
            with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as f:
                info.size = os.fstat(f.fileno()).st_size
                self._tar.addfile(info, f)
            return
        self._tar.addfile(info)

    def add_whiteout(self, name: str, st: os.stat_result) -> None:
        """Add the OCI whiteout for the deleted `name`: an empty `.wh.<name>` file (mode 0600, as Docker)."""
        directory, _, base = name.rpartition("/")
        whiteout = f"{directory}/{WHITEOUT_PREFIX}{base}" if directory else WHITEOUT_PREFIX + base
        info = _header(whiteout, st, tarfile.REGTYPE)
        info.mode = 0o600
        self._tar.addfile(info)

    def add_opaque(self, name: str, st: os.stat_result) -> None:
        """Add the opaque marker of the directory `name`, with the directory's owner and permissions."""
        info = _header(f"{name}/{WHITEOUT_OPAQUE}", st, tarfile.REGTYPE)
        info.mode = stat.S_IMODE(st.st_mode) & 0o777
        self._tar.addfile(info)


def _header(name: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = int(st.st_mtime)
    return info


def _xattrs(path: str) -> dict[str, str]:
    """Return the entry's xattrs as PAX records, binary values kept through surrogate escapes."""
    try:
        keys = sorted(os.listxattr(path, follow_symlinks=False))
    except OSError as err:
        if err.errno == errno.ENOTSUP:
            return {}
        raise
    return {
        f"SCHILY.xattr.{key}": os.getxattr(path, key, follow_symlinks=False).decode("utf-8", "surrogateescape")
        for key in keys
        if not key.startswith(OVERLAY_XATTR_PREFIX)
    }
