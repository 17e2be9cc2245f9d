"""The image store: lookups as moby does them, tags, `docker rmi` semantics, unpacking and garbage collection."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from pathlib import Path

import pytest

from containers.engine.config import EngineConfig
from containers.engine.content.local import LocalStore
from containers.engine.errors import (
    ContentNotFound,
    DigestMismatch,
    ImageInUse,
    ImageNotFound,
    InvalidArgument,
    InvalidReference,
)
from containers.engine.images.manifest import MEDIA_TYPE_OCI_LAYER, Descriptor, parse_manifest
from containers.engine.images.store import IMAGE_LABEL, ImageStore, NewImage
from containers.engine.snapshots import Kind, new_snapshotter
from containers.engine.snapshots.unpack import chain_ids
from tests.engine.imagetest import blobs, config_bytes, file_layer, make_image, new_store
from tests.engine.suites.fstest import digest


@pytest.fixture
def store(state_root: Path) -> ImageStore:
    return new_store(state_root)


# Creating and finding


def test_it_creates_an_image_from_committed_layers(store: ImageStore) -> None:
    base, app = file_layer("base"), file_layer("app", b"x" * 5000)

    image = make_image(store, [base, app], tags=["app:1"])

    assert image.id == "sha256:" + hashlib.sha256(store.content.path(image.id).read_bytes()).hexdigest()
    assert image.repo_tags == ("app:1",)
    assert image.repo_digests == ()
    assert [layer.diff_id for layer in image.layers] == [digest(base), digest(app)]
    assert image.size == len(base) + len(app)
    assert image.config.config.cmd == ("sh",)
    assert image.created is not None and image.created.year == 2024
    assert image.last_tag_time is not None
    manifest = parse_manifest(store.content.path(image.manifest_digest).read_bytes())
    assert manifest.config.digest == image.id  # type: ignore[union-attr]


def test_the_size_of_a_compressed_image_is_its_uncompressed_size(store: ImageStore) -> None:
    data = file_layer("big", b"z" * 100_000)

    image = make_image(store, [data], compress=True)

    assert image.layers[0].size < len(data)
    assert image.size == len(data)


def test_it_refuses_a_layer_that_does_not_match_its_diff_id(store: ImageStore) -> None:
    real, claimed = file_layer("real"), file_layer("claimed")
    desc = Descriptor(MEDIA_TYPE_OCI_LAYER, store.content.write_blob(real), len(real))

    with pytest.raises(DigestMismatch, match=f"config says {digest(claimed)}"):
        store.create(config_bytes([digest(claimed)]), [desc], ["bad:1"])
    assert store.list() == []


def test_it_refuses_missing_layers_and_a_wrong_count(store: ImageStore) -> None:
    data = file_layer("a")
    missing = Descriptor(MEDIA_TYPE_OCI_LAYER, digest(data), len(data))

    with pytest.raises(ContentNotFound):
        store.create(config_bytes([digest(data)]), [missing])
    with pytest.raises(InvalidArgument, match="2 diff IDs for 1 layers"):
        store.create(config_bytes([digest(data), digest(data)]), [missing])
    with pytest.raises(InvalidReference):
        make_image(store, [data], tags=["Bad"])
    assert store.list() == []


def test_create_all_records_everything_or_nothing(store: ImageStore) -> None:
    good = file_layer("good")
    desc = Descriptor(MEDIA_TYPE_OCI_LAYER, store.content.write_blob(good), len(good))
    other = file_layer("other")

    with pytest.raises(DigestMismatch):
        store.create_all([
            NewImage(config_bytes([digest(good)]), [desc], ["good:1"]),
            NewImage(config_bytes([digest(other)]), [desc], ["other:1"]),
        ])
    assert store.list() == []


def test_a_given_manifest_is_kept_byte_for_byte(store: ImageStore) -> None:
    data = file_layer("a")
    desc = Descriptor(MEDIA_TYPE_OCI_LAYER, store.content.write_blob(data), len(data))
    config = config_bytes([digest(data)])
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                   "digest": digest(config)},
        "layers": [desc.to_dict()],
    }, indent=3).encode()

    image = store.create(config, [desc], ["pulled:1"], manifest=manifest)

    assert image.manifest_digest == digest(manifest)
    assert store.content.path(image.manifest_digest).read_bytes() == manifest


def test_it_refuses_a_manifest_that_is_not_an_image(store: ImageStore) -> None:
    config = config_bytes([])
    artifact = json.dumps({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", "size": len(config),
                   "digest": digest(config)},
        "layers": [],
    }).encode()

    with pytest.raises(InvalidArgument, match="is not an image config"):
        store.create(config, [], manifest=artifact)
    assert store.list() == []


def test_creating_the_same_image_again_adds_tags(store: ImageStore) -> None:
    first = make_image(store, [file_layer("a")], tags=["a:1"])
    second = make_image(store, [file_layer("a")], tags=["a:2"])

    assert first.id == second.id
    assert second.repo_tags == ("a:1", "a:2")
    assert len(store.list()) == 1


@pytest.mark.parametrize(
    "name",
    [
        "app", "app:latest", "docker.io/library/app", "docker.io/library/app:latest", "index.docker.io/library/app",
    ],
)
def test_it_finds_an_image_by_any_form_of_its_reference(store: ImageStore, name: str) -> None:
    image = make_image(store, [file_layer("a")], tags=["app"])

    assert store.get(name).id == image.id


def test_it_finds_an_image_by_id_and_id_prefix(store: ImageStore) -> None:
    image = make_image(store, [file_layer("a")])
    hex_ = image.id.removeprefix("sha256:")

    for name in (image.id, hex_, hex_[:12], hex_[:1], "sha256:" + hex_[:5], f"app@{image.id}"):
        assert store.get(name).id == image.id, name


def test_a_tag_wins_over_an_id_prefix(store: ImageStore) -> None:
    image = make_image(store, [file_layer("a")])
    other = make_image(store, [file_layer("b")])
    prefix = image.id.removeprefix("sha256:")[:6]
    store.tag(other.id, prefix)

    assert store.get(prefix).id == other.id


def test_an_ambiguous_prefix_is_an_error(store: ImageStore) -> None:
    images = [make_image(store, [file_layer(str(n))]) for n in range(40)]
    shared = next(c for c in "0123456789abcdef" if sum(i.id[7] == c for i in images) > 1)

    with pytest.raises(ImageNotFound, match=f"No such image: {shared} \\(ambiguous ID prefix"):
        store.get(shared)


def test_not_found_uses_mobys_wording(store: ImageStore) -> None:
    with pytest.raises(ImageNotFound, match=r"^No such image: busybox:latest$"):
        store.get("busybox")
    with pytest.raises(ImageNotFound, match=r"^No such image: localhost:5000/x:1$"):
        store.get("localhost:5000/x:1")
    with pytest.raises(ImageNotFound, match=r"^No such image: sha256:0{64}$"):
        store.get("0" * 64)
    with pytest.raises(InvalidReference):
        store.get("Not-Valid")


def test_list_is_newest_first(store: ImageStore) -> None:
    old = make_image(store, [file_layer("old")], created="2020-01-01T00:00:00Z")
    new = make_image(store, [file_layer("new")], created="2025-01-01T00:00:00Z")

    assert [i.id for i in store.list()] == [new.id, old.id]


def test_digest_references_become_repo_digests(store: ImageStore) -> None:
    image = make_image(store, [file_layer("a")])
    canonical = f"localhost:5000/app@{image.manifest_digest}"
    layers = [Descriptor(layer.media_type, layer.digest, layer.size) for layer in image.layers]
    store.create(store.content.path(image.id).read_bytes(), layers, [canonical])

    found = store.get(canonical)
    assert found.id == image.id
    assert found.repo_digests == (canonical,)
    assert found.repo_tags == ()


# Tagging


def test_tag_moves_a_tag_to_another_image(store: ImageStore) -> None:
    a = make_image(store, [file_layer("a")], tags=["app:1"])
    b = make_image(store, [file_layer("b")])

    tagged = store.tag(b.id[:19], "app:1")

    assert tagged.repo_tags == ("app:1",)
    assert store.get(a.id).repo_tags == ()
    assert store.get("app:1").id == b.id


def test_tag_refuses_a_digest_reference(store: ImageStore) -> None:
    a = make_image(store, [file_layer("a")])

    with pytest.raises(InvalidReference, match="refusing to create a tag with a digest reference"):
        store.tag(a.id, f"app@{a.id}")


def test_untag(store: ImageStore) -> None:
    a = make_image(store, [file_layer("a")], tags=["app:1", "app:2"])

    assert store.untag("app:1").familiar() == "app:1"
    assert store.get(a.id).repo_tags == ("app:2",)
    with pytest.raises(ImageNotFound, match="No such image: app:1"):
        store.untag("app:1")


# Removing, as `docker rmi`


def test_removing_one_of_several_tags_only_untags(store: ImageStore) -> None:
    image = make_image(store, [file_layer("a")], tags=["app:1", "other:2"])

    assert store.remove("app:1") == [{"Untagged": "app:1"}]
    assert store.get(image.id).repo_tags == ("other:2",)


def test_removing_the_last_tag_deletes_the_image_and_its_layers(store: ImageStore) -> None:
    image = make_image(store, [file_layer("a")], tags=["app"])
    top = store.unpack(image)

    records = store.remove("app")

    assert records == [{"Untagged": "app:latest"}, {"Deleted": image.id}, {"Deleted": top}]
    assert store.list() == []
    assert blobs(store) == set()
    assert list(store.snapshotter.walk()) == []


def test_removing_by_id_with_several_repositories_must_be_forced(store: ImageStore) -> None:
    image = make_image(store, [file_layer("a")], tags=["app:1", "other:1"])

    with pytest.raises(ImageInUse, match=(
        f"^conflict: unable to delete {image.short_id} \\(must be forced\\) - "
        "image is referenced in multiple repositories$"
    )):
        store.remove(image.id)
    records = store.remove(image.short_id, force=True)

    assert records == [{"Untagged": "app:1"}, {"Untagged": "other:1"}, {"Deleted": image.id}]


def test_removing_by_id_with_one_tag_untags_and_deletes(store: ImageStore) -> None:
    image = make_image(store, [file_layer("a")], tags=["app:1"])

    assert store.remove(image.short_id, prune=False) == [{"Untagged": "app:1"}, {"Deleted": image.id}]
    assert image.layers[0].digest in blobs(store), "without prune the layers stay"


def test_removing_keeps_layers_other_images_share(store: ImageStore) -> None:
    base = file_layer("base")
    a = make_image(store, [base, file_layer("a")], tags=["a"])
    b = make_image(store, [base, file_layer("b")], tags=["b"])
    store.unpack(a)
    store.unpack(b)

    records = store.remove("a")

    chains = chain_ids([layer.diff_id for layer in a.layers])
    assert records[-1] == {"Deleted": chains[1]}
    assert {s.name for s in store.snapshotter.walk()} == set(chain_ids([layer.diff_id for layer in b.layers]))
    assert b.layers[0].digest in blobs(store)
    assert a.layers[1].digest not in blobs(store)


def _use(store: ImageStore, image_id: str, container: str) -> None:
    """Prepare a container's active snapshot from the image, as the runtime does."""
    parent = store.unpack(store.get(image_id))
    store.snapshotter.prepare(container, parent, labels={IMAGE_LABEL: image_id})


