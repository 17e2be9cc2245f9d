"""The content store: blobs addressed by their sha256 digest, written atomically.

A blob moves through two stages, as in containerd's content store:

1. **Ingest.** `writer(ref)` opens a private ingest area. Bytes written there are invisible to
   every reader; `Writer.digest` hashes them as they arrive.
2. **Commit.** `Writer.commit(size, expected)` flushes the data to disk, checks the size and the
   digest, and only then moves the blob into place under its digest. From that moment `info`,
   `read`, `path` and `walk` see it, and it never changes again.

A writer that is closed without commit, or a process that dies halfway, leaves only an ingest
behind, never a blob under a digest it does not hash to; `clean_ingests` removes stale ingests.

Glossary:

- **digest**: `sha256:` followed by 64 lowercase hex characters, the only form accepted. Digests
  come from archives and registries, so they are validated before they name any path.
- **ref**: the caller's name for an ingest, such as `layer-sha256:ab12…` or `load-<pid>`; it
  appears in diagnostics only.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from containers.engine.errors import InvalidArgument

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def validate_digest(digest: str) -> str:
    """Return `digest` unchanged if it is `sha256:<64 lowercase hex>`, else raise InvalidArgument."""
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise InvalidArgument(f"digest {digest!r}: invalid, want sha256:<64 lowercase hex characters>")
    return digest


def digest_of(data: bytes) -> str:
    """Return the sha256 digest of `data` in `sha256:<hex>` form."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Info:
    """What the store knows about one committed blob. `created` is the commit time in unix seconds."""

    digest: str
    size: int
    created: float


class Writer(Protocol):
    """An open ingest. Use it as a context manager so that an exception aborts it.

    `write` appends bytes; `digest` and `offset` describe what was written so far. `commit`
    makes the blob visible and returns its digest; `close` without commit discards the ingest.
    A writer is used by one thread at a time.
    """

    ref: str

    @property
    def digest(self) -> str:
        """Return the digest of the bytes written so far."""

    @property
    def offset(self) -> int:
        """Return the number of bytes written so far."""

    def write(self, data: bytes) -> int:
        """Append `data` to the ingest and return its length."""

    def commit(self, size: int | None = None, expected: str | None = None) -> str:
        """Make the written bytes a blob and return its digest.

        The data is fsync'd before it is moved into place. When `size` or `expected` is given
        and the data does not match, nothing is committed: the ingest is removed and
        InvalidArgument (size) or DigestMismatch (digest) is raised. Committing bytes that are
        already in the store is not an error; the existing blob stays and its digest is returned.
        """

    def close(self) -> None:
        """Abort the ingest unless it was committed; safe to call more than once."""

    def __enter__(self) -> Writer: ...

    def __exit__(self, *exc: object) -> None: ...


class ContentStore(Protocol):
    """Blobs by digest. Only committed blobs are visible; committed blobs never change."""

    def writer(self, ref: str) -> Writer:
        """Open a new ingest named `ref` (for diagnostics; several writers may share a ref)."""

    def info(self, digest: str) -> Info:
        """Return the blob's size and commit time, or raise ContentNotFound."""

    def read(self, digest: str) -> BinaryIO:
        """Open the blob for reading, or raise ContentNotFound. The caller closes it."""

    def path(self, digest: str) -> Path:
        """Return the path of the committed blob, or raise ContentNotFound. Never write to it."""

    def exists(self, digest: str) -> bool:
        """Return whether a blob with this digest is committed."""

    def walk(self) -> Iterator[Info]:
        """Yield every committed blob, in no particular order."""

    def delete(self, digest: str) -> None:
        """Remove the blob, or raise ContentNotFound."""

    def write_blob(self, data: bytes, expected: str | None = None) -> str:
        """Write and commit `data` in one call; return its digest."""

    def ingest(self, stream: BinaryIO, expected: str | None = None, size: int | None = None) -> tuple[str, int]:
        """Copy `stream` to its end into a new blob; return its digest and size."""

    def clean_ingests(self, older_than_s: float) -> int:
        """Remove ingests untouched for `older_than_s` seconds; return how many were removed."""
