"""The cgroup manager: one container's cgroup, on cgroup v1 (a hierarchy per controller) or v2 (unified).

Kernel docs: Documentation/admin-guide/cgroup-v1/cgroups.rst and Documentation/admin-guide/cgroup-v2.rst.
The controller modules (cpu, cpuset, memory, pids, io, freezer, devices) know the files; this
module knows where the directories are, and turns the kernel's OSError into `EngineError`s.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import functools
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import ClassVar, Protocol

from containers.engine.errors import EngineError, FailedPrecondition, InvalidArgument, NotFound, Unavailable

from . import cpu, cpuset, devices, freezer, io, memory, pids
from .common import Resources, read, write

DEFAULT_ROOT = Path("/sys/fs/cgroup")

# How long destroy() keeps killing and retrying while the cgroup still has processes.
DESTROY_TIMEOUT = 5.0


@dataclass(frozen=True)
class Stats:
    """One sample of a container's resource use: what `docker stats` shows.

    CPU times are nanoseconds since the cgroup was created; `per_cpu_ns` is empty on cgroup v2,
    which does not count per CPU. `memory_limit` is the host's memory when the cgroup has no limit;
    `pids_limit` is 0 when unlimited. `memory_stats` holds every memory.stat counter.
    """

    cpu_usage_ns: int
    cpu_user_ns: int
    cpu_system_ns: int
    per_cpu_ns: tuple[int, ...]
    online_cpus: int
    throttled_periods: int
    throttled_time_ns: int
    nr_periods: int
    memory_usage: int
    memory_limit: int
    memory_max_usage: int
    memory_cache: int
    memory_stats: dict[str, int]
    pids_current: int
    pids_limit: int
    blkio_read_bytes: int
    blkio_write_bytes: int


class Manager(Protocol):
    """One container's cgroup: create it, limit it, put processes in, watch, freeze and remove it.

    Lifecycle: `create()` makes the directories, `apply()` writes the limits (and may be called
    again to update them, like `docker update`), `add(pid)` moves the container's init in (its
    children follow by fork), `freeze()`/`thaw()` pause and resume, `kill_all()` then `destroy()`
    tear it down. Every method raises an `EngineError` category, never a bare OSError.

    Glossary:

    - path: the cgroup's name below the root of each hierarchy, such as "webengine/<id>".
    - hierarchy: on v1, a mount of one or more controllers (/sys/fs/cgroup/memory); on v2 there is
      one hierarchy, /sys/fs/cgroup itself, and its directories hold every controller's files.
    """

    path: str

    def create(self) -> None:
        """Make the cgroup's directories and make every controller usable in them.

        On v1 this means a directory in each hierarchy, and cpus/mems copied from the parent into
        the new cpusets. On v2 it means enabling the controllers in the parents' cgroup.subtree_control.
        """

    def apply(self, resources: Resources) -> None:
        """Write the limits in `resources`, leaving the values it does not set alone."""

    def add(self, pid: int) -> None:
        """Move process `pid` (all its threads) into the cgroup in every hierarchy."""

    def pids(self) -> list[int]:
        """Return the processes in the cgroup and in any cgroup below it, sorted."""

    def stats(self) -> Stats:
        """Return the cgroup's current resource use."""

    def freeze(self) -> None:
        """Stop every process in the cgroup and wait until all are frozen."""

    def thaw(self) -> None:
        """Let the frozen processes run again."""

    def frozen(self) -> bool:
        """Return whether the cgroup is frozen."""

    def oom_kills(self) -> int:
        """Return how many processes the kernel's OOM killer killed in the cgroup."""

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to every process in the cgroup, without waiting for them to exit.

        The cgroup is frozen while the signals go out so that no process forks a child that the
        signals miss. A frozen cgroup stays frozen, unless `sig` is SIGKILL: a frozen task cannot
        die, so the cgroup is thawed to let the kill happen. A cgroup that does not exist, or is
        removed meanwhile, has no processes to signal.
        """

    def destroy(self) -> None:
        """Remove the cgroup (the leaf only, not its parents), killing any processes left in it.

        Gives up with FailedPrecondition if processes remain after DESTROY_TIMEOUT. Removing an
        absent cgroup does nothing. See `remove_parent_if_empty()` for the parents.
        """

    def exists(self) -> bool:
        """Return whether the cgroup's directory exists in any hierarchy."""

    def cgroup_paths(self) -> dict[str, Path]:
        """Return the cgroup's directory in each hierarchy, by controller name.

        On v1 the keys are the controllers (cpu, cpuacct, cpuset, memory, pids, blkio, freezer,
        devices) whose hierarchy is mounted; on v2 the one key is "unified".
        """


