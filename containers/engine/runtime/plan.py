"""The plan the native runtime gives webengine-init (init.c): a container's set-up, step by step.

Everything the OCI spec decides is worked out here, in the runtime: the namespaces to join and
to unshare, the mounts with their flags, devices, the console, limits, capability masks, the
seccomp program compiled to BPF, and the order runc does them in. init.c carries the steps out
in the processes that become the container; what depends on the container's files as the steps
change them (symlinks resolved inside the rootfs, mount points made) is its own.

    runtime                          webengine-init                     its child, init (pid 1)
    -------                          --------------                     -----------------------
    posix_spawn -------------------> (blocks reading the plan)
    join it to the cgroup,
    send the plan ---------------->  setns(paths), unshare(flags)
                                     fork --------------------------->  mounts, devices, pivot_root,
    <- {"type": "pid", "pid": N} --  send init's host pid, exit(0)      masked/ro paths, hostname,
    waitpid                                                             console, rlimits, look-up
    <- {"type": "ready"} ----------------------------------------------  (or {"type": "error", ...})
    write state.json: created                                          open(exec.fifo) blocks
    ... `start` opens exec.fifo for reading; init writes one byte ...
                                                                        user, capabilities,
                                                                        no_new_privs, seccomp, execve

A deferred container's init finalises as its stand-in process decides, says "ready", and waits
for `start` to write the process itself (init.c's `stand_by`).
"""

from __future__ import annotations

import resource
from collections.abc import Mapping
from typing import Any

from containers.engine.errors import InvalidArgument
from containers.engine.linux import syscalls as sc
from containers.engine.runtime import capabilities
from containers.engine.runtime.rootfs import RootfsSteps
from containers.engine.runtime.seccomp import CompiledFilter
from containers.engine.runtime.user import environ

# init.c's descriptors besides stdio, and the longest plan it reads (MAX_PLAN there).
SYNC_FD, FIFO_FD, CONSOLE_FD, PROCESS_FD = 3, 4, 5, 6
MAX_PLAN = (1 << 20) - 1

