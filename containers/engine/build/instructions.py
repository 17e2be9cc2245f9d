"""Dockerfile instructions: one frozen dataclass each, and a `Stage` per FROM.

Modelled on BuildKit's frontend/dockerfile/instructions (commands.go, parse.go). Parsing checks
flags, argument counts and stage names; values keep their quotes and `$VARS` unexpanded, because
expansion happens at dispatch with the stage's ARG and ENV values, as in BuildKit.
Every instruction carries `location` (its first and last line) and `original` (its text).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, TypedDict, TypeVar

from containers.engine.build.parser import Heredoc, Node, parse, parse_heredoc, suggest, unknown_instruction
from containers.engine.errors import DockerfileError


@dataclass(frozen=True)
class KeyValue:
    """A `key=value` pair of ENV or LABEL."""

    key: str
    value: str


@dataclass(frozen=True)
class KeyValueOptional:
    """An ARG declaration: `name` (value None) or `name=default`."""

    key: str
    value: str | None = None


@dataclass(frozen=True)
class Mount:
    """A `RUN --mount=type=...,target=...` mount, with BuildKit's defaults filled in.

    `type` is bind (the default), cache, tmpfs, secret or ssh. `readonly` defaults to True for
    bind, secret and ssh mounts and False for cache and tmpfs. `sharing` is `shared` (the default),
    `private` or `locked` for cache mounts and empty otherwise. `mode`, `uid` and `gid` are None
    when not given (BuildKit then uses 0755 for cache, 0400 for secret and 0600 for ssh mounts, and
    root); only cache, secret and ssh mounts accept them. `required` (secret and ssh) fails the
    step when the secret is missing; `size` limits a tmpfs mount, in bytes. `target`, `source` and `id` are not
    expanded yet (dispatch expands them); `from_` is never expanded, as in BuildKit. At dispatch
    an empty cache `id` means the target, and a secret's target defaults to /run/secrets/<id>.
    """

    type: str = "bind"
    target: str = ""
    source: str = ""
    from_: str = ""
    readonly: bool = True
    id: str = ""
    sharing: str = ""
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    required: bool = False
    size: int = 0


@dataclass(frozen=True, kw_only=True)
class Instruction:
    """Base of every instruction: where it was written and what it said."""

    keyword: ClassVar[str] = ""
    location: tuple[int, int] = (0, 0)
    original: str = ""


@dataclass(frozen=True, kw_only=True)
class RunCommand(Instruction):
    """`RUN [--mount=...] [--network=default|none|host] <command>` or `RUN ["exe", "arg"...]`.

    `prepend_shell` is True for the shell form: `cmd_line` is then the one string as written, to
    be run with the stage's SHELL. Heredocs (shell form only) keep their bodies in `heredocs`,
    tabs already stripped for `<<-`; BuildKit runs `RUN <<EOF` (a lone heredoc) as a script file,
    and otherwise appends each body and its delimiter to the command line, one per line.
    `network` is `default`, `none` or `host`.
    """

    keyword: ClassVar[str] = "run"
    cmd_line: list[str]
    prepend_shell: bool
    mounts: list[Mount] = field(default_factory=list)
    network: str = "default"
    heredocs: list[Heredoc] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class CmdCommand(Instruction):
    """`CMD <command>` or `CMD ["exe", "arg"...]` or `CMD ["arg"...]` (default ENTRYPOINT arguments)."""

    keyword: ClassVar[str] = "cmd"
    cmd_line: list[str]
    prepend_shell: bool


@dataclass(frozen=True, kw_only=True)
class EntrypointCommand(Instruction):
    """`ENTRYPOINT <command>` or `ENTRYPOINT ["exe", "arg"...]`; an empty shell form clears it."""

    keyword: ClassVar[str] = "entrypoint"
    cmd_line: list[str]
    prepend_shell: bool


@dataclass(frozen=True, kw_only=True)
class ShellCommand(Instruction):
    """`SHELL ["exe", "arg"...]` (JSON form only)."""

    keyword: ClassVar[str] = "shell"
    shell: list[str]


@dataclass(frozen=True, kw_only=True)
class EnvCommand(Instruction):
    """`ENV <key>=<value>...` or the legacy `ENV <key> <value>`."""

    keyword: ClassVar[str] = "env"
    env: list[KeyValue]


@dataclass(frozen=True, kw_only=True)
class LabelCommand(Instruction):
    """`LABEL <key>=<value>...`."""

    keyword: ClassVar[str] = "label"
    labels: list[KeyValue]


@dataclass(frozen=True, kw_only=True)
class ArgCommand(Instruction):
    """`ARG <name>[=<default>]...`."""

    keyword: ClassVar[str] = "arg"
    args: list[KeyValueOptional]


@dataclass(frozen=True, kw_only=True)
class WorkdirCommand(Instruction):
    """`WORKDIR <path>` (relative to the previous WORKDIR)."""

    keyword: ClassVar[str] = "workdir"
    path: str


@dataclass(frozen=True, kw_only=True)
class UserCommand(Instruction):
    """`USER <user>[:<group>]`."""

    keyword: ClassVar[str] = "user"
    user: str


@dataclass(frozen=True, kw_only=True)
class CopyCommand(Instruction):
    """`COPY [--from=<stage|image>] [--chown=u:g] [--chmod=mode] [--link] <src>... <dest>`.

    Also the JSON form `COPY ["src", ..., "dest"]`, and heredocs as sources (`COPY <<EOF /dest`):
    those are not in `sources` but in `heredocs`, each a file named after its delimiter whose
    content is the body (`expand` says whether dispatch expands variables in it).
    """

    keyword: ClassVar[str] = "copy"
    sources: list[str]
    dest: str
    from_: str = ""
    chown: str = ""
    chmod: str = ""
    link: bool = False
    heredocs: list[Heredoc] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class AddCommand(Instruction):
    """`ADD [--chown=u:g] [--chmod=mode] [--checksum=sha256:...] [--keep-git-dir] [--link] <src>... <dest>`.

    Sources may be URLs and local tar archives (extracted); heredocs as for COPY.
    """

    keyword: ClassVar[str] = "add"
    sources: list[str]
    dest: str
    chown: str = ""
    chmod: str = ""
    checksum: str = ""
    keep_git_dir: bool = False
    link: bool = False
    heredocs: list[Heredoc] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class ExposeCommand(Instruction):
    """`EXPOSE <port>[/<proto>]...` (ports sorted as strings, as BuildKit does)."""

    keyword: ClassVar[str] = "expose"
    ports: list[str]


@dataclass(frozen=True, kw_only=True)
class VolumeCommand(Instruction):
    """`VOLUME <path>...` or `VOLUME ["path"...]`."""

    keyword: ClassVar[str] = "volume"
    volumes: list[str]


@dataclass(frozen=True, kw_only=True)
class StopSignalCommand(Instruction):
    """`STOPSIGNAL <signal>`."""

    keyword: ClassVar[str] = "stopsignal"
    signal: str


@dataclass(frozen=True, kw_only=True)
class HealthcheckCommand(Instruction):
    """`HEALTHCHECK [--interval=d] [--timeout=d] [--start-period=d] [--start-interval=d] [--retries=n] CMD ...`.

    Or `HEALTHCHECK NONE`. `test` is `["NONE"]`, `["CMD", exe, arg...]` (JSON form) or
    `["CMD-SHELL", "command"]` (shell form). Durations are nanoseconds; 0 inherits the base's.
    """

    keyword: ClassVar[str] = "healthcheck"
    test: list[str] | None
    interval_ns: int = 0
    timeout_ns: int = 0
    start_period_ns: int = 0
    start_interval_ns: int = 0
    retries: int = 0


@dataclass(frozen=True, kw_only=True)
class OnbuildCommand(Instruction):
    """`ONBUILD <instruction>`: `expression` is the trigger's text, parsed and run by a child build.

    Heredoc bodies are appended to the expression, each followed by its delimiter, so that
    `parse(expression)` gives back the trigger with its heredocs.
    """

    keyword: ClassVar[str] = "onbuild"
    expression: str


@dataclass(frozen=True, kw_only=True)
class MaintainerCommand(Instruction):
    """`MAINTAINER <name>` (deprecated; sets the image's author)."""

    keyword: ClassVar[str] = "maintainer"
    maintainer: str


@dataclass(frozen=True, kw_only=True)
class Stage:
    """`FROM [--platform=<platform>] <image> [AS <name>]` and the instructions that follow it.

    `name` is lower case (empty when unnamed); `base_name` and `platform` are unexpanded (the
    meta ARGs declared before the first FROM apply to them).
    """

    name: str
    base_name: str
    platform: str = ""
    location: tuple[int, int] = (0, 0)
    original: str = ""
    commands: list[Instruction] = field(default_factory=list)


def parse_dockerfile(text: str) -> tuple[list[ArgCommand], list[Stage]]:
    """Parse a Dockerfile into the ARGs before the first FROM and its stages.

    Raise DockerfileError naming the line for a bad instruction, an instruction other than ARG
    before the first FROM, or a stage name used twice.
    """
    meta_args: list[ArgCommand] = []
    stages: list[Stage] = []
    for node in parse(text).nodes:
        if node.keyword == "from":
            stage = _with_location(node, _parse_from)
            if stage.name and any(other.name == stage.name for other in stages):
                raise DockerfileError(f"duplicate stage name {_quote(stage.name)}", node.start_line, node.end_line)
            stages.append(stage)
        elif stages:
            stages[-1].commands.append(parse_instruction(node))
        else:
            instruction = parse_instruction(node)
            if not isinstance(instruction, ArgCommand):
                raise DockerfileError("no build stage in current context", node.start_line, node.end_line)
            meta_args.append(instruction)
    if not stages:
        raise DockerfileError("dockerfile contains no stages to build")
    return meta_args, stages


def parse_instruction(node: Node) -> Instruction:
    """Turn one parsed node (not FROM) into its instruction; raise DockerfileError naming the line.

    A child build runs its base image's ONBUILD triggers by passing each node of `parse(expression)`.
    """
    parser = _PARSERS.get(node.keyword)
    if parser is None:
        if node.keyword == "from":
            message = "FROM starts a stage: it is not an instruction within one"
        else:
            message = unknown_instruction(node.original.split(None, 1)[0] if node.original.strip() else node.keyword)
        raise DockerfileError(message, node.start_line, node.end_line)
    return _with_location(node, parser)


def parse_mount(spec: str) -> Mount:
    """Parse the value of `RUN --mount=`: comma-separated `key=value` fields, CSV-quoted (BuildKit's rules)."""
    try:
        fields = next(csv.reader([spec]), [])
    except csv.Error as err:
        raise DockerfileError(f"failed to parse csv mounts: {err}") from None
    values: dict[str, Any] = {"type": "bind"}
    readonly_auto = True
    for item in fields:
        key, has_value, value = item.partition("=")
        key = key.lower()
        if not has_value:
            if key in ("readonly", "ro", "readwrite", "rw"):
                values["readonly"] = key in ("readonly", "ro")
                readonly_auto = False
            elif key == "required" and values["type"] in ("secret", "ssh"):
                values["required"] = True
            elif key == "required":
                raise DockerfileError(f"unexpected key '{key}' for mount type '{values['type']}'")
            else:
                raise DockerfileError(f"invalid field '{item}' must be a key=value pair")
            continue
        if key in ("readonly", "ro", "readwrite", "rw"):
            flag = _parse_bool(value, f"invalid value for {key}: {value}")
            values["readonly"] = flag if key in ("readonly", "ro") else not flag
            readonly_auto = False
        elif key == "required":
            if values["type"] not in ("secret", "ssh"):
                raise DockerfileError(f"unexpected key '{key}' for mount type '{values['type']}'")
            values["required"] = _parse_bool(value, f"invalid value for {key}: {value}")
        elif key == "size":
            if values["type"] != "tmpfs":
                raise DockerfileError(f"unexpected key '{key}' for mount type '{values['type']}'")
            values["size"] = _parse_size(value)
        elif key in _MOUNT_FIELDS:
            values[_MOUNT_FIELDS[key]] = _mount_value(key, value)
        else:
            raise DockerfileError(f"unexpected key '{key}' in '{item}'{suggest(key, _MOUNT_KEYS)}")
    return _validate_mount(Mount(**values), readonly_auto)


# Flags


class _Flags:
    """The flags of one instruction, declared then parsed (BuildKit's BFlags)."""

    def __init__(self, node: Node) -> None:
        self.args = node.flags
        self.kinds: dict[str, str] = {}
        self.values: dict[str, str] = {}
        self.lists: dict[str, list[str]] = {}
        self.used: set[str] = set()

    def add_bool(self, name: str) -> None:
        self.kinds[name] = "bool"
        self.values[name] = "false"

    def add_string(self, name: str, default: str = "") -> None:
        self.kinds[name] = "string"
        self.values[name] = default

    def add_strings(self, name: str) -> None:
        self.kinds[name] = "strings"
        self.lists[name] = []

    def is_true(self, name: str) -> bool:
        return self.values[name] == "true"

    def parse(self) -> None:
        """Check the flags as written against those declared; raise DockerfileError for a bad one."""
        # The parser keeps only words that start with `--` (a lone `--` ends the flags).
        for arg in self.args:
            name, has_value, value = arg[2:].partition("=")
            kind = self.kinds.get(name)
            if kind is None:
                raise DockerfileError(f"unknown flag: {name}{suggest(name, list(self.kinds))}")
            if name in self.used and kind != "strings":
                raise DockerfileError(f"duplicate flag specified: {name}")
            self.used.add(name)
            if kind == "bool":
                if has_value and not value:
                    raise DockerfileError(f"missing a value on flag: {name}")
                if value.lower() not in ("", "true", "false"):
                    raise DockerfileError(f"expecting boolean value for flag {name}, not: {value}")
                self.values[name] = value.lower() or "true"
            elif not has_value:
                raise DockerfileError(f"missing a value on flag: {name}")
            elif kind == "string":
                self.values[name] = value
            else:
                self.lists[name].append(value)


def _no_flags(node: Node) -> None:
    _Flags(node).parse()


# Instruction parsers, in BuildKit's order of checks: arguments first or flags first as it does.


_T = TypeVar("_T")


def _with_location(node: Node, parser: Callable[[Node], _T]) -> _T:
    try:
        return parser(node)
    except DockerfileError as err:
        if err.line_start:
            raise
        raise DockerfileError(err.message, node.start_line, node.end_line) from None


class _Common(TypedDict):
    location: tuple[int, int]
    original: str


def _common(node: Node) -> _Common:
    return {"location": (node.start_line, node.end_line), "original": node.original.strip()}


def _parse_from(node: Node) -> Stage:
    args = node.value
    name = ""
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME.match(name):
            raise DockerfileError(
                f"invalid name for build stage: {_quote(args[2])}, name can't start with a number or contain symbols"
            )
    elif len(args) != 1:
        raise DockerfileError("FROM requires either one or three arguments")
    flags = _Flags(node)
    flags.add_string("platform")
    flags.parse()
    return Stage(
        name=name,
        base_name=args[0],
        platform=flags.values["platform"],
        location=(node.start_line, node.end_line),
        original=node.original.strip(),
    )


def _parse_env(node: Node) -> EnvCommand:
    _no_flags(node)
    return EnvCommand(env=_key_values(node.value, "ENV"), **_common(node))


def _parse_label(node: Node) -> LabelCommand:
    _no_flags(node)
    return LabelCommand(labels=_key_values(node.value, "LABEL"), **_common(node))


def _parse_maintainer(node: Node) -> MaintainerCommand:
    _exactly_one(node, "MAINTAINER")
    _no_flags(node)
    return MaintainerCommand(maintainer=node.value[0], **_common(node))


def _parse_add(node: Node) -> AddCommand:
    _at_least_two(node, "ADD")
    flags = _Flags(node)
    for name in ("chown", "chmod", "checksum"):
        flags.add_string(name)
    flags.add_bool("link")
    flags.add_bool("keep-git-dir")
    flags.parse()
    sources, dest, heredocs = _sources_and_dest(node, "ADD")
    return AddCommand(
        sources=sources,
        dest=dest,
        chown=flags.values["chown"],
        chmod=flags.values["chmod"],
        checksum=flags.values["checksum"],
        keep_git_dir=flags.is_true("keep-git-dir"),
        link=flags.is_true("link"),
        heredocs=heredocs,
        **_common(node),
    )


def _parse_copy(node: Node) -> CopyCommand:
    _at_least_two(node, "COPY")
    flags = _Flags(node)
    for name in ("chown", "from", "chmod"):
        flags.add_string(name)
    flags.add_bool("link")
    flags.parse()
    sources, dest, heredocs = _sources_and_dest(node, "COPY")
    return CopyCommand(
        sources=sources,
        dest=dest,
        from_=flags.values["from"],
        chown=flags.values["chown"],
        chmod=flags.values["chmod"],
        link=flags.is_true("link"),
        heredocs=heredocs,
        **_common(node),
    )


def _parse_onbuild(node: Node) -> OnbuildCommand:
    if not node.value:
        raise DockerfileError("ONBUILD requires at least one argument")
    _no_flags(node)
    trigger = node.value[0].strip().upper()
    if trigger == "ONBUILD":
        raise DockerfileError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise DockerfileError(f"{trigger} isn't allowed as an ONBUILD trigger")
    expression = _ONBUILD_PREFIX.sub("", node.original, count=1)
    for heredoc in node.heredocs:
        expression += "\n" + heredoc.content + heredoc.name
    return OnbuildCommand(expression=expression, **_common(node))


def _parse_workdir(node: Node) -> WorkdirCommand:
    _exactly_one(node, "WORKDIR")
    _no_flags(node)
    return WorkdirCommand(path=node.value[0], **_common(node))


def _parse_run(node: Node) -> RunCommand:
    flags = _Flags(node)
    flags.add_strings("mount")
    flags.add_string("network", "default")
    flags.parse()
    mounts = [parse_mount(spec) for spec in flags.lists["mount"]]
    network = flags.values["network"]
    if network not in ("default", "none", "host"):
        raise DockerfileError(f"invalid network mode {_quote(network)}")
    return RunCommand(
        cmd_line=_cmd_line(node),
        prepend_shell=not node.json_form,
        mounts=mounts,
        network=network,
        heredocs=[_chomped(heredoc) for heredoc in node.heredocs],
        **_common(node),
    )


def _parse_cmd(node: Node) -> CmdCommand:
    _no_flags(node)
    return CmdCommand(cmd_line=_cmd_line(node), prepend_shell=not node.json_form, **_common(node))


def _parse_entrypoint(node: Node) -> EntrypointCommand:
    _no_flags(node)
    return EntrypointCommand(cmd_line=_cmd_line(node), prepend_shell=not node.json_form, **_common(node))


def _parse_healthcheck(node: Node) -> HealthcheckCommand:
    if not node.value:
        raise DockerfileError("HEALTHCHECK requires at least one argument")
    kind, args = node.value[0].upper(), node.value[1:]
    if kind == "NONE":
        # BuildKit does not even look at the flags of HEALTHCHECK NONE.
        if args:
            raise DockerfileError("HEALTHCHECK NONE takes no arguments")
        return HealthcheckCommand(test=["NONE"], **_common(node))
    flags = _Flags(node)
    for name in ("interval", "timeout", "start-period", "start-interval", "retries"):
        flags.add_string(name)
    flags.parse()
    if kind != "CMD":
        raise DockerfileError(f"Unknown type {_quote(kind)} in HEALTHCHECK (try CMD)")
    command = _join_shell_form(args, node.json_form)
    if not command:
        raise DockerfileError("Missing command after HEALTHCHECK CMD")
    durations = {name: _parse_interval(flags.values[name], name) for name in _DURATION_FLAGS}
    return HealthcheckCommand(
        test=["CMD" if node.json_form else "CMD-SHELL", *command],
        interval_ns=durations["interval"],
        timeout_ns=durations["timeout"],
        start_period_ns=durations["start-period"],
        start_interval_ns=durations["start-interval"],
        retries=_parse_retries(flags.values["retries"]),
        **_common(node),
    )


def _parse_expose(node: Node) -> ExposeCommand:
    if not node.value:
        raise DockerfileError("EXPOSE requires at least one argument")
    _no_flags(node)
    return ExposeCommand(ports=sorted(node.value), **_common(node))


def _parse_user(node: Node) -> UserCommand:
    _exactly_one(node, "USER")
    _no_flags(node)
    return UserCommand(user=node.value[0], **_common(node))


def _parse_volume(node: Node) -> VolumeCommand:
    if not node.value:
        raise DockerfileError("VOLUME requires at least one argument")
    _no_flags(node)
    volumes = [volume.strip() for volume in node.value]
    if not all(volumes):
        raise DockerfileError("VOLUME specified can not be an empty string")
    return VolumeCommand(volumes=volumes, **_common(node))


def _parse_stopsignal(node: Node) -> StopSignalCommand:
    # BuildKit does not parse STOPSIGNAL's flags: any are ignored.
    _exactly_one(node, "STOPSIGNAL")
    return StopSignalCommand(signal=node.value[0], **_common(node))


def _parse_arg(node: Node) -> ArgCommand:
    if not node.value:
        raise DockerfileError("ARG requires at least one argument")
    _no_flags(node)
    args: list[KeyValueOptional] = []
    for word in node.value:
        key, has_value, value = word.partition("=")
        if has_value and not key:
            raise DockerfileError("ARG names can not be blank")
        args.append(KeyValueOptional(key=key, value=value if has_value else None))
    return ArgCommand(args=args, **_common(node))


def _parse_shell(node: Node) -> ShellCommand:
    _no_flags(node)
    shell = _join_shell_form(node.value, node.json_form)
    if not shell:
        raise DockerfileError("SHELL requires at least one argument")
    if not node.json_form:
        raise DockerfileError("SHELL requires the arguments to be in JSON form")
    return ShellCommand(shell=shell, **_common(node))


_PARSERS: dict[str, Callable[[Node], Instruction]] = {
    "add": _parse_add,
    "arg": _parse_arg,
    "cmd": _parse_cmd,
    "copy": _parse_copy,
    "entrypoint": _parse_entrypoint,
    "env": _parse_env,
    "expose": _parse_expose,
    "healthcheck": _parse_healthcheck,
    "label": _parse_label,
    "maintainer": _parse_maintainer,
    "onbuild": _parse_onbuild,
    "run": _parse_run,
    "shell": _parse_shell,
    "stopsignal": _parse_stopsignal,
    "user": _parse_user,
    "volume": _parse_volume,
    "workdir": _parse_workdir,
}


# Helpers

_STAGE_NAME = re.compile(r"[a-z][a-z0-9-_.]*\Z")
_ONBUILD_PREFIX = re.compile(r"^\s*ONBUILD\s*", re.IGNORECASE)
_DURATION_FLAGS = ("interval", "timeout", "start-period", "start-interval")


def _quote(text: str) -> str:
    """Quote like Go's %q, as BuildKit's messages do."""
    return json.dumps(text, ensure_ascii=False)


def _exactly_one(node: Node, keyword: str) -> None:
    if len(node.value) != 1:
        raise DockerfileError(f"{keyword} requires exactly one argument")


def _at_least_two(node: Node, keyword: str) -> None:
    if len(node.value) < 2:
        raise DockerfileError(
            f"{keyword} requires at least two arguments, but only one was provided. "
            "Destination could not be determined."
        )


def _key_values(args: list[str], keyword: str) -> list[KeyValue]:
    if not args:
        raise DockerfileError(f"{keyword} requires at least one argument")
    if len(args) % 2:
        raise DockerfileError(f"Bad input to {keyword}, too many arguments")
    pairs = [KeyValue(key=args[i], value=args[i + 1]) for i in range(0, len(args), 2)]
    if not all(pair.key for pair in pairs):
        raise DockerfileError(f"{keyword} names can not be blank")
    return pairs


def _join_shell_form(args: list[str], json_form: bool) -> list[str]:
    """Return a JSON form's list as is, and a shell form's words as one string (handleJSONArgs)."""
    if not args or json_form:
        return list(args)
    return [" ".join(args)]


def _cmd_line(node: Node) -> list[str]:
    return _join_shell_form(node.value, node.json_form)


def _chomped(heredoc: Heredoc) -> Heredoc:
    """Strip the leading tabs of each line of a `<<-` body."""
    if not heredoc.chomp:
        return heredoc
    return replace(heredoc, content=re.sub(r"(?m)^\t+", "", heredoc.content))


def _sources_and_dest(node: Node, keyword: str) -> tuple[list[str], str, list[Heredoc]]:
    *sources, dest = node.value
    if parse_heredoc(dest):
        raise DockerfileError(f"{keyword} cannot accept a heredoc as a destination")
    bodies = {heredoc.name: heredoc for heredoc in node.heredocs}
    paths: list[str] = []
    heredocs: list[Heredoc] = []
    for source in sources:
        opened = parse_heredoc(source)
        if opened is None:
            paths.append(source)
        else:
            content = bodies[opened.name].content if opened.name in bodies else ""
            heredocs.append(_chomped(replace(opened, content=content)))
    return paths, dest, heredocs


_DURATION = re.compile(r"(\d*)(?:\.(\d*))?([^\d.]*)")
_UNITS = {
    "ns": 1,
    "us": 10**3,
    "\u00b5s": 10**3,
    "\u03bcs": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}


def _parse_duration(text: str) -> int:
    """Parse a Go duration (`1m30s`, `1.5h`, `300ms`) into nanoseconds, as time.ParseDuration."""
    rest = text[1:] if text[:1] in ("+", "-") else text
    sign = -1 if text.startswith("-") else 1
    if rest == "0":
        return 0
    if not rest:
        raise DockerfileError(f"time: invalid duration {_quote(text)}")
    total = 0
    while rest:
        match = _DURATION.match(rest)
        assert match is not None  # every part of the expression may be empty
        whole, fraction, unit = match[1], match[2], match[3]
        if not whole and not fraction:
            raise DockerfileError(f"time: invalid duration {_quote(text)}")
        if not unit:
            raise DockerfileError(f"time: missing unit in duration {_quote(text)}")
        if unit not in _UNITS:
            raise DockerfileError(f"time: unknown unit {_quote(unit)} in duration {_quote(text)}")
        scale = _UNITS[unit]
        total += int(whole or 0) * scale
        if fraction:
            total += int(fraction) * scale // 10 ** len(fraction)
        rest = rest[match.end() :]
    return sign * total


def _parse_interval(value: str, name: str) -> int:
    """Parse a HEALTHCHECK duration flag: empty or 0 inherit, otherwise at least 1ms."""
    if not value:
        return 0
    duration = _parse_duration(value)
    if duration != 0 and duration < 10**6:
        raise DockerfileError(f"Interval {_quote(name)} cannot be less than 1ms")
    return duration


def _parse_retries(value: str) -> int:
    if not value:
        return 0
    if not re.fullmatch(r"[+-]?\d+", value):
        raise DockerfileError(f"strconv.ParseInt: parsing {_quote(value)}: invalid syntax")
    retries = int(value)
    if not -(2**31) <= retries < 2**31:
        raise DockerfileError(f"strconv.ParseInt: parsing {_quote(value)}: value out of range")
    if retries < 0:
        raise DockerfileError(f"--retries cannot be negative ({retries})")
    return retries


# Mounts

_MOUNT_FIELDS = {
    "type": "type",
    "from": "from_",
    "source": "source",
    "src": "source",
    "target": "target",
    "dst": "target",
    "destination": "target",
    "id": "id",
    "sharing": "sharing",
    "mode": "mode",
    "uid": "uid",
    "gid": "gid",
}
_MOUNT_KEYS = (
    "type", "from", "source", "target", "readonly", "id", "sharing", "required", "mode", "uid", "gid",
    "src", "dst", "ro", "rw", "readwrite",
)  # fmt: skip
_MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
_SHARING_MODES = ("shared", "private", "locked")
_SIZE = re.compile(r"(\d+(?:\.\d+)*) ?([kmgtp])?i?b?\Z", re.IGNORECASE)


def _mount_value(key: str, value: str) -> str | int:
    if key == "type":
        if value.lower() not in _MOUNT_TYPES:
            raise DockerfileError(f"unsupported mount type {_quote(value)}{suggest(value, _MOUNT_TYPES)}")
        return value.lower()
    if key == "sharing":
        if value.lower() not in _SHARING_MODES:
            raise DockerfileError(f"unsupported sharing value {_quote(value)}{suggest(value, _SHARING_MODES)}")
        return value.lower()
    if key == "from" and re.search(r"\$.", value):
        raise DockerfileError(f"'{key}' doesn't support variable expansion, define alias stage instead")
    if key in ("mode", "uid", "gid"):
        digits = "[0-7]+" if key == "mode" else "[0-9]+"
        if not re.fullmatch(digits, value) or int(value, 8 if key == "mode" else 10) >= 2**32:
            raise DockerfileError(f"invalid value {value} for {key}")
        return int(value, 8 if key == "mode" else 10)
    return value


def _parse_size(value: str) -> int:
    """Parse a size as docker/go-units RAMInBytes: a number and an optional binary unit (`64m`, `1GiB`)."""
    match = _SIZE.match(value)
    if not match:
        raise DockerfileError(f"invalid value for size: {value}")
    return int(float(match[1]) * 1024 ** " kmgtp".index((match[2] or " ").lower()))


def _validate_mount(mount: Mount, readonly_auto: bool) -> Mount:
    if mount.type not in ("secret", "ssh", "cache"):
        for name in ("mode", "uid", "gid"):
            if getattr(mount, name) is not None:
                raise DockerfileError(f"{name} not allowed for {_quote(mount.type)} type mounts")
    if readonly_auto:
        mount = replace(mount, readonly=mount.type not in ("cache", "tmpfs"))
    if mount.type == "secret":
        if mount.from_:
            raise DockerfileError("secret mount should not have a from")
        if mount.sharing:
            raise DockerfileError("secret mount should not define sharing")
        if not (mount.source or mount.target or mount.id):
            raise DockerfileError("invalid secret mount. one of source, target required")
        if mount.source and mount.id:
            raise DockerfileError("both source and id can't be set")
    if mount.sharing and mount.type != "cache":
        raise DockerfileError(f"invalid cache sharing set for {mount.type} mount")
    if mount.type == "cache" and not mount.sharing:
        mount = replace(mount, sharing="shared")
    return mount


def _parse_bool(value: str, message: str) -> bool:
    """Parse a boolean as Go's strconv.ParseBool."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise DockerfileError(message)
