"""The container's side of create and exec: what runs in the forked processes until execve.

Nothing here returns to the caller in the child: every path ends in execve or `os._exit`, and an
error before the container runs is sent to the runtime over the sync channel (see sync.py).
"""

from __future__ import annotations

import errno
import fcntl
import os
import resource
import signal
import socket
import stat
import termios
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, NoReturn

from containers.engine.linux import syscalls as sc
from containers.engine.linux.syscalls import Syscalls
from containers.engine.network.loopback import loopback_up
from containers.engine.runtime import capabilities, sync
from containers.engine.runtime.rootfs import RootfsBuilder
from containers.engine.runtime.user import home_directory

NAMESPACE_FLAGS = {
    "pid": sc.CLONE_NEWPID, "network": sc.CLONE_NEWNET, "ipc": sc.CLONE_NEWIPC, "uts": sc.CLONE_NEWUTS,
    "mount": sc.CLONE_NEWNS, "cgroup": sc.CLONE_NEWCGROUP, "user": sc.CLONE_NEWUSER,
}  # fmt: skip
# /proc/<pid>/ns/<name> for each OCI namespace type; joined in this order by exec (the mount
# namespace last but one, so /proc paths still resolve; pid last, as it affects children only).
PROC_NS = [("cgroup", "cgroup"), ("ipc", "ipc"), ("uts", "uts"), ("network", "net"), ("mount", "mnt"), ("pid", "pid")]

_TIOCGPTN = 0x80045430
_TIOCSPTLCK = 0x40045431
_RLIMITS = {name: getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")}


class ExecFailure(Exception):
    """The process cannot be started; the message follows Docker's, which the docker CLI maps to exit codes."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def run_child(channel: socket.socket, body: Callable[[], None]) -> NoReturn:
    """Run `body` in a forked child; report any exception to the runtime, then exit."""
    try:
        body()
    except ExecFailure as err:
        _report(channel, str(err), err.code)
        os._exit(err.code)
    except BaseException as err:  # noqa: BLE001 - a forked child must never return into the caller's code
        detail = f"{err}" if isinstance(err, OSError | ValueError) else "".join(traceback.format_exception(err))
        _report(channel, detail, 1)
        os._exit(1)
    os._exit(0)


def _report(channel: socket.socket, message: str, code: int) -> None:
    """Send the error to the runtime; once nobody listens (after `start`), print it on stderr."""
    try:
        sync.send(channel, {"type": "error", "message": message, "code": code})
    except OSError:
        os.write(2, f"webengine-runtime: {message}\n".encode(errors="replace"))


def enter_namespaces(spec_namespaces: Sequence[Mapping[str, str]], syscalls: Syscalls) -> None:
    """Join the namespaces given by path, then unshare the rest (stage 1)."""
    flags = 0
    for namespace in spec_namespaces:
        path = namespace.get("path")
        if path:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                syscalls.setns(fd, NAMESPACE_FLAGS[namespace["type"]])
            finally:
                os.close(fd)
        else:
            flags |= NAMESPACE_FLAGS[namespace["type"]]
    if flags:
        syscalls.unshare(flags)
    if flags & sc.CLONE_NEWNET:
        # unshare(2) moved this process into the new network namespace already, where the
        # kernel leaves loopback down (network_namespaces(7)); every container expects it up.
        loopback_up()


def join_container_namespaces(pid: int, types: Sequence[str], syscalls: Syscalls) -> None:
    """Join the namespaces of process `pid` (for exec); `types` are the OCI names the container has."""
    fds = []
    for kind, name in PROC_NS:
        if kind in types:
            fds.append((os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC), NAMESPACE_FLAGS[kind]))
    for fd, flag in fds:
        syscalls.setns(fd, flag)
        os.close(fd)


def reset_signals() -> None:
    """Give the container default signal handling.

    Python ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across execve
    (signal(7), "Signal disposition"): without this, `yes | head` would never end in a container.
    """
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            if signal.getsignal(sig) is not signal.SIG_DFL:
                signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            continue
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def open_console(devpts: str) -> tuple[int, int, str]:
    """Open a new pty in the container's own devpts instance; return (master, slave, slave path)."""
    master = os.open(os.path.join(devpts, "ptmx"), os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, _TIOCSPTLCK, b"\0\0\0\0")
    number = int.from_bytes(fcntl.ioctl(master, _TIOCGPTN, b"\0\0\0\0"), "little")
    path = os.path.join(devpts, str(number))
    slave = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    return master, slave, path


def use_console(slave: int) -> None:
    """Make the pty slave the controlling terminal and stdio of this (session leader) process."""
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def set_rlimits(rlimits: Sequence[Mapping[str, Any]]) -> None:
    for limit in rlimits:
        kind = _RLIMITS.get(limit["type"])
        if kind is None:
            raise ValueError(f"unknown rlimit {limit['type']}")
        resource.setrlimit(kind, (limit["soft"], limit["hard"]))


def set_oom_score_adj(score: int | None) -> None:
    if score is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(score))


