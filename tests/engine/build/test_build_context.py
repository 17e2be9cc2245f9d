"""The build context: unpacked once, within its directory, with .dockerignore applied and sources hashed."""

from __future__ import annotations

import bz2
import io
from pathlib import Path

import pytest

from containers.engine.build.context import BuildContext, ContextTooLarge, SourceTree, has_wildcards
from containers.engine.errors import InvalidArgument
from tests.engine.build.buildtest import tar_context


def _receive(tmp_path: Path, stream: io.BytesIO, dockerfile: str = "Dockerfile", limit: int = 1 << 20) -> BuildContext:
    return BuildContext.receive(stream, tmp_path / "context", dockerfile, limit)


def test_it_always_reads_the_dockerfile_even_when_dockerignore_excludes_it(tmp_path: Path) -> None:
    files = {
        "Dockerfile": "FROM busybox\n",
        ".dockerignore": "Dockerfile\n.dockerignore\n*.tmp\n",
        "a.tmp": "",
        "b": "",
    }
    context = _receive(tmp_path, tar_context(files))
    assert context.dockerfile == "FROM busybox\n"
    assert sorted(path.name for path in context.tree.root.iterdir()) == ["b"], "COPY . . must not see them"


def test_it_keeps_what_an_exception_reincludes_below_an_excluded_directory(tmp_path: Path) -> None:
    files = {"Dockerfile": "", ".dockerignore": "logs\n!logs/keep.txt\n", "logs/keep.txt": "", "logs/drop.txt": ""}
    context = _receive(tmp_path, tar_context(files))
    assert sorted(p.name for p in (context.tree.root / "logs").iterdir()) == ["keep.txt"]


def test_it_finds_a_lowercase_dockerfile_and_reads_compressed_contexts(tmp_path: Path) -> None:
    stream = io.BytesIO(bz2.compress(tar_context({"dockerfile": "FROM scratch\n"}).getvalue()))
    context = _receive(tmp_path, stream)
    assert (context.dockerfile_name, context.dockerfile) == ("dockerfile", "FROM scratch\n")


def test_it_refuses_what_is_not_a_tar_archive(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="build context: not a valid tar archive"):
        _receive(tmp_path, io.BytesIO(b"this is not a tar archive, not even close" * 20))
    assert not (tmp_path / "context").exists()


def test_it_counts_the_limit_on_what_it_unpacks(tmp_path: Path) -> None:
    stream = tar_context({"Dockerfile": "", "zeros": b"\0" * 300_000}, compression="gzip")
    assert len(stream.getvalue()) < 10_000
    with pytest.raises(ContextTooLarge):
        _receive(tmp_path, stream, limit=200_000)
    assert not (tmp_path / "context").exists()


def test_it_resolves_symlinks_inside_the_context_only(tmp_path: Path) -> None:
    stream = tar_context(
        {"Dockerfile": "", "etc/passwd": "context's own\n"}, symlinks={"host": "/etc", "up": "../../.."}
    )
    tree = _receive(tmp_path, stream).tree
    assert tree.resolve("host/passwd").read_text() == "context's own\n"
    assert tree.resolve("up/etc/passwd").read_text() == "context's own\n"


def test_it_hashes_content_mode_and_owner_but_not_times(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("one")
    tree = SourceTree(tmp_path)
    first = tree.hash("d")
    assert first.startswith("dir:") and SourceTree(tmp_path).hash("d/f").startswith("file:")
    (tmp_path / "d" / "f").touch()
    assert SourceTree(tmp_path).hash("d") == first
    (tmp_path / "d" / "f").chmod(0o600)
    assert SourceTree(tmp_path).hash("d") != first


@pytest.mark.parametrize(
    ("pattern", "matches"),
    [("*.txt", ["a.txt", "b.txt"]), ("dir/*", ["dir/c.txt", "dir/sub"]), ("dir/sub*", ["dir/sub"]),
     ("?.txt", ["a.txt", "b.txt"]), ("[a-a].txt", ["a.txt"]), ("[^a].txt", ["b.txt"]), ("*/c.txt", ["dir/c.txt"]),
     ("[", [])],
)  # fmt: skip
def test_it_matches_patterns_as_go_filepath_match(tmp_path: Path, pattern: str, matches: list[str]) -> None:
    for name in ("a.txt", "b.txt", "dir/c.txt", "dir/sub/d.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    assert SourceTree(tmp_path).glob(pattern) == matches
    assert has_wildcards(pattern) and not has_wildcards("plain\\*name")
