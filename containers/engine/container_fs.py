"""A container's filesystem and processes from outside: `docker diff`, `commit`, `export`, `cp`, `top` and `stats`.

Each function takes the engine's `Containers` and a container reference (ID, name or unique ID
prefix). Where the container's files are read or written:

- diff and commit read the snapshot's overlay upper directory, its writable layer, and compare it
  with a read-only view of the image (the snapshot's parent), mounted for the time of the call.
  They need the overlay snapshotter.
- export and cp use the container's root filesystem: its `rootfs` while it runs, else its snapshot
  mounted on a temporary directory under `<root>/tmp` for the time of the call. Like Docker's cp and
  export they see the image and the writable layer only: not bind mounts (-v, /etc/hostname,
  /etc/hosts, /etc/resolv.conf), tmpfs, /proc or /sys, which exist in the container's mount
  namespace only.

A running container can replace a directory with a symlink at any moment, so no path into its
files is ever resolved on the host (CVE-2018-15664, the `docker cp` symlink race): reads happen in
a thread chroot(2)ed into the container's root, as Docker's chrootarchive does, and `archive_put`
writes through the layer applier, which opens every component relative to its parent's descriptor
with O_NOFOLLOW (snapshots/apply.py).

Like Docker, each verb records a container event: commit, export, archive-path (cp from the
container), extract-to-dir (cp into it) and top.

Where this differs from Docker:

- Docker keeps the mount points it creates (/proc, /sys, /dev, /etc/hostname, /etc/hosts,
  /etc/resolv.conf) in an init layer under the container's, so `docker diff` never lists them. This
  engine has no init layer; the runtime creates them in the writable layer, and `changes` leaves
  them out, and /etc when only they changed it, to list what Docker lists (`docker run busybox touch
  /tmp/x` gives `C /tmp`, `A /tmp/x`). `commit` does keep them in the new layer (empty files and
  directories, mounted over again in its containers).
- A directory deleted and made again (opaque in the upper directory) is listed as changed, with
  `D` for what the image had in it; Docker's overlay2 lists the directory as `D`.
- `stats` reports block I/O as one read and one write total (device 0:0): the cgroup Stats sums
  the devices.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import re
import secrets
import stat
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Generic, TypeVar, cast

from containers.engine import events
from containers.engine.archive import TarWriter, diff_upper, is_opaque, is_whiteout, tar_directory, walk_tree
from containers.engine.content.store import ContentStore
from containers.engine.errors import Conflict, FailedPrecondition, InvalidArgument, InvalidReference, NotFound
from containers.engine.images.config import ContainerConfig, History, ImageConfig, format_time
from containers.engine.images.importer import apply_changes
from containers.engine.images.manifest import MEDIA_TYPE_OCI_LAYER, Descriptor
from containers.engine.images.reference import Reference, parse_reference
from containers.engine.images.store import Image
from containers.engine.linux.syscalls import Syscalls
from containers.engine.runtime.rootfs import secure_join
from containers.engine.shim.logfile import format_time as format_time_ns
from containers.engine.snapshots.apply import Applier, clean_path
from containers.engine.snapshots.base import Mount
from containers.engine.snapshots.mount import is_mounted, mount_all, unmount

if TYPE_CHECKING:
    from containers.engine.lifecycle import Containers, Record

_T = TypeVar("_T")

# unshare(2): a thread with its own root directory, working directory and umask.
CLONE_FS = 0x00000200

# Go's zero time, as lifecycle.ZERO_TIME (not imported from there: lifecycle is to import this module).
ZERO_TIME = "0001-01-01T00:00:00Z"

# What the runtime creates in the writable layer to mount on, and Docker in the init layer.
MOUNT_POINTS = frozenset({"/proc", "/sys", "/dev", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"})
_MOUNT_PARENTS = frozenset(posixpath.dirname(p) for p in MOUNT_POINTS) - {"/"}

# Go's os.FileMode type bits, which Docker's X-Docker-Container-Path-Stat header carries.
_GO_TYPES = {
    stat.S_IFDIR: 1 << 31,
    stat.S_IFLNK: 1 << 27,
    stat.S_IFBLK: 1 << 26,
    stat.S_IFCHR: 1 << 26 | 1 << 21,
    stat.S_IFIFO: 1 << 25,
    stat.S_IFSOCK: 1 << 24,
}
_GO_SPECIAL = {stat.S_ISUID: 1 << 23, stat.S_ISGID: 1 << 22, stat.S_ISVTX: 1 << 20}

_CHUNK = 1 << 16


class ContainerFileNotFound(NotFound):
    """No file at that path in the container. Moby's wording: `Could not find the file /x in container y`."""

    def __init__(self, path: str, ref: str) -> None:
        super().__init__(f"Could not find the file {path} in container {ref}")


