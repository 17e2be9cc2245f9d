"""Images in and out as archives, and their history: docker save, load, import, history, with the CLI and docker-py."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import docker
import pytest

from tests.dockerapi.conftest import ApiServer

pytestmark = [pytest.mark.requires("root", "overlayfs", "busybox"), pytest.mark.usefixtures("only_busybox_left")]
cli = pytest.mark.requires("docker-cli")


def _shell(api: ApiServer, command: str) -> subprocess.CompletedProcess[bytes]:
    """Run a shell pipeline of docker commands against the server (bytes, as archives go through it)."""
    env = {**os.environ, "DOCKER_HOST": api.url, "DOCKER_CONFIG": str(api.docker_config)}
    env.pop("DOCKER_API_VERSION", None)
    return subprocess.run(command, shell=True, env=env, capture_output=True, timeout=60)


def _busybox_id(api: ApiServer) -> str:
    return api.engine().images.get("busybox").id


def _stored(api: ApiServer) -> tuple[set[str], set[str]]:
    """Return the blobs and the images in the server's store."""
    engine = api.engine()
    return {blob.digest for blob in engine.content.walk()}, {image.id for image in engine.images.list()}


#
# docker save / docker load
#


@cli
def test_save_piped_into_load_gives_back_the_same_image(api: ApiServer) -> None:
    before = _busybox_id(api)

    piped = _shell(api, "docker save busybox | docker load")

    assert (piped.returncode, piped.stdout) == (0, b"Loaded image: busybox:latest\n"), piped.stderr
    assert _busybox_id(api) == before, "a save and load round trip must keep the image ID"


@cli
def test_a_saved_file_loads_back_after_the_image_is_removed(api: ApiServer, tmp_path: Path) -> None:
    before = _busybox_id(api)
    archive = tmp_path / "busybox.tar"
    saved = api.docker("save", "-o", str(archive), "busybox")
    assert saved.returncode == 0, saved.stderr
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert "index.json" in tar.getnames() and "oci-layout" in tar.getnames()
    assert [entry["RepoTags"] for entry in manifest] == [["busybox:latest"]]
    assert manifest[0]["Config"] == "blobs/sha256/" + before.removeprefix("sha256:")

    try:
        removed = api.docker("rmi", "busybox")
        assert removed.returncode == 0, removed.stderr
        assert api.docker("images", "-q").stdout == ""
        loaded = api.docker("load", "-i", str(archive))
    finally:
        if api.docker("images", "-q", "busybox").stdout == "":
            api.docker("load", "-i", str(archive))

    assert (loaded.returncode, loaded.stdout) == (0, "Loaded image: busybox:latest\n"), loaded.stderr
    assert _busybox_id(api) == before
    run = api.docker("run", "--rm", "busybox", "echo", "back")
    assert (run.returncode, run.stdout) == (0, "back\n"), run.stderr


@cli
def test_save_of_several_names_puts_every_tag_in_one_archive(api: ApiServer, tmp_path: Path) -> None:
    assert api.docker("tag", "busybox", "example/second:2").returncode == 0
    archive = tmp_path / "two.tar"

    saved = api.docker("save", "-o", str(archive), "busybox", "example/second:2")

    assert saved.returncode == 0, saved.stderr
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert [entry["RepoTags"] for entry in manifest] == [["busybox:latest", "example/second:2"]]


@cli
def test_save_of_a_missing_image_says_so_and_writes_nothing(api: ApiServer, tmp_path: Path) -> None:
    archive = tmp_path / "none.tar"

    saved = api.docker("save", "-o", str(archive), "busybox", "nosuch:1")

    assert saved.returncode == 1
    assert "No such image: nosuch:1" in saved.stderr
    assert not archive.exists() or archive.stat().st_size == 0


@cli
def test_loading_garbage_or_a_truncated_archive_fails_and_leaves_nothing_behind(api: ApiServer, tmp_path: Path) -> None:
    blobs, images = _stored(api)

    garbage = api.docker("load", input="this is not a tar archive\n" * 100)

    assert garbage.returncode == 1
    assert "invalid archive" in garbage.stderr, garbage.stderr
    archive = tmp_path / "busybox.tar"
    assert api.docker("save", "-o", str(archive), "busybox").returncode == 0
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    cut = api.docker("load", "-i", str(truncated))
    assert cut.returncode == 1
    assert "invalid archive" in cut.stderr, cut.stderr
    assert _stored(api) == (blobs, images), "a failed load must leave no blob and no image"


def test_load_without_quiet_reports_each_layer_before_the_image(api: ApiServer) -> None:
    client = api.client()
    data = b"".join(client.images.get("busybox").save())

    messages = list(client.api.load_image(data, quiet=False))

    layer = api.engine().images.get("busybox").layers[0]
    assert messages == [
        {"status": "Loading layer", "progressDetail": {"current": layer.unpacked_size, "total": layer.unpacked_size},
         "id": layer.diff_id.removeprefix("sha256:")[:12]},
        {"stream": "Loaded image: busybox:latest\n"},
    ]  # fmt: skip


