"""The overlay snapshotter: the conformance suite, and how it lays out overlay mounts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from containers.engine.errors import InvalidArgument
from containers.engine.snapshots import Mount, OverlaySnapshotter, Snapshotter
from tests.engine.suites.snapshotter import SnapshotterSuite


class TestOverlaySnapshotter(SnapshotterSuite):
    kind = "overlay"

    def test_it_stores_whiteouts_in_overlay_form(self, snapshotter: Snapshotter) -> None:
        assert snapshotter.overlay_whiteouts is True

    def test_an_active_snapshot_without_parent_is_a_bind_mount(self, snapshotter: Snapshotter) -> None:
        mounts = snapshotter.prepare("c1")

        assert mounts == [Mount("bind", str(snapshotter.upper_dir("c1")), ("rbind", "rw"))]

    def test_an_active_snapshot_overlays_its_parents_nearest_first(self, snapshotter: Snapshotter) -> None:
        self.commit_layer(snapshotter, "l1", None, {})
        self.commit_layer(snapshotter, "l2", "l1", {})

        [mount] = snapshotter.prepare("c1", "l2")

        upper = snapshotter.upper_dir("c1")
        lower = f"{snapshotter.upper_dir('l2')}:{snapshotter.upper_dir('l1')}"
        work = upper.parent / "work"
        assert mount.type == mount.source == "overlay"
        assert mount.options[:3] == (f"lowerdir={lower}", f"upperdir={upper}", f"workdir={work}")
        assert set(mount.options[3:]) == {"index=off", "redirect_dir=off", "metacopy=off"}, "a plain diff in upper"
        assert (upper.parent / "work").is_dir()

    def test_a_view_of_one_layer_is_a_read_only_bind_of_it(self, snapshotter: Snapshotter) -> None:
        self.commit_layer(snapshotter, "l1", None, {})

        assert snapshotter.view("v1", "l1") == [Mount("bind", str(snapshotter.upper_dir("l1")), ("rbind", "ro"))]
        assert snapshotter.view("v0") == [Mount("bind", str(snapshotter.upper_dir("v0")), ("rbind", "ro"))]

    def test_a_view_of_several_layers_is_an_overlay_without_upper(self, snapshotter: Snapshotter) -> None:
        self.commit_layer(snapshotter, "l1", None, {})
        self.commit_layer(snapshotter, "l2", "l1", {})

        lower = f"{snapshotter.upper_dir('l2')}:{snapshotter.upper_dir('l1')}"
        assert snapshotter.view("v", "l2") == [Mount("overlay", "overlay", (f"lowerdir={lower}",))]

    def test_a_child_uses_no_space_for_its_parents(self, snapshotter: Snapshotter) -> None:
        self.commit_layer(snapshotter, "l1", None, {"big": b"x" * 1000})
        snapshotter.prepare("c1", "l1")
        (snapshotter.upper_dir("c1") / "small").write_bytes(b"y" * 10)

        assert (snapshotter.usage("l1"), snapshotter.usage("c1")) == (1000, 10)

    def test_it_refuses_more_layers_than_one_mount_can_name(self, snapshotter: Snapshotter, state_root: Path) -> None:
        parent = None
        for n in range(300):
            try:
                snapshotter.prepare(f"c{n}", parent)
            except InvalidArgument as err:
                assert "more than the kernel's" in str(err)
                break
            snapshotter.commit(f"l{n}", f"c{n}")
            parent = f"l{n}"
        else:
            pytest.fail("300 layers should not fit in one page of mount options")

        assert all(info.name != f"c{n}" for info in snapshotter.walk())
        left = sorted(os.listdir(state_root / "snapshots"))
        assert left == sorted([*map(str, range(1, n + 1)), "metadata.json", "metadata.lock"]), "nothing half-made"

    def test_it_refuses_a_root_that_overlay_options_cannot_spell(self, state_root: Path) -> None:
        with pytest.raises(InvalidArgument, match="would split the overlay mount options"):
            OverlaySnapshotter(state_root / "a:b")
