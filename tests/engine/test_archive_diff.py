"""diff_upper and changes over what a container really did to a real overlay mount."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from containers.engine.archive import changes, diff_upper, tar_directory
from containers.engine.snapshots import OverlaySnapshotter
from containers.engine.snapshots.unpack import unpack
from tests.engine.suites.fstest import as_layer, create_dir, create_file, layer, mounted, tree

pytestmark = pytest.mark.requires("root", "overlayfs")

BASE = layer(
    create_file("/a", b"a"),
    create_file("/b", b"b"),
    create_dir("/d"),
    create_file("/d/x", b"x"),
    create_file("/d/y", b"y"),
    create_dir("/e"),
    create_file("/e/kept", b"kept"),
    create_file("/m", b"mode", 0o644),
)


def run_container(snapshotter: OverlaySnapshotter, state_root: Path) -> dict[str, tuple[object, ...]]:
    """Unpack BASE, make changes through a container's overlay mount, and return the resulting tree."""
    top = unpack(snapshotter, [as_layer(BASE)])
    with mounted(snapshotter.prepare("container", top), state_root / "rootfs") as rootfs:
        (rootfs / "a").unlink()
        (rootfs / "b").unlink()
        shutil.rmtree(rootfs / "d")
        (rootfs / "d").mkdir()
        (rootfs / "d" / "z").write_bytes(b"z")
        (rootfs / "e" / "new").write_bytes(b"new")
        os.chmod(rootfs / "m", 0o600)
        (rootfs / "n").mkdir()
        os.setxattr(rootfs / "n", "user.k", b"v")
        return tree(rootfs)


def test_a_layer_from_an_upper_dir_has_oci_whiteouts(state_root: Path) -> None:
    snapshotter = OverlaySnapshotter(state_root / "snapshots")
    run_container(snapshotter, state_root)

    out = io.BytesIO()
    diff_upper(snapshotter.upper_dir("container"), out)

    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        entries = {m.name: m for m in tar.getmembers()}
    assert list(entries) == [".wh.a", ".wh.b", "d", "d/.wh..wh..opq", "d/z", "e", "e/new", "m", "n"]
    assert all(entries[name].isreg() and entries[name].size == 0 for name in (".wh.a", ".wh.b", "d/.wh..wh..opq"))
    assert entries["m"].mode == 0o600
    assert entries["n"].pax_headers["SCHILY.xattr.user.k"] == "v"
    leaked = [(m.name, key) for m in entries.values() for key in m.pax_headers if "trusted.overlay." in key]
    assert leaked == [], "overlayfs' own xattrs must not reach a layer"


def test_a_committed_diff_reproduces_the_container(state_root: Path) -> None:
    snapshotter = OverlaySnapshotter(state_root / "snapshots")
    expected = run_container(snapshotter, state_root)
    out = io.BytesIO()
    diff_upper(snapshotter.upper_dir("container"), out)

    other = OverlaySnapshotter(state_root / "other")
    top = unpack(other, [as_layer(BASE), as_layer(out.getvalue())])

    with mounted(other.view("v", top), state_root / "view") as view:
        assert tree(view) == expected
        exported = io.BytesIO()
        tar_directory(view, exported)
    with tarfile.open(fileobj=io.BytesIO(exported.getvalue())) as tar:
        names = tar.getnames()
    assert names == ["d", "d/z", "e", "e/kept", "e/new", "m", "n"], "an export shows the merged tree, no whiteouts"


def test_changes_are_listed_as_docker_diff_does(state_root: Path) -> None:
    snapshotter = OverlaySnapshotter(state_root / "snapshots")
    run_container(snapshotter, state_root)
    lower = snapshotter.upper_dir(next(i.name for i in snapshotter.walk() if i.name != "container"))

    found = changes(snapshotter.upper_dir("container"), lambda path: os.path.lexists(lower / path.lstrip("/")))

    assert found == [
        ("D", "/a"),
        ("D", "/b"),
        ("C", "/d"),
        ("A", "/d/z"),
        ("C", "/e"),
        ("A", "/e/new"),
        ("C", "/m"),
        ("A", "/n"),
    ]


def test_a_renamed_directory_is_copied_whole_into_the_diff(state_root: Path) -> None:
    snapshotter = OverlaySnapshotter(state_root / "snapshots")
    top = unpack(snapshotter, [as_layer(BASE)])
    with mounted(snapshotter.prepare("container", top), state_root / "rootfs") as rootfs:
        shutil.move(rootfs / "e", rootfs / "moved")
        expected = tree(rootfs)

    out = io.BytesIO()
    diff_upper(snapshotter.upper_dir("container"), out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        assert tar.getnames() == [".wh.e", "moved", "moved/kept"], "no redirect xattr: the contents must be in the diff"
    top = unpack(snapshotter, [as_layer(BASE), as_layer(out.getvalue())])
    with mounted(snapshotter.view("v", top), state_root / "view") as view:
        assert tree(view) == expected
