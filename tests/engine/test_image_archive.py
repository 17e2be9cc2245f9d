"""`docker save` and `docker load` archives, OCI layouts, and archives that try to do harm."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from containers.engine.content.store import digest_of
from containers.engine.errors import AlreadyExists, DigestMismatch, InvalidArgument, InvalidReference, UnsafeArchive
from containers.engine.images.archive import load, load_oci_layout, save, save_oci_layout
from containers.engine.images.manifest import (
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_LAYER,
    MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_OCI_MANIFEST,
    Descriptor,
    Index,
    Manifest,
    Platform,
    host_platform,
)
from containers.engine.images.store import Image, ImageStore
from tests.engine.imagetest import blobs, config_bytes, file_layer, make_image, new_store
from tests.engine.suites.fstest import digest


@pytest.fixture
def store(state_root: Path) -> ImageStore:
    return new_store(state_root / "a")


@pytest.fixture
def other(state_root: Path) -> ImageStore:
    """A second, empty store: where archives are loaded."""
    return new_store(state_root / "b")


def _save(store: ImageStore, *names: str) -> bytes:
    out = io.BytesIO()
    save(store, list(names), out)
    return out.getvalue()


def _members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name: tar.extractfile(m).read() if m.isreg() else b"" for m in tar}  # type: ignore[union-attr]


def _tar(*entries: tuple[str, bytes] | tarfile.TarInfo) -> bytes:
    """Build a tar from (name, data) pairs and ready-made headers (links, devices)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tar.addfile(entry)
            else:
                info = tarfile.TarInfo(entry[0])
                info.size = len(entry[1])
                tar.addfile(info, io.BytesIO(entry[1]))
    return out.getvalue()


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _blob(data: bytes) -> tuple[str, bytes]:
    return "blobs/sha256/" + digest_of(data).removeprefix("sha256:"), data


# Saving


def _name(digest_: str) -> str:
    return "blobs/sha256/" + digest_.removeprefix("sha256:")


