"""What every live session on the node is: one task that runs until its work ends or its consumer goes."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from containers.live.server import LiveServer


class Refused(Exception):
    """The session cannot go on: its consumer closes the websocket with `code` and this reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Session:
    """One consumer's session on this node.

    The server runs `run()` as a task: it returns the close code and reason when the work ends by
    itself (the shell exited, the container stopped), or is cancelled when the consumer goes
    (live.close, or no keepalive for SESSION_TIMEOUT_S). Either way `release()` runs after it and
    gives back what the session held (an exec is hung up, a follower left): nothing outlives it.
    """

    kind = ""

    def __init__(self, server: LiveServer, message: dict[str, Any]) -> None:
        self.server = server
        self.id: str = message["session"]
        self.reply_to: str = message["reply_to"]
        self.container_id: str = message["container"]
        self.options = message
        self.heard = time.monotonic()

    async def run(self) -> tuple[int, str]:
        raise NotImplementedError

    async def release(self) -> None:
        return None

    def input(self, data: bytes) -> None:
        return None

    def resize(self, rows: int, cols: int) -> None:
        return None

    def ack(self) -> None:
        return None

    async def reply(self, kind: str, **fields: Any) -> None:
        await self.server.send(self.reply_to, {"type": kind, "session": self.id, **fields})