def cgroup_version(root: Path = DEFAULT_ROOT) -> int:
    """Return 2 if `root` is a cgroup v2 (unified) mount, else 1 (v1, or v1 with a v2 mount beside it)."""
    return 2 if (root / "cgroup.controllers").exists() else 1


def favor_dynamic_modifications(root: Path = DEFAULT_ROOT, mountinfo: Path = Path("/proc/self/mountinfo")) -> bool:
    """Turn on cgroup2's `favordynmods` mount option (Linux 6.0+); return whether it is on.

    Moving a process into a cgroup takes the kernel's global cgroup_threadgroup_rwsem for
    writing, which by default waits for an RCU grace period: 8-25 ms on a quiet machine, paid
    by every container start (v1 has no CLONE_INTO_CGROUP to avoid the move). The option makes
    such moves cheap at the cost of slightly dearer forks and exits (cgroup-v2.rst, "Mounting"),
    the trade the kernel offers for hosts that move processes often. The semaphore is global, so
    the option on the v2 hierarchy (the root on v2, `unified/` beside v1) serves v1 as well.
    util-linux's mount keeps the hierarchy's other options (nsdelegate, ...) on the remount.
    """
    hierarchy = str(root if cgroup_version(root) == 2 else root / "unified")
    for line in mountinfo.read_text().splitlines():
        fields = line.split()
        separator = fields.index("-")
        if fields[4] == hierarchy and fields[separator + 1] == "cgroup2":
            if "favordynmods" in fields[separator + 3].split(","):
                return True
            remount = ["mount", "-o", "remount,favordynmods", hierarchy]
            return subprocess.run(remount, capture_output=True, check=False).returncode == 0
    return False


def look_up_hierarchies(root: Path = DEFAULT_ROOT) -> None:
    """Look the v1 hierarchies up now (see `_v1_hierarchies`): the processes forked from this one have them."""
    if cgroup_version(root) == 1:
        _v1_hierarchies(root)


def new_manager(path: str, root: Path = DEFAULT_ROOT) -> Manager:
    """Return the manager for the cgroup `path` ("webengine/<id>", relative) on this machine's cgroup version."""
    name = _checked(path)
    return V2Manager(name, root) if cgroup_version(root) == 2 else V1Manager(name, root)


def remove_parent_if_empty(path: str, root: Path = DEFAULT_ROOT) -> None:
    """Remove the cgroup `path` (a parent like "webengine") wherever it has no processes and no children."""
    with _kernel_errors(f"cgroup {path}: failed to remove"):
        for directory in new_manager(path, root).cgroup_paths().values():
            try:
                directory.rmdir()
            except FileNotFoundError:
                continue
            except OSError as err:
                # cgroupfs answers EBUSY for a cgroup with processes or children (cgroups.rst, 2.2).
                if err.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    raise


def _checked(path: str) -> str:
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or ".." in parts:
        raise InvalidArgument(f"cgroup path {path!r}: must be relative, like webengine/<id>, without '..'")
    return str(PurePosixPath(*parts))


# The errno a cgroupfs write fails with says whose fault it is (cgroup-v2.rst, "Conventions").
_CATEGORIES: dict[int, type[EngineError]] = {
    errno.EINVAL: InvalidArgument,
    errno.ERANGE: InvalidArgument,
    errno.EOPNOTSUPP: InvalidArgument,
    errno.ENOENT: NotFound,
    errno.ESRCH: NotFound,
    errno.EBUSY: FailedPrecondition,
}


