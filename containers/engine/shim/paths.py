"""Unix socket addresses for files deep in the state root."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def short_path(path: Path) -> Iterator[str]:
    """Yield a name for `path` that fits in a unix socket address.

    sun_path holds 108 bytes (unix(7)), less than a deep state root plus a 64-digit container
    ID; /proc/self/fd/N/<name> reaches the same file through an open handle on its directory.
    """
    if len(os.fsencode(path)) < 100:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)
