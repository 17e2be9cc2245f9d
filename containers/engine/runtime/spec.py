"""Image config + run options -> OCI runtime spec (`config.json`), with Docker's defaults.

The spec is built as containerd's pkg/oci does: `default_spec()` gives what Docker gives every
container (mounts, masked and read-only paths, namespaces, the device allowlist), and small
`with_*` functions each apply one run option to it. The result is a plain dict that serialises to
a `config.json` which our runtime and runc both accept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from containers.engine.errors import InvalidArgument
from containers.engine.runtime.capabilities import DEFAULT_CAPABILITIES

Spec = dict[str, Any]
SpecOpt = Callable[[Spec], None]

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# moby oci/defaults.go: what no container should see of the host's /proc and /sys.
MASKED_PATHS = [
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    "/sys/devices/virtual/powercap",
]  # fmt: skip
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

# The device cgroup allowlist Docker gives every container (moby oci/devices_linux.go, DefaultLinuxSpec).
DEFAULT_DEVICE_RULES = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},
]

NAMESPACES = ["pid", "network", "ipc", "uts", "mount", "cgroup"]


def default_spec(container_id: str) -> Spec:
    """Return the spec every container starts from, as Docker fills it before any run option."""
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [DEFAULT_PATH],
            "cwd": "/",
            "capabilities": {key: list(DEFAULT_CAPABILITIES) for key in ("bounding", "effective", "permitted")},
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": container_id[:12],
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["ro", "nosuid", "noexec", "nodev"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]},
        ],  # fmt: skip
        "linux": {
            "namespaces": [{"type": kind} for kind in NAMESPACES],
            "resources": {"devices": [dict(rule) for rule in DEFAULT_DEVICE_RULES]},
            "cgroupsPath": f"/webengine/{container_id}",
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }


def build_spec(container_id: str, *opts: SpecOpt) -> Spec:
    """Return `default_spec` with each option applied in order."""
    spec = default_spec(container_id)
    for opt in opts:
        opt(spec)
    return spec


# What a container created with its process deferred gets only at start (see NativeRuntime.create).
DEFERRED_PROCESS_FIELDS = ("args", "env", "cwd", "consoleSize", "commandLine")


def process_identity(process: Mapping[str, Any]) -> dict[str, Any]:
    """Return what a deferred container's init applies before its process is known: the process
    object without DEFERRED_PROCESS_FIELDS (user, capabilities, no_new_privs, rlimits, ...)."""
    return {key: value for key, value in process.items() if key not in DEFERRED_PROCESS_FIELDS}


def with_process_args(args: Sequence[str]) -> SpecOpt:
    if not args:
        raise InvalidArgument("no command specified")

    def apply(spec: Spec) -> None:
        spec["process"]["args"] = list(args)

    return apply


def with_env(env: Iterable[str]) -> SpecOpt:
    """Set variables, later ones replacing earlier ones of the same name, keeping first-seen order."""

    def apply(spec: Spec) -> None:
        merged: dict[str, str] = {}
        for item in [*spec["process"]["env"], *env]:
            name = item.split("=", 1)[0]
            if not name:
                raise InvalidArgument(f"invalid environment variable: {item}")
            merged[name] = item
        spec["process"]["env"] = list(merged.values())

    return apply


def with_cwd(cwd: str) -> SpecOpt:
    if not cwd.startswith("/"):
        raise InvalidArgument(f"the working directory '{cwd}' is invalid, it needs to be an absolute path")

    def apply(spec: Spec) -> None:
        spec["process"]["cwd"] = cwd

    return apply


def with_user(uid: int, gid: int, additional_gids: Sequence[int] = (), username: str = "") -> SpecOpt:
    def apply(spec: Spec) -> None:
        user: dict[str, Any] = {"uid": uid, "gid": gid}
        if additional_gids:
            user["additionalGids"] = list(additional_gids)
        if username:
            user["username"] = username
        spec["process"]["user"] = user

    return apply


def with_hostname(hostname: str) -> SpecOpt:
    def apply(spec: Spec) -> None:
        spec["hostname"] = hostname

    return apply


def with_terminal(terminal: bool) -> SpecOpt:
    def apply(spec: Spec) -> None:
        spec["process"]["terminal"] = terminal
        if terminal and not any(item.startswith("TERM=") for item in spec["process"]["env"]):
            spec["process"]["env"].append("TERM=xterm")

    return apply


def with_readonly_rootfs(readonly: bool) -> SpecOpt:
    def apply(spec: Spec) -> None:
        spec["root"]["readonly"] = readonly

    return apply


def with_rootfs(path: str) -> SpecOpt:
    def apply(spec: Spec) -> None:
        spec["root"]["path"] = path

    return apply


def with_cgroups_path(path: str) -> SpecOpt:
    def apply(spec: Spec) -> None:
        spec["linux"]["cgroupsPath"] = path

    return apply


def with_host_network() -> SpecOpt:
    """Share the host's network namespace (`--network host`): no network namespace of its own."""

    def apply(spec: Spec) -> None:
        spec["linux"]["namespaces"] = [ns for ns in spec["linux"]["namespaces"] if ns["type"] != "network"]

    return apply


