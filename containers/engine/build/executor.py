"""What build steps run on: containers for RUN, private snapshots for file steps, and image commits.

A RUN step is a container of the engine's runtime (`Containers.create/start/wait/remove`), whose
output is streamed line by line as it comes. A file step (COPY, ADD, WORKDIR) writes into an
active snapshot on top of the parent image, mounted on a private directory for the time of the
work, and never started as a container. Either way the writable layer (the snapshot's overlay
upper directory) becomes the step's layer: an uncompressed tar in the content store, in OCI
whiteout form, and a new image with the parent's layers plus that one. A step that changed no
file makes no layer; its history entry is an `empty_layer`, as Docker marks it.

What the runtime made only to mount on is left out of a RUN layer, as Docker's init layer keeps it
out: /proc, /sys, /dev and the bind-mounted /etc/hostname, /etc/hosts and /etc/resolv.conf when
the image lacks them (or where the image's symlinks lead them), the targets of `RUN --mount`, and
the directories created to hold them.

The step's snapshot is then committed under the new layer's chain ID (a RUN container's once its
stubs are deleted, unless the container is to be kept), so the next step finds the layer unpacked
already: the upper directory is what the layer tar encodes, and is not written a second time.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import secrets
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

from containers.engine.archive import TarWriter, is_opaque, is_whiteout, walk_tree
from containers.engine.container_fs import MOUNT_POINTS
from containers.engine.engine import Engine
from containers.engine.errors import AlreadyExists, EngineError, FailedPrecondition, NotFound, SnapshotNotFound
from containers.engine.images.config import ContainerConfig, History, ImageConfig, format_time
from containers.engine.images.manifest import MEDIA_TYPE_OCI_LAYER, Descriptor, Platform
from containers.engine.images.store import Image
from containers.engine.shim import protocol
from containers.engine.shim.client import Stream
from containers.engine.snapshots.base import Snapshotter
from containers.engine.snapshots.mount import mount_all, unmount
from containers.engine.snapshots.unpack import chain_ids

# How often a RUN step's output loop looks at the cancel flag when the container is quiet.
_CANCEL_POLL_S = 0.1
# path_resolution(7): the kernel gives up after 40 symlinks in one lookup; so does the resolver.
_MAX_SYMLINKS = 40


class BuildCancelled(EngineError):
    """The build was cancelled; the running step's container was killed and removed."""

    def __init__(self) -> None:
        super().__init__("Build cancelled")


@dataclass(frozen=True)
class Layer:
    """A layer blob a step wrote: its descriptor (uncompressed, so the digest is the diff ID)."""

    descriptor: Descriptor
    new: bool
    """Whether this step wrote the blob, rather than finding the same bytes in the store."""

    @property
    def diff_id(self) -> str:
        return self.descriptor.digest


