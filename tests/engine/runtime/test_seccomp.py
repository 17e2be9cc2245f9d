"""Seccomp: Docker's default profile as a dict, then filters loaded for real by webengine-init.

Filters are compiled in pytest's process, as the runtime compiles them, and loaded by
webengine-init in a probe process (confined.py); pytest's own process is never filtered.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from containers.engine.errors import InvalidArgument, Unavailable
from containers.engine.linux import syscalls
from containers.engine.runtime.capabilities import DEFAULT_CAPABILITIES
from containers.engine.runtime.seccomp import build_filter, convert_profile, default_profile_path, docker_default
from tests.engine.runtime.confined import run_confined
from tests.engine.runtime.test_capabilities import DOCKER_PROCESS_CAPABILITIES

# Arguments of the probed syscalls, from <linux/keyctl.h>, <linux/personality.h>, <linux/ptrace.h>.
KEYCTL_GET_KEYRING_ID = 0
KEY_SPEC_SESSION_KEYRING = -3
PERSONALITY_QUERY = 0xFFFFFFFF
ADDR_NO_RANDOMIZE = 0x0040000
PTRACE_ATTACH = 16

X86_64 = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]


def allowed(profile: dict[str, Any]) -> set[str]:
    """Return the syscalls a profile allows whatever their arguments."""
    return {
        name
        for rule in profile["syscalls"]
        if rule["action"] == "SCMP_ACT_ALLOW" and "args" not in rule
        for name in rule["names"]
    }


def rules_for(profile: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [rule for rule in profile["syscalls"] if name in rule["names"]]


def test_default_profile_lives_under_sys_prefix() -> None:
    assert default_profile_path() == Path(sys.prefix) / "share/webengine/seccomp/default.json"


def test_it_asks_to_run_make_when_the_profile_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "prefix", str(tmp_path))

    with pytest.raises(
        Unavailable, match=f"^docker's default seccomp profile is not installed at {tmp_path}/.*: run make$"
    ):
        docker_default(DEFAULT_CAPABILITIES)


@pytest.mark.parametrize(
    ("machine", "architectures"),
    [
        ("x86_64", X86_64),
        ("aarch64", ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]),
        ("s390x", ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"]),
    ],
)
def test_it_adds_the_archmap_entry_of_the_machine(machine: str, architectures: list[str]) -> None:
    assert docker_default(DEFAULT_CAPABILITIES, machine)["architectures"] == architectures


def test_a_machine_without_archmap_entry_gets_only_its_native_architecture() -> None:
    assert "architectures" not in docker_default(DEFAULT_CAPABILITIES, "riscv64"), (
        "Docker 20.10 has no riscv64 entry: libseccomp then filters the native architecture only"
    )


def test_it_includes_syscalls_by_architecture() -> None:
    x86_64 = allowed(docker_default(DEFAULT_CAPABILITIES, "x86_64"))
    aarch64 = allowed(docker_default(DEFAULT_CAPABILITIES, "aarch64"))

    assert {"arch_prctl", "modify_ldt"} <= x86_64
    assert "set_tls" not in x86_64
    assert "set_tls" in aarch64
    assert "arch_prctl" not in aarch64


def test_sys_admin_allows_mount_unshare_and_any_clone() -> None:
    default = docker_default(DEFAULT_CAPABILITIES)
    admin = docker_default([*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"])

    assert not {"mount", "umount2", "unshare", "setns"} & allowed(default)
    assert {"mount", "umount2", "unshare", "setns", "clone", "clone3"} <= allowed(admin)
    assert rules_for(default, "clone") == [
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 0x7E020000, "op": "SCMP_CMP_MASKED_EQ"}],
        }
    ], "without CAP_SYS_ADMIN, clone is allowed only without CLONE_NEW* flags"
    assert all("args" not in rule for rule in rules_for(admin, "clone"))


def test_it_keeps_errno_ret() -> None:
    assert rules_for(docker_default(DEFAULT_CAPABILITIES, "x86_64"), "clone3") == [
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS}
    ], "clone3 must fail with ENOSYS so that glibc falls back to clone, whose flags the profile can check"


def test_it_accepts_docker_spellings_of_capabilities() -> None:
    assert docker_default(["sys_admin", "Chown"]) == docker_default(["CAP_SYS_ADMIN", "CAP_CHOWN"])


def test_capabilities_add_their_syscalls() -> None:
    default = allowed(docker_default(DEFAULT_CAPABILITIES))
    ptrace = allowed(docker_default([*DEFAULT_CAPABILITIES, "CAP_SYS_PTRACE"]))

    assert ptrace - default == {"kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev"}
    assert "ptrace" in default, "from kernel 4.8 on, the profile allows ptrace; the missing CAP_SYS_PTRACE confines it"


def test_it_resolves_a_custom_profile_like_moby() -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.EACCES,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"name": "getpid", "action": "SCMP_ACT_ALLOW", "args": None},
            {"names": ["old"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
            {"names": ["new"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "99.0"}},
            {"names": ["not_here"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64"]}},
            {"names": ["both"], "action": "SCMP_ACT_LOG", "includes": {"caps": ["CAP_A", "CAP_B"]}},
            {"names": ["ranged"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
             "args": [{"index": 1, "value": 0xF0, "valueTwo": 0x10, "op": "SCMP_CMP_MASKED_EQ"}]},
        ],
    }  # fmt: skip

    assert convert_profile(profile, ["a", "b"], "x86_64") == {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.EACCES,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["new"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["both"], "action": "SCMP_ACT_LOG"},
            {"names": ["ranged"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
             "args": [{"index": 1, "value": 0xF0, "valueTwo": 0x10, "op": "SCMP_CMP_MASKED_EQ"}]},
        ],
    }  # fmt: skip
    assert ["both"] not in [rule["names"] for rule in convert_profile(profile, ["a"], "x86_64")["syscalls"]], (
        "a group that includes two capabilities needs both"
    )


def test_it_refuses_both_architectures_and_archmap() -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"], "archMap": [{}]}

    with pytest.raises(InvalidArgument, match="'architectures' and 'archMap' were both specified"):
        convert_profile(profile, [])


ALLOW = {"defaultAction": "SCMP_ACT_ALLOW"}
SEVENTH_ARGUMENT = {
    "names": ["read"],
    "action": "SCMP_ACT_ERRNO",
    "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}],
}


@pytest.mark.parametrize(
    ("linux_seccomp", "message"),
    [
        ({"defaultAction": "SCMP_ACT_MAYBE"}, "seccomp action 'SCMP_ACT_MAYBE': unknown"),
        ({"defaultAction": "SCMP_ACT_NOTIFY"}, "seccomp action 'SCMP_ACT_NOTIFY': not supported by this runtime"),
        ({**ALLOW, "architectures": ["SCMP_ARCH_Z80"]}, "seccomp architecture 'SCMP_ARCH_Z80': unknown"),
        ({**ALLOW, "flags": ["SECCOMP_FILTER_FLAG_FAST"]}, "seccomp flag 'SECCOMP_FILTER_FLAG_FAST': unknown"),
        ({**ALLOW, "syscalls": [SEVENTH_ARGUMENT]}, "seccomp argument index 6: syscalls take at most 6 arguments"),
    ],
)
def test_it_rejects_what_it_cannot_build(linux_seccomp: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=f"^{message}$"):
        build_filter(linux_seccomp)


def test_rules_match_names_and_arguments(tmp_path: Path) -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["no_such_syscall", "mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EROFS},
            {"names": ["ftruncate"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 1, "value": 0xF0, "valueTwo": 0x10, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOTSUP,
             "args": [{"index": 0, "value": os.getpid(), "op": "SCMP_CMP_EQ"},
                      {"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["fchmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EDOM,
             "args": [{"index": 1, "value": 0o600, "op": "SCMP_CMP_EQ"},
                      {"index": 1, "value": 0o640, "op": "SCMP_CMP_EQ"}]},
        ],
    }  # fmt: skip
    code = f"""
