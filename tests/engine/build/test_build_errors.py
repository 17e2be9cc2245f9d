"""Builds that fail: each error says what went wrong and on which line, and leaves nothing half-made behind."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from containers.engine.build.builder import BuildCancelled, Builder, BuildOptions, BuildStepError
from containers.engine.build.context import ContextTooLarge
from containers.engine.engine import Engine
from containers.engine.errors import DockerfileError, InvalidArgument, InvalidReference, UnsafeArchive
from containers.engine.snapshots.base import Kind
from tests.engine.build.buildtest import build, builder, engine, run_image, tar_context

__all__ = ["builder", "engine"]

pytestmark = pytest.mark.requires("root", "overlayfs", "busybox")


def _assert_nothing_left(engine: Engine) -> None:
    """No container, no step snapshot, no mount and no file of a build may outlive it."""
    assert engine.containers.list() == [], "the failed step's container should be removed"
    active = [info.name for info in engine.snapshotter.walk() if info.kind is not Kind.COMMITTED]
    assert active == [], "no active snapshot of a step should remain"
    root = engine.config.root
    with open("/proc/self/mounts") as f:
        assert not [line for line in f if f" {root}/tmp/" in line], "no step root should stay mounted"
    assert not any((root / "build").glob("*")), "the build's own directory should be removed"
    assert not any(path.name.startswith(".new-") for path in (root / "build-cache").glob("**/*"))


def test_it_names_the_line_of_an_unknown_instruction(builder: Builder, engine: Engine) -> None:
    with pytest.raises(DockerfileError) as caught:
        build(builder, tar_context({"Dockerfile": "FROM busybox\nRUN true\nFROOM busybox\n"}))
    assert (caught.value.line_start, caught.value.line_end) == (3, 3)
    assert "unknown instruction: FROOM" in str(caught.value)
    _assert_nothing_left(engine)


def test_it_names_the_line_of_bad_syntax(builder: Builder) -> None:
    with pytest.raises(DockerfileError) as caught:
        build(builder, tar_context({"Dockerfile": "FROM busybox\n\nCOPY onlyone\n"}))
    assert caught.value.line_start == 3
    assert "COPY requires at least two arguments" in str(caught.value)


def test_it_reports_a_missing_copy_source_as_docker_does(builder: Builder, engine: Engine) -> None:
    dockerfile = "FROM busybox\nWORKDIR /app\nCOPY nothere ./\n"
    with pytest.raises(BuildStepError) as caught:
        build(builder, tar_context({"Dockerfile": dockerfile}))
    error = caught.value
    assert str(error) == (
        "COPY failed: file not found in build context or excluded by .dockerignore: stat nothere: file does not exist"
    )
    assert (error.line_start, error.code) == (3, None)
    _assert_nothing_left(engine)


def test_it_treats_an_ignored_file_as_missing(builder: Builder) -> None:
    files = {"Dockerfile": "FROM busybox\nCOPY secret.txt /\n", ".dockerignore": "secret.txt\n", "secret.txt": "s\n"}
    with pytest.raises(BuildStepError, match="excluded by .dockerignore: stat secret.txt"):
        build(builder, tar_context(files))


def test_it_never_follows_a_symlink_out_of_the_context(builder: Builder) -> None:
    context = tar_context({"Dockerfile": "FROM busybox\nCOPY host/passwd /x\n"}, symlinks={"host": "/etc"})
    with pytest.raises(BuildStepError, match="excluded by .dockerignore: stat host/passwd: file does not exist"):
        build(builder, context)


def test_it_stops_at_a_failing_run_with_its_exit_code_and_output(builder: Builder, engine: Engine) -> None:
    pieces: list[str] = []
    dockerfile = "FROM busybox\nRUN echo before\nRUN echo failing step output; exit 3\nRUN echo never\n"
    with pytest.raises(BuildStepError) as caught:
        builder.build(tar_context({"Dockerfile": dockerfile}), BuildOptions(), pieces.append)
    error = caught.value
    assert str(error) == "The command '/bin/sh -c echo failing step output; exit 3' returned a non-zero code: 3"
    assert (error.code, error.line_start, error.line_end) == (3, 3, 3)
    output = "".join(pieces)
    assert "failing step output\n" in output
    assert "never" not in output
    assert output.endswith(f"Removing intermediate container {output.split('Running in ')[-1][:12]}\n")
    _assert_nothing_left(engine)


def test_it_keeps_the_failed_container_when_asked_not_to_remove(builder: Builder, engine: Engine) -> None:
    with pytest.raises(BuildStepError):
        build(builder, tar_context({"Dockerfile": "FROM busybox\nRUN exit 1\n"}), remove=False)
    kept = engine.containers.list()
    try:
        assert len(kept) == 1, "with --rm=false the step's container stays, as in Docker"
        assert engine.containers.state(kept[0].id).exit_code == 1
    finally:
        for record in kept:
            engine.containers.remove(record.id, force=True)


def test_it_refuses_an_image_it_does_not_have(builder: Builder) -> None:
    with pytest.raises(BuildStepError, match="No such image: nosuchimage:latest") as caught:
        build(builder, tar_context({"Dockerfile": "# base\nFROM nosuchimage\n"}))
    assert caught.value.line_start == 2


def test_it_refuses_a_platform_it_cannot_run(builder: Builder) -> None:
    with pytest.raises(BuildStepError, match="linux/arm64"):
        build(builder, tar_context({"Dockerfile": "FROM --platform=linux/arm64 busybox\n"}))
    result, _ = build(builder, tar_context({"Dockerfile": "ARG P=linux/amd64\nFROM --platform=$P busybox\n"}))
    assert result.image_id == builder.engine.images.get("busybox").id


def test_it_has_the_automatic_platform_args_in_from_platform_only(builder: Builder, engine: Engine) -> None:
    # BuildKit's automatic args: the legacy builder refuses FROM --platform=$BUILDPLATFORM, and has
    # TARGETARCH empty in a stage, so only the first works as in BuildKit.
    dockerfile = 'FROM --platform=$BUILDPLATFORM busybox\nARG TARGETARCH\nRUN echo "arch=$TARGETARCH" > /arch\n'
    result, _ = build(builder, tar_context({"Dockerfile": dockerfile}))
    assert run_image(engine, result.image_id, ["cat", "/arch"]) == (0, "arch=\n")


def test_it_needs_a_slash_after_the_destination_of_several_sources(builder: Builder) -> None:
    files = {"Dockerfile": "FROM busybox\nCOPY a b /dest\n", "a": "a", "b": "b"}
    with pytest.raises(BuildStepError, match="the destination must be a directory and end with a /"):
        build(builder, tar_context(files))


def test_it_refuses_a_bad_tag_before_building(builder: Builder, engine: Engine) -> None:
    with pytest.raises(InvalidReference):
        build(builder, tar_context({"Dockerfile": "FROM busybox\nRUN exit 1\n"}), tags=("Not A Tag",))
    with pytest.raises(InvalidReference, match="digest"):
        build(builder, tar_context({"Dockerfile": "FROM busybox\n"}), tags=("app@sha256:" + "0" * 64,))
    _assert_nothing_left(engine)


def test_it_refuses_an_unknown_target(builder: Builder) -> None:
    with pytest.raises(InvalidArgument, match='target stage "nope" could not be found'):
        build(builder, tar_context({"Dockerfile": "FROM busybox AS base\n"}), target="nope")


def test_it_refuses_a_context_without_its_dockerfile(builder: Builder, engine: Engine) -> None:
    with pytest.raises(InvalidArgument, match="Cannot locate specified Dockerfile: Dockerfile.dev"):
        build(builder, tar_context({"Dockerfile": "FROM busybox\n"}), dockerfile="Dockerfile.dev")
    _assert_nothing_left(engine)


def test_it_refuses_a_context_over_the_limit_and_keeps_none_of_it(builder: Builder, engine: Engine) -> None:
    files = {"Dockerfile": "FROM busybox\n", "big.bin": b"\0" * (256 * 1024)}
    with pytest.raises(ContextTooLarge, match="build context is larger than the limit of 102.4kB"):
        build(builder, tar_context(files, compression="gzip"), context_limit=100 * 1024)
    _assert_nothing_left(engine)


def test_it_refuses_a_context_that_climbs_out_of_itself(builder: Builder, engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(UnsafeArchive):
        build(builder, tar_context({"Dockerfile": "FROM busybox\n", "../../escaped": "x"}))
    assert not (engine.config.root / "escaped").exists()
    _assert_nothing_left(engine)


def test_it_kills_and_removes_the_running_step_when_cancelled(builder: Builder, engine: Engine) -> None:
    cancel = threading.Event()
    pieces: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        context = tar_context({"Dockerfile": "FROM busybox\nRUN echo started; sleep 60\n"})
        try:
            builder.build(context, BuildOptions(no_cache=True), pieces.append, cancel)
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 20
    while "started\n" not in pieces and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "started\n" in pieces, "the step's output should arrive while it runs"
    cancelled_at = time.monotonic()
    cancel.set()
    thread.join(timeout=20)
    assert not thread.is_alive()
    assert time.monotonic() - cancelled_at < 5, "cancelling should not wait for the step to finish"
    assert len(errors) == 1 and isinstance(errors[0], BuildCancelled)
    _assert_nothing_left(engine)
