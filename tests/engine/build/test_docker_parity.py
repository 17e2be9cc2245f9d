"""Parity: every conformance context builds, with our builder, the image a Docker daemon's legacy builder builds.

Each case under contexts/ is built from the same context bytes twice, without cache: by our Builder, and by the
daemon through the docker CLI (`DOCKER_BUILDKIT=0 docker build <dir>`, the context unpacked into a directory as a
user has it), with the case's Dockerfile, target, build args and labels. Then, for every build of the case:

- the config fields of FIELDS agree (`docker image inspect` of Docker's image; our image's config);
- the files agree, both images saved as `docker save` archives and their layers applied in order: path, type, mode,
  owner, size, content digest, symlink target, and the mtime of every entry not written during the build (files
  COPY'd from the context, members of an ADD'ed archive, the base image's files);
- a container of our image prints what `docker run` of Docker's prints.

No path is left out of the comparison: the runtime's mount points (/proc, /sys, /dev, /etc/hosts, /etc/hostname,
/etc/resolv.conf, /.dockerenv) are in the container's init layer with Docker, which a commit leaves out, and our
executor leaves the stubs of its runtime out of the layer (run-changes writes to /etc to check that).

The daemon here is Docker 20.10, not moby 28. What its legacy builder refuses is taken out of the case's Dockerfile
for both builds (LEGACY_20_10) or the case is skipped (SKIPPED), each with the reason; test_build_conformance.py
checks those against Docker's documentation. Differences found this way and fixed in the builder: `ARG TARGETARCH`
(BuildKit's automatic platform args) is empty with the legacy builder; a HEALTHCHECK inherits the options it leaves
unset from the parent image's; `.dockerignore` keeps the times of the directories it prunes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import re
import stat
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from containers.engine.build.builder import Builder
from containers.engine.engine import Engine
from containers.engine.images import archive
from tests.conftest import SESSION_ROOT
from tests.engine.build.buildtest import build, builder, case_context, config_json, engine, run_image

__all__ = ["builder", "engine"]

pytestmark = pytest.mark.requires("root", "overlayfs", "busybox", "docker-daemon", "docker-cli")

CONTEXTS = Path(__file__).parent / "contexts"
CASES = sorted(path.name for path in CONTEXTS.iterdir() if (path / "expect.json").exists())
DOCKER_HOST = "unix:///var/run/docker.sock"
FIELDS = ("Cmd", "Entrypoint", "Env", "WorkingDir", "User", "ExposedPorts", "Volumes", "Labels", "StopSignal",
          "Healthcheck", "Shell", "OnBuild")  # fmt: skip
# How `docker image inspect` shows a field the config leaves out (Go's container.Config: no omitempty on these).
UNSET = {"WorkingDir": "", "User": ""}

# What Docker 20.10's legacy builder refuses, taken out of a case's Dockerfile for both builds: (text, why).
LEGACY_20_10: dict[str, list[tuple[str, str]]] = {
    # moby 28's legacy builder refuses it too ("the --chmod option requires BuildKit").
    "copy-rules": [("COPY --chmod=0755 dir/a.txt /exec/\n", "COPY --chmod needs BuildKit")],
    # moby 25+ takes it (API 1.44); 20.10 stops at "Unknown flag: start-interval".
    "healthcheck": [(" --start-interval=2s", "HEALTHCHECK --start-interval came with moby 25")],
}
SKIPPED = {
    "heredocs": "the legacy builder has no heredocs (BuildKit's dockerfile:1.4): the body's lines are read as "
    "instructions (unknown instruction: ECHO)",
}


@dataclass(frozen=True)
class Entry:
    """A path of an image's files, as its layers leave it."""

    kind: str
    mode: int
    uid: int
    gid: int
    size: int = 0
    digest: str = ""
    target: str = ""
    mtime: int = 0


@dataclass
class Built:
    """One side's image of one build: its ID, config, files, and when its build started (whole seconds)."""

    image_id: str
    config: dict[str, Any]
    files: dict[str, Entry]
    started: int


@dataclass
class Pair:
    """The same build done by us and by Docker, and how a container of the image is run."""

    name: str
    ours: Built
    docker: Built
    cmd: list[str] | None


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": DOCKER_HOST, "DOCKER_BUILDKIT": "0"}
    done = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=300)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done


def saved_files(save: BinaryIO) -> dict[str, Entry]:
    """Return the files of the image in a `docker save` archive: its layers applied in order, whiteouts honoured."""
    files: dict[str, Entry] = {}
    with tarfile.open(fileobj=save) as saved:
        manifest = json.load(saved.extractfile("manifest.json"))  # type: ignore[arg-type]
        for layer in manifest[0]["Layers"]:
            with tarfile.open(fileobj=saved.extractfile(layer)) as tar:
                _apply_layer(files, tar)
    return files


