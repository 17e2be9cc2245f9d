"""Conformance: each context under contexts/<case>/ builds into the image Docker's legacy builder makes.

A case is a build context (a Dockerfile and its files) and `expect.json`, which is not sent:

- `symlinks` and `archives` ({name: {compression, owner, files}}) are added to the context;
- `before`: builds to run first (`dockerfile`, `tags`), with their own expectations;
- `builds`: one or more builds of the context (`target`, `build_args`, `labels`), each checked by
  - `config`: fields of the image's config, Docker's names (null: absent);
  - `author`, and `history`: the `created_by` of the last entries (`*` matches anything), and
    `empty_layers`: their `empty_layer` flags;
  - `files`: paths in the image with `content`, `mode` (octal), `uid`, `gid`, `mtime`, `type`
    (file, dir), or null for a path that must not be there;
  - `run`: the output of a container of the image (its default command, or `cmd`);
  - `output_contains`: pieces of the build's output.

The expectations are what `DOCKER_BUILDKIT=0 docker build` gives for the same context.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from containers.engine.build.builder import Builder
from containers.engine.build.executor import Executor
from containers.engine.engine import Engine
from tests.engine.build.buildtest import build, builder, case_context, config_json, engine, run_image

__all__ = ["builder", "engine"]

pytestmark = pytest.mark.requires("root", "overlayfs", "busybox")

CONTEXTS = Path(__file__).parent / "contexts"
CASES = sorted(path.name for path in CONTEXTS.iterdir() if (path / "expect.json").exists())


def _matches(pattern: str, text: str) -> bool:
    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), text, re.DOTALL) is not None


def _check(engine: Engine, image_id: str, output: str, spec: dict[str, Any]) -> None:
    config = config_json(engine, image_id)
    for key, want in spec.get("config", {}).items():
        assert config.get(key) == want, f"config {key}: {config.get(key)!r}, Docker has {want!r}"
    image = engine.images.get(image_id)
    if "author" in spec:
        assert image.config.author == spec["author"]
    if "history" in spec:
        entries = image.config.history[-len(spec["history"]) :]
        for entry, pattern in zip(entries, spec["history"], strict=True):
            assert _matches(pattern, entry.created_by), f"history: {entry.created_by!r}, Docker writes {pattern!r}"
    if "empty_layers" in spec:
        flags = [entry.empty_layer for entry in image.config.history[-len(spec["empty_layers"]) :]]
        assert flags == spec["empty_layers"], "steps that change no file make no layer, and only those"
    for piece in spec.get("output_contains", []):
        assert piece in output, f"the build should print {piece!r}"
    if "files" in spec:
        with Executor(engine).view(image) as root:
            for path, want in spec["files"].items():
                _check_file(root, path, want)
    if "run" in spec:
        code, text = run_image(engine, image_id, spec["run"].get("cmd"))
        assert (code, text) == (0, spec["run"]["output"])


def _check_file(root: Path, path: str, want: dict[str, Any] | None) -> None:
    target = root / path.lstrip("/")
    if want is None:
        assert not os.path.lexists(target), f"{path} should not be in the image"
        return
    assert os.path.lexists(target), f"{path} should be in the image"
    st = os.lstat(target)
    kind = want.get("type", "file")
    assert stat.S_ISDIR(st.st_mode) if kind == "dir" else stat.S_ISREG(st.st_mode), f"{path} should be a {kind}"
    if "content" in want:
        assert target.read_text() == want["content"], f"content of {path}"
    if "mode" in want:
        assert oct(stat.S_IMODE(st.st_mode)) == oct(int(want["mode"], 8)), f"mode of {path}"
    for key in ("uid", "gid"):
        if key in want:
            assert getattr(st, f"st_{key}") == want[key], f"{key} of {path}"
    if "mtime" in want:
        assert int(st.st_mtime) == want["mtime"], f"COPY keeps the mtime of {path}"


@pytest.mark.parametrize("case", CASES)
def test_it_builds_the_image_docker_builds(builder: Builder, engine: Engine, case: str) -> None:
    expect = json.loads((CONTEXTS / case / "expect.json").read_text())
    for before in expect.get("before", []):
        result, output = build(builder, case_context(CONTEXTS / case, expect), dockerfile=before["dockerfile"],
                               tags=tuple(before["tags"]))  # fmt: skip
        _check(engine, result.image_id, output, before)
    for spec in expect["builds"]:
        options = {key: spec[key] for key in ("target", "build_args", "labels") if key in spec}
        result, output = build(builder, case_context(CONTEXTS / case, expect), **options)
        _check(engine, result.image_id, output, spec)
