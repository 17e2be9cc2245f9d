"""The build cache: exactly the steps whose input changed, and those after them, are built again."""

from __future__ import annotations

import secrets

import pytest

from containers.engine.build.builder import Builder
from containers.engine.engine import Engine
from containers.engine.images.store import intermediates
from tests.engine.build.buildtest import build, builder, cached_steps, engine, run_image, tar_context

__all__ = ["builder", "engine"]

pytestmark = pytest.mark.requires("root", "overlayfs", "busybox")

DOCKERFILE = """FROM busybox
WORKDIR /app
COPY package.json ./
RUN echo "installed for $(cat package.json)" > deps.txt
COPY src/ ./src/
RUN cat src/main.txt deps.txt > built.txt
CMD ["cat", "built.txt"]
"""
STEPS = ["WORKDIR /app", "COPY package.json ./", 'RUN echo "installed for $(cat package.json)" > deps.txt',
         "COPY src/ ./src/", "RUN cat src/main.txt deps.txt > built.txt", 'CMD ["cat", "built.txt"]']  # fmt: skip


def _files(token: str, **changes: object) -> dict[str, object]:
    # The token makes the package unique to the test, so that its first build finds nothing cached.
    files: dict[str, object] = {"Dockerfile": DOCKERFILE, "package.json": f'{{"name": "{token}"}}\n',
                                "src/main.txt": "main\n", "src/util.txt": "util\n"}  # fmt: skip
    files.update(changes)
    return files


def test_it_reuses_every_step_when_nothing_changed(builder: Builder, engine: Engine) -> None:
    token = secrets.token_hex(4)
    first, output = build(builder, tar_context(_files(token)))
    assert cached_steps(output) == [], "a context never built before has nothing cached"
    second, output = build(builder, tar_context(_files(token)))
    assert cached_steps(output) == STEPS
    assert second.image_id == first.image_id, "a fully cached build gives the same image"
    assert [step.cached for step in second.steps] == [False, *[True] * len(STEPS)]
    assert run_image(engine, second.image_id) == (0, f'main\ninstalled for {{"name": "{token}"}}\n')


def test_it_rebuilds_from_the_step_that_copies_a_changed_file(builder: Builder, engine: Engine) -> None:
    token = secrets.token_hex(4)
    build(builder, tar_context(_files(token)))
    result, output = build(builder, tar_context(_files(token, **{"src/main.txt": "changed\n"})))
    assert cached_steps(output) == STEPS[:3], "steps before the COPY of src/ are not affected"
    assert run_image(engine, result.image_id)[1].startswith("changed\n")
    _, output = build(builder, tar_context(_files(token, **{"package.json": '{"name": "other"}\n'})))
    assert cached_steps(output) == STEPS[:1]


def test_it_rebuilds_when_a_source_changes_mode_or_owner_but_not_for_its_mtime(builder: Builder) -> None:
    token = secrets.token_hex(4)
    build(builder, tar_context(_files(token)))
    _, output = build(builder, tar_context(_files(token, **{"src/util.txt": ("util\n", 0o755)})))
    assert cached_steps(output) == STEPS[:3], "a new mode is a new source"
    _, output = build(builder, tar_context(_files(token), owner=1000))
    assert cached_steps(output) == STEPS[:1], "a new owner is a new source"
    _, output = build(builder, tar_context(_files(token)))
    assert cached_steps(output) == STEPS, "the context's mtimes differ on every send; they do not count"


def test_it_rebuilds_a_changed_instruction_and_what_follows(builder: Builder) -> None:
    token = secrets.token_hex(4)
    build(builder, tar_context(_files(token)))
    changed = DOCKERFILE.replace("cat src/main.txt deps.txt", "cat deps.txt src/main.txt")
    _, output = build(builder, tar_context(_files(token, Dockerfile=changed)))
    assert cached_steps(output) == STEPS[:4]


def test_it_rebuilds_a_run_when_a_build_arg_it_sees_changes(builder: Builder, engine: Engine) -> None:
    dockerfile = (
        f"FROM busybox\nARG MODE=dev\nRUN echo {secrets.token_hex(4)} $MODE > /mode\nARG UNUSED\nCMD cat /mode\n"
    )
    build(builder, tar_context({"Dockerfile": dockerfile}))
    result, output = build(builder, tar_context({"Dockerfile": dockerfile}), build_args={"MODE": "prod"})
    assert cached_steps(output) == ["ARG MODE=dev"], "the ARG step is the same; the RUN that sees MODE is not"
    assert run_image(engine, result.image_id)[1].endswith("prod\n")
    again, output = build(builder, tar_context({"Dockerfile": dockerfile}), build_args={"MODE": "prod", "UNUSED": "1"})
    assert len(cached_steps(output)) == 4, "an arg no RUN sees changes nothing"
    assert again.image_id == result.image_id


def test_it_shares_the_cache_across_dockerfiles_and_tags(builder: Builder) -> None:
    token = secrets.token_hex(4)
    build(builder, tar_context(_files(token)), tags=("cache-one:1",))
    other = DOCKERFILE.replace('CMD ["cat", "built.txt"]', 'CMD ["cat", "deps.txt"]')
    result, output = build(builder, tar_context(_files(token, Dockerfile=other)), tags=("cache-two:1",))
    assert cached_steps(output) == STEPS[:5]
    assert "Successfully tagged cache-two:1\n" in output
    assert result.tags == ("cache-two:1",)


def test_it_builds_everything_again_without_cache(builder: Builder) -> None:
    token = secrets.token_hex(4)
    first, _ = build(builder, tar_context(_files(token)))
    second, output = build(builder, tar_context(_files(token)), no_cache=True)
    assert cached_steps(output) == []
    assert " ---> Running in " in output
    assert second.image_id != first.image_id


def test_it_ignores_a_cached_step_whose_image_was_removed(builder: Builder, engine: Engine) -> None:
    token = secrets.token_hex(4)
    first, _ = build(builder, tar_context(_files(token)))
    engine.images.remove(first.image_id)
    _, output = build(builder, tar_context(_files(token)))
    assert cached_steps(output) == STEPS[:-1], "the CMD step's image is gone: it is made again"


def test_it_sees_the_steps_another_builder_cached_since(builder: Builder, engine: Engine) -> None:
    # Builders of the same node (the API's build threads, the worker) share one cache on disk.
    token = secrets.token_hex(4)
    build(builder, tar_context(_files(token)))
    other = DOCKERFILE.replace('CMD ["cat", "built.txt"]', 'CMD ["cat", "deps.txt"]')
    build(Builder(engine), tar_context(_files(token, Dockerfile=other)))
    _, output = build(builder, tar_context(_files(token, Dockerfile=other)))
    assert cached_steps(output) == STEPS[:5] + ['CMD ["cat", "deps.txt"]']


def test_the_steps_of_a_build_are_intermediate_images_not_dangling_ones(builder: Builder, engine: Engine) -> None:
    token = secrets.token_hex(4)
    result, _ = build(builder, tar_context(_files(token)), tags=(f"steps-{token}:1",))
    images = engine.images.list()
    steps = intermediates(images)
    final = engine.images.get(result.image_id)
    assert final.id not in steps, "the tagged result is listed"
    made = [image for image in images if image.id in steps and len(image.config.history) > 1]
    assert len(made) >= len(STEPS) - 1, "every step but the last left an image the next one was built on"
    engine.images.untag(f"steps-{token}:1")
    assert final.id not in intermediates(engine.images.list()), "the untagged result is dangling, not a step"
