"""The live logs: the last lines then every new one, for one follower or many, and the whole log's download."""

from __future__ import annotations

import asyncio
import time

import pytest
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient

from containers import services
from containers.live import LiveServer
from containers.live.protocol import Close
from tests.servers import wait_for
from tests.web.base import TeamTestCase
from tests.web.live_support import (
    close_of,
    container,
    live_node,  # noqa: F401 - the fixture, for this module
    message,
    page,
    remove,
    run,
    write_line,
)

pytestmark = [
    pytest.mark.requires("root", "overlayfs", "busybox", "redis-server"),
    pytest.mark.usefixtures("live_node"),
]

# stdout and stderr are two pipes: the pauses keep the lines in the order they were written.
PRINTS_THEN_SLEEPS = ["sh", "-c", "echo first; sleep 0.05; echo oops >&2; sleep 0.05; echo third; sleep 1000"]


async def follow(path: str, user: object, tail: int | None) -> tuple[WebsocketCommunicator, list[list[object]]]:
    """Open a logs websocket; return it and its history, once the history is all in."""
    ws = page(path, user)
    await ws.connect()
    await ws.send_json_to({"type": "open", "tail": tail})
    history: list[list[object]] = []
    while True:
        batch = await message(ws, "lines")
        assert batch.get("history"), "the history comes first"
        history += batch["lines"]
        if batch["done"]:
            return ws, history


async def texts(ws: WebsocketCommunicator, count: int, timeout: float = 10) -> list[str]:
    """Return the text of the next `count` live lines."""
    found: list[str] = []
    while len(found) < count:
        batch = await message(ws, "lines", timeout)
        found += [text for _, _, text in batch["lines"]]
    return found


class FollowTests(TeamTestCase):
    @pytest.fixture(autouse=True)
    def _live(self, request: pytest.FixtureRequest) -> None:
        self.live: LiveServer = request.getfixturevalue("live_node")

    def setUp(self) -> None:
        self.row = container("logs", self.red, PRINTS_THEN_SLEEPS)
        self.addCleanup(remove, self.row)
        self.path = f"/ws/containers/{self.row.id}/logs/"
        deadline = time.monotonic() + 5
        while services.engine().containers.log_path(self.row.id).read_bytes().count(b"\n") < 3:
            assert time.monotonic() < deadline, "the container should have logged its three lines"
            time.sleep(0.01)

    def test_it_sends_the_last_lines_with_their_streams_then_a_new_line_within_a_second(self) -> None:
        async def scenario() -> tuple[list[list[object]], list[list[object]], float]:
            ws, history = await follow(self.path, self.vera, tail=2)
            started = time.monotonic()
            await asyncio.to_thread(write_line, self.row, "\x1b[32mfresh\x1b[0m", 2)
            batch = await message(ws, "lines", timeout=1)
            elapsed = time.monotonic() - started
            await ws.disconnect()
            return history, batch["lines"], elapsed

        history, fresh, elapsed = run(scenario)
        assert [(stream, text) for stream, _, text in history] == [(2, "oops\n"), (1, "third\n")]
        assert all(len(str(when)) == 30 and str(when).endswith("Z") for _, when, _ in history), "RFC 3339, ns"
        assert [(stream, text) for stream, _, text in fresh] == [(2, "\x1b[32mfresh\x1b[0m\n")]
        assert elapsed < 1, f"a line should reach its follower within a second, took {elapsed:.3f}s"
        wait_for(lambda: not self.live.followers, 5, "the log follower to stop with its last page")

    def test_it_sends_the_whole_log_when_asked_for_all(self) -> None:
        async def scenario() -> list[list[object]]:
            ws, history = await follow(self.path, self.vera, tail=None)
            await ws.disconnect()
            return history

        assert [text for _, _, text in run(scenario)] == ["first\n", "oops\n", "third\n"]

    def test_fifty_followers_get_every_line_once_and_in_order(self) -> None:
        count = 300

        async def scenario() -> list[list[str]]:
            followers = [(await follow(self.path, self.vera, tail=0))[0] for _ in range(50)]
            await asyncio.to_thread(
                services.engine().containers.exec(self.row.id, ["sh", "-c", f"seq {count} > /proc/1/fd/1"]).collect
            )
            seen = await asyncio.gather(*(texts(ws, count) for ws in followers))
            for ws in followers:
                await ws.disconnect()
            return seen

        expected = [f"{n}\n" for n in range(1, count + 1)]
        for n, lines in enumerate(run(scenario)):
            assert lines == expected, f"follower {n} lost or reordered lines"

    def test_a_follower_that_joins_while_lines_pour_in_sees_each_once(self) -> None:
        # About ten thousand lines a second, a hundred at a time.
        pour = "i=0; while :; do i=$((i+1)); echo $i; [ $((i % 100)) = 0 ] && usleep 10000; done"
        counter = container("counter", self.red, ["sh", "-c", pour])
        self.addCleanup(remove, counter)
        time.sleep(0.2)

        async def scenario() -> list[str]:
            ws, history = await follow(f"/ws/containers/{counter.id}/logs/", self.vera, tail=100)
            live = await texts(ws, 2000)
            await ws.disconnect()
            return [text for _, _, text in history] + live

        numbers = [int(text) for text in run(scenario)]
        assert len(numbers) >= 2100
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), "a line missed or twice at the seam"

    def test_it_says_so_when_the_container_is_removed(self) -> None:
        async def scenario() -> tuple[int, str]:
            ws, _ = await follow(self.path, self.vera, tail=0)
            await asyncio.to_thread(services.engine().containers.remove, self.row.id, True)
            return await close_of(ws)

        assert run(scenario) == (Close.NOT_FOUND, "the container was removed")


class DownloadTests(TeamTestCase):
    def test_it_downloads_the_whole_log_through_the_node(self) -> None:
        row = container("download", self.red, PRINTS_THEN_SLEEPS)
        self.addCleanup(remove, row)
        time.sleep(0.2)

        async def download(user: object, query: str = "") -> tuple[int, str, bytes]:
            client = AsyncClient()
            await client.aforce_login(user)
            response = await client.get(f"/containers/{row.id}/logs/download/{query}")
            if response.status_code != 200:
                return response.status_code, "", b""
            body = b"".join([chunk async for chunk in response.streaming_content])
            return response.status_code, response["Content-Disposition"], body

        status, disposition, body = run(download, self.vera)
        assert status == 200 and disposition == 'attachment; filename="live-download.log"'
        lines = body.decode().splitlines()
        assert [line.split(" ", 1)[1] for line in lines] == ["first", "oops", "third"]
        assert all(line[:4].isdigit() and line[29] == "Z" for line in lines), "each line starts with its time"
        assert run(download, self.vera, "?timestamps=0")[2] == b"first\noops\nthird\n"
        assert run(download, self.charlie)[0] == 404
