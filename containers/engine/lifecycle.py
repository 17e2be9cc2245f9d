"""The container lifecycle with `docker run`'s options: create, start, stop, kill, wait, remove, ...

A container is a directory `<root>/containers/<id>/` holding its record (`container.json`: the
Docker-shaped Config and HostConfig it was created with, merged with its image's defaults as
Docker merges them), its OCI bundle (`config.json`, `rootfs/` where its snapshot is mounted while
it runs), the files bind-mounted as /etc/hostname, /etc/hosts and /etc/resolv.conf, its json-file
log and, while it runs, its monitor's socket and status (see shim/monitor.py).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, cast

from containers.engine import events
from containers.engine.config import EngineConfig
from containers.engine.errors import (
    AlreadyExists,
    Conflict,
    EngineError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from containers.engine.images.store import IMAGE_LABEL, Image, ImageStore
from containers.engine.runtime import capabilities as caps
from containers.engine.runtime import seccomp
from containers.engine.runtime import spec as oci
from containers.engine.runtime.cgroups import new_manager
from containers.engine.runtime.oci import new_runtime
from containers.engine.runtime.state import Status as RuntimeStatus
from containers.engine.runtime.state import process_running, wait_exited
from containers.engine.runtime.user import ExecUser, resolve_user
from containers.engine.shim import client as shim_client
from containers.engine.shim import protocol as shim_protocol
from containers.engine.shim.client import ShimServer
from containers.engine.shim.logfile import format_time
from containers.engine.shim.monitor import MANUAL_STOP, REMOVING_INDEX
from containers.engine.shim.monitor import Config as MonitorConfig
from containers.engine.snapshots.base import Snapshotter
from containers.engine.snapshots.mount import is_mounted, mount_all, unmount
from containers.engine.standby import MAXIMUM, PER_IMAGE, Standby, Standbys

# Seconds a started container may run before the standby made after it is, and seconds after its
# exit, for its waiters to be answered first (see `_fill_standby`).
STANDBY_FILL_DELAY = 0.2
STANDBY_FILL_SETTLE = 0.01
RESTART_POLICIES = ("", "no", "always", "on-failure", "unless-stopped")
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")

HOSTS = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""


class ContainerNotFound(NotFound):
    """No container has that ID, unique ID prefix or name. Moby's wording: `No such container: x`."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"No such container: {ref}")


@dataclass
class Record:
    """What `container.json` holds: the container as created (Docker's field names inside the dicts)."""

    id: str
    name: str
    created: str
    image: str
    image_ref: str
    path: str
    args: list[str]
    config: dict[str, Any]
    host_config: dict[str, Any]


@dataclass(frozen=True)
class State:
    """A container's state as `docker inspect` shows it (`State`)."""

    status: str  # created | running | paused | restarting | exited | dead
    running: bool
    paused: bool
    restarting: bool
    oom_killed: bool
    pid: int
    exit_code: int
    error: str
    started_at: str
    finished_at: str
    restart_count: int = 0


ZERO_TIME = "0001-01-01T00:00:00Z"


def _now() -> str:
    return format_time(time.time_ns())


def merge_config(image: Image, config: Mapping[str, Any]) -> dict[str, Any]:
    """Combine a create request's Config with the image's defaults, as Docker does."""
    defaults = image.config.config
    merged = dict(config)
    env: dict[str, str] = {}
    for item in [*(defaults.env or ()), *(config.get("Env") or [])]:
        env[item.split("=", 1)[0]] = item
    if not any(k == "PATH" for k in env):
        env = {"PATH": oci.DEFAULT_PATH, **env}
    merged["Env"] = list(env.values())
    entrypoint = config.get("Entrypoint")
    if entrypoint is None:
        merged["Entrypoint"] = list(defaults.entrypoint) if defaults.entrypoint else None
        if not config.get("Cmd"):
            merged["Cmd"] = list(defaults.cmd) if defaults.cmd else None
    else:
        # An explicit entrypoint (even `--entrypoint ""`) drops the image's Cmd, as Docker does.
        merged["Entrypoint"] = [e for e in entrypoint if e] or None
        merged["Cmd"] = config.get("Cmd") or None
    merged["WorkingDir"] = config.get("WorkingDir") or defaults.working_dir or ""
    merged["User"] = config.get("User") or defaults.user or ""
    merged["Labels"] = {**defaults.labels, **(config.get("Labels") or {})}
    merged["StopSignal"] = config.get("StopSignal") or defaults.stop_signal or "SIGTERM"
    merged["ExposedPorts"] = {**{p: {} for p in defaults.exposed_ports}, **(config.get("ExposedPorts") or {})}
    merged["Volumes"] = {**{v: {} for v in defaults.volumes}, **(config.get("Volumes") or {})}
    merged["Image"] = config.get("Image", "")
    for key in ("Tty", "OpenStdin", "StdinOnce", "AttachStdin", "AttachStdout", "AttachStderr"):
        merged[key] = bool(config.get(key, False))
    return merged


def parse_signal(value: str | int) -> int:
    """Return a signal number for `SIGTERM`, `TERM`, `15`; InvalidArgument otherwise."""
    text = str(value).strip().upper()
    if text.isdigit():
        number = int(text)
        if 0 < number < signal.NSIG:
            return number
    else:
        name = text if text.startswith("SIG") else "SIG" + text
        if hasattr(signal, name) and isinstance(getattr(signal, name), signal.Signals):
            return int(getattr(signal, name))
    raise InvalidArgument(f"Invalid signal: {value}")


