"""docker-py 7 drives webengine over TCP, with the token set on its session."""

from __future__ import annotations

import time

import docker
import pytest

from tests.dockerapi.conftest import ApiServer

pytestmark = pytest.mark.requires("root", "overlayfs", "busybox")


def test_run_returns_the_output(api: ApiServer) -> None:
    client = api.client()
    assert client.containers.run("busybox", "echo hi", remove=True) == b"hi\n"
    assert client.containers.list(all=True) == []


def test_a_failing_run_raises_container_error_with_its_stderr(api: ApiServer) -> None:
    client = api.client()
    with pytest.raises(docker.errors.ContainerError) as raised:
        client.containers.run("busybox", ["sh", "-c", "echo bad >&2; exit 2"], remove=True)
    assert raised.value.exit_status == 2
    assert raised.value.stderr == b"bad\n"


def test_a_detached_container_can_be_logged_waited_for_and_removed(api: ApiServer) -> None:
    client = api.client()
    container = client.containers.run("busybox", ["sh", "-c", "echo one; echo two >&2; exit 4"], detach=True)
    assert container.wait(timeout=20) == {"StatusCode": 4, "Error": None}
    assert container.logs() == b"one\ntwo\n"
    assert container.logs(stderr=False) == b"one\n"
    container.reload()
    assert (container.status, container.image.tags) == ("exited", ["busybox:latest"])
    container.remove()
    with pytest.raises(docker.errors.NotFound, match="No such container"):
        client.containers.get(container.id)


def test_exec_run_gives_the_exit_code_and_output(api: ApiServer) -> None:
    client = api.client()
    container = client.containers.run("busybox", "sleep 100", detach=True, name="py-exec")
    try:
        result = container.exec_run(["sh", "-c", "echo out; exit 6"])
        assert (result.exit_code, result.output) == (6, b"out\n")
        assert container.exec_run(["echo", "tty"], tty=True).output == b"tty\r\n"
        assert [c.name for c in client.containers.list(filters={"name": "py-exec"})] == ["py-exec"]
    finally:
        container.remove(force=True)


def test_images_are_listed_tagged_and_removed(api: ApiServer) -> None:
    client = api.client()
    assert [image.tags for image in client.images.list()] == [["busybox:latest"]]
    busybox = client.images.get("busybox")
    assert busybox.id.startswith("sha256:") and client.images.get(busybox.short_id).id == busybox.id
    assert busybox.tag("example/tagged", "v1")
    assert client.images.get("example/tagged:v1").tags == ["busybox:latest", "example/tagged:v1"]
    client.images.remove("example/tagged:v1")
    with pytest.raises(docker.errors.ImageNotFound, match="No such image: example/tagged:v1"):
        client.images.get("example/tagged:v1")


def test_events_tell_a_containers_life(api: ApiServer) -> None:
    client = api.client()
    since = time.time()
    client.containers.run("busybox", "true", name="evented", remove=True)
    seen = client.events(since=since, until=time.time() + 0.5, decode=True, filters={"container": "evented"})
    life = [(event["Action"], event["Actor"]["Attributes"]["name"]) for event in seen]
    assert life == [("create", "evented"), ("start", "evented"), ("die", "evented"), ("destroy", "evented")]
