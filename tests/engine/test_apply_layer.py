"""apply_layer and chain_ids, entry by entry, without mounting anything."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
from pathlib import Path

import pytest

from containers.engine.errors import InvalidArgument
from containers.engine.snapshots.apply import apply_layer
from containers.engine.snapshots.unpack import chain_ids
from tests.engine.suites.fstest import create_dir, create_file, hardlink, layer, opaque, symlink, whiteout


@pytest.fixture
def root(state_root: Path) -> Path:
    path = state_root / "root"
    path.mkdir()
    return path


def test_it_returns_the_bytes_of_file_content_written(root: Path) -> None:
    data = layer(create_dir("/d"), create_file("/d/a", b"x" * 100), create_file("/b", b"y" * 23), symlink("/s", "d"))

    assert apply_layer(root, io.BytesIO(data), overlay_whiteouts=False) == 123


@pytest.mark.requires("root")
def test_overlay_whiteouts_are_stored_as_char_devices_and_xattrs(root: Path) -> None:
    data = layer(whiteout("/gone"), whiteout("/deep/dir/gone"), create_dir("/o"), opaque("/o"))

    apply_layer(root, io.BytesIO(data), overlay_whiteouts=True)

    for path in (root / "gone", root / "deep/dir/gone"):
        st = os.lstat(path)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, f"{path} should be an overlay whiteout (0:0 char device)"
        assert (st.st_uid, st.st_gid) == (0, 0)
    assert os.getxattr(root / "o", "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(root)) == ["deep", "gone", "o"]


def test_native_whiteouts_delete_and_leave_no_trace(root: Path) -> None:
    (root / "a").write_bytes(b"a")
    (root / "d").mkdir()
    (root / "d" / "f").write_bytes(b"f")

    apply_layer(
        root, io.BytesIO(layer(whiteout("/a"), whiteout("/d"), whiteout("/missing/x"))), overlay_whiteouts=False
    )

    assert os.listdir(root) == [], "a whiteout of something absent must not create its parent"


def test_a_native_opaque_directory_keeps_only_what_this_layer_wrote(root: Path) -> None:
    (root / "d" / "old").mkdir(parents=True)
    (root / "d" / "old" / "f").write_bytes(b"lower")
    (root / "d" / "x").write_bytes(b"lower")

    apply_layer(root, io.BytesIO(layer(create_file("/d/old/new"), opaque("/d"))), overlay_whiteouts=False)

    assert os.listdir(root / "d") == ["old"]
    assert os.listdir(root / "d" / "old") == ["new"]


def test_aufs_metadata_entries_are_skipped(root: Path) -> None:
    data = layer(create_dir("/.wh..wh.plnk"), create_file("/.wh..wh.plnk/1.2"), create_file("/.wh..wh.aufs"))

    apply_layer(root, io.BytesIO(data), overlay_whiteouts=False)

    assert os.listdir(root) == []


def test_a_directory_entry_merges_into_an_existing_directory(root: Path) -> None:
    (root / "d").mkdir(mode=0o700)
    (root / "d" / "kept").write_bytes(b"k")

    apply_layer(root, io.BytesIO(layer(create_dir("/d", 0o751), create_file("/d/new"))), overlay_whiteouts=False)

    assert sorted(os.listdir(root / "d")) == ["kept", "new"]
    assert os.stat(root / "d").st_mode & 0o7777 == 0o751


def test_the_root_entry_sets_the_roots_own_attributes(root: Path) -> None:
    apply_layer(root, io.BytesIO(layer(create_dir("./", 0o711, mtime=1000), create_file("f"))), overlay_whiteouts=False)

    st = os.stat(root)
    assert (st.st_mode & 0o7777, st.st_mtime) == (0o711, 1000)


def test_a_hard_link_entry_repeated_is_a_no_op(root: Path) -> None:
    data = layer(create_file("/f", b"x"), hardlink("/h", "/f"), hardlink("/h", "/f"))

    apply_layer(root, io.BytesIO(data), overlay_whiteouts=False)

    assert os.stat(root / "f").st_nlink == 2


def test_an_xattr_the_filesystem_refuses_is_skipped_with_a_warning(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # xattr(7): user.* attributes are allowed only on regular files and directories.
    data = layer(symlink("/s", "target", xattrs={"user.refused": b"1"}))

    with caplog.at_level(logging.WARNING):
        apply_layer(root, io.BytesIO(data), overlay_whiteouts=False)

    assert os.readlink(root / "s") == "target"
    assert "layer entry /s: xattr user.refused not kept" in caplog.text


def test_a_stream_that_is_not_a_tar_is_invalid(root: Path) -> None:
    with pytest.raises(InvalidArgument, match="layer: not a valid tar archive"):
        apply_layer(root, io.BytesIO(b"not a tar archive" * 100), overlay_whiteouts=False)


def test_a_truncated_tar_is_invalid(root: Path) -> None:
    data = layer(create_file("/f", b"x" * 5000))

    with pytest.raises(InvalidArgument, match="layer: not a valid tar archive"):
        apply_layer(root, io.BytesIO(data[:2048]), overlay_whiteouts=False)


def test_chain_ids_follow_the_oci_image_spec() -> None:
    diff_ids = ["sha256:" + "a" * 64, "sha256:" + "b" * 64, "sha256:" + "c" * 64]
    second = "sha256:" + hashlib.sha256(f"{diff_ids[0]} {diff_ids[1]}".encode()).hexdigest()
    third = "sha256:" + hashlib.sha256(f"{second} {diff_ids[2]}".encode()).hexdigest()

    assert chain_ids(diff_ids) == [diff_ids[0], second, third]
    assert chain_ids([]) == []