def test_docker_py_saves_and_loads_an_image(api: ApiServer) -> None:
    client = api.client()
    busybox = client.images.get("busybox")

    data = b"".join(busybox.save(named=True))
    loaded = client.images.load(data)

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert "manifest.json" in tar.getnames()
    assert [(image.id, image.tags) for image in loaded] == [(busybox.id, ["busybox:latest"])]
    with pytest.raises(docker.errors.ImageLoadError, match="invalid archive"):
        client.images.load(b"garbage")


#
# docker import
#


@cli
def test_import_of_an_exported_container_runs_with_its_changes(api: ApiServer, tmp_path: Path) -> None:
    assert api.docker("create", "--name", "source", "busybox").returncode == 0
    rootfs = tmp_path / "rootfs.tar"
    assert api.docker("export", "-o", str(rootfs), "source").returncode == 0

    imported = api.docker(
        "import", "--change", 'CMD ["sh", "-c", "echo imported"]', "--change", "ENV PATH=/bin", "-m", "from a test",
        str(rootfs), "example/imported:1",
    )  # fmt: skip

    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith("sha256:") and len(imported.stdout.strip()) == 71
    run = api.docker("run", "--rm", "example/imported:1")
    assert (run.returncode, run.stdout) == (0, "imported\n"), run.stderr
    inspected = json.loads(api.docker("image", "inspect", "example/imported:1").stdout)[0]
    assert (inspected["Id"], inspected["Comment"]) == (imported.stdout.strip(), "from a test")
    assert inspected["Config"]["Cmd"] == ["sh", "-c", "echo imported"]


@cli
def test_import_reads_stdin_and_refuses_urls(api: ApiServer, tmp_path: Path) -> None:
    assert api.docker("create", "--name", "source", "busybox").returncode == 0
    rootfs = tmp_path / "rootfs.tar"
    assert api.docker("export", "-o", str(rootfs), "source").returncode == 0

    piped = _shell(api, f"docker import - example/piped < {rootfs}")
    from_url = api.docker("import", "http://127.0.0.1:1/rootfs.tar", "example/url")

    assert piped.returncode == 0, piped.stderr
    assert api.docker("images", "--format", "{{.Repository}}:{{.Tag}}", "example/piped").stdout == (
        "example/piped:latest\n"
    )
    assert from_url.returncode == 1
    assert "importing from http://127.0.0.1:1/rootfs.tar is not implemented in webengine" in from_url.stderr


def test_docker_py_imports_a_tarball_with_a_tag_and_changes(api: ApiServer, tmp_path: Path) -> None:
    client = api.client()
    source = client.containers.create("busybox", name="source")
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(b"".join(source.export()))

    answer = client.api.import_image(
        src=str(rootfs), repository="example/pyimported", tag="2", changes=["ENV PATH=/bin", 'CMD ["echo", "py"]']
    )

    image = client.images.get("example/pyimported:2")
    assert json.loads(answer) == {"status": image.id}
    assert client.containers.run(image, remove=True) == b"py\n"


#
# docker history
#


@cli
def test_history_prints_what_docker_prints(api: ApiServer) -> None:
    history = api.docker("history", "busybox")

    assert history.returncode == 0, history.stderr
    header, row = history.stdout.splitlines()
    assert re.split(r" {2,}", header.strip()) == ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
    image = api.engine().images.get("busybox")
    created_by = image.config.history[0].created_by
    image_id, created, shown_by, size = re.split(r" {2,}", row.strip())
    assert image_id == image.short_id
    assert re.fullmatch(r"\d+ (years|months|weeks|days|hours|minutes|seconds) ago|About an? \w+ ago", created)
    assert shown_by == (created_by if len(created_by) <= 45 else created_by[:44] + "…"), "cut to 45 as Docker does"
    assert size == "2.14MB"


@cli
def test_history_of_a_commit_shows_the_base_layer_as_missing(api: ApiServer) -> None:
    run = api.docker("run", "--name", "writer", "busybox", "sh", "-c", "head -c 3000 /dev/zero > /data")
    assert run.returncode == 0, run.stderr
    committed = api.docker("commit", "-m", "three kilobytes", "writer", "example/committed:1")
    assert committed.returncode == 0, committed.stderr

    history = api.docker("history", "--no-trunc", "--format", "{{.ID}}|{{.Size}}|{{.Comment}}", "example/committed:1")

    assert history.returncode == 0, history.stderr
    top, base = history.stdout.splitlines()
    image_id, size, comment = top.split("|")
    assert (image_id, comment) == (committed.stdout.strip(), "three kilobytes")
    assert re.fullmatch(r"\d+(\.\d+)?kB", size), f"the commit's layer holds a 3 kB file, not {size}"
    assert base == "<missing>|2.14MB|", "the layer from busybox has no image of its own here"


def test_docker_py_reads_the_history_fields_docker_fills(api: ApiServer) -> None:
    client = api.client()
    busybox = client.images.get("busybox")

    (step,) = busybox.history()

    assert set(step) == {"Id", "Created", "CreatedBy", "Tags", "Size", "Comment"}
    assert (step["Id"], step["Tags"], step["Size"]) == (busybox.id, ["busybox:latest"], busybox.attrs["Size"])
    assert step["CreatedBy"].startswith("BusyBox") and step["Created"] > 0