def lookup_executable(args: Sequence[str], env: Sequence[str]) -> str:
    """Find args[0] as Go's exec.LookPath does, with the container's PATH; raise ExecFailure as Docker words it."""
    name = args[0]
    if "/" in name:
        return _check_executable(name, name)
    path_var = next((item[5:] for item in env if item.startswith("PATH=")), "")
    for directory in path_var.split(":"):
        candidate = os.path.join(directory or ".", name)
        try:
            mode = os.stat(candidate).st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode) and mode & 0o111:
            return candidate
    raise ExecFailure(f'exec: "{name}": executable file not found in $PATH', 127)


def _check_executable(name: str, path: str) -> str:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ExecFailure(f'exec: "{name}": stat {path}: no such file or directory', 127) from None
    if stat.S_ISDIR(mode):
        raise ExecFailure(f'exec: "{name}": is a directory', 126)
    if not mode & 0o111:
        raise ExecFailure(f'exec: "{name}": permission denied', 126)
    return path


def set_user(user: Mapping[str, Any]) -> None:
    """Switch to the process's user and groups, keeping capabilities for `apply_process_capabilities`."""
    uid, gid = int(user.get("uid", 0)), int(user.get("gid", 0))
    os.setgroups([int(g) for g in user.get("additionalGids", [])])
    os.setresgid(gid, gid, gid)
    if uid != 0:
        capabilities.keep_capabilities_across_setuid()
    os.setresuid(uid, uid, uid)


def fix_stdio_permissions(uid: int) -> None:
    """Give the process's stdio to its user, as runc does (libcontainer/init_linux.go, fixStdioPermissions).

    The runtime's caller opened stdio as root. A process can use the descriptors it inherited
    whatever their owner, but reopening one through /dev/stdout (a link to /proc/self/fd/1) checks
    the file's permissions again (proc(5), /proc/pid/fd), so `echo x > /dev/stdout` would fail for
    a non-root user. Only the owner changes; /dev/null is left alone, and so is a file that cannot be
    chowned (EPERM, EINVAL, EROFS: runc ignores those too).
    """
    null = os.stat("/dev/null").st_rdev if os.path.exists("/dev/null") else None
    for fd in (0, 1, 2):
        try:
            st = os.fstat(fd)
            if st.st_uid != uid and not (stat.S_ISCHR(st.st_mode) and st.st_rdev == null):
                os.fchown(fd, uid, -1)
        except OSError as err:
            if err.errno not in (errno.EBADF, errno.EPERM, errno.EINVAL, errno.EROFS):
                raise


def environ(env: Sequence[str], uid: int, root: str = "/") -> dict[str, str]:
    """Turn OCI `KEY=value` strings into the mapping execve wants; a later duplicate wins.

    Without HOME in the spec, it is the user's home from the container's /etc/passwd (under
    `root`), as runc sets it (libcontainer/init_linux.go, setupUser): Docker leaves HOME to the runtime.
    """
    environ = dict(item.split("=", 1) for item in env if "=" in item)
    if "HOME" not in environ:
        environ["HOME"] = home_directory(root, uid)
    return environ


def finalize_and_exec(process: Mapping[str, Any], path: str, seccomp_filter: Any | None) -> NoReturn:
    """Become the user's process: `finalize`, the working directory, execve."""
    # Read as root, before the user may no longer read the container's /etc/passwd.
    env = environ(process.get("env", []), int(process.get("user", {}).get("uid", 0)))
    finalize(process, seccomp_filter)
    cwd = process.get("cwd", "/")
    try:
        os.chdir(cwd)
    except OSError as err:
        raise ExecFailure(f"chdir to cwd (\"{cwd}\") set in config.json failed: {err.strerror.lower()}", 126) from err
    try:
        os.execve(path, list(process["args"]), env)
    except OSError as err:
        code = 127 if err.errno == errno.ENOENT else 126
        raise ExecFailure(f'exec: "{process["args"][0]}": {err.strerror.lower()}', code) from err
    raise AssertionError("unreachable")


