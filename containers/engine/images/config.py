"""The image configuration: what Docker and OCI call the image config blob.

An image ID is `sha256:` + the sha256 of the config blob **exactly as stored**, so a config that
was loaded, pulled or read from disk is never serialised again: the store keeps its bytes and
`ImageConfig` is only a parsed view of them. `ImageConfig.to_json()` is for new images (import,
build, commit); it writes compact, key-sorted JSON like Go's encoder, leaving out empty fields
as the OCI config does, so the same config always gives the same ID.

Parsing is tolerant: keys this model does not know are kept in `extra` (top level and the
`config` section) and written back by `to_json()`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from containers.engine.content.store import digest_of
from containers.engine.errors import InvalidArgument

Json = dict[str, Any]


@dataclass(frozen=True)
class Healthcheck:
    """Docker's HEALTHCHECK: `test` is `["NONE"]`, `["CMD", arg...]` or `["CMD-SHELL", cmd]`; times in ns."""

    test: tuple[str, ...] = ()
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@dataclass(frozen=True)
class ContainerConfig:
    """The `config` section: defaults for containers run from the image (Docker's field names in JSON)."""

    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    volumes: tuple[str, ...] = ()
    working_dir: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    args_escaped: bool = False
    healthcheck: Healthcheck | None = None
    on_build: tuple[str, ...] = ()
    shell: tuple[str, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class History:
    """One `history` entry; `empty_layer` entries have no layer in `rootfs.diff_ids`."""

    created: str | None = None
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False


@dataclass(frozen=True)
class ImageConfig:
    """A parsed image config. `created` is kept as the RFC 3339 text found in the blob."""

    architecture: str = ""
    os: str = ""
    variant: str = ""
    created: str | None = None
    author: str = ""
    comment: str = ""
    config: ContainerConfig = field(default_factory=ContainerConfig)
    history: tuple[History, ...] = ()
    diff_ids: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: bytes) -> ImageConfig:
        """Parse a config blob; raise InvalidArgument if it is not a JSON object of the right shape."""
        try:
            doc = json.loads(data)
        except ValueError as err:
            raise InvalidArgument(f"image config: invalid JSON: {err}") from err
        if not isinstance(doc, dict):
            raise InvalidArgument("image config: not a JSON object")
        try:
            return _parse_image(doc)
        except (TypeError, ValueError, AttributeError) as err:
            raise InvalidArgument(f"image config: malformed: {err}") from err

    def to_json(self) -> bytes:
        """Serialise deterministically: compact, sorted keys, empty fields left out."""
        doc: Json = dict(self.extra)
        _put(doc, "architecture", self.architecture)
        _put(doc, "os", self.os)
        _put(doc, "variant", self.variant)
        _put(doc, "created", self.created)
        _put(doc, "author", self.author)
        _put(doc, "comment", self.comment)
        doc["config"] = _dump_container(self.config)
        _put(doc, "history", [_dump_history(h) for h in self.history])
        doc["rootfs"] = {"type": "layers", "diff_ids": list(self.diff_ids)}
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    @property
    def created_at(self) -> datetime | None:
        """Return `created` as an aware datetime, or None when absent or unparsable."""
        return parse_time(self.created)


def image_id(config_bytes: bytes) -> str:
    """Return the image ID for a config blob: the sha256 of its bytes, as Docker computes it."""
    return digest_of(config_bytes)


def format_time(when: datetime) -> str:
    """Format like Go's RFC3339Nano in UTC: `2024-05-01T12:00:00.5Z` (trailing zeros dropped)."""
    text = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{when.microsecond:06d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")


def parse_time(text: str | None) -> datetime | None:
    """Parse an RFC 3339 time with up to nanosecond precision; None if absent or malformed."""
    match = _TIME.fullmatch(text or "")
    if match is None:
        return None
    fraction = (match[2] or "")[:6].ljust(6, "0")
    zone = "+00:00" if match[3] == "Z" else match[3]
    try:
        return datetime.fromisoformat(f"{match[1]}.{fraction}{zone}")
    except ValueError:
        return None


def _strings(value: Any) -> tuple[str, ...]:
    """Read a Go `StrSlice`: a list of strings, one string, or null."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"expected a list of strings, got {value!r}")
    return tuple(value)


def _optional_strings(value: Any) -> tuple[str, ...] | None:
    return None if value is None else _strings(value)


def _keys(value: Any) -> tuple[str, ...]:
    """Read a Go `map[string]struct{}` such as ExposedPorts or Volumes: a set, kept sorted."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {value!r}")
    return tuple(sorted(value))