#
# docker diff
#


def changes(containers: Containers, ref: str) -> list[tuple[str, str]]:
    """Return what the container changed in its image's files, as `docker diff` lists them.

    Each change is ("A" added | "C" changed | "D" deleted, "/path"), a directory before what is in
    it, names in order. As in moby's overlay2 differ, a directory that is in the writable layer only
    because something below it changed is not listed unless something was added or deleted in it.
    """
    record = containers.get(ref)
    upper = _upper_dir(containers, record.id)
    with _image_view(containers, record.id) as lower:
        found = _diff(upper, lower)
    return [(found[path], path) for path in sorted(found, key=lambda path: path.split("/"))]


def _diff(upper: Path, lower: Path) -> dict[str, str]:
    """Return {path: kind} for the writable layer `upper` over the image mounted at `lower`."""
    found: dict[str, str] = {}
    for name, st in walk_tree(upper):
        path = "/" + name
        if path in MOUNT_POINTS:
            continue
        if is_whiteout(st):
            kind = "D"
        elif (below := _lookup(lower, name)) is None:
            if path in _MOUNT_PARENTS:
                continue  # made by the runtime to hold its mount points, as Docker's init layer holds them
            kind = "A"
        elif stat.S_ISDIR(st.st_mode) and stat.S_ISDIR(below.st_mode):
            hidden = _hidden(upper / name, lower / name)
            found.update((f"{path}/{child}", "D") for child in hidden)
            # Making the runtime's mount points in /etc changed its mtime, and only that.
            if not hidden and _same_directory(st, below, mtime=path not in _MOUNT_PARENTS):
                continue
            kind = "C"
        else:
            kind = "C"
        if kind != "C" and posixpath.dirname(path) != "/":
            # A directory that gained or lost an entry is listed even if its own times were kept.
            found.setdefault(posixpath.dirname(path), "C")
        found[path] = kind
    return found


def _hidden(upper: Path, lower: Path) -> list[str]:
    """Return the names of the image's directory `lower` that the opaque directory `upper` hides."""
    if not is_opaque(upper):
        return []
    return sorted(set(os.listdir(lower)) - set(os.listdir(upper)))


def _lookup(lower: Path, name: str) -> os.stat_result | None:
    """Return the lstat of `name` in the image mounted at `lower`, or None if the image does not have it.

    No component is followed: below something that is a symlink or a file in the image, the name
    is new, and the lookup never leaves the image's tree.
    """
    path = lower
    found: os.stat_result | None = None
    for part in name.split("/"):
        if found is not None and not stat.S_ISDIR(found.st_mode):
            return None
        path = path / part
        try:
            found = os.lstat(path)
        except FileNotFoundError:
            return None
    # A single-layer view is the layer's own directory, whose whiteouts no overlay hides.
    return None if found is None or is_whiteout(found) else found


def _same_directory(upper: os.stat_result, lower: os.stat_result, *, mtime: bool) -> bool:
    """Return whether a directory kept its mode, owner and size (and mtime), as moby's differ compares them."""
    same = (upper.st_mode, upper.st_uid, upper.st_gid) == (lower.st_mode, lower.st_uid, lower.st_gid)
    if not mtime:
        return same
    # Tar keeps whole seconds: equal, or the same second with one side's nanoseconds zero (moby's sameFsTime).
    a, b = divmod(upper.st_mtime_ns, 1_000_000_000), divmod(lower.st_mtime_ns, 1_000_000_000)
    same_time = a == b or (a[0] == b[0] and 0 in (a[1], b[1]))
    return same and same_time and upper.st_size == lower.st_size


#
# docker commit
#


