"""A container created with its process deferred: made ready first, told what to run at `start`.

The engine keeps such containers warm for `docker run` (containers/engine/standby.py); here the
runtime alone: init applies the stand-in process's user, capabilities and limits at create, and
the process given at start (which must match them) runs with everything a process given at create
would get (its environment and HOME, working directory made if missing); one that cannot start
fails the start with Docker's words, leaving the container to delete.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from containers.engine.errors import InvalidArgument
from containers.engine.runtime import sync
from containers.engine.runtime.container import NativeRuntime
from containers.engine.runtime.spec import (
    SpecOpt,
    build_spec,
    with_env,
    with_mounts,
    with_process_args,
    with_terminal,
    with_user,
)
from tests.engine.runtime.bundles import bundle_spec, cgroups_path, make_bundle, make_rootfs, write_spec

pytestmark = pytest.mark.requires("root", "busybox")


@pytest.fixture
def runtime(state_root: Path) -> Iterator[NativeRuntime]:
    runtime = NativeRuntime(state_root / "deferred")
    yield runtime
    for state in runtime.list():
        runtime.delete(state.id, force=True)


def _created(runtime: NativeRuntime, directory: Path, container_id: str, *opts: SpecOpt) -> tuple[int, int]:
    """Create the container with a stand-in process; return the read ends of its stdout and stderr."""
    make_bundle(directory, container_id, with_process_args(["false"]), with_env(["STANDIN=1"]), *opts)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        runtime.create(container_id, directory, stdio=(stdin, out_w, err_w), deferred=True)
    finally:
        for fd in (stdin, out_w, err_w):
            os.close(fd)
    return out_r, err_r


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode()


def _process(*opts: object) -> dict[str, object]:
    """The process object the spec options make (the rest of the spec is the bundle's)."""
    return build_spec("unused", *opts)["process"]  # type: ignore[arg-type]


def test_the_process_given_at_start_runs_as_its_user_in_its_directory(runtime: NativeRuntime, tmp_path: Path) -> None:
    out, err = _created(runtime, tmp_path / "b", "deferred-runs", with_user(1000, 1000))
    assert runtime.state("deferred-runs").status.value == "created"
    process = _process(
        with_process_args(["sh", "-c", "echo $FOO $STANDIN; echo $HOME; id; pwd; grep CapEff /proc/self/status"]),
        with_env(["PATH=/bin", "FOO=given"]),
        with_user(1000, 1000),
    )
    process["cwd"] = "/made/at/start"
    runtime.start("deferred-runs", process)
    lines = _read_all(out).splitlines()
    assert lines[:4] == ["given", "/home/app", "uid=1000(app) gid=1000(app)", "/made/at/start"], _read_all(err)
    assert lines[4].split() == ["CapEff:", "0000000000000000"], "a non-root user keeps no effective capability"


def test_a_process_for_another_user_is_refused_and_the_container_stays_created(
    runtime: NativeRuntime, tmp_path: Path
) -> None:
    out, err = _created(runtime, tmp_path / "b", "deferred-root")
    process = _process(with_process_args(["id"]), with_env(["PATH=/bin"]), with_user(1000, 1000))
    with pytest.raises(InvalidArgument, match="made for another user"):
        runtime.start("deferred-root", process)
    assert runtime.state("deferred-root").status.value == "created"
    runtime.start("deferred-root", _process(with_process_args(["id", "-u"]), with_env(["PATH=/bin"])))
    assert _read_all(out) == "0\n"
    os.close(err)


def test_a_process_that_cannot_start_fails_the_start_with_dockers_words(runtime: NativeRuntime, tmp_path: Path) -> None:
    out, err = _created(runtime, tmp_path / "b", "deferred-fails")
    process = _process(with_process_args(["no-such-program"]), with_env(["PATH=/bin"]))
    with pytest.raises(sync.SyncError, match=r'exec: "no-such-program": executable file not found in \$PATH'):
        runtime.start("deferred-fails", process)
    assert _read_all(out) == ""
    runtime.delete("deferred-fails", force=True)
    assert runtime.list() == []
    os.close(err)


def test_a_container_created_as_usual_runs_the_specs_own_process(runtime: NativeRuntime, tmp_path: Path) -> None:
    """The usual create runs the spec's own process; start reads init's one byte as before."""
    directory = tmp_path / "b"
    make_rootfs(directory / "rootfs")
    write_spec(directory, bundle_spec("not-deferred", with_process_args(["sh", "-c", "echo $0 own"])))
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    runtime.create("not-deferred", directory, stdio=(0, out_w, 2))
    os.close(out_w)
    runtime.start("not-deferred")
    assert _read_all(out_r) == "sh own\n"


@pytest.mark.parametrize("deferred", [True, False])
def test_a_step_that_fails_fails_the_create_with_inits_words_and_leaves_nothing(
    runtime: NativeRuntime, state_root: Path, deferred: bool
) -> None:
    missing = state_root / "no-such-source"
    mounts = with_mounts([{"destination": "/data", "type": "bind", "source": str(missing), "options": ["rbind"]}])
    bundle = make_bundle(state_root / "bundle", "broken", with_process_args(["true"]), mounts)
    before = _running()

    with pytest.raises(sync.SyncError, match=rf"^mount {missing} on .*/data .*: no such file or directory$"):
        runtime.create("broken", bundle, deferred=deferred)

    assert runtime.list() == [] and not (runtime.root / "broken").exists()
    assert not Path("/sys/fs/cgroup/pids", cgroups_path("broken").lstrip("/")).exists(), "its cgroup is removed"
    assert _running() - before == set(), "neither webengine-init nor the container's init is left running"


def _running() -> set[int]:
    """The processes that run (zombies aside: the monitor, a subreaper, reaps what a failed create leaves)."""
    running = set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except FileNotFoundError:
            continue
        if "State:\tZ" not in status:
            running.add(int(entry))
    return running


def test_a_terminal_without_a_console_socket_is_refused_before_anything_runs(
    runtime: NativeRuntime, state_root: Path
) -> None:
    bundle = make_bundle(state_root / "bundle", "tty", with_process_args(["sh"]), with_terminal(True))
    before = _running()

    with pytest.raises(InvalidArgument, match="^process.terminal is set but no console socket was given$"):
        runtime.create("tty", bundle)

    assert runtime.list() == [] and _running() - before == set()