def _with_running(store: ImageStore, state_root: Path, running: set[str]) -> ImageStore:
    config = EngineConfig(root=state_root, snapshotter="native")
    return ImageStore(config, store.content, store.snapshotter, is_running=lambda c: c in running)


def test_an_image_a_container_uses_keeps_its_last_tag_unless_forced(store: ImageStore, state_root: Path) -> None:
    image = make_image(store, [file_layer("a")], tags=["app"])
    _use(store, image.id, "c0ffee000000111")
    store = _with_running(store, state_root, running=set())

    with pytest.raises(ImageInUse, match=(
        'conflict: unable to remove repository reference "app" \\(must force\\) - '
        f"container c0ffee000000 is using its referenced image {image.short_id}"
    )):
        store.remove("app")
    with pytest.raises(ImageInUse, match="must be forced.*stopped container c0ffee000000"):
        store.remove(image.id)


def test_force_deletes_an_image_a_stopped_container_uses_but_keeps_its_layers(
    store: ImageStore, state_root: Path
) -> None:
    image = make_image(store, [file_layer("a")], tags=["app"])
    _use(store, image.id, "stopped")
    store = _with_running(store, state_root, running=set())

    assert store.remove("app", force=True) == [{"Untagged": "app:latest"}, {"Deleted": image.id}]
    assert store.snapshotter.stat("stopped").kind == Kind.ACTIVE
    assert {s.name for s in store.snapshotter.walk()} == {"stopped", image.layers[0].diff_id}


