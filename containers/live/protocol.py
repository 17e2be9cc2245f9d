"""What the websocket consumers and the node side say to each other over the channel layer.

A consumer (consumers.py) never opens a PTY or a log file. It sends requests to the node that
runs its container, on the channel `node-live.<node>`, naming its own channel (`reply_to`) for the
answers; the node agent's live server (server.py) does the work. The same path serves a
container on this machine or on another node sharing the Redis.

    consumer → node (channel node-live.<node>)
      live.open       session, reply_to, kind (terminal|attach|logs|stats|download), container,
                      sent_at (time.time(): a request that waited longer than OPEN_TIMEOUT_S is
                      dropped), and the kind's options
      live.input      session, data (bytes for the terminal)
      live.resize     session, rows, cols
      live.ack        session: a download chunk was taken (flow control)
      live.keepalive  session, reply_to: still here; the node answers live.alive, or live.ended
                      when it does not know the session (the node agent restarted)
      live.close      session: the consumer has gone; the node releases everything

    node → consumer (its reply_to channel)
      live.opened     session, and what the page shows (command, pid, tty...)
      live.output     session, data: terminal bytes, batched
      live.text       session, text: a message for the page, JSON-encoded once on the node
      live.data       session, data: a chunk of a download
      live.alive      session
      live.ended      session, code, reason: the session is over; `code` is the websocket close code

    node → groups (every consumer following a container, in one Redis operation a batch)
      live.lines      text, seq: a batch of log lines for `logs.<container>`; `seq` counts the
                      batches, so that a consumer that lost one (a full queue) can say so
      live.stats      text: a stats sample for `stats.<container>`
      container.state the container's state changed, to `container.<id>` and its team's group

Messages are msgpack through channels_redis: bytes stay bytes, and the page's JSON is encoded once
on the node however many consumers relay it.
"""

from __future__ import annotations

import re
from enum import IntEnum


class Close(IntEnum):
    """Websocket close codes of the live views; the page turns each into a message (static/js/live_socket.js)."""

    # The terminal's process exited: 4000 + its exit code (0 to 255).
    SESSION_ENDED = 4000
    BAD_REQUEST = 4400
    UNAUTHENTICATED = 4401
    FORBIDDEN = 4403
    NOT_FOUND = 4404
    NOT_RUNNING = 4409
    UNAVAILABLE = 4503


def session_ended(exit_code: int) -> int:
    """Return the close code for a terminal whose process exited with `exit_code`."""
    return Close.SESSION_ENDED + min(max(exit_code, 0), 255)


# The consumer says it is still there this often; the node ends a session not heard of for
# SESSION_TIMEOUT_S (the consumer's process died without closing), and the consumer gives up on
# a node not heard of for NODE_TIMEOUT_S (the node agent died).
KEEPALIVE_S = 10.0
SESSION_TIMEOUT_S = 35.0
NODE_TIMEOUT_S = 30.0
OPEN_TIMEOUT_S = 10.0


def node_channel(node: str) -> str:
    """Return the channel a node's live server listens on (channel names allow [A-Za-z0-9_.-])."""
    return "node-live." + re.sub(r"[^A-Za-z0-9_.-]", "_", node)


def logs_group(container_id: str) -> str:
    return f"logs.{container_id}"


def stats_group(container_id: str) -> str:
    return f"stats.{container_id}"


def container_group(container_id: str) -> str:
    return f"container.{container_id}"


def team_group(team_id: int | None) -> str:
    """Return the group that list pages of a team join; containers of no team go to site admins."""
    return f"team.{team_id}.containers" if team_id is not None else "containers.unowned"
