"""The image store: image records and tags over the content store and the snapshotter.

Blobs (configs, manifests, layers) live in the content store; this store keeps only which
images exist and what points at them, in one JSON document:

```
<images_root>/index.json
{"images": {"sha256:<id>": {"manifest": "sha256:…", "added": 1714557600.5, "last_tag_time": …}},
 "tags":    {"docker.io/library/busybox:latest": "sha256:<id>"},
 "digests": {"docker.io/library/busybox@sha256:<manifest>": "sha256:<id>"},
 "layers":  {"sha256:<blob>": {"diff_id": "sha256:…", "size": <uncompressed bytes>}}}
```

`layers` remembers, per layer blob, the diff ID it was verified to hash to (uncompressed) and its
uncompressed size, so that a layer is decompressed and checked once, not once per image.

Several processes (web, node agents) share the store: every change is read-modify-write under
an exclusive `flock(2)` on `<images_root>/lock`, and the document is replaced atomically
(write a temporary file, fsync, rename, fsync the directory). Readers need no lock.

Lookups follow moby's `GetImage`: a full ID, then a reference (a digest reference first
matches an image ID, then the repository digests), then a unique ID prefix.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from containers.engine.config import EngineConfig
from containers.engine.content.store import ContentStore
from containers.engine.errors import (
    ContentNotFound,
    DigestMismatch,
    EngineError,
    FailedPrecondition,
    ImageInUse,
    ImageNotFound,
    InvalidArgument,
    InvalidReference,
    SnapshotNotFound,
)
from containers.engine.images.config import ImageConfig
from containers.engine.images.manifest import (
    CONFIG_MEDIA_TYPES,
    Descriptor,
    Manifest,
    decompress,
    layer_compression,
    oci_manifest,
    parse_manifest,
)
from containers.engine.images.reference import Reference, id_prefix, parse_any_reference, parse_reference
from containers.engine.snapshots.base import Info as SnapshotInfo
from containers.engine.snapshots.base import Kind, Snapshotter
from containers.engine.snapshots.unpack import Layer, chain_ids, unpack

IMAGE_LABEL = "webengine.image"
"""Snapshot label naming the image a container's (or a standby's) active snapshot was prepared from."""

EXTRACT_PREFIX = "extract-"
"""Key prefix of the active snapshots that the unpacker uses while it applies a layer."""

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ImageLayer:
    """One layer of an image: the blob as stored (maybe compressed), the diff ID of its tar and the tar's size."""

    digest: str
    media_type: str
    size: int
    diff_id: str
    unpacked_size: int


@dataclass(frozen=True)
class Image:
    """An image as `docker image inspect` sees it.

    `repo_tags` and `repo_digests` are in familiar form (`busybox:latest`), sorted, as Docker
    shows them; `size` is the sum of the uncompressed layer sizes (Docker's `Size`); `created`
    comes from the config.
    """

    id: str
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    config: ImageConfig
    manifest_digest: str
    layers: tuple[ImageLayer, ...]
    size: int
    created: datetime | None
    last_tag_time: datetime | None = None

    @property
    def short_id(self) -> str:
        """Return the 12 hex characters Docker shows."""
        return self.id.removeprefix("sha256:")[:12]


@dataclass(frozen=True)
class NewImage:
    """What `create_all` needs for one image.

    `layers` are committed blobs, in order, matching the config's diff IDs. `refs` are tags
    (`busybox:1.36`) or digest references (`busybox@sha256:…`, recorded as repository digests).
    `manifest`, if given, is kept byte for byte (its digest is the image's manifest digest);
    otherwise an OCI manifest is written.
    """

    config: bytes
    layers: Sequence[Descriptor]
    refs: Sequence[str | Reference] = ()
    manifest: bytes | None = None


@dataclass(frozen=True)
class ImageUsage:
    """One image's share of the disk, as `docker system df -v` shows it."""

    id: str
    size: int
    shared_size: int
    containers: int


