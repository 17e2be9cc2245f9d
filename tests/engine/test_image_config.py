"""The image config model: tolerant parsing, deterministic output, and IDs computed as Docker does."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from containers.engine.errors import InvalidArgument
from containers.engine.images.config import (
    ContainerConfig,
    Healthcheck,
    History,
    ImageConfig,
    format_time,
    image_id,
    parse_time,
)

# A config as Docker's classic builder writes it: legacy keys, nulls, Go's key order.
DOCKER_CONFIG = (
    b'{"architecture":"amd64","config":{"Hostname":"","Domainname":"","User":"app","AttachStdin":false,'
    b'"ExposedPorts":{"80/tcp":{},"53/udp":{}},"Tty":false,"Env":["PATH=/usr/bin:/bin","A=1"],'
    b'"Cmd":["/bin/sh","-c","serve"],"Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":30000000000,'
    b'"Retries":3},"ArgsEscaped":true,"Image":"sha256:abc","Volumes":{"/data":{}},"WorkingDir":"/srv",'
    b'"Entrypoint":null,"OnBuild":null,"Labels":{"team":"web"},"StopSignal":"SIGQUIT","Shell":["/bin/bash","-c"]},'
    b'"container":"f00","container_config":{"Cmd":["/bin/sh"]},"created":"2024-05-01T12:30:45.123456789Z",'
    b'"docker_version":"25.0.3","history":[{"created":"2024-05-01T12:00:00Z","created_by":"/bin/sh -c #(nop) ADD x",'
    b'"comment":"buildkit"},{"created":"2024-05-01T12:30:45Z","created_by":"ENV A=1","empty_layer":true}],'
    b'"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:' + b"a" * 64 + b'"]},"variant":"","author":"me"}'
)


def test_it_parses_dockers_fields() -> None:
    cfg = ImageConfig.from_json(DOCKER_CONFIG)

    assert (cfg.architecture, cfg.os, cfg.author) == ("amd64", "linux", "me")
    assert cfg.created == "2024-05-01T12:30:45.123456789Z"
    assert cfg.diff_ids == ("sha256:" + "a" * 64,)
    c = cfg.config
    assert c.user == "app"
    assert c.exposed_ports == ("53/udp", "80/tcp")
    assert c.env == ("PATH=/usr/bin:/bin", "A=1")
    assert c.cmd == ("/bin/sh", "-c", "serve")
    assert c.entrypoint is None
    assert c.volumes == ("/data",)
    assert (c.working_dir, c.stop_signal, c.args_escaped) == ("/srv", "SIGQUIT", True)
    assert c.labels == {"team": "web"}
    assert c.healthcheck == Healthcheck(test=("CMD-SHELL", "true"), interval=30_000_000_000, retries=3)
    assert c.shell == ("/bin/bash", "-c")
    assert c.on_build == ()
    assert cfg.history == (
        History("2024-05-01T12:00:00Z", "/bin/sh -c #(nop) ADD x", comment="buildkit"),
        History("2024-05-01T12:30:45Z", "ENV A=1", empty_layer=True),
    )


def test_it_keeps_unknown_keys() -> None:
    cfg = ImageConfig.from_json(DOCKER_CONFIG)

    assert cfg.extra == {"container": "f00", "container_config": {"Cmd": ["/bin/sh"]}, "docker_version": "25.0.3"}
    assert cfg.config.extra == {
        "Hostname": "", "Domainname": "", "AttachStdin": False, "Tty": False, "Image": "sha256:abc",
    }
    again = json.loads(cfg.to_json())
    assert again["docker_version"] == "25.0.3"
    assert again["config"]["Image"] == "sha256:abc"


def test_a_string_cmd_is_a_one_element_list_as_in_go() -> None:
    cfg = ImageConfig.from_json(b'{"config":{"Cmd":"sh","Entrypoint":[]}}')

    assert cfg.config.cmd == ("sh",)
    assert cfg.config.entrypoint == ()


def test_it_serialises_compact_sorted_and_without_empty_fields() -> None:
    cfg = ImageConfig(
        architecture="amd64",
        os="linux",
        created="2024-01-01T00:00:00Z",
        config=ContainerConfig(env=("PATH=/bin",), cmd=("sh",)),
        history=(History(created="2024-01-01T00:00:00Z", created_by="x"),),
        diff_ids=("sha256:" + "b" * 64,),
    )

    assert cfg.to_json() == (
        b'{"architecture":"amd64","config":{"Cmd":["sh"],"Env":["PATH=/bin"]},"created":"2024-01-01T00:00:00Z",'
        b'"history":[{"created":"2024-01-01T00:00:00Z","created_by":"x"}],"os":"linux",'
        b'"rootfs":{"diff_ids":["sha256:' + b"b" * 64 + b'"],"type":"layers"}}'
    )


def test_serialising_is_deterministic_and_round_trips() -> None:
    cfg = ImageConfig.from_json(DOCKER_CONFIG)

    first = cfg.to_json()
    assert ImageConfig.from_json(first).to_json() == first
    assert ImageConfig.from_json(first) == cfg


def test_the_image_id_is_the_digest_of_the_bytes_as_stored() -> None:
    pretty = json.dumps(json.loads(DOCKER_CONFIG), indent=2).encode()

    assert image_id(DOCKER_CONFIG) == "sha256:" + hashlib.sha256(DOCKER_CONFIG).hexdigest()
    assert image_id(pretty) != image_id(DOCKER_CONFIG), "whitespace is part of the ID: never re-serialise"
    assert ImageConfig.from_json(pretty) == ImageConfig.from_json(DOCKER_CONFIG)


def test_a_changed_config_gets_a_new_id() -> None:
    cfg = ImageConfig.from_json(DOCKER_CONFIG)

    changed = replace(cfg, config=replace(cfg.config, user="root"))
    assert image_id(changed.to_json()) != image_id(cfg.to_json())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "invalid JSON"),
        (b"[]", "not a JSON object"),
        (b'{"config":{"Env":"A=1","Cmd":[1]}}', "malformed"),
        (b'{"config":{"Labels":{"a":1}}}', "malformed"),
        (b'{"config":[]}', "malformed"),
        (b'{"rootfs":{"type":"other","diff_ids":[]}}', "rootfs type"),
        (b'{"history":["x"]}', "malformed"),
    ],
)
def test_it_refuses_malformed_configs(data: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        ImageConfig.from_json(data)


def test_times_follow_gos_rfc3339nano() -> None:
    when = datetime(2024, 5, 1, 12, 30, 45, 500000, tzinfo=UTC)

    assert format_time(when) == "2024-05-01T12:30:45.5Z"
    assert format_time(when.replace(microsecond=0)) == "2024-05-01T12:30:45Z"
    assert parse_time("2024-05-01T12:30:45.123456789Z") == when.replace(microsecond=123456)
    assert parse_time("2024-05-01T14:30:45+02:00") == when.replace(microsecond=0)
    assert parse_time("yesterday") is None
    assert parse_time(None) is None
    assert ImageConfig.from_json(DOCKER_CONFIG).created_at == datetime(2024, 5, 1, 12, 30, 45, 123456, tzinfo=UTC)
