"""Settings for a test session: everything under one state root of its own in /tmp.

pytest-django imports this before any conftest runs, so this is where the session's root is made.
Subprocesses (a node agent, a server) inherit `WEBENGINE_TEST_ROOT` and so share the same root.
"""

import os
import tempfile

if "WEBENGINE_TEST_ROOT" not in os.environ:
    os.environ["WEBENGINE_TEST_ROOT"] = tempfile.mkdtemp(prefix="webengine-test-", dir="/tmp")
os.environ["WEBENGINE_ROOT"] = os.path.join(os.environ["WEBENGINE_TEST_ROOT"], "state")
os.environ.setdefault("REDIS_URL", f"unix://{os.environ['WEBENGINE_TEST_ROOT']}/redis.sock")
os.environ.setdefault("NODE_NAME", "test")
os.environ.setdefault(
    "WEBENGINE_CGROUP_PARENT", os.path.basename(os.environ["WEBENGINE_TEST_ROOT"])
)

from webengine.settings import *  # noqa: E402, F403
