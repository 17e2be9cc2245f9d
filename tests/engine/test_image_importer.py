"""`docker import`: a rootfs tarball becomes a one-layer image, configured by `--change` lines."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
from collections.abc import Callable
from pathlib import Path

import pytest

from containers.engine.errors import InvalidArgument
from containers.engine.images.config import ContainerConfig, Healthcheck
from containers.engine.images.importer import apply_changes, import_rootfs, parse_duration
from containers.engine.images.manifest import host_platform
from containers.engine.images.store import ImageStore
from tests.engine.imagetest import blobs, new_store
from tests.engine.suites.fstest import create_dir, create_file, digest, layer

PORTS = ("80/tcp", "8000/udp", "8001/udp", "8002/udp")
ROOTFS = layer(create_dir("/bin"), create_file("/bin/hello", b"#!/bin/sh\necho hi\n", 0o755))


@pytest.fixture
def store(state_root: Path) -> ImageStore:
    return new_store(state_root)


@pytest.mark.parametrize(
    "compress",
    [lambda d: d, lambda d: gzip.compress(d, mtime=0), bz2.compress, lzma.compress],
    ids=["plain", "gzip", "bzip2", "xz"],
)
def test_it_imports_a_rootfs_tarball_as_one_uncompressed_layer(store: ImageStore, compress: Callable) -> None:
    image = import_rootfs(store, io.BytesIO(compress(ROOTFS)), tags=["imported:1"])

    assert image.repo_tags == ("imported:1",)
    assert [(layer.digest, layer.diff_id) for layer in image.layers] == [(digest(ROOTFS), digest(ROOTFS))]
    assert image.size == len(ROOTFS)
    assert image.config.history[0].comment == "Imported from -"
    assert image.config.comment == "Imported from -"
    assert image.config.config == ContainerConfig(), "Docker's import starts from an empty config, no PATH"
    assert (image.config.os, image.config.architecture) == ("linux", host_platform().architecture)


def test_the_message_and_platform_are_recorded(store: ImageStore) -> None:
    image = import_rootfs(store, io.BytesIO(ROOTFS), message="nightly rootfs", platform="linux/arm64")

    assert image.config.history[0].comment == image.config.comment == "nightly rootfs"
    assert (image.config.architecture, image.config.variant) == ("arm64", "")
    assert json.loads(store.content.path(image.id).read_bytes())["comment"] == "nightly rootfs"


def test_changes_configure_the_image(store: ImageStore) -> None:
    image = import_rootfs(store, io.BytesIO(ROOTFS), changes=[
        'ENV PATH=/bin:/usr/bin APP="my app"',
        "CMD /bin/hello",
        'ENTRYPOINT ["/bin/sh", "-c"]',
        "EXPOSE 80 53/udp",
        "WORKDIR /srv",
        "USER nobody",
        'LABEL "team"="web" version=2',
        "VOLUME /data",
        "STOPSIGNAL SIGQUIT",
        "ONBUILD RUN echo built",
    ])

    c = image.config.config
    assert c.env == ("PATH=/bin:/usr/bin", "APP=my app")
    assert c.cmd == ("/bin/sh", "-c", "/bin/hello"), "CMD came first, so ENTRYPOINT keeps it"
    assert c.entrypoint == ("/bin/sh", "-c")
    assert c.exposed_ports == ("53/udp", "80/tcp"), "ports are a set, kept sorted as in the config JSON"
    assert (c.working_dir, c.user, c.stop_signal) == ("/srv", "nobody", "SIGQUIT")
    assert c.labels == {"team": "web", "version": "2"}
    assert c.volumes == ("/data",)
    assert c.on_build == ("RUN echo built",)


def test_an_invalid_change_stores_nothing(store: ImageStore) -> None:
    with pytest.raises(InvalidArgument, match="^run is not a valid change command$"):
        import_rootfs(store, io.BytesIO(ROOTFS), changes=["RUN rm -rf /"], tags=["x"])

    assert store.list() == []
    assert blobs(store) == set()


@pytest.mark.parametrize(
    "data",
    [b"definitely not a tar archive" * 100, b"", gzip.compress(b"not a tar either" * 100)],
    ids=["garbage", "empty", "gzip-garbage"],
)
def test_it_refuses_what_is_not_a_tar_archive(store: ImageStore, data: bytes) -> None:
    with pytest.raises(InvalidArgument, match="import: invalid tar archive"):
        import_rootfs(store, io.BytesIO(data))

    assert blobs(store) == set()
    assert list((store.content.root / "ingest").iterdir()) == []  # type: ignore[attr-defined]


def test_it_refuses_foreign_platforms(store: ImageStore) -> None:
    with pytest.raises(InvalidArgument, match="only linux images"):
        import_rootfs(store, io.BytesIO(ROOTFS), platform="windows/amd64")


def _apply(*changes: str, base: ContainerConfig | None = None) -> ContainerConfig:
    return apply_changes(base or ContainerConfig(), changes)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (["CMD echo hi"], ContainerConfig(cmd=("/bin/sh", "-c", "echo hi"))),
        (['CMD ["echo", "hi"]'], ContainerConfig(cmd=("echo", "hi"))),
        (["CMD [not json"], ContainerConfig(cmd=("/bin/sh", "-c", "[not json"))),
        (["ENTRYPOINT top -b"], ContainerConfig(entrypoint=("/bin/sh", "-c", "top -b"))),
        (["ENV A 1 2  3"], ContainerConfig(env=("A=1 2 3",))),
        (["ENV A=1", "ENV B=${A}x C=$A D=${NOPE:-def} E=${A:+alt} F='$A'"],
         ContainerConfig(env=("A=1", "B=1x", "C=1", "D=def", "E=alt", "F=$A"))),
        (['ENV A="say \\"hi\\"" B=a\\ b'], ContainerConfig(env=('A=say "hi"', "B=a b"))),
        (["ENV A=1", "ENV A=2"], ContainerConfig(env=("A=2",))),
        (["EXPOSE 8000-8002/udp 80/TCP"], ContainerConfig(exposed_ports=PORTS)),
        (["LABEL a b c"], ContainerConfig(labels={"a": "b c"})),
        (['VOLUME ["/b", "/a"]', "VOLUME /a /c"], ContainerConfig(volumes=("/a", "/b", "/c"))),
        (["WORKDIR /a", "WORKDIR b", "WORKDIR ../c"], ContainerConfig(working_dir="/a/c")),
        (["STOPSIGNAL 9"], ContainerConfig(stop_signal="9")),
        (["STOPSIGNAL RTMIN+3"], ContainerConfig(stop_signal="RTMIN+3")),
        (["stopsignal term"], ContainerConfig(stop_signal="term")),
        (["USER 1000:1000"], ContainerConfig(user="1000:1000")),
        (["HEALTHCHECK NONE"], ContainerConfig(healthcheck=Healthcheck(test=("NONE",)))),
        (["HEALTHCHECK --interval=5s --retries=3 CMD curl -f http://localhost/"],
         ContainerConfig(healthcheck=Healthcheck(("CMD-SHELL", "curl -f http://localhost/"), 5 * 10**9, retries=3))),
        (['HEALTHCHECK --timeout=1m30s --start-period=500ms CMD ["true"]'],
         ContainerConfig(healthcheck=Healthcheck(("CMD", "true"), timeout=90 * 10**9, start_period=5 * 10**8))),
        (["  ", "CMD x"], ContainerConfig(cmd=("/bin/sh", "-c", "x"))),
    ],
)
def test_changes_follow_dockerfile_rules(changes: list[str], expected: ContainerConfig) -> None:
    assert _apply(*changes) == expected


def test_entrypoint_resets_an_inherited_cmd() -> None:
    base = ContainerConfig(cmd=("sh",))

    assert _apply("ENTRYPOINT /bin/app", base=base).cmd is None
    assert _apply('CMD ["--help"]', "ENTRYPOINT /bin/app", base=base).cmd == ("--help",)
    assert _apply("ENTRYPOINT /bin/app", 'CMD ["--help"]', base=base).cmd == ("--help",)


def test_the_shell_form_uses_the_images_shell() -> None:
    base = ContainerConfig(shell=("/bin/bash", "-o", "pipefail", "-c"))

    assert _apply("CMD a | b", base=base).cmd == ("/bin/bash", "-o", "pipefail", "-c", "a | b")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("FROM busybox", "from is not a valid change command"),
        ("COPY a b", "copy is not a valid change command"),
        ("ENV", "env requires at least one argument"),
        ("ENV A", "env must have two arguments"),
        ("ENV =x", "expected key=value"),
        ('ENV A="unterminated', "looking for matching \""),
        ("EXPOSE 99999", "invalid port"),
        ("EXPOSE 80/http", "invalid port"),
        ("EXPOSE 90-80", "invalid port"),
        ("STOPSIGNAL SIGNOPE", "invalid signal"),
        ("STOPSIGNAL 0", "invalid signal"),
        ("USER", "exactly one argument"),
        ("VOLUME", "can not be an empty string"),
        ('VOLUME [""]', "can not be an empty string"),
        ("ONBUILD ONBUILD RUN x", "Chaining ONBUILD"),
        ("ONBUILD FROM x", "FROM isn't allowed as an ONBUILD trigger"),
        ("ONBUILD", "onbuild requires at least one argument"),
        ("HEALTHCHECK --bogus=1 CMD x", "unknown flag"),
        ("HEALTHCHECK --interval=1us CMD x", "cannot be less than 1ms"),
        ("HEALTHCHECK --retries=x CMD x", "retries must be a non-negative integer"),
        ("HEALTHCHECK --interval=5 CMD x", "invalid duration"),
        ("HEALTHCHECK true", "want HEALTHCHECK"),
        ("WORKDIR a b", "exactly one argument"),
    ],
)
def test_it_refuses_what_docker_refuses(change: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        _apply(change)


def test_go_durations() -> None:
    assert parse_duration("0") == 0
    assert parse_duration("1h2m3s") == 3723 * 10**9
    assert parse_duration("1.5s") == 1_500_000_000
    assert parse_duration("250us") == 250_000
    with pytest.raises(InvalidArgument):
        parse_duration("1d")
