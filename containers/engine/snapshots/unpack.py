"""Unpack an image's layers into committed snapshots named by chain ID, each layer once.

A layer's chain ID names the layer *together with everything below it* (the OCI image spec,
"Layer ChainID"), so two images that start with the same layers share those snapshots, and a layer
already unpacked is skipped.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO, cast

from containers.engine.errors import AlreadyExists, DigestMismatch, SnapshotNotFound
from containers.engine.snapshots.apply import apply_layer
from containers.engine.snapshots.base import Kind, Snapshotter


@dataclass(frozen=True)
class Layer:
    """One layer to unpack: the digest of its uncompressed tar, and how to open that tar."""

    diff_id: str
    open: Callable[[], AbstractContextManager[BinaryIO]]


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """Return the chain ID of each layer: chain(L0) = diff(L0), chain(Ln) = sha256(chain(Ln-1) + " " + diff(Ln))."""
    chain: list[str] = []
    for diff_id in diff_ids:
        if chain:
            diff_id = "sha256:" + hashlib.sha256(f"{chain[-1]} {diff_id}".encode()).hexdigest()
        chain.append(diff_id)
    return chain


def unpack(snapshotter: Snapshotter, layers: Sequence[Layer]) -> str | None:
    """Commit each layer as the snapshot named by its chain ID; return the top chain ID (None if no layers).

    Layers already committed are skipped. On failure (including DigestMismatch, when a layer's
    content does not hash to its diff ID) nothing half-made is left behind.
    """
    parent: str | None = None
    for layer, chain_id in zip(layers, chain_ids([layer.diff_id for layer in layers]), strict=True):
        if not _is_committed(snapshotter, chain_id):
            _unpack_layer(snapshotter, layer, chain_id, parent)
        parent = chain_id
    return parent


def _is_committed(snapshotter: Snapshotter, name: str) -> bool:
    try:
        return snapshotter.stat(name).kind is Kind.COMMITTED
    except SnapshotNotFound:
        return False


def _unpack_layer(snapshotter: Snapshotter, layer: Layer, chain_id: str, parent: str | None) -> None:
    """Apply one layer on top of `parent` under a temporary key, and commit it as `chain_id`."""
    key = f"extract-{secrets.token_hex(6)}-{chain_id}"
    snapshotter.prepare(key, parent)
    whiteouts = snapshotter.overlay_whiteouts
    try:
        with layer.open() as stream:
            reader = _HashingReader(stream)
            # tarfile's stream mode only ever calls read().
            apply_layer(snapshotter.upper_dir(key), cast(BinaryIO, reader), overlay_whiteouts=whiteouts)
            digest = reader.drain()
        if digest != layer.diff_id:
            raise DigestMismatch(f"layer {layer.diff_id}: uncompressed content has digest {digest}")
        snapshotter.commit(chain_id, key)
    except AlreadyExists:
        # Another process unpacked the same layer meanwhile; theirs is as good as ours.
        snapshotter.remove(key)
        if not _is_committed(snapshotter, chain_id):
            raise
    except BaseException:
        snapshotter.remove(key)
        raise


class _HashingReader:
    """A read-only stream that hashes what passes through it."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        """Read from the stream, hashing the bytes read."""
        data = self._stream.read(size)
        self._hash.update(data)
        return data

    def drain(self) -> str:
        """Read the rest of the stream (tar stops at its end marker, padding may follow); return the digest."""
        while self.read(1 << 20):
            pass
        return "sha256:" + self._hash.hexdigest()
