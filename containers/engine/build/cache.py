"""The build cache: which image a build step made from which parent, shared by every build of a node.

A step is reused when its key is in the index and the image it names still exists. The key is
the sha256 of what moby's legacy builder compares to find a cached child image: the parent
image's ID, the platform, and the container config the step commits with. That config carries
the instruction after expansion in its `Cmd` (`#(nop)  ENV A=1`; for RUN the command, prefixed
with the build args it uses as `|1 A=1 /bin/sh -c make`; for COPY and ADD the sources' content
hash, `COPY file:<sha256> in /app/`), so any change to them, to the config so far (ENV, USER,
WORKDIR, SHELL...) or to the parent makes a new key, and every step after it misses too.

The index is one JSON document, `<root>/build-cache/index.json`: `{"steps": {key: image ID}}`.
Writers take an exclusive `flock(2)` on `<root>/build-cache/lock` and replace the document
atomically (a temporary file renamed over it); readers need no lock, and parse the document again
only when it was replaced. A crash can at worst lose the newest entries, which only costs a
rebuild, so the document is not fsync'ed, and an index that does not parse reads as empty. An
entry may name an image that was removed since: the caller looks the image up.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from pathlib import Path

from containers.engine.images.config import ContainerConfig, ImageConfig


def step_key(parent: str, config: ContainerConfig, platform: str) -> str:
    """Return the cache key of a step that commits `config` on top of the image `parent` ("" for scratch)."""
    digest = hashlib.sha256()
    for part in (parent, platform, ImageConfig(config=config).to_json().decode()):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


class BuildCache:
    """The index of cached build steps under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._index = root / "index.json"
        self._lock = root / "lock"
        self._parsed: tuple[tuple[int, int, int], dict[str, str]] | None = None

    def get(self, key: str) -> str | None:
        """Return the ID of the image a step with this key made (which may have been removed since)."""
        return self._read().get(key)

    def put(self, key: str, image: str) -> None:
        """Record that the step with this key made `image`."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self._lock, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            steps = dict(self._read())
            steps[key] = image
            fd, tmp = tempfile.mkstemp(prefix=".index-", dir=self.root)
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump({"steps": steps}, f, sort_keys=True)
                os.rename(tmp, self._index)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def _read(self) -> dict[str, str]:
        """Return the index, parsed again only when the document was replaced (not to be changed by the caller)."""
        try:
            st = os.stat(self._index)
        except FileNotFoundError:
            return {}
        # Each write renames a new file over the index, so a new inode or mtime says it changed; should a
        # reused inode meet a coarse mtime and the same size, entries look missing until the next write,
        # which costs only a rebuild.
        signature = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._parsed is None or self._parsed[0] != signature:
            try:
                doc = json.loads(self._index.read_bytes())
            except (FileNotFoundError, ValueError):
                return {}
            steps = doc.get("steps") if isinstance(doc, dict) else None
            valid = {k: v for k, v in steps.items() if isinstance(v, str)} if isinstance(steps, dict) else {}
            self._parsed = (signature, valid)
        return self._parsed[1]
