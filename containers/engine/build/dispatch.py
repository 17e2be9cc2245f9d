"""Dispatch: carry out one Dockerfile instruction on the build state, as moby's legacy builder does.

Each instruction has its `dispatch_<keyword>(state, instr)` (moby's builder/dockerfile/
dispatchers.go). The state is one stage's: its image so far, the config it will commit
(`ContainerConfig`, Docker's runConfig), its build args, the maintainer and whether CMD was set.

Every instruction commits an image, as in moby: metadata instructions (ENV, CMD, LABEL, ...) an
image with the same layers and one more history entry (`empty_layer`); RUN, COPY, ADD and WORKDIR
one with the layer they made, if they changed any file. Before that the build cache is asked
(cache.py): the key is the parent, the platform and the config the step commits with, whose `Cmd`
says what the step did, as moby writes it into the image history:

    ENV A=1                 /bin/sh -c #(nop)  ENV A=1
    COPY . /app/            /bin/sh -c #(nop) COPY dir:<sha256> in /app/
    RUN make                /bin/sh -c make       (|1 V=2 /bin/sh -c make with a build arg)

Variables are expanded (expand.py) exactly where Docker expands them: ADD, COPY (sources, dest,
--chown, --chmod, --from), ENV, EXPOSE (into several words), LABEL, STOPSIGNAL, USER, VOLUME,
WORKDIR, ARG, and the RUN --mount fields; FROM with the ARGs declared before the first FROM.
The environment is the stage's ENV plus its declared build args that ENV does not shadow.

Beyond the legacy builder, which refuses them, `RUN --mount` (bind, cache, tmpfs), `RUN --network`,
`COPY --chmod`, heredocs and `FROM --platform=$BUILDPLATFORM` (BuildKit's automatic platform args,
which nothing else sees: the legacy builder has none) work as in BuildKit.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import re
import secrets
import shutil
import signal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from containers.engine.build import copier
from containers.engine.build.buildargs import BuildArgs
from containers.engine.build.cache import BuildCache, step_key
from containers.engine.build.context import BuildContext, SourceTree
from containers.engine.build.executor import Executor, Layer
from containers.engine.build.expand import ShellLex
from containers.engine.build.goformat import go_health, go_quote_list
from containers.engine.build.instructions import (
    AddCommand,
    ArgCommand,
    CmdCommand,
    CopyCommand,
    EntrypointCommand,
    EnvCommand,
    ExposeCommand,
    HealthcheckCommand,
    Instruction,
    KeyValue,
    LabelCommand,
    MaintainerCommand,
    Mount,
    OnbuildCommand,
    RunCommand,
    ShellCommand,
    Stage,
    StopSignalCommand,
    UserCommand,
    VolumeCommand,
    WorkdirCommand,
    parse_instruction,
)
from containers.engine.build.parser import parse, parse_heredoc
from containers.engine.errors import DockerfileError, ImageNotFound, InvalidArgument
from containers.engine.images.config import ContainerConfig, Healthcheck
from containers.engine.images.manifest import Platform
from containers.engine.images.store import Image
from containers.engine.runtime.spec import DEFAULT_PATH

DEFAULT_SHELL = ("/bin/sh", "-c")


class BuildStepError(InvalidArgument):
    """A step that failed: moby's message, the Dockerfile lines of the step, and a failed RUN's exit code."""

    def __init__(self, message: str, line_start: int = 0, line_end: int = 0, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line_start = line_start
        self.line_end = line_end or line_start
        self.code = code


#
# State
#


@dataclass
class Session:
    """What every step of one build shares: the engine's executor, the cache, the context, the output."""

    executor: Executor
    cache: BuildCache
    context: BuildContext
    output: Callable[[str], None]
    lex: ShellLex
    platform: Platform
    workdir: Path
    """A private directory of the build for downloads and heredoc files; removed with the build."""
    no_cache: bool = False
    keep_containers: bool = False
    """Whether the containers of steps stay once the steps are done (`--rm=false`)."""
    cancel: threading.Event | None = None
    stages: list[tuple[str, Image | None]] = field(default_factory=list)
    """The result of each finished stage: its name ("" if unnamed) and its image (None: scratch)."""
    containers: list[str] = field(default_factory=list)
    """The containers of the current step, removed when it ends."""

    def scratch_dir(self, prefix: str) -> Path:
        """Return a new, not yet existing path in the build's private directory."""
        return self.workdir / f"{prefix}-{secrets.token_hex(4)}"

    def stage_image(self, name: str, *, by_index: bool = False) -> tuple[bool, Image | None]:
        """Return whether `name` is a finished stage (by name, or with `by_index` by number) and its image."""
        for stage_name, image in self.stages:
            if stage_name and stage_name == name.lower():
                return True, image
        if by_index and name.isdigit():
            index = int(name)
            if index >= len(self.stages):
                raise InvalidArgument("refers to current build stage" if index == len(self.stages) else
                                      "index out of bounds")  # fmt: skip
            return True, self.stages[index][1]
        return False, None


