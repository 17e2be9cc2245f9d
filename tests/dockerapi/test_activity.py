"""The API server's memory of runs (containers/dockerapi/state.py), without a server: what it does after them."""

from __future__ import annotations

import threading
from collections.abc import Callable

from containers.dockerapi.state import AFTER_RUN_S, Activity


def _recorder() -> tuple[threading.Event, list[str], Callable[[], None]]:
    done, seen = threading.Event(), []

    def work() -> None:
        seen.append("done")
        done.set()

    return done, seen, work


def test_work_after_a_run_waits_for_its_attach_to_come_and_go() -> None:
    """A create's row: written once `docker run`'s attach has had the whole run, not while it streams."""
    activity = Activity()
    done, seen, work = _recorder()
    activity.after_run("a" * 64, work, expect_attach=True)
    pending = activity.expect_start("a" * 64, {"stdout": True})
    assert not done.wait(AFTER_RUN_S / 5), "not before the attach has come and gone"
    activity.end("a" * 64, 0, pending)
    assert done.wait(AFTER_RUN_S), "right after the attach ends"
    assert seen == ["done"]


def test_work_after_a_run_waits_for_its_wait_to_be_answered_too() -> None:
    """A start's audit record: written once `docker run`'s wait has its answer, not while the answer is due."""
    activity = Activity()
    done, seen, work = _recorder()
    with activity.waiting("f" * 64):
        activity.after_run("f" * 64, work)
        assert not done.wait(AFTER_RUN_S / 5), "not while the wait is under way"
    assert done.wait(AFTER_RUN_S), "right after the wait's answer"
    assert seen == ["done"]


def test_work_after_a_run_is_done_at_once_without_an_attach_and_at_the_latest_after_a_moment() -> None:
    activity = Activity()
    started, _, start_work = _recorder()
    activity.after_run("b" * 64, start_work)
    assert started.wait(AFTER_RUN_S), "a start with nothing attached: at once"

    created, _, create_work = _recorder()
    activity.after_run("c" * 64, create_work, expect_attach=True)
    activity.begin("c" * 64)  # an attach that outlives the moment: `docker run` of a long command
    assert created.wait(AFTER_RUN_S * 10), "not held up by a long run"


def test_a_failing_work_after_a_run_leaves_the_next_to_be_done() -> None:
    activity = Activity()

    def failing() -> None:
        raise RuntimeError("the database is gone")

    done, _, work = _recorder()
    activity.after_run("d" * 64, failing)
    activity.after_run("e" * 64, work)
    assert done.wait(AFTER_RUN_S * 10)