@contextlib.contextmanager
def _kernel_errors(doing: str) -> Iterator[None]:
    """Turn an OSError from cgroupfs or bpf(2) into an EngineError whose message starts with `doing`."""
    try:
        yield
    except OSError as err:
        raise _CATEGORIES.get(err.errno or 0, Unavailable)(f"{doing}: {err}") from err


def _requested(resources: Resources) -> set[str]:
    """Return the controllers (by their v2 names, plus "devices") that `resources` has something for."""
    wanted = {
        "cpu": bool(resources.cpu_shares or resources.cpu_quota or resources.cpu_period),
        "cpuset": bool(resources.cpuset_cpus or resources.cpuset_mems),
        "memory": bool(resources.memory or resources.memory_swap or resources.memory_reservation),
        "pids": resources.pids_limit is not None,
        "io": bool(resources.blkio_weight),
        "devices": bool(resources.devices),
    }
    return {name for name, yes in wanted.items() if yes}


def _procs(directory: Path) -> set[int]:
    """Return the processes in the cgroup `directory` and below; none if it does not exist."""
    found: set[int] = set()
    for current, _, _ in os.walk(directory):
        try:
            found.update(int(pid) for pid in read(Path(current), "cgroup.procs").split())
        except FileNotFoundError:  # removed during the walk
            continue
        except OSError as err:
            if err.errno != errno.ENODEV:  # ENODEV: being removed as it was read
                raise
    return found


def _remove_tree(directory: Path) -> bool:
    """Remove a cgroup and the cgroups below it, deepest first; return False if one still has processes."""
    for current, _, _ in os.walk(directory, topdown=False):
        try:
            os.rmdir(current)
        except FileNotFoundError:
            continue
        except OSError as err:
            if err.errno != errno.EBUSY:
                raise
            return False
    return True


def _stats(cpu_stats: cpu.CpuStats, mem: memory.MemoryStats, tasks: pids.PidsStats, disk: io.IoStats) -> Stats:
    return Stats(
        cpu_usage_ns=cpu_stats.usage_ns,
        cpu_user_ns=cpu_stats.user_ns,
        cpu_system_ns=cpu_stats.system_ns,
        per_cpu_ns=cpu_stats.per_cpu_ns,
        online_cpus=os.sysconf("SC_NPROCESSORS_ONLN"),
        throttled_periods=cpu_stats.throttled_periods,
        throttled_time_ns=cpu_stats.throttled_time_ns,
        nr_periods=cpu_stats.nr_periods,
        memory_usage=mem.usage,
        memory_limit=mem.limit,
        memory_max_usage=mem.max_usage,
        memory_cache=mem.cache,
        memory_stats=mem.stats,
        pids_current=tasks.current,
        pids_limit=tasks.limit,
        blkio_read_bytes=disk.read_bytes,
        blkio_write_bytes=disk.write_bytes,
    )


class _BaseManager(abc.ABC):
    """What both versions share: listing, signalling and removing processes across the cgroup's directories."""

    def __init__(self, path: str, root: Path) -> None:
        self.path = path
        self.root = root

    @abc.abstractmethod
    def cgroup_paths(self) -> dict[str, Path]: ...

    @abc.abstractmethod
    def freeze(self) -> None: ...

    @abc.abstractmethod
    def thaw(self) -> None: ...

    @abc.abstractmethod
    def frozen(self) -> bool: ...

    def _directories(self) -> list[Path]:
        """Return the distinct directories of the cgroup, in `cgroup_paths()` order.

        On v1, controllers mounted together (cpu,cpuacct) share a directory (see `_v1_hierarchies`).
        """
        return list(dict.fromkeys(self.cgroup_paths().values()))

    def add(self, pid: int) -> None:
        with _kernel_errors(f"cgroup {self.path}: failed to add process {pid}"):
            for directory in self._directories():
                write(directory, "cgroup.procs", pid)

    def pids(self) -> list[int]:
        with _kernel_errors(f"cgroup {self.path}: failed to list processes"):
            return sorted(set().union(*(_procs(directory) for directory in self._directories())))

    def exists(self) -> bool:
        return any(directory.is_dir() for directory in self._directories())

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        try:
            self._kill_all(sig)
        except EngineError:
            # Removed meanwhile, by the monitor of a container that has just exited: a cgroup goes
            # only once it has no processes, so none are left to signal.
            if self.exists():
                raise

    def _kill_all(self, sig: int) -> None:
        if not self.exists():
            return
        was_frozen = self.frozen()
        if not was_frozen:
            self.freeze()
        try:
            with _kernel_errors(f"cgroup {self.path}: failed to kill its processes"):
                for pid in self.pids():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
        finally:
            if not was_frozen or sig == signal.SIGKILL:
                self.thaw()

    def destroy(self) -> None:
        deadline = time.monotonic() + DESTROY_TIMEOUT
        with _kernel_errors(f"cgroup {self.path}: failed to remove"):
            # Killed processes leave their cgroup only when they have exited, a little after the signal.
            # Removal stops at the first busy directory, which keeps v1's freezer (the last one) for kill_all.
            while not all(_remove_tree(directory) for directory in self._directories()):
                if time.monotonic() > deadline:
                    raise FailedPrecondition(f"cgroup {self.path}: still has processes {self.pids()} after killing")
                if self.pids():
                    self.kill_all()
                time.sleep(0.01)


