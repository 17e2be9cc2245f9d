"""The wait route's loop (containers/dockerapi/container_routes.py), without a server: the engine's
answers are given in turn, at the one seam where the route reads them."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from containers.dockerapi import container_routes
from containers.engine.lifecycle import ZERO_TIME, State

ID = "c" * 64


def _exited(code: int, finished_at: str) -> State:
    return State("exited", False, False, False, False, 0, code, "", "2026-11-29T05:00:00Z", finished_at)


class _Engine:
    """The container as a start of it goes: each `state()` reads the next state, then the last again."""

    def __init__(self, states: list[State], exit_state: State) -> None:
        self.states = iter(states)
        self.last = states[-1]
        self.exit_state = exit_state

    def state(self, container_id: str) -> State:
        self.last = next(self.states, self.last)
        return self.last

    def wait(self, container_id: str) -> State:
        self.last = self.exit_state
        return self.exit_state


@pytest.fixture
def restarted(monkeypatch: pytest.MonkeyPatch) -> Iterator[State]:
    """An exited container (code 3) started again: its status reads "created" a moment, then running;
    it exits with 5."""
    before = _exited(3, "2026-11-29T05:00:01Z")
    starting = State("created", False, False, False, False, 0, 0, "", ZERO_TIME, ZERO_TIME)
    running = State("running", True, False, False, False, 42, 0, "", "2026-11-29T05:00:02Z", ZERO_TIME)
    engine = _Engine([starting, running], _exited(5, "2026-11-29T05:00:03Z"))
    monkeypatch.setattr(container_routes, "_containers", lambda: engine)
    yield before


def test_a_next_exit_wait_is_not_answered_by_the_moment_a_start_reads_as_created(restarted: State) -> None:
    started = time.monotonic()
    answer = container_routes._wait_for(ID, "next-exit", restarted, 0, time.time_ns(), lambda: False)
    assert answer == {"StatusCode": 5, "Error": None}, "the run's exit code, not the 0 of a created container"
    assert time.monotonic() - started < 5


def test_a_not_running_wait_is_answered_at_once(restarted: State) -> None:
    answer = container_routes._wait_for(ID, "not-running", restarted, 0, time.time_ns(), lambda: False)
    assert answer == {"StatusCode": 0, "Error": None}, "a container that is not running ends it, as moby's"
