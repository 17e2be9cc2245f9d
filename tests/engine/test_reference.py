"""References parse and normalise exactly as Docker's distribution/reference does."""

from __future__ import annotations

import pytest

from containers.engine.errors import InvalidReference
from containers.engine.images.reference import Reference, id_prefix, parse_any_reference, parse_reference

HEX = "0123456789abcdef" * 4
DIGEST = "sha256:" + HEX


@pytest.mark.parametrize(
    ("text", "full", "familiar"),
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest", "busybox:latest"),
        ("foo/bar", "docker.io/foo/bar:latest", "foo/bar:latest"),
        ("docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"),
        ("localhost/foo", "localhost/foo:latest", "localhost/foo:latest"),
        ("localhost:5000/foo", "localhost:5000/foo:latest", "localhost:5000/foo:latest"),
        ("localhost:5000/foo/bar:v1", "localhost:5000/foo/bar:v1", "localhost:5000/foo/bar:v1"),
        ("registry.example.com/team/app:2.0", "registry.example.com/team/app:2.0", "registry.example.com/team/app:2.0"),
        ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest", "127.0.0.1:5000/x:latest"),
        ("[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x:latest"),
        ("Registry/foo", "Registry/foo:latest", "Registry/foo:latest"),
        ("foo/ab.c-d_e__f--g", "docker.io/foo/ab.c-d_e__f--g:latest", "foo/ab.c-d_e__f--g:latest"),
        (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}", f"busybox@{DIGEST}"),
        (f"busybox:1.36@{DIGEST}", f"docker.io/library/busybox:1.36@{DIGEST}", f"busybox:1.36@{DIGEST}"),
        ("foo:Tag_1.x-y", "docker.io/library/foo:Tag_1.x-y", "foo:Tag_1.x-y"),
        ("sha256:abc", "docker.io/library/sha256:abc", "sha256:abc"),
    ],
)
def test_it_normalises_like_docker(text: str, full: str, familiar: str) -> None:
    ref = parse_reference(text)

    assert str(ref) == full
    assert ref.familiar() == familiar


def test_it_splits_the_parts() -> None:
    ref = parse_reference(f"localhost:5000/team/app:v2@{DIGEST}")

    assert ref == Reference("localhost:5000", "team/app", "v2", DIGEST)
    assert ref.name == "localhost:5000/team/app"
    assert ref.familiar_name == "localhost:5000/team/app"
    assert parse_reference("busybox").name == "docker.io/library/busybox"
    assert parse_reference("busybox").familiar_name == "busybox"


def test_a_name_without_tag_stays_bare_when_asked() -> None:
    assert parse_reference("busybox", default_tag=False) == Reference("docker.io", "library/busybox")
    assert parse_reference(f"busybox@{DIGEST}").tag is None


def test_with_tag_replaces_tag_and_digest() -> None:
    ref = parse_reference(f"busybox@{DIGEST}").with_tag("1.0")

    assert str(ref) == "docker.io/library/busybox:1.0"
    with pytest.raises(InvalidReference, match="invalid tag format"):
        ref.with_tag("-bad")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must have at least one component"),
        ("Busybox", r"repository name \(library/Busybox\) must be lowercase"),
        ("foo/Bar", r"repository name \(foo/Bar\) must be lowercase"),
        ("localhost:5000/Foo", r"repository name \(Foo\) must be lowercase"),
        (HEX, "cannot specify 64-byte hexadecimal strings"),
        ("busybox:", "invalid reference format"),
        ("busybox:-tag", "invalid reference format"),
        ("busybox:" + "t" * 129, "invalid reference format"),
        ("/busybox", "invalid reference format"),
        ("busybox/", "invalid reference format"),
        ("foo//bar", "invalid reference format"),
        ("foo_/bar", "invalid reference format"),
        ("foo..bar", "invalid reference format"),
        ("a_b.c/foo", "invalid reference format"),
        ("busybox@sha256:abc", "invalid reference format"),
        ("busybox@sha256:" + HEX.upper(), "invalid checksum digest"),
        ("busybox@md5:" + "a" * 32, "unsupported digest algorithm"),
        ("busybox@sha256:" + HEX + "00", "invalid checksum digest"),
        ("bus box", "invalid reference format"),
        ("busybox:latest:1", "invalid reference format"),
        ("a" * 256, "must not be more than 255 characters"),
    ],
)
def test_it_refuses_what_docker_refuses(text: str, message: str) -> None:
    with pytest.raises(InvalidReference, match=message):
        parse_reference(text)


def test_parse_any_reference_tells_ids_from_references() -> None:
    assert parse_any_reference(HEX) == DIGEST
    assert parse_any_reference(DIGEST) == DIGEST
    assert parse_any_reference("busybox") == parse_reference("busybox")
    assert parse_any_reference("abc123") == parse_reference("abc123")


def test_id_prefix_recognises_short_ids() -> None:
    assert id_prefix("a") == "a"
    assert id_prefix("0123456789ab") == "0123456789ab"
    assert id_prefix("sha256:0123") == "0123"
    assert id_prefix(HEX) == HEX
    assert id_prefix("busybox") is None
    assert id_prefix("ABC") is None
    assert id_prefix("sha256:") is None
    assert id_prefix(HEX + "0") is None
