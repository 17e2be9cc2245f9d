"""The node side of the live views (terminal, attach, logs, stats), served to the websocket consumers.

The node agent starts one `LiveServer` when it is ready (tasks.py) and stops it at shutdown; the
websocket tests start one in their own process with `start()`. protocol.py says what goes over the
channel layer; server.py runs the sessions of terminal.py, logs.py and stats.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from containers.live.protocol import container_group, team_group
from containers.live.server import LiveServer

if TYPE_CHECKING:
    from containers.models import Container

__all__ = ["LiveServer", "publish_container_state", "start", "stop"]

_server: LiveServer | None = None

# The engine events that change what a page shows of a container (not `top` or `archive-path`, say).
STATE_ACTIONS = frozenset({"create", "start", "die", "oom", "stop", "pause", "unpause", "rename", "destroy"})


def start(node: str) -> LiveServer:
    """Start this process's live server for `node`; stop it with `stop()`."""
    global _server
    if _server is not None:
        raise RuntimeError(f"a live server runs already for {_server.node}")
    _server = LiveServer(node).start()
    return _server


def stop() -> None:
    global _server
    if _server is not None:
        _server.stop()
        _server = None


def publish_container_state(action: str, container_id: str, row: Container | None, team_id: int | None) -> None:
    """Tell the pages watching a container, and its team's list pages, that it changed (from any thread).

    `row` is the container's refreshed row (None once removed); `team_id` its team before the
    change, since a removed container's row is gone with its team.
    """
    server = _server
    if server is None or action not in STATE_ACTIONS:
        return
    message = {
        "type": "container.state", "id": container_id, "action": action,
        "name": row.name if row else "", "status": row.status if row else "removed",
        "exit_code": row.exit_code if row else None, "oom_killed": row.oom_killed if row else False,
    }  # fmt: skip
    server.call(server.publish, [container_group(container_id), team_group(team_id)], message)
