"""Run a Python probe as a process that webengine-init (init.c) confines, as it confines a container's.

The probe gets an OCI process object's user, capabilities, no_new_privs and seccomp filter, the
steps `exec` gives a container's process (plan.py's `add_process`), in mount, UTS and network
namespaces of its own, so that whatever it manages to do changes nothing on the host. It prints
one JSON value, which comes back; pytest's own process is never confined.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from containers.engine.linux import syscalls
from containers.engine.runtime import plan, seccomp, sync
from containers.engine.runtime.capabilities import current_capabilities
from containers.engine.runtime.container import init_path
from tests.engine.runtime.bundles import read_until_eof

# What every probe can call: errno_of(callable) and syscall_errno(name, *args), each 0 on success.
PRELUDE = """
import ctypes, errno, json, os, socket, sys
import pyseccomp
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

def errno_of(call):
    try:
        call()
    except OSError as err:
        return err.errno or -1
    return 0

def syscall_errno(name, *args):
    number = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
    ctypes.set_errno(0)
    result = _libc.syscall(ctypes.c_long(number), *(ctypes.c_long(arg) for arg in args))
    return ctypes.get_errno() if result == -1 else 0
"""

# What pytest's process holds (a machine may keep some capability from root): a probe can get no more.
HELD_CAPABILITIES = {
    key: sorted(names) for key, names in current_capabilities().items() if key not in ("inheritable", "ambient")
}


def run_confined(
    code: str, process: Mapping[str, Any] | None = None, seccomp_profile: Mapping[str, Any] | None = None
) -> Any:
    """Run `code` (after PRELUDE) as root with pytest's capabilities, or as `process` says; return what it printed."""
    full = {
        "args": [sys.executable, "-c", PRELUDE + code],
        "env": [f"PATH={os.environ['PATH']}", f"PYTHONPATH={os.pathsep.join(sys.path)}"],
        "cwd": "/",
        "user": {"uid": 0, "gid": 0},
        "capabilities": HELD_CAPABILITIES,
        **(process or {}),
    }
    steps = plan.Plan()
    steps.add("unshare", syscalls.CLONE_NEWNS | syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWNET)
    steps.add("mount", "", "/", "", syscalls.MS_REC | syscalls.MS_PRIVATE, "", 0)
    compiled = seccomp.compile_filter(seccomp_profile) if seccomp_profile is not None else None
    plan.add_process(steps, full, compiled, "/")
    parent, child = sync.channel_pair()
    out_read, out_write = os.pipe()
    copies = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (out_write, child.fileno())]
    try:
        pid = os.posix_spawn(init_path(), ["webengine-init"], {}, file_actions=[
            (os.POSIX_SPAWN_DUP2, copies[0], 1), (os.POSIX_SPAWN_DUP2, copies[1], plan.SYNC_FD),
        ])  # fmt: skip
    finally:
        for fd in (*copies, out_write):
            os.close(fd)
        child.close()
    try:
        parent.send(steps.encode())
        sync.expect(parent, "ready")
        output = read_until_eof(out_read)
    finally:
        parent.close()
        os.close(out_read)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"the probe failed (wait status {status:#x}): {output!r}"
    return json.loads(output)