@dataclass(frozen=True)
class Usage:
    """Disk usage of all images: `layers_size` counts each distinct layer once."""

    layers_size: int
    images: tuple[ImageUsage, ...]


@dataclass
class _Meta:
    """The parsed `index.json`."""

    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)
    after_write: list[Callable[[], None]] = field(default_factory=list)
    """Actions to run once the document is written, still under the lock: deleting files comes
    after the records that point at them are gone, so that a crash leaves orphans, never dangling
    records."""

    def refs_of(self, image: str) -> list[Reference]:
        """Return the tags and digest references of `image`, sorted by familiar form."""
        names = [n for n, i in self.tags.items() if i == image] + [n for n, i in self.digests.items() if i == image]
        return sorted((parse_reference(n, default_tag=False) for n in names), key=Reference.familiar)


@dataclass(frozen=True)
class _User:
    """A container using an image, found through its active snapshot."""

    container: str
    running: bool


class _Conflict(ImageInUse):
    """moby's `imageDeleteConflict`: `hard` ones cannot be forced; `used` ones come from a container."""

    def __init__(self, image: str, message: str, hard: bool = False, used: bool = False) -> None:
        forced = "cannot be forced" if hard else "must be forced"
        super().__init__(f"conflict: unable to delete {_short(image)} ({forced}) - {message}")
        self.used = used


def _short(image: str) -> str:
    return image.removeprefix("sha256:")[:12]


def _now() -> float:
    return time.time()


