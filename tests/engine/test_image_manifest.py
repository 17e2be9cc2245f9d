"""Manifests, indexes and layer streams in the OCI and Docker schema 2 formats."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma

import pytest

from containers.engine.content.store import digest_of
from containers.engine.errors import InvalidArgument
from containers.engine.images.manifest import (
    MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_DOCKER_LAYER_GZIP,
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_LAYER,
    MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_OCI_LAYER_ZSTD,
    MEDIA_TYPE_OCI_MANIFEST,
    Descriptor,
    Index,
    Manifest,
    Platform,
    decompress,
    host_platform,
    layer_compression,
    oci_manifest,
    parse_manifest,
)

A, B, C = ("sha256:" + c * 64 for c in "abc")

DOCKER_MANIFEST = json.dumps({
    "schemaVersion": 2,
    "mediaType": MEDIA_TYPE_DOCKER_MANIFEST,
    "config": {"mediaType": MEDIA_TYPE_DOCKER_CONFIG, "size": 1469, "digest": A},
    "layers": [{"mediaType": MEDIA_TYPE_DOCKER_LAYER_GZIP, "size": 2152262, "digest": B}],
}).encode()

MANIFEST_LIST = json.dumps({
    "schemaVersion": 2,
    "mediaType": MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    "manifests": [
        {"mediaType": MEDIA_TYPE_DOCKER_MANIFEST, "size": 528, "digest": A,
         "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}},
        {"mediaType": MEDIA_TYPE_DOCKER_MANIFEST, "size": 528, "digest": B,
         "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": MEDIA_TYPE_DOCKER_MANIFEST, "size": 528, "digest": C,
         "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
    ],
}).encode()


def test_it_parses_a_docker_schema2_manifest() -> None:
    manifest = parse_manifest(DOCKER_MANIFEST)

    assert manifest == Manifest(
        config=Descriptor(MEDIA_TYPE_DOCKER_CONFIG, A, 1469),
        layers=(Descriptor(MEDIA_TYPE_DOCKER_LAYER_GZIP, B, 2152262),),
        media_type=MEDIA_TYPE_DOCKER_MANIFEST,
    )


def test_it_parses_a_manifest_list_and_picks_a_platform() -> None:
    index = parse_manifest(MANIFEST_LIST)

    assert isinstance(index, Index)
    assert index.media_type == MEDIA_TYPE_DOCKER_MANIFEST_LIST
    assert index.select(Platform("linux", "amd64")).digest == B
    assert index.select(Platform.parse("linux/arm64/v8")).digest == C
    assert index.select(Platform.parse("linux/arm/v7")).digest == A
    with pytest.raises(InvalidArgument, match="no manifest for platform linux/s390x"):
        index.select(Platform("linux", "s390x"))


def test_an_oci_manifest_round_trips_in_gos_key_order() -> None:
    manifest = Manifest(
        Descriptor(MEDIA_TYPE_OCI_CONFIG, A, 10),
        (Descriptor(MEDIA_TYPE_OCI_LAYER, B, 20, {"org.example": "x"}),),
    )

    data = manifest.to_json()

    assert data.startswith(b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{')
    assert b" " not in data
    assert parse_manifest(data) == manifest


def test_an_index_round_trips() -> None:
    index = Index((Descriptor(MEDIA_TYPE_OCI_MANIFEST, A, 5, {"org.opencontainers.image.ref.name": "v1"},
                              Platform("linux", "amd64")),))

    assert parse_manifest(index.to_json()) == index


def test_without_media_type_the_shape_decides() -> None:
    config = {"mediaType": MEDIA_TYPE_OCI_CONFIG, "digest": A, "size": 1}
    manifest = {"schemaVersion": 2, "config": config, "layers": []}
    index = {"schemaVersion": 2, "manifests": []}

    assert isinstance(parse_manifest(json.dumps(manifest).encode()), Manifest)
    assert parse_manifest(json.dumps(index).encode()) == Index((), MEDIA_TYPE_OCI_INDEX)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"schemaVersion": 1, "name": "x", "fsLayers": []}, "schema 1 manifests are not supported"),
        ({"schemaVersion": 3}, "unsupported schemaVersion"),
        ({"schemaVersion": 2, "mediaType": "text/plain"}, "unsupported media type"),
        ({"schemaVersion": 2, "config": {"digest": "sha256:../../x", "size": 1}, "layers": []}, "invalid, want sha256"),
        ({"schemaVersion": 2, "config": {"digest": A, "size": -1}, "layers": []}, "invalid size"),
        ({"schemaVersion": 2, "config": {"digest": A, "size": 1}, "layers": {}}, "layers must be a list"),
        ({"schemaVersion": 2, "mediaType": MEDIA_TYPE_OCI_INDEX, "manifests": None}, "manifests must be a list"),
    ],
)
def test_it_refuses_malformed_manifests(doc: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_manifest(json.dumps(doc).encode())


def test_layer_media_types() -> None:
    assert layer_compression(MEDIA_TYPE_OCI_LAYER) == "none"
    assert layer_compression(MEDIA_TYPE_OCI_LAYER_GZIP) == "gzip"
    assert layer_compression(MEDIA_TYPE_DOCKER_LAYER_GZIP) == "gzip"
    with pytest.raises(InvalidArgument, match="zstd layers are not supported"):
        layer_compression(MEDIA_TYPE_OCI_LAYER_ZSTD)
    with pytest.raises(InvalidArgument, match="not supported"):
        layer_compression("application/vnd.example.artifact")


def test_oci_manifest_is_deterministic_and_uses_oci_types() -> None:
    config = b'{"rootfs":{"type":"layers","diff_ids":[]}}'
    layers = [Descriptor(MEDIA_TYPE_DOCKER_LAYER_GZIP, B, 3)]

    data = oci_manifest(config, layers)

    assert data == oci_manifest(config, layers)
    parsed = parse_manifest(data)
    assert isinstance(parsed, Manifest)
    assert parsed.config == Descriptor(MEDIA_TYPE_OCI_CONFIG, digest_of(config), len(config))
    assert parsed.layers == (Descriptor(MEDIA_TYPE_OCI_LAYER_GZIP, B, 3),)


class _Trickle:
    """A stream that hands out at most `chunk` bytes per read, like a socket."""

    def __init__(self, data: bytes, chunk: int = 7) -> None:
        self._data = io.BytesIO(data)
        self._chunk = chunk

    def read(self, n: int = -1) -> bytes:
        return self._data.read(min(self._chunk, n) if n >= 0 else self._chunk)


PAYLOAD = b"tar bytes " * 1000


@pytest.mark.parametrize(
    "compress",
    [lambda d: d, lambda d: gzip.compress(d, mtime=0), bz2.compress, lzma.compress],
    ids=["plain", "gzip", "bzip2", "xz"],
)
def test_decompress_recognises_the_format_by_its_magic(compress: object) -> None:
    data = compress(PAYLOAD)  # type: ignore[operator]

    assert decompress(io.BufferedReader(io.BytesIO(data))).read() == PAYLOAD  # type: ignore[arg-type]
    assert decompress(_Trickle(data)).read() == PAYLOAD  # type: ignore[arg-type]


def test_decompress_refuses_zstd() -> None:
    with pytest.raises(InvalidArgument, match="zstd compression is not supported"):
        decompress(io.BufferedReader(io.BytesIO(b"\x28\xb5\x2f\xfd\x00\x00rest")))  # type: ignore[arg-type]


def test_platforms() -> None:
    assert str(Platform.parse("linux/arm/v7")) == "linux/arm/v7"
    assert Platform("linux", "arm64").matches(Platform("linux", "arm64", "v8"))
    assert not Platform("linux", "arm", "v7").matches(Platform("linux", "arm", "v6"))
    assert host_platform().os == "linux"
    with pytest.raises(InvalidArgument, match="want os/arch"):
        Platform.parse("amd64")