def commit(
    containers: Containers,
    ref: str,
    repo_tag: str | None = None,
    *,
    author: str = "",
    message: str = "",
    changes: Sequence[str] = (),
    pause: bool = True,
) -> Image:
    """Make an image of the container's files and configuration, as `docker commit` does; return it.

    The new layer is the writable layer as an uncompressed tar (none if the container changed
    nothing; the history entry is then an empty layer). The config is the container's Config
    (Cmd, Entrypoint, Env, WorkingDir, User, Labels, ExposedPorts, Volumes, StopSignal; the image's
    Healthcheck) with `changes` (Dockerfile lines such as `CMD ["sh"]`) applied; like Docker, the
    parent's ONBUILD and SHELL are not carried over. A running container is paused while its layer
    is read unless `pause` is False, in which case it may change files under the reader.

    Changes and the tag are checked first. On any error no image is recorded and a layer blob
    written for it is deleted again.
    """
    record = containers.get(ref)
    state = containers.state(record.id)
    if state.status == "dead":
        raise Conflict(f"You cannot commit container {record.id} which is Dead")
    tags = [_commit_tag(repo_tag)] if repo_tag else []
    parent = containers.images.get(record.image)
    config = apply_changes(_container_config(record.config, parent.config.config), changes)
    upper = _upper_dir(containers, record.id)
    paused = pause and state.running and not state.paused
    if paused:
        containers.pause(record.id)
    try:
        layer = _write_layer(containers.images.content, upper)
    finally:
        if paused:
            containers.unpause(record.id)
    added = [layer.descriptor] if layer else []
    now = format_time(datetime.now(UTC))
    entry = History(
        created=now, created_by=" ".join(record.config.get("Cmd") or []), author=author, comment=message,
        empty_layer=not added,
    )  # fmt: skip
    image_config = ImageConfig(
        architecture=parent.config.architecture, os=parent.config.os, variant=parent.config.variant,
        created=now, author=author, comment=message, config=config, history=(*parent.config.history, entry),
        diff_ids=(*parent.config.diff_ids, *(d.digest for d in added)),
    )  # fmt: skip
    layers = [Descriptor(item.media_type, item.digest, item.size) for item in parent.layers]
    try:
        image = containers.images.create(image_config.to_json(), [*layers, *added], tags)
    except BaseException:
        if layer is not None and layer.new:
            containers.images.content.delete(layer.descriptor.digest)
        raise
    events.append(containers.config.root, "commit", record.id, comment=message, imageID=image.id,
                  imageRef=tags[0].familiar() if tags else "")  # fmt: skip
    return image


def _commit_tag(repo_tag: str) -> Reference:
    ref = parse_reference(repo_tag)
    if ref.digest:
        raise InvalidReference(f"refusing to create a tag with a digest reference: {repo_tag}")
    return ref


def _container_config(config: dict[str, Any], image: ContainerConfig) -> ContainerConfig:
    """Return the image config section for a container's Config (Docker's field names)."""
    entrypoint, cmd = config.get("Entrypoint"), config.get("Cmd")
    stop_signal = config.get("StopSignal") or ""
    if stop_signal == "SIGTERM" and not image.stop_signal:
        stop_signal = ""  # the default that create fills in, not one the user chose
    return ContainerConfig(
        user=config.get("User") or "",
        exposed_ports=tuple(sorted(config.get("ExposedPorts") or {})),
        env=tuple(config.get("Env") or ()),
        entrypoint=None if entrypoint is None else tuple(entrypoint),
        cmd=None if cmd is None else tuple(cmd),
        volumes=tuple(sorted(config.get("Volumes") or {})),
        working_dir=config.get("WorkingDir") or "",
        labels=dict(config.get("Labels") or {}),
        stop_signal=stop_signal,
        healthcheck=image.healthcheck,
    )


@dataclass(frozen=True)
class _Layer:
    """A layer blob written by a commit."""

    descriptor: Descriptor
    new: bool
    """Whether this commit wrote the blob (rather than finding the same bytes in the store)."""


def _write_layer(content: ContentStore, upper: Path) -> _Layer | None:
    """Write the layer tar of the writable layer `upper` to the content store; None if it is empty."""
    if next(walk_tree(upper), None) is None:
        return None
    with content.writer("commit") as writer:
        # A tar stream ("w|") only ever calls write(), which a content writer has.
        diff_upper(upper, cast(BinaryIO, writer))
        new = not content.exists(writer.digest)
        digest = writer.commit()
        return _Layer(Descriptor(MEDIA_TYPE_OCI_LAYER, digest, writer.offset), new)


#
# docker export
#


def export(containers: Containers, ref: str, out: BinaryIO) -> None:
    """Write the container's whole filesystem to `out` as a tar, as `docker export` does."""
    record = containers.get(ref)
    with _container_root(containers, record) as root:
        _InRoot(root, partial(tar_directory, Path("/"), out)).result()
    events.append(containers.config.root, "export", record.id)