with open({str(tmp_path / "file")!r}, "w") as f:
    print(json.dumps({{
        "mkdir": errno_of(lambda: os.mkdir({str(tmp_path / "dir")!r})),
        "ftruncate_0x13": errno_of(lambda: os.ftruncate(f.fileno(), 0x13)),
        "ftruncate_0x23": errno_of(lambda: os.ftruncate(f.fileno(), 0x23)),
        "kill_parent_0": errno_of(lambda: os.kill(os.getppid(), 0)),
        "kill_self_0": errno_of(lambda: os.kill(os.getpid(), 0)),
        "fchmod_600": errno_of(lambda: os.fchmod(f.fileno(), 0o600)),
        "fchmod_640": errno_of(lambda: os.fchmod(f.fileno(), 0o640)),
        "fchmod_644": errno_of(lambda: os.fchmod(f.fileno(), 0o644)),
    }}))
"""

    assert run_confined(code, {"noNewPrivileges": True}, profile) == {
        "mkdir": errno.EROFS,  # errnoRet is returned; the unknown syscall name is skipped
        "ftruncate_0x13": errno.EPERM,  # 0x13 & 0xF0 == 0x10, and EPERM without errnoRet
        "ftruncate_0x23": 0,
        "kill_parent_0": errno.ENOTSUP,  # both comparisons hold (pytest is the probe's parent)
        "kill_self_0": 0,  # only one does: comparisons of different arguments are ANDed
        "fchmod_600": errno.EDOM,  # two comparisons of one argument are ORed, as in runc
        "fchmod_640": errno.EDOM,
        "fchmod_644": 0,
    }


@pytest.mark.parametrize("no_new_privileges", [True, False])
def test_the_default_profile_filters_the_process(no_new_privileges: bool) -> None:
    code = f"""
