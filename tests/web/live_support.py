"""What the websocket tests of the live views share: the node's live server, containers, and a page's side.

The live server runs in the test process, on the session's Redis and engine, as the node agent
runs it; consumers run through `channels.testing.WebsocketCommunicator` on the routes of
containers/routing.py, the user put in the scope as AuthMiddlewareStack would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings

from containers import live, services
from containers.engine.images.busybox import create_busybox_image
from containers.engine.lifecycle import ContainerNotFound
from containers.models import Container, Team
from containers.routing import websocket_urlpatterns

T = TypeVar("T")


@pytest.fixture(scope="module")
def live_node(redis: subprocess.Popen) -> Iterator[live.LiveServer]:
    """This node's live server, on the session's Redis and engine (with busybox:latest)."""
    engine = services.engine()
    create_busybox_image(engine.images)
    server = live.start(settings.NODE_NAME)
    try:
        yield server
    finally:
        live.stop()
        for record in engine.containers.list():
            if record.name.startswith("live-"):
                engine.containers.remove(record.id, force=True)
        engine.containers.shim.shutdown()


def run(scenario: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run an async scenario from a test; the consumers' database calls run in the test's thread."""
    return async_to_sync(scenario)(*args)


def container(name: str, team: Team | None, command: list[str], start: bool = True, **config: Any) -> Container:
    """Create (and start) a busybox container of `team` through the services, as a page would."""
    row = services.create_container({"Image": "busybox", "Cmd": command, **config}, {}, f"live-{name}", team=team)
    if start:
        services.start_container(row.id)
        row.refresh_from_db()
    return row


def remove(row: Container) -> None:
    """Remove the container if it is still there."""
    with contextlib.suppress(ContainerNotFound):
        services.engine().containers.remove(row.id, force=True)


def write_line(row: Container, text: str, stream: int = 1) -> None:
    """Have the container print `text` on its main process's stdout (or stderr), as its own output."""
    command = ["sh", "-c", f"printf '%s\\n' \"$0\" > /proc/1/fd/{stream}", text]
    with services.engine().containers.exec(row.id, command) as stream_:
        stream_.collect()


def page(path: str, user: Any = None, subprotocols: list[str] | None = None) -> WebsocketCommunicator:
    """Return a page's websocket to `path`, logged in as `user` (None: anonymous)."""
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path, subprotocols=subprotocols)
    if user is not None:
        communicator.scope["user"] = user
    return communicator


async def message(ws: WebsocketCommunicator, kind: str, timeout: float = 10) -> dict[str, Any]:
    """Return the next JSON message of type `kind`, skipping others (and terminal output)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        frame = await ws.receive_output(max(0.01, deadline - loop.time()))
        assert frame["type"] == "websocket.send", f"expected {kind}, the server closed: {frame}"
        if frame.get("text"):
            content = json.loads(frame["text"])
            if content.get("type") == kind:
                return content


async def output_until(ws: WebsocketCommunicator, wanted: bytes, timeout: float = 10) -> bytes:
    """Read terminal output until `wanted` appears in it; return all that was read."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen = b""
    while wanted not in seen:
        frame = await ws.receive_output(max(0.01, deadline - loop.time()))
        assert frame["type"] == "websocket.send", f"the server closed before {wanted!r}: {frame}; seen {seen!r}"
        seen += frame.get("bytes") or b""
    return seen


async def close_of(ws: WebsocketCommunicator, timeout: float = 10) -> tuple[int, str]:
    """Read to the server's close; return its code and the reason of the `ended` message before it.

    Then the connection ends, as a server ends it after a close, and the consumer's disconnect runs.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    reason = ""
    while True:
        frame = await ws.receive_output(max(0.01, deadline - loop.time()))
        if frame["type"] == "websocket.close":
            await ws.disconnect(frame["code"])
            return frame["code"], reason
        if frame.get("text"):
            content = json.loads(frame["text"])
            if content.get("type") == "ended":
                reason = content["reason"]