@dataclass
class DispatchState:
    """One stage being built: its image so far and the config its next commit starts from."""

    session: Session
    name: str
    args: BuildArgs
    config: ContainerConfig = field(default_factory=ContainerConfig)
    image: Image | None = None
    maintainer: str = ""
    cmd_set: bool = False
    cache_busted: bool = False
    cached: bool = False
    """Whether the last step's image came from the cache."""

    @property
    def image_id(self) -> str:
        return self.image.id if self.image is not None else ""

    def env(self) -> dict[str, str]:
        """Return the environment that expansion sees: ENV, then the declared args ENV does not set."""
        items = [*self.config.env, *self.args.not_in_env(self.config.env)]
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in items)

    def expand(self, word: str) -> str:
        return self.session.lex.process_word(word, self.env())

    def shell(self) -> list[str]:
        return list(self.config.shell) if self.config.shell else list(DEFAULT_SHELL)

    def probe(self, config: ContainerConfig, extra: str = "") -> str | None:
        """Look the step up in the cache; on a hit take its image and return None, else return its key.

        After the first miss of a stage nothing more is looked up, as in moby's ImageProber.
        """
        key = step_key(self.image_id, config, f"{self.session.platform}{extra}")
        if self.session.no_cache or self.cache_busted:
            return key
        cached = self.session.cache.get(key)
        try:
            image = self.session.executor.engine.images.get(cached) if cached is not None else None
        except ImageNotFound:
            image = None  # removed since
        if image is None:
            self.cache_busted = True
            return key
        self.session.output(" ---> Using cache\n")
        self.image = image
        self.cached = True
        return None

    def commit(self, key: str, created_by: Sequence[str], layer: Layer | None = None) -> None:
        """Record this step's image (the state's config, `layer` if any) and cache it under `key`."""
        image = self.session.executor.commit(
            self.image, self.config, " ".join(created_by), self.maintainer, layer, self.session.platform
        )
        self.session.cache.put(key, image.id)
        self.image = image

    def commit_message(self, comment: str) -> None:
        """Commit a metadata step, the history saying `#(nop)  <comment>` (moby's Builder.commit)."""
        probe_config = replace(self.config, cmd=(*self.shell(), "#(nop) ", comment))
        key = self.probe(probe_config)
        if key is not None:
            self.commit(key, probe_config.cmd or ())


#
# FROM
#