def _check_name(name: str) -> str:
    name = name.lstrip("/")
    if not name or name[0] not in _NAME_CHARS - set("_.-") or not set(name) <= _NAME_CHARS:
        raise InvalidArgument(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name


class Containers:
    """Create and run containers from the image store, each supervised by a monitor."""

    def __init__(self, config: EngineConfig, images: ImageStore, snapshotter: Snapshotter) -> None:
        self.config = config
        self.images = images
        self.snapshotter = snapshotter
        self.cgroup_parent = config.cgroup_parent
        self.root = config.containers_root
        self.runtime = new_runtime(config.runtime, config.root / "run" / config.runtime)
        self.shim = ShimServer(config.root / "run" / "shim.sock", config.root / "shim.log")
        # Standbys need the native runtime's deferred create.
        ttl = config.standby_ttl if config.runtime == "native" else 0.0
        self.standbys = Standbys(self.root, ttl, release_orphan=self._release_standby)

    #
    # records and lookup
    #

    def _dir(self, container_id: str) -> Path:
        return self.root / container_id

    def _load(self, container_id: str) -> Record:
        try:
            return Record(**json.loads((self._dir(container_id) / "container.json").read_text()))
        except FileNotFoundError:
            raise ContainerNotFound(container_id) from None

    def _save(self, record: Record) -> None:
        path = self._dir(record.id) / "container.json"
        tmp = path.with_suffix(".tmp")
        # vars, not asdict: asdict deep-copies the config first (0.24 ms against 0.02 for a busybox record).
        tmp.write_text(json.dumps(vars(record)))
        os.replace(tmp, path)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o711)
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _records(self) -> list[Record]:
        if not self.root.exists():
            return []
        records = []
        for entry in self.root.iterdir():
            if entry.name.startswith("."):  # the lock and the standby and removal indexes
                continue
            try:
                records.append(Record(**json.loads((entry / "container.json").read_text())))
            except (FileNotFoundError, NotADirectoryError):
                continue
        return records

    def resolve(self, ref: str) -> str:
        """Return the ID for a full ID, a name (with or without `/`) or a unique ID prefix."""
        if len(ref) == 64 and (self._dir(ref) / "container.json").exists():
            return ref
        records = self._records()
        name = ref.lstrip("/")
        for record in records:
            if record.name == name:
                return record.id
        matches = [r.id for r in records if ref and r.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
        raise ContainerNotFound(ref)

    def get(self, ref: str) -> Record:
        return self._load(self.resolve(ref))

    def list(self) -> list[Record]:
        return sorted(self._records(), key=lambda r: r.created, reverse=True)

    #
    # create
    #

    def create(self, config: Mapping[str, Any], host_config: Mapping[str, Any] | None = None, name: str = "") -> Record:
        """Create a container from `config["Image"]` with Docker's create semantics; return its record.

        A standby made for the same image and settings becomes the container (see standby.py).
        """
        host_config = dict(host_config or {})
        self._validate_host_config(host_config)
        image = self.images.get(config.get("Image") or "")
        merged = merge_config(image, config)
        command = [*(merged["Entrypoint"] or []), *(merged["Cmd"] or [])]
        if not command:
            raise InvalidArgument("no command specified")
        record = Record(
            id="", name="", created=_now(), image=image.id, image_ref=config.get("Image") or image.id,
            path=command[0], args=command[1:], config=merged, host_config=host_config,
        )  # fmt: skip
        with self._locked():
            record.name = self._free_name(name)
            adopted = self._adopt(record, config.get("Hostname") or "")
            if adopted is not None:
                record, spec = adopted
                # Its spec as start hands it over (`_go`): what the adoption derived, not derived again.
                (self._dir(record.id) / "config.json").write_text(json.dumps(spec))
                self._save(record)
        if adopted is None:
            # With the lock let go: an image's first run unpacks its layers, which takes a while.
            parent = self.images.unpack(image)
            with self._locked():
                record.name = self._free_name(name)  # again: another create may have taken it meanwhile
                record.id = secrets.token_hex(32)
                merged["Hostname"] = config.get("Hostname") or record.id[:12]
                directory = self._dir(record.id)
                directory.mkdir(mode=0o711)
                try:
                    self.snapshotter.prepare(record.id, parent, labels={IMAGE_LABEL: image.id})
                    (directory / "rootfs").mkdir()
                    self._save(record)
                except BaseException:
                    self._discard(record.id)
                    raise
        # With the labels, as moby's create event: they tell whose the container was once it is gone.
        attributes = {**(merged.get("Labels") or {}), "name": record.name, "image": record.image_ref}
        events.append(self.config.root, "create", record.id, **attributes)
        return record

    def _free_name(self, name: str) -> str:
        """Return `name`, or a generated one for "", if no container has it (the containers' lock held)."""
        taken = {record.name: record.id for record in self._records()}
        wanted = _check_name(name) if name else self._generate_name(taken)
        if wanted in taken:
            raise AlreadyExists(
                f'Conflict. The container name "/{wanted}" is already in use by container "{taken[wanted]}". '
                "You have to remove (or rename) that container to be able to reuse that name."
            )
        return wanted

    @staticmethod
    def _generate_name(taken: Mapping[str, str]) -> str:
        adjectives = ["brave", "calm", "eager", "fond", "keen", "quirky", "sharp", "swift", "vivid", "wise"]
        nouns = ["turing", "hopper", "lovelace", "ritchie", "thompson", "torvalds", "knuth", "liskov", "wirth", "kay"]
        while True:
            candidate = f"{secrets.choice(adjectives)}_{secrets.choice(nouns)}"
            if candidate not in taken:
                return candidate
            candidate += str(secrets.randbelow(100))
            if candidate not in taken:
                return candidate

    def _adopt(self, record: Record, hostname: str) -> tuple[Record, dict[str, Any]] | None:
        """Return `record` as a waiting standby of its image made for its settings, and its spec;
        None if none fits.

        A standby made for the same settings (`_kind`) has the spec `record` would get, but for the
        process's own parts, which `go` brings (see standby.py): the spec is a function of the
        settings, the image's files and the standby's ID. Called with the containers' lock held,
        as monitors releasing standbys take it too.
        """
        if not _warmable(record):
            return None
        kind = _kind(record, hostname)
        for standby in self.standbys.waiting(record.image):
            if standby.kind == kind and (adopted := self._as_standby(record, hostname, standby)) is not None:
                return adopted
        return None

    def _as_standby(self, record: Record, hostname: str, standby: Standby) -> tuple[Record, dict[str, Any]] | None:
        """Return `record` as `standby`, and its spec: the standby's with the process's own parts."""
        config = {**record.config, "Hostname": hostname or standby.id[:12]}
        candidate = replace(record, id=standby.id, config=config)
        directory = self._dir(standby.id)
        try:
            spec = json.loads((directory / "config.json").read_text())
            user = resolve_user(str(directory / "rootfs"), config.get("User") or "")
            own = oci.build_spec(candidate.id, *_own_parts(candidate, user))
        except (OSError, ValueError, EngineError):
            return None
        # What the standby's init applied already, and what `go` brings it (the runtime's deferred fields).
        deferred = {key: value for key, value in own["process"].items() if key in oci.DEFERRED_PROCESS_FIELDS}
        spec["process"] = {**oci.process_identity(spec["process"]), **deferred}
        spec["annotations"] = own["annotations"]
        return candidate, spec

    def _fill_standby(self, record: Record, pid: int | None) -> bool:
        """Make a standby of `record`'s image with its settings (see standby.py) if one is wanted:
        fewer than `PER_IMAGE` of those settings wait, and fewer than `MAXIMUM` standbys in all.
        Return whether another is wanted after it.

        Once `record`'s container has exited, or has run a while: on a busy machine, making the
        next container while this one starts, runs and is removed slows all of that down.
        """
        # `pid`, the container's process (None: it did not start), is watched, not its monitor asked.
        if pid is None or wait_exited(pid, STANDBY_FILL_DELAY):
            time.sleep(STANDBY_FILL_SETTLE)
        hostname = record.config.get("Hostname") or ""
        own_hostname = "" if hostname == record.id[:12] else hostname
        kind = _kind(record, own_hostname)
        alike = [s for s in self.standbys.waiting(record.image) if s.kind == kind]
        wanted = min(PER_IMAGE - len(alike), MAXIMUM - len(self.standbys.all()))
        if wanted <= 0:
            return False
        image = self.images.get(record.image)
        parent = self.images.unpack(image)
        standby_id = secrets.token_hex(32)
        stand_in = replace(
            record, id=standby_id, name="", created=_now(),
            config={**record.config, "Hostname": own_hostname or standby_id[:12]},
        )  # fmt: skip
        directory = self._dir(standby_id)
        directory.mkdir(mode=0o711)
        try:
            # Labelled as a container's: its adoption then changes nothing in the snapshots' metadata.
            self.snapshotter.prepare(standby_id, parent, labels={IMAGE_LABEL: image.id})
            rootfs = directory / "rootfs"
            rootfs.mkdir()
            mount_all(self.snapshotter.mounts(standby_id), rootfs)
            self._write_etc_files(stand_in)
            (directory / "config.json").write_text(json.dumps(self._spec(stand_in, str(rootfs))))
            monitor = replace(self._monitor_config(stand_in), standby=True, standby_ttl=self.standbys.ttl)
            answer = cast(dict[str, Any], self.shim.spawn(monitor))
        except BaseException:
            self._release_standby(standby_id)  # no monitor took it
            raise
        # A monitor that could not make it has released it and answered with the error.
        if "monitor_pid" not in answer:
            return False
        self.standbys.add(Standby(standby_id, image.id, answer["monitor_pid"], kind))
        # Counted, not looked at again: a look reads every standby's entry and checks its monitor.
        return wanted > 1

    def release_image_holders(self, timeout: float = 10.0) -> None:
        """Before images go: wait for auto-removed containers to be released, give up idle standbys.

        Both still hold their image's layers: a container removed at its exit is gone for
        everyone before its monitor has released it (shim/monitor.py, `_forget`).
        """
        deadline = time.monotonic() + timeout
        while any(process_running(pid) for pid in self._releasing()) and time.monotonic() < deadline:
            time.sleep(0.005)
        self.standbys.release()

    def _releasing(self) -> list[int]:
        """Return the pids of the monitors releasing containers removed at their exit."""
        pids = []
        with suppress(FileNotFoundError):
            for marker in (self.root / REMOVING_INDEX).iterdir():
                with suppress(FileNotFoundError, ValueError):
                    pids.append(int(marker.read_text()))
        return pids

    def _release_standby(self, container_id: str) -> None:
        """Release a standby without a monitor, as the monitor would have (an adopted one stays created)."""
        with suppress(EngineError):
            self.runtime.delete(container_id, force=True)
        directory = self._dir(container_id)
        with self._locked():
            unmount(directory / "rootfs")
            if not (directory / "container.json").exists():
                with suppress(NotFound):
                    self.snapshotter.remove(container_id)
                shutil.rmtree(directory, ignore_errors=True)

    @staticmethod
    def _validate_host_config(host_config: Mapping[str, Any]) -> None:
        policy = (host_config.get("RestartPolicy") or {}).get("Name", "")
        if policy not in RESTART_POLICIES:
            raise InvalidArgument(f"invalid restart policy '{policy}'")
        if policy not in ("", "no") and host_config.get("AutoRemove"):
            raise InvalidArgument("can't create 'AutoRemove' container with restart policy")
        mode = host_config.get("NetworkMode") or "default"
        if mode not in ("default", "bridge", "none", "host"):
            raise InvalidArgument(f"network {mode} not found: named networks come with the networking issue")
        if host_config.get("PortBindings") and any(host_config["PortBindings"].values()):
            raise InvalidArgument("publishing ports (-p) comes with the networking issue and is not supported yet")
        for bind in host_config.get("Binds") or []:
            parts = bind.split(":")
            if len(parts) < 2 or not parts[0].startswith("/"):
                raise InvalidArgument(
                    f"invalid bind mount {bind!r}: named volumes are not supported yet; use /host/path:/path"
                )
            if not parts[1].startswith("/"):
                raise InvalidArgument(f"invalid mount config: the mount destination {parts[1]!r} is not absolute")
        for mount in host_config.get("Mounts") or []:
            _check_mount(mount)
        memory = int(host_config.get("Memory") or 0)
        if memory and memory < 6 * 1024 * 1024:
            raise InvalidArgument("Minimum memory limit allowed is 6MB")
        swap = int(host_config.get("MemorySwap") or 0)
        if swap > 0 and memory and swap < memory:
            raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")

    #
    # start
    #

    def start(
        self, ref: str, attach: dict[str, bool] | None = None, keep_warm: bool = False
    ) -> shim_client.Stream | None:
        """Start a created or exited container; FailedPrecondition if it is running already.

        With `attach` ({"stdin", "stdout", "stderr"}), return a stream attached from the first byte.
        With `keep_warm`, a standby of the container's image and settings is made afterwards, in
        the background, for the next create to adopt (see standby.py).
        """
        record = self.get(ref)
        state = self.state(record.id)
        if state.running or state.restarting:
            raise FailedPrecondition(f"container {record.id} is already running")
        answer = self._go(record, attach)
        if answer is None:
            answer = self._spawn(record, attach)
        if keep_warm and _warmable(record):
            reply = answer.reply if isinstance(answer, shim_client.Stream) else answer
            self.standbys.fill_in_background(record.image, partial(self._fill_standby, record, reply.get("pid")))
        if isinstance(answer, shim_client.Stream):
            return answer
        if "error" in answer:
            raise FailedPrecondition(answer["error"])
        return None

    def _go(self, record: Record, attach: dict[str, bool] | None) -> shim_client.Stream | dict[str, Any] | None:
        """Start an adopted standby by handing its monitor the process; None if there is no such standby."""
        standby = self.standbys.get(record.id)
        if standby is None:
            return None
        directory = self._dir(record.id)
        spec = json.loads((directory / "config.json").read_text())  # written as create adopted it
        message = {
            "op": "go", "config": asdict(self._monitor_config(record)), "process": spec["process"], "attach": attach,
        }  # fmt: skip
        try:
            reply, sock = shim_client.request(directory / "monitor.sock", message, timeout=60)
        except (OSError, ValueError):
            # Its time ran out as we came: once its monitor has released it, it starts as usual.
            wait_exited(standby.monitor_pid, timeout=30)
            return None
        return shim_client.stream_or_reply(sock, reply, attach)

    def _spawn(self, record: Record, attach: dict[str, bool] | None) -> shim_client.Stream | dict[str, Any]:
        """Start the container with a new monitor."""
        directory = self._dir(record.id)
        rootfs = directory / "rootfs"
        # The last run's status goes first: a reconcile takes the rootfs of a container without one
        # for a start's, not a stopped container's to release (`_release_orphans`).
        (directory / "monitor.json").unlink(missing_ok=True)
        if not is_mounted(rootfs):
            mount_all(self.snapshotter.mounts(record.id), rootfs)
        try:
            self._write_etc_files(record)
            spec = self._spec(record, str(rootfs))
            (directory / "config.json").write_text(json.dumps(spec))
            (directory / MANUAL_STOP).unlink(missing_ok=True)
            return self.shim.spawn(self._monitor_config(record), attach)
        except BaseException:
            unmount(rootfs)
            if record.host_config.get("AutoRemove"):
                # moby removes an AutoRemove container whose start failed (`docker run --rm` waits for that);
                # one that runs after all (a spawn that timed out) is refused by remove and stays.
                with suppress(EngineError):
                    self.remove(record.id)
            raise

    def _monitor_config(self, record: Record) -> MonitorConfig:
        directory = self._dir(record.id)
        cfg, hc = record.config, record.host_config
        policy = hc.get("RestartPolicy") or {}
        log = (hc.get("LogConfig") or {}).get("Config") or {}
        size = cfg.get("ConsoleSize") or hc.get("ConsoleSize") or []
        return MonitorConfig(
            id=record.id, bundle=str(directory), runtime=self.config.runtime, runtime_root=str(self.runtime.root),
            state_dir=str(directory),
            log_path=str(directory / f"{record.id}-json.log"), rootfs=str(directory / "rootfs"),
            tty=bool(cfg.get("Tty")), open_stdin=bool(cfg.get("OpenStdin")), stdin_once=bool(cfg.get("StdinOnce")),
            console_size=[int(x) for x in size if x] if len(size) == 2 and all(size) else [],
            log_max_size=_parse_size(log.get("max-size", "20m")), log_max_files=int(log.get("max-file", 5)),
            restart_policy=policy.get("Name", "no") or "no", restart_max=int(policy.get("MaximumRetryCount") or 0),
            auto_remove=bool(hc.get("AutoRemove")), snapshotter=self.config.snapshotter,
            snapshots_root=str(self.config.snapshots_root), events_root=str(self.config.root),
        )  # fmt: skip

    @staticmethod
    def _own_network(record: Record) -> bool:
        return (record.host_config.get("NetworkMode") or "default") != "host"

    def _spec(self, record: Record, rootfs: str) -> dict[str, Any]:
        cfg, hc = record.config, record.host_config
        directory = self._dir(record.id)
        user = resolve_user(rootfs, cfg.get("User") or "")
        mounts = [
            oci.Bind(str(directory / name), f"/etc/{name}", extra=()).to_oci()
            for name in ("hostname", "hosts", "resolv.conf")
        ]
        mounts += [_bind(b) for b in hc.get("Binds") or []]
        mounts += [_tmpfs(path, options) for path, options in (hc.get("Tmpfs") or {}).items()]
        mounts += [_mount(mount) for mount in hc.get("Mounts") or []]
        capability_set = _capabilities(hc.get("CapAdd") or [], hc.get("CapDrop") or [])
        opts = [
            *_own_parts(record, user),
            oci.with_user(user.uid, user.gid, user.additional_gids),
            oci.with_hostname(cfg.get("Hostname") or record.id[:12]),
            oci.with_terminal(bool(cfg.get("Tty"))),
            oci.with_rootfs(rootfs),
            oci.with_readonly_rootfs(bool(hc.get("ReadonlyRootfs"))),
            oci.with_mounts(mounts),
            oci.with_cgroups_path(f"/{self.cgroup_parent}/{record.id}"),
            oci.with_capabilities(capability_set),
            oci.with_resources(**_resources(hc)),
        ]
        if hc.get("OomScoreAdj"):
            opts.append(oci.with_oom_score_adj(int(hc["OomScoreAdj"])))
        if hc.get("Ulimits"):
            opts.append(oci.with_rlimits([_rlimit(u) for u in hc["Ulimits"]]))
        if "seccomp=unconfined" not in (hc.get("SecurityOpt") or []):
            opts.append(oci.with_seccomp(seccomp.docker_default(capability_set)))
        if not self._own_network(record):
            opts.append(oci.with_host_network())
        return oci.build_spec(record.id, *opts)

    def _write_etc_files(self, record: Record) -> None:
        directory = self._dir(record.id)
        hostname = record.config.get("Hostname") or record.id[:12]
        (directory / "hostname").write_text(hostname + "\n")
        if self._own_network(record):
            (directory / "hosts").write_text(HOSTS)
            lines = _host_file("/etc/resolv.conf").splitlines()
            kept = [ln for ln in lines if not (ln.startswith("nameserver") and _is_loopback(ln.split()[1:2]))]
            (directory / "resolv.conf").write_text("\n".join(kept) + "\n")
        else:
            (directory / "hosts").write_text(_host_file("/etc/hosts"))
            (directory / "resolv.conf").write_text(_host_file("/etc/resolv.conf"))

    #
    # state
    #

    def _monitor(self, container_id: str) -> dict[str, Any] | None:
        try:
            return json.loads((self._dir(container_id) / "monitor.json").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def state(self, ref: str) -> State:
        record_id = self.resolve(ref)
        monitor = self._monitor(record_id)
        if monitor is None:
            return State("created", False, False, False, False, 0, 0, "", ZERO_TIME, ZERO_TIME)
        status = monitor["status"]
        if status == "running" and not process_running(monitor["monitor_pid"]):
            status = "dead"
        paused = False
        if status == "running":
            try:
                paused = self.runtime.state(record_id).status is RuntimeStatus.PAUSED
            except NotFound:
                # Between the container's exit and its monitor's next status (exited, or
                # restarting): the monitor's word stands until it writes the next one.
                paused = False
        running = status == "running"
        return State(
            status="paused" if paused else status, running=running, paused=paused,
            restarting=status == "restarting", oom_killed=bool(monitor.get("oom_killed")),
            pid=monitor["pid"] if running else 0, exit_code=int(monitor.get("exit_code", 0)),
            error=monitor.get("error", ""), started_at=monitor.get("started_at") or ZERO_TIME,
            finished_at=monitor.get("finished_at") or ZERO_TIME, restart_count=int(monitor.get("restart_count", 0)),
        )  # fmt: skip

    def wait(self, ref: str, timeout: float | None = None) -> State:
        """Block until the container is not running (nor restarting); return its state.

        A container removed at its exit (`--rm`) answers with the exit code its monitor gave.
        """
        record_id = self.resolve(ref)
        deadline = None if timeout is None else time.monotonic() + timeout
        socket_path = self._dir(record_id) / "monitor.sock"
        while True:
            state = self.state(record_id)
            if not (state.running or state.restarting or state.paused):
                return state
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if remaining == 0.0:
                return state
            try:
                _, sock = shim_client.request(socket_path, {"op": "wait"}, timeout=remaining)
                with sock:
                    answer = shim_protocol.read_line(sock)
            except (OSError, ValueError, ConnectionError):
                # Starting, or gone with its container (`state` then says so): look again soon.
                time.sleep(0.002)
                continue
            if not (self._dir(record_id) / "container.json").exists():
                # Removed at its exit (--rm): the monitor's answer is all that is left of the run.
                code, oom = int(answer.get("exit_code", 0)), bool(answer.get("oom_killed"))
                return State("exited", False, False, False, oom, 0, code, "", ZERO_TIME, ZERO_TIME)

    #
    # signals and stop
    #

    def kill(self, ref: str, sig: str | int = "SIGKILL") -> None:
        record = self.get(ref)
        number = parse_signal(sig)
        state = self.state(record.id)
        if not state.running and not state.paused:
            raise Conflict(f"Cannot kill container: {record.id}: container {record.id} is not running")
        (self._dir(record.id) / MANUAL_STOP).touch()
        events.append(self.config.root, "kill", record.id, signal=number)
        if state.paused and number == signal.SIGKILL:
            self.runtime.kill(record.id, number, all_processes=True)
        else:
            self.runtime.kill(record.id, number)

    def stop(self, ref: str, timeout: int | None = None, sig: str | None = None) -> bool:
        """Stop with the stop signal, then SIGKILL after the timeout; False if it was not running."""
        record = self.get(ref)
        state = self.state(record.id)
        directory = self._dir(record.id)
        if not (state.running or state.paused or state.restarting):
            return False
        (directory / MANUAL_STOP).touch()
        events.append(self.config.root, "stop", record.id)
        if state.restarting:
            self.wait(record.id, timeout=30)
            return True
        if timeout is None:
            timeout = int(record.config.get("StopTimeout") or 10)
        number = parse_signal(sig or record.config.get("StopSignal") or "SIGTERM")
        if state.paused:
            self.runtime.resume(record.id)
        try:
            self.runtime.kill(record.id, number)
        except (NotFound, FailedPrecondition):
            pass
        if timeout < 0 or not self.wait(record.id, timeout=timeout).running:
            return True
        try:
            self.runtime.kill(record.id, signal.SIGKILL, all_processes=True)
        except (NotFound, FailedPrecondition):
            pass
        self.wait(record.id, timeout=30)
        return True

    def restart(self, ref: str, timeout: int | None = None) -> None:
        self.stop(ref, timeout)
        self.start(ref)

    def pause(self, ref: str) -> None:
        record = self.get(ref)
        state = self.state(record.id)
        if not state.running:
            raise Conflict(f"Container {record.id} is not running")
        if state.paused:
            raise Conflict(f"Container {record.id} is already paused")
        self.runtime.pause(record.id)
        events.append(self.config.root, "pause", record.id)

    def unpause(self, ref: str) -> None:
        record = self.get(ref)
        if not self.state(record.id).paused:
            raise Conflict(f"Container {record.id} is not paused")
        self.runtime.resume(record.id)
        events.append(self.config.root, "unpause", record.id)

    #
    # remove and rename
    #

    def remove(self, ref: str, force: bool = False) -> None:
        record = self.get(ref)
        state = self.state(record.id)
        if (state.running or state.paused or state.restarting) and not force:
            raise Conflict(
                f'cannot remove container "/{record.name}": container is {state.status}: '
                "stop the container before removing or force remove"
            )
        if state.running or state.paused or state.restarting:
            (self._dir(record.id) / MANUAL_STOP).touch()
            if state.paused:
                self.runtime.resume(record.id)
            try:
                self.runtime.kill(record.id, signal.SIGKILL, all_processes=True)
            except (NotFound, FailedPrecondition):
                pass
            self.wait(record.id, timeout=30)
        # Outside the lock: a standby's monitor takes it to release the container.
        self.standbys.abort(record.id)
        with self._locked():
            self._discard(record.id)
        events.append(self.config.root, "destroy", record.id, name=record.name)

    def _discard(self, container_id: str) -> None:
        directory = self._dir(container_id)
        monitor = self._monitor(container_id)
        if monitor is not None:
            wait_exited(monitor["monitor_pid"])
        unmount(directory / "rootfs")
        try:
            self.snapshotter.remove(container_id)
        except NotFound:
            pass
        try:
            self.runtime.delete(container_id, force=True)
        except NotFound:
            pass
        shutil.rmtree(directory, ignore_errors=True)

    def rename(self, ref: str, new_name: str) -> None:
        with self._locked():
            record = self.get(ref)
            wanted = _check_name(new_name)
            if wanted == record.name:
                raise InvalidArgument(f"Renaming a container with the same name as its current name: {wanted}")
            for other in self._records():
                if other.name == wanted:
                    raise AlreadyExists(
                        f'Conflict. The container name "/{wanted}" is already in use by container "{other.id}". '
                        "You have to remove (or rename) that container to be able to reuse that name."
                    )
            old, record.name = record.name, wanted
            self._save(record)
        events.append(self.config.root, "rename", record.id, name=wanted, oldName=f"/{old}")

    #
    # exec and attach
    #

    def exec(
        self,
        ref: str,
        cmd: list[str],
        *,
        user: str = "",
        env: list[str] | None = None,
        workdir: str = "",
        tty: bool = False,
        stdin: bool = False,
        detach: bool = False,
        console_size: list[int] | None = None,
        exec_id: str = "",
    ) -> shim_client.Stream:
        """Start `cmd` in the running container; return the stream of its stdio (closed at once with detach)."""
        record = self.get(ref)
        state = self.state(record.id)
        if not state.running or state.paused:
            status = "paused" if state.paused else "not running"
            raise Conflict(f"container {record.id} is {status}")
        if not cmd:
            raise InvalidArgument("no command specified")
        directory = self._dir(record.id)
        who = resolve_user(str(directory / "rootfs"), user or record.config.get("User") or "")
        merged = _daemon_env(record, tty, env or [])
        if not any(item.startswith("HOME=") for item in merged):
            merged.append(f"HOME={who.home or '/'}")
        process: dict[str, Any] = {
            "args": list(cmd),
            "env": merged,
            "cwd": workdir or record.config.get("WorkingDir") or "/",
            "user": {"uid": who.uid, "gid": who.gid, "additionalGids": list(who.additional_gids)},
            "terminal": tty,
        }
        request = {
            "op": "exec", "process": process, "stdin": stdin, "detach": detach,
            "console_size": console_size or [], "exec_id": exec_id,
        }  # fmt: skip
        reply, sock = shim_client.request(directory / "monitor.sock", request, timeout=None)
        if "error" in reply:
            sock.close()
            raise FailedPrecondition(reply["error"])
        return shim_client.Stream(sock, reply)

    def attach(self, ref: str, *, stdin: bool = False, stdout: bool = True, stderr: bool = True) -> shim_client.Stream:
        """Attach to the running container's stdio (its output from now on)."""
        record = self.get(ref)
        request = {"op": "attach", "stdin": stdin, "stdout": stdout, "stderr": stderr}
        reply, sock = shim_client.request(self._dir(record.id) / "monitor.sock", request, timeout=None)
        if "error" in reply:
            sock.close()
            raise Conflict(f"container {record.id}: {reply['error']}")
        return shim_client.Stream(sock, reply)

    def resize(self, ref: str, height: int, width: int) -> None:
        record = self.get(ref)
        request = {"op": "resize", "h": height, "w": width}
        reply, sock = shim_client.request(self._dir(record.id) / "monitor.sock", request)
        sock.close()
        if "error" in reply:
            raise Conflict(f"container {record.id}: {reply['error']}")

    #
    # reconcile
    #

    def reconcile(self) -> list[str]:
        """Repair what happened while nobody watched; return what was done, a line each.

        Run when a node agent starts. A monitor that died leaves its container unsupervised
        (killed here, as nothing owns its stdio any more) or already gone (after a reboot); then
        the container is marked exited, its mounts, network namespace and cgroup are released,
        and `always` / `unless-stopped` (unless stopped by hand) start it again. Mounts and
        cgroups that belong to no running container, nor to one being started, are removed.
        """
        done = []
        for record in self._records():
            monitor = self._monitor(record.id)
            if monitor is None or monitor["status"] not in ("running", "restarting"):
                continue
            if process_running(monitor["monitor_pid"]):
                continue
            done += self._recover(record, monitor)
        done += self._release_orphans()
        return done

    def _recover(self, record: Record, monitor: dict[str, Any]) -> list[str]:
        directory = self._dir(record.id)
        done = []
        if monitor.get("pid") and process_running(monitor["pid"]):
            try:
                self.runtime.kill(record.id, signal.SIGKILL, all_processes=True)
            except (NotFound, FailedPrecondition):
                pass
            wait_exited(monitor["pid"])
            done.append(f"killed unsupervised container {record.id[:12]}")
        try:
            self.runtime.delete(record.id, force=True)
        except NotFound:
            pass
        unmount(directory / "rootfs")
        monitor.update(status="exited", exit_code=monitor.get("exit_code") or 255, finished_at=_now())
        monitor["error"] = "the container's monitor exited while it ran"
        (directory / "monitor.json").write_text(json.dumps(monitor))
        done.append(f"marked {record.id[:12]} exited")
        policy = (record.host_config.get("RestartPolicy") or {}).get("Name", "no")
        manual = (directory / MANUAL_STOP).exists()
        if policy == "always" or (policy == "unless-stopped" and not manual):
            self.start(record.id)
            done.append(f"restarted {record.id[:12]} ({policy})")
        return done

    def _release_orphans(self) -> list[str]:
        done = []
        records = self._records()
        running = {r.id for r in records if (state := self.state(r.id)).running or state.restarting}
        running |= {standby.id for standby in self.standbys.all()}
        for record in records:
            # One without a status was never started, or is being started: its rootfs mounted, its
            # monitor not up yet (unmounted, the process would find an empty directory).
            if record.id in running or self._monitor(record.id) is None:
                continue
            rootfs = self._dir(record.id) / "rootfs"
            if is_mounted(rootfs):
                unmount(rootfs)
                done.append(f"unmounted the rootfs of stopped container {record.id[:12]}")
        for state in self.runtime.list():
            if state.id not in running and state.status is RuntimeStatus.STOPPED:
                self.runtime.delete(state.id, force=True)
                done.append(f"removed the runtime state and cgroup of {state.id[:12]}")
        return done

    #
    # inspection
    #

    def log_path(self, ref: str) -> Path:
        record_id = self.resolve(ref)
        return self._dir(record_id) / f"{record_id}-json.log"

    def top(self, ref: str) -> list[int]:
        """Return the host pids of every process in the container."""
        record = self.get(ref)
        state = self.state(record.id)
        if not state.running:
            raise Conflict(f"Container {record.id} is not running")
        return new_manager(f"{self.cgroup_parent}/{record.id}").pids()

    def stats(self, ref: str) -> Any:
        record = self.get(ref)
        if not self.state(record.id).running:
            return None
        return new_manager(f"{self.cgroup_parent}/{record.id}").stats()


def _daemon_env(record: Record, tty: bool, extra: list[str] | None = None) -> list[str]:
    """Return the variables a process of the container starts with, as moby's CreateDaemonEnvironment.

    PATH, HOSTNAME and (with a terminal) TERM come first; the container's Env, then `extra` (an
    exec's), replace them by name.
    """
    hostname = record.config.get("Hostname") or record.id[:12]
    merged = {"PATH": oci.DEFAULT_PATH, "HOSTNAME": f"HOSTNAME={hostname}"} | ({"TERM": "TERM=xterm"} if tty else {})
    for item in [*(record.config.get("Env") or []), *(extra or [])]:
        merged[item.split("=", 1)[0]] = item
    return list(merged.values())


def _own_parts(record: Record, user: ExecUser) -> list[oci.SpecOpt]:
    """The spec's options that set what `go` brings a standby (the process's arguments, environment
    and working directory) and its annotations: what containers alike in all else differ in."""
    env = _daemon_env(record, tty=False)
    if not any(item.startswith("HOME=") for item in env):
        env.append(f"HOME={user.home or '/'}")
    return [
        oci.with_process_args([record.path, *record.args]),
        oci.with_env(env),
        oci.with_cwd(record.config.get("WorkingDir") or "/"),
        oci.with_annotations({"org.opencontainers.image.ref.name": record.image_ref}),
    ]


def _warmable(record: Record) -> bool:
    """Whether a standby may stand in for containers like `record`: no terminal, stdin or host paths.

    A terminal and stdin are set up before `go`; binds would hold host paths for nobody.
    """
    hc = record.host_config
    return not (
        record.config.get("Tty") or record.config.get("OpenStdin")
        or hc.get("Binds") or hc.get("Mounts") or hc.get("Tmpfs") or hc.get("Devices")
    )  # fmt: skip


# The config's keys that are no standby's settings: what `go` brings (`_own_parts`), the image and
# hostname (named apart by `_kind`), and what no spec holds (labels, which streams the client attaches).
_PROCESS_CONFIG = frozenset({
    "Cmd", "Entrypoint", "Env", "WorkingDir", "Image", "Hostname", "Labels", "AttachStdin", "AttachStdout",
    "AttachStderr",
})  # fmt: skip
# The host config's keys that only the monitor reads, which `go` brings in its config.
_MONITOR_HOST_CONFIG = frozenset({"AutoRemove", "RestartPolicy", "LogConfig"})


def _kind(record: Record, hostname: str) -> str:
    """Name what a standby made for `record` (with `hostname`, "" for its own ID's) stands in for.

    Containers of one kind get the same spec but for the process's own parts (`_own_parts`):
    the rest derives from these settings, the image's files (the user's IDs), the container's ID
    and what the engine's process read once (the seccomp profile). So a create adopts a standby
    of its kind without working out its spec (0.35 ms here), and the fill counts them by kind.
    """
    config = {key: value for key, value in record.config.items() if key not in _PROCESS_CONFIG}
    host_config = {key: value for key, value in record.host_config.items() if key not in _MONITOR_HOST_CONFIG}
    made_for = [record.image, config, host_config, hostname]
    return hashlib.sha256(json.dumps(made_for, sort_keys=True).encode()).hexdigest()


def _host_file(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _is_loopback(address: list[str]) -> bool:
    return bool(address) and (address[0].startswith("127.") or address[0] == "::1")


def _parse_size(text: str | int) -> int:
    value = str(text).strip().lower()
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    if value and value[-1] in units:
        return int(float(value[:-1]) * units[value[-1]])
    return int(value)


def _bind(spec: str) -> dict[str, Any]:
    source, destination, *rest = spec.split(":")
    options = set(rest[0].split(",")) if rest else set()
    readonly = "ro" in options
    modes = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
    propagation = next((o for o in options if o in modes), "rprivate")
    if not os.path.exists(source):
        # `-v /host/path:/x` creates a missing host directory, as Docker does.
        os.makedirs(source, exist_ok=True)
    return oci.Bind(source, destination, readonly, propagation).to_oci()


def _tmpfs(path: str, options: str) -> dict[str, Any]:
    if not path.startswith("/"):
        raise InvalidArgument(f"invalid tmpfs path {path!r}: not absolute")
    extra = tuple(o for o in options.split(",") if o)
    base = ("noexec", "nosuid", "nodev")
    return oci.Tmpfs(path, tuple(dict.fromkeys((*base, *extra)))).to_oci()


def _check_mount(mount: Mapping[str, Any]) -> None:
    """Refuse a `--mount` moby refuses; unlike `-v`, a bind's missing source is an error, not a new directory."""
    kind, source, target = mount.get("Type") or "", mount.get("Source") or "", mount.get("Target") or ""
    if kind == "volume":
        raise InvalidArgument('invalid mount config for type "volume": named volumes are not supported yet')
    if kind not in ("bind", "tmpfs"):
        raise InvalidArgument(f'invalid mount config for type "{kind}": mount type unknown')
    problem = ""
    if not target.startswith("/"):
        problem = f"invalid mount path: '{target}' mount path must be absolute"
    elif kind == "tmpfs" and source:
        problem = "field Source must not be specified"
    elif kind == "bind" and not source:
        problem = "field Source must not be empty"
    elif kind == "bind" and not os.path.exists(source):
        problem = f"bind source path does not exist: {source}"
    if problem:
        raise InvalidArgument(f'invalid mount config for type "{kind}": {problem}')


def _mount(mount: Mapping[str, Any]) -> dict[str, Any]:
    """Return the OCI mount for a `--mount` of type bind or tmpfs (checked by `_check_mount`)."""
    readonly = bool(mount.get("ReadOnly"))
    if mount["Type"] == "tmpfs":
        options = mount.get("TmpfsOptions") or {}
        extra = ["ro"] if readonly else []
        if options.get("SizeBytes"):
            extra.append(f"size={int(options['SizeBytes'])}")
        if options.get("Mode"):
            extra.append(f"mode={int(options['Mode']):o}")
        return oci.Tmpfs(mount["Target"], ("noexec", "nosuid", "nodev", *extra)).to_oci()
    propagation = (mount.get("BindOptions") or {}).get("Propagation") or "rprivate"
    return oci.Bind(mount["Source"], mount["Target"], readonly, propagation).to_oci()


def _rlimit(ulimit: Mapping[str, Any]) -> dict[str, Any]:
    """The OCI rlimit of a Docker ulimit: uint64, so -1 (`--ulimit core=-1`) is RLIM_INFINITY, as in moby."""
    soft, hard = int(ulimit["Soft"]) % 2**64, int(ulimit["Hard"]) % 2**64
    return {"type": "RLIMIT_" + str(ulimit["Name"]).upper(), "soft": soft, "hard": hard}


def _capabilities(add: list[str], drop: list[str]) -> list[str]:
    def norm(name: str) -> str:
        name = name.upper()
        return name if name.startswith("CAP_") or name == "ALL" else "CAP_" + name

    current = set(caps.DEFAULT_CAPABILITIES)
    adds, drops = {norm(c) for c in add}, {norm(c) for c in drop}
    if "ALL" in drops:
        current = set()
    current -= drops
    if "ALL" in adds:
        current |= set(caps.ALL_CAPABILITIES)
    else:
        caps.capability_numbers(adds)
        current |= adds
    return sorted(current)


def _resources(hc: Mapping[str, Any]) -> dict[str, Any]:
    memory = int(hc.get("Memory") or 0) or None
    swap = int(hc.get("MemorySwap") or 0) or None
    nano = int(hc.get("NanoCpus") or 0)
    quota = int(hc.get("CpuQuota") or 0) or None
    period = int(hc.get("CpuPeriod") or 0) or None
    if nano:
        if quota:
            raise InvalidArgument("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
        period = 100_000
        quota = nano * period // 1_000_000_000
    pids = hc.get("PidsLimit")
    return {
        "memory": memory,
        "memory_swap": swap,
        "memory_reservation": int(hc.get("MemoryReservation") or 0) or None,
        "cpu_quota": quota,
        "cpu_period": period,
        "cpu_shares": int(hc.get("CpuShares") or 0) or None,
        "cpuset_cpus": hc.get("CpusetCpus") or None,
        "pids_limit": int(pids) if pids else None,
    }
