"""Set up a container's filesystem inside its new mount namespace, then enter it with pivot_root.

Runs in the container's init (pid 1 of its pid namespace) before the user's process, with the
order runc uses (libcontainer/rootfs_linux.go): mount propagation, the rootfs bind, the spec's
mounts, device nodes and links, the console, pivot_root, then masked and read-only paths.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from containers.engine.errors import InvalidArgument
from containers.engine.linux import syscalls as sc
from containers.engine.linux.syscalls import Syscalls

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


def _make_mountpoint(path: str, source: str | None, is_bind: bool) -> None:
    """Create the mount point: a file when a bind mount's source is a file, else a directory."""
    if is_bind and source is not None and not os.path.isdir(source):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not os.path.lexists(path):
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
        return
    os.makedirs(path, exist_ok=True)


class RootfsBuilder:
    """Perform a spec's filesystem setup for one container, with an injectable `Syscalls`."""

    def __init__(self, spec: Mapping[str, Any], rootfs: str, syscalls: Syscalls | None = None) -> None:
        self.spec = spec
        self.rootfs = rootfs
        self.sys = syscalls or Syscalls()
        self.dev_is_tmpfs = False

    def prepare(self) -> None:
        """Everything before pivot_root: propagation, the rootfs bind, the spec's mounts, /dev."""
        linux = self.spec.get("linux", {})
        propagation = _PROPAGATION.get(linux.get("rootfsPropagation", "rslave"), sc.MS_SLAVE | sc.MS_REC)
        # Nothing the container mounts may propagate back to the host: make every mount we
        # inherited a slave (or private) before touching anything (mount_namespaces(7)).
        self.sys.mount(None, "/", None, propagation)
        # pivot_root(2) needs the new root to be a mount point.
        self.sys.mount(self.rootfs, self.rootfs, "bind", sc.MS_BIND | sc.MS_REC)
        for mount in self.spec.get("mounts", []):
            self._mount(mount)
        if self.dev_is_tmpfs:
            self._create_devices(linux.get("devices", []))

    def bind_console(self, slave_path: str) -> None:
        """Make the container's pty slave its /dev/console, as runc does for a terminal."""
        console = secure_join(self.rootfs, "/dev/console")
        _make_mountpoint(console, slave_path, is_bind=True)
        self.sys.mount(slave_path, console, "bind", sc.MS_BIND)

    def _mount(self, mount: Mapping[str, Any]) -> None:
        kind = mount.get("type") or "bind"
        options = mount.get("options", [])
        flags, propagation, data = parse_options(options)
        is_bind = kind == "bind" or bool(flags & sc.MS_BIND)
        source = mount.get("source")
        destination = mount["destination"]
        if not destination.startswith("/"):
            raise InvalidArgument(f"mount destination {destination}: not an absolute path")
        target = secure_join(self.rootfs, destination)
        if kind == "cgroup":
            self._mount_cgroups(target, flags)
            return
        _make_mountpoint(target, source, is_bind)
        if is_bind:
            self.sys.mount(source, target, None, sc.MS_BIND | (flags & sc.MS_REC))
            # A bind mount ignores every other flag until it is remounted (mount(2), "MS_BIND").
            extra = flags & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)
            if extra:
                self.sys.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | extra)
        else:
            self.sys.mount(source, target, kind, flags, data or None)
            if destination == "/dev" and kind == "tmpfs":
                self.dev_is_tmpfs = True
        if propagation:
            self.sys.mount(None, target, None, propagation)

    def _mount_cgroups(self, target: str, flags: int) -> None:
        """Mount the container's view of the cgroup hierarchies (its cgroup namespace) at `target`."""
        os.makedirs(target, exist_ok=True)
        hierarchies = _cgroup_hierarchies()
        if hierarchies is None:
            self.sys.mount("cgroup2", target, "cgroup2", flags)
            return
        base = flags & (sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC | sc.MS_RELATIME)
        self.sys.mount("tmpfs", target, "tmpfs", base, "mode=755")
        for name, options in hierarchies:
            directory = os.path.join(target, name)
            os.makedirs(directory, exist_ok=True)
            self.sys.mount("cgroup", directory, "cgroup", flags, options)
        self.sys.mount(None, target, None, sc.MS_REMOUNT | sc.MS_RDONLY | base)

    def _create_devices(self, devices: Sequence[Mapping[str, Any]]) -> None:
        dev = secure_join(self.rootfs, "/dev")
        for name, major, minor in DEFAULT_DEVICES:
            path = os.path.join(dev, name)
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
            os.chmod(path, 0o666)  # mknod applies the umask
        for device in devices:
            path = secure_join(self.rootfs, device["path"])
            kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[device["type"]]
            mode = device.get("fileMode", 0o666)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.mknod(path, mode | kind, os.makedev(device.get("major", 0), device.get("minor", 0)))
            os.chmod(path, mode)
            os.chown(path, device.get("uid", 0), device.get("gid", 0))
        for target, name in DEV_LINKS:
            path = os.path.join(dev, name)
            if not os.path.lexists(path):
                os.symlink(target, path)
        os.makedirs(os.path.join(dev, "pts"), exist_ok=True)

    def pivot(self) -> None:
        """Make the rootfs `/` with pivot_root (never chroot), and detach the old root."""
        os.chdir(self.rootfs)
        # pivot_root(".", ".") stacks the old root on top of the new one (pivot_root(2), NOTES);
        # making it a slave first keeps its unmount from propagating to the host.
        self.sys.pivot_root(".", ".")
        self.sys.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
        self.sys.umount2(".", sc.MNT_DETACH)
        os.chdir("/")

    def finish(self) -> None:
        """After pivot_root: read-only and masked paths, then a read-only root if asked."""
        linux = self.spec.get("linux", {})
        for path in linux.get("readonlyPaths", []):
            self._readonly(path)
        for path in linux.get("maskedPaths", []):
            self._mask(path)
        if self.spec.get("root", {}).get("readonly"):
            self.sys.mount(None, "/", None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | _locked_flags("/"))

    def _readonly(self, path: str) -> None:
        try:
            self.sys.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
        except FileNotFoundError:
            return
        self.sys.mount(None, path, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_REC | _locked_flags(path))

    def _mask(self, path: str) -> None:
        try:
            is_dir = os.path.isdir(path)
            if is_dir:
                self.sys.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY, None)
            else:
                self.sys.mount("/dev/null", path, None, sc.MS_BIND)
        except FileNotFoundError:
            return

    def create_cwd(self, cwd: str) -> None:
        os.makedirs(secure_join(self.rootfs, cwd), mode=0o755, exist_ok=True)


def _locked_flags(path: str) -> int:
    """Return the nosuid/nodev/noexec flags already on the mount at `path`.

    A remount that would clear a flag locked by a more privileged namespace fails with EPERM
    (mount_namespaces(7), "Restrictions"), so remounts keep the flags the mount has.
    """
    st = os.statvfs(path)
    flags = 0
    for bit, flag in ((os.ST_NOSUID, sc.MS_NOSUID), (os.ST_NODEV, sc.MS_NODEV), (os.ST_NOEXEC, sc.MS_NOEXEC)):
        if st.f_flag & bit:
            flags |= flag
    return flags


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
