"""Seccomp confinement: Docker's default profile, made into a container's filter and loaded.

Two formats meet here:

- a *profile*, moby's format (profiles/seccomp/default.json): a default action, an `archMap`,
  and groups of syscalls, each applying only to containers that hold (`includes.caps`) or lack
  (`excludes.caps`) some capabilities, run on some architectures, or on a kernel at least
  `minKernel`;
- the OCI `linux.seccomp` object of config.json: one profile resolved for one container, which
  is what Docker writes and runc reads.

`docker_default()` and `convert_profile()` turn the first into the second as moby's
`setupSeccomp` does; `build_filter()` turns the second into a libseccomp filter as runc's
`InitSeccomp` does; `compile_filter()` exports it as the BPF program the container's init
(init.c) installs in the kernel.

When to load (runc libcontainer/standard_init_linux.go): installing a filter needs no_new_privs
or CAP_SYS_ADMIN (seccomp(2), EACCES). With `process.noNewPrivileges`, the init sets
no_new_privs and loads the filter last, right before execve(2), so that the fewest of its own
syscalls must pass it. Without it, which is Docker's default, the init loads the filter before
it drops capabilities, while it still holds CAP_SYS_ADMIN; the profile allows what follows
(setuid, capset, prctl, execve).
"""

from __future__ import annotations

import errno
import functools
import json
import os
import platform
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pyseccomp as seccomp

from containers.engine.errors import InvalidArgument, Unavailable
from containers.engine.runtime.capabilities import canonical_name

Profile = Mapping[str, Any]

# Actions of the OCI spec (config-linux.md, "Seccomp") and the libseccomp action of each;
# runc's getAction.
_ACTIONS: dict[str, int] = {
    "SCMP_ACT_KILL": seccomp.KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": seccomp.KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": seccomp.KILL_PROCESS,
    "SCMP_ACT_TRAP": seccomp.TRAP,
    "SCMP_ACT_ALLOW": seccomp.ALLOW,
    "SCMP_ACT_LOG": seccomp.LOG,
}
# Actions that carry a return code: errnoRet, or EPERM when it is unset, as in runc.
_ACTIONS_WITH_ERRNO: dict[str, Callable[[int], int]] = {
    "SCMP_ACT_ERRNO": seccomp.ERRNO,
    "SCMP_ACT_TRACE": seccomp.TRACE,
}

_OPERATORS: dict[str, int] = {
    "SCMP_CMP_NE": seccomp.NE,
    "SCMP_CMP_LT": seccomp.LT,
    "SCMP_CMP_LE": seccomp.LE,
    "SCMP_CMP_EQ": seccomp.EQ,
    "SCMP_CMP_GE": seccomp.GE,
    "SCMP_CMP_GT": seccomp.GT,
    "SCMP_CMP_MASKED_EQ": seccomp.MASKED_EQ,
}

_ARCHES: dict[str, int] = {f"SCMP_ARCH_{name}": value for name, value in vars(seccomp.Arch).items() if name.isupper()}

# Filter flags of the OCI spec and the libseccomp attribute that asks for each (seccomp_attr_set(3)).
_FLAGS: dict[str, int] = {
    "SECCOMP_FILTER_FLAG_TSYNC": seccomp.Attr.CTL_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": seccomp.Attr.CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": seccomp.Attr.CTL_SSB,
}

# syscalls take at most six arguments (syscall(2)).
_MAX_ARGUMENTS = 6

# What seccomp_syscall_resolve_name(3) returns for a name it does not know (__NR_SCMP_ERROR).
_NR_SCMP_ERROR = -1

# `uname -m` -> the architecture name moby's profiles use in includes/excludes (moby goToNative,
# keyed by the GOARCH of a daemon built for that machine).
_MOBY_ARCHES = {
    "x86_64": "amd64", "i386": "x86", "i686": "x86", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm",
    "ppc64le": "ppc64le", "s390x": "s390x",
}  # fmt: skip

