"""Cgroup limits on the real kernel, with real child processes, on cgroup v1 and v2.

Each test gets a cgroup of its own below `webengine-test-<pid>` and removes both at the end. The
v1 tests run where /sys/fs/cgroup holds v1 hierarchies; the v2 tests run on a unified
/sys/fs/cgroup, or on the v2 hierarchy that hybrid machines mount at /sys/fs/cgroup/unified. That
one usually has no controllers, so there the v2 tests of limits skip and freezing, killing and
device filtering (which need none) still run.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from containers.engine.runtime.cgroups import (
    DEFAULT_ROOT,
    Resources,
    cgroup_version,
    favor_dynamic_modifications,
    new_manager,
    remove_parent_if_empty,
)
from tests.engine.runtime.test_cgroups_resources import DOCKER_DEVICES

pytestmark = pytest.mark.requires("root")

PARENT = f"webengine-test-{os.getpid()}"
MiB = 1 << 20


def v2_root() -> Path | None:
    """Return the mount point of this machine's cgroup2 hierarchy, if it has one."""
    for root in (DEFAULT_ROOT, DEFAULT_ROOT / "unified"):
        if cgroup_version(root) == 2:
            return root
    return None


class Sandbox:
    """A real cgroup for one test, and the child processes started in it."""

    def __init__(self, version: int, root: Path, name: str) -> None:
        self.version = version
        self.root = root
        self.manager = new_manager(f"{PARENT}/{name}", root)
        self.children: list[subprocess.Popen[str]] = []

    def need(self, *controllers: str) -> None:
        """Skip the test unless the v2 hierarchy offers `controllers` (v1 mounts them all here)."""
        if self.version == 1:
            return
        available = (self.root / "cgroup.controllers").read_text().split()
        missing = [c for c in controllers if c not in available]
        if missing:
            pytest.skip(f"the cgroup2 hierarchy at {self.root} has no {', '.join(missing)} controller")

    def start(self, code: str) -> subprocess.Popen[str]:
        """Start `python -c code` and move it into the cgroup before `code` runs."""
        child = subprocess.Popen(
            [sys.executable, "-c", f"import sys\nsys.stdin.readline()\n{code}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.children.append(child)
        self.manager.add(child.pid)
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
        return child

    def close(self) -> None:
        """Kill and reap the children, remove the cgroup and its parent, and check nothing is left."""
        try:
            if self.manager.exists():
                self.manager.kill_all()
            for child in self.children:
                child.kill()
                child.wait(timeout=5)
                for stream in (child.stdin, child.stdout):
                    if stream is not None:
                        stream.close()
        finally:
            self.manager.destroy()
            remove_parent_if_empty(PARENT, self.root)
        leftovers = [path for path in (self.root / PARENT, *DEFAULT_ROOT.glob(f"*/{PARENT}")) if path.exists()]
        assert not leftovers, f"the test left cgroups behind: {leftovers}"


@pytest.fixture(params=[1, 2], ids=["v1", "v2"])
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    version = request.param
    root = v2_root() if version == 2 else DEFAULT_ROOT if cgroup_version() == 1 else None
    if root is None:
        pytest.skip(f"this machine has no cgroup v{version} hierarchy")
    box = Sandbox(version, root, re.sub(r"\W+", "-", request.node.name).strip("-"))
    box.manager.create()
    try:
        yield box
    finally:
        box.close()


def cpu_ticks(pid: int) -> int:
    """Return the user plus system time of a process in clock ticks (proc(5), /proc/pid/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def test_it_moves_a_process_into_every_hierarchy(sandbox: Sandbox) -> None:
    child = sandbox.start("import time; time.sleep(30)")
    lines = Path(f"/proc/{child.pid}/cgroup").read_text().splitlines()
    paths = {
        controller: path
        for _, controllers, path in (line.split(":", 2) for line in lines)
        for controller in controllers.split(",")
    }
    expected = f"/{sandbox.manager.path}"
    names = [""] if sandbox.version == 2 else list(sandbox.manager.cgroup_paths())
    assert {name: paths.get(name) for name in names} == {name: expected for name in names}
    assert sandbox.manager.pids() == [child.pid]


def test_it_oom_kills_a_child_above_the_memory_limit(sandbox: Sandbox) -> None:
    sandbox.need("memory")
    sandbox.manager.apply(Resources(memory=32 * MiB, memory_swap=32 * MiB))
    child = sandbox.start("data = b'x' * (100 << 20)\nprint('survived', flush=True)")
    assert child.wait(timeout=10) == -9, "the child should have been OOM-killed at 32 MiB"
    assert sandbox.manager.oom_kills() >= 1


def test_it_stops_forks_at_the_pids_limit(sandbox: Sandbox) -> None:
    sandbox.need("pids")
    sandbox.manager.apply(Resources(pids_limit=10))
    child = sandbox.start(
        "import os, time\n"
        "kids, failures = [], 0\n"
        "for _ in range(30):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except BlockingIOError:\n"
        "        failures += 1\n"
        "        continue\n"
        "    if pid == 0:\n"
        "        time.sleep(30)\n"
        "        os._exit(0)\n"
        "    kids.append(pid)\n"
        "print(len(kids), failures, flush=True)\n"
        "time.sleep(30)\n"
    )
    assert child.stdout is not None
    forked, failed = map(int, child.stdout.readline().split())
    assert (forked, failed) == (9, 21), "the parent and 9 children should fill a limit of 10"
    stats = sandbox.manager.stats()
    assert (stats.pids_current, stats.pids_limit) == (10, 10)


def test_it_throttles_a_busy_child_to_its_cpu_quota(sandbox: Sandbox) -> None:
    sandbox.need("cpu")
    sandbox.manager.apply(Resources(cpu_quota=2000, cpu_period=10000))  # --cpus 0.2
    child = sandbox.start("import time\nend = time.monotonic() + 0.5\nwhile time.monotonic() < end: pass")
    assert child.wait(timeout=5) == 0
    stats = sandbox.manager.stats()
    assert stats.throttled_periods > 0
    assert stats.throttled_time_ns > 0
    assert 0 < stats.cpu_usage_ns < 250_000_000, "0.5 s of busy loop at 0.2 CPUs should use about 0.1 s"


def test_it_freezes_and_thaws_a_busy_child(sandbox: Sandbox) -> None:
    child = sandbox.start("while True: pass")
    wait_for(lambda: cpu_ticks(child.pid) > 0)
    sandbox.manager.freeze()
    assert sandbox.manager.frozen()
    before = cpu_ticks(child.pid)
    time.sleep(0.2)
    assert cpu_ticks(child.pid) == before, "a frozen child should not run"
    sandbox.manager.thaw()
    assert not sandbox.manager.frozen()
    wait_for(lambda: cpu_ticks(child.pid) > before)


def test_it_reports_sane_stats(sandbox: Sandbox) -> None:
    sandbox.need("cpu", "memory", "pids")
    sandbox.manager.apply(Resources(memory=64 * MiB, pids_limit=50))
    child = sandbox.start(
        "import time\n"
        "end = time.monotonic() + 0.05\n"
        "while time.monotonic() < end: pass\n"
        "data = b'x' * (16 << 20)\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    stats = sandbox.manager.stats()
    assert stats.cpu_usage_ns > 0
    assert stats.cpu_usage_ns >= stats.cpu_user_ns
    assert stats.online_cpus >= 1
    assert 16 * MiB <= stats.memory_usage <= 64 * MiB
    assert stats.memory_limit == 64 * MiB
    assert stats.memory_stats, "memory.stat should have counters"
    assert (stats.pids_current, stats.pids_limit) == (1, 50)
    assert stats.blkio_read_bytes >= 0 and stats.blkio_write_bytes >= 0
    if sandbox.version == 1:
        assert stats.memory_max_usage >= stats.memory_usage
        assert sum(stats.per_cpu_ns) > 0


def test_kill_all_leaves_no_process(sandbox: Sandbox) -> None:
    child = sandbox.start(
        "import os, time\n"
        "for _ in range(3):\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(30)\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    assert len(sandbox.manager.pids()) == 4
    sandbox.manager.kill_all()
    assert child.wait(timeout=5) == -9
    wait_for(lambda: sandbox.manager.pids() == [])


def test_kill_all_of_a_cgroup_removed_as_it_looks_is_no_error(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`docker rm -f` of a container that has just exited: its monitor removes the cgroup meanwhile."""
    manager = sandbox.manager
    frozen = manager.frozen

    def removed_first() -> bool:  # the seam: the removal lands between kill_all's look and its freeze
        manager.destroy()
        return frozen()

    monkeypatch.setattr(manager, "frozen", removed_first)
    manager.kill_all(signal.SIGTERM)  # not v2's cgroup.kill, which freezes nothing
    assert not manager.exists()


def test_destroy_kills_what_is_left_and_removes_the_directories(sandbox: Sandbox) -> None:
    child = sandbox.start("import time; time.sleep(30)")
    sandbox.manager.destroy()
    assert not sandbox.manager.exists()
    assert not any(path.exists() for path in sandbox.manager.cgroup_paths().values())
    assert child.wait(timeout=5) == -9


def test_it_allows_only_the_devices_dockers_default_rules_allow(sandbox: Sandbox) -> None:
    sandbox.manager.apply(Resources.from_oci({"devices": DOCKER_DEVICES}))
    child = sandbox.start(
        "import os\n"
        "for path in ('/dev/null', '/dev/full', '/dev/kmsg', '/dev/loop0'):\n"
        "    try:\n"
        "        os.close(os.open(path, os.O_RDONLY))\n"
        "        print(path, 0, flush=True)\n"
        "    except OSError as err:\n"
        "        print(path, err.errno, flush=True)\n"
    )
    assert child.stdout is not None
    opened = dict(line.split() for line in child.stdout)
    assert opened == {"/dev/null": "0", "/dev/full": "0", "/dev/kmsg": str(errno.EPERM), "/dev/loop0": str(errno.EPERM)}


def test_destroy_removes_a_frozen_cgroup_with_processes(sandbox: Sandbox) -> None:
    child = sandbox.start("import time; time.sleep(30)")
    sandbox.manager.freeze()
    sandbox.manager.destroy()
    assert not sandbox.manager.exists()
    assert child.wait(timeout=5) == -9


def test_it_pins_a_child_to_its_cpuset(sandbox: Sandbox) -> None:
    sandbox.need("cpuset")
    sandbox.manager.apply(Resources(cpuset_cpus="0"))
    child = sandbox.start("print(open('/proc/self/status').read().split('Cpus_allowed_list:')[1].split()[0])")
    assert child.stdout is not None and child.stdout.read() == "0\n"


def test_it_orders_memory_and_swap_writes_on_v1(sandbox: Sandbox) -> None:
    directory = sandbox.manager.cgroup_paths().get("memory")
    if sandbox.version != 1 or directory is None or not (directory / "memory.memsw.limit_in_bytes").exists():
        pytest.skip("needs cgroup v1's memory.memsw.limit_in_bytes")

    memory, memsw = directory / "memory.limit_in_bytes", directory / "memory.memsw.limit_in_bytes"

    def limits() -> tuple[int, int]:
        return int(memory.read_text()), int(memsw.read_text())

    sandbox.manager.apply(Resources(memory=64 * MiB))
    assert limits() == (64 * MiB, 128 * MiB), "Docker's default swap limit is the memory limit again"
    sandbox.manager.apply(Resources(memory=16 * MiB, memory_swap=16 * MiB))
    assert limits() == (16 * MiB, 16 * MiB)
    sandbox.manager.apply(Resources(memory=256 * MiB, memory_swap=512 * MiB))
    assert limits() == (256 * MiB, 512 * MiB)
    sandbox.manager.apply(Resources(memory=128 * MiB, memory_swap=-1))
    assert limits()[0] == 128 * MiB
    assert limits()[1] > 1 << 60, "-1 should lift the memory+swap limit"


#
# favordynmods
#


def _mountinfo_line(mount_point: Path, super_options: str) -> str:
    return f"35 24 0:30 / {mount_point} rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 {super_options}\n"


def test_favor_dynamic_modifications_leaves_a_hierarchy_that_has_the_option(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(_mountinfo_line(tmp_path / "unified", "rw,nsdelegate,favordynmods"))
    # No remount is tried: tmp_path/unified is no mount point, and a remount there would fail.
    assert favor_dynamic_modifications(tmp_path, mountinfo) is True


def test_favor_dynamic_modifications_reports_a_machine_without_cgroup2(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(_mountinfo_line(tmp_path / "elsewhere", "rw"))
    assert favor_dynamic_modifications(tmp_path, mountinfo) is False


def test_favor_dynamic_modifications_turns_the_option_on_for_the_machines_hierarchy() -> None:
    root = v2_root()
    if root is None or tuple(map(int, os.uname().release.split(".")[:2])) < (6, 0):
        pytest.skip("favordynmods needs a cgroup2 hierarchy and Linux 6.0")
    assert favor_dynamic_modifications() is True
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    line = next(m for m in mounts if m.split()[4] == str(root))
    assert "favordynmods" in line.split(" - ")[1].split()[2].split(",")