def _apply_layer(files: dict[str, Entry], tar: tarfile.TarFile) -> None:
    members = tar.getmembers()
    # Whiteouts hide what the layers below have, wherever they come in the layer's tar.
    for member in members:
        path = posixpath.normpath("/" + member.name)
        directory, base = posixpath.split(path)
        if base == ".wh..wh..opq":
            _remove(files, directory, keep_self=True)
        elif base.startswith(".wh."):
            _remove(files, posixpath.join(directory, base.removeprefix(".wh.")))
    for member in members:
        path = posixpath.normpath("/" + member.name)
        if posixpath.basename(path).startswith(".wh.") or path == "/":
            continue
        if not member.isdir():
            _remove(files, path)
        if member.islnk():
            files[path] = files[posixpath.normpath("/" + member.linkname)]
            continue
        kind = ("dir" if member.isdir() else "symlink" if member.issym() else "file" if member.isreg() else
                "device" if member.isdev() else "other")  # fmt: skip
        entry = Entry(kind, stat.S_IMODE(member.mode), member.uid, member.gid, mtime=int(member.mtime))
        if member.isreg():
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            entry = replace(entry, size=len(data), digest=hashlib.sha256(data).hexdigest())
        elif member.issym():
            entry = replace(entry, target=member.linkname)
        files[path] = entry


def _remove(files: dict[str, Entry], path: str, keep_self: bool = False) -> None:
    below = path.rstrip("/") + "/"
    for name in [name for name in files if name.startswith(below) or (name == path and not keep_self)]:
        del files[name]


@dataclass
class Parity:
    """Builds cases on both sides, once each; remembers the images it made in the daemon to remove them."""

    engine: Engine
    builder: Builder
    workdir: Path
    made: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    pairs: dict[str, list[Pair]] = field(default_factory=dict)

    def case(self, case: str) -> list[Pair]:
        if case in SKIPPED:
            pytest.skip(SKIPPED[case])
        if case not in self.pairs:
            self.pairs[case] = self._build_case(case)
        return self.pairs[case]

    def _build_case(self, case: str) -> list[Pair]:
        expect = json.loads((CONTEXTS / case / "expect.json").read_text())
        context = _legacy_context(case, case_context(CONTEXTS / case, expect).getvalue())
        directory = Path(tempfile.mkdtemp(prefix=f"{case}-", dir=self.workdir))
        with tarfile.open(fileobj=io.BytesIO(context)) as tar:
            tar.extractall(directory, numeric_owner=True)
        pairs = []
        for index, spec in enumerate([*expect.get("before", []), *expect["builds"]]):
            options = {key: spec[key] for key in ("target", "build_args", "labels", "dockerfile") if key in spec}
            options["tags"] = tuple(spec.get("tags", ()))
            started = int(time.time())
            # No cache on either side: a case's later builds would otherwise reuse the steps of earlier ones.
            result, _ = build(self.builder, io.BytesIO(context), no_cache=True, **options)
            ours = Built(result.image_id, config_json(self.engine, result.image_id), self._our_files(result.image_id),
                         started)  # fmt: skip
            cmd = spec.get("run", {}).get("cmd")
            pairs.append(Pair(f"{case} build {index}", ours, self._docker_build(directory, options), cmd))
        return pairs

    def _our_files(self, image_id: str) -> dict[str, Entry]:
        save = io.BytesIO()
        archive.save(self.engine.images, [image_id], save)
        save.seek(0)
        return saved_files(save)

    def _docker_build(self, directory: Path, options: dict[str, Any]) -> Built:
        before = set(docker("images", "-aq", "--no-trunc").stdout.split())
        iidfile = directory.parent / f"{directory.name}.iid"
        # --no-cache: every image of the build is new, so this module may remove all it made, and only that.
        args = ["build", "--no-cache", "--force-rm", "--iidfile", str(iidfile)]
        args += ["-f", str(directory / options.get("dockerfile", "Dockerfile")), *(f"-t{t}" for t in options["tags"])]
        args += [f"--target={options['target']}"] if "target" in options else []
        args += [f"--build-arg={key}={value}" for key, value in options.get("build_args", {}).items()]
        args += [f"--label={key}={value}" for key, value in options.get("labels", {}).items()]
        started = int(time.time())
        built = docker(*args, str(directory))
        self._record_images(before, built.stdout)
        self.tags += options["tags"]
        image_id = iidfile.read_text().strip()
        config = json.loads(docker("image", "inspect", image_id).stdout)[0]["Config"]
        save = directory.parent / f"{directory.name}.tar"
        docker("save", "-o", str(save), image_id)
        try:
            with open(save, "rb") as f:
                files = saved_files(f)
        finally:
            save.unlink()
        return Built(image_id, config, files, started)

    def _record_images(self, before: set[str], output: str) -> None:
        """Remember the images of the steps a build printed and the parents it made (ONBUILD triggers print none)."""
        made = {image[7:19]: image for image in docker("images", "-aq", "--no-trunc").stdout.split()
                if image not in before}  # fmt: skip
        todo = [made[short] for short in re.findall(r"^ ---> ([0-9a-f]{12})$", output, re.MULTILINE) if short in made]
        while todo:
            image = todo.pop()
            if image and image not in before and image not in self.made:
                self.made.append(image)
                todo.append(docker("image", "inspect", "-f", "{{.Parent}}", image).stdout.strip())

    def remove(self) -> None:
        """Remove the tags and images this module made in the daemon (each round removes those without children)."""
        for tag in self.tags:
            docker("rmi", "--no-prune", tag, check=False)
        remaining = self.made
        while remaining:
            docker("rmi", "--no-prune", *remaining, check=False)
            left = set(docker("images", "-aq", "--no-trunc").stdout.split())
            if len(left & set(remaining)) == len(remaining):
                raise AssertionError(f"cannot remove the images this test made: {remaining}")
            remaining = [image for image in remaining if image in left]


