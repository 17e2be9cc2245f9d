"""/healthz reports the database, redis and the node agents, each with a status."""

from __future__ import annotations

import os
import subprocess

import pytest
from django.test import Client

from tests.servers import node_agent, wait_for


def _health(client: Client) -> tuple[int, dict]:
    response = client.get("/healthz")
    assert response["Content-Type"] == "application/json"
    return response.status_code, response.json()


@pytest.mark.django_db
@pytest.mark.requires("redis-server")
def test_all_green_with_redis_and_a_node_agent(redis: subprocess.Popen) -> None:
    client = Client()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    with node_agent(env) as agent:
        wait_for(lambda: _health(client)[0] == 200, 30, "a node agent answering /healthz", agent)
        status, body = _health(client)
    assert body["status"] == "ok"
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "database": "ok", "redis": "ok", "node_agents": "ok",
    }
    assert body["checks"]["node_agents"]["nodes"] == ["node@test"]


@pytest.mark.django_db
@pytest.mark.requires("redis-server")
def test_no_node_agent_is_reported(redis: subprocess.Popen) -> None:
    status, body = _health(Client())
    assert status == 503
    assert body["checks"]["redis"]["status"] == "ok"
    assert body["checks"]["node_agents"]["status"] == "error"
    assert "no node agent answered" in body["checks"]["node_agents"]["error"]


@pytest.mark.django_db
def test_unreachable_redis_is_reported(settings) -> None:
    settings.REDIS_URL = "unix:///nonexistent/redis.sock"
    status, body = _health(Client())
    assert status == 503
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["redis"]["status"] == "error"
    assert body["checks"]["node_agents"] == {"status": "error", "error": "redis is unreachable", "nodes": []}
