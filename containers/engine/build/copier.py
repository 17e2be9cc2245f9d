"""COPY and ADD: find the sources, then write them into a step's root the way moby's legacy builder does.

Sources (moby's copier, builder/dockerfile/copy.go):

- a path in the source tree (the context, or an image's files for `--from`), cleaned of a leading
  `/` and `./`; symlinks are followed within the tree;
- a pattern with `*`, `?` or `[`: every path of the tree it matches (Go's filepath.Match);
- for ADD, an `http(s)://` URL, downloaded (mode 0600, mtime from Last-Modified) and never
  extracted;
- a heredoc (`COPY <<EOF /dest`): a file of that name holding the body.

Destinations (copy.go, `performCopyForInfo`): a relative destination is below the WORKDIR. A
directory source copies its contents into the destination, made if missing. A file goes into the
destination if that is a directory or ends with `/` (under the source's own name), else becomes
it; several sources need a destination ending with `/`. ADD extracts a local tar archive (plain,
gzip, bzip2 or xz) into the destination, keeping the archive's owners.

Owners: 0:0 unless `--chown` names a user and group (looked up in the image's /etc/passwd and
/etc/group; a lone user name is also the group name, as in moby); `COPY --from` keeps the owners
it finds unless `--chown` is given. Directories made for a file's destination get that owner
too; for a directory source, only the destination itself does. Modes and mtimes are kept, and
`--chmod` replaces the mode of what is copied.

Writing goes through the layer applier (snapshots/apply.py): names are resolved within the
step's root, so a symlink in the image never leads outside it.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import posixpath
import stat
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import Message
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import BinaryIO, cast

from containers.engine.archive import walk_tree
from containers.engine.build.context import PlainExtractor, SourceTree, has_wildcards
from containers.engine.errors import InvalidArgument
from containers.engine.images.manifest import decompress
from containers.engine.runtime.rootfs import secure_join
from containers.engine.snapshots.apply import clean_path

UNNAMED = "__unnamed__"
_DOWNLOAD_TIMEOUT_S = 300

_TYPES = {stat.S_IFDIR: tarfile.DIRTYPE, stat.S_IFLNK: tarfile.SYMTYPE, stat.S_IFREG: tarfile.REGTYPE,
          stat.S_IFCHR: tarfile.CHRTYPE, stat.S_IFBLK: tarfile.BLKTYPE, stat.S_IFIFO: tarfile.FIFOTYPE}  # fmt: skip


@dataclass(frozen=True)
class Source:
    """One thing to copy: a path in a tree, its cache hash, and whether ADD may extract it."""

    tree: SourceTree
    path: str
    hash: str
    extract: bool = False


def is_url(source: str) -> bool:
    """Return whether an ADD source is a URL to download (moby's urlutil.IsURL)."""
    return source.startswith(("http://", "https://"))


def find_sources(tree: SourceTree, paths: Sequence[str], *, in_context: bool, extract: bool) -> list[Source]:
    """Return the sources the paths name in `tree`, patterns expanded; FileNotFoundError-like errors as moby words them.

    `in_context` words a missing path as missing from the build context (rather than from an image).
    """
    found: list[Source] = []
    for original in paths:
        path = original.removeprefix("/").removeprefix("./")
        if has_wildcards(path):
            found += [Source(tree, match, tree.hash(match), extract) for match in tree.glob(tree.relative(path))]
            continue
        try:
            found.append(Source(tree, tree.relative(path), tree.hash(path), extract))
        except (FileNotFoundError, NotADirectoryError):
            missing = f"stat {path}: file does not exist"
            if in_context:
                missing = f"file not found in build context or excluded by .dockerignore: {missing}"
            raise InvalidArgument(missing) from None
    return found


def download(url: str, directory: Path, dest: str) -> Source:
    """Download an ADD source into the new `directory`; return it as a source (mode 0600, as moby).

    The file is named after the URL's last path component, else the Content-Disposition
    filename; its mtime is the Last-Modified time, else the epoch.
    """
    try:
        with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
            name = _download_name(url, response.headers)
            if not name and dest.endswith("/"):
                raise InvalidArgument(f"cannot determine filename for source {url}")
            directory.mkdir(mode=0o700)
            path = directory / (name or UNNAMED)
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
            modified = response.headers.get("Last-Modified")
    except urllib.error.HTTPError as err:
        raise InvalidArgument(f"failed to GET {url} with status {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        raise InvalidArgument(f"failed to GET {url}: {err}") from err
    mtime = _http_time(modified)
    os.utime(path, (mtime, mtime))
    tree = SourceTree(directory)
    return Source(tree, path.name, tree.hash(path.name))


def verify_checksum(source: Source, url: str, checksum: str) -> None:
    """Check `ADD --checksum=sha256:<hex>` against what was downloaded."""
    algorithm, _, expected = checksum.partition(":")
    if algorithm != "sha256" or not expected:
        raise InvalidArgument(f"unsupported checksum {checksum!r}: want sha256:<hex>")
    digest = hashlib.sha256()
    with open(source.tree.resolve(source.path), "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != expected.lower():
        raise InvalidArgument(f"checksum of {url} is sha256:{digest.hexdigest()}, not {checksum}")


def _download_name(url: str, headers: Message) -> str:
    """Return the name moby gives a download: the URL path's base, else Content-Disposition's filename."""
    path = urllib.parse.urlparse(url).path
    if path and not path.endswith("/") and posixpath.basename(path):
        return posixpath.basename(path)
    filename = headers.get_param("filename", header="Content-Disposition")
    if isinstance(filename, str) and filename and not filename.endswith("/"):
        return posixpath.basename(filename)
    return ""


def _http_time(value: str | None) -> float:
    try:
        return parsedate_to_datetime(value).timestamp() if value else 0.0
    except (TypeError, ValueError):
        return 0.0


def heredoc_source(directory: Path, name: str, content: str) -> Source:
    """Write a heredoc body as the file `name` (0644) in the new `directory`; return it as a source."""
    directory.mkdir(mode=0o700)
    path = directory / name
    path.write_text(content)
    path.chmod(0o644)
    tree = SourceTree(directory)
    return Source(tree, name, tree.hash(name))


def normalize_dest(workdir: str, dest: str) -> str:
    """Return the absolute destination, below `workdir` if relative, keeping a trailing `/` (normalizeDest)."""
    if dest.startswith("/"):
        return dest
    joined = posixpath.normpath(posixpath.join("/", workdir or "/", dest))
    return joined + "/" if dest.endswith("/") and joined != "/" else joined


def lookup_owner(root: Path, spec: str) -> tuple[int, int]:
    """Resolve `--chown=user[:group]` against the image's /etc/passwd and /etc/group (moby's parseChownFlag)."""
    parts = spec.split(":")
    if len(parts) > 2:
        raise InvalidArgument(f"invalid chown string format: {spec}")
    user, group = (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    uid = _lookup_id(root, "/etc/passwd", user, "uid for user", "user")
    gid = _lookup_id(root, "/etc/group", group, "gid for group", "group")
    return uid, gid


def _lookup_id(root: Path, file: str, name: str, what: str, kind: str) -> int:
    try:
        return int(name)
    except ValueError:
        pass
    try:
        with open(secure_join(str(root), file), errors="replace") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
                    return int(fields[2])
    except FileNotFoundError:
        pass
    raise InvalidArgument(f"unable to convert uid/gid chown string to host mapping: "
                          f"can't find {what} {name}: no such {kind}: {name}")  # fmt: skip


def parse_chmod(value: str) -> int:
    """Parse `--chmod=0755` (octal, as BuildKit takes it)."""
    try:
        mode = int(value, 8)
    except ValueError:
        raise InvalidArgument(f"invalid chmod parameter: {value}") from None
    if not 0 <= mode <= 0o7777:
        raise InvalidArgument(f"invalid chmod parameter: {value}")
    return mode


def copy_sources(
    root: Path, dest: str, sources: Sequence[Source], owner: tuple[int, int] | None, mode: int | None
) -> None:
    """Write `sources` into the step's root at the absolute `dest`; `owner` None keeps the sources' owners."""
    writer = _Writer(root)
    try:
        for source in sources:
            path = source.tree.resolve(source.path)
            if path.is_dir():
                writer.copy_directory(path, dest, owner, mode)
            elif source.extract and _is_archive(path):
                writer.extract(path, dest)
            else:
                name = posixpath.basename(source.path)
                target = posixpath.join(dest, name) if dest.endswith("/") or writer.is_dir(dest) else dest
                writer.copy_file(path, target, owner, mode)
        writer.finish()
    finally:
        writer.close()


def make_directory(root: Path, path: str) -> None:
    """Make the directory `path` in the step's root and its parents (0755, root), as WORKDIR does."""
    writer = _Writer(root)
    try:
        resolved = secure_join(str(root), path)
        if os.path.lexists(resolved) and not os.path.isdir(resolved):
            raise InvalidArgument(f"Cannot mkdir: {path} is not a directory")
        writer.make_parents(path, (0, 0), (0, 0))
        writer.finish()
    finally:
        writer.close()


def _is_archive(path: Path) -> bool:
    """Return whether the file is a tar archive, maybe compressed, with at least one entry (IsArchivePath)."""
    try:
        with open(path, "rb") as f, tarfile.open(fileobj=decompress(f), mode="r|") as archive:
            return archive.next() is not None
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError, InvalidArgument):
        return False


class _Files:
    """Stands in for a tarfile whose members are files on disk: the applier only calls `extractfile`."""

    def __init__(self) -> None:
        self.paths: dict[str, Path] = {}
        self._open: BinaryIO | None = None

    def extractfile(self, member: tarfile.TarInfo) -> BinaryIO:
        self.close()
        self._open = open(self.paths[member.name], "rb")
        return self._open

    def close(self) -> None:
        if self._open is not None:
            self._open.close()
            self._open = None


class _Writer:
    """Entries written into a root through the layer applier."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._applier = PlainExtractor(self._fd, overlay_whiteouts=False)
        self._files = _Files()
        self._now = time.time()

    def is_dir(self, path: str) -> bool:
        """Return whether `path` is a directory in the root, symlinks followed within it."""
        return os.path.isdir(secure_join(str(self.root), path))

    def copy_file(self, path: Path, target: str, owner: tuple[int, int] | None, mode: int | None) -> None:
        self.make_parents(posixpath.dirname(target), owner, owner)
        st = os.stat(path)
        self._add(_name(target), st, path, owner, mode, {})

    def copy_directory(self, path: Path, dest: str, owner: tuple[int, int] | None, mode: int | None) -> None:
        self.make_parents(dest, (0, 0), owner)
        base = _name(dest)
        links: dict[tuple[int, int], str] = {}
        for name, st in walk_tree(path):
            self._add(f"{base}/{name}" if base else name, st, path / name, owner, mode, links)

    def extract(self, path: Path, dest: str) -> None:
        prefix = clean_path(dest)
        with open(path, "rb") as f, tarfile.open(fileobj=decompress(f), mode="r|") as archive:
            for member in archive:
                parts = clean_path(member.name)
                if not parts:
                    continue
                member.name = "/".join(prefix + parts)
                if member.islnk():
                    member.linkname = "/".join(prefix + clean_path(member.linkname))
                self._applier.apply(member, archive)

    def make_parents(self, directory: str, parents: tuple[int, int] | None, last: tuple[int, int] | None) -> None:
        """Make the missing directories of `directory` (0755); the last gets `last` as owner, the others `parents`."""
        parts = clean_path(directory)
        for end in range(1, len(parts) + 1):
            if os.path.lexists(secure_join(str(self.root), "/".join(parts[:end]))):
                continue
            uid, gid = (last if end == len(parts) else parents) or (0, 0)
            info = tarfile.TarInfo("/".join(parts[:end]))
            info.type, info.mode, info.uid, info.gid, info.mtime = tarfile.DIRTYPE, 0o755, uid, gid, self._now
            self._applier.apply(info, cast(tarfile.TarFile, self._files))

    def _add(
        self, name: str, st: os.stat_result, path: Path, owner: tuple[int, int] | None, mode: int | None,
        links: dict[tuple[int, int], str],
    ) -> None:  # fmt: skip
        kind = _TYPES.get(stat.S_IFMT(st.st_mode))
        if kind is None:
            return  # a socket cannot be copied, as a tar cannot hold one
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode if mode is not None and kind != tarfile.SYMTYPE else stat.S_IMODE(st.st_mode)
        info.uid, info.gid = owner if owner is not None else (st.st_uid, st.st_gid)
        info.mtime = st.st_mtime
        if kind == tarfile.SYMTYPE:
            info.linkname = os.readlink(path)
        elif kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif kind == tarfile.REGTYPE:
            first = links.setdefault((st.st_dev, st.st_ino), name) if st.st_nlink > 1 else name
            if first != name:
                info.type, info.linkname = tarfile.LNKTYPE, first
            else:
                info.size = st.st_size
                self._files.paths[name] = path
        self._applier.apply(info, cast(tarfile.TarFile, self._files))

    def finish(self) -> None:
        """Set the directories' times, which writing into them changed."""
        self._applier.set_dir_times()

    def close(self) -> None:
        self._files.close()
        os.close(self._fd)


def _name(path: str) -> str:
    """Return an absolute path as an archive name relative to the root."""
    return "/".join(clean_path(path))
