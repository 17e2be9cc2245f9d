"""The build context: the tar stream a client sends, unpacked once into a private directory.

A client sends the context as one tar stream, plain or compressed with gzip, bzip2 or xz
(recognised by their magic bytes). It is read once and unpacked below the build's directory with
the layer applier (snapshots/apply.py), so that no entry, and no symlink met on the way to one,
can write outside it; a name that climbs out with `..` is refused. A context whose uncompressed
tar is bigger than the limit is refused while it arrives, and nothing of it is kept.

`.dockerignore` at the root is then applied with moby's pattern rules (dockerignore.py): what it
excludes is deleted, so that `COPY . .` cannot see it. The Dockerfile and `.dockerignore` are read
before that, so the builder always has them, as in moby's `removeDockerfile`.

A `SourceTree` is a directory that COPY and ADD read from: the context, or the files of an image
or stage (`COPY --from`). Paths in it resolve as moby's `FollowSymlinkInScope` does: symlinks are
followed as if the tree's root were `/`, so nothing outside the tree can be named. `hash(path)`
is what the build cache compares: `file:<sha256>` or `dir:<sha256>` over names, types, modes,
owners and contents, like moby's source hashes (times are left out, as there).
"""

from __future__ import annotations

import hashlib
import lzma
import os
import re
import shutil
import stat
import tarfile
import zlib
from pathlib import Path
from typing import BinaryIO

from containers.engine.archive import walk_tree
from containers.engine.build.dockerignore import Matcher, read_patterns
from containers.engine.errors import InvalidArgument
from containers.engine.images.manifest import decompress
from containers.engine.runtime.rootfs import secure_join
from containers.engine.snapshots.apply import Applier, clean_path

DOCKERIGNORE = ".dockerignore"
DEFAULT_DOCKERFILE = "Dockerfile"
_CHUNK = 1 << 20


class ContextTooLarge(InvalidArgument):
    """The context's tar is bigger than the builder accepts."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"build context is larger than the limit of {format_size(limit)}; "
                         "leave files out with .dockerignore or raise the limit")  # fmt: skip


class BuildContext:
    """An unpacked build context: its files (a `SourceTree`), the Dockerfile's text and its name."""

    def __init__(self, tree: SourceTree, dockerfile: str, dockerfile_name: str) -> None:
        self.tree = tree
        self.dockerfile = dockerfile
        self.dockerfile_name = dockerfile_name

    @classmethod
    def receive(cls, stream: BinaryIO, directory: Path, dockerfile: str, limit: int) -> BuildContext:
        """Unpack `stream` into `directory` (created here), read the Dockerfile, apply .dockerignore.

        Raises ContextTooLarge, UnsafeArchive or InvalidArgument (not a tar archive, no
        Dockerfile); `directory` is removed again then.
        """
        directory.mkdir(mode=0o700)
        try:
            _unpack(_Limited(decompress(stream), limit), directory)
            tree = SourceTree(directory)
            name, text = _read_dockerfile(tree, dockerfile or DEFAULT_DOCKERFILE)
            ignore = tree.root / DOCKERIGNORE
            if ignore.is_file() and not ignore.is_symlink():
                _prune(tree.root, "", Matcher(read_patterns(ignore.read_text(errors="replace"))))
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return cls(tree, text, name)

    def remove(self) -> None:
        """Delete the unpacked files."""
        shutil.rmtree(self.tree.root, ignore_errors=True)


class _Limited:
    """A reader that refuses to deliver more than `limit` bytes."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self._stream = stream
        self._left = limit
        self._limit = limit

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size if size >= 0 else _CHUNK)
        self._left -= len(data)
        if self._left < 0:
            raise ContextTooLarge(self._limit)
        return data


class PlainExtractor(Applier):
    """The layer applier for archives that are not layers: every name is a plain entry, `.wh.*` included."""

    def apply(self, member: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        parts = clean_path(member.name)
        if not parts:
            return
        *parents, leaf = parts
        parent_fd, resolved = self._open_dir(member.name, parents, create=True)
        try:
            self._create(member, archive, parent_fd, leaf, resolved + [leaf])
        finally:
            os.close(parent_fd)


def _unpack(stream: _Limited, directory: Path) -> None:
    root_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        extractor = PlainExtractor(root_fd, overlay_whiteouts=False)
        with tarfile.open(fileobj=stream, mode="r|") as archive:  # type: ignore[call-overload]
            for member in archive:
                extractor.apply(member, archive)
        extractor.set_dir_times()
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as err:
        if isinstance(err, OSError) and err.errno is not None:
            raise
        raise InvalidArgument(f"build context: not a valid tar archive: {err}") from err
    finally:
        os.close(root_fd)


def _read_dockerfile(tree: SourceTree, name: str) -> tuple[str, str]:
    """Return the Dockerfile's name and text; moby also tries `dockerfile` for the default name."""
    candidates = [name, name.lower()] if name == DEFAULT_DOCKERFILE else [name]
    for candidate in candidates:
        path = tree.resolve(candidate)
        if path.is_file():
            return candidate, path.read_bytes().decode("utf-8", errors="replace")
    raise InvalidArgument(f"Cannot locate specified Dockerfile: {name}")


