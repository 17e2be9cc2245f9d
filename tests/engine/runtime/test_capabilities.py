"""Capabilities, applied for real in forked children: pytest's own process is never confined.

The probes try what a user of a container would try (mount, chown, bind port 80, sethostname)
inside namespaces of the child's own, so that a probe that succeeds changes nothing on the host.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from containers.engine.errors import InvalidArgument, NotFound
from containers.engine.linux import syscalls
from containers.engine.runtime.capabilities import (
    ALL_CAPABILITIES,
    DEFAULT_CAPABILITIES,
    apply_process_capabilities,
    capability_numbers,
    current_capabilities,
    drop_bounding_set,
    keep_capabilities_across_setuid,
    set_no_new_privileges,
)

# What Docker puts in config.json's process.capabilities.
DOCKER_PROCESS_CAPABILITIES = {key: list(DEFAULT_CAPABILITIES) for key in ("bounding", "effective", "permitted")}

USER = 1000


def run_in_child(probe: Callable[[], Any]) -> Any:
    """Run `probe` in a forked child and return what it returned, which must be JSON-serialisable.

    The child reports through a pipe and leaves with os._exit(), so that nothing of pytest runs
    in it after the probe; an exception in the child fails the test with the child's traceback.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            try:
                payload = {"result": probe()}
            except BaseException:
                payload = {"error": traceback.format_exc()}
            with os.fdopen(write_fd, "w") as pipe:
                json.dump(payload, pipe)
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert report, f"the child died without reporting (wait status {status:#x})"
    payload = json.loads(report)
    if "error" in payload:
        pytest.fail(f"the child failed:\n{payload['error']}")
    return payload["result"]


def errno_of(call: Callable[[], object]) -> int:
    """Return 0 if `call` succeeds, else the errno of the OSError it raised."""
    try:
        call()
    except OSError as err:
        return err.errno or -1
    return 0


def isolate() -> None:
    """Move the calling child into mount, UTS and network namespaces of its own, private from the host's."""
    syscalls.unshare(syscalls.CLONE_NEWNS | syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWNET)
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)


def bind_port_80() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 80))


def probe_privileges(workdir: Path) -> dict[str, int]:
    """Try what Docker's default capabilities allow or forbid, and return each errno (0: it worked)."""
    owned = workdir / "owned"
    owned.touch()
    mountpoint = workdir / "mnt"
    mountpoint.mkdir()
    return {
        "mount": errno_of(lambda: syscalls.mount("tmpfs", mountpoint, "tmpfs")),
        "chown": errno_of(lambda: os.chown(owned, USER, USER)),
        "bind_80": errno_of(bind_port_80),
        "sethostname": errno_of(lambda: socket.sethostname("confined")),
    }


def sorted_sets() -> dict[str, list[str]]:
    return {key: sorted(names) for key, names in current_capabilities().items()}


def become_user(keep_capabilities: bool) -> None:
    """Switch the calling child to uid and gid 1000, as the container init does for `--user 1000`."""
    if keep_capabilities:
        keep_capabilities_across_setuid()
    os.setgroups([])
    os.setresgid(USER, USER, USER)
    os.setresuid(USER, USER, USER)


def test_default_capabilities_are_dockers() -> None:
    assert DEFAULT_CAPABILITIES == (
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
        "CAP_AUDIT_WRITE",
    )  # fmt: skip


def test_all_capabilities_stop_at_the_kernels_last() -> None:
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    assert max(ALL_CAPABILITIES.values()) <= last
    assert ALL_CAPABILITIES["CAP_CHOWN"] == 0
    assert ALL_CAPABILITIES["CAP_SYS_ADMIN"] == 21


def test_it_accepts_docker_cap_add_spellings() -> None:
    assert capability_numbers(["chown", "CAP_NET_ADMIN", "Cap_Kill", "sys_admin"]) == {0, 12, 5, 21}
    assert capability_numbers(["all"]) == set(ALL_CAPABILITIES.values())


def test_it_rejects_unknown_capabilities() -> None:
    with pytest.raises(InvalidArgument, match="^unknown capability CAP_FOO$"):
        capability_numbers(["CAP_CHOWN", "foo"])


def test_it_reads_the_five_sets_of_a_process() -> None:
    sets = current_capabilities(os.getpid())

    assert set(sets) == {"bounding", "effective", "permitted", "inheritable", "ambient"}
    assert sets == current_capabilities()


def test_it_reports_a_missing_process() -> None:
    with pytest.raises(NotFound, match="^process 0: not found$"):
        current_capabilities(0)


