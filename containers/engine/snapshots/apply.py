"""Apply a layer tar onto a directory, the way Docker applies image layers, never writing outside it.

Every name in the archive is taken as relative to the root: `/etc/x` lands in `<root>/etc/x`, and a
`..` that climbs above the root is refused. Symlinks met on the way to an entry (made by an earlier
entry, or already in the root) are resolved as if the root were `/`, as Docker does by extracting
inside a chroot: `a -> /` then `a/etc/passwd` writes `<root>/etc/passwd`. The resolution walks one
component at a time with directory file descriptors opened O_NOFOLLOW (open(2)), and every entry is
created relative to the descriptor of its parent (the *at() calls), so no path string is ever
resolved by the kernel across a symlink: escaping the root is not prevented by a check that might be
wrong, it is simply not expressible.

Deletions come as whiteout entries (the OCI image spec's "Whiteouts"): `.wh.<name>` deletes <name>
and `.wh..wh..opq` hides everything that lower layers have in its directory. With
`overlay_whiteouts` they are stored as overlayfs stores them (a 0:0 character device, and the xattr
`trusted.overlay.opaque=y`) so that the directory can serve as an overlay layer; without it they are
carried out on the files of the full copy below.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from containers.engine.errors import InvalidArgument, UnsafeArchive

logger = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
# AUFS kept its own bookkeeping under names like `.wh..wh.plnk`; Docker skips those entries too.
_WHITEOUT_META_PREFIX = ".wh..wh."
OVERLAY_XATTR_PREFIX = "trusted.overlay."
_XATTR_PAX_PREFIX = "SCHILY.xattr."

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# path_resolution(7): the kernel gives up after 40 symlinks in one lookup (ELOOP); so do we.
_MAX_SYMLINKS = 40

# Creates one non-directory entry: (member, archive, parent directory fd, name in it).
_Maker = Callable[[tarfile.TarInfo, tarfile.TarFile, int, str], None]


def apply_layer(root: Path, stream: BinaryIO, *, overlay_whiteouts: bool) -> int:
    """Apply the uncompressed layer tar read from `stream` onto `root`; return the bytes of file content written.

    Raises UnsafeArchive for an entry that would write outside `root`, delete `root`, or that is
    refused (a hard link to something that is not in the root, an unknown entry type), and
    InvalidArgument if the stream is not a tar archive.
    """
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        applier = Applier(root_fd, overlay_whiteouts)
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                applier.apply(member, archive)
        applier.set_dir_times()
        return applier.size
    except tarfile.TarError as err:
        raise InvalidArgument(f"layer: not a valid tar archive: {err}") from err
    finally:
        os.close(root_fd)


def clean_path(name: str) -> list[str]:
    """Split an archive name into components relative to the root, resolving `.` and `..` lexically.

    A leading `/` is dropped; a `..` that would climb above the root raises UnsafeArchive.
    """
    parts: list[str] = []
    for part in name.split("/"):
        if part == "..":
            if not parts:
                raise UnsafeArchive(f"layer entry {name}: path escapes the root")
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return parts


class Applier:
    """The state of one layer being applied: the root, what was written, and directory times to set last."""

    def __init__(self, root_fd: int, overlay_whiteouts: bool) -> None:
        self.root_fd = root_fd
        self.overlay_whiteouts = overlay_whiteouts
        self.size = 0
        # chown(2): only a privileged process may give a file away; unprivileged, files stay ours.
        self.chown = os.geteuid() == 0
        # Paths this layer wrote, with their ancestors: an opaque directory keeps them (native only).
        self.written: set[str] = set()
        self.dir_times: list[tuple[list[str], tuple[int, int]]] = []

    def apply(self, member: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        """Apply one archive entry."""
        parts = clean_path(member.name)
        if parts and parts[0].startswith(_WHITEOUT_META_PREFIX) and parts != [WHITEOUT_OPAQUE]:
            return
        if not parts:
            self._apply_root(member)
            return
        *parents, leaf = parts
        if leaf == WHITEOUT_OPAQUE:
            self._opaque(member.name, parents)
        elif leaf.startswith(WHITEOUT_PREFIX):
            self._whiteout(member.name, parents, leaf.removeprefix(WHITEOUT_PREFIX))
        else:
            parent_fd, resolved = self._open_dir(member.name, parents, create=True)
            try:
                self._create(member, archive, parent_fd, leaf, resolved + [leaf])
            finally:
                os.close(parent_fd)

    def set_dir_times(self) -> None:
        """Set directory times last: creating an entry in a directory updates the directory's mtime."""
        for parts, times in self.dir_times:
            fd = _open_existing_dir(self.root_fd, parts)
            if fd is not None:
                try:
                    os.utime(fd, ns=times)
                finally:
                    os.close(fd)

    def _apply_root(self, member: tarfile.TarInfo) -> None:
        if not member.isdir():
            raise UnsafeArchive(f"layer entry {member.name}: replaces the root directory")
        self._set_fd_attributes(self.root_fd, member)
        self.dir_times.append(([], _times(member)))

    def _open_dir(self, name: str, parts: list[str], *, create: bool) -> tuple[int, list[str]]:
        """Open the directory at `parts` below the root, symlinks resolved as if the root were `/`.

        Returns the open descriptor (the caller closes it) and the components of the real path.
        Missing directories are created when `create` is set (0755, like Docker's MkdirAll), or
        raise FileNotFoundError.
        """
        fds = [os.dup(self.root_fd)]
        resolved: list[str] = []
        pending = list(reversed(parts))
        links = 0
        try:
            while pending:
                part = pending.pop()
                if part in ("", "."):
                    continue
                if part == "..":
                    if resolved:
                        os.close(fds.pop())
                        resolved.pop()
                    continue
                try:
                    child = _open_child_dir(fds[-1], part, create)
                except NotADirectoryError:
                    path = "/".join(resolved + [part])
                    raise UnsafeArchive(f"layer entry {name}: {path} is not a directory") from None
                if isinstance(child, int):
                    fds.append(child)
                    resolved.append(part)
                    continue
                links += 1
                if links > _MAX_SYMLINKS:
                    raise UnsafeArchive(f"layer entry {name}: too many levels of symbolic links")
                if child.startswith("/"):
                    for fd in fds[1:]:
                        os.close(fd)
                    del fds[1:], resolved[:]
                pending.extend(reversed(child.split("/")))
            return os.dup(fds[-1]), resolved
        finally:
            for fd in fds:
                os.close(fd)

    def _create(
        self, member: tarfile.TarInfo, archive: tarfile.TarFile, parent_fd: int, leaf: str, path: list[str]
    ) -> None:
        """Create one entry in the directory `parent_fd`, replacing what is there as Docker does.

        A directory over a directory merges; anything else replaces whatever was at that name.
        """
        existing = _lstat(parent_fd, leaf)
        if member.islnk():
            self._link(member, parent_fd, leaf, existing)
        elif member.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                if existing is not None:
                    _remove(parent_fd, leaf, existing)
                os.mkdir(leaf, 0o700, dir_fd=parent_fd)
            fd = os.open(leaf, _DIR_FLAGS, dir_fd=parent_fd)
            try:
                self._set_fd_attributes(fd, member)
            finally:
                os.close(fd)
            self.dir_times.append((path, _times(member)))
        else:
            create = self._creator(member)
            if existing is not None:
                _remove(parent_fd, leaf, existing)
            create(member, archive, parent_fd, leaf)
        self._record(path)

    def _creator(self, member: tarfile.TarInfo) -> _Maker:
        """Return the method that creates a non-directory entry, refusing unknown entry types."""
        if member.isreg():
            return self._create_file
        if member.issym():
            return self._create_symlink
        if member.ischr() or member.isblk() or member.isfifo():
            return self._create_node
        raise UnsafeArchive(f"layer entry {member.name}: unsupported tar entry type {member.type!r}")

    def _create_file(self, member: tarfile.TarInfo, archive: tarfile.TarFile, parent_fd: int, leaf: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(leaf, flags, 0o600, dir_fd=parent_fd), "wb") as out:
            source = archive.extractfile(member)
            if source is not None:
                shutil.copyfileobj(source, out, 1 << 20)
            out.flush()
            self._set_fd_attributes(out.fileno(), member)
            os.utime(out.fileno(), ns=_times(member))
        self.size += member.size

    def _create_symlink(self, member: tarfile.TarInfo, archive: tarfile.TarFile, parent_fd: int, leaf: str) -> None:
        # The target is stored, never followed here: it is only data until something inside the
        # container resolves it, under the container's own root.
        os.symlink(member.linkname, leaf, dir_fd=parent_fd)
        self._set_attributes_at(parent_fd, leaf, member, chmod=False)

    def _create_node(self, member: tarfile.TarInfo, archive: tarfile.TarFile, parent_fd: int, leaf: str) -> None:
        if member.isfifo():
            os.mkfifo(leaf, 0o600, dir_fd=parent_fd)
        else:
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(leaf, kind | 0o600, os.makedev(member.devmajor, member.devminor), dir_fd=parent_fd)
        self._set_attributes_at(parent_fd, leaf, member, chmod=True)

    def _link(self, member: tarfile.TarInfo, parent_fd: int, leaf: str, existing: os.stat_result | None) -> None:
        """Hard-link `leaf` to an entry already inside the root (never a directory).

        The link shares its target's inode, so the header's owner, mode and times are not applied.
        """
        target_parts = clean_path(member.linkname)
        if not target_parts:
            raise UnsafeArchive(f"layer entry {member.name}: hard link to the root directory")
        subject = f"layer entry {member.name}: hard link target {member.linkname}"
        try:
            target_dir, _ = self._open_dir(member.name, target_parts[:-1], create=False)
        except FileNotFoundError:
            raise UnsafeArchive(f"{subject} is not in the layer") from None
        try:
            target = _lstat(target_dir, target_parts[-1])
            if target is None:
                raise UnsafeArchive(f"{subject} is not in the layer")
            if stat.S_ISDIR(target.st_mode):
                raise UnsafeArchive(f"{subject} is a directory")
            if existing is not None:
                if (existing.st_dev, existing.st_ino) == (target.st_dev, target.st_ino):
                    return
                _remove(parent_fd, leaf, existing)
            # linkat(2) without AT_SYMLINK_FOLLOW links a symlink itself, never what it points to.
            os.link(target_parts[-1], leaf, src_dir_fd=target_dir, dst_dir_fd=parent_fd, follow_symlinks=False)
        finally:
            os.close(target_dir)

    def _whiteout(self, name: str, parents: list[str], victim: str) -> None:
        """Delete `victim` (native), or mark it deleted for overlayfs with a 0:0 character device."""
        if victim in ("", ".", ".."):
            raise UnsafeArchive(f"layer entry {name}: a whiteout cannot delete the root")
        try:
            parent_fd, _ = self._open_dir(name, parents, create=self.overlay_whiteouts)
        except FileNotFoundError:
            return
        try:
            existing = _lstat(parent_fd, victim)
            if existing is not None:
                _remove(parent_fd, victim, existing)
            if self.overlay_whiteouts:
                # overlayfs(5), "whiteouts and opaque directories": a character device with device
                # number 0/0 hides the name in the layers below.
                os.mknod(victim, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent_fd)
        finally:
            os.close(parent_fd)

    def _opaque(self, name: str, parents: list[str]) -> None:
        """Hide what lower layers have in the directory: an xattr for overlayfs, or delete it (native)."""
        try:
            dir_fd, resolved = self._open_dir(name, parents, create=self.overlay_whiteouts)
        except FileNotFoundError:
            return
        try:
            if self.overlay_whiteouts:
                # overlayfs(5): a directory with trusted.overlay.opaque=y hides the lower directories.
                os.setxattr(dir_fd, OVERLAY_XATTR_PREFIX + "opaque", b"y")
            else:
                self._prune(dir_fd, resolved)
        finally:
            os.close(dir_fd)

    def _prune(self, dir_fd: int, path: list[str]) -> None:
        """Delete everything below the directory that this layer did not write itself."""
        for child in os.listdir(dir_fd):
            child_path = path + [child]
            existing = _lstat(dir_fd, child)
            if existing is None:
                continue
            if "/".join(child_path) not in self.written:
                _remove(dir_fd, child, existing)
            elif stat.S_ISDIR(existing.st_mode):
                child_fd = os.open(child, _DIR_FLAGS, dir_fd=dir_fd)
                try:
                    self._prune(child_fd, child_path)
                finally:
                    os.close(child_fd)

    def _record(self, path: list[str]) -> None:
        for end in range(1, len(path) + 1):
            self.written.add("/".join(path[:end]))

    def _set_fd_attributes(self, fd: int, member: tarfile.TarInfo) -> None:
        """Set owner, mode and xattrs on an open file or directory (times are the caller's)."""
        if self.chown:
            os.fchown(fd, member.uid, member.gid)
        # chown(2) may clear the set-user-ID and set-group-ID bits, so the mode comes after it.
        os.fchmod(fd, member.mode)
        for key, value in _xattrs(member):
            _set_xattr(member.name, fd, key, value)

    def _set_attributes_at(self, dir_fd: int, leaf: str, member: tarfile.TarInfo, *, chmod: bool) -> None:
        """Set owner, mode, xattrs and times on an entry that cannot be opened (symlink, device, fifo)."""
        if self.chown:
            os.chown(leaf, member.uid, member.gid, dir_fd=dir_fd, follow_symlinks=False)
        if chmod:
            os.chmod(leaf, member.mode, dir_fd=dir_fd)
        # The *xattr calls have no *at() form; /proc/self/fd/N names the parent directory itself
        # (proc(5)), and the single last component is not followed.
        proc_path = f"/proc/self/fd/{dir_fd}/{leaf}"
        for key, value in _xattrs(member):
            _set_xattr(member.name, proc_path, key, value)
        os.utime(leaf, ns=_times(member), dir_fd=dir_fd, follow_symlinks=False)