class Executor:
    """Run build steps against one engine and commit what they make as images."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.containers = engine.containers
        self.snapshotter = engine.snapshotter
        if not self.snapshotter.overlay_whiteouts:
            raise FailedPrecondition("builds need the overlay snapshotter")

    #
    # RUN: containers
    #

    def create(self, parent: Image, config: Mapping[str, Any], host_config: Mapping[str, Any]) -> str:
        """Create the container of a RUN step on top of `parent`; return its ID."""
        return self.containers.create({**config, "Image": parent.id}, host_config).id

    def run(self, container_id: str, output: Callable[[str], None], cancel: threading.Event | None) -> int:
        """Start the container and stream its output, a line at a time; return its exit code.

        With `cancel` set meanwhile, the container is killed and BuildCancelled raised (the
        caller removes it).
        """
        attach = {"stdin": False, "stdout": True, "stderr": True}
        stream = cast(Stream, self.containers.start(container_id, attach=attach))  # attached: always a stream
        lines = {protocol.STDOUT: _Lines(output), protocol.STDERR: _Lines(output)}
        with stream:
            stream.sock.settimeout(_CANCEL_POLL_S)
            while True:
                if cancel is not None and cancel.is_set():
                    with contextlib.suppress(EngineError):
                        self.containers.kill(container_id)
                    raise BuildCancelled()
                try:
                    frames = stream.receive()
                except TimeoutError:
                    continue
                if frames is None:
                    break
                for kind, payload in frames:
                    if kind in lines:
                        lines[kind].feed(payload)
        for reader in lines.values():
            reader.flush()
        state = self.containers.wait(container_id)
        return stream.exit_code if stream.exit_code is not None else state.exit_code

    def remove(self, container_id: str) -> None:
        """Remove a step's container (killing it if it still runs); gone already is fine."""
        with contextlib.suppress(NotFound):
            self.containers.remove(container_id, force=True)

    def container_layer(self, container_id: str, mount_targets: Iterable[str] = (), *, adopt: bool) -> Layer | None:
        """Write the layer of what the finished container changed; None if it changed nothing.

        `mount_targets` are the paths of the step's own mounts (`RUN --mount`), left out like the
        runtime's mount points when the image does not have them. With `adopt`, the container's
        snapshot becomes the layer's (its stubs deleted, so that it holds what the layer tar
        holds), which saves unpacking the layer again for the next step; the container is then
        only good for removing.
        """
        upper = self.snapshotter.upper_dir(container_id)
        parent = self.snapshotter.stat(container_id).parent
        lower = _Lower(self.snapshotter, parent)
        targets = [*MOUNT_POINTS, *mount_targets]
        # The runtime made each mount point where the image's symlinks lead (secure_join), maybe elsewhere.
        stubs = _stubs(upper, lower.stat, [*targets, *(lower.resolve(target) for target in targets)])
        layer = self._write_layer(upper, stubs)
        if layer is not None and adopt:
            for name in sorted(stubs, reverse=True):
                stub = upper / name
                if stub.is_dir() and not stub.is_symlink():
                    stub.rmdir()
                else:
                    stub.unlink()
            self._commit_snapshot(container_id, parent, layer)
        return layer

    #
    # COPY, ADD, WORKDIR: snapshots
    #

    @contextmanager
    def file_step(self, parent: Image | None) -> Iterator[FileStep]:
        """Yield a writable root on top of `parent` (None: empty), mounted on a private directory.

        When the block succeeds the step's layer is in `FileStep.layer` (None if nothing changed);
        when it fails, nothing of the step remains.
        """
        parent_chain = self.engine.images.unpack(parent) if parent is not None else None
        key = f"build-{secrets.token_hex(8)}"
        mounts = self.snapshotter.prepare(key, parent_chain)
        try:
            target = self._mount_point()
            try:
                mount_all(mounts, target)
                try:
                    step = FileStep(target)
                    yield step
                finally:
                    for _ in mounts:
                        unmount(target)
            finally:
                target.rmdir()
            step.layer = self._write_layer(self.snapshotter.upper_dir(key), set())
        except BaseException:
            self.snapshotter.remove(key)
            raise
        if step.layer is None:
            self.snapshotter.remove(key)
        elif not self._commit_snapshot(key, parent_chain, step.layer):
            self.snapshotter.remove(key)

    @contextmanager
    def view(self, image: Image) -> Iterator[Path]:
        """Mount a read-only view of the image's files on a private directory for the time of the block."""
        chain = self.engine.images.unpack(image)
        target = self._mount_point()
        try:
            if chain is None:
                yield target
                return
            key = f"build-view-{secrets.token_hex(8)}"
            mounts = self.snapshotter.view(key, chain)
            try:
                mount_all(mounts, target)
                try:
                    yield target
                finally:
                    for _ in mounts:
                        unmount(target)
            finally:
                self.snapshotter.remove(key)
        finally:
            target.rmdir()

    def _commit_snapshot(self, key: str, parent_chain: str | None, layer: Layer) -> bool:
        """Commit the active snapshot `key` as the layer's snapshot (named by its chain ID); False if one exists."""
        chain = chain_ids([parent_chain, layer.diff_id])[-1] if parent_chain else layer.diff_id
        try:
            self.snapshotter.commit(chain, key)
        except AlreadyExists:
            return False
        return True

    def _mount_point(self) -> Path:
        """Make a private, empty directory under `<root>/tmp` to mount on."""
        parent = self.engine.config.root / "tmp"
        parent.mkdir(mode=0o700, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="build-", dir=parent))

    #
    # layers and images
    #

    def _write_layer(self, upper: Path, stubs: set[str]) -> Layer | None:
        """Write the tar of the upper directory `upper` (OCI whiteouts; `stubs` left out), or None if empty."""
        entries = [(name, st) for name, st in walk_tree(upper) if name not in stubs]
        if not entries:
            return None
        content = self.engine.content
        with content.writer("build") as writer:
            # A tar stream ("w|") only ever calls write(), which a content writer has.
            with TarWriter(upper, cast(BinaryIO, writer)) as tar:
                for name, st in entries:
                    if is_whiteout(st):
                        tar.add_whiteout(name, st)
                        continue
                    tar.add(name, st)
                    if stat.S_ISDIR(st.st_mode) and is_opaque(upper / name):
                        tar.add_opaque(name, st)
            new = not content.exists(writer.digest)
            digest = writer.commit()
            return Layer(Descriptor(MEDIA_TYPE_OCI_LAYER, digest, writer.offset), new)

    def commit(
        self,
        parent: Image | None,
        config: ContainerConfig,
        created_by: str,
        author: str,
        layer: Layer | None,
        platform: Platform,
    ) -> Image:
        """Record the image of one step: the parent's layers and history plus this step's; return it.

        On failure a layer blob this step wrote is deleted again.
        """
        now = format_time(datetime.now(UTC))
        base = (
            parent.config
            if parent is not None
            else ImageConfig(architecture=platform.architecture, os=platform.os, variant=platform.variant)
        )
        entry = History(created=now, created_by=created_by, author=author, empty_layer=layer is None)
        image_config = ImageConfig(
            architecture=base.architecture, os=base.os, variant=base.variant, created=now, author=author,
            config=config, history=(*base.history, entry),
            diff_ids=(*base.diff_ids, *([layer.diff_id] if layer else [])),
        )  # fmt: skip
        layers = [Descriptor(item.media_type, item.digest, item.size) for item in (parent.layers if parent else ())]
        try:
            return self.engine.images.create(image_config.to_json(), [*layers, *([layer.descriptor] if layer else [])])
        except BaseException:
            if layer is not None and layer.new:
                self.engine.content.delete(layer.descriptor.digest)
            raise