def _timestamp(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


class ImageStore:
    """Images, tags and repository digests of one node; see the module docstring for the layout.

    `is_running(container_id)` tells whether the container that owns an active snapshot is
    running, which decides whether `remove(force=True)` may delete an image it uses. Without
    it every user counts as running, the safe side: a used image is then never deleted.
    """

    def __init__(
        self,
        config: EngineConfig,
        content: ContentStore,
        snapshotter: Snapshotter,
        is_running: Callable[[str], bool] | None = None,
        before_remove: Callable[[], None] | None = None,
        is_container: Callable[[str], bool] | None = None,
    ) -> None:
        """`is_running(container_id)` tells running users from stopped ones; `before_remove()`
        runs before images or layers are removed (the engine releases its standby containers);
        `is_container(key)` tells an active snapshot of a container from one of a standby nobody
        adopted, which uses its image too but is no container (docker system df does not count it).
        """
        self.content = content
        self.snapshotter = snapshotter
        self._root = config.images_root
        self._root.mkdir(parents=True, exist_ok=True)
        self._index = self._root / "index.json"
        self._lock = self._root / "lock"
        self._is_running = is_running or (lambda _container: True)
        self._before_remove = before_remove or (lambda: None)
        self._is_container = is_container or (lambda _key: True)
        self._parsed: dict[str, Any] = {}

    # Reading

    def get(self, ref_or_id: str) -> Image:
        """Return the image for a reference, a full ID or a unique ID prefix; raise ImageNotFound."""
        meta = self._read()
        return self._image(meta, self._resolve(meta, ref_or_id))

    def list(self) -> list[Image]:
        """Return every image, newest first (by config `created`, then ID)."""
        meta = self._read()
        images = [self._image(meta, i) for i in meta.images]
        epoch = datetime.min.replace(tzinfo=UTC)
        return sorted(images, key=lambda img: (img.created or epoch, img.id), reverse=True)

    def open_layer(self, layer: ImageLayer) -> AbstractContextManager[BinaryIO]:
        """Yield the layer's uncompressed tar stream; use as `with store.open_layer(layer) as tar:`."""
        return self._open_layer(layer.digest)

    @contextmanager
    def _open_layer(self, digest: str) -> Iterator[BinaryIO]:
        with self.content.read(digest) as blob:
            yield decompress(blob)

    # Creating and tagging

    def create(self, config: bytes, layers: Sequence[Descriptor], tags: Iterable[str | Reference] = (),
               manifest: bytes | None = None) -> Image:
        """Record one image from blobs already committed; see `NewImage` and `create_all`."""
        return self.create_all([NewImage(config, list(layers), list(tags), manifest)])[0]

    def create_all(self, new: Sequence[NewImage]) -> list[Image]:
        """Record several images at once: all of them, with all their references, or none.

        The layers must be committed blobs; each is checked to decompress to its diff ID (once
        per blob). Configs and manifests are written to the content store. An image that exists
        already gets the new references; a tag that pointed at another image moves.
        """
        known = self._read().layers
        prepared = [self._prepare(item, known) for item in new]
        with self._transaction() as meta:
            now = _now()
            for image, manifest_digest, refs, verified in prepared:
                self._check_blobs(image, manifest_digest, verified)
                meta.layers.update(verified)
                record = meta.images.setdefault(image, {"manifest": manifest_digest, "added": now})
                for ref in refs:
                    (meta.digests if ref.digest else meta.tags)[str(ref)] = image
                    record["last_tag_time"] = now
        meta = self._read()
        return [self._image(meta, image) for image, *_ in prepared]

    def tag(self, source: str, target: str | Reference) -> Image:
        """Point the tag `target` at the image `source` names, moving it if it pointed elsewhere."""
        ref = target if isinstance(target, Reference) else parse_reference(target)
        if ref.digest:
            raise InvalidReference(f"refusing to create a tag with a digest reference: {ref.familiar()}")
        with self._transaction() as meta:
            image = self._resolve(meta, source)
            meta.tags[str(ref)] = image
            meta.images[image]["last_tag_time"] = _now()
        return self.get(image)

    def untag(self, ref: str | Reference) -> Reference:
        """Remove a tag or repository digest; return it. Raise ImageNotFound if it is not there."""
        with self._transaction() as meta:
            return self._remove_ref(meta, ref if isinstance(ref, Reference) else parse_reference(ref))

    # Removing

    def remove(self, ref_or_id: str, force: bool = False, prune: bool = True) -> list[dict[str, str]]:
        """Remove a reference or an image the way `docker rmi` does; return Docker's records.

        - A reference with other references left on the image only untags it.
        - An ID (or the last reference) deletes the image, unless a container uses it, or,
          for an ID, several repositories reference it; `force` overrides those conflicts
          except a running container. Removing the last tag of an image a container uses
          needs `force`, and then only untags it.
        - With `prune`, the image's blobs and unpacked layers that no other image or container
          uses are deleted too (Docker deletes a removed image's layers the same way).

        Records are `{"Untagged": "busybox:latest"}` and `{"Deleted": "sha256:…"}`.
        """
        records: list[dict[str, str]] = []
        self._before_remove()
        with self._transaction() as meta:
            image = self._resolve(meta, ref_or_id)
            users = self._users(image)
            by_reference = not self._is_id_prefix(image, ref_or_id)
            if by_reference:
                delete = self._untag_for_remove(meta, image, ref_or_id, users, force, records)
            else:
                self._untag_single(meta, image, users, force, records)
                delete = True
            if delete:
                self._delete(meta, image, users, force, prune, by_reference, records)
        return records

    def gc(self, grace_s: float = 600.0) -> dict[str, int]:
        """Delete blobs and unpacked layers that no image and no container uses.

        Blobs and snapshots younger than `grace_s` seconds are kept, since a pull or load in
        another process may be about to reference them; so are unpacker leftovers
        (`extract-*` active snapshots) until they are that old. Return counts and bytes freed.
        """
        self._before_remove()
        with self._transaction() as meta:
            deadline = _now() - grace_s
            keep = self._referenced_blobs(meta)
            blobs = [b for b in self.content.walk() if b.digest not in keep and b.created < deadline]
            for blob in blobs:
                self.content.delete(blob.digest)
            meta.layers = {d: entry for d, entry in meta.layers.items() if self.content.exists(d)}
            removed, freed = self._prune_snapshots(meta, deadline)
            return {
                "blobs_deleted": len(blobs),
                "blob_bytes": sum(b.size for b in blobs),
                "snapshots_deleted": removed,
                "snapshot_bytes": freed,
            }

    # Layers and disk

    def unpack(self, image: Image) -> str | None:
        """Unpack the image's layers as committed snapshots; return the top chain ID (None if no layers)."""
        layers = [Layer(diff_id=layer.diff_id, open=partial(self._open_layer, layer.digest)) for layer in image.layers]
        return unpack(self.snapshotter, layers)

    def usage(self) -> Usage:
        """Return the disk usage of images for `docker system df`: sizes are uncompressed layer bytes."""
        meta = self._read()
        images = [self._image(meta, i) for i in meta.images]
        chains = {img.id: chain_ids([layer.diff_id for layer in img.layers]) for img in images}
        sizes = {img.id: [layer.unpacked_size for layer in img.layers] for img in images}
        holders: dict[str, int] = {}
        for chain in chains.values():
            for link in set(chain):
                holders[link] = holders.get(link, 0) + 1
        counted: dict[str, int] = {}
        result = []
        users = self._all_users()
        for img in images:
            pairs = list(zip(chains[img.id], sizes[img.id], strict=True))
            counted.update(pairs)
            shared = sum(size for link, size in pairs if holders[link] > 1)
            result.append(ImageUsage(img.id, img.size, shared, sum(1 for u in users.values() if u == img.id)))
        return Usage(layers_size=sum(counted.values()), images=tuple(result))

    # Internals: metadata

    def _read(self) -> _Meta:
        try:
            raw = self._index.read_bytes()
        except FileNotFoundError:
            return _Meta()
        try:
            doc = json.loads(raw)
            return _Meta(doc["images"], doc["tags"], doc["digests"], doc["layers"])
        except (ValueError, KeyError, TypeError) as err:
            raise EngineError(f"image index {self._index}: corrupt: {err}") from err

    def _write(self, meta: _Meta) -> None:
        doc = {"images": meta.images, "tags": meta.tags, "digests": meta.digests, "layers": meta.layers}
        fd, tmp = tempfile.mkstemp(prefix=".index-", dir=self._root)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, sort_keys=True, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, self._index)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self._root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @contextmanager
    def _transaction(self) -> Iterator[_Meta]:
        """Hold the store's lock; yield the metadata, write it back if the block succeeds, then run `after_write`."""
        with open(self._lock, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            meta = self._read()
            yield meta
            self._write(meta)
            for action in meta.after_write:
                action()

    # Internals: lookups

    def _resolve(self, meta: _Meta, ref_or_id: str) -> str:
        parsed = parse_any_reference(ref_or_id)
        if isinstance(parsed, str):
            if parsed in meta.images:
                return parsed
            raise ImageNotFound(f"No such image: {parsed}")
        found = self._by_reference(meta, parsed)
        if found is not None:
            return found
        prefix = id_prefix(ref_or_id)
        if prefix is not None:
            matches = [i for i in meta.images if i.removeprefix("sha256:").startswith(prefix)]
            if len(matches) == 1:
                return matches[0]
            if matches:
                raise ImageNotFound(f"No such image: {ref_or_id} (ambiguous ID prefix, {len(matches)} images match)")
        raise ImageNotFound(f"No such image: {parsed.familiar()}")

    @staticmethod
    def _by_reference(meta: _Meta, ref: Reference) -> str | None:
        if ref.digest is None:
            return meta.tags.get(str(ref))
        if ref.digest in meta.images:
            return ref.digest
        return meta.digests.get(str(Reference(ref.domain, ref.path, None, ref.digest)))

    @staticmethod
    def _is_id_prefix(image: str, text: str) -> bool:
        return image.startswith(text) or image.removeprefix("sha256:").startswith(text)

    def _image(self, meta: _Meta, image: str) -> Image:
        record = meta.images[image]
        manifest = self._manifest(record["manifest"])
        config = self._config(image)
        layers = tuple(
            ImageLayer(d.digest, d.media_type, d.size, diff_id, meta.layers[d.digest]["size"])
            for d, diff_id in zip(manifest.layers, config.diff_ids, strict=True)
        )
        refs = meta.refs_of(image)
        return Image(
            id=image,
            repo_tags=tuple(r.familiar() for r in refs if r.digest is None),
            repo_digests=tuple(r.familiar() for r in refs if r.digest is not None),
            config=config,
            manifest_digest=record["manifest"],
            layers=layers,
            size=sum(layer.unpacked_size for layer in layers),
            created=config.created_at,
            last_tag_time=_timestamp(record.get("last_tag_time")),
        )

    def _manifest(self, digest: str) -> Manifest:
        if digest not in self._parsed:
            with self.content.read(digest) as f:
                parsed = parse_manifest(f.read())
            if not isinstance(parsed, Manifest):
                raise InvalidArgument(f"manifest {digest}: is an index, not an image manifest")
            self._parsed[digest] = parsed
        return self._parsed[digest]

    def _config(self, digest: str) -> ImageConfig:
        if digest not in self._parsed:
            with self.content.read(digest) as f:
                self._parsed[digest] = ImageConfig.from_json(f.read())
        return self._parsed[digest]

    # Internals: creating

    def _prepare(
        self, item: NewImage, known: dict[str, dict[str, Any]]
    ) -> tuple[str, str, list[Reference], dict[str, dict[str, Any]]]:
        """Validate one new image and write its config and manifest blobs; nothing is recorded yet.

        `known` is the layer table: layers in it were verified before and are not read again.
        """
        config = ImageConfig.from_json(item.config)
        if len(config.diff_ids) != len(item.layers):
            raise InvalidArgument(
                f"image config: {len(config.diff_ids)} diff IDs for {len(item.layers)} layers"
            )
        refs = [r if isinstance(r, Reference) else parse_reference(r) for r in item.refs]
        pairs = zip(item.layers, config.diff_ids, strict=True)
        verified = {d.digest: self._verify_layer(d, diff_id, known) for d, diff_id in pairs}
        image = self.content.write_blob(item.config)
        manifest = item.manifest or oci_manifest(item.config, item.layers)
        parsed = parse_manifest(manifest)
        if not isinstance(parsed, Manifest) or parsed.config.digest != image:
            raise InvalidArgument(f"manifest: does not name config {image}")
        if parsed.config.media_type not in CONFIG_MEDIA_TYPES:
            raise InvalidArgument(f"manifest: config media type {parsed.config.media_type!r} is not an image config")
        if [d.digest for d in parsed.layers] != [d.digest for d in item.layers]:
            raise InvalidArgument("manifest: layers differ from the image's layers")
        return image, self.content.write_blob(manifest), refs, verified

    def _verify_layer(self, desc: Descriptor, diff_id: str, known: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Check that the blob decompresses to `diff_id`; return its cache entry (diff ID, size)."""
        layer_compression(desc.media_type)
        info = self.content.info(desc.digest)
        if info.size != desc.size:
            raise InvalidArgument(f"layer {desc.digest}: size {info.size}, manifest says {desc.size}")
        cached = known.get(desc.digest) or self._measure(desc.digest)
        if cached["diff_id"] != diff_id:
            raise DigestMismatch(f"layer {desc.digest}: uncompressed digest {cached['diff_id']}, config says {diff_id}")
        return cached

    def _measure(self, digest: str) -> dict[str, Any]:
        sha = hashlib.sha256()
        size = 0
        with self._open_layer(digest) as tar:
            while chunk := tar.read(_CHUNK):
                sha.update(chunk)
                size += len(chunk)
        return {"diff_id": "sha256:" + sha.hexdigest(), "size": size}

    def _check_blobs(self, image: str, manifest: str, layers: Iterable[str]) -> None:
        """Fail if a blob vanished (a concurrent gc) between `_prepare` and the transaction."""
        for digest in (image, manifest, *layers):
            if not self.content.exists(digest):
                raise ContentNotFound(f"content {digest}: not found")

    # Internals: removing

    def _users(self, image: str) -> list[_User]:
        return [_User(key, self._is_running(key)) for key, used in self._all_users().items() if used == image]

    def _all_users(self) -> dict[str, str]:
        """Map each container (active snapshot key) to the image it was prepared from."""
        return {
            s.name: s.labels[IMAGE_LABEL]
            for s in self.snapshotter.walk()
            if s.kind == Kind.ACTIVE and IMAGE_LABEL in s.labels and self._is_container(s.name)
        }

    def _untag_for_remove(self, meta: _Meta, image: str, text: str, users: list[_User], force: bool,
                          records: list[dict[str, str]]) -> bool:
        """Remove the reference `text` names; return whether the image lost its last reference."""
        refs = meta.refs_of(image)
        if not force and _single_reference(refs) and users:
            raise ImageInUse(
                f'conflict: unable to remove repository reference "{text}" (must force) - '
                f"container {_short(users[0].container)} is using its referenced image {_short(image)}"
            )
        removed = self._remove_ref(meta, parse_reference(text))
        records.append({"Untagged": removed.familiar()})
        refs = meta.refs_of(image)
        if removed.digest is None and not any(r.digest is None and r.name == removed.name for r in refs):
            for ref in [r for r in refs if r.name == removed.name]:
                self._remove_ref(meta, ref)
                records.append({"Untagged": ref.familiar()})
        return not meta.refs_of(image)

    def _untag_single(self, meta: _Meta, image: str, users: list[_User], force: bool,
                      records: list[dict[str, str]]) -> None:
        """For removal by ID: drop the references if they are all one repository's."""
        refs = meta.refs_of(image)
        if not _single_reference(refs):
            return
        self._check_users(image, users, references=[], soft=not force)
        for ref in refs:
            self._remove_ref(meta, ref)
            records.append({"Untagged": ref.familiar()})

    @staticmethod
    def _check_users(image: str, users: list[_User], references: list[Reference], soft: bool) -> None:
        """Raise the first conflict in moby's order: running container, references, stopped container."""
        running = [u for u in users if u.running]
        if running:
            message = f"image is being used by running container {_short(running[0].container)}"
            raise _Conflict(image, message, hard=True, used=True)
        if references:
            raise _Conflict(image, "image is referenced in multiple repositories")
        if soft and users:
            raise _Conflict(image, f"image is being used by stopped container {_short(users[0].container)}", used=True)

    def _delete(self, meta: _Meta, image: str, users: list[_User], force: bool, prune: bool, quiet: bool,
                records: list[dict[str, str]]) -> None:
        """Delete the image unless a conflict forbids it (moby's `imageDeleteHelper`)."""
        try:
            self._check_users(image, users, references=[] if force else meta.refs_of(image), soft=not force)
        except _Conflict as conflict:
            if quiet and conflict.used:
                return
            raise
        for ref in meta.refs_of(image):
            self._remove_ref(meta, ref)
            records.append({"Untagged": ref.familiar()})
        manifest = meta.images.pop(image)["manifest"]
        records.append({"Deleted": image})
        if prune:
            meta.after_write.append(partial(self._prune_image, meta, image, manifest, records))

    @staticmethod
    def _remove_ref(meta: _Meta, ref: Reference) -> Reference:
        if ref.digest is not None:
            ref = Reference(ref.domain, ref.path, None, ref.digest)
            table = meta.digests
        else:
            table = meta.tags
        if table.pop(str(ref), None) is None:
            raise ImageNotFound(f"No such image: {ref.familiar()}")
        return ref

    def _prune_image(self, meta: _Meta, image: str, manifest: str, records: list[dict[str, str]]) -> None:
        """Delete the removed image's blobs and layer snapshots that nothing else uses; record the chain IDs."""
        keep = self._referenced_blobs(meta)
        chains = chain_ids(list(self._config(image).diff_ids))
        for digest in [image, manifest, *(d.digest for d in self._manifest(manifest).layers)]:
            if digest not in keep and self.content.exists(digest):
                self.content.delete(digest)
        removed, _ = self._remove_snapshots(meta, candidates=set(chains))
        records.extend({"Deleted": chain} for chain in removed)

    def _referenced_blobs(self, meta: _Meta) -> set[str]:
        keep: set[str] = set()
        for image, record in meta.images.items():
            keep.update((image, record["manifest"]))
            keep.update(d.digest for d in self._manifest(record["manifest"]).layers)
        return keep

    def _prune_snapshots(self, meta: _Meta, deadline: float) -> tuple[int, int]:
        stale = [
            s.name for s in self.snapshotter.walk()
            if s.kind == Kind.ACTIVE and s.name.startswith(EXTRACT_PREFIX) and s.created < deadline
        ]
        freed = 0
        for key in stale:
            freed += self.snapshotter.usage(key)
            self.snapshotter.remove(key)
        old = {s.name for s in self.snapshotter.walk() if s.kind == Kind.COMMITTED and s.created < deadline}
        removed, more = self._remove_snapshots(meta, candidates=old)
        return len(stale) + len(removed), freed + more

    def _remove_snapshots(self, meta: _Meta, candidates: set[str]) -> tuple[list[str], int]:
        """Remove the committed `candidates` no image or other snapshot needs, children first."""
        snapshots = {s.name: s for s in self.snapshotter.walk()}
        needed = set()
        for image in meta.images:
            needed.update(chain_ids(list(self._config(image).diff_ids)))
        for snap in snapshots.values():
            if snap.kind != Kind.COMMITTED:
                needed.update(_ancestors(snap, snapshots))
        removable = {c for c in candidates if c in snapshots and snapshots[c].kind == Kind.COMMITTED} - needed
        removed: list[str] = []
        freed = 0
        while True:
            parents = {s.parent for s in snapshots.values()}
            leaves = sorted(n for n in removable if n not in parents)
            if not leaves:
                return removed, freed
            for name in leaves:
                removable.discard(name)
                size = self.snapshotter.usage(name)
                try:
                    self.snapshotter.remove(name)
                except (FailedPrecondition, SnapshotNotFound):
                    continue  # a child appeared, or another process removed it, since walk()
                freed += size
                removed.append(name)
                del snapshots[name]


def intermediates(images: Sequence[Image]) -> set[str]:
    """Return the IDs of the untagged images that another image was built on: a build's steps.

    Docker lists neither these in `docker images` (only `-a` does) nor prunes them as dangling:
    they are the build cache. The store keeps no parent links, so a parent is recognised as
    Docker's legacy builder makes one: its layers and its history both begin the child's.
    """
    found = set()
    for image in images:
        if image.repo_tags or image.repo_digests:
            continue
        diff_ids, history = image.config.diff_ids, image.config.history
        for other in images:
            if (other.id != image.id and len(other.config.history) > len(history)
                    and other.config.diff_ids[: len(diff_ids)] == diff_ids
                    and other.config.history[: len(history)] == history):  # fmt: skip
                found.add(image.id)
                break
    return found


def _ancestors(snap: SnapshotInfo, snapshots: dict[str, SnapshotInfo]) -> Iterator[str]:
    parent = snap.parent
    while parent is not None and parent in snapshots:
        yield parent
        parent = snapshots[parent].parent


def _single_reference(refs: Sequence[Reference]) -> bool:
    """Return whether the references are one tag, or digests of one repository (moby's `isSingleReference`)."""
    if len(refs) <= 1:
        return len(refs) == 1
    tags = [r for r in refs if r.digest is None]
    if len(tags) > 1:
        return False
    canonical_names = {r.name for r in refs if r.digest is not None}
    single = tags[0] if tags else refs[0]
    return len(canonical_names) == 1 and single.name in canonical_names
