"""The layer suite: image layers unpacked into a snapshotter look, once mounted, as Docker shows them.

A test module subclasses `LayerSuite` and sets `kind` ("overlay" or "native"). Every test here
mounts what it unpacked (an overlay, or a bind mount) and checks the mounted tree.
"""

from __future__ import annotations

import io
import os
import stat
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from containers.engine.archive import tar_directory
from containers.engine.errors import DigestMismatch, UnsafeArchive
from containers.engine.snapshots import Kind, Snapshotter, new_snapshotter
from containers.engine.snapshots.apply import apply_layer
from containers.engine.snapshots.unpack import Layer, chain_ids, unpack
from tests.engine.suites.fstest import (
    MTIME,
    as_layer,
    create_dir,
    create_file,
    device,
    digest,
    fifo,
    hardlink,
    layer,
    mounted,
    opaque,
    symlink,
    tree,
    whiteout,
)

pytestmark = pytest.mark.requires("root", "overlayfs")

# security.capability, VFS_CAP_REVISION_2 with the effective bit: cap_net_bind_service (bit 10)
# permitted. Binary, with NUL bytes: it must survive the PAX record as it is.
NET_BIND_SERVICE = struct.pack("<5I", 0x02000001, 1 << 10, 0, 0, 0)


class LayerSuite:
    """Unpacking and mounting layers; subclasses set `kind`."""

    kind: str

    @pytest.fixture
    def snapshotter(self, state_root: Path) -> Snapshotter:
        return new_snapshotter(self.kind, state_root / "snapshots")

    @contextmanager
    def image(self, snapshotter: Snapshotter, target: Path, *layers: bytes) -> Iterator[Path]:
        """Unpack `layers` and mount a read-only view of the top one on `target`."""
        top = unpack(snapshotter, [as_layer(data) for data in layers])
        with mounted(snapshotter.view(f"view-{target.name}", top), target) as view:
            yield view

    def test_it_keeps_content_modes_owners_and_times(self, snapshotter: Snapshotter, state_root: Path) -> None:
        base = layer(
            create_dir("/etc", 0o755),
            create_file("/etc/motd", b"hello\n", 0o640, uid=1000, gid=1001, mtime=1_234_567_890),
            create_dir("/bin"),
            create_file("/bin/su", b"\x7fELF", 0o4755),
            create_file("/bin/wall", b"\x7fELF", 0o2755, gid=5),
            create_dir("/tmp", 0o1777),
        )

        with self.image(snapshotter, state_root / "rootfs", base) as rootfs:
            motd = os.stat(rootfs / "etc/motd")
            assert (rootfs / "etc/motd").read_bytes() == b"hello\n"
            assert (motd.st_mode & 0o7777, motd.st_uid, motd.st_gid) == (0o640, 1000, 1001)
            assert motd.st_mtime == 1_234_567_890
            assert os.stat(rootfs / "bin/su").st_mode & 0o7777 == 0o4755, "setuid must survive chown"
            assert os.stat(rootfs / "bin/wall").st_mode & 0o7777 == 0o2755, "setgid must survive chown"
            assert os.stat(rootfs / "tmp").st_mode & 0o7777 == 0o1777

    def test_directory_times_are_set_after_their_children(self, snapshotter: Snapshotter, state_root: Path) -> None:
        base = layer(create_dir("/d", mtime=1000), create_file("/d/f", mtime=2000), create_dir("/d/e", mtime=3000))

        with self.image(snapshotter, state_root / "rootfs", base) as rootfs:
            assert (os.stat(rootfs / "d").st_mtime, os.stat(rootfs / "d/e").st_mtime) == (1000, 3000)

    def test_it_creates_symlinks_hard_links_devices_and_fifos(self, snapshotter: Snapshotter, state_root: Path) -> None:
        base = layer(
            create_dir("/bin"),
            create_file("/bin/busybox", b"bb", 0o755),
            hardlink("/bin/sh", "/bin/busybox"),
            hardlink("/bin/ls", "bin/busybox"),
            symlink("/bin/ash", "busybox", uid=7, gid=8, mtime=1000),
            create_dir("/dev"),
            device("/dev/null", "c", 1, 3, 0o666),
            device("/dev/loop9", "b", 7, 9, 0o660, gid=6),
            fifo("/dev/initctl", 0o600),
        )

        with self.image(snapshotter, state_root / "rootfs", base) as rootfs:
            inodes = {os.stat(rootfs / "bin" / name).st_ino for name in ("busybox", "sh", "ls")}
            assert len(inodes) == 1, "hard links must share one inode"
            assert os.stat(rootfs / "bin/busybox").st_nlink == 3
            assert os.readlink(rootfs / "bin/ash") == "busybox"
            link = os.lstat(rootfs / "bin/ash")
            assert (link.st_uid, link.st_gid, link.st_mtime) == (7, 8, 1000), "a symlink's own owner and time"
            null = os.stat(rootfs / "dev/null")
            assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
            assert null.st_mode & 0o7777 == 0o666
            loop = os.stat(rootfs / "dev/loop9")
            assert stat.S_ISBLK(loop.st_mode) and loop.st_rdev == os.makedev(7, 9) and loop.st_gid == 6
            assert stat.S_ISFIFO(os.stat(rootfs / "dev/initctl").st_mode)

    def test_it_keeps_xattrs_binary_values_included(self, snapshotter: Snapshotter, state_root: Path) -> None:
        base = layer(
            create_dir("/d", xattrs={"user.dir": b"on a dir", "trusted.secret": b"root only"}),
            create_file("/d/ping", xattrs={"security.capability": NET_BIND_SERVICE, "user.k": b"\xff\x00"}),
        )

        with self.image(snapshotter, state_root / "rootfs", base) as rootfs:
            assert os.getxattr(rootfs / "d", "user.dir") == b"on a dir"
            assert os.getxattr(rootfs / "d", "trusted.secret") == b"root only"
            assert os.getxattr(rootfs / "d/ping", "security.capability") == NET_BIND_SERVICE
            assert os.getxattr(rootfs / "d/ping", "user.k") == b"\xff\x00"

    def test_whiteouts_delete_files_and_trees_of_lower_layers(self, snapshotter: Snapshotter, state_root: Path) -> None:
        base = layer(
            create_file("/a", b"a"),
            create_dir("/d"),
            create_file("/d/x", b"x"),
            create_file("/d/y", b"y"),
            create_dir("/w"),
            create_dir("/w/sub"),
            create_file("/w/sub/f", b"f"),
        )
        deletions = layer(whiteout("/a"), create_dir("/d"), whiteout("/d/x"), whiteout("/w"))

        with self.image(snapshotter, state_root / "rootfs", base, deletions) as rootfs:
            assert sorted(os.listdir(rootfs)) == ["d"]
            assert os.listdir(rootfs / "d") == ["y"]

    def test_a_whiteout_then_a_new_file_of_that_name_in_a_later_layer(
        self, snapshotter: Snapshotter, state_root: Path
    ) -> None:
        layers = (layer(create_file("/a", b"1")), layer(whiteout("/a")), layer(create_file("/a", b"3")))

        with self.image(snapshotter, state_root / "rootfs", *layers) as rootfs:
            assert (rootfs / "a").read_bytes() == b"3"

    @pytest.mark.parametrize("marker_first", [True, False], ids=["marker-first", "marker-last"])
    def test_an_opaque_directory_hides_lower_contents(
        self, snapshotter: Snapshotter, state_root: Path, marker_first: bool
    ) -> None:
        base = layer(create_dir("/d"), create_file("/d/x"), create_dir("/d/sub"), create_file("/d/sub/y"))
        entries = [create_dir("/d"), create_dir("/d/sub"), create_file("/d/sub/new"), create_file("/d/z")]
        entries.insert(1 if marker_first else len(entries), opaque("/d"))

        with self.image(snapshotter, state_root / "rootfs", base, layer(*entries)) as rootfs:
            assert sorted(os.listdir(rootfs / "d")) == ["sub", "z"]
            assert os.listdir(rootfs / "d/sub") == ["new"], "an opaque directory hides its whole lower subtree"

    def test_later_layers_replace_directories_files_and_symlinks(
        self, snapshotter: Snapshotter, state_root: Path
    ) -> None:
        base = layer(
            create_dir("/p"),
            create_file("/p/child"),
            create_file("/q", b"file"),
            symlink("/s", "p"),
        )
        changes = layer(create_file("/p", b"now a file"), create_dir("/q"), create_file("/q/c"), create_dir("/s"))

        with self.image(snapshotter, state_root / "rootfs", base, changes) as rootfs:
            assert (rootfs / "p").read_bytes() == b"now a file"
            assert os.listdir(rootfs / "q") == ["c"]
            assert not (rootfs / "s").is_symlink() and (rootfs / "s").is_dir()
            assert os.listdir(rootfs / "s") == []

    def test_it_unpacks_shared_layers_once(self, snapshotter: Snapshotter) -> None:
        base, app, other = layer(create_file("/base")), layer(create_file("/app")), layer(create_file("/other"))
        opened: list[str] = []

        top_a = unpack(snapshotter, [as_layer(base, opened), as_layer(app, opened)])
        top_b = unpack(snapshotter, [as_layer(base, opened), as_layer(other, opened)])
        again = unpack(snapshotter, [as_layer(base, opened), as_layer(app, opened)])

        assert opened == [digest(base), digest(app), digest(other)], "a committed layer must not be read again"
        assert top_a == chain_ids([digest(base), digest(app)])[1]
        assert top_b == chain_ids([digest(base), digest(other)])[1]
        assert again == top_a
        committed = {info.name: info.parent for info in snapshotter.walk()}
        assert committed == {digest(base): None, top_a: digest(base), top_b: digest(base)}
        assert all(info.kind is Kind.COMMITTED for info in snapshotter.walk())

    def test_zero_layers_unpack_to_nothing(self, snapshotter: Snapshotter) -> None:
        assert unpack(snapshotter, []) is None

    def test_a_digest_mismatch_leaves_no_snapshot(self, snapshotter: Snapshotter) -> None:
        base = layer(create_file("/base"))
        unpack(snapshotter, [as_layer(base)])
        data = layer(create_file("/evil"))
        lying = Layer("sha256:" + "0" * 64, lambda: io.BytesIO(data))

        with pytest.raises(DigestMismatch, match=f"uncompressed content has digest {digest(data)}"):
            unpack(snapshotter, [as_layer(base), lying])

        assert [info.name for info in snapshotter.walk()] == [digest(base)]

    def test_a_refused_layer_leaves_no_snapshot(self, snapshotter: Snapshotter) -> None:
        data = layer(create_file("/ok"), create_file("../../escape"))

        with pytest.raises(UnsafeArchive):
            unpack(snapshotter, [as_layer(data)])

        assert list(snapshotter.walk()) == []

    def test_an_exported_image_applies_back_to_the_same_tree(self, snapshotter: Snapshotter, state_root: Path) -> None:
        base = layer(
            create_dir("/bin"),
            create_file("/bin/busybox", b"bb", 0o4755, uid=1, gid=2, xattrs={"user.k": b"v"}),
            hardlink("/bin/sh", "/bin/busybox"),
            symlink("/bin/ash", "busybox"),
            create_dir("/dev"),
            device("/dev/null", "c", 1, 3),
            fifo("/dev/fifo"),
            create_file("/gone"),
        )
        top = layer(whiteout("/gone"), create_file("/etc-file", b"new", mtime=MTIME + 5))

        with self.image(snapshotter, state_root / "rootfs", base, top) as rootfs:
            exported, again = io.BytesIO(), io.BytesIO()
            tar_directory(rootfs, exported)
            tar_directory(rootfs, again)
            expected = tree(rootfs)
        copy = state_root / "copy"
        copy.mkdir()
        apply_layer(copy, io.BytesIO(exported.getvalue()), overlay_whiteouts=False)

        assert exported.getvalue() == again.getvalue(), "the same tree must give the same tar"
        assert tree(copy) == expected