class _Lower:
    """The committed layers below a snapshot, looked up without mounting them.

    Each layer directory is looked at from the top: a whiteout hides the name below, and a
    whiteout, a file or an opaque directory on the way hides everything below it.
    """

    def __init__(self, snapshotter: Snapshotter, parent: str | None) -> None:
        self.layers: list[Path] = []
        while parent is not None:
            self.layers.append(snapshotter.upper_dir(parent))
            try:
                parent = snapshotter.stat(parent).parent
            except SnapshotNotFound:
                break

    def find(self, path: str) -> Path | None:
        """Return where the image's entry `path` (relative) is on the host, or None if the image lacks it."""
        for directory in self.layers:
            found = _lstat(directory / path)
            if found is not None:
                return None if is_whiteout(found) else directory / path
            for ancestor in _ancestors(path):
                above = _lstat(directory / ancestor)
                if above is not None and (not stat.S_ISDIR(above.st_mode) or is_opaque(directory / ancestor)):
                    return None
        return None

    def stat(self, path: str) -> os.stat_result | None:
        found = self.find(path)
        return None if found is None else os.lstat(found)

    def resolve(self, path: str) -> str:
        """Return `path` with the image's symlinks followed as if its root were `/` (runtime/rootfs.secure_join)."""
        remaining = [part for part in path.split("/") if part not in ("", ".")]
        resolved: list[str] = []
        links = 0
        while remaining:
            part = remaining.pop(0)
            if part == "..":
                resolved = resolved[:-1]
                continue
            found = self.find("/".join([*resolved, part]))
            if found is not None and found.is_symlink() and links < _MAX_SYMLINKS:
                links += 1
                target = os.readlink(found)
                resolved = [] if target.startswith("/") else resolved
                remaining = [p for p in target.split("/") if p not in ("", ".")] + remaining
                continue
            resolved.append(part)
        return "/".join(resolved)


@dataclass
class FileStep:
    """The writable root of a file step, and the layer it made once it is done."""

    root: Path
    layer: Layer | None = None


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _ancestors(path: str) -> list[str]:
    """Return the directories above `path` (relative), nearest first: `a/b/c` gives `a/b`, `a`."""
    result = []
    while "/" in path:
        path = path.rsplit("/", 1)[0]
        result.append(path)
    return result


def _stubs(upper: Path, lower: Callable[[str], os.stat_result | None], targets: Iterable[str]) -> set[str]:
    """Return the entries of `upper` that exist only to be mounted on, and the directories made to hold them.

    A target is a stub if the image does not have it and it is an empty file or an empty
    directory (what the runtime makes); a directory above it is one if it then holds nothing else
    and is either new or unchanged from the image's but for its times.
    """
    stubs: set[str] = set()
    for target in sorted({posixpath.normpath(t).lstrip("/") for t in targets if t.strip("/")}, reverse=True):
        path = upper / target
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if lower(target) is not None or not _empty(path, st, stubs, target):
            continue
        stubs.add(target)
        for ancestor in _ancestors(target):
            a_st = os.lstat(upper / ancestor)
            below = lower(ancestor)
            if not _empty(upper / ancestor, a_st, stubs, ancestor) or is_opaque(upper / ancestor):
                break
            if below is not None and (below.st_mode, below.st_uid, below.st_gid) != (
                a_st.st_mode,
                a_st.st_uid,
                a_st.st_gid,
            ):
                break
            stubs.add(ancestor)
    return stubs


def _empty(path: Path, st: os.stat_result, stubs: set[str], name: str) -> bool:
    """Return whether the entry is an empty file, or a directory holding only stubs."""
    if stat.S_ISREG(st.st_mode):
        return st.st_size == 0
    if stat.S_ISDIR(st.st_mode):
        return all(f"{name}/{child}" in stubs for child in os.listdir(path))
    return False


class _Lines:
    """Cut a stream's bytes into lines and hand each on, decoded, with its newline."""

    def __init__(self, output: Callable[[str], None]) -> None:
        self._output = output
        self._pending = b""

    def feed(self, data: bytes) -> None:
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            self._output(line.decode("utf-8", errors="replace") + "\n")

    def flush(self) -> None:
        """Hand on what is left after the last newline, with a newline added."""
        if self._pending:
            self._output(self._pending.decode("utf-8", errors="replace") + "\n")
            self._pending = b""
