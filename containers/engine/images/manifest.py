"""Manifests and indexes (OCI image spec, Docker schema 2), descriptors, platforms and layer streams.

Both formats share one model: a `Manifest` names a config blob and an ordered list of layer
blobs; an `Index` (a Docker "manifest list") names one manifest per platform. Manifests we
write are OCI, compact, with keys in the Go structs' order. Schema 1 manifests are refused.

Layers are tar streams, uncompressed or compressed with gzip. zstd needs a library this project
does not depend on, so zstd layers are refused with a clear error rather than half supported.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import platform as host
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from containers.engine.content.store import digest_of, validate_digest
from containers.engine.errors import InvalidArgument

OCI_LAYOUT_VERSION = "1.0.0"

MEDIA_TYPE_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPE_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MEDIA_TYPE_OCI_FOREIGN_LAYER = "application/vnd.oci.image.layer.nondistributable.v1.tar"
MEDIA_TYPE_OCI_FOREIGN_LAYER_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
MEDIA_TYPE_OCI_FOREIGN_LAYER_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

MEDIA_TYPE_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_TYPE_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_TYPE_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MEDIA_TYPE_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFEST_MEDIA_TYPES = frozenset({MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST})
INDEX_MEDIA_TYPES = frozenset({MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_MANIFEST_LIST})
CONFIG_MEDIA_TYPES = frozenset({MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_DOCKER_CONFIG})

_LAYER_COMPRESSION = {
    MEDIA_TYPE_OCI_LAYER: "none",
    MEDIA_TYPE_OCI_FOREIGN_LAYER: "none",
    MEDIA_TYPE_DOCKER_LAYER: "none",
    MEDIA_TYPE_OCI_LAYER_GZIP: "gzip",
    MEDIA_TYPE_OCI_FOREIGN_LAYER_GZIP: "gzip",
    MEDIA_TYPE_DOCKER_LAYER_GZIP: "gzip",
    MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP: "gzip",
    MEDIA_TYPE_OCI_LAYER_ZSTD: "zstd",
    MEDIA_TYPE_OCI_FOREIGN_LAYER_ZSTD: "zstd",
}

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"

Json = dict[str, Any]


def layer_compression(media_type: str) -> str:
    """Return "none" or "gzip" for a supported layer media type; raise InvalidArgument otherwise."""
    compression = _LAYER_COMPRESSION.get(media_type)
    if compression is None:
        raise InvalidArgument(f"layer media type {media_type!r}: not supported")
    if compression == "zstd":
        raise InvalidArgument("zstd layers are not supported")
    return compression


@dataclass(frozen=True)
class Platform:
    """An OCI platform: `linux/amd64`, `linux/arm/v7`."""

    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse `os/arch[/variant]` as given to `--platform`."""
        parts = text.lower().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidArgument(f"platform {text!r}: invalid, want os/arch[/variant]")
        return cls(*parts)

    @classmethod
    def from_dict(cls, doc: Json) -> Platform:
        """Read a descriptor's `platform` object."""
        return cls(os=str(doc.get("os", "")), architecture=str(doc.get("architecture", "")),
                   variant=str(doc.get("variant", "")))

    def to_dict(self) -> Json:
        doc: Json = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            doc["variant"] = self.variant
        return doc

    def matches(self, other: Platform) -> bool:
        """Return whether `other` can run here: same os and architecture, variant if both name one."""
        same_variant = not (self.variant and other.variant) or self.variant == other.variant
        return self.os == other.os and self.architecture == other.architecture and same_variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


_GO_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "i386": "386",
            "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64", "armv7l": "arm",
            "armv6l": "arm"}


def host_platform() -> Platform:
    """Return this machine's platform in Go's naming (`linux/amd64`, `linux/arm64`, `linux/arm/v7`)."""
    machine = host.machine().lower()
    arch = _GO_ARCH.get(machine, machine)
    variant = {"armv7l": "v7", "armv6l": "v6", "aarch64": "v8", "arm64": "v8"}.get(machine, "")
    return Platform(os="linux", architecture=arch, variant=variant)


@dataclass(frozen=True)
class Descriptor:
    """A pointer to a blob: media type, digest and size, plus optional annotations and platform."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None

    @classmethod
    def from_dict(cls, doc: Any) -> Descriptor:
        """Parse and validate one descriptor object."""
        if not isinstance(doc, dict):
            raise InvalidArgument(f"descriptor: expected an object, got {doc!r}")
        size = doc.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidArgument(f"descriptor {doc.get('digest')}: invalid size {size!r}")
        annotations = doc.get("annotations") or {}
        if not isinstance(annotations, dict):
            raise InvalidArgument(f"descriptor {doc.get('digest')}: invalid annotations")
        platform = doc.get("platform")
        return cls(
            media_type=str(doc.get("mediaType", "")),
            digest=validate_digest(doc.get("digest", "")),
            size=size,
            annotations=annotations,
            platform=Platform.from_dict(platform) if isinstance(platform, dict) else None,
        )

    def to_dict(self) -> Json:
        doc: Json = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        if self.platform is not None:
            doc["platform"] = self.platform.to_dict()
        return doc


@dataclass(frozen=True)
class Manifest:
    """An image manifest (OCI or Docker schema 2)."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    media_type: str = MEDIA_TYPE_OCI_MANIFEST
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> bytes:
        doc: Json = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "config": self.config.to_dict(),
            "layers": [layer.to_dict() for layer in self.layers],
        }
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        return _dump(doc)


