from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import redis_server


@pytest.fixture(scope="session")
def redis() -> Iterator[subprocess.Popen]:
    """The session's private redis-server, at the REDIS_URL that tests/settings.py chose."""
    url = os.environ["REDIS_URL"]
    assert url.startswith("unix://"), "tests run their own redis on a unix socket"
    with redis_server(Path(url.removeprefix("unix://"))) as process:
        yield process
