"""The snapshotter conformance suite: the lifecycle every snapshotter must honour.

A test module subclasses `SnapshotterSuite` and sets `kind` ("overlay" or "native").
"""

from __future__ import annotations

import errno
import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pytest

from containers.engine.errors import AlreadyExists, FailedPrecondition, SnapshotNotFound
from containers.engine.snapshots import Kind, Snapshotter, new_snapshotter
from tests.engine.suites.fstest import mounted


def _prepare_many(kind: str, root: Path, prefix: str, count: int) -> None:
    snapshotter = new_snapshotter(kind, root)
    for n in range(count):
        snapshotter.prepare(f"{prefix}-{n}")


class SnapshotterSuite:
    """Conformance tests; subclasses set `kind`."""

    kind: str

    @pytest.fixture
    def snapshotter(self, state_root: Path) -> Snapshotter:
        return new_snapshotter(self.kind, state_root / "snapshots")

    def commit_layer(self, snapshotter: Snapshotter, name: str, parent: str | None, files: dict[str, bytes]) -> None:
        """Commit a snapshot `name` on top of `parent` holding `files`, written straight into its directory."""
        key = f"{name}-active"
        snapshotter.prepare(key, parent)
        for path, data in files.items():
            (snapshotter.upper_dir(key) / path).write_bytes(data)
        snapshotter.commit(name, key)

    def test_it_prepares_an_empty_active_snapshot(self, snapshotter: Snapshotter) -> None:
        mounts = snapshotter.prepare("c1", labels={"webengine.image": "sha256:ab"})

        info = snapshotter.stat("c1")
        assert (info.name, info.kind, info.parent) == ("c1", Kind.ACTIVE, None)
        assert info.labels == {"webengine.image": "sha256:ab"}
        assert info.created > 0
        assert mounts == snapshotter.mounts("c1")
        assert list(snapshotter.upper_dir("c1").iterdir()) == []
        assert (snapshotter.upper_dir("c1").stat().st_mode & 0o7777) == 0o755, "a rootfs / must be 0755"

    def test_it_commits_an_active_snapshot_under_a_name(self, snapshotter: Snapshotter) -> None:
        snapshotter.prepare("extract", labels={"a": "1", "b": "1"})

        snapshotter.commit("layer", "extract", labels={"b": "2"})

        info = snapshotter.stat("layer")
        assert (info.kind, info.parent, info.labels) == (Kind.COMMITTED, None, {"a": "1", "b": "2"})
        with pytest.raises(SnapshotNotFound):
            snapshotter.stat("extract")

    def test_it_refuses_a_key_or_name_that_is_taken(self, snapshotter: Snapshotter) -> None:
        self.commit_layer(snapshotter, "base", None, {})
        snapshotter.prepare("c1", "base")

        for create in (snapshotter.prepare, snapshotter.view):
            for key in ("c1", "base"):
                with pytest.raises(AlreadyExists, match=f"snapshot {key}: already exists"):
                    create(key, "base")
        snapshotter.prepare("c2", "base")
        with pytest.raises(AlreadyExists):
            snapshotter.commit("base", "c2")
        with pytest.raises(AlreadyExists):
            snapshotter.commit("c1", "c2")
        assert snapshotter.stat("c2").kind is Kind.ACTIVE, "a refused commit leaves the active snapshot alone"

    def test_it_commits_only_active_snapshots(self, snapshotter: Snapshotter) -> None:
        self.commit_layer(snapshotter, "base", None, {})
        snapshotter.view("v", "base")

        for key in ("v", "base"):
            with pytest.raises(FailedPrecondition, match="only an active snapshot can be committed"):
                snapshotter.commit("new", key)
        with pytest.raises(SnapshotNotFound):
            snapshotter.commit("new", "missing")

    def test_it_builds_only_on_committed_parents(self, snapshotter: Snapshotter) -> None:
        snapshotter.prepare("active")

        with pytest.raises(SnapshotNotFound, match="snapshot missing: not found"):
            snapshotter.prepare("c1", "missing")
        with pytest.raises(FailedPrecondition, match="snapshot active: is active"):
            snapshotter.view("v1", "active")
        assert [info.name for info in snapshotter.walk()] == ["active"], "a refused prepare leaves nothing behind"

    def test_it_refuses_to_remove_a_parent(self, snapshotter: Snapshotter) -> None:
        self.commit_layer(snapshotter, "base", None, {"f": b"x"})
        snapshotter.prepare("c1", "base")

        with pytest.raises(FailedPrecondition, match="snapshot base: has 1 children"):
            snapshotter.remove("base")
        assert snapshotter.stat("base").kind is Kind.COMMITTED

        snapshotter.remove("c1")
        snapshotter.remove("base")
        assert list(snapshotter.walk()) == []

    def test_it_removes_the_files_of_a_snapshot(self, snapshotter: Snapshotter) -> None:
        snapshotter.prepare("c1")
        upper = snapshotter.upper_dir("c1")
        (upper / "f").write_bytes(b"data")

        snapshotter.remove("c1")

        assert not upper.exists()
        with pytest.raises(SnapshotNotFound):
            snapshotter.remove("c1")

    def test_it_raises_not_found_for_unknown_keys(self, snapshotter: Snapshotter) -> None:
        for call in (snapshotter.stat, snapshotter.mounts, snapshotter.usage, snapshotter.upper_dir):
            with pytest.raises(SnapshotNotFound, match="snapshot nope: not found"):
                call("nope")

    def test_it_walks_every_snapshot(self, snapshotter: Snapshotter) -> None:
        self.commit_layer(snapshotter, "l1", None, {})
        self.commit_layer(snapshotter, "l2", "l1", {})
        snapshotter.prepare("c1", "l2", labels={"webengine.image": "sha256:ab"})
        snapshotter.view("v1", "l1")

        found = {info.name: (info.kind, info.parent, info.labels) for info in snapshotter.walk()}

        assert found == {
            "l1": (Kind.COMMITTED, None, {}),
            "l2": (Kind.COMMITTED, "l1", {}),
            "c1": (Kind.ACTIVE, "l2", {"webengine.image": "sha256:ab"}),
            "v1": (Kind.VIEW, "l1", {}),
        }

    def test_it_refuses_to_describe_mounts_of_a_committed_snapshot(self, snapshotter: Snapshotter) -> None:
        self.commit_layer(snapshotter, "l1", None, {})

        with pytest.raises(FailedPrecondition, match="snapshot l1: is committed"):
            snapshotter.mounts("l1")

    def test_it_measures_usage_counting_hard_links_once(self, snapshotter: Snapshotter) -> None:
        snapshotter.prepare("c1")
        upper = snapshotter.upper_dir("c1")
        (upper / "big").write_bytes(b"x" * 1000)
        os.link(upper / "big", upper / "big-link")
        (upper / "dir").mkdir()
        (upper / "dir" / "small").write_bytes(b"y" * 10)

        assert snapshotter.usage("c1") == 1010

    def test_it_shares_its_state_with_other_instances(self, snapshotter: Snapshotter, state_root: Path) -> None:
        self.commit_layer(snapshotter, "l1", None, {"f": b"x"})
        snapshotter.prepare("c1", "l1")

        other = new_snapshotter(self.kind, state_root / "snapshots")

        assert other.stat("c1").parent == "l1"
        assert other.mounts("c1") == snapshotter.mounts("c1")
        other.remove("c1")
        with pytest.raises(SnapshotNotFound):
            snapshotter.stat("c1")

    def test_it_keeps_every_snapshot_prepared_by_concurrent_processes(
        self, snapshotter: Snapshotter, state_root: Path
    ) -> None:
        root = state_root / "snapshots"
        with ProcessPoolExecutor(4, mp_context=get_context("fork")) as pool:
            jobs = [pool.submit(_prepare_many, self.kind, root, f"p{n}", 10) for n in range(4)]
            for job in jobs:
                job.result()

        keys = {info.name for info in snapshotter.walk()}
        assert keys == {f"p{p}-{n}" for p in range(4) for n in range(10)}, "a lost update: metadata.json was raced"
        dirs = {snapshotter.upper_dir(key) for key in keys}
        assert len(dirs) == 40, "two snapshots were given the same directory"

    @pytest.mark.requires("root", "overlayfs")
    def test_a_child_sees_its_parents_files_through_its_mount(self, snapshotter: Snapshotter, state_root: Path) -> None:
        self.commit_layer(snapshotter, "l1", None, {"a": b"1", "b": b"1"})
        self.commit_layer(snapshotter, "l2", "l1", {"b": b"2", "c": b"2"})
        mounts = snapshotter.prepare("c1", "l2")

        with mounted(mounts, state_root / "rootfs") as rootfs:
            seen = {p.name: p.read_bytes() for p in rootfs.iterdir()}
            (rootfs / "d").write_bytes(b"container")

        assert seen == {"a": b"1", "b": b"2", "c": b"2"}
        assert (snapshotter.upper_dir("c1") / "d").read_bytes() == b"container"

    @pytest.mark.requires("root", "overlayfs")
    def test_what_an_active_snapshot_wrote_survives_commit(self, snapshotter: Snapshotter, state_root: Path) -> None:
        self.commit_layer(snapshotter, "l1", None, {"a": b"1"})
        with mounted(snapshotter.prepare("build", "l1"), state_root / "rootfs") as rootfs:
            (rootfs / "b").write_bytes(b"built")
        snapshotter.commit("l2", "build")

        with mounted(snapshotter.view("v", "l2"), state_root / "view") as view:
            assert sorted(p.name for p in view.iterdir()) == ["a", "b"]
            assert (view / "b").read_bytes() == b"built"

    @pytest.mark.requires("root", "overlayfs")
    def test_a_view_is_read_only(self, snapshotter: Snapshotter, state_root: Path) -> None:
        self.commit_layer(snapshotter, "l1", None, {"a": b"1"})
        self.commit_layer(snapshotter, "l2", "l1", {"b": b"2"})

        for key, parent in (("v0", None), ("v1", "l1"), ("v2", "l2")):
            with mounted(snapshotter.view(key, parent), state_root / key) as view:
                with pytest.raises(OSError) as raised:
                    (view / "new").write_bytes(b"x")
                assert raised.value.errno == errno.EROFS, f"a view of {parent} should be mounted read-only"
