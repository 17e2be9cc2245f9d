"""Image archives: `docker save` / `docker load`, and OCI image layout directories.

`save` writes what Docker 25+ writes: an OCI image layout in a tar (`oci-layout`, `index.json`,
`blobs/sha256/…`) plus Docker's `manifest.json` and `repositories`, with uncompressed layers.
Each tag gets an index entry annotated with `io.containerd.image.name` (the full name) and
`org.opencontainers.image.ref.name` (the tag), as Docker and containerd write them.

`load` accepts, plain or compressed (gzip, bzip2, xz):

- Docker 25+ archives and legacy ones (`manifest.json` naming `<id>.json` configs and
  `<id>/layer.tar` or `<hex>.tar` layers, as old Docker and skopeo's docker-archive write),
  read through `manifest.json`;
- OCI layout tars (`index.json` only), named by `io.containerd.image.name` or else by
  `org.opencontainers.image.ref.name` read as a reference (`busybox` is `busybox:latest`).

An archive is untrusted input. Member names are only keys in a table, never paths on the host;
links are resolved inside that table; every file is streamed straight into the content store,
blobs under their announced digest (so a wrong digest is refused while it is read). The images
are recorded only after everything checked out; on any failure the blobs this load added are
deleted again, and no image or tag is left behind.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import posixpath
import re
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from containers.engine.content.store import ContentStore, digest_of, validate_digest
from containers.engine.errors import AlreadyExists, DigestMismatch, InvalidArgument, UnsafeArchive
from containers.engine.images.manifest import (
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    MEDIA_TYPE_OCI_LAYER,
    MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_OCI_MANIFEST,
    OCI_LAYOUT_VERSION,
    Descriptor,
    Index,
    Manifest,
    decompress,
    host_platform,
    oci_manifest,
    parse_manifest,
)
from containers.engine.images.reference import Reference, parse_any_reference, parse_reference
from containers.engine.images.store import Image, ImageLayer, ImageStore, NewImage

_CHUNK = 1 << 20
_JSON_LIMIT = 32 << 20
_LINK_HOPS = 40
_BLOB_NAME = re.compile(r"blobs/sha256/([0-9a-f]{64})")
_OCI_LAYOUT = json.dumps({"imageLayoutVersion": OCI_LAYOUT_VERSION}, separators=(",", ":")).encode()


# Saving


@dataclass
class _Saved:
    """One image to save and the tags to save it under."""

    image: Image
    tags: list[Reference] = field(default_factory=list)


class _Sink(Protocol):
    def add(self, name: str, size: int, data: BinaryIO) -> None: ...


class _TarSink:
    """Write entries into a tar stream; every entry is root-owned, 0644, with mtime 0."""

    def __init__(self, tar: tarfile.TarFile) -> None:
        self._tar = tar
        self._names: set[str] = set()
        for directory in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)

    def add(self, name: str, size: int, data: BinaryIO) -> None:
        if name in self._names:
            return
        self._names.add(name)
        info = tarfile.TarInfo(name)
        info.size, info.mode = size, 0o644
        self._tar.addfile(info, data)


class _DirSink:
    """Write entries as files below a directory (an OCI image layout)."""

    def __init__(self, root: Path) -> None:
        self._root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)

    def add(self, name: str, size: int, data: BinaryIO) -> None:
        path = self._root / name
        if _BLOB_NAME.fullmatch(name) and path.exists():
            return
        with open(path, "wb") as out:
            while chunk := data.read(_CHUNK):
                out.write(chunk)


def _add_bytes(sink: _Sink, name: str, data: bytes) -> None:
    sink.add(name, len(data), io.BytesIO(data))


def _blob_name(digest: str) -> str:
    return "blobs/sha256/" + validate_digest(digest).removeprefix("sha256:")


def _select(store: ImageStore, names: Sequence[str]) -> list[_Saved]:
    """Pick images and tags the way `docker save` does (moby's tarexporter `parseNames`).

    `name:tag` saves that tag; a bare name saves every tag of the repository, or, if it has
    none, the image the name resolves to (an ID prefix), untagged; an ID saves the image untagged.
    """
    selected: dict[str, _Saved] = {}

    def add(image: Image, tag: Reference | None) -> None:
        saved = selected.setdefault(image.id, _Saved(image))
        if tag is not None and tag not in saved.tags:
            saved.tags.append(tag)

    for name in names:
        parsed = parse_any_reference(name)
        bare = parse_reference(name, default_tag=False) if isinstance(parsed, Reference) else None
        if bare is not None and bare.tag is None and bare.digest is None:
            tagged = [
                (image, ref)
                for image in store.list()
                for ref in map(parse_reference, image.repo_tags)
                if ref.name == bare.name
            ]
            for image, ref in tagged:
                add(image, ref)
            if tagged:
                continue
        image = store.get(name)
        add(image, parsed if isinstance(parsed, Reference) and parsed.familiar() in image.repo_tags else None)
    return list(selected.values())


def _export(store: ImageStore, selected: Sequence[_Saved], sink: _Sink, docker: bool) -> None:
    """Write the selected images' blobs and the layout's index (and, for Docker, its legacy files)."""
    entries: list[Descriptor] = []
    docker_manifest: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    for saved in selected:
        image = saved.image
        with store.content.read(image.id) as f:
            config = f.read()
        layers = [_export_layer(store, sink, layer) for layer in image.layers]
        manifest = oci_manifest(config, layers)
        _add_bytes(sink, _blob_name(image.id), config)
        desc = Descriptor(MEDIA_TYPE_OCI_MANIFEST, digest_of(manifest), len(manifest))
        _add_bytes(sink, _blob_name(desc.digest), manifest)
        for tag in saved.tags:
            annotations = {ANNOTATION_IMAGE_NAME: str(tag), ANNOTATION_REF_NAME: tag.tag or ""}
            entries.append(Descriptor(desc.media_type, desc.digest, desc.size, annotations))
            if layers:
                repositories.setdefault(tag.familiar_name, {})[tag.tag or ""] = layers[-1].digest[len("sha256:") :]
        if not saved.tags:
            entries.append(desc)
        docker_manifest.append({
            "Config": _blob_name(image.id),
            "RepoTags": [t.familiar() for t in saved.tags] or None,
            "Layers": [_blob_name(d.digest) for d in layers],
        })
    _add_bytes(sink, "index.json", Index(tuple(entries)).to_json())
    if docker:
        _add_bytes(sink, "manifest.json", _compact(docker_manifest))
    _add_bytes(sink, "oci-layout", _OCI_LAYOUT)
    if docker and repositories:
        _add_bytes(sink, "repositories", _compact(repositories))


def _export_layer(store: ImageStore, sink: _Sink, layer: ImageLayer) -> Descriptor:
    """Write one layer uncompressed (its digest is then its diff ID) and return its descriptor."""
    if layer.digest == layer.diff_id:
        with store.content.read(layer.digest) as blob:
            sink.add(_blob_name(layer.digest), layer.size, blob)
        return Descriptor(MEDIA_TYPE_OCI_LAYER, layer.digest, layer.size)
    sha, size = hashlib.sha256(), 0
    with tempfile.TemporaryFile() as spool, store.open_layer(layer) as tar:
        while chunk := tar.read(_CHUNK):
            sha.update(chunk)
            size += len(chunk)
            spool.write(chunk)
        if "sha256:" + sha.hexdigest() != layer.diff_id:
            raise DigestMismatch(f"layer {layer.digest}: does not decompress to its diff ID {layer.diff_id}")
        spool.seek(0)
        sink.add(_blob_name(layer.diff_id), size, spool)
    return Descriptor(MEDIA_TYPE_OCI_LAYER, layer.diff_id, size)


def _compact(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def save(store: ImageStore, refs: Sequence[str], out: BinaryIO) -> None:
    """Write the images `refs` name (references or IDs) to `out` as a `docker save` tar stream.

    Every name is resolved before the first byte is written: an unknown one leaves `out` empty.
    """
    selected = _select(store, refs)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _export(store, selected, _TarSink(tar), docker=True)


def save_oci_layout(store: ImageStore, refs: Sequence[str], directory: Path) -> None:
    """Write the images `refs` name to a new OCI image layout directory (refused if one is there)."""
    directory = Path(directory)
    if (directory / "index.json").exists():
        raise AlreadyExists(f"oci layout {directory}: already exists")
    selected = _select(store, refs)
    directory.mkdir(parents=True, exist_ok=True)
    _export(store, selected, _DirSink(directory), docker=False)


# Loading


class _Staging:
    """Blobs committed by one load: deleted again on failure, or when no loaded image uses them."""

    def __init__(self, content: ContentStore) -> None:
        self.content = content
        self._new: set[str] = set()

    def ingest(self, stream: BinaryIO, expected: str | None = None, size: int | None = None) -> tuple[str, int]:
        with self.content.writer(expected or "load") as writer:
            while chunk := stream.read(_CHUNK):
                writer.write(chunk)
            existed = self.content.exists(writer.digest)
            digest = writer.commit(size, expected)
            if not existed:
                self._new.add(digest)
            return digest, writer.offset

    def write_blob(self, data: bytes) -> str:
        digest, _ = self.ingest(io.BytesIO(data))
        return digest

    def discard(self, keep: set[str]) -> None:
        for digest in self._new - keep:
            if self.content.exists(digest):
                self.content.delete(digest)
        self._new.clear()

    @contextmanager
    def rollback_on_error(self) -> Iterator[_Staging]:
        try:
            yield self
        except BaseException:
            self.discard(keep=set())
            raise


class _Source(Protocol):
    """The files of an archive or layout directory, each already committed to the content store."""

    def has(self, name: str) -> bool: ...

    def blob(self, name: str) -> tuple[str, int]:
        """Return the digest and size of the file `name`; raise InvalidArgument if it is missing."""
        ...


def _member_name(name: str) -> str:
    """Normalise a member name (`./a//b` is `a/b`); refuse absolute names, `..` and NUL."""
    if "\x00" in name or name.startswith("/"):
        raise UnsafeArchive(f"archive member {name!r}: absolute or invalid path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise UnsafeArchive(f"archive member {name!r}: path escapes the archive")
    return "/".join(parts)


class _TarSource:
    """Read a tar stream once, committing every regular file; links stay entries in a table."""

    def __init__(self, stream: BinaryIO, staging: _Staging) -> None:
        self._files: dict[str, tuple[str, int]] = {}
        self._links: dict[str, str] = {}
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                self._add(tar, member, staging)

    def _add(self, tar: tarfile.TarFile, member: tarfile.TarInfo, staging: _Staging) -> None:
        name = _member_name(member.name)
        if member.isdir():
            return
        if member.issym():
            if member.linkname.startswith("/"):
                raise UnsafeArchive(f"archive member {name!r}: absolute symlink {member.linkname!r}")
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
            self._links[name] = _member_name(target)
        elif member.islnk():
            self._links[name] = _member_name(member.linkname)
        elif member.isreg():
            match = _BLOB_NAME.fullmatch(name)
            data = tar.extractfile(member)
            if data is None:
                raise UnsafeArchive(f"archive member {name!r}: no data")
            self._files[name] = staging.ingest(data, "sha256:" + match[1] if match else None, member.size)
            self._links.pop(name, None)
        else:
            raise UnsafeArchive(f"archive member {name!r}: unsupported type {member.type!r}")

    def has(self, name: str) -> bool:
        return name in self._files or name in self._links

    def blob(self, name: str) -> tuple[str, int]:
        for _ in range(_LINK_HOPS):
            if name in self._files:
                return self._files[name]
            if name not in self._links:
                raise InvalidArgument(f"invalid archive: {name}: missing")
            name = self._links[name]
        raise UnsafeArchive(f"invalid archive: {name}: too many levels of links")


class _DirSource:
    """An OCI image layout directory; only `index.json` and `blobs/sha256/<hex>` are ever opened."""

    def __init__(self, root: Path, staging: _Staging) -> None:
        self._root = root
        self._staging = staging
        self._files: dict[str, tuple[str, int]] = {}

    def has(self, name: str) -> bool:
        return name == "index.json" and (self._root / name).is_file()

    def blob(self, name: str) -> tuple[str, int]:
        match = _BLOB_NAME.fullmatch(name)
        if match is None and name != "index.json":
            raise UnsafeArchive(f"oci layout {self._root}: refusing to read {name!r}")
        if name not in self._files:
            try:
                with open(self._root / name, "rb") as f:
                    self._files[name] = self._staging.ingest(f, "sha256:" + match[1] if match else None)
            except FileNotFoundError:
                raise InvalidArgument(f"oci layout {self._root}: {name}: missing") from None
        return self._files[name]


def _read(source: _Source, staging: _Staging, name: str) -> bytes:
    digest, size = source.blob(name)
    if size > _JSON_LIMIT:
        raise InvalidArgument(f"invalid archive: {name}: too large ({size} bytes)")
    with staging.content.read(digest) as f:
        return f.read()


def _read_json(source: _Source, staging: _Staging, name: str) -> Any:
    try:
        return json.loads(_read(source, staging, name))
    except ValueError as err:
        raise InvalidArgument(f"invalid archive: {name}: invalid JSON: {err}") from err


def _blob(source: _Source, desc: Descriptor) -> str:
    """Return the digest of the blob a descriptor names, checking that it is there with its size."""
    _, size = source.blob(_blob_name(desc.digest))
    if size != desc.size:
        raise InvalidArgument(f"invalid archive: blob {desc.digest}: size {size}, descriptor says {desc.size}")
    return desc.digest


def _docker_images(source: _Source, staging: _Staging) -> list[NewImage]:
    """Read `manifest.json`: `[{"Config": path, "RepoTags": [...], "Layers": [path, ...]}]`."""
    entries = _read_json(source, staging, "manifest.json")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InvalidArgument("invalid archive: manifest.json: expected a list of objects")
    images = []
    for entry in entries:
        config_path, layer_paths, tags = entry.get("Config"), entry.get("Layers") or [], entry.get("RepoTags") or []
        if not isinstance(config_path, str) or not all(isinstance(p, str) for p in [*layer_paths, *tags]):
            raise InvalidArgument("invalid archive: manifest.json: malformed entry")
        config = _read(source, staging, _member_name(config_path))
        layers = [_legacy_layer(source, staging, _member_name(p)) for p in layer_paths]
        manifest = oci_manifest(config, layers)
        staging.write_blob(manifest)
        images.append(NewImage(config, layers, [parse_reference(t) for t in tags], manifest))
    return images


def _legacy_layer(source: _Source, staging: _Staging, name: str) -> Descriptor:
    """Describe a layer file by its content: gzip is kept, bzip2/xz are stored uncompressed."""
    digest, size = source.blob(name)
    with staging.content.read(digest) as f:
        head = f.read(6)
    if head.startswith(b"\x1f\x8b"):
        return Descriptor(MEDIA_TYPE_OCI_LAYER_GZIP, digest, size)
    if head.startswith((b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")):
        with staging.content.read(digest) as f:
            digest, size = staging.ingest(decompress(f))
    return Descriptor(MEDIA_TYPE_OCI_LAYER, digest, size)


def _names(desc: Descriptor) -> list[Reference]:
    """Name an index entry: `io.containerd.image.name`, else the OCI ref name read as a reference."""
    name = desc.annotations.get(ANNOTATION_IMAGE_NAME) or desc.annotations.get(ANNOTATION_REF_NAME)
    return [parse_reference(name)] if name else []


def _oci_images(source: _Source, staging: _Staging) -> list[NewImage]:
    """Read `index.json`; a nested index (multi-platform) contributes this host's manifest."""
    index = parse_manifest(_read(source, staging, "index.json"))
    if not isinstance(index, Index):
        raise InvalidArgument("invalid archive: index.json: not an image index")
    images = []
    for entry in index.manifests:
        desc = entry
        if desc.media_type in INDEX_MEDIA_TYPES:
            nested = parse_manifest(_read(source, staging, _blob_name(_blob(source, desc))))
            if not isinstance(nested, Index):
                raise InvalidArgument(f"invalid archive: {desc.digest}: not an image index")
            desc = nested.select(host_platform())
        if desc.media_type not in MANIFEST_MEDIA_TYPES:
            raise InvalidArgument(f"invalid archive: {desc.digest}: unsupported media type {desc.media_type!r}")
        manifest_bytes = _read(source, staging, _blob_name(_blob(source, desc)))
        manifest = parse_manifest(manifest_bytes)
        if not isinstance(manifest, Manifest):
            raise InvalidArgument(f"invalid archive: {desc.digest}: not an image manifest")
        config = _read(source, staging, _blob_name(_blob(source, manifest.config)))
        for layer in manifest.layers:
            _blob(source, layer)
        images.append(NewImage(config, manifest.layers, _names(entry), manifest_bytes))
    return images


def _load(
    store: ImageStore, make_source: Callable[[_Staging], _Source], check_tags: Callable[[list[str]], None] | None
) -> list[Image]:
    staging = _Staging(store.content)
    with staging.rollback_on_error():
        source: _Source = make_source(staging)
        if source.has("manifest.json"):
            new = _docker_images(source, staging)
        elif source.has("index.json"):
            new = _oci_images(source, staging)
        else:
            raise InvalidArgument("invalid archive: neither manifest.json nor index.json found")
        if check_tags is not None:
            check_tags(_tags(new))
        images = store.create_all(new)
        staging.discard(keep={d for item in new for d in _blobs_of(item)})
    return list({image.id: image for image in images}.values())


def _tags(new: Sequence[NewImage]) -> list[str]:
    """Return the tags (not the digest references) that loading `new` would make, as Docker prints them."""
    refs = [ref if isinstance(ref, Reference) else parse_reference(ref) for item in new for ref in item.refs]
    return [ref.familiar() for ref in refs if not ref.digest]


def _blobs_of(item: NewImage) -> Iterator[str]:
    yield digest_of(item.config)
    if item.manifest is not None:
        yield digest_of(item.manifest)
    yield from (layer.digest for layer in item.layers)


_CORRUPT = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)


def load(store: ImageStore, stream: BinaryIO, check_tags: Callable[[list[str]], None] | None = None) -> list[Image]:
    """Load a `docker save` archive or OCI layout tar (plain, gzip, bzip2 or xz); return its images.

    `check_tags` is given the tags the archive would make, once it is read and before any is made:
    what it raises fails the load, and nothing is left behind.
    """
    try:
        return _load(store, lambda staging: _TarSource(decompress(stream), staging), check_tags)
    except _CORRUPT as err:
        raise InvalidArgument(f"invalid archive: {err}") from err
    except OSError as err:
        if err.errno is not None:
            raise
        raise InvalidArgument(f"invalid archive: {err}") from err


def load_oci_layout(store: ImageStore, directory: Path) -> list[Image]:
    """Load every image of an OCI image layout directory; return them."""
    directory = Path(directory)
    if not (directory / "index.json").is_file():
        raise InvalidArgument(f"oci layout {directory}: no index.json")
    return _load(store, lambda staging: _DirSource(directory, staging), None)