@functools.cache
def _v1_hierarchies(root: Path) -> dict[str, Path]:
    """Return the mounted v1 hierarchies under `root` by controller, their symlinks resolved
    (cpu and cpuacct are both the directory cpu,cpuacct).

    Looked up once a process: hierarchies are mounted at boot, and asking again cost each
    container's create, start and release about 80 stat calls and a millisecond of Python.
    """
    return {name: (root / name).resolve() for name in V1Manager.CONTROLLERS if (root / name).is_dir()}


class V1Manager(_BaseManager):
    """A cgroup on cgroup v1: one directory per controller hierarchy, /sys/fs/cgroup/<controller>/<path>."""

    # The freezer comes last so that destroy() removes it last (see _BaseManager.destroy).
    CONTROLLERS: ClassVar[tuple[str, ...]] = (
        "cpu",
        "cpuacct",
        "cpuset",
        "memory",
        "pids",
        "blkio",
        "devices",
        "freezer",
    )
    # Which hierarchy a controller of `_requested()` lives in, and the module function that writes it.
    _APPLY: ClassVar[dict[str, tuple[str, Callable[[Path, Resources], None]]]] = {
        "cpuset": ("cpuset", cpuset.apply),
        "devices": ("devices", devices.apply_v1),
        "memory": ("memory", memory.apply_v1),
        "cpu": ("cpu", cpu.apply_v1),
        "pids": ("pids", pids.apply),
        "io": ("blkio", io.apply_v1),
    }

    def cgroup_paths(self) -> dict[str, Path]:
        return {name: hierarchy / self.path for name, hierarchy in _v1_hierarchies(self.root).items()}

    def _dir(self, controller: str) -> Path:
        hierarchy = _v1_hierarchies(self.root).get(controller)
        if hierarchy is None:
            raise Unavailable(f"cgroup {self.path}: no {controller} hierarchy is mounted at {self.root / controller}")
        return hierarchy / self.path

    def create(self) -> None:
        with _kernel_errors(f"cgroup {self.path}: failed to create"):
            for directory in self._directories():
                directory.mkdir(parents=True, exist_ok=True)
            if "cpuset" in self.cgroup_paths():
                cpuset.inherit_v1(self._dir("cpuset"), self.root / "cpuset")

    def apply(self, resources: Resources) -> None:
        with _kernel_errors(f"cgroup {self.path}: failed to apply resources"):
            requested = _requested(resources)
            for controller, (hierarchy, apply) in self._APPLY.items():
                if controller in requested:
                    apply(self._dir(hierarchy), resources)

    def stats(self) -> Stats:
        with _kernel_errors(f"cgroup {self.path}: failed to read stats"):
            return _stats(
                cpu.stats_v1(self._dir("cpu"), self._dir("cpuacct")),
                memory.stats_v1(self._dir("memory")),
                pids.stats(self._dir("pids")),
                io.stats_v1(self._dir("blkio")),
            )

    def freeze(self) -> None:
        with _kernel_errors(f"cgroup {self.path}: failed to freeze"):
            freezer.freeze_v1(self._dir("freezer"))

    def thaw(self) -> None:
        with _kernel_errors(f"cgroup {self.path}: failed to thaw"):
            freezer.thaw_v1(self._dir("freezer"))

    def frozen(self) -> bool:
        with _kernel_errors(f"cgroup {self.path}: failed to read the freezer state"):
            return freezer.frozen_v1(self._dir("freezer"))

    def oom_kills(self) -> int:
        with _kernel_errors(f"cgroup {self.path}: failed to read OOM kills"):
            return memory.oom_kills_v1(self._dir("memory"))


