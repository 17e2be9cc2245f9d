"""Watching a process by its pid (runtime/state.py `wait_exited`): monitors, containers' inits."""

from __future__ import annotations

import subprocess
import time

from containers.engine.runtime.state import wait_exited


def test_a_process_is_seen_to_exit_when_it_exits_not_when_the_time_is_up() -> None:
    process = subprocess.Popen(["sleep", "0.2"])
    try:
        started = time.monotonic()
        assert wait_exited(process.pid, timeout=30)
        assert time.monotonic() - started < 10, "woken by the exit"
    finally:
        process.wait()
    assert wait_exited(process.pid, timeout=30), "a process gone already has exited"


def test_a_process_that_runs_on_is_reported_running_once_the_time_is_up() -> None:
    process = subprocess.Popen(["sleep", "30"])
    try:
        assert not wait_exited(process.pid, timeout=0.1)
    finally:
        process.kill()
        process.wait()