status = open("/proc/self/status").read().splitlines()
print(json.dumps({{
    "mode": next(line.split()[1] for line in status if line.startswith("Seccomp:")),
    "keyctl": syscall_errno("keyctl", {KEYCTL_GET_KEYRING_ID}, {KEY_SPEC_SESSION_KEYRING}, 0),
}}))
"""
    process = {"noNewPrivileges": no_new_privileges, "capabilities": DOCKER_PROCESS_CAPABILITIES}

    assert run_confined(code, process, docker_default(DEFAULT_CAPABILITIES)) == {"mode": "2", "keyctl": errno.EPERM}, (
        "mode 2 is SECCOMP_MODE_FILTER (proc(5)); without no_new_privs it is loaded while init may still"
    )


# Tries, as root in namespaces of its own, what Docker's profile allows or forbids; prints each errno.
PROBE_DOCKER_DEFAULT = f"""
workdir = os.environ["WORKDIR"]
mountpoint = os.path.join(workdir, "mnt")
os.mkdir(mountpoint)

def mount_tmpfs():
    if _libc.mount(b"tmpfs", mountpoint.encode(), b"tmpfs", 0, None) != 0:
        raise OSError(ctypes.get_errno(), "mount")

def write_and_read():
    path = os.path.join(workdir, "file")
    with open(path, "w") as f:
        f.write("hello")
    assert open(path).read() == "hello"

def fork_and_exit():
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    return pid

def exit_status_of(pid):
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

print(json.dumps({{
    "mount": errno_of(mount_tmpfs),
    "keyctl": syscall_errno("keyctl", {KEYCTL_GET_KEYRING_ID}, {KEY_SPEC_SESSION_KEYRING}, 0),
    "personality_query": syscall_errno("personality", {PERSONALITY_QUERY}),
    "personality_no_randomize": syscall_errno("personality", {ADDR_NO_RANDOMIZE}),
    "clone3": syscall_errno("clone3", 0, 0),
    "file_io": errno_of(write_and_read),
    "fork": exit_status_of(fork_and_exit()),
    "posix_spawn_true": exit_status_of(os.posix_spawn("/bin/true", ["true"], os.environ)),
    # Last: in a new user namespace without a uid map, the process is root no more.
    "unshare_user": syscall_errno("unshare", {syscalls.CLONE_NEWUSER}),
}}))
"""


def probe_docker_default(workdir: Path, profile: dict[str, Any] | None) -> dict[str, int]:
    env = [f"PATH={os.environ['PATH']}", f"PYTHONPATH={os.pathsep.join(sys.path)}", f"WORKDIR={workdir}"]
    return run_confined(PROBE_DOCKER_DEFAULT, {"env": env, "noNewPrivileges": True}, profile)


@pytest.mark.requires("root")
def test_root_can_do_all_the_probes_unfiltered(tmp_path: Path) -> None:
    result = probe_docker_default(tmp_path, None)

    assert result.pop("keyctl") != errno.EPERM
    assert result.pop("clone3") == errno.EINVAL, "clone3 without arguments is refused by the kernel itself"
    assert result == {
        "mount": 0, "personality_query": 0, "personality_no_randomize": 0, "file_io": 0, "fork": 7,
        "posix_spawn_true": 0, "unshare_user": 0,
    }, "without the filter root should pass every probe, or the filtered test proves nothing"  # fmt: skip


@pytest.mark.requires("root")
def test_docker_default_profile_blocks_what_docker_blocks(tmp_path: Path) -> None:
    result = probe_docker_default(tmp_path, docker_default(DEFAULT_CAPABILITIES))

    assert result == {
        "mount": errno.EPERM,
        "keyctl": errno.EPERM,
        "personality_query": 0,
        "personality_no_randomize": errno.EPERM,
        "clone3": errno.ENOSYS,
        "file_io": 0,
        "fork": 7,
        "posix_spawn_true": 0,  # glibc tries clone3, gets ENOSYS, and falls back to clone
        "unshare_user": errno.EPERM,
    }


@pytest.mark.requires("root")
def test_docker_confinement_forbids_ptrace_attach() -> None:
    with subprocess.Popen(["sleep", "60"]) as target:
        code = f'print(json.dumps(syscall_errno("ptrace", {PTRACE_ATTACH}, {target.pid}, 0, 0)))'
        try:
            confined = run_confined(
                code, {"capabilities": DOCKER_PROCESS_CAPABILITIES}, docker_default(DEFAULT_CAPABILITIES)
            )
            unconfined = run_confined(code)
        finally:
            target.kill()

    assert unconfined == 0, "root with every capability should be able to attach, or this test proves nothing"
    assert confined == errno.EPERM, "without CAP_SYS_PTRACE, a container must not attach to a more privileged process"