def dispatch_from(session: Session, stage: Stage, meta: BuildArgs) -> DispatchState:
    """Begin a stage: resolve its base (a stage, an image, or scratch), run the base's ONBUILD triggers."""
    state = DispatchState(session, stage.name, meta.for_stage())
    lex, meta_env = session.lex, meta.meta_values()
    if stage.platform:
        wanted = Platform.parse(lex.process_word(stage.platform, {**platform_args(session.platform), **meta_env}))
        if not session.platform.matches(wanted):
            raise InvalidArgument(f"platform {wanted.os}/{wanted.architecture}: only {session.platform} "
                                  "images can be built here")  # fmt: skip
    name = lex.process_word(stage.base_name, meta_env)
    if not name:
        raise InvalidArgument(f"base name ({stage.base_name}) should not be blank")
    found, base = session.stage_image(name)
    if not found and name != "scratch":
        try:
            base = session.executor.engine.images.get(name)
        except ImageNotFound as err:
            raise InvalidArgument(f"{err}: builds do not pull images; pull or load it first") from err
    state.image = base
    config = base.config.config if base is not None else ContainerConfig()
    if not any(item.startswith("PATH=") for item in config.env):
        config = replace(config, env=(*config.env, f"PATH={DEFAULT_PATH}"))
    state.config = config
    if config.on_build:
        triggers = config.on_build
        state.config = replace(config, on_build=())
        session.output(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n")
        for trigger in triggers:
            try:
                nodes = parse(trigger).nodes
                if len(nodes) != 1:
                    raise InvalidArgument("onbuild trigger should be a single expression")
                instruction = parse_instruction(nodes[0])
            except DockerfileError as err:
                # The trigger's own line numbers mean nothing in this Dockerfile: the FROM is at fault.
                raise DockerfileError(err.message) from err
            dispatch(state, instruction)
    return state


def platform_args(platform: Platform) -> dict[str, str]:
    """Return BuildKit's automatic platform args, which only `FROM --platform` sees here.

    The legacy builder has none of them: `ARG TARGETARCH` in a stage is empty there, so it is empty
    here too; but `FROM --platform=$BUILDPLATFORM`, which the legacy builder refuses, works as in BuildKit.
    """
    return {
        "TARGETPLATFORM": str(platform), "TARGETOS": platform.os, "TARGETARCH": platform.architecture,
        "TARGETVARIANT": platform.variant, "BUILDPLATFORM": str(platform), "BUILDOS": platform.os,
        "BUILDARCH": platform.architecture, "BUILDVARIANT": platform.variant,
    }  # fmt: skip


#
# The dispatch table
#


def dispatch(state: DispatchState, instr: Instruction) -> None:
    """Carry out one instruction of the stage."""
    handler = _DISPATCHERS.get(type(instr))
    if handler is None:
        raise InvalidArgument(f"unsupported command type: {type(instr).__name__}")
    handler(state, instr)


def dispatch_env(state: DispatchState, instr: EnvCommand) -> None:
    """`ENV k=v ...`: set or replace variables, in order."""
    env = list(state.config.env)
    words = []
    pairs = [(state.expand(kv.key), state.expand(kv.value)) for kv in instr.env]
    for key, value in pairs:
        item = f"{key}={value}"
        words.append(item)
        index = next((i for i, old in enumerate(env) if old.split("=", 1)[0] == key), None)
        if index is None:
            env.append(item)
        else:
            env[index] = item
    state.config = replace(state.config, env=tuple(env))
    state.commit_message("ENV " + " ".join(words))


def dispatch_maintainer(state: DispatchState, instr: MaintainerCommand) -> None:
    """`MAINTAINER name`: the image's author."""
    state.maintainer = instr.maintainer
    state.commit_message("MAINTAINER " + instr.maintainer)


def dispatch_label(state: DispatchState, instr: LabelCommand) -> None:
    """`LABEL k=v ...`."""
    expand = (lambda word: word) if isinstance(instr, OptionLabel) else state.expand
    pairs = [(expand(kv.key), expand(kv.value)) for kv in instr.labels]
    state.config = replace(state.config, labels={**state.config.labels, **dict(pairs)})
    state.commit_message("LABEL " + " ".join(f"{k}={v}" for k, v in pairs))


@dataclass(frozen=True, kw_only=True)
class OptionLabel(LabelCommand):
    """A `--label` of the build, added to the last stage and not expanded (moby's NewLabelCommand(noExp))."""


def dispatch_onbuild(state: DispatchState, instr: OnbuildCommand) -> None:
    """`ONBUILD <instruction>`: kept in the config for builds FROM this image."""
    state.config = replace(state.config, on_build=(*state.config.on_build, instr.expression))
    state.commit_message("ONBUILD " + instr.expression)


def dispatch_workdir(state: DispatchState, instr: WorkdirCommand) -> None:
    """`WORKDIR path`: relative to the previous one; the directory is made (0755, root) if missing."""
    requested = state.expand(instr.path)
    if not requested:
        raise InvalidArgument("cannot normalize nothing")
    workdir = posixpath.normpath(posixpath.join("/", state.config.working_dir or "/", requested))
    state.config = replace(state.config, working_dir=workdir)
    probe_config = replace(state.config, cmd=(*state.shell(), f"#(nop) WORKDIR {workdir}"))
    key = state.probe(probe_config)
    if key is None:
        return
    with state.session.executor.file_step(state.image) as step:
        copier.make_directory(step.root, workdir)
    state.commit(key, probe_config.cmd or (), step.layer)


def resolve_cmd_line(state: DispatchState, cmd_line: Sequence[str], prepend_shell: bool) -> list[str]:
    """Return a command as it is run: the shell form prefixed with the stage's SHELL (resolveCmdLine)."""
    return [*state.shell(), *cmd_line] if prepend_shell and cmd_line else list(cmd_line)


def dispatch_run(state: DispatchState, instr: RunCommand) -> None:
    """`RUN command`: run it in a container on top of the image so far; its changes are the layer."""
    session = state.session
    if state.image is None:
        raise InvalidArgument("RUN needs files to run: FROM scratch has none until COPY or ADD adds them")
    script = _heredoc_script(instr)
    cmd_line = [_with_heredocs(instr)] if instr.heredocs else list(instr.cmd_line)
    cmd = resolve_cmd_line(state, cmd_line, instr.prepend_shell)
    build_env = state.args.not_in_env(state.config.env)
    save_cmd = _prepend_env(state.args, build_env, cmd) if build_env else cmd
    with ExitStack() as stack:
        mounts = _RunMounts(state, stack)
        for mount in instr.mounts:
            mounts.add(mount)
        if script is not None:
            mounts.add_file(f"/dev/pipes/{script[0]}", script[1])
        probe_config = replace(state.config, cmd=tuple(save_cmd), entrypoint=None if save_cmd else
                               state.config.entrypoint)  # fmt: skip
        network = f"\0network {instr.network}" if instr.network not in ("", "default") else ""
        key = state.probe(probe_config, mounts.cache_key() + network)
        if key is None:
            return
        run_cmd = resolve_cmd_line(state, [f"/dev/pipes/{script[0]}"], True) if script is not None else cmd
        config = {
            "Cmd": run_cmd, "Entrypoint": [""], "Env": [*state.config.env, *build_env],
            "User": state.config.user, "WorkingDir": state.config.working_dir,
        }  # fmt: skip
        host_config: dict[str, Any] = {"Binds": mounts.binds, "Tmpfs": mounts.tmpfs}
        if instr.network == "none":
            host_config["NetworkMode"] = "none"
        elif instr.network == "host":
            raise InvalidArgument("network mode host is not allowed in builds (it needs the network.host entitlement)")
        executor = session.executor
        container = executor.create(state.image, config, host_config)
        session.containers.append(container)
        session.output(f" ---> Running in {container[:12]}\n")
        code = executor.run(container, session.output, session.cancel)
        if code != 0:
            raise BuildStepError(f"The command '{' '.join(run_cmd)}' returned a non-zero code: {code}", code=code)
        layer = executor.container_layer(container, mounts.targets, adopt=not session.keep_containers)
    state.commit(key, save_cmd, layer)


def _heredoc_script(instr: RunCommand) -> tuple[str, str] | None:
    """Return (name, body) when the command is only a heredoc (`RUN <<EOF`): the body is then the script."""
    if len(instr.heredocs) != 1 or not instr.prepend_shell or len(instr.cmd_line) != 1:
        return None
    opened = parse_heredoc(instr.cmd_line[0].strip())
    heredoc = instr.heredocs[0]
    return (heredoc.name, heredoc.content) if opened is not None and opened.name == heredoc.name else None


def _with_heredocs(instr: RunCommand) -> str:
    """Return the shell command with the heredoc bodies after it, as the shell reads them (BuildKit)."""
    return "".join([instr.cmd_line[0] if instr.cmd_line else "", *(f"\n{h.content}{h.name}" for h in instr.heredocs)])


def _prepend_env(args: BuildArgs, build_env: Sequence[str], cmd: Sequence[str]) -> list[str]:
    """Return `|N k=v ... cmd`: the build args a RUN used, for its cache key and history (prependEnvOnCmd)."""
    used = sorted(item for item in build_env if args.in_history(item.split("=", 1)[0]))
    return [f"|{len(used)}", *used, *cmd]


class _RunMounts:
    """The mounts of one RUN (`--mount`), as binds and tmpfs for the container, and what they add to the cache key."""

    def __init__(self, state: DispatchState, stack: ExitStack) -> None:
        self.state = state
        self.stack = stack
        self.binds: list[str] = []
        self.tmpfs: dict[str, str] = {}
        self.targets: list[str] = []
        self._key: list[str] = []

    def cache_key(self) -> str:
        return "".join(f"\0{part}" for part in self._key)

    def add(self, mount: Mount) -> None:
        state = self.state
        target = posixpath.normpath(posixpath.join("/", state.config.working_dir or "/", state.expand(mount.target)))
        if mount.type == "cache":
            self._bind(self._cache_dir(mount, target), target, readonly=mount.readonly)
        elif mount.type == "bind":
            tree, what = self._tree(mount.from_)
            source = state.expand(mount.source) or "/"
            try:
                path, digest = tree.resolve(source), tree.hash(source)
            except (FileNotFoundError, NotADirectoryError):
                raise InvalidArgument(f"failed to mount {target}: {source}: not found in {what}") from None
            if not mount.readonly:
                # Writes to a read-write bind are the step's own, as in BuildKit: they go to a copy.
                path = self._writable_copy(path)
            self._bind(path, target, readonly=mount.readonly)
            self._key.append(f"bind {target} {digest} {mount.readonly}")
        elif mount.type == "tmpfs":
            self.tmpfs[target] = f"size={mount.size}" if mount.size else ""
            self.targets.append(target)
            self._key.append(f"tmpfs {target}")
        else:
            raise InvalidArgument(f"RUN --mount=type={mount.type} is not supported by this builder")

    def add_file(self, target: str, content: str) -> None:
        """Mount a file holding `content` (0755) read-only at `target`: a heredoc script."""
        directory = self.state.session.scratch_dir("script")
        directory.mkdir(mode=0o700)
        path = directory / "script"
        path.write_text(content)
        path.chmod(0o755)
        self._bind(path, target, readonly=True)

    def _bind(self, source: Path, target: str, *, readonly: bool) -> None:
        self.binds.append(f"{source}:{target}{':ro' if readonly else ''}")
        self.targets.append(target)

    def _cache_dir(self, mount: Mount, target: str) -> Path:
        """Return the persistent directory of a cache mount, by its id (the target by default)."""
        cache_id = self.state.expand(mount.id) or target
        root = self.state.session.cache.root / "mounts"
        path = root / hashlib.sha256(cache_id.encode()).hexdigest()[:32]
        if not path.is_dir():
            root.mkdir(parents=True, exist_ok=True)
            fresh = root / f".new-{secrets.token_hex(4)}"
            fresh.mkdir(mode=0o700)
            fresh.chmod(mount.mode if mount.mode is not None else 0o755)
            os.chown(fresh, mount.uid or 0, mount.gid or 0)
            try:
                fresh.rename(path)
            except OSError:
                fresh.rmdir()  # another build made it meanwhile
        return path

    def _tree(self, from_: str) -> tuple[SourceTree, str]:
        """Return the files a bind mount reads: the context, or those of a stage or image."""
        if not from_:
            return self.state.session.context.tree, "the build context"
        image = _image_for(self.state.session, from_)
        if image is None:
            return SourceTree(self.stack.enter_context(_empty_dir(self.state.session))), from_
        return SourceTree(self.stack.enter_context(self.state.session.executor.view(image))), from_

    def _writable_copy(self, path: Path) -> Path:
        copy = self.state.session.scratch_dir("bind")
        if path.is_dir():
            shutil.copytree(path, copy, symlinks=True)
        else:
            copy.mkdir(mode=0o700)
            copy = copy / path.name
            shutil.copy2(path, copy, follow_symlinks=False)
        return copy


@contextlib.contextmanager
def _empty_dir(session: Session) -> Iterator[Path]:
    path = session.scratch_dir("empty")
    path.mkdir(mode=0o700)
    try:
        yield path
    finally:
        path.rmdir()


def _image_for(session: Session, name: str) -> Image | None:
    """Return the image a `--from` names: a finished stage (None for scratch), else an image of the store."""
    found, image = session.stage_image(name, by_index=True)
    if found:
        return image
    try:
        return session.executor.engine.images.get(name)
    except ImageNotFound as err:
        raise InvalidArgument(f"invalid from flag value {name}: {err}") from err


def dispatch_cmd(state: DispatchState, instr: CmdCommand) -> None:
    """`CMD`: the default command, or the ENTRYPOINT's default arguments."""
    cmd = resolve_cmd_line(state, instr.cmd_line, instr.prepend_shell)
    state.config = replace(state.config, cmd=tuple(cmd))
    state.commit_message(f"CMD {go_quote_list(cmd)}")
    if instr.cmd_line:
        state.cmd_set = True


def dispatch_entrypoint(state: DispatchState, instr: EntrypointCommand) -> None:
    """`ENTRYPOINT`: also drops a CMD inherited from the base image (one set in this stage stays)."""
    entrypoint = resolve_cmd_line(state, instr.cmd_line, instr.prepend_shell)
    state.config = replace(state.config, entrypoint=tuple(entrypoint))
    if not state.cmd_set:
        state.config = replace(state.config, cmd=None)
    state.commit_message(f"ENTRYPOINT {go_quote_list(state.config.entrypoint or ())}")


def dispatch_healthcheck(state: DispatchState, instr: HealthcheckCommand) -> None:
    """`HEALTHCHECK [options] CMD ...` or `HEALTHCHECK NONE`."""
    old = state.config.healthcheck
    if old is not None and old.test and old.test[0] != "NONE":
        state.session.output(f"Note: overriding previous HEALTHCHECK: [{' '.join(old.test)}]\n")
    health = Healthcheck(
        test=tuple(instr.test or ()), interval=instr.interval_ns, timeout=instr.timeout_ns,
        start_period=instr.start_period_ns, start_interval=instr.start_interval_ns, retries=instr.retries,
    )  # fmt: skip
    message = f"HEALTHCHECK {go_health(health)}"
    inherited = state.image.config.config.healthcheck if state.image is not None else None
    if inherited is not None:
        # What moby's legacy builder does by accident, and so what its images have: the step's container is
        # created with the state's config, the daemon fills the options it leaves unset (0) from the image's
        # healthcheck (daemon/commit.go merge()), and the state shares that struct (copyRunConfig copies
        # the pointer), so the filled-in options are committed. `HEALTHCHECK NONE` inherits them too. The
        # history, written before, shows the options as given.
        health = replace(health, **{f.name: getattr(inherited, f.name) for f in fields(health)
                                    if not getattr(health, f.name)})  # fmt: skip
    state.config = replace(state.config, healthcheck=health)
    state.commit_message(message)


_PORT = re.compile(r"(\d+)(?:-(\d+))?(?:/(\w+))?")


def dispatch_expose(state: DispatchState, instr: ExposeCommand) -> None:
    """`EXPOSE port[/proto] ...`: ports and ranges; a variable may expand to several words."""
    env = state.env()
    words = [word for port in instr.ports for word in state.session.lex.process_words(port, env)]
    ports = set(state.config.exposed_ports)
    for word in words:
        match = _PORT.fullmatch(word.rsplit(":", 1)[-1])
        if match is None:
            raise InvalidArgument(f"invalid containerPort: {word}")
        proto = (match[3] or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise InvalidArgument(f"invalid proto: {proto}")
        first, last = int(match[1]), int(match[2] or match[1])
        if last < first or last > 65535:
            raise InvalidArgument(f"invalid range specified for container port: {word}")
        ports.update(f"{port}/{proto}" for port in range(first, last + 1))
    state.config = replace(state.config, exposed_ports=tuple(sorted(ports)))
    state.commit_message("EXPOSE " + " ".join(words))


def dispatch_user(state: DispatchState, instr: UserCommand) -> None:
    """`USER user[:group]`."""
    user = state.expand(instr.user)
    state.config = replace(state.config, user=user)
    state.commit_message(f"USER {user}")


def dispatch_volume(state: DispatchState, instr: VolumeCommand) -> None:
    """`VOLUME path ...`."""
    volumes = [state.expand(volume) for volume in instr.volumes]
    if not all(volumes):
        raise InvalidArgument("VOLUME specified can not be an empty string")
    state.config = replace(state.config, volumes=tuple(sorted({*state.config.volumes, *volumes})))
    state.commit_message(f"VOLUME [{' '.join(volumes)}]")


def dispatch_stopsignal(state: DispatchState, instr: StopSignalCommand) -> None:
    """`STOPSIGNAL signal`: a name (`SIGTERM`, `TERM`) or a number."""
    name = state.expand(instr.signal)
    if not _valid_signal(name):
        raise InvalidArgument(f"Invalid signal: {name}")
    state.config = replace(state.config, stop_signal=name)
    state.commit_message(f"STOPSIGNAL {name}")


def _valid_signal(name: str) -> bool:
    """Return whether moby's signal.ParseSignal takes `name`: a positive number or a signal's name, SIG optional."""
    if name.isdigit():
        return int(name) > 0
    text = name.upper().removeprefix("SIG")
    return (
        text in {sig.name.removeprefix("SIG") for sig in signal.Signals}
        or re.fullmatch(r"RTMIN(\+\d+)?|RTMAX(-\d+)?", text) is not None
    )


def dispatch_arg(state: DispatchState, instr: ArgCommand) -> None:
    """`ARG name[=default] ...`: declare build args for this stage."""
    words = []
    for arg in instr.args:
        key = state.expand(arg.key)
        value = state.expand(arg.value) if arg.value is not None else None
        words.append(key if value is None else f"{key}={value}")
        state.args.declare(key, value)
    state.commit_message("ARG " + " ".join(words))


def dispatch_shell(state: DispatchState, instr: ShellCommand) -> None:
    """`SHELL ["exe", "arg"...]`: the shell of later shell forms."""
    state.config = replace(state.config, shell=tuple(instr.shell))
    state.commit_message(f"SHELL [{' '.join(instr.shell)}]")


def dispatch_copy(state: DispatchState, instr: CopyCommand) -> None:
    """`COPY [--from] [--chown] [--chmod] src... dest`."""
    _copy(state, instr, "COPY", from_=instr.from_, chown=instr.chown, chmod=instr.chmod)


def dispatch_add(state: DispatchState, instr: AddCommand) -> None:
    """`ADD [--chown] [--chmod] src... dest`: also URLs, and local tar archives extracted."""
    _copy(state, instr, "ADD", from_="", chown=instr.chown, chmod=instr.chmod)


def _copy(state: DispatchState, instr: CopyCommand | AddCommand, name: str, *, from_: str, chown: str,
          chmod: str) -> None:  # fmt: skip
    session = state.session
    dest = state.expand(instr.dest)
    chown, chmod, from_ = state.expand(chown), state.expand(chmod), state.expand(from_)
    mode = copier.parse_chmod(chmod) if chmod else None
    with ExitStack() as stack:
        tree, in_context = session.context.tree, True
        if from_:
            image = _image_for(session, from_)
            view = _empty_dir(session) if image is None else session.executor.view(image)
            tree, in_context = SourceTree(stack.enter_context(view)), False
        try:
            sources = _sources(state, instr, tree, in_context, dest)
        except InvalidArgument as err:
            raise InvalidArgument(f"{name} failed: {err}") from err
        if len(sources) > 1 and not dest.endswith("/"):
            raise InvalidArgument(f"When using {name} with more than one source file, "
                                  "the destination must be a directory and end with a /")  # fmt: skip
        hashes = [source.hash for source in sources]
        joined = hashlib.sha256(",".join(hashes).encode()).hexdigest()
        source_hash = hashes[0] if len(hashes) == 1 else f"multi:{joined}"
        flags = (f"--chown={chown} " if chown else "") + (f"--chmod={chmod} " if chmod else "")
        probe_config = replace(state.config, cmd=(*state.shell(), f"#(nop) {name} {flags}{source_hash} in {dest} "))
        key = state.probe(probe_config)
        if key is None:
            return
        target = copier.normalize_dest(state.config.working_dir, dest)
        with session.executor.file_step(state.image) as step:
            owner = copier.lookup_owner(step.root, chown) if chown else (None if from_ else (0, 0))
            copier.copy_sources(step.root, target, sources, owner, mode)
    state.commit(key, probe_config.cmd or (), step.layer)


def _sources(
    state: DispatchState, instr: CopyCommand | AddCommand, tree: SourceTree, in_context: bool, dest: str
) -> list[copier.Source]:
    """Return what COPY or ADD copies: paths and patterns in `tree`, downloads (ADD), heredocs."""
    session = state.session
    is_add = isinstance(instr, AddCommand)
    sources: list[copier.Source] = []
    for source in (state.expand(s) for s in instr.sources):
        if not copier.is_url(source):
            sources += copier.find_sources(tree, [source], in_context=in_context, extract=is_add)
            continue
        if not is_add:
            raise InvalidArgument("source can't be a URL for COPY")
        downloaded = copier.download(source, session.scratch_dir("download"), dest)
        session.output("\n")
        if isinstance(instr, AddCommand) and instr.checksum:
            copier.verify_checksum(downloaded, source, instr.checksum)
        sources.append(downloaded)
    if isinstance(instr, AddCommand) and instr.checksum and not any(copier.is_url(s) for s in instr.sources):
        raise InvalidArgument("checksum can't be specified for non-HTTP(S) sources")
    for heredoc in instr.heredocs:
        body = heredoc.content
        if heredoc.expand:
            body = ShellLex(session.lex.escape, raw_quotes=True).process_word(body, state.env())
        sources.append(copier.heredoc_source(session.scratch_dir("heredoc"), heredoc.name, body))
    if not sources:
        raise InvalidArgument("no source files were specified")
    return sources


_DISPATCHERS: dict[type, Callable[[DispatchState, Any], None]] = {
    AddCommand: dispatch_add,
    ArgCommand: dispatch_arg,
    CmdCommand: dispatch_cmd,
    CopyCommand: dispatch_copy,
    EntrypointCommand: dispatch_entrypoint,
    EnvCommand: dispatch_env,
    ExposeCommand: dispatch_expose,
    HealthcheckCommand: dispatch_healthcheck,
    LabelCommand: dispatch_label,
    OptionLabel: dispatch_label,
    MaintainerCommand: dispatch_maintainer,
    OnbuildCommand: dispatch_onbuild,
    RunCommand: dispatch_run,
    ShellCommand: dispatch_shell,
    StopSignalCommand: dispatch_stopsignal,
    UserCommand: dispatch_user,
    VolumeCommand: dispatch_volume,
    WorkdirCommand: dispatch_workdir,
}


def option_labels(labels: Mapping[str, str]) -> list[Instruction]:
    """Return the LABEL steps for the build's `--label`s, sorted by key (moby's buildLabelOptions)."""
    return [OptionLabel(labels=[KeyValue(key=k, value=labels[k])], original=f"LABEL {k}={labels[k]}")
            for k in sorted(labels)]  # fmt: skip
