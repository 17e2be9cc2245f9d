"""OCI bundles built declaratively for runtime tests, and the two runtimes' command lines to run them.

A bundle is a directory with `config.json` and `rootfs/`. The rootfs holds the host's static
busybox with a symlink per applet the tests use, and /etc/passwd and /etc/group with root and
`app` (uid and gid 1000). The spec comes from `spec.build_spec()` with Docker's defaults and
Docker's default seccomp profile, and each container gets a cgroup of its own below the session's
parent, so that the session-end check finds anything a test leaves behind.

    bundle = make_bundle(tmp / "b", "c1", with_process_args(["id"]))
    result = Runtime("native", state_root).run(bundle, "c1")
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from containers.engine.runtime import seccomp, spec
from containers.engine.runtime.capabilities import DEFAULT_CAPABILITIES

BUSYBOX = Path("/usr/bin/busybox")
APPLETS = (
    "sh", "cat", "ls", "ps", "id", "hostname", "echo", "mount", "umount", "unshare", "grep", "sleep", "ip", "seq",
    "true", "false", "env", "pwd", "touch", "head", "tail", "dd", "wc", "kill", "stat", "readlink", "tr", "sort",
    "ifconfig", "nsenter", "chroot", "mknod", "yes", "tty", "stty", "test", "[", "mkdir",
)  # fmt: skip
PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:1000:\naudio:x:29:app\n"

CGROUP_PARENT = os.environ["WEBENGINE_CGROUP_PARENT"]
# A run longer than this is a hung test: the runtime is killed and the test fails.
TIMEOUT = 20.0


def syscall_probe(number: int, *args: int) -> bytes:
    """Return a static x86-64 ELF program that makes one system call and exits with its errno (0 on success).

    Busybox has no applet for some calls the isolation tests need (keyctl, ptrace), and a
    container has no compiler, so this writes the smallest program that makes one: an ELF header,
    one PT_LOAD program header, then `mov rax, number; mov rdi/rsi/rdx/r10, args; syscall;
    exit(rax < 0 ? -rax : 0)` (syscall(2), "Architecture calling conventions").
    """
    registers = (b"\x48\xc7\xc7", b"\x48\xc7\xc6", b"\x48\xc7\xc2", b"\x49\xc7\xc2")  # mov r, imm32
    code = b"\x48\xc7\xc0" + struct.pack("<i", number)
    for register, value in zip(registers, args, strict=False):
        code += register + struct.pack("<i", value)
    code += b"\x0f\x05"  # syscall
    code += b"\x31\xff\x48\x85\xc0\x79\x06\x48\x89\xc7\x48\xf7\xdf"  # edi = rax < 0 ? -rax : 0
    code += b"\xb8\x3c\x00\x00\x00\x0f\x05"  # exit(edi)
    base, header_size = 0x400000, 64 + 56
    elf_header = (
        b"\x7fELF\x02\x01\x01"
        + bytes(9)
        + struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, base + header_size, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    )
    size = header_size + len(code)
    program_header = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)  # PT_LOAD, R+X
    return elf_header + program_header + code


def make_rootfs(rootfs: Path, applets: Iterable[str] = APPLETS, probes: Mapping[str, bytes] | None = None) -> None:
    """Fill `rootfs` with busybox, its applet links in /bin, /etc/passwd, /etc/group and empty dirs.

    `probes` are extra programs, by name, written to /bin (see `syscall_probe`).
    """
    for directory in ("bin", "etc", "proc", "sys", "dev", "tmp", "mnt", "root", "home/app"):
        (rootfs / directory).mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in applets:
        (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text(PASSWD)
    (rootfs / "etc" / "group").write_text(GROUP)
    os.chown(rootfs / "home" / "app", 1000, 1000)
    for name, program in (probes or {}).items():
        (rootfs / "bin" / name).write_bytes(program)
        (rootfs / "bin" / name).chmod(0o755)


def cgroups_path(container_id: str) -> str:
    """Return the container's cgroupsPath below the session's parent.

    Absolute, because runc reads a relative path as relative to its own cgroup (which on this
    machine may be some service's), while the OCI spec leaves relative paths to the runtime.
    """
    return f"/{CGROUP_PARENT}/{container_id}"


def bundle_spec(container_id: str, *opts: spec.SpecOpt) -> spec.Spec:
    """Return Docker's spec for the container: defaults, its cgroup, the default seccomp profile, then `opts`."""
    return spec.build_spec(
        container_id,
        spec.with_cgroups_path(cgroups_path(container_id)),
        spec.with_seccomp(seccomp.docker_default(DEFAULT_CAPABILITIES)),
        *opts,
    )


def make_bundle(
    directory: Path, container_id: str, *opts: spec.SpecOpt, probes: Mapping[str, bytes] | None = None
) -> Path:
    """Write a bundle (rootfs and config.json) for `container_id` into `directory`; return it."""
    make_rootfs(directory / "rootfs", probes=probes)
    write_spec(directory, bundle_spec(container_id, *opts))
    return directory


def write_spec(directory: Path, config: spec.Spec) -> None:
    (directory / "config.json").write_text(json.dumps(config, indent=2))


@dataclass(frozen=True)
class Result:
    """What a command line run left: its exit status and its output."""

    status: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


class Runtime:
    """One OCI runtime's command line, `native` (ours, through the interpreter) or `runc`, with its own --root.

    Every call's stdout and stderr go to files, never to a pipe: a container process that inherits
    a pipe would keep it open (and a reader waiting) for as long as it runs.
    """

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.root = root
        self.outputs = root.parent / f"{root.name}-out"
        self.outputs.mkdir(exist_ok=True)
        self._count = 0

    def argv(self, *args: str) -> list[str]:
        if self.name == "native":
            return [sys.executable, "-m", "containers.engine.runtime", "--root", str(self.root), *args]
        return ["runc", "--root", str(self.root), *args]

    def spawn(self, *args: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
        """Start the runtime with `args`; return it and the files its stdout and stderr go to."""
        self._count += 1
        out, err = self.outputs / f"{self._count}.out", self.outputs / f"{self._count}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(self.argv(*args), stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
        return process, out, err

    def __call__(self, *args: str, timeout: float = TIMEOUT) -> Result:
        """Run the runtime with `args` and return what it did."""
        process, out, err = self.spawn(*args)
        return self.result(process, out, err, timeout)

    def result(self, process: subprocess.Popen[bytes], out: Path, err: Path, timeout: float = TIMEOUT) -> Result:
        """Wait for a `spawn`ed runtime and return what it did; one that hangs is killed and fails the test."""
        try:
            status = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"{self.name}: {' '.join(process.args)}: still running after {timeout} s") from None
        return Result(status, out.read_text(errors="replace"), err.read_text(errors="replace"))

    def run(self, bundle: Path, container_id: str) -> Result:
        """`run` in the foreground: the runtime waits for the process and removes the container."""
        try:
            return self("run", "--bundle", str(bundle), container_id)
        finally:
            self.cleanup(container_id)

    def state(self, container_id: str) -> dict[str, Any]:
        result = self("state", container_id)
        assert result.status == 0, f"{self.name} state {container_id}: {result.stderr}"
        return json.loads(result.stdout)

    def status(self, container_id: str) -> str | None:
        """Return the container's status, or None while `state` cannot tell it (not yet created, or gone)."""
        result = self("state", container_id)
        return json.loads(result.stdout)["status"] if result.status == 0 else None

    def cleanup(self, container_id: str) -> None:
        """Remove the container, whatever its state, if its state directory is still there.

        Both runtimes keep a container's state in `<root>/<id>`; checking for it first saves a
        runtime start for each container that `run` already removed.
        """
        if (self.root / container_id).exists():
            result = self("delete", "--force", container_id)
            assert result.status == 0, f"{self.name} delete --force {container_id}: {result.stderr}"

    def wait_status(self, container_id: str, status: str, timeout: float = 5.0) -> dict[str, Any]:
        """Return the state once its status is `status`, or the last one after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state(container_id)
            if state["status"] == status or time.monotonic() > deadline:
                return state
            time.sleep(0.02)


class ConsoleSocket:
    """The receiving end of `--console-socket`: a unix socket that gets the pty master, as runc's recvtty."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.server.settimeout(TIMEOUT)

    def receive(self) -> tuple[str, int]:
        """Accept the runtime's connection and return (pty name, master fd)."""
        from containers.engine.runtime.sync import recv_fd

        connection, _ = self.server.accept()
        with connection:
            return recv_fd(connection)

    def close(self) -> None:
        self.server.close()
        self.path.unlink(missing_ok=True)


def read_until_eof(fd: int, timeout: float = TIMEOUT) -> bytes:
    """Read a pty master until the slave side is closed everywhere (EIO) or `timeout`."""
    import select

    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


def kill_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
