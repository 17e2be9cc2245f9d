"""Disk space: docker image prune, docker system df, and the image list's time filters, with the CLI and docker-py."""

from __future__ import annotations

import re

import pytest

from tests.dockerapi.conftest import ApiServer

pytestmark = [pytest.mark.requires("root", "overlayfs", "busybox"), pytest.mark.usefixtures("only_busybox_left")]
cli = pytest.mark.requires("docker-cli")


def _commit(api: ApiServer, tag: str, *changes: str) -> str:
    """Commit a container that wrote a file of its own into a new image `tag`; return the image ID."""
    command = ["sh", "-c", "cat /proc/sys/kernel/random/uuid > /made"]
    container = api.client().containers.run("busybox", command, detach=True)
    container.wait(timeout=20)
    image = container.commit(*tag.split(":"), changes=list(changes))
    container.remove()
    assert image.id is not None
    return image.id


def _dangling(api: ApiServer) -> str:
    """Make a dangling image: commit one as example/app:1, then move the tag to another commit; return the first."""
    first = _commit(api, "example/app:1")
    _commit(api, "example/app:1", "LABEL second=yes")
    return first


def _ids(api: ApiServer) -> set[str]:
    return {image.id for image in api.client().images.list(all=True)}


#
# docker image prune
#


@cli
def test_image_prune_removes_a_dangling_image_and_keeps_the_tagged_ones(api: ApiServer) -> None:
    dangling = _dangling(api)
    kept = _ids(api) - {dangling}

    pruned = api.docker("image", "prune", "-f")

    assert pruned.returncode == 0, pruned.stderr
    lines = pruned.stdout.splitlines()
    assert lines[:2] == ["Deleted Images:", f"deleted: {dangling}"]
    assert re.fullmatch(r"Total reclaimed space: \d+(\.\d+)?kB", lines[-1]), "the dangling image's own layer"
    assert _ids(api) == kept
    again = api.docker("image", "prune", "-f")
    assert again.stdout == "Total reclaimed space: 0B\n"


@cli
def test_image_prune_all_spares_images_that_containers_use(api: ApiServer) -> None:
    app = _commit(api, "example/app:1")
    busybox = api.client().images.get("busybox").id
    assert api.docker("create", "--name", "holder", "busybox").returncode == 0

    pruned = api.docker("image", "prune", "-a", "-f")

    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.splitlines()[1:3] == ["untagged: example/app:1", f"deleted: {app}"]
    assert _ids(api) == {busybox}, "busybox has a container, so it stays"


@cli
def test_image_prune_keeps_what_the_until_and_label_filters_exclude(api: ApiServer) -> None:
    dangling = _dangling(api)

    too_new = api.docker("image", "prune", "-f", "--filter", "until=1h")
    other_label = api.docker("image", "prune", "-f", "--filter", "label=purpose=other")
    assert (too_new.stdout, other_label.stdout) == ("Total reclaimed space: 0B\n", "Total reclaimed space: 0B\n")
    assert dangling in _ids(api)

    old_enough = api.docker("image", "prune", "-f", "--filter", "until=2100-01-01T00:00:00Z")
    assert old_enough.stdout.splitlines()[1] == f"deleted: {dangling}"
    refused = api.docker("image", "prune", "-f", "--filter", "before=busybox")
    assert refused.returncode == 1 and "invalid filter 'before'" in refused.stderr


def test_docker_py_prunes_by_label_and_reports_the_space(api: ApiServer) -> None:
    client = api.client()
    labelled = _commit(api, "example/labelled:1", "LABEL purpose=test")
    other = _commit(api, "example/other:1")

    report = client.images.prune(filters={"dangling": False, "label": ["purpose=test"]})

    assert {"Untagged": "example/labelled:1"} in report["ImagesDeleted"]
    assert {"Deleted": labelled} in report["ImagesDeleted"]
    assert report["SpaceReclaimed"] > 0
    assert other in _ids(api) and labelled not in _ids(api)
    assert client.images.prune() == {"ImagesDeleted": None, "SpaceReclaimed": 0}


#
# docker system df
#


@cli
def test_system_df_prints_the_table_with_sensible_numbers(api: ApiServer) -> None:
    run = api.docker("run", "--name", "writer", "busybox", "sh", "-c", "head -c 50000 /dev/zero > /data")
    assert run.returncode == 0, run.stderr

    df = api.docker("system", "df")

    assert df.returncode == 0, df.stderr
    rows = [re.split(r" {2,}", line.strip()) for line in df.stdout.splitlines()]
    assert rows == [
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        ["Images", "1", "1", "2.14MB", "0B (0%)"],
        ["Containers", "1", "0", "50kB", "50kB (100%)"],
        ["Local Volumes", "0", "0", "0B", "0B"],
        ["Build Cache", "0", "0", "0B", "0B"],
    ]


@cli
def test_system_df_verbose_lists_images_and_containers(api: ApiServer) -> None:
    assert api.docker("create", "--name", "holder", "busybox").returncode == 0
    image_id = api.client().images.get("busybox").short_id.removeprefix("sha256:")

    df = api.docker("system", "df", "-v")

    assert df.returncode == 0, df.stderr
    lines = df.stdout.splitlines()
    images = lines.index("Images space usage:")
    assert re.split(r" {2,}", lines[images + 2]) == [
        "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS",
    ]  # fmt: skip
    busybox = re.split(r" {2,}", lines[images + 3].strip())
    assert busybox[:3] == ["busybox", "latest", image_id]
    assert busybox[4:] == ["2.14MB", "0B", "2.14MB", "1"]
    containers = lines.index("Containers space usage:")
    assert re.split(r" {2,}", lines[containers + 3].strip())[-1] == "holder"


def test_docker_py_df_has_docker_fields(api: ApiServer) -> None:
    client = api.client()
    container = client.containers.run("busybox", ["sh", "-c", "head -c 4096 /dev/zero > /data"], detach=True)
    container.wait(timeout=20)
    busybox = client.images.get("busybox")

    df = client.df()

    assert df["LayersSize"] == busybox.attrs["Size"]
    assert [(i["Id"], i["Containers"], i["SharedSize"]) for i in df["Images"]] == [(busybox.id, 1, 0)]
    (listed,) = df["Containers"]
    assert (listed["Id"], listed["Names"], listed["SizeRw"]) == (container.id, [f"/{container.name}"], 4096)
    assert listed["SizeRootFs"] == 4096 + busybox.attrs["Size"]
    assert (df["Volumes"], df["BuildCache"]) == ([], [])


#
# docker image ls: the time filters
#


@cli
def test_images_filter_before_and_since_another_image(api: ApiServer) -> None:
    _commit(api, "example/newer:1")

    since = api.docker("images", "--filter", "since=busybox", "--format", "{{.Repository}}:{{.Tag}}")
    before = api.docker("images", "--filter", "before=example/newer:1", "--format", "{{.Repository}}:{{.Tag}}")
    missing = api.docker("images", "--filter", "since=nosuch:1")

    assert (since.stdout, before.stdout) == ("example/newer:1\n", "busybox:latest\n"), since.stderr + before.stderr
    assert missing.returncode == 1 and "No such image: nosuch:1" in missing.stderr
