"""Our archives and layouts against real peers: skopeo, umoci and, where a daemon runs, Docker itself."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from containers.engine.images.archive import load, save, save_oci_layout
from containers.engine.images.busybox import create_busybox_image
from containers.engine.images.store import Image, ImageStore
from tests.engine.imagetest import file_layer, make_image, new_store
from tests.engine.suites.fstest import create_dir, create_file, layer


@pytest.fixture
def store(state_root: Path) -> ImageStore:
    return new_store(state_root / "ours")


@pytest.fixture
def image(store: ImageStore) -> Image:
    """Two layers, one stored gzip'd, so that saving has to decompress."""
    base = layer(create_dir("/etc"), create_file("/etc/motd", b"hello from webengine\n"))
    return make_image(store, [base, file_layer("app", b"#!/bin/sh\n")], tags=["app:1"], compress=True,
                      labels={"org.example": "yes"})


def _run(*args: str | Path) -> str:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{args[0]} failed: {result.stderr.strip()}"
    return result.stdout


def _save_to(store: ImageStore, path: Path, *names: str) -> Path:
    with open(path, "wb") as out:
        save(store, list(names), out)
    return path


@pytest.mark.requires("skopeo")
def test_skopeo_reads_our_docker_archive(store: ImageStore, image: Image, tmp_path: Path) -> None:
    archive = _save_to(store, tmp_path / "app.tar", "app:1")

    raw = json.loads(_run("skopeo", "inspect", "--raw", f"docker-archive:{archive}"))
    config = json.loads(_run("skopeo", "inspect", "--config", f"docker-archive:{archive}"))

    assert raw["config"]["digest"] == image.id, "skopeo should see our image ID as the config digest"
    assert config["rootfs"]["diff_ids"] == [layer.diff_id for layer in image.layers]
    assert config["config"]["Labels"] == {"org.example": "yes"}


@pytest.mark.requires("skopeo")
def test_skopeo_reads_our_oci_layout(store: ImageStore, image: Image, tmp_path: Path) -> None:
    save_oci_layout(store, ["app:1"], tmp_path / "layout")

    info = json.loads(_run("skopeo", "inspect", f"oci:{tmp_path / 'layout'}:1"))
    config = json.loads(_run("skopeo", "inspect", "--config", f"oci:{tmp_path / 'layout'}:1"))

    assert info["Layers"] == [layer.diff_id for layer in image.layers], "layers are saved uncompressed"
    assert info["Labels"] == {"org.example": "yes"}
    assert config["rootfs"]["diff_ids"] == [layer.diff_id for layer in image.layers]


@pytest.mark.requires("umoci", "root")
def test_umoci_unpacks_our_oci_layout(store: ImageStore, image: Image, tmp_path: Path) -> None:
    save_oci_layout(store, ["app:1"], tmp_path / "layout")
    bundle = tmp_path / "bundle"
    try:
        _run("umoci", "unpack", "--image", f"{tmp_path / 'layout'}:1", bundle)

        assert (bundle / "rootfs" / "etc" / "motd").read_text() == "hello from webengine\n"
        assert (bundle / "rootfs" / "app").read_bytes() == b"#!/bin/sh\n"
        assert json.loads((bundle / "config.json").read_text())["annotations"]["org.example"] == "yes"
    finally:
        shutil.rmtree(bundle, ignore_errors=True)


@pytest.mark.requires("skopeo")
def test_a_docker_archive_skopeo_writes_loads_with_the_same_id(
    store: ImageStore, image: Image, state_root: Path, tmp_path: Path
) -> None:
    save_oci_layout(store, ["app:1"], tmp_path / "layout")
    archive = tmp_path / "skopeo.tar"
    _run("skopeo", "copy", "-q", f"oci:{tmp_path / 'layout'}:1", f"docker-archive:{archive}:app:copied")
    fresh = new_store(state_root / "fresh")

    with open(archive, "rb") as f:
        [loaded] = load(fresh, f)

    assert (loaded.id, loaded.repo_tags) == (image.id, ("app:copied",))
    assert loaded.size == image.size


@pytest.mark.requires("skopeo")
def test_an_oci_archive_skopeo_writes_loads_with_the_same_id(
    store: ImageStore, image: Image, state_root: Path, tmp_path: Path
) -> None:
    save_oci_layout(store, ["app:1"], tmp_path / "layout")
    archive = tmp_path / "skopeo-oci.tar"
    _run("skopeo", "copy", "-q", f"oci:{tmp_path / 'layout'}:1", f"oci-archive:{archive}:localhost:5000/app:2")
    fresh = new_store(state_root / "fresh")

    with open(archive, "rb") as f:
        [loaded] = load(fresh, f)

    assert (loaded.id, loaded.repo_tags) == (image.id, ("localhost:5000/app:2",))


@pytest.mark.requires("skopeo", "busybox")
def test_the_busybox_image_survives_a_trip_through_skopeo(store: ImageStore, state_root: Path, tmp_path: Path) -> None:
    busybox = create_busybox_image(store)
    archive = _save_to(store, tmp_path / "busybox.tar", "busybox")
    copied = tmp_path / "copied.tar"
    _run("skopeo", "copy", "-q", f"docker-archive:{archive}", f"docker-archive:{copied}:busybox:latest")
    fresh = new_store(state_root / "fresh")

    with open(copied, "rb") as f:
        [loaded] = load(fresh, f)

    assert (loaded.id, loaded.repo_tags) == (busybox.id, ("busybox:latest",))


@pytest.mark.requires("docker-daemon", "docker-cli")
def test_docker_loads_our_archive_and_we_load_its_save(store: ImageStore, image: Image, state_root: Path,
                                                        tmp_path: Path) -> None:
    tag = f"webengine-interop-{uuid.uuid4().hex[:8]}:1"
    store.tag(image.id, tag)
    archive = _save_to(store, tmp_path / "ours.tar", tag)
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
    try:
        _run("docker", "load", "-i", archive)
        docker_id = _run("docker", "image", "inspect", "--format", "{{.Id}}", tag).strip()
        _run("docker", "save", "-o", tmp_path / "docker.tar", tag)
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=60)
    fresh = new_store(state_root / "fresh")

    with open(tmp_path / "docker.tar", "rb") as f:
        [loaded] = load(fresh, f)

    # The classic store's ID is the config digest; the containerd store's is the manifest digest.
    assert docker_id in (image.id, index["manifests"][0]["digest"]), "Docker should see the image we saved"
    assert (loaded.id, loaded.repo_tags) == (image.id, (tag,))
