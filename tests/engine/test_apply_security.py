"""apply_layer against hostile layers: nothing may be written, linked or deleted outside the root.

Each test has a sentinel directory next to the root, `outside/sentinel`, that a hostile entry aims
at; the host's /etc/passwd is only ever read, to check that it did not change.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from containers.engine.errors import UnsafeArchive
from containers.engine.snapshots.apply import apply_layer
from tests.engine.suites.fstest import (
    Entry,
    create_dir,
    create_file,
    device,
    hardlink,
    layer,
    opaque,
    symlink,
    whiteout,
)


@pytest.fixture(params=[False, True], ids=["native-whiteouts", "overlay-whiteouts"])
def overlay_whiteouts(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def root(state_root: Path) -> Path:
    path = state_root / "root"
    path.mkdir()
    return path


@pytest.fixture
def outside(state_root: Path) -> Path:
    path = state_root / "outside"
    path.mkdir()
    (path / "sentinel").write_bytes(b"original")
    return path


@pytest.fixture(autouse=True)
def host_passwd_is_untouched() -> Iterator[None]:
    before = _fingerprint(Path("/etc/passwd"))
    yield
    assert _fingerprint(Path("/etc/passwd")) == before, "the host's /etc/passwd changed"


def _fingerprint(path: Path) -> tuple[object, ...]:
    st = os.lstat(path)
    return path.read_bytes(), st.st_ino, st.st_nlink, st.st_mtime_ns, st.st_mode


def assert_untouched(outside: Path) -> None:
    assert os.listdir(outside) == ["sentinel"], "something was created outside the root"
    assert (outside / "sentinel").read_bytes() == b"original"
    assert os.stat(outside / "sentinel").st_nlink == 1, "the sentinel was hard-linked into the root"
    assert "trusted.overlay.opaque" not in os.listxattr(outside)


def apply(root: Path, overlay_whiteouts: bool, *entries: Entry) -> None:
    apply_layer(root, io.BytesIO(layer(*entries)), overlay_whiteouts=overlay_whiteouts)


@pytest.mark.parametrize("name", ["../outside/sentinel", "a/../../outside/sentinel", "/../outside/sentinel"])
def test_a_path_climbing_out_of_the_root_is_refused(
    root: Path, outside: Path, overlay_whiteouts: bool, name: str
) -> None:
    with pytest.raises(UnsafeArchive, match=f"layer entry {name}: path escapes the root"):
        apply(root, overlay_whiteouts, create_file(name, b"evil"))

    assert_untouched(outside)


def test_a_dotdot_that_stays_inside_is_resolved(root: Path, overlay_whiteouts: bool) -> None:
    apply(root, overlay_whiteouts, create_file("a/../b", b"x"))

    assert os.listdir(root) == ["b"]
    assert (root / "b").read_bytes() == b"x"


def test_an_absolute_path_lands_inside_the_root(root: Path, outside: Path, overlay_whiteouts: bool) -> None:
    name = f"/etc/webengine-test-{uuid.uuid4().hex}"

    apply(root, overlay_whiteouts, create_file(name, b"x"), create_file(f"{outside}/sentinel", b"evil"))

    assert (root / name.lstrip("/")).read_bytes() == b"x"
    assert not os.path.exists(name)
    assert (root / str(outside).lstrip("/") / "sentinel").read_bytes() == b"evil"
    assert_untouched(outside)


@pytest.mark.parametrize("target", ["/", "../../..", "../../../../../../..", "/.."])
def test_a_symlink_to_the_host_root_is_resolved_inside(root: Path, overlay_whiteouts: bool, target: str) -> None:
    apply(root, overlay_whiteouts, symlink("a", target), create_file("a/etc/passwd", b"evil"))

    assert (root / "etc/passwd").read_bytes() == b"evil"
    assert os.readlink(root / "a") == target


@pytest.mark.parametrize("absolute", [True, False], ids=["absolute", "relative"])
def test_a_symlink_to_an_outside_directory_is_resolved_inside(
    root: Path, outside: Path, overlay_whiteouts: bool, absolute: bool
) -> None:
    target = str(outside) if absolute else "../outside"

    apply(root, overlay_whiteouts, symlink("x", "y"), symlink("y", target), create_file("x/sentinel", b"evil"))

    inside = root / (str(outside).lstrip("/") if absolute else "outside")
    assert (inside / "sentinel").read_bytes() == b"evil"
    assert_untouched(outside)


def test_a_symlink_already_in_the_root_is_resolved_inside(root: Path, outside: Path, overlay_whiteouts: bool) -> None:
    os.symlink(outside, root / "link")

    apply(root, overlay_whiteouts, create_file("link/sentinel", b"evil"), create_file("link/new", b"evil"))

    assert sorted(os.listdir(root / str(outside).lstrip("/"))) == ["new", "sentinel"]
    assert_untouched(outside)


def test_an_entry_replaces_a_symlink_instead_of_writing_through_it(
    root: Path, outside: Path, overlay_whiteouts: bool
) -> None:
    apply(
        root,
        overlay_whiteouts,
        symlink("s", str(outside / "sentinel")),
        create_file("s", b"evil", 0o777),
        symlink("d", str(outside)),
        create_dir("d", 0o777),
        create_file("d/sentinel", b"evil"),
    )

    assert not (root / "s").is_symlink() and (root / "s").read_bytes() == b"evil"
    assert not (root / "d").is_symlink() and (root / "d/sentinel").read_bytes() == b"evil"
    assert_untouched(outside)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("/etc/passwd", "is not in the layer"),
        ("../outside/sentinel", "path escapes the root"),
        ("OUTSIDE/sentinel", "is not in the layer"),
        ("via-symlink/sentinel", "is not in the layer"),
        ("dir", "is a directory"),
        ("/", "hard link to the root"),
    ],
)
def test_a_hard_link_to_anything_outside_the_root_is_refused(
    root: Path, outside: Path, overlay_whiteouts: bool, target: str, message: str
) -> None:
    entries = [symlink("via-symlink", str(outside)), create_dir("dir")]
    link = hardlink("h", target.replace("OUTSIDE", str(outside)))

    with pytest.raises(UnsafeArchive, match=message):
        apply(root, overlay_whiteouts, *entries, link)

    assert not (root / "h").exists()
    assert_untouched(outside)


def test_a_hard_link_to_a_symlink_links_the_symlink_itself(root: Path, outside: Path, overlay_whiteouts: bool) -> None:
    apply(root, overlay_whiteouts, symlink("s", str(outside / "sentinel")), hardlink("h", "s"))

    assert os.readlink(root / "h") == str(outside / "sentinel")
    assert os.lstat(root / "h").st_ino == os.lstat(root / "s").st_ino
    assert_untouched(outside)


def test_a_symlink_loop_is_refused(root: Path, overlay_whiteouts: bool) -> None:
    with pytest.raises(UnsafeArchive, match="layer entry a/x: too many levels of symbolic links"):
        apply(root, overlay_whiteouts, symlink("a", "b"), symlink("b", "a"), create_file("a/x"))


def test_a_file_cannot_be_used_as_a_directory(root: Path, overlay_whiteouts: bool) -> None:
    with pytest.raises(UnsafeArchive, match="layer entry f/x: f is not a directory"):
        apply(root, overlay_whiteouts, create_file("f"), create_file("f/x"))


@pytest.mark.requires("root")
def test_device_nodes_are_created_only_inside_the_root(root: Path, overlay_whiteouts: bool) -> None:
    name = f"webengine-test-{uuid.uuid4().hex}"

    apply(
        root,
        overlay_whiteouts,
        symlink("hostdev", "/dev"),
        device(f"hostdev/{name}", "c", 1, 3),
        device(f"/{name}", "b", 7, 0),
    )

    assert os.stat(root / "dev" / name).st_rdev == os.makedev(1, 3)
    assert os.stat(root / name).st_rdev == os.makedev(7, 0)
    assert not os.path.exists(f"/dev/{name}") and not os.path.exists(f"/{name}")


@pytest.mark.requires("root")
def test_whiteouts_and_opaque_markers_never_reach_outside(root: Path, outside: Path, overlay_whiteouts: bool) -> None:
    apply(root, overlay_whiteouts, symlink("a", str(outside)), whiteout("a/sentinel"), opaque("a"))

    assert_untouched(outside)
    with pytest.raises(UnsafeArchive, match="path escapes the root"):
        apply(root, overlay_whiteouts, whiteout("../outside/sentinel"))
    assert_untouched(outside)


@pytest.mark.parametrize("name", [".wh..", "./.wh..", "/.wh..", "d/.wh..", ".wh.", "d/../.wh.."])
def test_a_layer_deleting_the_root_is_refused(root: Path, overlay_whiteouts: bool, name: str) -> None:
    (root / "keep").write_bytes(b"x")

    with pytest.raises(UnsafeArchive, match="a whiteout cannot delete the root"):
        apply(root, overlay_whiteouts, create_dir("d"), create_file(name))

    assert (root / "keep").read_bytes() == b"x"


def test_a_file_cannot_replace_the_root(root: Path, overlay_whiteouts: bool) -> None:
    with pytest.raises(UnsafeArchive, match="replaces the root directory"):
        apply(root, overlay_whiteouts, create_file(".", b"x"))

    assert root.is_dir()


@pytest.mark.requires("root")
def test_a_layer_cannot_forge_overlay_metadata_with_xattrs(root: Path, overlay_whiteouts: bool) -> None:
    forged = {"trusted.overlay.opaque": b"y", "trusted.overlay.redirect": b"/etc", "user.ok": b"1"}

    apply(root, overlay_whiteouts, create_dir("d", xattrs=forged), create_file("f", xattrs=forged))

    for name in ("d", "f"):
        assert os.listxattr(root / name) == ["user.ok"]


def test_a_symlinked_parent_inside_the_root_is_followed_like_docker_does(root: Path, overlay_whiteouts: bool) -> None:
    apply(
        root,
        overlay_whiteouts,
        create_dir("usr"),
        create_dir("usr/lib"),
        symlink("lib", "usr/lib"),
        create_file("lib/x"),
    )

    assert os.listdir(root / "usr/lib") == ["x"]
    assert (root / "lib").is_symlink()
