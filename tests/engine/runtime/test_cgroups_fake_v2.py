"""What the v2 manager writes where, against a fake cgroup2 tree in a temporary directory.

This machine may have no cgroup v2 controllers, so these tests play the kernel: the tree holds the
files a cgroup2 directory has, with the kernel's initial values, and the tests read what the manager
wrote. The real kernel runs the same code in test_cgroups_kernel.py where it can.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from containers.engine.errors import InvalidArgument, Unavailable
from containers.engine.runtime.cgroups import DeviceRule, Resources, cgroup_version, freezer, new_manager
from containers.engine.runtime.cgroups.devices import program
from containers.engine.runtime.cgroups.manager import V1Manager, V2Manager

CONTROLLERS = "cpuset cpu io memory pids"

# The files of a new cgroup2 directory with every controller enabled, and their initial values.
LEAF_FILES = {
    "cgroup.controllers": CONTROLLERS,
    "cgroup.subtree_control": "",
    "cgroup.procs": "",
    "cgroup.events": "populated 0\nfrozen 0",
    "cgroup.freeze": "0",
    "cgroup.kill": "",
    "cpu.max": "max 100000",
    "cpu.weight": "100",
    "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0",
    "cpuset.cpus": "",
    "cpuset.mems": "",
    "io.weight": "default 100",
    "io.stat": "",
    "memory.max": "max",
    "memory.swap.max": "max",
    "memory.low": "0",
    "memory.current": "0",
    "memory.peak": "0",
    "memory.stat": "anon 0\nfile 0",
    "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0",
    "pids.max": "max",
    "pids.current": "0",
}


def fake_cgroup(directory: Path, **overrides: str) -> Path:
    """Make `directory` look like a cgroup2 directory; an override like `memory_max="10"` sets memory.max."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {**LEAF_FILES, **{name.replace("_", ".", 1): value for name, value in overrides.items()}}
    for name, value in files.items():
        (directory / name).write_text(value + "\n")
    return directory


class Tree:
    """A fake cgroup2 root with the parent "webengine" (controllers enabled) and the leaf "webengine/c1"."""

    def __init__(self, root: Path) -> None:
        self.root = fake_cgroup(root)
        self.parent = fake_cgroup(root / "webengine", cgroup_subtree_control=CONTROLLERS)
        self.leaf = fake_cgroup(root / "webengine" / "c1")
        self.attached: list[tuple[Path, bytes]] = []
        self.manager = V2Manager("webengine/c1", root, attach=lambda path, code: self.attached.append((path, code)))

    def read(self, name: str) -> str:
        return (self.leaf / name).read_text().strip()


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path / "cgroup")


def test_it_picks_the_manager_by_cgroup_version(tree: Tree, tmp_path: Path) -> None:
    assert cgroup_version(tree.root) == 2
    assert isinstance(new_manager("webengine/c1", tree.root), V2Manager)
    assert cgroup_version(tmp_path) == 1
    assert isinstance(new_manager("webengine/c1", tmp_path), V1Manager)


def test_it_enables_the_controllers_from_the_root_down(tmp_path: Path) -> None:
    root = fake_cgroup(tmp_path / "cgroup", cgroup_controllers="cpu io memory pids rdma", cgroup_subtree_control="cpu")
    fake_cgroup(root / "webengine", cgroup_controllers="cpu io memory pids")
    new_manager("webengine/c1", root).create()
    assert (root / "cgroup.subtree_control").read_text() == "+io +memory +pids"
    assert (root / "webengine" / "cgroup.subtree_control").read_text() == "+cpu +io +memory +pids"
    assert (root / "webengine" / "c1").is_dir()


def test_it_writes_memory_limits_with_dockers_default_swap(tree: Tree) -> None:
    tree.manager.apply(Resources(memory=64 << 20, memory_reservation=32 << 20))
    assert tree.read("memory.max") == str(64 << 20)
    assert tree.read("memory.swap.max") == str(64 << 20), "Docker's default total is twice the memory limit"
    assert tree.read("memory.low") == str(32 << 20)


@pytest.mark.parametrize(("swap", "written"), [(64 << 20, "0"), (96 << 20, str(32 << 20)), (-1, "max")])
def test_it_writes_swap_alone_to_memory_swap_max(tree: Tree, swap: int, written: str) -> None:
    tree.manager.apply(Resources(memory=64 << 20, memory_swap=swap))
    assert tree.read("memory.swap.max") == written


def test_it_rejects_a_swap_limit_below_the_memory_limit(tree: Tree) -> None:
    with pytest.raises(InvalidArgument, match="must be at least the memory limit"):
        tree.manager.apply(Resources(memory=64 << 20, memory_swap=32 << 20))


def test_it_ignores_a_swap_limit_without_swap_accounting_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tree = Tree(tmp_path / "cgroup")
    (tree.leaf / "memory.swap.max").unlink()
    tree.manager.apply(Resources(memory=64 << 20))
    assert not caplog.records, "Docker's default swap limit should be skipped silently"
    with caplog.at_level(logging.WARNING):
        tree.manager.apply(Resources(memory=32 << 20, memory_swap=64 << 20))
    assert tree.read("memory.max") == str(32 << 20)
    assert "swap accounting is off" in caplog.text


