"""`docker build` (the legacy builder, DOCKER_BUILDKIT=0) and docker-py's `images.build` against webengine."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import docker.errors
import pytest

from tests.dockerapi.conftest import ApiServer

pytestmark = pytest.mark.requires("root", "overlayfs", "busybox")

# The seed's example, with busybox for node and RUN steps that need no network.
SEED = """\
FROM busybox
WORKDIR /app
COPY package*.json ./
RUN echo "installing $(cat package.json | wc -c) bytes of package.json" && mkdir node_modules
COPY . .
EXPOSE 8080
CMD ["sh", "-c", "cat app.js; ls -d node_modules"]
"""


def _context(directory: Path, dockerfile: str, files: dict[str, str]) -> Path:
    directory.mkdir()
    (directory / "Dockerfile").write_text(dockerfile)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def _legacy_build(api: ApiServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": api.url, "DOCKER_CONFIG": str(api.docker_config), "DOCKER_BUILDKIT": "0"}
    return subprocess.run(["docker", "build", *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.requires("docker-cli")
def test_the_cli_builds_the_seeds_dockerfile_and_the_image_runs(api: ApiServer, tmp_path: Path) -> None:
    context = _context(tmp_path / "app", SEED, {"package.json": '{"name": "app"}\n', "app.js": "console.log(1)\n"})
    built = _legacy_build(api, "-t", "seed-app", str(context))
    assert built.returncode == 0, built.stdout + built.stderr
    assert "Step 1/7 : FROM busybox" in built.stdout
    assert "installing 16 bytes of package.json" in built.stdout, "RUN output is shown as the step runs"
    assert "Successfully tagged seed-app:latest" in built.stdout
    try:
        ran = api.docker("run", "--rm", "seed-app")
        assert (ran.returncode, ran.stdout) == (0, "console.log(1)\nnode_modules\n"), ran.stderr
        fields = "{{json .Config.ExposedPorts}} {{.Config.WorkingDir}}"
        exposed = api.docker("image", "inspect", "-f", fields, "seed-app")
        assert exposed.stdout.strip() == '{"8080/tcp":{}} /app'

        listed = api.docker("images", "--format", "{{.Repository}}").stdout.split()
        assert "<none>" not in listed, "the build's steps are not listed, as on Docker"
        # The steps belong to no team's list (they are the node's cache): the node's admin sees them with -a.
        every = api.docker("images", "-a", "--format", "{{.Repository}}", host=f"unix://{api.socket_path}")
        assert every.stdout.split().count("<none>") >= 5

        again = _legacy_build(api, "-t", "seed-app", str(context))
        assert again.returncode == 0, again.stderr
        assert again.stdout.count("Using cache") == 6, "an unchanged context rebuilds nothing after FROM"
    finally:
        api.docker("rmi", "seed-app")


@pytest.mark.requires("docker-cli")
def test_a_failing_step_fails_the_cli_with_its_exit_code_and_line(api: ApiServer, tmp_path: Path) -> None:
    context = _context(tmp_path / "bad", "FROM busybox\nRUN echo before\nRUN echo failing; exit 3\n", {})
    built = _legacy_build(api, "-t", "bad-app", str(context))
    assert built.returncode == 3, built.stdout + built.stderr
    assert "failing" in built.stdout
    assert "returned a non-zero code: 3" in built.stderr
    assert api.docker("images", "-q", "bad-app").stdout == "", "a failed build tags nothing"
    assert api.docker("ps", "-aq").stdout == "", "no intermediate container is left behind"


def test_buildkit_is_refused_with_a_clear_message(api: ApiServer) -> None:
    # docker-py and the CLI with DOCKER_BUILDKIT=0 speak the legacy protocol; version=2 is BuildKit's session.
    request = urllib.request.Request(
        f"http://127.0.0.1:{api.port}/build?version=2", data=b"", method="POST",
        headers={"Authorization": f"Bearer {api.token}"},
    )  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 400
    assert "DOCKER_BUILDKIT=0" in json.loads(refused.value.read())["message"]


def test_docker_py_builds_from_a_fileobj_and_reports_a_failure(api: ApiServer) -> None:
    client = api.client()
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        dockerfile = b"FROM busybox\nARG GREETING=hi\nRUN echo $GREETING > /greeting\nCMD [\"cat\", \"/greeting\"]\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    data.seek(0)
    image, logs = client.images.build(fileobj=data, custom_context=True, tag="py-built", buildargs={"GREETING": "ahoy"})
    try:
        assert any("Successfully built" in line.get("stream", "") for line in logs)
        assert client.containers.run("py-built", remove=True) == b"ahoy\n"
    finally:
        client.images.remove(image.id, force=True)

    failing = io.BytesIO()
    with tarfile.open(fileobj=failing, mode="w") as tar:
        dockerfile = b"FROM busybox\nCOPY missing.txt /\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    failing.seek(0)
    with pytest.raises(docker.errors.BuildError, match="missing.txt"):
        client.images.build(fileobj=failing, custom_context=True, tag="py-broken")