@dataclass(frozen=True)
class Index:
    """An image index (OCI) or manifest list (Docker): one manifest per platform."""

    manifests: tuple[Descriptor, ...]
    media_type: str = MEDIA_TYPE_OCI_INDEX
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> bytes:
        doc: Json = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "manifests": [m.to_dict() for m in self.manifests],
        }
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        return _dump(doc)

    def select(self, wanted: Platform) -> Descriptor:
        """Return the first image manifest for `wanted`; raise InvalidArgument if there is none."""
        for desc in self.manifests:
            if desc.media_type in MANIFEST_MEDIA_TYPES and desc.platform is not None and wanted.matches(desc.platform):
                return desc
        raise InvalidArgument(f"image index: no manifest for platform {wanted}")


_OCI_LAYER_TYPE = {
    MEDIA_TYPE_DOCKER_LAYER: MEDIA_TYPE_OCI_LAYER,
    MEDIA_TYPE_DOCKER_LAYER_GZIP: MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP: MEDIA_TYPE_OCI_FOREIGN_LAYER_GZIP,
}


def oci_manifest(config: bytes, layers: Sequence[Descriptor]) -> bytes:
    """Return the OCI manifest this engine writes for a config blob and its layers.

    The same inputs always give the same bytes, hence the same manifest digest; Docker layer
    media types are translated to their OCI equivalents.
    """
    config_desc = Descriptor(MEDIA_TYPE_OCI_CONFIG, digest_of(config), len(config))
    oci_layers = tuple(
        Descriptor(_OCI_LAYER_TYPE.get(d.media_type, d.media_type), d.digest, d.size, d.annotations) for d in layers
    )
    return Manifest(config_desc, oci_layers).to_json()


def _dump(doc: Json) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def parse_manifest(data: bytes) -> Manifest | Index:
    """Parse a manifest or index blob, telling them apart by `mediaType` or, without it, by shape."""
    try:
        doc = json.loads(data)
    except ValueError as err:
        raise InvalidArgument(f"manifest: invalid JSON: {err}") from err
    if not isinstance(doc, dict):
        raise InvalidArgument("manifest: not a JSON object")
    if doc.get("schemaVersion") == 1:
        raise InvalidArgument("manifest: schema 1 manifests are not supported")
    if doc.get("schemaVersion") != 2:
        raise InvalidArgument(f"manifest: unsupported schemaVersion {doc.get('schemaVersion')!r}")
    media_type = doc.get("mediaType") or (MEDIA_TYPE_OCI_INDEX if "manifests" in doc else MEDIA_TYPE_OCI_MANIFEST)
    annotations = doc.get("annotations") or {}
    if media_type in INDEX_MEDIA_TYPES:
        manifests = doc.get("manifests")
        if not isinstance(manifests, list):
            raise InvalidArgument("image index: manifests must be a list")
        return Index(tuple(Descriptor.from_dict(m) for m in manifests), media_type, annotations)
    if media_type not in MANIFEST_MEDIA_TYPES:
        raise InvalidArgument(f"manifest: unsupported media type {media_type!r}")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise InvalidArgument("manifest: layers must be a list")
    return Manifest(Descriptor.from_dict(doc.get("config")), tuple(Descriptor.from_dict(d) for d in layers),
                    media_type, annotations)


_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)


def decompress(stream: BinaryIO) -> BinaryIO:
    """Return a reader of `stream` decompressed, recognising gzip, bzip2 and xz by their magic bytes.

    Anything else is passed through as an uncompressed tar; zstd is refused. This is how
    Docker reads layers, `docker load` and `docker import` input, whatever the media type says.
    """
    reader = stream if isinstance(stream, io.BufferedReader) else io.BufferedReader(_RawReader(stream))
    head = reader.peek(6)[:6]
    kind = next((name for magic, name in _MAGIC if head.startswith(magic)), "none")
    if kind == "gzip":
        return gzip.GzipFile(fileobj=reader, mode="rb")  # type: ignore[return-value]
    if kind == "bzip2":
        return bz2.BZ2File(reader)  # type: ignore[return-value]
    if kind == "xz":
        return lzma.LZMAFile(reader)  # type: ignore[return-value]
    if kind == "zstd":
        raise InvalidArgument("zstd compression is not supported")
    return reader


class _RawReader(io.RawIOBase):
    """Adapt any object with `read(n)` to RawIOBase, so that it can be buffered and peeked."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