NAMESPACE_FLAGS = {
    "pid": sc.CLONE_NEWPID, "network": sc.CLONE_NEWNET, "ipc": sc.CLONE_NEWIPC, "uts": sc.CLONE_NEWUTS,
    "mount": sc.CLONE_NEWNS, "cgroup": sc.CLONE_NEWCGROUP, "user": sc.CLONE_NEWUSER,
}  # fmt: skip
# /proc/<pid>/ns/<name> for each OCI namespace type, joined in this order by exec (pid last, as
# it affects children only).
PROC_NS = [("cgroup", "cgroup"), ("ipc", "ipc"), ("uts", "uts"), ("network", "net"), ("mount", "mnt"), ("pid", "pid")]
_RLIMITS = {name: getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")}


class Plan:
    """Steps for init.c: each a name and its arguments, all sent as strings."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, ...]] = []

    def add(self, name: str, *args: object) -> None:
        self.steps.append((name, *(str(arg) for arg in args)))

    def encode(self) -> bytes:
        """One message of NUL-terminated strings: each step's name, its argument count, its arguments."""
        words = [word for name, *args in self.steps for word in (name, str(len(args)), *args)]
        text = "\0".join(words) + "\0"
        if text.count("\0") != len(words):
            raise InvalidArgument("the container's spec holds a NUL byte")
        return text.encode()


def create_plan(
    spec: Mapping[str, Any], rootfs: str, *, deferred: bool, seccomp_filter: CompiledFilter | None
) -> Plan:
    """The steps of `create`: namespaces, then init's filesystem, limits and process (or its wait)."""
    plan = Plan()
    linux = spec.get("linux", {})
    process = spec["process"]
    flags = 0
    for namespace in linux.get("namespaces", []):
        if namespace.get("path"):
            plan.add("setns", namespace["path"], NAMESPACE_FLAGS[namespace["type"]])
        else:
            flags |= NAMESPACE_FLAGS[namespace["type"]]
    if flags:
        plan.add("unshare", flags)
    if flags & sc.CLONE_NEWNET:
        # unshare(2) moved the process into the new network namespace already, where the kernel
        # leaves loopback down (network_namespaces(7)); every container expects it up.
        plan.add("loopback")
    plan.add("fork")
    plan.add("setsid")
    steps = RootfsSteps(spec, rootfs, plan)
    steps.prepare()
    if process.get("terminal"):
        steps.console()
    if not deferred:
        steps.create_cwd(process.get("cwd", "/"))
    steps.pivot()
    steps.finish()
    if spec.get("hostname"):
        plan.add("hostname", spec["hostname"])
    for key, value in linux.get("sysctl", {}).items():
        plan.add("write", "/proc/sys/" + key.replace(".", "/"), value)
    if process.get("terminal"):
        plan.add("hand-console")
    for limit in process.get("rlimits", []):
        if limit["type"] not in _RLIMITS:
            raise InvalidArgument(f"unknown rlimit {limit['type']}")
        plan.add("rlimit", _RLIMITS[limit["type"]], limit["soft"], limit["hard"])
    if process.get("oomScoreAdj") is not None:
        plan.add("write", "/proc/self/oom_score_adj", process["oomScoreAdj"])
    if deferred:
        plan.add("open-fifo")
        _finalize(plan, process, seccomp_filter)
        plan.add("ready")
        plan.add("stand-by")
    else:
        _process(plan, process, rootfs)
        plan.add("ready")
        plan.add("wait-start")
        _finalize(plan, process, seccomp_filter)
        plan.add("exec")
    return plan


def exec_plan(
    pid: int, types: list[str], process: Mapping[str, Any], seccomp_filter: CompiledFilter | None
) -> Plan:
    """The steps of `exec`: join the namespaces of the container's init `pid`, then the process."""
    plan = Plan()
    for kind, name in PROC_NS:
        if kind in types:
            plan.add("setns", f"/proc/{pid}/ns/{name}", NAMESPACE_FLAGS[kind])
    plan.add("fork")
    plan.add("setsid")
    if process.get("terminal"):
        plan.add("console", "/dev/pts")
        plan.add("hand-console")
    add_process(plan, process, seccomp_filter, f"/proc/{pid}/root")
    return plan


def add_process(plan: Plan, process: Mapping[str, Any], seccomp_filter: CompiledFilter | None, root: str) -> None:
    """The process's last steps once it is where it runs: look-up, "ready", confinement, execve.

    `root` is where the process's /etc/passwd is read for its HOME. After "ready" the runtime
    reads no more, so a later failure goes to the process's stderr.
    """
    _process(plan, process, root)
    plan.add("ready")
    plan.add("hang-up")
    _finalize(plan, process, seccomp_filter)
    plan.add("exec")


def _process(plan: Plan, process: Mapping[str, Any], root: str) -> None:
    """The process to exec, and the executable looked up (an error here fails the create, as in runc)."""
    add_process_step(plan, process, root)
    plan.add("look-up")


def add_process_step(plan: Plan, process: Mapping[str, Any], root: str) -> None:
    """The "process" step: working directory, arguments, environment (HOME from `root`'s /etc/passwd).

    It is all a standby's init is sent at start (see NativeRuntime.start).
    """
    args = [str(arg) for arg in process.get("args") or ()]
    if not args:
        raise InvalidArgument("process.args must not be empty")
    env = environ(process.get("env", []), int(process.get("user", {}).get("uid", 0)), root)
    plan.add("process", process.get("cwd", "/"), len(args), *args, *(f"{k}={v}" for k, v in env.items()))


def _finalize(plan: Plan, process: Mapping[str, Any], seccomp_filter: CompiledFilter | None) -> None:
    """The last steps before execve, in runc's order: bounding set, user, capabilities, no_new_privs,
    signals, seccomp; what `process_identity` (spec.py) holds decides them all.

    Without no_new_privs, loading a seccomp filter needs CAP_SYS_ADMIN (seccomp(2), EACCES), so
    then the filter goes in first, while the process still has every capability, as runc does.
    """
    no_new_privileges = bool(process.get("noNewPrivileges"))
    masks = capabilities.masks(process.get("capabilities", {}))
    user = process.get("user", {})
    uid = int(user.get("uid", 0))
    if seccomp_filter is not None and not no_new_privileges:
        plan.add("seccomp", seccomp_filter.flags, seccomp_filter.program.hex())
    plan.add("stdio-owner", uid)
    plan.add("bounding", capabilities.LAST_CAP, masks["bounding"])
    plan.add("user", uid, int(user.get("gid", 0)), ",".join(str(int(gid)) for gid in user.get("additionalGids", [])))
    plan.add("capabilities", *(masks[key] for key in ("bounding", "effective", "permitted", "inheritable", "ambient")))
    if no_new_privileges:
        plan.add("no-new-privileges")
    plan.add("default-signals")
    if seccomp_filter is not None and no_new_privileges:
        plan.add("seccomp", seccomp_filter.flags, seccomp_filter.program.hex())