def test_force_only_untags_an_image_a_running_container_uses(store: ImageStore, state_root: Path) -> None:
    image = make_image(store, [file_layer("a")], tags=["app"])
    _use(store, image.id, "running")
    store = _with_running(store, state_root, running={"running"})

    assert store.remove("app", force=True) == [{"Untagged": "app:latest"}]
    assert store.get(image.id).repo_tags == ()
    with pytest.raises(ImageInUse, match="cannot be forced.*running container running"):
        store.remove(image.id, force=True)


def test_without_runtime_state_every_user_counts_as_running(store: ImageStore) -> None:
    image = make_image(store, [file_layer("a")], tags=["app"])
    _use(store, image.id, "unknown")

    assert store.remove("app", force=True) == [{"Untagged": "app:latest"}]
    assert store.get(image.id).id == image.id


# Unpacking, garbage collection, usage


def test_unpack_commits_each_layer_under_its_chain_id_once(store: ImageStore) -> None:
    image = make_image(store, [file_layer("a"), file_layer("b")], compress=True)

    top = store.unpack(image)
    again = store.unpack(image)

    chains = chain_ids([layer.diff_id for layer in image.layers])
    assert top == again == chains[-1]
    assert {s.name for s in store.snapshotter.walk()} == set(chains)
    assert (store.snapshotter.upper_dir(top) / "b").read_bytes() == b"b"


