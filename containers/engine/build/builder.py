"""Build an image from a context and its Dockerfile: the entry point of `docker build` (legacy builder).

    result = Builder(engine).build(context_tar, BuildOptions(tags=("app:1",)), output=print_piece)

The context (context.py) is unpacked, the Dockerfile parsed (parser.py, instructions.py), then
each stage is dispatched instruction by instruction (dispatch.py), up to `target`, and the
result tagged. `output` receives what `DOCKER_BUILDKIT=0 docker build` prints, piece by piece,
each ending with a newline, as it happens:

    Step 1/3 : FROM busybox
     ---> 3f57d9401f8d
    Step 2/3 : RUN echo hi
     ---> Running in 0b1c2d3e4f5a
    hi
    Removing intermediate container 0b1c2d3e4f5a
     ---> 5e6f7a8b9c0d
    Step 3/3 : CMD ["sh"]
     ---> Using cache
     ---> 6a7b8c9d0e1f
    Successfully built 6a7b8c9d0e1f
    Successfully tagged app:1

Where this differs from moby: metadata steps (ENV, CMD, LABEL, ...) and file steps (COPY, ADD,
WORKDIR) make no container, so they print no `Running in` and `Removing intermediate container`
lines; and the container of a failed step is removed unless `remove` is off (moby keeps it unless
`force_remove`), so that a failed build leaves nothing behind.

Errors: DockerfileError for a Dockerfile that does not parse; BuildStepError (with the step's
lines, and a failed RUN's exit code) for a step that fails; BuildCancelled when `cancel` is set;
ContextTooLarge and InvalidArgument for a context that is refused. Whatever fails, the build's
own files and the failed step's container are removed; images of finished steps stay, as cache.
"""

from __future__ import annotations

import secrets
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from containers.engine.build.buildargs import BuildArgs
from containers.engine.build.cache import BuildCache
from containers.engine.build.context import BuildContext
from containers.engine.build.dispatch import (
    BuildStepError,
    DispatchState,
    Session,
    dispatch,
    dispatch_from,
    option_labels,
)
from containers.engine.build.executor import BuildCancelled, Executor
from containers.engine.build.expand import ShellLex
from containers.engine.build.instructions import ArgCommand, Instruction, parse_dockerfile
from containers.engine.build.parser import parse
from containers.engine.engine import Engine
from containers.engine.errors import DockerfileError, EngineError, InvalidArgument, InvalidReference
from containers.engine.images.manifest import host_platform
from containers.engine.images.reference import parse_reference

__all__ = ["BuildCancelled", "BuildOptions", "BuildResult", "BuildStepError", "Builder", "StepResult"]


@dataclass(frozen=True)
class BuildOptions:
    """What `docker build` asks for (the query of `POST /build`)."""

    dockerfile: str = "Dockerfile"
    tags: tuple[str, ...] = ()
    build_args: Mapping[str, str | None] = field(default_factory=dict)
    target: str = ""
    no_cache: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    remove: bool = True
    force_remove: bool = False
    context_limit: int = 1 << 30
    quiet: bool = False


@dataclass(frozen=True)
class StepResult:
    """One step as it was printed: its number, its instruction, the image after it, whether the cache served it."""

    number: int
    instruction: str
    image_id: str
    cached: bool


@dataclass(frozen=True)
class BuildResult:
    """The image built, the tags given to it, and its steps."""

    image_id: str
    tags: tuple[str, ...]
    steps: tuple[StepResult, ...]


class Builder:
    """Build Dockerfiles on one engine; the cache under `<root>/build-cache` is shared by every build."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.executor = Executor(engine)
        self.cache = BuildCache(engine.config.root / "build-cache")

    def build(
        self,
        context: BinaryIO,
        options: BuildOptions,
        output: Callable[[str], None],
        cancel: threading.Event | None = None,
    ) -> BuildResult:
        """Build the context's Dockerfile; return the image. See the module docstring for output and errors."""
        tags = [parse_reference(tag) for tag in options.tags]
        for tag in tags:
            if tag.digest:
                raise InvalidReference(f"refusing to create a tag with a digest reference: {tag.familiar()}")
        write = (lambda _piece: None) if options.quiet else output
        workdir = self.engine.config.root / "build" / secrets.token_hex(8)
        workdir.mkdir(parents=True, mode=0o700)
        try:
            received = BuildContext.receive(context, workdir / "context", options.dockerfile, options.context_limit)
            run = _Run(self, options, received, workdir, write, cancel)
            image_id = run.execute()
            steps = tuple(run.steps)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        write(f"Successfully built {_short(image_id)}\n")
        for tag in tags:
            self.engine.images.tag(image_id, tag)
            write(f"Successfully tagged {tag.familiar()}\n")
        if options.quiet:
            output(image_id + "\n")
        return BuildResult(image_id, tuple(tag.familiar() for tag in tags), steps)