def with_namespace_path(kind: str, path: str) -> SpecOpt:
    """Join an existing namespace (e.g. a network namespace prepared by the engine)."""

    def apply(spec: Spec) -> None:
        others = [ns for ns in spec["linux"]["namespaces"] if ns["type"] != kind]
        spec["linux"]["namespaces"] = [*others, {"type": kind, "path": path}]

    return apply


def with_mounts(mounts: Sequence[Mapping[str, Any]]) -> SpecOpt:
    """Add mounts after the defaults; a mount at a default's destination replaces that default."""

    def apply(spec: Spec) -> None:
        destinations = {m["destination"] for m in mounts}
        kept = [m for m in spec["mounts"] if m["destination"] not in destinations]
        spec["mounts"] = kept + [dict(m) for m in mounts]

    return apply


def with_resources(
    memory: int | None = None,
    memory_swap: int | None = None,
    memory_reservation: int | None = None,
    cpu_quota: int | None = None,
    cpu_period: int | None = None,
    cpu_shares: int | None = None,
    cpuset_cpus: str | None = None,
    pids_limit: int | None = None,
) -> SpecOpt:
    def apply(spec: Spec) -> None:
        resources = spec["linux"]["resources"]
        memory_block = {
            k: v
            for k, v in {"limit": memory, "swap": memory_swap, "reservation": memory_reservation}.items()
            if v is not None
        }
        if memory_block:
            resources["memory"] = memory_block
        cpu_block = {
            k: v
            for k, v in {"quota": cpu_quota, "period": cpu_period, "shares": cpu_shares, "cpus": cpuset_cpus}.items()
            if v is not None
        }
        if cpu_block:
            resources["cpu"] = cpu_block
        if pids_limit is not None:
            resources["pids"] = {"limit": pids_limit}

    return apply


def with_rlimits(rlimits: Sequence[Mapping[str, Any]]) -> SpecOpt:
    def apply(spec: Spec) -> None:
        spec["process"]["rlimits"] = [dict(r) for r in rlimits]

    return apply


def with_oom_score_adj(score: int) -> SpecOpt:
    if not -1000 <= score <= 1000:
        raise InvalidArgument(f"invalid value {score}, range for oom score adj is [-1000, 1000]")

    def apply(spec: Spec) -> None:
        spec["process"]["oomScoreAdj"] = score

    return apply


def with_capabilities(caps: Sequence[str]) -> SpecOpt:
    def apply(spec: Spec) -> None:
        spec["process"]["capabilities"] = {key: list(caps) for key in ("bounding", "effective", "permitted")}

    return apply


def with_seccomp(profile: Mapping[str, Any] | None) -> SpecOpt:
    def apply(spec: Spec) -> None:
        if profile is None:
            spec["linux"].pop("seccomp", None)
        else:
            spec["linux"]["seccomp"] = dict(profile)

    return apply


def with_annotations(annotations: Mapping[str, str]) -> SpecOpt:
    def apply(spec: Spec) -> None:
        spec.setdefault("annotations", {}).update(annotations)

    return apply


@dataclass(frozen=True)
class Tmpfs:
    """A `--tmpfs /path:opts` mount."""

    destination: str
    options: tuple[str, ...] = ("rw", "noexec", "nosuid", "nodev")

    def to_oci(self) -> dict[str, Any]:
        return {"destination": self.destination, "type": "tmpfs", "source": "tmpfs", "options": list(self.options)}


@dataclass(frozen=True)
class Bind:
    """A `-v /host:/container[:ro]` bind mount."""

    source: str
    destination: str
    readonly: bool = False
    propagation: str = "rprivate"
    extra: tuple[str, ...] = field(default_factory=tuple)

    def to_oci(self) -> dict[str, Any]:
        options = ["rbind", "ro" if self.readonly else "rw", self.propagation, *self.extra]
        return {"destination": self.destination, "type": "bind", "source": self.source, "options": options}
