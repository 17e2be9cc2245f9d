"""The native snapshotter: the conformance suite, and full copies that keep everything."""

from __future__ import annotations

import os

import pytest

from containers.engine.snapshots import Mount, Snapshotter
from tests.engine.suites.snapshotter import SnapshotterSuite


class TestNativeSnapshotter(SnapshotterSuite):
    kind = "native"

    def test_it_applies_deletions_for_real(self, snapshotter: Snapshotter) -> None:
        assert snapshotter.overlay_whiteouts is False

    def test_its_mounts_are_bind_mounts_of_a_full_copy(self, snapshotter: Snapshotter) -> None:
        self.commit_layer(snapshotter, "l1", None, {"a": b"1"})

        active = snapshotter.prepare("c1", "l1")
        view = snapshotter.view("v1", "l1")

        assert active == [Mount("bind", str(snapshotter.upper_dir("c1")), ("rbind", "rw"))]
        assert view == [Mount("bind", str(snapshotter.upper_dir("v1")), ("rbind", "ro"))]
        assert (snapshotter.upper_dir("c1") / "a").read_bytes() == b"1"
        assert snapshotter.usage("c1") == 1, "a native snapshot holds its parents' files too"

    def test_a_child_is_independent_of_its_parent(self, snapshotter: Snapshotter) -> None:
        self.commit_layer(snapshotter, "l1", None, {"a": b"1"})
        snapshotter.prepare("c1", "l1")

        (snapshotter.upper_dir("c1") / "a").write_bytes(b"changed")

        assert (snapshotter.upper_dir("l1") / "a").read_bytes() == b"1"

    @pytest.mark.requires("root")
    def test_a_copy_keeps_owners_modes_times_xattrs_and_hard_links(self, snapshotter: Snapshotter) -> None:
        snapshotter.prepare("build")
        upper = snapshotter.upper_dir("build")
        (upper / "f").write_bytes(b"data")
        os.chown(upper / "f", 1000, 1001)
        os.chmod(upper / "f", 0o4750)
        os.setxattr(upper / "f", "trusted.test", b"t")
        os.link(upper / "f", upper / "g")
        os.symlink("/etc/passwd", upper / "s")
        os.mknod(upper / "null", 0o666 | 0o020000, os.makedev(1, 3))
        os.utime(upper / "f", (1_500_000_000, 1_500_000_000))
        snapshotter.commit("l1", "build")

        snapshotter.prepare("c1", "l1")

        copy = snapshotter.upper_dir("c1")
        st = os.stat(copy / "f")
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777, st.st_mtime) == (1000, 1001, 0o4750, 1_500_000_000)
        assert os.getxattr(copy / "f", "trusted.test") == b"t"
        assert os.stat(copy / "g").st_ino == st.st_ino, "hard links must stay one inode"
        assert os.readlink(copy / "s") == "/etc/passwd"
        assert os.stat(copy / "null").st_rdev == os.makedev(1, 3)