# moby's architecture name -> the filter architecture whose archMap entry applies (moby nativeToSeccomp).
_MOBY_ARCH_TO_SECCOMP = {
    "x86": "SCMP_ARCH_X86", "amd64": "SCMP_ARCH_X86_64", "arm": "SCMP_ARCH_ARM", "arm64": "SCMP_ARCH_AARCH64",
    "mips64": "SCMP_ARCH_MIPS64", "mips64n32": "SCMP_ARCH_MIPS64N32", "mipsel64": "SCMP_ARCH_MIPSEL64",
    "mips3l64n32": "SCMP_ARCH_MIPSEL64N32", "mipsle": "SCMP_ARCH_MIPSEL", "ppc": "SCMP_ARCH_PPC",
    "ppc64": "SCMP_ARCH_PPC64", "ppc64le": "SCMP_ARCH_PPC64LE", "s390": "SCMP_ARCH_S390", "s390x": "SCMP_ARCH_S390X",
}  # fmt: skip


def default_profile_path() -> Path:
    """Return where `make` installs Docker's default profile: `<sys.prefix>/share/webengine/seccomp/default.json`."""
    return Path(sys.prefix, "share", "webengine", "seccomp", "default.json")


def docker_default(capabilities: Iterable[str], arch: str | None = None) -> dict[str, Any]:
    """Return the OCI `linux.seccomp` object Docker gives a container with these capabilities.

    This is moby's `seccomp.GetDefaultProfile`: Docker's default profile resolved for a container
    whose bounding set is `capabilities`, on the machine `arch` (as `uname -m` prints it; this
    machine by default). Raises Unavailable when the profile is not installed.

    The result is shared by every container with these capabilities (converting takes about
    0.25 ms, on every create): callers copy what they change.
    """
    caps = frozenset(canonical_name(name) for name in capabilities)
    return _docker_default(default_profile_path(), caps, arch or platform.machine())


@functools.lru_cache(maxsize=16)
def _docker_default(path: Path, capabilities: frozenset[str], arch: str) -> dict[str, Any]:
    return convert_profile(_read_profile(path), capabilities, arch)


@functools.lru_cache(maxsize=4)
def _read_profile(path: Path) -> Profile:
    """Return the parsed profile at `path`, read once per process; `convert_profile()` copies what it uses."""
    try:
        with path.open() as f:
            profile: Profile = json.load(f)
    except FileNotFoundError as err:
        raise Unavailable(f"docker's default seccomp profile is not installed at {path}: run make") from err
    return profile


def convert_profile(profile: Profile, capabilities: Iterable[str], arch: str | None = None) -> dict[str, Any]:
    """Resolve a moby-format `profile` into the OCI `linux.seccomp` object for one container.

    As moby's `setupSeccomp` does: the architectures are the profile's `architectures`, or the
    `archMap` entry of `arch` with its sub-architectures; a syscall group is kept only if the
    container's `capabilities` (its bounding set), `arch` and the running kernel meet its
    `includes` and none of its `excludes`. Actions, arguments and `errnoRet` are kept as they are.
    """
    if "defaultAction" not in profile:
        raise InvalidArgument("seccomp profile: defaultAction is missing")
    if profile.get("architectures") and profile.get("archMap"):
        raise InvalidArgument("seccomp profile: 'architectures' and 'archMap' were both specified, use either")
    caps = {canonical_name(name) for name in capabilities}
    moby_arch = _MOBY_ARCHES.get(arch or platform.machine(), "")

    oci: dict[str, Any] = {"defaultAction": profile["defaultAction"]}
    if profile.get("defaultErrnoRet") is not None:
        oci["defaultErrnoRet"] = profile["defaultErrnoRet"]
    architectures = list(profile.get("architectures") or ()) + _mapped_architectures(profile, moby_arch)
    if architectures:
        oci["architectures"] = architectures
    syscalls = [_oci_syscall(call) for call in profile.get("syscalls") or () if _applies(call, caps, moby_arch)]
    if syscalls:
        oci["syscalls"] = syscalls
    return oci


def _mapped_architectures(profile: Profile, moby_arch: str) -> list[str]:
    """Return the `archMap` entry for `moby_arch`: its architecture, then its sub-architectures."""
    main = _MOBY_ARCH_TO_SECCOMP.get(moby_arch)
    if main is None:
        return []
    for entry in profile.get("archMap") or ():
        if entry["architecture"] == main:
            return [main, *(entry.get("subArchitectures") or ())]
    return []