def finalize(process: Mapping[str, Any], seccomp_filter: Any | None) -> None:
    """The last steps before execve, in runc's order: bounding set, user, capabilities, no_new_privs,
    signals, seccomp; what `process_identity` (spec.py) holds decides them all.

    Without no_new_privs, loading a seccomp filter needs CAP_SYS_ADMIN (seccomp(2), EACCES), so
    then the filter goes in first, while the process still has every capability, as runc does.
    """
    no_new_privs = bool(process.get("noNewPrivileges"))
    if seccomp_filter is not None and not no_new_privs:
        seccomp_filter.load()
    caps = process.get("capabilities", {})
    user = process.get("user", {})
    fix_stdio_permissions(int(user.get("uid", 0)))
    capabilities.drop_bounding_set(caps.get("bounding", []))
    set_user(user)
    capabilities.apply_process_capabilities(caps)
    if no_new_privs:
        capabilities.set_no_new_privileges()
    reset_signals()
    if seccomp_filter is not None and no_new_privs:
        seccomp_filter.load()


def container_init(
    spec: Mapping[str, Any],
    rootfs: str,
    channel: socket.socket,
    fifo_fd: int,
    console_socket: socket.socket | None,
    seccomp_filter: Any | None,
    syscalls: Syscalls,
    deferred: Deferred | None = None,
) -> None:
    """Pid 1 of the container: build its filesystem, wait for `start`, become the user's process.

    With `deferred`, the process is given at start: init applies what the spec's process decides
    (see `process_identity` in spec.py) and leaves the wait to `standby-exec` (see `_hand_over`).
    """
    process = spec["process"]
    if deferred is not None:
        # It may wait long for its process: the caller's descriptors (its pipes, its sockets)
        # must not stay open in here until the execve would have closed them.
        kept = [channel.fileno(), fifo_fd, *deferred, *([console_socket.fileno()] if console_socket else [])]
        _close_all_but(kept)
    os.setsid()
    builder = RootfsBuilder(spec, rootfs, syscalls)
    console: tuple[int, int, str] | None = None
    builder.prepare()
    if process.get("terminal"):
        console = open_console(os.path.join(builder.rootfs, "dev", "pts"))
        builder.bind_console(console[2])
    if deferred is None:
        builder.create_cwd(process.get("cwd", "/"))
    builder.pivot()
    builder.finish()
    if spec.get("hostname"):
        socket.sethostname(spec["hostname"])
    for key, value in spec.get("linux", {}).get("sysctl", {}).items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(value)
    if console is not None:
        master, slave, slave_path = console
        if console_socket is None:
            raise ValueError("process.terminal is set but no console socket was given")
        sync.send_fd(console_socket, slave_path, master)
        os.close(master)
        use_console(slave)
    set_rlimits(process.get("rlimits", []))
    set_oom_score_adj(process.get("oomScoreAdj"))
    if deferred is not None:
        _hand_over(process, channel, fifo_fd, seccomp_filter, deferred)
    path = lookup_executable(process["args"], process.get("env", []))
    sync.send(channel, {"type": "ready"})
    # Blocks until `start` opens the fifo for reading (fifo(7)); the fd was opened O_PATH before
    # pivot_root, so the state directory need not be visible inside the container.
    fifo = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    os.write(fifo, b"0")
    os.close(fifo)
    os.close(fifo_fd)
    finalize_and_exec(process, path, seccomp_filter)


class Deferred(NamedTuple):
    """What init of a container with a deferred process holds: `standby-exec`, opened O_PATH, and
    the process fifo (read-write), where `start` writes the process."""

    program: int
    process_fifo: int


def _hand_over(
    process: Mapping[str, Any], channel: socket.socket, fifo_fd: int, seccomp_filter: Any | None, deferred: Deferred
) -> NoReturn:
    """Finalize as the spec's process decides, then exec `standby-exec` to wait for the process itself.

    What waits is then a small program, not a forked interpreter: the final execve has no large
    address space to tear down, and only the process's own parts (arguments, environment,
    working directory) are left to do at start (containers/engine/runtime/standby_exec.c).
    """
    # Read-write, as root: no need to wait for `start` here, nor to let the user open the fifo.
    fifo = os.open(f"/proc/self/fd/{fifo_fd}", os.O_RDWR)
    os.close(fifo_fd)
    finalize(process, seccomp_filter)
    sync.send(channel, {"type": "ready"})
    for fd in (fifo, deferred.process_fifo):
        os.set_inheritable(fd, True)
    os.execve(deferred.program, ["standby-exec", str(fifo), str(deferred.process_fifo)], {})
    raise AssertionError("unreachable")


def _close_all_but(kept: Sequence[int]) -> None:
    """Close every descriptor above stdio but `kept`."""
    low = 3
    for fd in sorted(kept):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