def test_it_writes_cpu_weight_and_max(tree: Tree) -> None:
    tree.manager.apply(Resources(cpu_shares=1024, cpu_quota=50000, cpu_period=100000))
    assert tree.read("cpu.weight") == "39"
    assert tree.read("cpu.max") == "50000 100000"


def test_it_writes_a_quota_alone_keeping_the_period(tree: Tree) -> None:
    tree.manager.apply(Resources(cpu_quota=20000))
    assert tree.read("cpu.max") == "20000"


def test_it_writes_pids_max_with_max_for_unlimited(tree: Tree) -> None:
    tree.manager.apply(Resources(pids_limit=10))
    assert tree.read("pids.max") == "10"
    tree.manager.apply(Resources(pids_limit=0))
    assert tree.read("pids.max") == "max"


def test_it_writes_the_io_weight_converted_or_to_bfq(tree: Tree) -> None:
    tree.manager.apply(Resources(blkio_weight=500))
    assert tree.read("io.weight") == "4950"
    (tree.leaf / "io.bfq.weight").write_text("100\n")
    tree.manager.apply(Resources(blkio_weight=500))
    assert tree.read("io.bfq.weight") == "500"


def test_it_writes_cpusets(tree: Tree) -> None:
    tree.manager.apply(Resources(cpuset_cpus="0-1", cpuset_mems="0"))
    assert (tree.read("cpuset.cpus"), tree.read("cpuset.mems")) == ("0-1", "0")


def test_it_attaches_a_device_program_for_device_rules(tree: Tree) -> None:
    rules = (DeviceRule(allow=False), DeviceRule(allow=True, type="c", major=1, minor=3))
    tree.manager.apply(Resources(devices=rules))
    assert tree.attached == [(tree.leaf, program(rules))]


def test_it_leaves_devices_alone_without_rules(tree: Tree) -> None:
    tree.manager.apply(Resources(memory=64 << 20))
    assert tree.attached == []


def test_it_refuses_limits_whose_controller_is_not_enabled(tree: Tree) -> None:
    (tree.parent / "cgroup.subtree_control").write_text("cpu pids\n")
    with pytest.raises(Unavailable, match="controllers not available: memory"):
        tree.manager.apply(Resources(memory=64 << 20))


def test_it_reads_stats(tree: Tree) -> None:
    fake_cgroup(
        tree.leaf,
        cpu_stat="usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 10\nnr_throttled 4\nthrottled_usec 70",
        memory_current="4096",
        memory_max="8192",
        memory_peak="6000",
        memory_stat="anon 1024\nfile 2048",
        pids_current="3",
        pids_max="10",
        io_stat="8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=2 rios=1 wios=1",
    )
    stats = tree.manager.stats()
    assert (stats.cpu_usage_ns, stats.cpu_user_ns, stats.cpu_system_ns) == (1_500_000, 1_000_000, 500_000)
    assert (stats.nr_periods, stats.throttled_periods, stats.throttled_time_ns) == (10, 4, 70_000)
    assert stats.per_cpu_ns == ()
    assert stats.online_cpus >= 1
    assert (stats.memory_usage, stats.memory_limit, stats.memory_max_usage, stats.memory_cache) == (
        4096,
        8192,
        6000,
        2048,
    )
    assert stats.memory_stats == {"anon": 1024, "file": 2048}
    assert (stats.pids_current, stats.pids_limit) == (3, 10)
    assert (stats.blkio_read_bytes, stats.blkio_write_bytes) == (101, 202)


def test_it_reports_the_host_memory_as_the_limit_when_unlimited(tree: Tree) -> None:
    stats = tree.manager.stats()
    assert stats.memory_limit > 0
    assert stats.pids_limit == 0


def test_it_counts_oom_kills_from_memory_events(tree: Tree) -> None:
    fake_cgroup(tree.leaf, memory_events="low 0\nhigh 0\nmax 5\noom 2\noom_kill 2")
    assert tree.manager.oom_kills() == 2


def test_it_freezes_through_cgroup_freeze(tree: Tree) -> None:
    fake_cgroup(tree.leaf, cgroup_events="populated 1\nfrozen 1")
    tree.manager.freeze()
    assert tree.read("cgroup.freeze") == "1"
    assert tree.manager.frozen()


def test_it_thaws_again_when_freezing_times_out(tree: Tree, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(freezer, "FREEZE_TIMEOUT", 0.05)
    with pytest.raises(Unavailable, match="not frozen after 0.05s"):
        tree.manager.freeze()
    assert tree.read("cgroup.freeze") == "0"


def test_it_kills_through_cgroup_kill(tree: Tree) -> None:
    tree.manager.kill_all()
    assert tree.read("cgroup.kill") == "1"


def test_it_lists_processes_of_the_cgroup_and_below(tree: Tree) -> None:
    fake_cgroup(tree.leaf, cgroup_procs="12\n7")
    fake_cgroup(tree.leaf / "inner", cgroup_procs="30")
    assert tree.manager.pids() == [7, 12, 30]


def test_it_treats_a_missing_cgroup_as_empty(tmp_path: Path) -> None:
    manager = new_manager("webengine/absent", fake_cgroup(tmp_path / "cgroup"))
    assert not manager.exists()
    assert manager.pids() == []
    manager.kill_all()
    manager.destroy()