def _applies(call: Profile, caps: set[str], moby_arch: str) -> bool:
    """Tell whether a profile's syscall group applies to a container, by its includes and excludes."""
    includes = call.get("includes") or {}
    excludes = call.get("excludes") or {}
    excluded = (
        moby_arch in (excludes.get("arches") or ())
        or not caps.isdisjoint(excludes.get("caps") or ())
        or (bool(excludes.get("minKernel")) and _kernel_at_least(excludes["minKernel"]))
    )
    included = (
        (not includes.get("arches") or moby_arch in includes["arches"])
        and caps.issuperset(includes.get("caps") or ())
        and (not includes.get("minKernel") or _kernel_at_least(includes["minKernel"]))
    )
    return included and not excluded


def _kernel_at_least(version: str) -> bool:
    """Tell whether the running kernel is at least `version`, written `<kernel>.<major>` as in moby."""
    match = re.fullmatch(r"(\d+)\.(\d+)", version)
    if match is None:
        raise InvalidArgument(f'seccomp profile: invalid kernel version {version!r}, expected "<kernel>.<major>"')
    return _running_kernel() >= (int(match[1]), int(match[2]))


@functools.cache
def _running_kernel() -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", os.uname().release)
    if match is None:
        raise Unavailable(f"kernel release {os.uname().release!r}: cannot read its version")
    return int(match[1]), int(match[2])


def _oci_syscall(call: Profile) -> dict[str, Any]:
    """Return a profile's syscall group as an OCI syscall rule, its keys in the order Docker writes them."""
    if call.get("name") and call.get("names"):
        raise InvalidArgument("seccomp profile: 'name' and 'names' were both specified, use either")
    rule: dict[str, Any] = {"names": [call["name"]] if call.get("name") else list(call.get("names") or ())}
    rule["action"] = call["action"]
    if call.get("errnoRet") is not None:
        rule["errnoRet"] = call["errnoRet"]
    args = [_oci_arg(arg) for arg in call.get("args") or ()]
    if args:
        rule["args"] = args
    return rule


def _oci_arg(arg: Profile) -> dict[str, Any]:
    oci: dict[str, Any] = {"index": arg["index"], "value": arg.get("value", 0)}
    if arg.get("valueTwo"):
        oci["valueTwo"] = arg["valueTwo"]
    oci["op"] = arg["op"]
    return oci


def build_filter(linux_seccomp: Profile) -> seccomp.SyscallFilter:
    """Return a libseccomp filter for the OCI `linux.seccomp` object, ready to `load()`.

    As runc's `InitSeccomp` does: the default action (`SCMP_ACT_ERRNO` returns EPERM unless
    `defaultErrnoRet` says otherwise), the architectures, the flags, and one rule per syscall
    name, whose argument comparisons must all hold (but several comparisons of the same argument
    need only one to hold, as in runc). A name that this libseccomp does not know is skipped, so
    that a profile can list syscalls newer than the library.

    Raises InvalidArgument for an action, operator, architecture or flag it does not know.
    """
    default = _action(linux_seccomp.get("defaultAction", ""), linux_seccomp.get("defaultErrnoRet"))
    syscalls = linux_seccomp.get("syscalls") or ()
    flt = seccomp.SyscallFilter(default)
    # libseccomp reports a failed seccomp(2) as ECANCELED unless asked for the kernel's errno
    # (seccomp_attr_set(3), SCMP_FLTATR_API_SYSRAWRC); `load()` needs the errno.
    flt.set_attr(seccomp.Attr.API_SYSRAWRC, 1)
    # libseccomp sets no_new_privs itself when loading (SCMP_FLTATR_CTL_NNP); runc turns that off
    # so that no_new_privs stays what `process.noNewPrivileges` says.
    flt.set_attr(seccomp.Attr.CTL_NNP, 0)
    for name in linux_seccomp.get("architectures") or ():
        arch = _lookup(_ARCHES, name, "architecture")
        if not flt.exist_arch(arch):
            flt.add_arch(arch)
    for name in linux_seccomp.get("flags") or ():
        flt.set_attr(_lookup(_FLAGS, name, "flag"), 1)
    # A binary tree of syscall numbers instead of a linear list, as runc asks for above 32 rules;
    # libseccomp up to 2.5.4 builds a wrong tree for a filter without rules.
    if sum(len(call.get("names") or ()) for call in syscalls) > 32:
        flt.set_attr(seccomp.Attr.CTL_OPTIMIZE, 2)
    for call in syscalls:
        _add_rules(flt, call, default)
    return flt