#
# docker cp
#


def archive_get(containers: Containers, ref: str, path: str) -> tuple[dict[str, Any], Iterator[bytes]]:
    """Return the stat of `path` in the container and a tar of it, as `GET /containers/{id}/archive` does.

    The stat is what Docker sends in the X-Docker-Container-Path-Stat header: name, size, mode (Go's
    FileMode bits), mtime (RFC 3339) and, for a symlink, linkTarget (the path it resolves to in the
    container). The tar holds the entry under its own name (`/etc/passwd` gives `passwd`; a directory
    comes with everything below it). The last component is not followed unless the path ends in `/`.
    A path ending in `/.`, and the root `/`, give the directory's contents as `.`, `./...`.

    The stream reads the files only when iterated: iterate it to the end or close it.
    Raises ContainerFileNotFound, or InvalidArgument if a component is not a directory.
    """
    record = containers.get(ref)
    target = _Target.parse(path)
    with _container_root(containers, record) as root:
        with _path_errors(path, ref):
            st, link_target = _InRoot(root, target.stat).result()
    header = {
        "name": target.stat_name,
        "size": st.st_size,
        "mode": go_file_mode(st.st_mode),
        "mtime": format_time_ns(st.st_mtime_ns),
        "linkTarget": link_target,
    }
    events.append(containers.config.root, "archive-path", record.id)
    return header, _archive_stream(containers, record, target, (path, ref))


def _archive_stream(containers: Containers, record: Record, target: _Target, asked: tuple[str, str]) -> Iterator[bytes]:
    """Yield the tar of `target`, written by a thread in the container's root into a pipe."""
    with _container_root(containers, record) as root:
        read_fd, write_fd = os.pipe()
        with open(read_fd, "rb") as pipe, open(write_fd, "wb") as out:
            writer = _InRoot(root, partial(target.write_tar, out), closing=out)
            try:
                while chunk := pipe.read(_CHUNK):
                    yield chunk
            finally:
                # A consumer that stops early closes the pipe; the writer then fails with EPIPE and ends.
                pipe.close()
                writer.join()
        with _path_errors(*asked):
            writer.result()


@dataclass(frozen=True)
class _Target:
    """A path in the container as `docker cp` reads it (moby's PreserveTrailingDotOrSeparator)."""

    path: str
    """Absolute and clean, as the kernel is to look it up: ends in `/` to follow a last symlink."""
    stat_name: str
    """The `name` of the stat header: the last component, `.` for `/dir/.`, `/` for the root."""
    tar_name: str
    """The name of the entry in the tar: the last component, or `.` for a directory's contents."""

    @classmethod
    def parse(cls, path: str) -> _Target:
        clean = posixpath.normpath("/" + path.lstrip("/"))
        contents = clean == "/" or path.endswith("/.")
        follow = contents or path.endswith("/")
        base = posixpath.basename(clean)
        return cls(
            path=clean + "/" if follow and clean != "/" else clean,
            stat_name="." if path.endswith("/.") else base or "/",
            tar_name="." if contents else base,
        )

    def stat(self) -> tuple[os.stat_result, str]:
        """Return the lstat and, for a symlink, the path it resolves to; call with the container as root."""
        st = os.lstat(self.path)
        return st, os.path.realpath(self.path) if stat.S_ISLNK(st.st_mode) else ""

    def write_tar(self, out: BinaryIO) -> None:
        """Write the tar of the entry, and of what is below a directory; call with the container as root."""
        st = os.lstat(self.path)
        parent = self.path if self.tar_name == "." else posixpath.dirname(self.path.rstrip("/"))
        with TarWriter(Path(parent), out) as tar:
            tar.add(self.tar_name, st)
            if stat.S_ISDIR(st.st_mode):
                for name, child in walk_tree(Path(self.path)):
                    tar.add(f"{self.tar_name}/{name}", child)