class V2Manager(_BaseManager):
    """A cgroup on cgroup v2: one directory, <root>/<path>, holding every controller's files."""

    # The controllers create() enables for the container, when the parent has them (cgroup.controllers).
    CONTROLLERS: ClassVar[tuple[str, ...]] = ("cpuset", "cpu", "io", "memory", "pids")

    def __init__(self, path: str, root: Path, attach: devices.Attach = devices.attach_program) -> None:
        super().__init__(path, root)
        self._attach = attach

    @property
    def _dir(self) -> Path:
        return self.root / self.path

    def cgroup_paths(self) -> dict[str, Path]:
        return {"unified": self._dir}

    def create(self) -> None:
        with _kernel_errors(f"cgroup {self.path}: failed to create"):
            self._dir.mkdir(parents=True, exist_ok=True)
            # A controller's files appear in a cgroup only when its parent lists it in
            # cgroup.subtree_control, and a parent can enable only what it has itself, so the
            # controllers are enabled from the root down (cgroup-v2.rst, "Enabling and Disabling").
            for parent in reversed(self._dir.parents[: len(PurePosixPath(self.path).parts)]):
                available = read(parent, "cgroup.controllers").split()
                enabled = read(parent, "cgroup.subtree_control").split()
                missing = [c for c in self.CONTROLLERS if c in available and c not in enabled]
                if missing:
                    write(parent, "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))

    def apply(self, resources: Resources) -> None:
        with _kernel_errors(f"cgroup {self.path}: failed to apply resources"):
            enabled = read(self._dir.parent, "cgroup.subtree_control").split()
            missing = sorted((_requested(resources) & set(self.CONTROLLERS)) - set(enabled))
            if missing:
                raise Unavailable(f"cgroup {self.path}: controllers not available: {', '.join(missing)}")
            cpuset.apply(self._dir, resources)
            devices.apply_v2(self._dir, resources, self._attach)
            memory.apply_v2(self._dir, resources)
            cpu.apply_v2(self._dir, resources)
            pids.apply(self._dir, resources)
            io.apply_v2(self._dir, resources)

    def stats(self) -> Stats:
        with _kernel_errors(f"cgroup {self.path}: failed to read stats"):
            return _stats(
                cpu.stats_v2(self._dir), memory.stats_v2(self._dir), pids.stats(self._dir), io.stats_v2(self._dir)
            )

    def freeze(self) -> None:
        with _kernel_errors(f"cgroup {self.path}: failed to freeze"):
            freezer.freeze_v2(self._dir)

    def thaw(self) -> None:
        with _kernel_errors(f"cgroup {self.path}: failed to thaw"):
            freezer.thaw_v2(self._dir)

    def frozen(self) -> bool:
        with _kernel_errors(f"cgroup {self.path}: failed to read the freezer state"):
            return freezer.frozen_v2(self._dir)

    def oom_kills(self) -> int:
        with _kernel_errors(f"cgroup {self.path}: failed to read OOM kills"):
            return memory.oom_kills_v2(self._dir)

    def _kill_all(self, sig: int) -> None:
        # cgroup.kill (Linux 5.14) kills the whole subtree at once, racing with no fork.
        if sig == signal.SIGKILL and (self._dir / "cgroup.kill").exists():
            with _kernel_errors(f"cgroup {self.path}: failed to kill its processes"):
                write(self._dir, "cgroup.kill", 1)
            return
        super()._kill_all(sig)
