"""tar_directory: `docker export`-style tars of a whole tree, the same bytes for the same tree."""

from __future__ import annotations

import io
import os
import socket
import tarfile
from pathlib import Path

import pytest

from containers.engine.archive import tar_directory


def make_tree(root: Path) -> Path:
    """Create a small tree with a file, a nested dir, a symlink out of it and a hard link."""
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "motd").write_bytes(b"hello\n")
    (root / "a-b").write_bytes(b"dash")
    (root / "a").mkdir()
    (root / "a" / "b").write_bytes(b"nested")
    os.link(root / "a" / "b", root / "z-link")
    os.symlink("/etc", root / "host-etc")
    for path in [*root.rglob("*"), root]:
        os.utime(path, (1_600_000_000, 1_600_000_000), follow_symlinks=False)
    return root


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


def export(root: Path) -> bytes:
    out = io.BytesIO()
    tar_directory(root, out)
    return out.getvalue()


def test_the_same_tree_gives_the_same_bytes(state_root: Path) -> None:
    first = export(make_tree(state_root / "one"))
    second = export(make_tree(state_root / "two"))

    assert first == second


def test_entries_are_sorted_relative_and_parents_come_first(state_root: Path) -> None:
    names = [m.name for m in members(export(make_tree(state_root / "t")))]

    assert names == ["a", "a/b", "a-b", "etc", "etc/motd", "host-etc", "z-link"]


def test_symlinks_are_stored_not_followed(state_root: Path) -> None:
    by_name = {m.name: m for m in members(export(make_tree(state_root / "t")))}

    assert by_name["host-etc"].issym() and by_name["host-etc"].linkname == "/etc"
    assert not any(name.startswith("host-etc/") for name in by_name)


def test_hard_links_point_to_the_first_name(state_root: Path) -> None:
    by_name = {m.name: m for m in members(export(make_tree(state_root / "t")))}

    assert by_name["a/b"].isreg() and by_name["a/b"].size == 6
    assert by_name["z-link"].islnk() and by_name["z-link"].linkname == "a/b"


def test_owners_modes_times_and_xattrs_are_kept(state_root: Path) -> None:
    root = state_root / "t"
    root.mkdir()
    (root / "su").write_bytes(b"")
    if os.geteuid() == 0:
        os.chown(root / "su", 1000, 1001)
    os.chmod(root / "su", 0o4755)
    os.setxattr(root / "su", "user.note", b"\xff binary")
    os.utime(root / "su", (1_500_000_000.7, 1_500_000_000.7))

    [su] = members(export(root))

    assert su.mode == 0o4755
    assert su.mtime == 1_500_000_000, "mtimes are whole seconds, as in Docker's tars"
    assert su.pax_headers["SCHILY.xattr.user.note"].encode("utf-8", "surrogateescape") == b"\xff binary"
    assert (su.uname, su.gname) == ("", "")
    if os.geteuid() == 0:
        assert (su.uid, su.gid) == (1000, 1001)


@pytest.mark.requires("root")
def test_devices_and_fifos_are_kept_and_sockets_skipped(state_root: Path) -> None:
    root = state_root / "t"
    root.mkdir()
    os.mknod(root / "null", 0o666 | 0o020000, os.makedev(1, 3))
    os.mkfifo(root / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "sock"))
        by_name = {m.name: m for m in members(export(root))}

    assert sorted(by_name) == ["fifo", "null"]
    assert by_name["null"].ischr() and (by_name["null"].devmajor, by_name["null"].devminor) == (1, 3)
    assert by_name["fifo"].isfifo()