def _labels(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise TypeError(f"expected an object of strings, got {value!r}")
    return dict(value)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _healthcheck(value: Any) -> Healthcheck | None:
    if value is None:
        return None
    return Healthcheck(
        test=_strings(value.get("Test")),
        interval=int(value.get("Interval") or 0),
        timeout=int(value.get("Timeout") or 0),
        start_period=int(value.get("StartPeriod") or 0),
        start_interval=int(value.get("StartInterval") or 0),
        retries=int(value.get("Retries") or 0),
    )


_CONTAINER_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "User": ("user", _text),
    "ExposedPorts": ("exposed_ports", _keys),
    "Env": ("env", _strings),
    "Entrypoint": ("entrypoint", _optional_strings),
    "Cmd": ("cmd", _optional_strings),
    "Volumes": ("volumes", _keys),
    "WorkingDir": ("working_dir", _text),
    "Labels": ("labels", _labels),
    "StopSignal": ("stop_signal", _text),
    "ArgsEscaped": ("args_escaped", bool),
    "Healthcheck": ("healthcheck", _healthcheck),
    "OnBuild": ("on_build", _strings),
    "Shell": ("shell", _optional_strings),
}


def _parse_container(doc: Any) -> ContainerConfig:
    if doc is None:
        return ContainerConfig()
    if not isinstance(doc, dict):
        raise TypeError(f"config: expected an object, got {doc!r}")
    known = {attr: parse(doc[key]) for key, (attr, parse) in _CONTAINER_FIELDS.items() if key in doc}
    extra = {k: v for k, v in doc.items() if k not in _CONTAINER_FIELDS}
    return ContainerConfig(**known, extra=extra)


def _parse_history(doc: Any) -> History:
    return History(
        created=_text(doc.get("created")) or None,
        created_by=_text(doc.get("created_by")),
        author=_text(doc.get("author")),
        comment=_text(doc.get("comment")),
        empty_layer=bool(doc.get("empty_layer")),
    )


_IMAGE_KEYS = {"architecture", "os", "variant", "created", "author", "comment", "config", "history", "rootfs"}


def _parse_image(doc: Json) -> ImageConfig:
    rootfs = doc.get("rootfs") or {}
    if rootfs and rootfs.get("type") != "layers":
        raise ValueError(f"rootfs type {rootfs.get('type')!r}, want 'layers'")
    return ImageConfig(
        architecture=_text(doc.get("architecture")),
        os=_text(doc.get("os")),
        variant=_text(doc.get("variant")),
        created=_text(doc.get("created")) or None,
        author=_text(doc.get("author")),
        comment=_text(doc.get("comment")),
        config=_parse_container(doc.get("config")),
        history=tuple(_parse_history(h) for h in doc.get("history") or ()),
        diff_ids=_strings(rootfs.get("diff_ids")),
        extra={k: v for k, v in doc.items() if k not in _IMAGE_KEYS},
    )


def _put(doc: Json, key: str, value: Any) -> None:
    """Set `doc[key]` unless the value is empty, like Go's `omitempty`."""
    if value:
        doc[key] = value


def _dump_healthcheck(hc: Healthcheck) -> Json:
    doc: Json = {}
    _put(doc, "Test", list(hc.test))
    _put(doc, "Interval", hc.interval)
    _put(doc, "Timeout", hc.timeout)
    _put(doc, "StartPeriod", hc.start_period)
    _put(doc, "StartInterval", hc.start_interval)
    _put(doc, "Retries", hc.retries)
    return doc


def _dump_container(cfg: ContainerConfig) -> Json:
    doc: Json = dict(cfg.extra)
    _put(doc, "User", cfg.user)
    _put(doc, "ExposedPorts", {port: {} for port in cfg.exposed_ports})
    _put(doc, "Env", list(cfg.env))
    if cfg.entrypoint is not None:
        doc["Entrypoint"] = list(cfg.entrypoint)
    if cfg.cmd is not None:
        doc["Cmd"] = list(cfg.cmd)
    _put(doc, "Volumes", {path: {} for path in cfg.volumes})
    _put(doc, "WorkingDir", cfg.working_dir)
    _put(doc, "Labels", dict(cfg.labels))
    _put(doc, "StopSignal", cfg.stop_signal)
    _put(doc, "ArgsEscaped", cfg.args_escaped)
    if cfg.healthcheck is not None:
        doc["Healthcheck"] = _dump_healthcheck(cfg.healthcheck)
    _put(doc, "OnBuild", list(cfg.on_build))
    if cfg.shell is not None:
        doc["Shell"] = list(cfg.shell)
    return doc


def _dump_history(entry: History) -> Json:
    doc: Json = {}
    _put(doc, "created", entry.created)
    _put(doc, "created_by", entry.created_by)
    _put(doc, "author", entry.author)
    _put(doc, "comment", entry.comment)
    _put(doc, "empty_layer", entry.empty_layer)
    return doc
