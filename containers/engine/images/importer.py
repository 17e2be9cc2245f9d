"""`docker import`: an image of one layer from a root filesystem tarball, with `--change` instructions.

The tarball (plain, gzip, bzip2 or xz; `docker export` writes one) becomes the layer as is,
uncompressed. The config starts empty, as Docker's does (no `PATH` unless a change sets it),
and `changes` are Dockerfile lines applied to it. Docker allows only the instructions that
change configuration, not the filesystem: CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL,
ONBUILD, STOPSIGNAL, USER, VOLUME and WORKDIR (moby's `validCommitCommands`).
"""

from __future__ import annotations

import json
import lzma
import posixpath
import re
import signal
import tarfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import BinaryIO

from containers.engine.build.expand import ShellLex
from containers.engine.content.store import ContentStore, Writer
from containers.engine.errors import InvalidArgument
from containers.engine.images.config import ContainerConfig, Healthcheck, History, ImageConfig, format_time
from containers.engine.images.manifest import MEDIA_TYPE_OCI_LAYER, Descriptor, Platform, decompress, host_platform
from containers.engine.images.reference import Reference
from containers.engine.images.store import Image, ImageStore

DEFAULT_SHELL = ("/bin/sh", "-c")
DEFAULT_MESSAGE = "Imported from -"


def import_rootfs(
    store: ImageStore,
    stream: BinaryIO,
    tags: Iterable[str | Reference] = (),
    changes: Sequence[str] = (),
    message: str = "",
    platform: str | None = None,
) -> Image:
    """Create an image from a rootfs tarball; `message` is the commit message (Docker's `-m`).

    Changes and platform are checked before the tarball is read. Raise InvalidArgument for a
    bad change, platform or tarball; nothing is stored then.
    """
    wanted = Platform.parse(platform) if platform else host_platform()
    if wanted.os != "linux":
        raise InvalidArgument(f"platform {wanted}: only linux images are supported")
    container = apply_changes(ContainerConfig(), changes)
    digest, size = _ingest_tar(store.content, stream)
    now = format_time(datetime.now(UTC))
    comment = message or DEFAULT_MESSAGE
    config = ImageConfig(
        architecture=wanted.architecture,
        os=wanted.os,
        variant=wanted.variant,
        created=now,
        comment=comment,
        config=container,
        history=(History(created=now, comment=comment),),
        diff_ids=(digest,),
    )
    return store.create(config.to_json(), [Descriptor(MEDIA_TYPE_OCI_LAYER, digest, size)], tags)


class _Tee:
    """A reader that copies what it reads into a content writer."""

    def __init__(self, stream: BinaryIO, writer: Writer) -> None:
        self._stream = stream
        self._writer = writer

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._writer.write(data)
        return data


def _ingest_tar(content: ContentStore, stream: BinaryIO) -> tuple[str, int]:
    """Decompress `stream` into a new blob, checking on the way that it is a tar archive."""
    with content.writer("import") as writer:
        tee = _Tee(decompress(stream), writer)
        try:
            with tarfile.open(fileobj=tee, mode="r|") as tar:  # type: ignore[call-overload]
                for _ in tar:
                    pass
            while tee.read(1 << 20):
                pass
        except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as err:
            if isinstance(err, OSError) and err.errno is not None:
                raise
            raise InvalidArgument(f"import: invalid tar archive: {err}") from err
        return writer.commit(), writer.offset


# Changes


def apply_changes(config: ContainerConfig, changes: Sequence[str]) -> ContainerConfig:
    """Apply Dockerfile lines such as `CMD ["sh"]` or `ENV A=1` to a container config, in order.

    As in a build, an ENTRYPOINT resets CMD unless a CMD came earlier in the same changes.
    Raise InvalidArgument naming the instruction for anything Docker refuses.
    """
    cmd_set = False
    for change in changes:
        words = change.strip().split(None, 1)
        if not words:
            continue
        instruction, rest = words[0].lower(), (words[1].strip() if len(words) > 1 else "")
        handler = _HANDLERS.get(instruction)
        if handler is None:
            raise InvalidArgument(f"{instruction} is not a valid change command")
        config = handler(config, rest)
        if instruction == "cmd":
            cmd_set = True
        elif instruction == "entrypoint" and not cmd_set:
            config = replace(config, cmd=None)
    return config


