"""Helpers for image tests: a real store on a fresh state root, and small images made from layers.

    store = new_store(state_root)
    image = make_image(store, [layer(create_file("/hello", b"hi\\n"))], tags=["hello:1"])
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

from containers.engine.config import EngineConfig
from containers.engine.content.local import LocalStore
from containers.engine.images.config import ContainerConfig, ImageConfig
from containers.engine.images.manifest import MEDIA_TYPE_OCI_LAYER, MEDIA_TYPE_OCI_LAYER_GZIP, Descriptor
from containers.engine.images.store import Image, ImageStore
from containers.engine.snapshots import new_snapshotter
from tests.engine.suites.fstest import create_file, digest, layer


def new_store(root: Path, snapshotter: str = "native") -> ImageStore:
    """Return an image store with a real content store and snapshotter under `root`."""
    config = EngineConfig(root=root, snapshotter=snapshotter)
    return ImageStore(config, LocalStore(config.content_root), new_snapshotter(snapshotter, config.snapshots_root))


def config_bytes(diff_ids: Sequence[str], created: str = "2024-01-02T03:04:05Z", **container: object) -> bytes:
    """Return a config blob for layers with these diff IDs."""
    cfg = ImageConfig(
        architecture="amd64",
        os="linux",
        created=created,
        config=ContainerConfig(env=("PATH=/bin",), cmd=("sh",), **container),  # type: ignore[arg-type]
        diff_ids=tuple(diff_ids),
    )
    return cfg.to_json()


def make_image(
    store: ImageStore,
    layers: Sequence[bytes],
    tags: Sequence[str] = (),
    created: str = "2024-01-02T03:04:05Z",
    compress: bool = False,
    **container: object,
) -> Image:
    """Commit uncompressed layer tars (gzip'd first with `compress`) and create an image from them."""
    descriptors = []
    for data in layers:
        blob = gzip.compress(data, mtime=0) if compress else data
        media_type = MEDIA_TYPE_OCI_LAYER_GZIP if compress else MEDIA_TYPE_OCI_LAYER
        descriptors.append(Descriptor(media_type, store.content.write_blob(blob), len(blob)))
    return store.create(config_bytes([digest(d) for d in layers], created, **container), descriptors, tags)


def file_layer(name: str, data: bytes | None = None) -> bytes:
    """Return a layer holding one file `/name`."""
    return layer(create_file(f"/{name}", data if data is not None else name.encode()))


def blobs(store: ImageStore) -> set[str]:
    """Return the digests of every committed blob."""
    return {info.digest for info in store.content.walk()}
