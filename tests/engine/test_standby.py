"""Standby containers (containers/engine/standby.py): made after a `keep_warm` start, adopted by a
create of the same image and settings, and then indistinguishable from a container made on the spot.

On the real kernel, through the engine: what the adopted container's process sees, what is not
adopted, the errors a start can still meet, and that a standby given up leaves nothing behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from containers.engine import container_fs
from containers.engine.engine import Engine
from containers.engine.errors import FailedPrecondition, ImageInUse, NotFound
from containers.engine.lifecycle import STANDBY_FILL_DELAY, Record
from containers.engine.runtime.state import process_start_time
from containers.engine.shim import client as shim_client
from containers.engine.shim import protocol as shim_protocol
from containers.engine.shim.logfile import read_log
from containers.engine.standby import PER_IMAGE, Standby, Standbys
from tests.engine.conftest import busybox_engine
from tests.servers import wait_for

pytestmark = pytest.mark.requires("root", "overlayfs", "busybox")

PROBE = "echo $FOO; hostname; cat /etc/hostname; id; pwd; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status"


@pytest.fixture
def engine(state_root: Path) -> Iterator[Engine]:
    with busybox_engine(state_root) as engine:
        yield engine


def _config(cmd: list[str], **more: object) -> dict[str, object]:
    return {"Image": "busybox", "Cmd": cmd, **more}


def _run(engine: Engine, config: dict[str, object], host_config: dict[str, object] | None = None,
         keep_warm: bool = False) -> tuple[Record, int, str]:  # fmt: skip
    """Create, start (keeping warm if asked) and wait; return the record, exit code and output."""
    record = engine.containers.create(config, host_config or {})
    engine.containers.start(record.id, keep_warm=keep_warm)
    state = engine.containers.wait(record.id, timeout=20)
    out = "".join(r.text.decode() for r in read_log(engine.containers.log_path(record.id)))
    return record, state.exit_code, out


def _standbys(engine: Engine) -> list[Standby]:
    """Wait for the standbys a `keep_warm` start leaves behind (PER_IMAGE of them), and return them."""
    image = engine.images.get("busybox").id
    wait_for(lambda: len(engine.containers.standbys.waiting(image)) == PER_IMAGE, 10, "standbys of busybox")
    return engine.containers.standbys.waiting(image)


def _mounted(path: Path) -> bool:
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == str(path) for line in f)


def _gone(engine: Engine, standby: Standby) -> bool:
    directory = engine.config.containers_root / standby.id
    return process_start_time(standby.monitor_pid) is None and not _mounted(directory / "rootfs")


def test_a_create_adopts_the_standby_and_its_process_sees_what_a_new_container_would(engine: Engine) -> None:
    settings = {"Env": ["FOO=first"], "User": "1000:1000", "WorkingDir": "/made/here"}
    cold, code, cold_out = _run(engine, _config(["sh", "-c", PROBE], **settings), keep_warm=True)
    assert code == 0, cold_out
    ids = {s.id for s in _standbys(engine)}
    assert not ids & {r.id for r in engine.containers.list()}, "docker ps never shows a standby"

    warm, code, warm_out = _run(engine, _config(["sh", "-c", PROBE], **{**settings, "Env": ["FOO=second"]}))
    assert warm.id in ids, "the create took a standby"
    assert code == 0, warm_out
    lines = warm_out.splitlines()
    assert lines[:3] == ["second", warm.id[:12], warm.id[:12]], "its own environment and hostname"
    assert lines[3:] == [
        "uid=1000 gid=1000 groups=1000", "/made/here", *cold_out.splitlines()[5:],
    ], "the same user, new working directory, capabilities and confinement as a container made on the spot"
    assert engine.containers.state(warm.id).status == "exited"


def test_an_adopted_container_has_the_spec_it_would_have_been_made_with(engine: Engine) -> None:
    settings = {"Env": ["FOO=first"], "User": "1000:1000", "Labels": {"a": "b"}}
    _run(engine, _config(["true"], **settings), {"Memory": 64 << 20}, keep_warm=True)
    ids = {s.id for s in _standbys(engine)}
    other = {"Env": ["FOO=second", "HOME=/elsewhere"], "WorkingDir": "/w", "Labels": {"c": "d"}}
    record = engine.containers.create(_config(["sh", "-c", "exit 7"], **{**settings, **other}), {"Memory": 64 << 20})
    assert record.id in ids, "the create took a standby"
    directory = engine.config.containers_root / record.id
    adopted = json.loads((directory / "config.json").read_text())
    made_now = engine.containers._spec(record, str(directory / "rootfs"))
    assert adopted == made_now, "the spec it would have been made with, not the standby's"
    assert adopted["process"]["args"] == ["sh", "-c", "exit 7"] and "HOME=/elsewhere" in adopted["process"]["env"]
    engine.containers.remove(record.id)


def test_what_waits_in_a_standby_is_the_small_init_program_not_an_interpreter(engine: Engine) -> None:
    _run(engine, _config(["true"]), keep_warm=True)
    for standby in _standbys(engine):
        pid = engine.containers.runtime.state(standby.id).pid
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        assert status["Name"].strip() == "webengine-init"
        assert int(status["VmRSS"].split()[0]) < 2048, "a standby holds kilobytes, not an interpreter's megabytes"


def test_other_settings_are_not_adopted_and_the_standby_waits_on(engine: Engine) -> None:
    _run(engine, _config(["true"]), keep_warm=True)
    standbys = _standbys(engine)
    for config, host_config in [
        (_config(["true"]), {"NetworkMode": "host"}),
        (_config(["true"]), {"Memory": 64 << 20}),
        (_config(["true"], Hostname="named"), {}),
        (_config(["true"], Tty=True), {}),
        (_config(["true"]), {"ReadonlyRootfs": True}),
        (_config(["true"], User="1000"), {}),
    ]:
        record = engine.containers.create(config, host_config)
        assert record.id not in {s.id for s in standbys}, f"{config} {host_config} is not what they were made for"
        engine.containers.remove(record.id)
    assert sorted(engine.containers.standbys.waiting(standbys[0].image), key=str) == sorted(standbys, key=str)


def test_a_run_that_takes_a_standby_leaves_one_made_in_its_place_and_no_more(engine: Engine) -> None:
    _run(engine, _config(["true"]), keep_warm=True)
    first = {s.id for s in _standbys(engine)}
    record, _, _ = _run(engine, _config(["true"]), keep_warm=True)
    assert record.id in first
    image = engine.images.get("busybox").id
    wait_for(lambda: len(engine.containers.standbys.waiting(image)) == PER_IMAGE, 10, "the standby in its place")
    time.sleep(STANDBY_FILL_DELAY + 0.3)  # a second one would be made by now
    now = {s.id for s in engine.containers.standbys.waiting(image)}
    assert len(now) == PER_IMAGE and len(now - first) == 1, "the one left and one new, as many as before"


def test_runs_with_other_settings_get_standbys_of_their_own(engine: Engine) -> None:
    _run(engine, _config(["true"]), keep_warm=True)
    plain = {s.id for s in _standbys(engine)}
    image = engine.images.get("busybox").id
    _run(engine, _config(["true"], User="1000"), keep_warm=True)
    wait_for(lambda: len(engine.containers.standbys.waiting(image)) == 2 * PER_IMAGE, 10, "standbys of both kinds")
    made_for_user = {s.id for s in engine.containers.standbys.waiting(image)} - plain
    record, code, out = _run(engine, _config(["id", "-u"], User="1000"))
    assert record.id in made_for_user, "a run with -u takes a standby made for -u, though others of the image wait"
    assert (code, out) == (0, "1000\n")


def test_capabilities_are_those_the_standby_was_made_with(engine: Engine) -> None:
    net_admin = {"CapAdd": ["NET_ADMIN"]}
    _run(engine, _config(["true"]), net_admin, keep_warm=True)
    ids = {s.id for s in _standbys(engine)}
    plain = engine.containers.create(_config(["true"]))
    assert plain.id not in ids, "a standby's init has its capabilities already: only a run with the same takes it"
    engine.containers.remove(plain.id)
    record, code, out = _run(engine, _config(["grep", "CapEff", "/proc/self/status"]), net_admin)
    assert record.id in ids and code == 0
    assert int(out.split()[1], 16) == 0xA80425FB | 1 << 12, "Docker's set and NET_ADMIN"


def test_a_process_that_cannot_start_fails_the_start_as_on_a_new_container(engine: Engine) -> None:
    _run(engine, _config(["true"]), keep_warm=True)
    standbys = {s.id: s for s in _standbys(engine)}
    record = engine.containers.create(_config(["no-such-program"]), {"AutoRemove": True})
    standby = standbys[record.id]
    with pytest.raises(FailedPrecondition, match=r'exec: "no-such-program": executable file not found in \$PATH'):
        engine.containers.start(record.id)
    with pytest.raises(NotFound):
        engine.containers.get(record.id)
    wait_for(lambda: _gone(engine, standby), 10, "the failed container to be released")


def test_removing_an_adopted_container_before_its_start_releases_everything(engine: Engine) -> None:
    _run(engine, _config(["true"]), keep_warm=True)
    standbys = {s.id: s for s in _standbys(engine)}
    record = engine.containers.create(_config(["true"]))
    standby = standbys[record.id]
    assert engine.containers.state(record.id).status == "created"
    engine.containers.remove(record.id)
    assert _gone(engine, standby)
    assert not (engine.config.containers_root / standby.id).exists()
    assert record.id not in {s.id for s in engine.containers.standbys.all()}


def test_an_image_with_a_standby_can_still_be_removed(engine: Engine) -> None:
    engine.images.tag("busybox", "spare:latest")
    _run(engine, _config(["true"]), keep_warm=True)
    standbys = _standbys(engine)
    for record in engine.containers.list():
        engine.containers.remove(record.id)
    engine.images.remove("spare:latest")
    removed = engine.images.remove("busybox")
    assert {"Deleted": standbys[0].image} in removed, "no standby holds the image back"
    assert all(_gone(engine, s) for s in standbys)


def test_a_standby_is_no_container_of_its_image_until_a_create_adopts_it(engine: Engine) -> None:
    def containers_of_busybox() -> int:
        (usage,) = [u for u in engine.images.usage().images if u.id == engine.images.get("busybox").id]
        return usage.containers

    _run(engine, _config(["true"]), keep_warm=True)
    _standbys(engine)
    assert containers_of_busybox() == 1, "docker system df counts the run's container, not the standbys"
    adopted = engine.containers.create(_config(["true"]), {})
    assert containers_of_busybox() == 2
    with pytest.raises(ImageInUse):
        engine.images.remove("busybox")  # as for any created container that uses it
    engine.containers.remove(adopted.id)


def test_a_standby_nobody_adopts_is_released_when_its_time_is_up(state_root: Path) -> None:
    with busybox_engine(state_root, standby_ttl=1.0) as engine:
        _run(engine, _config(["true"]), keep_warm=True)
        standbys = _standbys(engine)
        wait_for(lambda: all(_gone(engine, s) for s in standbys), 10, "the standbys to be released")
        assert not any((engine.config.containers_root / s.id).exists() for s in standbys)
        assert engine.containers.standbys.all() == []


def test_draining_gives_up_every_standby(engine: Engine) -> None:
    _run(engine, _config(["true"]), keep_warm=True)
    standbys = _standbys(engine)
    engine.containers.standbys.drain()
    assert all(_gone(engine, s) for s in standbys)
    assert not any((engine.config.containers_root / s.id).exists() for s in standbys)
    assert os.listdir(engine.config.containers_root / ".standby") == []
    _run(engine, _config(["true"]), keep_warm=True)
    time.sleep(STANDBY_FILL_DELAY + 0.3)
    assert engine.containers.standbys.all() == [], "a server that is stopping makes no more"


def test_standbys_that_die_as_soon_as_they_are_made_are_not_made_again_and_again(state_root: Path) -> None:
    # The seam: a fill that made a standby each time and wanted another (True): the last was gone at once.
    standbys = Standbys(state_root / "containers", ttl=60.0, release_orphan=lambda _: None)
    made: list[int] = []

    def fill() -> bool:
        made.append(1)
        return len(made) < 10  # ends an endless fill, for the assertion to tell

    standbys.fill_in_background("busybox", fill)
    standbys.release()  # once the fill is over
    assert len(made) == PER_IMAGE, "as many as a run may leave behind, then the next run's turn"


def test_a_standby_taken_while_the_fill_runs_is_made_again_by_it(state_root: Path) -> None:
    # The seam: a fill that made the one standby wanted when it looked, while the next run took another.
    standbys = Standbys(state_root / "containers", ttl=60.0, release_orphan=lambda _: None)
    looks: list[int] = []
    looking, taken = threading.Event(), threading.Event()

    def fill() -> bool:
        looks.append(1)
        if len(looks) == 1:
            looking.set()
            taken.wait(10)
        return False

    standbys.fill_in_background("busybox", fill)
    assert looking.wait(10)
    standbys.fill_in_background("busybox", fill)  # the next run's start, which took a standby
    taken.set()
    standbys.release()  # once the fill is over
    assert len(looks) == 2, "it looked again, and made the one taken meanwhile"


def test_a_standby_whose_monitor_was_killed_is_released_all_the_same(engine: Engine) -> None:
    _run(engine, _config(["true"]), keep_warm=True)
    standby = _standbys(engine)[0]
    init_pid = engine.containers.runtime.state(standby.id).pid
    os.kill(standby.monitor_pid, signal.SIGKILL)
    wait_for(lambda: process_start_time(standby.monitor_pid) is None, 10, "the monitor to die")
    engine.containers.standbys.drain()
    assert _gone(engine, standby)
    assert process_start_time(init_pid) is None, "its init went with it"
    assert not (engine.config.containers_root / standby.id).exists()


def test_a_container_removed_at_its_exit_is_gone_at_once_and_its_image_can_go_next(engine: Engine) -> None:
    """`docker run --rm img; docker rmi img`: the record goes before the wait answers, the rest just after."""
    maker, _, _ = _run(engine, _config(["touch", "/made"]))
    image = container_fs.commit(engine.containers, maker.id, "removable:1")
    engine.containers.remove(maker.id)
    record = engine.containers.create({"Image": "removable:1", "Cmd": ["true"]}, {"AutoRemove": True})
    stream = engine.containers.start(record.id, attach={"stdin": False, "stdout": True, "stderr": True})
    assert stream is not None
    with stream:
        stream.collect()
    with pytest.raises(NotFound):
        engine.containers.get(record.id)
    assert {"Deleted": image.id} in engine.images.remove("removable:1"), "nothing holds the image any more"
    directory = engine.config.containers_root / record.id
    assert not directory.exists() and not _mounted(directory / "rootfs")
    assert os.listdir(engine.config.containers_root / ".removing") == []


def test_a_wait_that_comes_after_a_removed_containers_exit_is_answered_before_its_release(engine: Engine) -> None:
    """A `docker run --rm` whose wait reaches the monitor just after the exit: not held up by the cleanup."""
    record = engine.containers.create(_config(["sleep", "0.3"]), {"AutoRemove": True})
    directory = engine.config.containers_root / record.id
    engine.containers.start(record.id)
    lock = os.open(engine.config.snapshots_root / "metadata.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the release, which removes the snapshot, waits for this
        wait_for(lambda: not (directory / "container.json").exists(), 10, "the container to be forgotten")
        time.sleep(0.1)  # its monitor has answered and is releasing
        started = time.monotonic()
        with pytest.raises((OSError, ValueError)):
            _, sock = shim_client.request(directory / "monitor.sock", {"op": "wait"}, timeout=5)
            with sock:
                shim_protocol.read_line(sock)
        assert time.monotonic() - started < 1, "told at once that the monitor takes no more waiters"
    finally:
        os.close(lock)
    wait_for(lambda: not directory.exists(), 10, "the release to finish once the lock is free")