def archive_put(
    containers: Containers, ref: str, path: str, stream: BinaryIO, *, no_overwrite_dir_non_dir: bool = False
) -> None:
    """Extract the tar read from `stream` into the directory `path` of the container, as `docker cp` does.

    Names in the archive are relative to `path`, which must exist and be a directory (symlinks in it
    are followed, inside the container). Entries replace what is there, a directory merging into a
    directory; with `no_overwrite_dir_non_dir` (what the docker CLI asks for) replacing a directory
    by a non-directory or the reverse fails instead. `.wh.*` names are plain files here: an archive
    is not a layer. Gzip, bzip2 and xz archives are accepted, as by Docker.

    Raises ContainerFileNotFound, InvalidArgument (not a directory, a read-only rootfs, a refused or
    malformed archive).
    """
    record = containers.get(ref)
    if record.host_config.get("ReadonlyRootfs"):
        raise InvalidArgument("container rootfs is marked read-only")
    with _container_root(containers, record) as root:
        # Resolved on the host only to answer with Docker's errors: the extraction resolves the
        # destination again from the root's descriptor, so a symlink swapped in meanwhile stays inside.
        with _path_errors(path, ref):
            resolved = Path(secure_join(str(root), path))
            if not stat.S_ISDIR(os.lstat(resolved).st_mode):
                raise InvalidArgument("extraction point is not a directory")
        _extract(root, list(resolved.relative_to(root).parts), stream, no_overwrite_dir_non_dir)
    events.append(containers.config.root, "extract-to-dir", record.id)


def _extract(root: Path, destination: list[str], stream: BinaryIO, no_overwrite_dir_non_dir: bool) -> None:
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        extractor = _Extractor(root_fd, destination, no_overwrite_dir_non_dir)
        with tarfile.open(fileobj=stream, mode="r|*") as archive:
            for member in archive:
                extractor.apply(member, archive)
        extractor.set_dir_times()
    except tarfile.TarError as err:
        raise InvalidArgument(f"archive: not a valid tar archive: {err}") from err
    finally:
        os.close(root_fd)


