"""Session-wide fixtures: a private state root under /tmp, feature checks, and a leak check at the end.

Every test session keeps all its state under one directory of its own (`WEBENGINE_ROOT`), so that
the final check can tell exactly what this session mounted and left behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# tests/settings.py makes the session's root when pytest-django loads it, before this module; without
# Django (-p no:django), it is made here.
if "WEBENGINE_TEST_ROOT" not in os.environ:
    os.environ["WEBENGINE_TEST_ROOT"] = tempfile.mkdtemp(prefix="webengine-test-", dir="/tmp")
SESSION_ROOT = Path(os.environ["WEBENGINE_TEST_ROOT"])
# Containers of this session live in cgroups below this parent, in every hierarchy.
CGROUP_PARENT = os.environ.setdefault("WEBENGINE_CGROUP_PARENT", SESSION_ROOT.name)


def _docker_daemon() -> bool:
    import socket

    path = "/var/run/docker.sock"
    if not os.path.exists(path):
        return False
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(path)
        except OSError:
            return False
    return True


def _overlayfs() -> bool:
    with open("/proc/filesystems") as f:
        return any(line.split()[-1] == "overlay" for line in f if line.strip())


FEATURES = {
    "root": lambda: os.geteuid() == 0,
    "overlayfs": _overlayfs,
    "cgroup2": lambda: os.path.exists("/sys/fs/cgroup/cgroup.controllers"),
    "skopeo": lambda: shutil.which("skopeo") is not None,
    "umoci": lambda: shutil.which("umoci") is not None,
    "runc": lambda: shutil.which("runc") is not None,
    "busybox": lambda: shutil.which("busybox") is not None,
    "redis-server": lambda: shutil.which("redis-server") is not None,
    "docker-cli": lambda: shutil.which("docker") is not None,
    "docker-daemon": _docker_daemon,
    "chromium": lambda: shutil.which("chromium") is not None,
}


def has_feature(name: str) -> bool:
    if name not in FEATURES:
        raise ValueError(f"unknown feature {name!r} in @pytest.mark.requires")
    return FEATURES[name]()


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("requires"):
        missing = [f for f in marker.args if not has_feature(f)]
        if missing:
            pytest.skip(f"needs {', '.join(missing)}")


@pytest.fixture
def state_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a fresh, empty state root for one test, inside this session's root."""
    return Path(tempfile.mkdtemp(prefix="root-", dir=SESSION_ROOT))


def _mounts_under(prefix: Path) -> list[str]:
    with open("/proc/self/mounts") as f:
        points = [line.split()[1].encode().decode("unicode_escape") for line in f]
    return [p for p in points if p == str(prefix) or p.startswith(str(prefix) + "/")]


def _processes_of_session() -> list[str]:
    """Return the processes, other than this one, that inherited this session's WEBENGINE_TEST_ROOT."""
    marker = f"WEBENGINE_TEST_ROOT={SESSION_ROOT}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if marker in f.read().split(b"\0"):
                    with open(f"/proc/{entry}/cmdline", "rb") as c:
                        command = c.read().replace(b"\0", b" ").decode(errors="replace")
                    found.append(f"{entry}: {command[:80]}")
        except OSError:
            continue
    return found


def _cgroups_of_session() -> list[str]:
    """Return this session's cgroup directories still there (the empty parent is removed here)."""
    found = []
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        parent = hierarchy / CGROUP_PARENT
        if not parent.is_dir():
            continue
        found += [str(child) for child in parent.iterdir() if child.is_dir()]
        try:
            parent.rmdir()
        except OSError:
            found.append(str(parent))
    if Path("/sys/fs/cgroup", CGROUP_PARENT).is_dir():
        found.append(str(Path("/sys/fs/cgroup", CGROUP_PARENT)))
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leaks = [f"mount {m}" for m in _mounts_under(SESSION_ROOT)]
    leaks += [f"process {p}" for p in _processes_of_session()]
    leaks += [f"cgroup {c}" for c in _cgroups_of_session()]
    if leaks:
        session.exitstatus = 1
        print(f"\nLEAK: this test session left {len(leaks)} things behind:\n  " + "\n  ".join(leaks[:10]))
        return
    shutil.rmtree(SESSION_ROOT, ignore_errors=True)
