"""RUN steps and what they see: live output, build args, mounts, the network, and ADD of a URL."""

from __future__ import annotations

import hashlib
import http.server
import os
import secrets
import stat
import tarfile
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate

import pytest

from containers.engine.build.builder import Builder, BuildOptions, BuildStepError
from containers.engine.build.executor import Executor
from containers.engine.engine import Engine
from tests.engine.build.buildtest import (
    build,
    builder,
    cached_steps,
    config_json,
    engine,
    run_image,
    stat_in,
    tar_context,
)

__all__ = ["builder", "engine"]

pytestmark = pytest.mark.requires("root", "overlayfs", "busybox")


def test_it_streams_a_steps_output_while_it_runs(builder: Builder) -> None:
    arrivals: list[tuple[float, str]] = []
    dockerfile = f"FROM busybox\nRUN echo first; echo err >&2; sleep 1; printf 'second {secrets.token_hex(2)}'\n"
    builder.build(tar_context({"Dockerfile": dockerfile}), BuildOptions(),
                  lambda piece: arrivals.append((time.monotonic(), piece)))  # fmt: skip
    pieces = [piece for _, piece in arrivals]
    first = pieces.index("first\n")
    last = next(i for i, piece in enumerate(pieces) if piece.startswith("second "))
    assert "err\n" in pieces, "stderr is part of the output"
    assert pieces[last].endswith("\n"), "a last line without newline is given one"
    assert arrivals[last][0] - arrivals[first][0] > 0.5, "output must reach the caller as it is written"


def test_it_shows_build_args_to_run_only(builder: Builder, engine: Engine) -> None:
    dockerfile = "FROM busybox\nARG TOKEN\nRUN echo $TOKEN $HTTP_PROXY > /seen\n"
    result, output = build(builder, tar_context({"Dockerfile": dockerfile}),
                           build_args={"TOKEN": "t0k3n", "HTTP_PROXY": "http://127.0.0.1:3128"})  # fmt: skip
    code, seen = run_image(engine, result.image_id, ["cat", "/seen"])
    assert seen == "t0k3n http://127.0.0.1:3128\n"
    env = config_json(engine, result.image_id)["Env"]
    assert not [item for item in env if item.startswith(("TOKEN=", "HTTP_PROXY="))], "build args stay out of the image"
    history = engine.images.get(result.image_id).config.history[-1].created_by
    assert history.startswith("|1 TOKEN=t0k3n /bin/sh -c"), "an undeclared proxy arg stays out of the history"
    assert "not consumed" not in output, "proxy args need no ARG"


def test_it_keeps_a_cache_mount_between_builds_and_out_of_the_image(builder: Builder, engine: Engine) -> None:
    cache_id = secrets.token_hex(4)
    dockerfile = (
        f"FROM busybox\nRUN --mount=type=cache,id={cache_id},target=/var/cache/app "
        "echo run >> /var/cache/app/runs && wc -l < /var/cache/app/runs > /runs\n"
    )
    build(builder, tar_context({"Dockerfile": dockerfile}))
    result, _ = build(builder, tar_context({"Dockerfile": dockerfile}), no_cache=True)
    assert run_image(engine, result.image_id, ["cat", "/runs"])[1].strip() == "2"
    with Executor(engine).view(engine.images.get(result.image_id)) as root:
        assert stat_in(root, "/var/cache") is None, "the mount point made for the cache is not part of the layer"


def test_it_leaves_the_runtimes_mount_points_out_of_a_layer_even_behind_symlinks(
    builder: Builder, engine: Engine
) -> None:
    links = tar_context(
        {"run/.keep": ""}, symlinks={"etc/resolv.conf": "../run/resolv.conf", "etc/hostname": "/run/hn"}
    )
    dockerfile = "FROM busybox\nADD links.tar /\nRUN echo x > /x && cat /etc/hostname > /dev/null\n"
    result, _ = build(builder, tar_context({"Dockerfile": dockerfile, "links.tar": links.getvalue()}))
    image = engine.images.get(result.image_id)
    with engine.images.open_layer(image.layers[-1]) as stream, tarfile.open(fileobj=stream, mode="r|") as layer:
        assert [member.name for member in layer] == ["x"], "the RUN layer holds what the command wrote, nothing more"


def test_it_binds_the_context_or_a_stage_read_only(builder: Builder, engine: Engine) -> None:
    dockerfile = """FROM busybox AS tools
RUN mkdir /out && echo tool > /out/tool.txt
FROM busybox
RUN --mount=type=bind,target=/ctx cat /ctx/data.txt > /from-context && ! touch /ctx/new 2>/dev/null
RUN --mount=type=bind,from=tools,source=/out,target=/in cat /in/tool.txt > /from-stage
RUN --mount=type=bind,source=data.txt,target=/data.txt,rw echo changed > /data.txt && cat /data.txt > /rw
"""
    files = {"Dockerfile": dockerfile, "data.txt": "data\n"}
    result, _ = build(builder, tar_context(files))
    code, text = run_image(engine, result.image_id, ["cat", "/from-context", "/from-stage", "/rw"])
    assert (code, text) == (0, "data\ntool\nchanged\n")
    _, output = build(builder, tar_context({**files, "data.txt": "other\n"}))
    assert cached_steps(output) == ["RUN mkdir /out && echo tool > /out/tool.txt"], (
        "a bind mount's content is part of the step's cache key"
    )