def test_save_writes_the_docker_25_layout(store: ImageStore) -> None:
    layer = file_layer("hello")
    image = make_image(store, [layer], tags=["hello:1"], compress=True)

    members = _members(_save(store, "hello:1"))

    index = json.loads(members["index.json"])
    assert index["mediaType"] == MEDIA_TYPE_OCI_INDEX
    [entry] = index["manifests"]
    assert entry["mediaType"] == MEDIA_TYPE_OCI_MANIFEST
    assert entry["annotations"] == {
        "io.containerd.image.name": "docker.io/library/hello:1",
        "org.opencontainers.image.ref.name": "1",
    }
    assert set(members) == {
        "blobs", "blobs/sha256", "index.json", "manifest.json", "oci-layout", "repositories",
        _name(image.id), _name(digest(layer)), _name(entry["digest"]),
    }
    assert members[_name(digest(layer))] == layer, "layers are saved uncompressed"
    assert json.loads(members["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    assert json.loads(members["manifest.json"]) == [
        {"Config": _name(image.id), "RepoTags": ["hello:1"], "Layers": [_name(digest(layer))]}
    ]
    assert json.loads(members["repositories"]) == {"hello": {"1": digest(layer).removeprefix("sha256:")}}
    manifest = json.loads(members[_name(entry["digest"])])
    assert manifest["config"]["digest"] == image.id
    assert manifest["layers"] == [{"mediaType": MEDIA_TYPE_OCI_LAYER, "digest": digest(layer), "size": len(layer)}]


def test_save_by_name_saves_every_tag_of_the_repository(store: ImageStore) -> None:
    a = make_image(store, [file_layer("a")], tags=["app:1", "app:2", "other:1"])
    b = make_image(store, [file_layer("b")], tags=["app:3"])

    entries = json.loads(_members(_save(store, "app"))["manifest.json"])

    assert {e["Config"].rsplit("/", 1)[1]: e["RepoTags"] for e in entries} == {
        a.id.removeprefix("sha256:"): ["app:1", "app:2"],
        b.id.removeprefix("sha256:"): ["app:3"],
    }


def test_save_by_id_saves_the_image_untagged(store: ImageStore) -> None:
    image = make_image(store, [file_layer("a")], tags=["app:1"])

    members = _members(_save(store, image.short_id))

    assert json.loads(members["manifest.json"])[0]["RepoTags"] is None
    assert "annotations" not in json.loads(members["index.json"])["manifests"][0]
    assert "repositories" not in members


def test_save_refuses_unknown_images(store: ImageStore) -> None:
    with pytest.raises(Exception, match="No such image: nothing:latest"):
        _save(store, "nothing")


# Loading


def _same(a: Image, b: Image) -> None:
    assert (a.id, a.repo_tags, a.manifest_digest, a.size) == (b.id, b.repo_tags, b.manifest_digest, b.size)


def test_save_then_load_in_a_fresh_store_gives_the_same_images(store: ImageStore, other: ImageStore) -> None:
    base = file_layer("base")
    a = make_image(store, [base, file_layer("a")], tags=["a:1", "a:2"])
    b = make_image(store, [base], tags=["localhost:5000/b:x"], compress=True)

    loaded = load(other, io.BytesIO(_save(store, "a", "localhost:5000/b:x")))

    assert [i.id for i in loaded] == [a.id, b.id]
    _same(other.get("a:1"), a)
    assert other.get("localhost:5000/b:x").id == b.id
    assert other.get(b.id).layers[0].media_type == MEDIA_TYPE_OCI_LAYER
    assert blobs(other) == {a.id, a.manifest_digest, b.id, other.get(b.id).manifest_digest,
                            *(layer.digest for layer in a.layers)}, "only the images' blobs remain"


@pytest.mark.parametrize(
    "compress",
    [lambda d: gzip.compress(d, mtime=0), bz2.compress, lzma.compress],
    ids=["gzip", "bzip2", "xz"],
)
def test_load_accepts_compressed_archives(store: ImageStore, other: ImageStore, compress: Callable) -> None:
    image = make_image(store, [file_layer("a")], tags=["app"])

    [loaded] = load(other, io.BytesIO(compress(_save(store, "app"))))

    _same(loaded, image)


def test_load_refuses_zstd(other: ImageStore) -> None:
    with pytest.raises(InvalidArgument, match="zstd compression is not supported"):
        load(other, io.BytesIO(b"\x28\xb5\x2f\xfd" + b"\0" * 100))


def _legacy_archive(layer: bytes, config: bytes, *, gzip_layer: bool = False, tag: str = "legacy:1") -> bytes:
    """An archive as Docker before 25 wrote it: <id>.json, <v1 id>/layer.tar, a symlinked shared layer."""
    cid = digest_of(config).removeprefix("sha256:")
    data = gzip.compress(layer, mtime=0) if gzip_layer else layer
    manifest = [{"Config": f"{cid}.json", "RepoTags": [tag], "Layers": ["1111/layer.tar"]}]
    return _tar(
        (f"{cid}.json", config),
        ("0000/layer.tar", data),
        ("0000/VERSION", b"1.0"),
        _link("1111/layer.tar", "../0000/layer.tar"),
        ("manifest.json", json.dumps(manifest).encode()),
        ("repositories", json.dumps({tag.split(":")[0]: {"1": "1111"}}).encode()),
    )


@pytest.mark.parametrize("gzip_layer", [False, True])
def test_load_reads_legacy_archives(other: ImageStore, gzip_layer: bool) -> None:
    layer = file_layer("old")
    config = config_bytes([digest(layer)])

    [image] = load(other, io.BytesIO(_legacy_archive(layer, config, gzip_layer=gzip_layer)))

    assert image.id == digest_of(config)
    assert image.repo_tags == ("legacy:1",)
    assert image.layers[0].media_type == (MEDIA_TYPE_OCI_LAYER_GZIP if gzip_layer else MEDIA_TYPE_OCI_LAYER)
    assert image.size == len(layer)


def _oci_archive(layer: bytes, config: bytes, annotations: dict[str, str], *, gzip_layer: bool = False) -> bytes:
    data = gzip.compress(layer, mtime=0) if gzip_layer else layer
    media_type = MEDIA_TYPE_OCI_LAYER_GZIP if gzip_layer else MEDIA_TYPE_OCI_LAYER
    manifest = Manifest(
        Descriptor("application/vnd.oci.image.config.v1+json", digest_of(config), len(config)),
        (Descriptor(media_type, digest_of(data), len(data)),),
    ).to_json()
    index = Index((Descriptor(MEDIA_TYPE_OCI_MANIFEST, digest_of(manifest), len(manifest), annotations),))
    return _tar(
        ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
        ("index.json", index.to_json()),
        _blob(config),
        _blob(data),
        _blob(manifest),
    )


@pytest.mark.parametrize(
    ("annotations", "tags"),
    [
        ({"org.opencontainers.image.ref.name": "busybox"}, ("busybox:latest",)),
        ({"org.opencontainers.image.ref.name": "localhost:5000/x:1"}, ("localhost:5000/x:1",)),
        ({"org.opencontainers.image.ref.name": "1", "io.containerd.image.name": "docker.io/foo/bar:1"}, ("foo/bar:1",)),
        ({}, ()),
    ],
)
def test_load_reads_oci_layout_archives(other: ImageStore, annotations: dict[str, str], tags: tuple[str]) -> None:
    layer = file_layer("oci")
    config = config_bytes([digest(layer)])

    [image] = load(other, io.BytesIO(_oci_archive(layer, config, annotations, gzip_layer=True)))

    assert (image.id, image.repo_tags) == (digest_of(config), tags)
    assert image.layers[0].media_type == MEDIA_TYPE_OCI_LAYER_GZIP
    assert image.size == len(layer)


def test_load_takes_this_hosts_manifest_from_a_multi_platform_index(other: ImageStore) -> None:
    layer = file_layer("multi")
    config = config_bytes([digest(layer)])
    single = _members(_oci_archive(layer, config, {}))
    inner = json.loads(single["index.json"])["manifests"][0]
    foreign = dict(inner, digest="sha256:" + "e" * 64, platform={"os": "linux", "architecture": "s390x"})
    here = dict(inner, platform=Platform(host_platform().os, host_platform().architecture).to_dict())
    nested = json.dumps({"schemaVersion": 2, "mediaType": MEDIA_TYPE_OCI_INDEX, "manifests": [foreign, here]}).encode()
    name = {"io.containerd.image.name": "m:1"}
    top = Index((Descriptor(MEDIA_TYPE_OCI_INDEX, digest_of(nested), len(nested), name),))
    archive = _tar(*[(n, d) for n, d in single.items() if n.startswith("blobs/sha256/")],
                   _blob(nested), ("index.json", top.to_json()))

    [image] = load(other, io.BytesIO(archive))

    assert (image.id, image.repo_tags) == (digest_of(config), ("m:1",))
    assert blobs(other) == {image.id, image.manifest_digest, image.layers[0].digest}


def test_loading_moves_an_existing_tag(store: ImageStore, other: ImageStore) -> None:
    old = make_image(other, [file_layer("old")], tags=["app"])
    new = make_image(store, [file_layer("new")], tags=["app"])

    load(other, io.BytesIO(_save(store, "app")))

    assert other.get("app").id == new.id
    assert other.get(old.id).repo_tags == ()


# Archives that try to do harm: each is refused and leaves nothing behind.


def _assert_refused(store: ImageStore, archive: bytes, error: type[Exception], message: str) -> None:
    before = blobs(store)
    with pytest.raises(error, match=message):
        load(store, io.BytesIO(archive))
    assert blobs(store) == before, "a refused archive must leave no blob behind"
    assert store.list() == [] or all(i.repo_tags != ("evil:1",) for i in store.list())
    assert list((store.content.root / "ingest").iterdir()) == [], "no ingest should be left"  # type: ignore[attr-defined]


def _good_parts() -> tuple[bytes, bytes]:
    layer = file_layer("payload")
    return layer, config_bytes([digest(layer)])


def test_it_refuses_member_names_that_leave_the_archive(other: ImageStore) -> None:
    layer, config = _good_parts()
    good = _members(_legacy_archive(layer, config, tag="evil:1"))
    for name in ("../escape", "/etc/evil", "a/../../escape", "ok/../../../tmp/x"):
        archive = _tar(*good.items(), (name, b"boom"))
        _assert_refused(other, archive, UnsafeArchive, "escapes the archive|absolute")


def test_it_refuses_symlinks_out_of_the_archive(other: ImageStore) -> None:
    layer, config = _good_parts()
    cid = digest_of(config).removeprefix("sha256:")
    manifest = [{"Config": f"{cid}.json", "RepoTags": ["evil:1"], "Layers": ["x/layer.tar"]}]
    for target in ("/etc/passwd", "../../etc/passwd"):
        archive = _tar((f"{cid}.json", config), _link("x/layer.tar", target),
                       ("manifest.json", json.dumps(manifest).encode()))
        _assert_refused(other, archive, UnsafeArchive, "absolute symlink|escapes the archive")


def test_it_refuses_manifest_paths_that_leave_the_archive(other: ImageStore) -> None:
    layer, config = _good_parts()
    manifest = [{"Config": "../../../etc/passwd", "RepoTags": ["evil:1"], "Layers": []}]
    archive = _tar(("manifest.json", json.dumps(manifest).encode()), ("layer.tar", layer))

    _assert_refused(other, archive, UnsafeArchive, "escapes the archive")


def test_it_refuses_devices_and_fifos(other: ImageStore) -> None:
    layer, config = _good_parts()
    for kind in (tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE):
        device = tarfile.TarInfo("dev")
        device.type = kind
        archive = _tar(*_members(_legacy_archive(layer, config, tag="evil:1")).items(), device)
        _assert_refused(other, archive, UnsafeArchive, "unsupported type")


def test_it_refuses_a_blob_that_does_not_match_its_name(other: ImageStore) -> None:
    layer, config = _good_parts()
    members = _members(_oci_archive(layer, config, {"io.containerd.image.name": "evil:1"}))
    layer_name = "blobs/sha256/" + digest(layer).removeprefix("sha256:")
    members[layer_name] = file_layer("tampered")

    _assert_refused(other, _tar(*members.items()), DigestMismatch, "unexpected digest")


def test_it_refuses_missing_blobs(other: ImageStore) -> None:
    layer, config = _good_parts()
    members = _members(_oci_archive(layer, config, {"io.containerd.image.name": "evil:1"}))
    del members["blobs/sha256/" + digest(layer).removeprefix("sha256:")]

    _assert_refused(other, _tar(*members.items()), InvalidArgument, "missing")


def test_it_refuses_a_layer_that_is_not_the_configs(other: ImageStore) -> None:
    layer, _ = _good_parts()
    config = config_bytes([digest(file_layer("something else"))])

    _assert_refused(other, _legacy_archive(layer, config, tag="evil:1"), DigestMismatch, "config says")


def test_it_refuses_invalid_tags_before_recording_anything(other: ImageStore) -> None:
    layer, config = _good_parts()

    _assert_refused(other, _legacy_archive(layer, config, tag="Evil:1"), InvalidReference, "must be lowercase")


def test_a_bad_second_image_keeps_the_first_out_too(store: ImageStore, other: ImageStore) -> None:
    make_image(store, [file_layer("fine")], tags=["fine"])
    good = _members(_save(store, "fine"))
    layer, _ = _good_parts()
    bad_config = config_bytes([digest(file_layer("nope"))])
    entries = json.loads(good["manifest.json"]) + [
        {"Config": "bad.json", "RepoTags": ["evil:1"], "Layers": ["bad.tar"]}
    ]
    good["manifest.json"] = json.dumps(entries).encode()
    archive = _tar(*good.items(), ("bad.json", bad_config), ("bad.tar", layer))

    _assert_refused(other, archive, DigestMismatch, "config says")
    assert other.list() == []


@pytest.mark.parametrize(
    ("archive", "message"),
    [
        (b"this is not a tar archive at all" * 40, "invalid archive"),
        (gzip.compress(b"garbage" * 100), "invalid archive"),
        (b"\x1f\x8b\x08\x00broken gzip", "invalid archive"),
        (_tar(("readme", b"hi")), "neither manifest.json nor index.json"),
        (_tar(("manifest.json", b"{not json")), "manifest.json: invalid JSON"),
        (_tar(("manifest.json", b'{"a":1}')), "expected a list of objects"),
        (_tar(("index.json", b'{"schemaVersion":2,"manifests":[{"digest":"sha256:../../x","size":1}]}')),
         "invalid, want sha256"),
        (_tar(_link("manifest.json", "manifest.json")), "too many levels of links"),
    ],
    ids=["garbage", "gzip-garbage", "truncated-gzip", "no-index", "bad-json", "bad-shape", "bad-digest", "link-loop"],
)
def test_it_refuses_corrupt_archives(other: ImageStore, archive: bytes, message: str) -> None:
    _assert_refused(other, archive, InvalidArgument, message)


# OCI image layout directories


def test_save_and_load_an_oci_layout_directory(store: ImageStore, other: ImageStore, tmp_path: Path) -> None:
    image = make_image(store, [file_layer("a")], tags=["app:1"], compress=True)
    layout = tmp_path / "layout"

    save_oci_layout(store, ["app:1"], layout)
    [loaded] = load_oci_layout(other, layout)

    assert sorted(p.name for p in layout.iterdir()) == ["blobs", "index.json", "oci-layout"]
    assert (loaded.id, loaded.repo_tags) == (image.id, ("app:1",))
    assert blobs(other) == {loaded.id, loaded.manifest_digest, loaded.layers[0].digest}
    with pytest.raises(AlreadyExists, match="already exists"):
        save_oci_layout(store, ["app:1"], layout)


def test_loading_a_layout_directory_reads_blobs_by_digest_only(other: ImageStore, tmp_path: Path) -> None:
    layer, config = _good_parts()
    layout = tmp_path / "layout"
    layout.mkdir()
    for name, data in _members(_oci_archive(layer, config, {"io.containerd.image.name": "evil:1"})).items():
        (layout / name).parent.mkdir(parents=True, exist_ok=True)
        (layout / name).write_bytes(data)
    (layout / "blobs" / "sha256" / digest(layer).removeprefix("sha256:")).write_bytes(b"tampered")

    with pytest.raises(DigestMismatch):
        load_oci_layout(other, layout)
    assert blobs(other) == set()
    with pytest.raises(InvalidArgument, match="no index.json"):
        load_oci_layout(other, tmp_path / "nothing")
