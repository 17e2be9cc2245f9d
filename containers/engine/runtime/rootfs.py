"""A container's filesystem: set up inside its new mount namespace, then entered with pivot_root.

The container's init (init.c, pid 1 of its pid namespace) does it before the user's process, in
the order runc uses (libcontainer/rootfs_linux.go): mount propagation, the rootfs bind, the
spec's mounts, device nodes and links, the console, pivot_root, then masked and read-only paths.
`RootfsSteps` works out those steps from the spec, for init's plan (plan.py).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from containers.engine.errors import InvalidArgument
from containers.engine.linux import syscalls as sc

if TYPE_CHECKING:
    from containers.engine.runtime.plan import Plan

# mount(8) option names -> (flag, set or clear); anything else is filesystem data.
_FLAGS: dict[str, tuple[int, bool]] = {
    "ro": (sc.MS_RDONLY, True), "rw": (sc.MS_RDONLY, False),
    "nosuid": (sc.MS_NOSUID, True), "suid": (sc.MS_NOSUID, False),
    "nodev": (sc.MS_NODEV, True), "dev": (sc.MS_NODEV, False),
    "noexec": (sc.MS_NOEXEC, True), "exec": (sc.MS_NOEXEC, False),
    "noatime": (sc.MS_NOATIME, True), "nodiratime": (sc.MS_NODIRATIME, True),
    "relatime": (sc.MS_RELATIME, True), "strictatime": (sc.MS_STRICTATIME, True),
    "bind": (sc.MS_BIND, True), "rbind": (sc.MS_BIND | sc.MS_REC, True),
    "remount": (sc.MS_REMOUNT, True),
}  # fmt: skip
_PROPAGATION = {
    "private": sc.MS_PRIVATE, "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED, "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE, "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE, "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}  # fmt: skip

# The nodes runc creates in every container's /dev (libcontainer/specconv AllowedDevices).
DEFAULT_DEVICES = [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)]
DEV_LINKS = [("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"), ("/proc/self/fd/1", "stdout"),
             ("/proc/self/fd/2", "stderr"), ("pts/ptmx", "ptmx")]  # fmt: skip

_MAX_SYMLINKS = 255


def parse_options(options: Iterable[str]) -> tuple[int, int, str]:
    """Split mount options into (flags, propagation flags, data), as runc's parseMountOptions."""
    flags, propagation, data = 0, 0, []
    for option in options:
        if option in _FLAGS:
            flag, on = _FLAGS[option]
            flags = flags | flag if on else flags & ~flag
        elif option in _PROPAGATION:
            propagation |= _PROPAGATION[option]
        else:
            data.append(option)
    return flags, propagation, ",".join(data)


