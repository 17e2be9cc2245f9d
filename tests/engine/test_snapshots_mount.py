"""mount_all, unmount and is_mounted: the calls they make (recorded) and what they do (for real).

The last tests exercise the syscalls under them that Python lacks (unshare, setns, pivot_root)
in forked children, so that the test process keeps its own namespaces.
"""

from __future__ import annotations

import errno
import os
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from containers.engine.linux import syscalls
from containers.engine.linux.syscalls import (
    MNT_DETACH,
    MS_BIND,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    Syscalls,
)
from containers.engine.snapshots.base import Mount
from containers.engine.snapshots.mount import is_mounted, mount_all, unmount


class RecordingSyscalls(Syscalls):
    """Records mount calls instead of making them; `fail` maps a call number to the errno it raises."""

    def __init__(self, fail: dict[int, int] | None = None) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.fail = fail or {}

    def _record(self, *call: object) -> None:
        self.calls.append(call)
        err = self.fail.get(len(self.calls))
        if err is not None:
            raise OSError(err, os.strerror(err))

    def mount(
        self, source: object, target: object, fstype: str | None, flags: int = 0, data: str | None = None
    ) -> None:
        self._record("mount", source, target, fstype, flags, data)

    def umount2(self, target: object, flags: int = 0) -> None:
        self._record("umount2", target, flags)


def test_an_overlay_is_one_mount_call_with_its_options_as_data() -> None:
    fake = RecordingSyscalls()
    overlay = Mount("overlay", "overlay", ("lowerdir=/l2:/l1", "upperdir=/u", "workdir=/w"))

    mount_all([overlay], Path("/t"), fake)

    assert fake.calls == [("mount", "overlay", Path("/t"), "overlay", 0, "lowerdir=/l2:/l1,upperdir=/u,workdir=/w")]


def test_a_read_only_bind_takes_a_remount() -> None:
    fake = RecordingSyscalls()

    mount_all([Mount("bind", "/src", ("rbind", "ro", "nosuid"))], Path("/t"), fake)

    assert fake.calls == [
        ("mount", "/src", Path("/t"), None, MS_BIND | MS_REC, None),
        ("mount", None, Path("/t"), None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID, None),
    ]


def test_a_writable_bind_is_one_call() -> None:
    fake = RecordingSyscalls()

    mount_all([Mount("bind", "/src", ("rbind", "rw"))], Path("/t"), fake)

    assert fake.calls == [("mount", "/src", Path("/t"), None, MS_BIND | MS_REC, None)]


def test_a_failed_mount_undoes_the_ones_before_it() -> None:
    fake = RecordingSyscalls(fail={2: errno.EINVAL})

    with pytest.raises(OSError, match="failed to mount overlay on /t: Invalid argument") as raised:
        mount_all([Mount("bind", "/a", ("bind",)), Mount("overlay", "overlay", ("lowerdir=/x",))], Path("/t"), fake)

    assert raised.value.errno == errno.EINVAL
    assert fake.calls[-1] == ("umount2", Path("/t"), 0)


def test_unmounting_what_is_not_mounted_is_fine() -> None:
    fake = RecordingSyscalls(fail={1: errno.EINVAL})

    unmount(Path("/t"), fake)

    assert fake.calls == [("umount2", Path("/t"), 0)]


def test_a_busy_mount_is_detached() -> None:
    fake = RecordingSyscalls(fail={1: errno.EBUSY})

    unmount(Path("/t"), fake)

    assert fake.calls == [("umount2", Path("/t"), 0), ("umount2", Path("/t"), MNT_DETACH)]


def test_other_unmount_errors_are_raised() -> None:
    with pytest.raises(PermissionError):
        unmount(Path("/t"), RecordingSyscalls(fail={1: errno.EPERM}))


def test_a_failed_syscall_raises_oserror_with_its_errno_and_path(state_root: Path) -> None:
    missing = state_root / "missing"

    with pytest.raises(OSError) as raised:
        syscalls.mount("none", missing, "tmpfs")

    assert raised.value.errno in (errno.ENOENT, errno.EPERM)
    assert raised.value.filename == str(missing)


@pytest.mark.requires("root")
def test_it_mounts_binds_read_only_and_unmounts_for_real(state_root: Path) -> None:
    source, target = state_root / "source", state_root / "target"
    source.mkdir()
    target.mkdir()
    (source / "f").write_bytes(b"x")

    mount_all([Mount("bind", str(source), ("rbind", "ro"))], target)
    try:
        assert is_mounted(target)
        assert (target / "f").read_bytes() == b"x"
        with pytest.raises(OSError) as raised:
            (target / "g").write_bytes(b"y")
        assert raised.value.errno == errno.EROFS
    finally:
        unmount(target)

    assert not is_mounted(target)
    unmount(target)  # nothing mounted any more: not an error


@pytest.mark.requires("root")
def test_a_target_with_a_space_is_recognised_as_mounted(state_root: Path) -> None:
    source, target = state_root / "source", state_root / "with space"
    source.mkdir()
    target.mkdir()

    mount_all([Mount("bind", str(source), ("bind",))], target)
    try:
        assert is_mounted(target)
    finally:
        unmount(target)
    assert not is_mounted(target)


def run_in_child(body: Callable[[], None]) -> int:
    """Run `body` in a forked child and return its exit status (0 if it returned, 1 if it raised)."""
    pid = os.fork()
    if pid == 0:
        try:
            body()
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