class _Run:
    """One build in progress: its session, its step counter, and the steps done."""

    def __init__(
        self,
        builder: Builder,
        options: BuildOptions,
        context: BuildContext,
        workdir: Path,
        output: Callable[[str], None],
        cancel: threading.Event | None,
    ) -> None:
        parsed = parse(context.dockerfile)
        self.meta_args, self.stages = parse_dockerfile(context.dockerfile)
        self.options = options
        self.output = output
        self.warnings = parsed.warnings
        platform = host_platform()
        self.session = Session(
            executor=builder.executor, cache=builder.cache, context=context, output=output,
            lex=ShellLex(parsed.escape), platform=platform, workdir=workdir,
            no_cache=options.no_cache, keep_containers=not (options.remove or options.force_remove), cancel=cancel,
        )  # fmt: skip
        self.args = BuildArgs(options.build_args)
        self.steps: list[StepResult] = []
        self.number = 0
        self.total = 0

    def execute(self) -> str:
        """Run every stage up to the target; return the final image's ID."""
        stages = self.stages
        if self.options.target:
            index = next((i for i, s in enumerate(stages) if s.name == self.options.target.lower()), None)
            if index is None:
                raise InvalidArgument(f'target stage "{self.options.target}" could not be found')
            stages = stages[: index + 1]
        commands = {id(stage): list(stage.commands) for stage in stages}
        commands[id(stages[-1])] += option_labels(self.options.labels)
        self.total = len(self.meta_args) + len(stages) + sum(len(c) for c in commands.values())
        for warning in self.warnings:
            self.output(f"[WARNING]: {warning}\n")
        if self.warnings:
            self.output("[WARNING]: Empty continuation lines will become errors in a future release.\n")
        for arg in self.meta_args:
            self._step(arg.original)
            with _located(arg.location):
                self._meta_arg(arg)
        state: DispatchState | None = None
        for stage in stages:
            self._step(stage.original)
            with self._step_containers(), _located(stage.location):
                state = dispatch_from(self.session, stage, self.args)
            self._done(stage.original, state)
            for instr in commands[id(stage)]:
                self._dispatch(state, instr)
            self.args.referenced |= state.args.referenced
            self.session.stages.append((state.name, state.image))
        unused = self.args.unused()
        if unused:
            self.output(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n")
        if state is None or state.image is None:
            raise InvalidArgument("No image was generated. Is your Dockerfile empty?")
        return state.image.id

    def _meta_arg(self, arg: ArgCommand) -> None:
        """Declare an ARG before the first FROM: expanded with the args before it, usable by FROM."""
        lex, env = self.session.lex, self.args.values()
        for item in arg.args:
            value = lex.process_word(item.value, env) if item.value is not None else None
            key = lex.process_word(item.key, env)
            self.args.declare(key, value)
            self.args.meta[key] = value

    def _dispatch(self, state: DispatchState, instr: Instruction) -> None:
        if self.session.cancel is not None and self.session.cancel.is_set():
            raise BuildCancelled()
        self._step(instr.original)
        state.cached = False
        with self._step_containers(), _located(instr.location):
            dispatch(state, instr)
        self._done(instr.original, state)

    @contextmanager
    def _step_containers(self) -> Iterator[None]:
        """Remove the containers of the step when it ends, as `remove` and `force_remove` say (always if cancelled)."""
        remove = self.options.remove or self.options.force_remove
        try:
            yield
        except BuildCancelled:
            self._remove_containers(announce=False)
            raise
        except BaseException:
            if remove:
                self._remove_containers(announce=True)
            raise
        if remove:
            self._remove_containers(announce=True)
        self.session.containers.clear()

    def _remove_containers(self, *, announce: bool) -> None:
        for container in self.session.containers:
            self.session.executor.remove(container)
            if announce:
                self.output(f"Removing intermediate container {container[:12]}\n")
        self.session.containers.clear()

    def _step(self, text: str) -> None:
        self.number += 1
        self.output(f"Step {self.number}/{self.total} : {text}\n")

    def _done(self, text: str, state: DispatchState) -> None:
        self.output(f" ---> {_short(state.image_id)}\n")
        self.steps.append(StepResult(self.number, text, state.image_id, state.cached))


@contextmanager
def _located(lines: tuple[int, int]) -> Iterator[None]:
    """Give an error of a step the step's Dockerfile lines; other engine errors become a BuildStepError."""
    try:
        yield
    except BuildCancelled:
        raise
    except DockerfileError as err:
        if err.line_start:
            raise
        raise DockerfileError(err.message, *lines) from err
    except BuildStepError as err:
        if err.line_start:
            raise
        raise BuildStepError(err.message, *lines, code=err.code) from err
    except EngineError as err:
        raise BuildStepError(str(err), *lines) from err


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]