def _json_form(rest: str) -> list[str] | None:
    """Return the arguments of an exec (JSON) form, or None for a shell form, as Docker decides."""
    if not rest.startswith("["):
        return None
    try:
        args = json.loads(rest)
    except ValueError:
        return None
    if isinstance(args, list) and all(isinstance(a, str) for a in args):
        return args
    return None


def _command(config: ContainerConfig, rest: str) -> tuple[str, ...]:
    args = _json_form(rest)
    if args is not None:
        return tuple(args)
    return (*(config.shell or DEFAULT_SHELL), rest)


def _cmd(config: ContainerConfig, rest: str) -> ContainerConfig:
    """`CMD ["executable", "param"]` or `CMD command param`."""
    return replace(config, cmd=_command(config, rest))


def _entrypoint(config: ContainerConfig, rest: str) -> ContainerConfig:
    """`ENTRYPOINT ["executable", "param"]` or `ENTRYPOINT command param`."""
    return replace(config, entrypoint=_command(config, rest))


def _env_map(config: ContainerConfig) -> dict[str, str]:
    return dict(item.split("=", 1) if "=" in item else (item, "") for item in config.env)


def _pairs(instruction: str, rest: str, env: dict[str, str]) -> list[tuple[str, str]]:
    """Parse `k=v k2="v 2"`, or the legacy `k some value`, expanding variables from `env`."""
    words = _words(rest, env)
    if not words:
        raise InvalidArgument(f"{instruction} requires at least one argument")
    if "=" not in words[0]:
        if len(words) < 2:
            raise InvalidArgument(f"{instruction} must have two arguments")
        return [(words[0], " ".join(words[1:]))]
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"{instruction}: {word!r}: expected key=value")
        pairs.append((key, value))
    return pairs


def _env(config: ContainerConfig, rest: str) -> ContainerConfig:
    """`ENV <key>=<value> ...`."""
    env = _env_map(config)
    for key, value in _pairs("env", rest, env):
        env[key] = value
    return replace(config, env=tuple(f"{k}={v}" for k, v in env.items()))


def _label(config: ContainerConfig, rest: str) -> ContainerConfig:
    """`LABEL <key>=<value> ...`."""
    return replace(config, labels={**config.labels, **dict(_pairs("label", rest, _env_map(config)))})


_PORT = re.compile(r"(\d+)(?:-(\d+))?(?:/(tcp|udp|sctp))?")


def _expose(config: ContainerConfig, rest: str) -> ContainerConfig:
    """`EXPOSE <port>[/<protocol>] ...`, ranges like `8000-8010/udp` included."""
    ports = list(config.exposed_ports)
    for spec in _words(rest, _env_map(config)):
        match = _PORT.fullmatch(spec.lower())
        first, last = (int(match[1]), int(match[2] or match[1])) if match else (0, 0)
        if not match or not 0 < first <= last <= 65535:
            raise InvalidArgument(f"expose: invalid port {spec!r}")
        ports.extend(f"{port}/{match[3] or 'tcp'}" for port in range(first, last + 1))
    return replace(config, exposed_ports=tuple(sorted(set(ports))))