def _lookup(table: Mapping[str, int], name: str, kind: str) -> int:
    if name not in table:
        raise InvalidArgument(f"seccomp {kind} {name!r}: unknown")
    return table[name]


def _action(name: str, errno_ret: int | None) -> int:
    """Return the libseccomp action for an OCI action name and its optional errnoRet."""
    if name in _ACTIONS_WITH_ERRNO:
        return _ACTIONS_WITH_ERRNO[name](errno.EPERM if errno_ret is None else errno_ret)
    if name == "SCMP_ACT_NOTIFY":
        raise InvalidArgument("seccomp action 'SCMP_ACT_NOTIFY': not supported by this runtime")
    return _lookup(_ACTIONS, name, "action")


def _add_rules(flt: seccomp.SyscallFilter, call: Profile, default: int) -> None:
    """Add the rules of one OCI syscall entry: one per name, the same action and comparisons."""
    action = _action(call.get("action", ""), call.get("errnoRet"))
    if action == default:
        # libseccomp refuses a rule whose action is the default one (EACCES); it would change nothing.
        return
    args = call.get("args") or ()
    conditions = [_condition(arg) for arg in args]
    indexes = [arg["index"] for arg in args]
    for name in call.get("names") or ():
        number = seccomp.resolve_syscall(seccomp.Arch.NATIVE, name)
        if number == _NR_SCMP_ERROR:
            continue
        try:
            if len(set(indexes)) < len(indexes):
                # libseccomp cannot AND two comparisons of the same argument (EINVAL); runc then
                # adds one rule per comparison, which ORs them.
                for condition in conditions:
                    flt.add_rule(action, number, condition)
            else:
                flt.add_rule(action, number, *conditions)
        except OSError as err:
            raise InvalidArgument(f"seccomp rule for syscall {name}: {err.strerror.lower()}") from err


def _condition(arg: Profile) -> seccomp.Arg:
    """Return the libseccomp comparison for an OCI argument; for MASKED_EQ, `value` is the mask."""
    index = arg["index"]
    if not 0 <= index < _MAX_ARGUMENTS:
        raise InvalidArgument(f"seccomp argument index {index}: syscalls take at most {_MAX_ARGUMENTS} arguments")
    return seccomp.Arg(index, _lookup(_OPERATORS, arg["op"], "operator"), arg.get("value", 0), arg.get("valueTwo", 0))


class CompiledFilter:
    """A filter compiled to classic BPF once, then installed with one seccomp(2) in each container.

    libseccomp compiles the whole program inside `seccomp_load()`: about 13 ms for Docker's
    profile, on every container start. Compiled once (`compile_filter`, cached by profile), the
    program installs in microseconds (init.c, SECCOMP_SET_MODE_FILTER). The profile's flags
    (TSYNC, LOG, SPEC_ALLOW) are seccomp(2)'s own, not part of the program.
    """

    def __init__(self, program: bytes, flags: int) -> None:
        self.program = program
        self.flags = flags


# <linux/seccomp.h>
_FLAG_BITS = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2, "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4}
_compiled: dict[str, CompiledFilter] = {}


def compile_filter(linux_seccomp: Profile) -> CompiledFilter:
    """Return the filter for `linux_seccomp` compiled to BPF, from a per-process cache."""
    key = json.dumps(linux_seccomp, sort_keys=True)
    if key in _compiled:
        return _compiled[key]
    flt = build_filter(linux_seccomp)
    flags = 0
    for name in linux_seccomp.get("flags") or ():
        flags |= _FLAG_BITS[name]
    fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "wb") as out:
            flt.export_bpf(out)
        os.lseek(fd, 0, os.SEEK_SET)
        program = b""
        while chunk := os.read(fd, 1 << 16):
            program += chunk
    finally:
        os.close(fd)
    compiled = _compiled[key] = CompiledFilter(program, flags)
    return compiled
