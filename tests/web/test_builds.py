"""A build is a row that keeps its output and outcome, publishes its lines live, and can be cancelled from anywhere."""

from __future__ import annotations

import io
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from containers import services
from containers.choices import BuildStatus
from containers.engine.errors import EngineError, ImageNotFound
from containers.models import Build, Image, ImageTag

pytestmark = [
    pytest.mark.requires("root", "overlayfs", "busybox", "redis-server"),
    pytest.mark.django_db(transaction=True),
]


def _context(dockerfile: str) -> io.BytesIO:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        body = dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    data.seek(0)
    return data


@pytest.fixture
def node(redis: subprocess.Popen) -> Iterator[None]:
    """This process as the node: the session's engine with busybox, and the session's redis for the group."""
    engine = services.engine()
    try:
        engine.images.get("busybox:latest")
    except ImageNotFound:
        services.create_busybox_image()
    yield
    for record in engine.containers.list():
        engine.containers.remove(record.id, force=True)
    engine.containers.shim.shutdown()


def _listen(group: str) -> str:
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group, channel)
    return channel


def _received(channel: str) -> list[dict[str, Any]]:
    layer = get_channel_layer()
    messages = []
    while not messages or messages[-1]["type"] != "build.finished":
        messages.append(async_to_sync(layer.receive)(channel))
    return messages


def test_a_build_keeps_its_output_and_image_and_publishes_its_lines(node: None) -> None:
    build = services.create_build(tags=["row-built:1"], build_args={"WHO": "row"})
    channel = _listen(services.build_group(build.id))
    dockerfile = "FROM busybox\nARG WHO\nRUN echo built by $WHO\nCMD [\"true\"]\n"
    services.run_build(build, _context(dockerfile))

    build.refresh_from_db()
    assert build.status == BuildStatus.SUCCEEDED
    assert "Step 3/4 : RUN echo built by $WHO" in build.log
    assert "built by row" in build.log
    assert "Successfully tagged row-built:1" in build.log
    assert build.image_id.startswith("sha256:") and build.exit_code == 0
    assert build.finished_at is not None and build.duration is not None
    assert Image.objects.filter(id=build.image_id, tags__reference__endswith="row-built:1").exists()

    messages = _received(channel)
    published = "".join(m["text"] for m in messages if m["type"] == "build.output")
    assert published == build.log, "the group saw every line the row kept, in order"
    assert messages[-1] == {"type": "build.finished", "status": "succeeded", "image_id": build.image_id, "error": ""}
    services.remove_image("row-built:1")


def test_a_failing_step_is_recorded_with_its_code_and_line(node: None) -> None:
    build = services.create_build(tags=["never-built"])
    with pytest.raises(EngineError, match="returned a non-zero code: 3"):
        services.run_build(build, _context("FROM busybox\nRUN echo going down\nRUN exit 3\n"))
    build.refresh_from_db()
    assert (build.status, build.exit_code) == (BuildStatus.FAILED, 3)
    assert build.error == "Dockerfile:3: The command '/bin/sh -c exit 3' returned a non-zero code: 3"
    assert "going down" in build.log
    assert not Image.objects.filter(tags__reference__endswith="never-built:latest").exists()
    assert services.engine().containers.list() == [], "no intermediate container is left"


def test_a_build_cancelled_through_its_row_stops_and_leaves_nothing(node: None) -> None:
    build = services.create_build(tags=["cancelled"])
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            services.run_build(build, _context("FROM busybox\nRUN echo sleeping; sleep 60\n"))
        except BaseException as err:  # noqa: BLE001 - the test checks what was raised
            outcome.append(err)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 30
    while "sleeping" not in Build.objects.get(pk=build.pk).log:
        assert time.monotonic() < deadline, "the RUN step never started"
        time.sleep(0.1)
    started = time.monotonic()
    services.cancel_build(build.id)
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert time.monotonic() - started < 5, "cancel must not wait for the step to end"
    assert outcome and "cancel" in str(outcome[0]).lower()
    build.refresh_from_db()
    assert build.status == BuildStatus.CANCELLED
    assert services.engine().containers.list() == []
    with pytest.raises(EngineError, match="already finished"):
        services.cancel_build(build.id)


def test_a_rebuild_adds_and_moves_tag_rows_without_rewriting_the_image(node: None) -> None:
    first = services.create_build(tags=["rows:1"])
    services.run_build(first, _context("FROM busybox\nRUN echo one > /one\n"))
    again = services.create_build(tags=["rows:1", "rows:2"])
    services.run_build(again, _context("FROM busybox\nRUN echo one > /one\n"))
    first.refresh_from_db()
    again.refresh_from_db()
    assert again.image_id == first.image_id, "the rebuild came from the cache"
    assert "Using cache" in again.log
    tags = dict(ImageTag.objects.filter(familiar__startswith="rows:").values_list("familiar", "image_id"))
    assert tags == {"rows:1": first.image_id, "rows:2": first.image_id}

    other = services.create_build(tags=["rows:1"])
    services.run_build(other, _context("FROM busybox\nRUN echo two > /two\n"))
    other.refresh_from_db()
    tags = dict(ImageTag.objects.filter(familiar__startswith="rows:").values_list("familiar", "image_id"))
    assert tags == {"rows:1": other.image_id, "rows:2": first.image_id}, "a tag moves to the image it now names"
    services.remove_image("rows:1")
    services.remove_image("rows:2")
