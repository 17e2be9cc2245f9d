"""Helpers for build tests: an engine shared by a test module, contexts as tar streams, built images run and read.

    context = tar_context({"Dockerfile": "FROM busybox\\nRUN echo hi\\n"})
    result, output = build(builder, context, tags=("demo:1",))
    code, text = run_image(engine, result.image_id)

Import the fixtures into a test module to use them: `from tests.engine.build.buildtest import builder, engine`.
"""

from __future__ import annotations

import gzip
import io
import json
import lzma
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from containers.engine.build.builder import Builder, BuildOptions, BuildResult
from containers.engine.engine import Engine
from containers.engine.images.config import ImageConfig
from containers.engine.shim.logfile import read_log
from tests.conftest import SESSION_ROOT
from tests.engine.conftest import busybox_engine

# Every file of a test context has this mtime, so that COPY keeping mtimes can be checked.
MTIME = 1_700_000_000

File = str | bytes | tuple[str | bytes, int]
"""A file of a context: its content, or its content and mode."""


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    """An engine with busybox:latest, shared by the tests of one module: images built once serve several tests."""
    with busybox_engine(Path(tempfile.mkdtemp(prefix="root-", dir=SESSION_ROOT))) as shared:
        yield shared


@pytest.fixture(scope="module")
def builder(engine: Engine) -> Builder:
    return Builder(engine)


def tar_context(
    files: Mapping[str, File], symlinks: Mapping[str, str] | None = None, compression: str = "", owner: int = 0
) -> io.BytesIO:
    """Return a context tar stream as the docker CLI sends it: owned by 0:0 (or `owner`), parent directories first.

    `compression` is "", "gzip" or "xz".
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        made: set[str] = set()
        for name in sorted({*files, *(symlinks or {})}):
            parts = name.split("/")
            for end in range(1, len(parts)):
                directory = "/".join(parts[:end])
                if directory not in made:
                    made.add(directory)
                    tar.addfile(_info(directory, tarfile.DIRTYPE, 0o755, owner))
            if symlinks and name in symlinks:
                info = _info(name, tarfile.SYMTYPE, 0o777, owner)
                info.linkname = symlinks[name]
                tar.addfile(info)
                continue
            content, mode = files[name] if isinstance(files[name], tuple) else (files[name], 0o644)  # type: ignore[misc]
            data = content.encode() if isinstance(content, str) else content
            info = _info(name, tarfile.REGTYPE, mode, owner)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    data = buffer.getvalue()
    if compression == "gzip":
        data = gzip.compress(data)
    elif compression == "xz":
        data = lzma.compress(data)
    return io.BytesIO(data)


def _info(name: str, kind: bytes, mode: int, owner: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.uid, info.gid = kind, mode, MTIME, owner, owner
    return info


def directory_files(root: Path, skip: tuple[str, ...] = ()) -> dict[str, File]:
    """Read a context directory of the repository as `tar_context` files (modes kept, `skip` left out)."""
    files: dict[str, File] = {}
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        if path.is_file() and name not in skip:
            files[name] = (path.read_bytes(), stat.S_IMODE(path.stat().st_mode))
    return files


def case_context(case: Path, expect: Mapping[str, Any]) -> io.BytesIO:
    """Return a conformance case's context: the files of contexts/<case>/, and its expect.json's archives and links."""
    files = directory_files(case, skip=("expect.json",))
    for name, spec in expect.get("archives", {}).items():
        members = {path: (content[0], int(content[1], 8)) if isinstance(content, list) else content
                   for path, content in spec["files"].items()}  # fmt: skip
        files[name] = tar_context(members, compression=spec["compression"], owner=spec.get("owner", 0)).getvalue()
    return tar_context(files, symlinks=expect.get("symlinks"))


def build(builder: Builder, context: io.BytesIO, **options: Any) -> tuple[BuildResult, str]:
    """Build; return the result and everything the build printed."""
    pieces: list[str] = []
    result = builder.build(context, BuildOptions(**options), pieces.append)
    assert all(piece.endswith("\n") for piece in pieces), "every piece of build output should end with a newline"
    return result, "".join(pieces)


def run_image(engine: Engine, image: str, cmd: list[str] | None = None) -> tuple[int, str]:
    """Run a container of the image (its default command, or `cmd`); return its exit code and output."""
    config: dict[str, Any] = {"Image": image}
    if cmd is not None:
        config["Cmd"] = cmd
    record = engine.containers.create(config)
    try:
        engine.containers.start(record.id)
        state = engine.containers.wait(record.id, timeout=30)
        output = "".join(entry.text.decode() for entry in read_log(engine.containers.log_path(record.id)))
        return state.exit_code, output
    finally:
        engine.containers.remove(record.id, force=True)


def config_json(engine: Engine, image: str) -> dict[str, Any]:
    """Return the image's `config` section with Docker's field names, as `docker image inspect` shows it."""
    config = engine.images.get(image).config
    doc: dict[str, Any] = json.loads(ImageConfig(config=config.config).to_json())["config"]
    return doc


def step_lines(output: str) -> list[str]:
    """Return the `Step n/m : ...` and ` ---> Using cache` lines of a build's output."""
    return [line for line in output.splitlines() if line.startswith("Step ") or line == " ---> Using cache"]


def cached_steps(output: str) -> list[str]:
    """Return the instructions of the steps the cache served, in order."""
    served: list[str] = []
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if line == " ---> Using cache":
            step = next(previous for previous in reversed(lines[:index]) if previous.startswith("Step "))
            served.append(step.split(" : ", 1)[1])
    return served


def stat_in(root: Path, path: str) -> os.stat_result | None:
    """Return the lstat of `path` in an image's files mounted at `root`, or None if it is not there."""
    try:
        return os.lstat(root / path.lstrip("/"))
    except FileNotFoundError:
        return None