def _onbuild(config: ContainerConfig, rest: str) -> ContainerConfig:
    """`ONBUILD <INSTRUCTION>`: a trigger kept as written, run by builds FROM this image."""
    trigger = rest.split(None, 1)[0].upper() if rest else ""
    if not trigger:
        raise InvalidArgument("onbuild requires at least one argument")
    if trigger == "ONBUILD":
        raise InvalidArgument("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("FROM", "MAINTAINER"):
        raise InvalidArgument(f"{trigger} isn't allowed as an ONBUILD trigger")
    return replace(config, on_build=(*config.on_build, rest))


def _stopsignal(config: ContainerConfig, rest: str) -> ContainerConfig:
    """`STOPSIGNAL <signal>`: a name (`SIGTERM`, `TERM`, `RTMIN+3`) or a number."""
    words = _words(rest, _env_map(config))
    if len(words) != 1 or not _valid_signal(words[0]):
        raise InvalidArgument(f"stopsignal: invalid signal: {rest}")
    return replace(config, stop_signal=words[0])


def _valid_signal(text: str) -> bool:
    if text.isdigit():
        return int(text) > 0
    name = text.upper().removeprefix("SIG")
    names = {s.name.removeprefix("SIG") for s in signal.Signals}
    return name in names or re.fullmatch(r"RTMIN(\+\d+)?|RTMAX(-\d+)?", name) is not None


def _user(config: ContainerConfig, rest: str) -> ContainerConfig:
    """`USER <user>[:<group>]`."""
    words = _words(rest, _env_map(config))
    if len(words) != 1:
        raise InvalidArgument("user requires exactly one argument")
    return replace(config, user=words[0])


def _volume(config: ContainerConfig, rest: str) -> ContainerConfig:
    """`VOLUME ["/data"]` or `VOLUME /var/log /var/db`."""
    paths = _json_form(rest)
    if paths is None:
        paths = _words(rest, _env_map(config))
    if not paths or any(not p.strip() for p in paths):
        raise InvalidArgument("VOLUME specified can not be an empty string")
    return replace(config, volumes=tuple(sorted({*config.volumes, *paths})))


def _workdir(config: ContainerConfig, rest: str) -> ContainerConfig:
    """`WORKDIR /path`; a relative path is joined to the current working directory."""
    words = _words(rest, _env_map(config))
    if len(words) != 1:
        raise InvalidArgument("workdir requires exactly one argument")
    return replace(config, working_dir=posixpath.normpath(posixpath.join("/", config.working_dir, words[0])))


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_NANOSECONDS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def parse_duration(text: str) -> int:
    """Parse a Go duration (`30s`, `1m30s`, `500ms`) into nanoseconds."""
    if text == "0":
        return 0
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise InvalidArgument(f"time: invalid duration {text!r}")
    return round(sum(float(n) * _NANOSECONDS[u] for n, u in parts))


_HEALTH_FLAGS = {"interval": "interval", "timeout": "timeout", "start-period": "start_period",
                 "start-interval": "start_interval", "retries": "retries"}


def _healthcheck(config: ContainerConfig, rest: str) -> ContainerConfig:
    """`HEALTHCHECK [--interval=D --timeout=D --start-period=D --start-interval=D --retries=N] CMD ...` or `NONE`."""
    if rest.upper() == "NONE":
        return replace(config, healthcheck=Healthcheck(test=("NONE",)))
    options: dict[str, int] = {}
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        name, sep, value = flag[2:].partition("=")
        if name not in _HEALTH_FLAGS or not sep:
            raise InvalidArgument(f"healthcheck: unknown flag: {flag}")
        options[_HEALTH_FLAGS[name]] = _health_value(name, value)
        rest = rest.lstrip()
    kind, _, command = rest.partition(" ")
    if kind.upper() != "CMD" or not command.strip():
        raise InvalidArgument("healthcheck: want HEALTHCHECK [options] CMD command, or HEALTHCHECK NONE")
    args = _json_form(command.strip())
    test = ("CMD", *args) if args is not None else ("CMD-SHELL", command.strip())
    return replace(config, healthcheck=Healthcheck(test=test, **options))


def _health_value(name: str, value: str) -> int:
    if name == "retries":
        if not value.isdigit():
            raise InvalidArgument(f"healthcheck: --retries must be a non-negative integer, got {value!r}")
        return int(value)
    duration = parse_duration(value)
    if 0 < duration < 1_000_000:
        raise InvalidArgument(f"healthcheck: --{name} cannot be less than 1ms")
    return duration


_HANDLERS: dict[str, Callable[[ContainerConfig, str], ContainerConfig]] = {
    "cmd": _cmd,
    "entrypoint": _entrypoint,
    "env": _env,
    "expose": _expose,
    "healthcheck": _healthcheck,
    "label": _label,
    "onbuild": _onbuild,
    "stopsignal": _stopsignal,
    "user": _user,
    "volume": _volume,
    "workdir": _workdir,
}


# Words


def _words(text: str, env: dict[str, str]) -> list[str]:
    """Split like a Dockerfile: whitespace separates, quotes group, `\\` escapes, variables expand."""
    return ShellLex().process_words(text, env)