def _xattrs(member: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    """Return the entry's extended attributes from its PAX `SCHILY.xattr.*` records.

    `trusted.overlay.*` is overlayfs' own bookkeeping: a layer states deletions with whiteout
    entries, and may not forge overlayfs metadata (redirects, opaque marks) through xattrs.
    """
    return [
        (key.removeprefix(_XATTR_PAX_PREFIX), value.encode("utf-8", "surrogateescape"))
        for key, value in member.pax_headers.items()
        if key.startswith(_XATTR_PAX_PREFIX) and not key.startswith(_XATTR_PAX_PREFIX + OVERLAY_XATTR_PREFIX)
    ]


def _set_xattr(name: str, target: int | str, key: str, value: bytes) -> None:
    """Set one xattr; like Docker, skip it with a warning where the filesystem refuses that namespace."""
    try:
        # An fd is the file itself; of a path, the last component must not be followed.
        os.setxattr(target, key, value, follow_symlinks=isinstance(target, int))
    except OSError as err:
        if err.errno not in (errno.ENOTSUP, errno.EPERM):
            raise
        logger.warning("layer entry %s: xattr %s not kept: %s", name, key, err.strerror)


def _times(member: tarfile.TarInfo) -> tuple[int, int]:
    """Return (atime, mtime) in nanoseconds; the access time is the PAX `atime`, or the mtime."""
    mtime = round(member.mtime * 1_000_000_000)
    atime = member.pax_headers.get("atime")
    return (mtime if atime is None else round(float(atime) * 1_000_000_000)), mtime


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _open_child_dir(dir_fd: int, name: str, create: bool) -> int | str:
    """Open the subdirectory `name` without following it; if it is a symlink, return its target instead.

    A missing directory is created (0755, like Docker's MkdirAll) when `create` is set, or raises
    FileNotFoundError; anything else that is not a directory raises NotADirectoryError.
    """
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        if not create:
            raise
    except NotADirectoryError:
        # open(2) with O_DIRECTORY | O_NOFOLLOW fails with ENOTDIR on a symlink as on a file.
        if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            return os.readlink(name, dir_fd=dir_fd)
        raise
    os.mkdir(name, 0o755, dir_fd=dir_fd)
    os.chmod(name, 0o755, dir_fd=dir_fd)
    return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)


def _remove(dir_fd: int, name: str, st: os.stat_result) -> None:
    """Remove `name` from the directory, a whole tree if it is a directory (never following symlinks)."""
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _open_existing_dir(root_fd: int, parts: list[str]) -> int | None:
    """Open the directory at `parts` without following any symlink; None if it is gone or replaced."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except OSError as err:
        os.close(fd)
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise
    return fd