def test_it_checks_every_name_before_changing_anything() -> None:
    def probe() -> dict[str, Any]:
        before = sorted_sets()
        try:
            apply_process_capabilities({"bounding": ["CAP_CHOWN"], "effective": ["CAP_NOPE"]})
        except InvalidArgument as err:
            return {"error": str(err), "unchanged": sorted_sets() == before}
        return {"error": None}

    assert run_in_child(probe) == {"error": "unknown capability CAP_NOPE", "unchanged": True}


def test_no_new_privileges_shows_in_proc_status() -> None:
    def probe() -> str:
        set_no_new_privileges()
        status = Path("/proc/self/status").read_text()
        return next(line for line in status.splitlines() if line.startswith("NoNewPrivs:"))

    assert run_in_child(probe).split() == ["NoNewPrivs:", "1"]


@pytest.mark.requires("root")
def test_root_can_do_all_the_probes_unconfined(tmp_path: Path) -> None:
    def probe() -> dict[str, int]:
        isolate()
        return probe_privileges(tmp_path)

    assert run_in_child(probe) == {"mount": 0, "chown": 0, "bind_80": 0, "sethostname": 0}, (
        "without confinement root should pass every probe, or the confined test proves nothing"
    )


@pytest.mark.requires("root")
def test_docker_default_capabilities_confine_root(tmp_path: Path) -> None:
    def probe() -> dict[str, Any]:
        isolate()
        apply_process_capabilities(DOCKER_PROCESS_CAPABILITIES)
        return {"sets": sorted_sets(), **probe_privileges(tmp_path)}

    result = run_in_child(probe)

    default = sorted(DEFAULT_CAPABILITIES)
    assert result.pop("sets") == {
        "bounding": default, "effective": default, "permitted": default, "inheritable": [], "ambient": [],
    }, "/proc/self/status should show exactly Docker's default set"  # fmt: skip
    assert result == {"mount": errno.EPERM, "chown": 0, "bind_80": 0, "sethostname": errno.EPERM}, (
        "mount and sethostname need CAP_SYS_ADMIN, which Docker does not give; CAP_CHOWN and "
        "CAP_NET_BIND_SERVICE it does"
    )


@pytest.mark.requires("root")
def test_a_user_keeps_the_default_set_across_setuid(tmp_path: Path) -> None:
    owned = tmp_path / "owned"
    owned.touch()

    def probe() -> dict[str, Any]:
        become_user(keep_capabilities=True)
        apply_process_capabilities(DOCKER_PROCESS_CAPABILITIES)
        return {
            "uid": os.getuid(),
            "effective": sorted_sets()["effective"],
            "chown": errno_of(lambda: os.chown(owned, 0, 0)),
        }

    assert run_in_child(probe) == {"uid": USER, "effective": sorted(DEFAULT_CAPABILITIES), "chown": 0}


@pytest.mark.requires("root")
def test_a_user_cannot_get_capabilities_back_without_keepcaps() -> None:
    def probe() -> int:
        become_user(keep_capabilities=False)
        return errno_of(lambda: apply_process_capabilities(DOCKER_PROCESS_CAPABILITIES))

    assert run_in_child(probe) == errno.EPERM, "setuid(2) without PR_SET_KEEPCAPS should have emptied the permitted set"


@pytest.mark.requires("root")
def test_ambient_capabilities_reach_a_users_program() -> None:
    caps = {key: ["CAP_NET_BIND_SERVICE"] for key in ("bounding", "effective", "permitted", "inheritable", "ambient")}

    def probe() -> str:
        become_user(keep_capabilities=True)
        apply_process_capabilities(caps)
        status = subprocess.run(["cat", "/proc/self/status"], capture_output=True, text=True, check=True).stdout
        return next(line for line in status.splitlines() if line.startswith("CapEff:"))

    effective = int(run_in_child(probe).split()[1], 16)
    assert effective == 1 << ALL_CAPABILITIES["CAP_NET_BIND_SERVICE"], (
        "a non-root program keeps across execve(2) only its ambient capabilities"
    )


@pytest.mark.requires("root")
def test_dropping_the_bounding_set_leaves_the_effective_set_alone() -> None:
    def probe() -> dict[str, Any]:
        before = sorted_sets()["effective"]
        drop_bounding_set(["chown"])
        after = sorted_sets()
        return {"bounding": after["bounding"], "effective_kept": after["effective"] == before}

    assert run_in_child(probe) == {"bounding": ["CAP_CHOWN"], "effective_kept": True}, (
        "the bounding set limits what execve(2) can grant, not what the thread holds now"
    )
