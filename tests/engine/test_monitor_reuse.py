"""A monitor whose container was removed at its exit waits for the next container (shim/server.py)."""

from __future__ import annotations

import json
import os
import signal

import pytest

from containers.engine.engine import Engine
from containers.engine.runtime.state import process_start_time
from containers.engine.shim import client as shim_client
from containers.engine.shim.logfile import read_log
from containers.engine.shim.server import IDLE_MAX
from tests.servers import wait_for

pytestmark = pytest.mark.requires("root", "overlayfs", "busybox")


def _monitor_of(engine: Engine, container_id: str) -> int:
    return int(json.loads((engine.config.containers_root / container_id / "monitor.json").read_text())["monitor_pid"])


def _waiting(engine: Engine) -> list[int]:
    """The monitors that wait for a container, as the shim server tells."""
    reply, sock = shim_client.request(engine.containers.shim.socket_path, {"op": "ping"}, timeout=5)
    sock.close()
    return list(reply["waiting"])


def _start(engine: Engine, command: list[str], removed: bool = True) -> tuple[str, int]:
    """Start a container (removed at its exit unless told); return its ID and its monitor's pid.

    A container removed at its exit must run a moment, for its monitor.json to be read.
    """
    record = engine.containers.create({"Image": "busybox", "Cmd": command}, {"AutoRemove": removed})
    engine.containers.start(record.id)
    return record.id, _monitor_of(engine, record.id)


def _one_waiting(engine: Engine) -> int:
    """Run a container removed at its exit; return its monitor once it waits for the next one."""
    container_id, pid = _start(engine, ["sleep", "0.2"])
    engine.containers.wait(container_id, timeout=20)
    wait_for(lambda: pid in _waiting(engine), 10, "the monitor to wait for the next container")
    return pid


def test_the_monitor_of_a_container_removed_at_its_exit_supervises_the_next_one(engine: Engine) -> None:
    first = _one_waiting(engine)
    assert len(os.listdir(f"/proc/{first}/fd")) == 4, "nothing of the last container: stdio and a socket to the server"
    container_id, pid = _start(engine, ["sh", "-c", "echo hello; echo oops >&2; exit 3"], removed=False)
    assert pid == first
    assert engine.containers.wait(container_id, timeout=20).exit_code == 3
    lines = [(r.stream, r.text) for r in read_log(engine.containers.log_path(container_id))]
    assert sorted(lines) == [("stderr", b"oops\n"), ("stdout", b"hello\n")]


def test_a_monitor_whose_container_stays_exits_after_it(engine: Engine) -> None:
    first = _one_waiting(engine)
    container_id, pid = _start(engine, ["true"], removed=False)
    assert pid == first
    engine.containers.wait(container_id, timeout=20)
    wait_for(lambda: process_start_time(first) is None, 10, "the monitor of a container that stays to exit")
    assert first not in _waiting(engine)
    engine.containers.remove(container_id)


def test_the_monitor_of_a_container_that_stays_is_not_kept(engine: Engine) -> None:
    container_id, pid = _start(engine, ["true"], removed=False)
    engine.containers.wait(container_id, timeout=20)
    wait_for(lambda: process_start_time(pid) is None, 10, "the monitor to exit")
    assert _waiting(engine) == []
    engine.containers.remove(container_id)


def test_a_waiting_monitor_that_was_killed_is_passed_over(engine: Engine) -> None:
    first = _one_waiting(engine)
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: process_start_time(first) is None, 10, "the monitor to die")
    container_id, pid = _start(engine, ["sh", "-c", "sleep 0.2; exit 4"])
    assert pid != first
    assert engine.containers.wait(container_id, timeout=20).exit_code == 4


def test_at_most_a_few_wait_and_the_servers_shutdown_lets_them_go(engine: Engine) -> None:
    started = [_start(engine, ["sleep", "0.5"]) for _ in range(IDLE_MAX + 2)]
    for container_id, _ in started:
        engine.containers.wait(container_id, timeout=20)
    pids = {pid for _, pid in started}
    assert len(pids) == IDLE_MAX + 2
    wait_for(lambda: _running(pids) == set(_waiting(engine)), 10, "the monitors beyond the few kept to exit")
    assert len(_waiting(engine)) == IDLE_MAX
    engine.containers.shim.shutdown()
    assert not _running(pids), "the server's shutdown ends the monitors that wait"


def _running(pids: set[int]) -> set[int]:
    return {pid for pid in pids if process_start_time(pid) is not None}