def test_gc_deletes_what_nothing_references(store: ImageStore) -> None:
    kept = make_image(store, [file_layer("kept")], tags=["kept"])
    store.unpack(kept)
    orphan_blob = store.content.write_blob(b"orphan")
    store.snapshotter.prepare("extract-1", None)
    store.snapshotter.commit("sha256:" + "9" * 64, "extract-1")
    store.snapshotter.prepare("extract-stale", None)

    assert store.gc(grace_s=3600) == {"blobs_deleted": 0, "blob_bytes": 0, "snapshots_deleted": 0, "snapshot_bytes": 0}
    report = store.gc(grace_s=-1)

    assert report["blobs_deleted"] == 1 and report["blob_bytes"] == len(b"orphan")
    assert report["snapshots_deleted"] == 2
    assert orphan_blob not in blobs(store)
    assert {s.name for s in store.snapshotter.walk()} == {kept.layers[0].diff_id}
    assert store.get("kept").id == kept.id


def test_gc_forgets_layers_whose_blobs_are_gone(store: ImageStore, state_root: Path) -> None:
    make_image(store, [file_layer("a")], tags=["app"])
    store.remove("app")

    store.gc(grace_s=-1)

    assert json.loads((state_root / "images" / "index.json").read_text())["layers"] == {}


def test_gc_keeps_the_parents_of_containers(store: ImageStore) -> None:
    image = make_image(store, [file_layer("a")], tags=["app"])
    _use(store, image.id, "ctr")
    store.remove("app", force=True)

    store.gc(grace_s=-1)

    assert {s.name for s in store.snapshotter.walk()} == {"ctr", image.layers[0].diff_id}


def test_usage_counts_shared_layers_once(store: ImageStore) -> None:
    base = file_layer("base", b"b" * 1000)
    a = make_image(store, [base, file_layer("a")], tags=["a"])
    b = make_image(store, [base, file_layer("b")], tags=["b"])
    _use(store, a.id, "ctr")

    usage = store.usage()

    by_id = {u.id: u for u in usage.images}
    assert by_id[a.id].size == a.size and by_id[a.id].shared_size == len(base)
    assert (by_id[a.id].containers, by_id[b.id].containers) == (1, 0)
    assert usage.layers_size == a.size + b.size - len(base)


# Sharing between processes


def test_the_index_is_plain_json_replaced_atomically(store: ImageStore, state_root: Path) -> None:
    image = make_image(store, [file_layer("a")], tags=["app"])

    doc = json.loads((state_root / "images" / "index.json").read_text())
    assert doc["tags"] == {"docker.io/library/app:latest": image.id}
    assert doc["images"][image.id]["manifest"] == image.manifest_digest
    assert [p.name for p in (state_root / "images").iterdir() if p.name.startswith(".index-")] == []


def _tag_many(root: str, source: str, worker: int) -> None:
    config = EngineConfig(root=Path(root), snapshotter="native")
    store = ImageStore(config, LocalStore(config.content_root), new_snapshotter("native", config.snapshots_root))
    for n in range(20):
        store.tag(source, f"w{worker}:{n}")


def test_processes_sharing_the_store_lose_no_update(store: ImageStore, state_root: Path) -> None:
    image = make_image(store, [file_layer("a")])
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_tag_many, args=(str(state_root), image.id, w)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)

    assert [p.exitcode for p in workers] == [0, 0, 0, 0]
    assert len(store.get(image.id).repo_tags) == 80
    assert os.path.exists(state_root / "images" / "lock")