def test_it_runs_without_network_when_asked(builder: Builder, engine: Engine) -> None:
    dockerfile = "FROM busybox\nRUN --network=none ls /sys/class/net > /interfaces\n"
    result, _ = build(builder, tar_context({"Dockerfile": dockerfile}))
    assert run_image(engine, result.image_id, ["cat", "/interfaces"])[1] == "lo\n"
    with pytest.raises(BuildStepError, match="network mode host is not allowed"):
        build(builder, tar_context({"Dockerfile": "FROM busybox\nRUN --network=host true\n"}))


@pytest.fixture
def web_server() -> Iterator[str]:
    """Serve /files/notes.txt (with Last-Modified) and /download/ (named by Content-Disposition) on 127.0.0.1."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"downloaded notes\n"
            self.send_response(200 if self.path in ("/files/notes.txt", "/download/") else 404)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Last-Modified", formatdate(1_600_000_000, usegmt=True))
            if self.path == "/download/":
                self.send_header("Content-Disposition", 'attachment; filename="named.txt"')
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_it_adds_a_url_as_docker_does(builder: Builder, engine: Engine, web_server: str) -> None:
    dockerfile = f"FROM busybox\nADD {web_server}/files/notes.txt /downloads/\nADD {web_server}/download/ /downloads/\n"
    result, _ = build(builder, tar_context({"Dockerfile": dockerfile}))
    with Executor(engine).view(engine.images.get(result.image_id)) as root:
        for name in ("notes.txt", "named.txt"):
            st = os.lstat(root / "downloads" / name)
            assert stat.S_IMODE(st.st_mode) == 0o600, "Docker writes downloads with mode 0600"
            assert int(st.st_mtime) == 1_600_000_000, "the mtime is the Last-Modified time"
            assert (root / "downloads" / name).read_text() == "downloaded notes\n"
    _, output = build(builder, tar_context({"Dockerfile": dockerfile}))
    assert len(cached_steps(output)) == 2, "the same download is the same source"
    with pytest.raises(BuildStepError, match="ADD failed: failed to GET .*/missing with status 404"):
        build(builder, tar_context({"Dockerfile": f"FROM busybox\nADD {web_server}/missing /\n"}))
    digest = hashlib.sha256(b"downloaded notes\n").hexdigest()
    checked = f"FROM busybox\nADD --checksum=sha256:{digest} {web_server}/files/notes.txt /\n"
    build(builder, tar_context({"Dockerfile": checked}))
    with pytest.raises(BuildStepError, match="checksum of .* is sha256:"):
        build(builder, tar_context({"Dockerfile": checked.replace(digest, "0" * 64)}))
    with pytest.raises(BuildStepError, match="COPY failed: source can't be a URL for COPY"):
        build(builder, tar_context({"Dockerfile": f"FROM busybox\nCOPY {web_server}/files/notes.txt /\n"}))


def test_it_reads_compressed_contexts_and_prints_only_the_id_when_quiet(builder: Builder, engine: Engine) -> None:
    files = {"Dockerfile": "FROM busybox\nCOPY hello.txt /\n", "hello.txt": "hello\n"}
    first, _ = build(builder, tar_context(files, compression="gzip"))
    second, output = build(builder, tar_context(files, compression="xz"), quiet=True, tags=("quiet:1", "quiet:2"))
    assert second.image_id == first.image_id, "the same files, however compressed, are the same context"
    assert output == second.image_id + "\n"
    assert set(engine.images.get("quiet:1").repo_tags) == {"quiet:1", "quiet:2"}


def test_it_builds_from_scratch(builder: Builder, engine: Engine) -> None:
    busybox = engine.images.get("busybox")
    files = {
        "Dockerfile": 'FROM scratch\nCOPY --from=busybox /bin/busybox /bin/sh\nCMD ["/bin/sh", "-c", "echo scratch"]\n'
    }
    result, output = build(builder, tar_context(files))
    image = engine.images.get(result.image_id)
    assert len(image.layers) == 1 and image.id != busybox.id
    assert output.startswith("Step 1/3 : FROM scratch\n ---> \n")
    assert run_image(engine, result.image_id) == (0, "scratch\n")
    empty, _ = build(builder, tar_context({"Dockerfile": "FROM scratch\nLABEL empty=yes\n"}))
    assert engine.images.get(empty.image_id).layers == (), "metadata alone makes an image without layers"
