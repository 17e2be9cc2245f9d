"""The node agent runs container operations as tasks, and on start repairs what happened while it was down."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from containers import tasks
from containers.engine.config import EngineConfig
from containers.engine.engine import Engine
from tests.servers import REPO, node_agent, stop, wait_for

pytestmark = pytest.mark.requires("root", "overlayfs", "busybox", "redis-server")


@pytest.fixture
def agent_env(redis: subprocess.Popen, state_root: Path) -> Iterator[dict[str, str]]:
    """A node with a migrated database of its own, sharing the session's redis."""
    env = {**os.environ, "WEBENGINE_ROOT": str(state_root), "DJANGO_SETTINGS_MODULE": "webengine.settings"}
    for args in (["migrate", "--noinput"], ["image", "create-busybox"]):
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True)
        assert result.returncode == 0, result.stderr
    yield env
    engine = node_engine(env)
    for record in engine.containers.list():
        engine.containers.remove(record.id, force=True)
    engine.containers.shim.shutdown()


def node_engine(env: dict[str, str]) -> Engine:
    return Engine(EngineConfig(root=Path(env["WEBENGINE_ROOT"]), cgroup_parent=env["WEBENGINE_CGROUP_PARENT"]))


def test_a_restart_policy_is_honoured_after_the_node_agent_was_killed(agent_env: dict[str, str]) -> None:
    engine = node_engine(agent_env)
    with node_agent(agent_env) as agent:
        result = tasks.run_container.apply_async(
            args=[{"Image": "busybox", "Cmd": ["sleep", "1000"]}, {"RestartPolicy": {"Name": "always"}}, "keeper"],
            queue="node.test",
        )
        container_id = result.get(timeout=60)
        stop(agent, signal.SIGKILL)
    first = engine.containers.state(container_id)
    assert first.running, "a container must keep running when its node agent is killed"

    # While no agent runs, the container's monitor dies too (as in a crash or an OOM kill).
    monitor = json.loads((engine.config.containers_root / container_id / "monitor.json").read_text())
    os.kill(monitor["monitor_pid"], signal.SIGKILL)
    wait_for(lambda: engine.containers.state(container_id).status == "dead", 5, "the monitor to be gone")

    with node_agent(agent_env) as agent:
        wait_for(
            lambda: engine.containers.state(container_id).running
            and engine.containers.state(container_id).pid != first.pid,
            60, "the restarted agent to restart the container (restart policy always)", agent,
        )  # fmt: skip
    state = engine.containers.state(container_id)
    assert state.running and state.pid != first.pid


def test_the_database_follows_containers_through_the_engines_events(agent_env: dict[str, str]) -> None:
    engine = node_engine(agent_env)
    database = Path(agent_env["WEBENGINE_ROOT"]) / "webengine.sqlite3"

    def row(container_id: str) -> tuple[str, int] | None:
        with sqlite3.connect(database) as connection:
            found = connection.execute(
                "SELECT status, exit_code FROM containers_container WHERE id = ?", (container_id,)
            ).fetchone()
        return None if found is None else (found[0], found[1])

    with node_agent(agent_env) as agent:
        wait_for(lambda: (engine.config.root / "events.jsonl").exists(), 60, "the agent to follow events", agent)
        # Neither created nor started through the services: only the engine's events tell the agent.
        record = engine.containers.create({"Image": "busybox", "Cmd": ["sh", "-c", "sleep 0.5; exit 7"]})
        engine.containers.start(record.id)
        wait_for(lambda: row(record.id) == ("running", 0), 10, "the row to show the container running", agent)
        wait_for(lambda: row(record.id) == ("exited", 7), 10, "the row to show its exit by itself", agent)
        engine.containers.remove(record.id)
        wait_for(lambda: row(record.id) is None, 10, "the row to go with the container", agent)
