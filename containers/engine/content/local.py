"""A content store in a local directory, laid out as an OCI image layout's blob tree.

```
<root>/blobs/sha256/<hex>     committed blobs, read-only (0444)
<root>/ingest/<random>/data   bytes being written; <random>/ref names the writer
```

An ingest becomes a blob by one `rename(2)` inside the same filesystem, after an fsync of the
data; the directory is fsync'd after the rename so that the blob survives a crash.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from containers.engine.content.store import Info, validate_digest
from containers.engine.errors import ContentNotFound, DigestMismatch, InvalidArgument

_CHUNK = 1 << 20


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalWriter:
    """An ingest under `<root>/ingest/`; see `containers.engine.content.store.Writer`."""

    def __init__(self, store: LocalStore, ref: str) -> None:
        self.ref = ref
        self._store = store
        self._dir = Path(tempfile.mkdtemp(prefix="ingest-", dir=store.root / "ingest"))
        (self._dir / "ref").write_text(ref)
        self._file: BinaryIO | None = open(self._dir / "data", "wb")
        self._hash = hashlib.sha256()
        self._offset = 0

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    @property
    def offset(self) -> int:
        return self._offset

    def write(self, data: bytes) -> int:
        if self._file is None:
            raise InvalidArgument(f"ingest {self.ref}: writer is closed")
        self._file.write(data)
        self._hash.update(data)
        self._offset += len(data)
        return len(data)

    def commit(self, size: int | None = None, expected: str | None = None) -> str:
        if self._file is None:
            raise InvalidArgument(f"ingest {self.ref}: writer is closed")
        if expected is not None:
            validate_digest(expected)
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            digest = self.digest
            if size is not None and size != self._offset:
                raise InvalidArgument(f"ingest {self.ref}: unexpected size {self._offset}, expected {size}")
            if expected is not None and expected != digest:
                raise DigestMismatch(f"ingest {self.ref}: unexpected digest {digest}, expected {expected}")
            self._store._place(self._dir / "data", digest)
            return digest
        finally:
            self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> LocalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalStore:
    """Blobs under `root`, an OCI-layout-style directory; see `ContentStore` for the contract."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._blobs = self.root / "blobs" / "sha256"
        self._blobs.mkdir(parents=True, exist_ok=True)
        (self.root / "ingest").mkdir(exist_ok=True)

    def writer(self, ref: str) -> LocalWriter:
        return LocalWriter(self, ref)

    def info(self, digest: str) -> Info:
        try:
            st = os.stat(self._blob_path(digest))
        except FileNotFoundError:
            raise ContentNotFound(f"content {digest}: not found") from None
        return Info(digest=digest, size=st.st_size, created=st.st_mtime)

    def read(self, digest: str) -> BinaryIO:
        try:
            return open(self._blob_path(digest), "rb")
        except FileNotFoundError:
            raise ContentNotFound(f"content {digest}: not found") from None

    def path(self, digest: str) -> Path:
        path = self._blob_path(digest)
        if not path.is_file():
            raise ContentNotFound(f"content {digest}: not found")
        return path

    def exists(self, digest: str) -> bool:
        """Return whether a blob with this digest is committed."""
        return self._blob_path(digest).is_file()

    def walk(self) -> Iterator[Info]:
        for entry in os.scandir(self._blobs):
            digest = "sha256:" + entry.name
            try:
                validate_digest(digest)
                st = entry.stat()
            except (InvalidArgument, FileNotFoundError):
                continue
            yield Info(digest=digest, size=st.st_size, created=st.st_mtime)

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self._blob_path(digest))
        except FileNotFoundError:
            raise ContentNotFound(f"content {digest}: not found") from None

    def write_blob(self, data: bytes, expected: str | None = None) -> str:
        with self.writer("blob") as w:
            w.write(data)
            return w.commit(len(data), expected)

    def ingest(self, stream: BinaryIO, expected: str | None = None, size: int | None = None) -> tuple[str, int]:
        with self.writer(expected or "stream") as w:
            while chunk := stream.read(_CHUNK):
                w.write(chunk)
            return w.commit(size, expected), w.offset

    def clean_ingests(self, older_than_s: float) -> int:
        deadline = time.time() - older_than_s
        removed = 0
        for entry in os.scandir(self.root / "ingest"):
            if self._last_touched(Path(entry.path)) < deadline:
                shutil.rmtree(entry.path, ignore_errors=True)
                removed += 1
        return removed

    def _blob_path(self, digest: str) -> Path:
        return self._blobs / validate_digest(digest).removeprefix("sha256:")

    def _place(self, data: Path, digest: str) -> None:
        target = self._blob_path(digest)
        if target.exists():
            return
        os.chmod(data, 0o444)
        os.rename(data, target)
        _fsync_dir(self._blobs)

    @staticmethod
    def _last_touched(ingest: Path) -> float:
        """Return the latest mtime of the ingest directory and its files (inf if it just vanished)."""
        times = []
        for path in (ingest, ingest / "data", ingest / "ref"):
            try:
                times.append(path.stat().st_mtime)
            except FileNotFoundError:
                continue
        return max(times, default=float("inf"))
