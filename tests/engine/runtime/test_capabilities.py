"""Capabilities: names and masks, then sets applied for real by webengine-init to a probe process.

The probes (confined.py) try what a user of a container would try (mount, chown, bind port 80,
sethostname) inside namespaces of their own, so that a probe that succeeds changes nothing on the host.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from containers.engine.errors import InvalidArgument, NotFound
from containers.engine.runtime.capabilities import (
    ALL_CAPABILITIES,
    DEFAULT_CAPABILITIES,
    capability_numbers,
    current_capabilities,
    masks,
)
from tests.engine.runtime.confined import HELD_CAPABILITIES, run_confined

# What Docker puts in config.json's process.capabilities.
DOCKER_PROCESS_CAPABILITIES = {key: list(DEFAULT_CAPABILITIES) for key in ("bounding", "effective", "permitted")}

USER = 1000

# Prints the five sets and what the privileged calls of a container's user give (errno, 0: done).
PROBE_PRIVILEGES = """
workdir = os.environ["WORKDIR"]
owned = os.path.join(workdir, "owned")
mountpoint = os.path.join(workdir, "mnt")
os.mkdir(mountpoint)

def bind_80():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 80))

def mount_tmpfs():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"tmpfs", mountpoint.encode(), b"tmpfs", 0, None) != 0:
        raise OSError(ctypes.get_errno(), "mount")

status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
print(json.dumps({
    "sets": {key: status[key].strip() for key in ("CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb")},
    "mount": errno_of(mount_tmpfs),
    "chown": errno_of(lambda: os.chown(owned, 1000, 1000)),
    "bind_80": errno_of(bind_80),
    "sethostname": errno_of(lambda: socket.sethostname("confined")),
}))
"""


def hex_mask(names: list[str] | tuple[str, ...]) -> str:
    """A set as /proc/<pid>/status shows it (CapEff: 00000000a80425fb)."""
    return f"{sum(1 << ALL_CAPABILITIES[name] for name in names):016x}"


def probe_privileges(workdir: Path, process: dict[str, Any]) -> dict[str, Any]:
    (workdir / "owned").touch()
    env = [f"PATH={os.environ['PATH']}", f"PYTHONPATH={os.pathsep.join(sys.path)}", f"WORKDIR={workdir}"]
    return run_confined(PROBE_PRIVILEGES, {**process, "env": env})


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


def test_masks_are_the_five_sets_as_bits_and_refuse_unknown_names() -> None:
    assert masks({"bounding": ["CAP_CHOWN", "CAP_KILL"], "ambient": ["kill"]}) == {
        "bounding": 0b100001, "effective": 0, "permitted": 0, "inheritable": 0, "ambient": 0b100000,
    }  # fmt: skip
    with pytest.raises(InvalidArgument, match="^unknown capability CAP_NOPE$"):
        masks({"bounding": ["CAP_CHOWN"], "effective": ["CAP_NOPE"]})


def test_no_new_privileges_shows_in_proc_status() -> None:
    code = 'print(json.dumps([l for l in open("/proc/self/status").read().splitlines() if l.startswith("NoNew")][0]))'

    assert run_confined(code, {"noNewPrivileges": True}).split() == ["NoNewPrivs:", "1"]
    assert run_confined(code).split() == ["NoNewPrivs:", "0"]


@pytest.mark.requires("root")
def test_root_can_do_all_the_probes_unconfined(tmp_path: Path) -> None:
    result = probe_privileges(tmp_path, {})

    assert result["sets"]["CapEff"] == hex_mask(HELD_CAPABILITIES["effective"])
    assert {key: result[key] for key in ("mount", "chown", "bind_80", "sethostname")} == {
        "mount": 0, "chown": 0, "bind_80": 0, "sethostname": 0,
    }, "without confinement root should pass every probe, or the confined test proves nothing"  # fmt: skip


@pytest.mark.requires("root")
def test_docker_default_capabilities_confine_root(tmp_path: Path) -> None:
    result = probe_privileges(tmp_path, {"capabilities": DOCKER_PROCESS_CAPABILITIES})

    default = hex_mask(DEFAULT_CAPABILITIES)
    assert result.pop("sets") == {
        "CapBnd": default, "CapEff": default, "CapPrm": default, "CapInh": hex_mask([]), "CapAmb": hex_mask([]),
    }, "/proc/self/status should show exactly Docker's default set"  # fmt: skip
    assert result == {"mount": errno.EPERM, "chown": 0, "bind_80": 0, "sethostname": errno.EPERM}, (
        "mount and sethostname need CAP_SYS_ADMIN, which Docker does not give; CAP_CHOWN and "
        "CAP_NET_BIND_SERVICE it does"
    )


@pytest.mark.requires("root")
def test_a_user_holds_no_capability_after_execve_but_its_ambient_ones() -> None:
    user = {"uid": USER, "gid": USER}
    caps = {**DOCKER_PROCESS_CAPABILITIES, "inheritable": ["CAP_NET_BIND_SERVICE"], "ambient": ["CAP_NET_BIND_SERVICE"]}
    # Under /tmp itself: the user must reach it, and pytest's tmp_path is root's alone.
    workdir = Path(tempfile.mkdtemp(prefix="webengine-test-user-", dir="/tmp"))
    try:
        for name in ("plain", "ambient"):
            (workdir / name).mkdir()
            os.chown(workdir / name, USER, USER)
        os.chmod(workdir, 0o755)
        plain = probe_privileges(workdir / "plain", {"user": user, "capabilities": DOCKER_PROCESS_CAPABILITIES})
        ambient = probe_privileges(workdir / "ambient", {"user": user, "capabilities": caps})
    finally:
        shutil.rmtree(workdir)

    assert plain["sets"]["CapBnd"] == hex_mask(DEFAULT_CAPABILITIES)
    assert plain["sets"]["CapEff"] == hex_mask([]), "a non-root program loses its capabilities on execve(2)"
    assert plain["bind_80"] == errno.EACCES
    assert ambient["sets"]["CapEff"] == hex_mask(["CAP_NET_BIND_SERVICE"]), (
        "a non-root program keeps across execve(2) only its ambient capabilities"
    )
    assert ambient["bind_80"] == 0
