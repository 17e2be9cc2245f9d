"""The busybox base image, made from the host's static busybox, and usable as a root filesystem."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from containers.engine.errors import InvalidArgument
from containers.engine.images.busybox import DEFAULT_PATH, busybox_layer, create_busybox_image
from containers.engine.images.manifest import host_platform
from containers.engine.images.store import IMAGE_LABEL, ImageStore
from containers.engine.snapshots.mount import is_mounted, mount_all, unmount
from tests.engine.imagetest import new_store

BUSYBOX = Path("/usr/bin/busybox")

pytestmark = pytest.mark.requires("busybox")


@pytest.fixture
def store(state_root: Path) -> ImageStore:
    return new_store(state_root)


@pytest.fixture(scope="module")
def members() -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(busybox_layer(BUSYBOX))) as tar:
        return {m.name: m for m in tar}


def test_the_layer_is_deterministic() -> None:
    assert busybox_layer(BUSYBOX) == busybox_layer(BUSYBOX)


def test_every_applet_is_a_hard_link_to_busybox(members: dict[str, tarfile.TarInfo]) -> None:
    applets = subprocess.run([BUSYBOX, "--list-full"], capture_output=True, text=True, check=True).stdout.split()

    assert members["bin/busybox"].isreg() and members["bin/busybox"].mode == 0o755
    assert members["bin/busybox"].size == BUSYBOX.stat().st_size
    for applet in set(applets) - {"bin/busybox"}:
        assert members[applet].islnk() and members[applet].linkname == "bin/busybox", applet
    assert "bin/sh" in members and "usr/bin/env" in members


def test_it_has_dockers_skeleton(members: dict[str, tarfile.TarInfo]) -> None:
    assert members["tmp"].isdir() and members["tmp"].mode == 0o1777
    assert members["root"].mode == 0o700
    for directory in ("bin", "dev", "etc", "home", "usr/bin", "usr/sbin", "var/spool/mail", "var/www"):
        assert members[directory].isdir(), directory
    assert all(m.uid == 0 and m.gid == 0 for m in members.values())
    assert len({m.mtime for m in members.values()}) == 1


def test_passwd_and_group_match_dockers_busybox(members: dict[str, tarfile.TarInfo]) -> None:
    with tarfile.open(fileobj=io.BytesIO(busybox_layer(BUSYBOX))) as tar:
        passwd = tar.extractfile("etc/passwd").read().decode()  # type: ignore[union-attr]
        group = tar.extractfile("etc/group").read().decode()  # type: ignore[union-attr]

    users = [line.split(":")[0] for line in passwd.splitlines()]
    assert users == ["root", "daemon", "bin", "sys", "sync", "mail", "www-data", "operator", "nobody"]
    assert "root:x:0:0:root:/root:/bin/sh" in passwd.splitlines()
    assert "nogroup:x:65534:" in group.splitlines()
    assert members["etc/shadow"].mode == 0o600


def test_it_creates_a_tagged_image_and_again_the_same_one(store: ImageStore) -> None:
    image = create_busybox_image(store)
    again = create_busybox_image(store, tag="busybox:1")

    assert again.id == image.id
    assert store.get("busybox").repo_tags == ("busybox:1", "busybox:latest")
    assert image.config.config.env == (DEFAULT_PATH,)
    assert image.config.config.cmd == ("sh",)
    assert (image.config.os, image.config.architecture) == ("linux", host_platform().architecture)
    assert image.config.history[0].created_by.startswith("BusyBox v")
    assert len(image.layers) == 1 and image.size == image.layers[0].size


def test_it_refuses_a_missing_binary(store: ImageStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="not found"):
        create_busybox_image(store, busybox_path=tmp_path / "busybox")


@pytest.mark.requires("root", "overlayfs")
def test_the_image_mounts_as_a_working_root_filesystem(state_root: Path) -> None:
    store = new_store(state_root, snapshotter="overlay")
    image = create_busybox_image(store)
    top = store.unpack(image)
    mounts = store.snapshotter.prepare("ctr", top, labels={IMAGE_LABEL: image.id})
    rootfs = state_root / "rootfs"
    rootfs.mkdir()
    mount_all(mounts, rootfs)
    try:
        assert is_mounted(rootfs)
        assert (rootfs / "bin" / "sh").is_file(), "/bin/sh should exist in the mounted busybox"
        assert (rootfs / "bin" / "sh").stat().st_ino == (rootfs / "bin" / "busybox").stat().st_ino
        assert "root:x:0:0" in (rootfs / "etc" / "passwd").read_text()
        result = subprocess.run([rootfs / "bin" / "busybox", "echo", "hello"], capture_output=True, text=True)
        assert result.stdout == "hello\n", "the static busybox should run from the mounted image"
        (rootfs / "tmp" / "written").write_text("x")
    finally:
        unmount(rootfs)
    assert not is_mounted(rootfs)
    assert (store.snapshotter.upper_dir("ctr") / "tmp" / "written").read_text() == "x"
    assert not (store.snapshotter.upper_dir(top) / "tmp" / "written").exists(), "the layer stays untouched"