def _legacy_context(case: str, context: bytes) -> bytes:
    """Return the context with what Docker 20.10's legacy builder refuses taken out of its Dockerfiles."""
    changes = LEGACY_20_10.get(case)
    if not changes:
        return context
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(context)) as tar, tarfile.open(fileobj=out, mode="w") as new:
        for member in tar:
            data = tar.extractfile(member).read() if member.isreg() else None  # type: ignore[union-attr]
            if data is not None and member.name.startswith("Dockerfile"):
                text = data.decode()
                for removed, why in changes:
                    assert removed in text, f"{case}: the Dockerfile no longer has {removed!r} ({why})"
                    text = text.replace(removed, "")
                data = text.encode()
                member.size = len(data)
            new.addfile(member, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


@pytest.fixture(scope="module")
def parity(engine: Engine, builder: Builder) -> Iterator[Parity]:
    ours = engine.images.get("busybox:latest").id
    inspected = docker("image", "inspect", "-f", "{{.Id}}", "busybox:latest", check=False)
    loaded = inspected.returncode != 0
    workdir = Path(tempfile.mkdtemp(prefix="parity-", dir=SESSION_ROOT))
    if loaded:
        with open(workdir / "busybox.tar", "wb") as f:
            archive.save(engine.images, ["busybox:latest"], f)
        docker("load", "-i", str(workdir / "busybox.tar"))
    elif inspected.stdout.strip() != ours:
        pytest.skip(f"the daemon's busybox is {inspected.stdout.strip()}, not ours ({ours}): builds would differ")
    state = Parity(engine, builder, workdir)
    try:
        yield state
    finally:
        state.remove()
        if loaded:
            docker("rmi", "busybox:latest", check=False)


@pytest.mark.parametrize("case", CASES)
def test_it_builds_the_config_docker_builds(parity: Parity, case: str) -> None:
    differ = []
    for pair in parity.case(case):
        ours = {key: pair.ours.config.get(key, UNSET.get(key)) for key in FIELDS}
        theirs = {key: pair.docker.config.get(key, UNSET.get(key)) for key in FIELDS}
        differ += [f"{pair.name}: {key}: ours {ours[key]!r}, Docker's {theirs[key]!r}"
                   for key in FIELDS if ours[key] != theirs[key]]  # fmt: skip
    assert not differ, "the image config differs from Docker's:\n  " + "\n  ".join(differ)


@pytest.mark.parametrize("case", CASES)
def test_it_builds_the_files_docker_builds(parity: Parity, case: str) -> None:
    differ = []
    for pair in parity.case(case):
        ours, theirs = pair.ours.files, pair.docker.files
        differ += [f"{pair.name}: {path}: only in ours" for path in sorted(ours.keys() - theirs.keys())]
        differ += [f"{pair.name}: {path}: only in Docker's" for path in sorted(theirs.keys() - ours.keys())]
        for path in sorted(ours.keys() & theirs.keys()):
            mine, docker_entry = ours[path], theirs[path]
            # Entries written during a build carry that build's time; any other mtime (from the context, an
            # archive, the base image) must be kept as it is.
            carried = mine.mtime < pair.ours.started or docker_entry.mtime < pair.docker.started
            if not carried:
                mine = replace(mine, mtime=docker_entry.mtime)
            if mine != docker_entry:
                differ.append(f"{pair.name}: {path}: ours {mine}, Docker's {docker_entry}")
    assert not differ, "the files differ from Docker's:\n  " + "\n  ".join(differ)


@pytest.mark.parametrize("case", CASES)
def test_a_container_of_the_image_prints_what_dockers_prints(parity: Parity, engine: Engine, case: str) -> None:
    differ = []
    for pair in parity.case(case):
        code, output = run_image(engine, pair.ours.image_id, pair.cmd)
        ran = docker("run", "--rm", pair.docker.image_id, *(pair.cmd or []), check=False)
        if (code, output) != (ran.returncode, ran.stdout + ran.stderr):
            differ.append(f"{pair.name}: ours exits {code} printing {output!r}, Docker's exits {ran.returncode} "
                          f"printing {ran.stdout + ran.stderr!r}")  # fmt: skip
    assert not differ, "docker run prints something else than with Docker's image:\n  " + "\n  ".join(differ)