def _prune(root: Path, relative: str, matcher: Matcher) -> bool:
    """Delete what `matcher` excludes below `root/relative`; return whether the directory is now empty.

    A directory keeps its times, as when the client leaves the excluded files out of the tar: COPY keeps them.
    """
    directory = root / relative if relative else root
    times = os.stat(directory)
    empty = True
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        name = f"{relative}/{entry.name}" if relative else entry.name
        excluded = matcher.matches(name)
        if entry.is_dir(follow_symlinks=False):
            if excluded and matcher.excludes_dir_entirely(name):
                shutil.rmtree(entry.path)
                continue
            if _prune(root, name, matcher) and excluded:
                # An excluded directory stays only to hold what an exception (`!pattern`) kept.
                os.rmdir(entry.path)
                continue
        elif excluded:
            os.unlink(entry.path)
            continue
        empty = False
    os.utime(directory, ns=(times.st_atime_ns, times.st_mtime_ns))
    return empty


class SourceTree:
    """A directory COPY and ADD read from; paths resolve inside it, symlinks included."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._hashes: dict[str, str] = {}

    def resolve(self, path: str) -> Path:
        """Return `path` (relative to the tree, `/` or not) on the host, symlinks followed within the tree."""
        return Path(secure_join(str(self.root), path))

    def relative(self, path: str) -> str:
        """Return the cleaned `path` relative to the root, as moby names sources: no leading `/` or `./`."""
        return "/".join(part for part in path.split("/") if part not in ("", "."))

    def glob(self, pattern: str) -> list[str]:
        """Return every path below the root (directories too) that the pattern matches, in walk order.

        Matching is Go's `filepath.Match` against the whole relative path: `*` and `?` stop at `/`.
        Symlinks are not followed, as in moby's `copyWithWildcards`.
        """
        regex = _pattern_regex(pattern)
        if regex is None:
            return []
        return [name for name, _ in walk_tree(self.root) if regex.fullmatch(name)]

    def hash(self, path: str) -> str:
        """Return the cache hash of the source `path`: `file:<hex>` or `dir:<hex>` (FileNotFoundError if missing)."""
        rel = self.relative(path)
        if rel not in self._hashes:
            self._hashes[rel] = self._hash(rel)
        return self._hashes[rel]

    def _hash(self, rel: str) -> str:
        target = self.resolve(rel)
        st = os.stat(target)
        if not stat.S_ISDIR(st.st_mode):
            return "file:" + _entry_hash(target, os.path.basename(rel) or rel, st)
        entries = [_entry_hash(target / name, name, entry) for name, entry in walk_tree(target)]
        entries.append(_entry_hash(target, ".", st))
        return "dir:" + hashlib.sha256("\n".join(entries).encode()).hexdigest()


def _entry_hash(path: Path, name: str, st: os.stat_result) -> str:
    """Hash one entry: its name, type, mode, owner, and its content or link target."""
    digest = hashlib.sha256()
    header = f"{name}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode)}\0{st.st_uid}\0{st.st_gid}\0"
    digest.update(header.encode("utf-8", "surrogateescape"))
    if stat.S_ISLNK(st.st_mode):
        digest.update(os.readlink(path).encode("utf-8", "surrogateescape"))
    elif stat.S_ISREG(st.st_mode):
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        digest.update(f"{st.st_rdev}".encode())
    return digest.hexdigest()


def has_wildcards(path: str) -> bool:
    """Return whether `path` holds an unescaped `*`, `?` or `[` (moby's containsWildcards)."""
    escaped = False
    for char in path:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in "*?[":
            return True
    return False


def _pattern_regex(pattern: str) -> re.Pattern[str] | None:
    """Translate a Go `filepath.Match` pattern to a regex; None for a malformed one (which matches nothing)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "\\":
            i += 1
            if i == len(pattern):
                return None
            out.append(re.escape(pattern[i]))
        elif char == "[":
            end = _class_end(pattern, i)
            if end is None:
                return None
            body = pattern[i + 1 : end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            escaped = re.sub(r"\\(.)", r"\1", body).replace("\\", "\\\\").replace("]", "\\]").replace("[", "\\[")
            out.append(f"[{'^/' if negate else ''}{escaped}]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _class_end(pattern: str, start: int) -> int | None:
    """Return the index of the `]` closing the character class opened at `start`."""
    i = start + 1
    if i < len(pattern) and pattern[i] == "^":
        i += 1
    if i < len(pattern) and pattern[i] == "]":
        return None  # an empty class is malformed in Go, as is a class that never closes
    while i < len(pattern):
        if pattern[i] == "\\":
            i += 2
            continue
        if pattern[i] == "]":
            return i
        i += 1
    return None


def format_size(size: int) -> str:
    """Return a byte count as Docker's go-units HumanSize writes it: `1.074GB` for 1 GiB."""
    units = ("B", "kB", "MB", "GB", "TB")
    value, unit = float(size), 0
    while value >= 1000 and unit < len(units) - 1:
        value, unit = value / 1000, unit + 1
    return f"{value:.4g}{units[unit]}"