def secure_join(root: str, unsafe: str) -> str:
    """Return `unsafe` resolved inside `root`, every symlink evaluated as if `root` were `/`.

    An image controls its own symlinks: a mount destination such as `/etc/x` where `/etc` links
    to `/host-etc` or `../../..` must land inside the rootfs, never on the host (the class of bugs
    behind CVE-2019-16884 and CVE-2021-30465; this is filepath-securejoin's rule).
    """
    remaining = [part for part in unsafe.split("/") if part not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while remaining:
        part = remaining.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            mode = os.lstat(candidate).st_mode
        except FileNotFoundError:
            resolved.append(part)
            continue
        if not stat.S_ISLNK(mode):
            resolved.append(part)
            continue
        links += 1
        if links > _MAX_SYMLINKS:
            raise OSError(errno.ELOOP, "too many levels of symbolic links", unsafe)
        target = os.readlink(candidate)
        if target.startswith("/"):
            resolved = []
        remaining = [p for p in target.split("/") if p not in ("", ".")] + remaining
    return os.path.join(root, *resolved)


class RootfsSteps:
    """Add a spec's filesystem set-up to a plan for webengine-init (init.c), in runc's order.

    What the spec decides (flags, data, which mounts, devices and paths) is worked out here; what
    depends on the container's files as the steps change them (symlinks resolved inside the
    rootfs, mount points made, masked paths' kinds) is init's, at each step.
    """

    def __init__(self, spec: Mapping[str, Any], rootfs: str, plan: Plan) -> None:
        self.spec = spec
        self.rootfs = rootfs
        self.plan = plan

    def prepare(self) -> None:
        """Everything before pivot_root: propagation, the rootfs bind, the spec's mounts, /dev."""
        linux = self.spec.get("linux", {})
        propagation = _PROPAGATION.get(linux.get("rootfsPropagation", "rslave"), sc.MS_SLAVE | sc.MS_REC)
        self.plan.add("rootfs", self.rootfs)
        # Nothing the container mounts may propagate back to the host: make every mount we
        # inherited a slave (or private) before touching anything (mount_namespaces(7)).
        self._mount(None, "/", None, propagation, join=False)
        # pivot_root(2) needs the new root to be a mount point.
        self._mount(self.rootfs, self.rootfs, "bind", sc.MS_BIND | sc.MS_REC, join=False)
        dev_is_tmpfs = False
        for mount in self.spec.get("mounts", []):
            self._add_mount(mount)
            dev_is_tmpfs = dev_is_tmpfs or (mount["destination"] == "/dev" and mount.get("type") == "tmpfs")
        if dev_is_tmpfs:
            self._create_devices(linux.get("devices", []))

    def _mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str = "", join: bool = True
    ) -> None:
        self.plan.add("mount", source or "", target, fstype or "", flags, data, int(join))

    def _add_mount(self, mount: Mapping[str, Any]) -> None:
        kind = mount.get("type") or "bind"
        options = mount.get("options", [])
        flags, propagation, data = parse_options(options)
        is_bind = kind == "bind" or bool(flags & sc.MS_BIND)
        source = mount.get("source")
        destination = mount["destination"]
        if not destination.startswith("/"):
            raise InvalidArgument(f"mount destination {destination}: not an absolute path")
        if kind == "cgroup":
            self._mount_cgroups(destination, flags)
            return
        # A file where a bind mount's source is a file, else a directory.
        is_file = is_bind and source is not None and not os.path.isdir(source)
        self.plan.add("mountpoint", destination, "file" if is_file else "directory")
        if is_bind:
            self._mount(source, destination, None, sc.MS_BIND | (flags & sc.MS_REC))
            # A bind mount ignores every other flag until it is remounted (mount(2), "MS_BIND").
            extra = flags & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)
            if extra:
                self._mount(None, destination, None, sc.MS_BIND | sc.MS_REMOUNT | extra)
        else:
            self._mount(source, destination, kind, flags, data)
        if propagation:
            self._mount(None, destination, None, propagation)

    def _mount_cgroups(self, destination: str, flags: int) -> None:
        """Mount the container's view of the cgroup hierarchies (its cgroup namespace)."""
        self.plan.add("mkdirs", destination, 1)
        hierarchies = _cgroup_hierarchies()
        if hierarchies is None:
            self._mount("cgroup2", destination, "cgroup2", flags)
            return
        base = flags & (sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC | sc.MS_RELATIME)
        self._mount("tmpfs", destination, "tmpfs", base, "mode=755")
        for name, options in hierarchies:
            directory = os.path.join(destination, name)
            self.plan.add("mkdirs", directory, 1)
            self._mount("cgroup", directory, "cgroup", flags, options)
        self._mount(None, destination, None, sc.MS_REMOUNT | sc.MS_RDONLY | base)

    def _create_devices(self, devices: Sequence[Mapping[str, Any]]) -> None:
        for name, major, minor in DEFAULT_DEVICES:
            self.plan.add("mknod", f"/dev/{name}", 0o666, stat.S_IFCHR, major, minor, 0, 0)
        for device in devices:
            kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[device["type"]]
            self.plan.add("mknod", device["path"], device.get("fileMode", 0o666), kind, device.get("major", 0),
                          device.get("minor", 0), device.get("uid", 0), device.get("gid", 0))  # fmt: skip
        for target, name in DEV_LINKS:
            self.plan.add("symlink", target, f"/dev/{name}")
        self.plan.add("mkdirs", "/dev/pts", 1)

    def console(self) -> None:
        """A new pty in the container's devpts, its slave the container's /dev/console, as runc does."""
        self.plan.add("console", "/dev/pts")
        self.plan.add("bind-console")

    def create_cwd(self, cwd: str) -> None:
        self.plan.add("mkdirs", cwd, 1)

    def pivot(self) -> None:
        """Make the rootfs `/` with pivot_root (never chroot), and detach the old root."""
        self.plan.add("pivot")

    def finish(self) -> None:
        """After pivot_root: read-only and masked paths, then a read-only root if asked."""
        linux = self.spec.get("linux", {})
        for path in linux.get("readonlyPaths", []):
            self.plan.add("readonly", path)
        for path in linux.get("maskedPaths", []):
            self.plan.add("mask", path)
        if self.spec.get("root", {}).get("readonly"):
            self.plan.add("readonly-root")


def _cgroup_hierarchies() -> list[tuple[str, str]] | None:
    """Return [(mount name, mount options)] of the v1 hierarchies, or None on a unified (v2) host."""
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        return None
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            fstype, _source, super_options = right.split()[:3]
            if fstype != "cgroup":
                continue
            name = os.path.basename(left.split()[4])
            options = [o for o in super_options.split(",") if o not in ("rw", "ro")]
            found.append((name, ",".join(options)))
    return found