class _Extractor(Applier):
    """The layer applier as `docker cp` untars: names relative to a destination, and no whiteouts.

    Every path is resolved from the container's root, one component at a time relative to its
    parent's descriptor, symlinks as if the container's root were `/` (see snapshots/apply.py).
    """

    def __init__(self, root_fd: int, destination: list[str], no_overwrite_dir_non_dir: bool) -> None:
        super().__init__(root_fd, overlay_whiteouts=False)
        self.destination = destination
        self.no_overwrite_dir_non_dir = no_overwrite_dir_non_dir

    def apply(self, member: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        """Extract one archive entry below the destination; `..` may not climb out of it."""
        parts = clean_path(member.name)
        if not parts:
            return  # the destination itself, which exists (Docker skips it too)
        if member.islnk():
            # A hard link names its target relative to the destination too.
            member.linkname = "/".join(self.destination + clean_path(member.linkname))
        *parents, leaf = self.destination + parts
        parent_fd, resolved = self._open_dir(member.name, parents, create=True)
        try:
            if self.no_overwrite_dir_non_dir:
                _check_overwrite(member, parent_fd, leaf)
            self._create(member, archive, parent_fd, leaf, resolved + [leaf])
        finally:
            os.close(parent_fd)


def _check_overwrite(member: tarfile.TarInfo, parent_fd: int, leaf: str) -> None:
    try:
        existing = os.stat(leaf, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(existing.st_mode) and not member.isdir():
        raise InvalidArgument(f"cannot overwrite directory {leaf!r} with non-directory {member.name!r}")
    if not stat.S_ISDIR(existing.st_mode) and member.isdir():
        raise InvalidArgument(f"cannot overwrite non-directory {leaf!r} with directory {member.name!r}")


def go_file_mode(mode: int) -> int:
    """Return a stat mode as Go's os.FileMode: permissions, then type and special bits of its own."""
    result = (mode & 0o777) | _GO_TYPES.get(stat.S_IFMT(mode), 0)
    for bit, go_bit in _GO_SPECIAL.items():
        if mode & bit:
            result |= go_bit
    return result


@contextmanager
def _path_errors(path: str, ref: str) -> Iterator[None]:
    """Turn a failed lookup of `path` into the error Docker answers with."""
    try:
        yield
    except FileNotFoundError:
        raise ContainerFileNotFound(path, ref) from None
    except NotADirectoryError as err:
        raise InvalidArgument(f"{path}: not a directory") from err
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise InvalidArgument(f"{path}: too many levels of symbolic links") from err
        raise


#
# docker top and docker stats
#


def top(containers: Containers, ref: str, ps_args: str = "-ef") -> dict[str, Any]:
    """Return the container's processes as `docker top` does: {"Titles": [...], "Processes": [[...]]}.

    Like Docker, run the host's `ps` with `ps_args` and keep the rows whose PID is in the container's
    cgroup (with `m`, the thread rows under a kept process too). The PID column cannot be renamed.
    """
    args = (ps_args or "-ef").split()
    for key, value in re.findall(r"\s+([^\s]*)=\s*(PID[^\s]*)", ps_args):
        if key != "pid":
            raise InvalidArgument(f'specifying "{key}={value}" is not allowed')
    record = containers.get(ref)
    pids = set(containers.top(record.id))
    result = subprocess.run(["ps", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        # Docker answers with the first line of what ps says, which names the bad option.
        lines = result.stderr.strip().splitlines()
        raise InvalidArgument(f"ps: {lines[0] if lines else f'exit status {result.returncode}'}")
    processes = parse_ps(result.stdout, pids)
    events.append(containers.config.root, "top", record.id)
    return processes


def parse_ps(output: str, pids: set[int]) -> dict[str, Any]:
    """Return the rows of `ps` output whose PID is in `pids` (moby's parsePSOutput)."""
    lines = output.split("\n")
    titles = _fields(lines[0])
    if "PID" not in titles:
        raise InvalidArgument("Couldn't find PID field in ps output")
    column = titles.index("PID")
    processes: list[list[str]] = []
    kept = False
    for line in lines[1:]:
        if not line:
            continue
        fields = _fields(line)
        if fields[column] == "-":
            # A thread row (`ps m`) belongs to the process row above it.
            if kept:
                processes.append(_row(fields, len(titles)))
            continue
        try:
            kept = int(fields[column]) in pids
        except ValueError:
            raise InvalidArgument(f"Unexpected pid '{fields[column]}'") from None
        if kept:
            processes.append(_row(fields, len(titles)))
    return {"Titles": titles, "Processes": processes}


def _fields(line: str) -> list[str]:
    """Split on ASCII whitespace only: a command line may hold other Unicode spaces (moby's fieldsASCII)."""
    return [field for field in re.split(r"[\t\n\f\r ]+", line) if field]


def _row(fields: list[str], columns: int) -> list[str]:
    """Join the fields beyond the last title (a command's arguments) into the last column."""
    return [*fields[: columns - 1], " ".join(fields[columns - 1 :])]


def stats(containers: Containers, ref: str, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return one sample of the container's resource use as Docker's stats JSON.

    `previous` is the sample before, whose CPU figures become `precpu_stats` (what `docker stats`
    computes the CPU percentage from); without it they are zero. A container that is not running
    gives zeros, as in Docker. The memory limit is the host's memory when the cgroup has none.
    """
    record = containers.get(ref)
    sample = containers.stats(record.id)
    zero_cpu = {
        "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    }
    result: dict[str, Any] = {
        "read": ZERO_TIME,
        "preread": previous["read"] if previous else ZERO_TIME,
        "pids_stats": {},
        "blkio_stats": _blkio([]),
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": zero_cpu,
        "precpu_stats": previous["cpu_stats"] if previous else zero_cpu,
        "memory_stats": {},
        "name": "/" + record.name,
        "id": record.id,
    }
    if sample is None:
        return result
    usage: dict[str, Any] = {
        "total_usage": sample.cpu_usage_ns,
        "usage_in_kernelmode": sample.cpu_system_ns,
        "usage_in_usermode": sample.cpu_user_ns,
    }
    if sample.per_cpu_ns:
        usage["percpu_usage"] = list(sample.per_cpu_ns)
    memory: dict[str, Any] = {"usage": sample.memory_usage, "stats": dict(sample.memory_stats)}
    if sample.memory_max_usage:
        memory["max_usage"] = sample.memory_max_usage
    memory["limit"] = sample.memory_limit
    pids: dict[str, Any] = {"current": sample.pids_current}
    if sample.pids_limit:
        pids["limit"] = sample.pids_limit
    io = [("read", sample.blkio_read_bytes), ("write", sample.blkio_write_bytes)]
    service_bytes = [{"major": 0, "minor": 0, "op": op, "value": value} for op, value in io]
    result.update(
        read=format_time_ns(time.time_ns()),
        pids_stats=pids,
        blkio_stats=_blkio(service_bytes if sample.blkio_read_bytes or sample.blkio_write_bytes else []),
        cpu_stats={
            "cpu_usage": usage,
            "system_cpu_usage": system_cpu_usage(),
            "online_cpus": sample.online_cpus,
            "throttling_data": {
                "periods": sample.nr_periods,
                "throttled_periods": sample.throttled_periods,
                "throttled_time": sample.throttled_time_ns,
            },
        },
        memory_stats=memory,
    )
    return result


def _blkio(service_bytes: list[dict[str, Any]]) -> dict[str, Any]:
    """Return Docker's blkio_stats: only the bytes are counted; the other lists are null, as on cgroup v2."""
    others = ("io_serviced_recursive", "io_queue_recursive", "io_service_time_recursive", "io_wait_time_recursive",
              "io_merged_recursive", "io_time_recursive", "sectors_recursive")  # fmt: skip
    return {"io_service_bytes_recursive": service_bytes or None, **dict.fromkeys(others)}


def system_cpu_usage() -> int:
    """Return the host's CPU time since boot in nanoseconds, as Docker computes it from /proc/stat.

    proc(5): the `cpu` line counts user, nice, system, idle, iowait, irq and softirq time (then
    steal and guests, which Docker leaves out) in USER_HZ ticks.
    """
    with open("/proc/stat") as f:
        for line in f:
            fields = line.split()
            if fields and fields[0] == "cpu":
                ticks = sum(int(value) for value in fields[1:8])
                return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    raise FailedPrecondition("/proc/stat: no cpu line")


#
# mounts and roots
#


def _upper_dir(containers: Containers, container_id: str) -> Path:
    if not containers.snapshotter.overlay_whiteouts:
        raise FailedPrecondition(f"container {container_id}: diff and commit need the overlay snapshotter")
    return containers.snapshotter.upper_dir(container_id)


@contextmanager
def _image_view(containers: Containers, container_id: str) -> Iterator[Path]:
    """Mount a read-only view of the image under the container's snapshot; remove it afterwards."""
    snapshotter = containers.snapshotter
    parent = snapshotter.stat(container_id).parent
    key = f"{container_id}-parent-view-{secrets.token_hex(4)}"
    mounts = snapshotter.view(key, parent)
    try:
        with _mounted(containers, mounts) as root:
            yield root
    finally:
        snapshotter.remove(key)


@contextmanager
def _container_root(containers: Containers, record: Record) -> Iterator[Path]:
    """Yield the container's root filesystem: its rootfs while mounted there, else a temporary mount."""
    rootfs = containers._dir(record.id) / "rootfs"
    if is_mounted(rootfs):
        yield rootfs
        return
    with _mounted(containers, containers.snapshotter.mounts(record.id)) as root:
        yield root


@contextmanager
def _mounted(containers: Containers, mounts: Sequence[Mount]) -> Iterator[Path]:
    """Mount `mounts` on a new directory under `<root>/tmp`; unmount and remove it afterwards."""
    parent = containers.config.root / "tmp"
    parent.mkdir(mode=0o700, exist_ok=True)
    target = Path(tempfile.mkdtemp(prefix="mnt-", dir=parent))
    try:
        mount_all(mounts, target)
        try:
            yield target
        finally:
            for _ in mounts:
                unmount(target)
    finally:
        target.rmdir()


class _InRoot(threading.Thread, Generic[_T]):
    """A thread, started at once, that runs `work` with `root` as its root directory.

    Inside the chroot(2) every path, symlinks included, resolves within the container's tree, as
    in Docker's chrootarchive. `work` must not import anything: the container's files are not ours
    to run. `closing` is closed when the thread ends, whether or not `work` ran.
    """

    def __init__(self, root: Path, work: Callable[[], _T], *, closing: BinaryIO | None = None) -> None:
        super().__init__(name=f"in-root {root}", daemon=True)
        self._root = root
        self._work = work
        self._closing = closing
        self._value: _T | None = None
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            # unshare(2), CLONE_FS: this thread gets its own root and working directory, so that
            # the chroot below moves no other thread of the process. The thread ends with its work.
            Syscalls().unshare(CLONE_FS)
            os.chroot(self._root)
            os.chdir("/")
            self._value = self._work()
        except BaseException as err:
            self._error = err
        finally:
            if self._closing is not None:
                # Flushing into a pipe whose reader went away fails with EPIPE; the descriptor is closed anyway.
                with contextlib.suppress(OSError):
                    self._closing.close()

    def result(self) -> _T:
        """Wait for the work; return its value or raise its error."""
        self.join()
        if self._error is not None:
            raise self._error
        return cast(_T, self._value)
