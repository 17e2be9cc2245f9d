"""The live views' paths, measured with a websocket client on loopback against the whole stack.

    .venv/bin/python bench/live.py [--keystrokes 500] [--lines 300] [--followers 200] [--burst 50000]

Daphne, a node agent (which runs the live sessions) and a private redis-server serve a state root of
their own under /tmp; the client authenticates with an API token offered as the subprotocol.

- keystroke to echo: a key sent to a shell in a container, to its echo back, through daphne, Redis,
  the node's live server, the container's monitor and its PTY (targets p50 <= 5 ms, p99 <= 25 ms);
- line to follower: a line a container prints, from the time its monitor logged it to its arrival
  at a log follower (target p95 <= 50 ms);
- many followers: that many pages follow one container that prints a burst of lines as fast as it
  can; every follower must get every line, in order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Ping, Request, TextMessage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from containers.engine.config import EngineConfig  # noqa: E402
from containers.engine.engine import Engine  # noqa: E402
from tests.servers import REPO, free_port, node_agent, redis_server, stop, wait_for  # noqa: E402

SETUP = """
import json
from containers import accounts, services
from containers.choices import Role
team = accounts.create_team("bench")
user = accounts.create_user("bench")
accounts.add_member(team, user, Role.OPERATOR)
_, token = accounts.mint_token(user, team, name="bench")
def run(name, command):
    row = services.create_container({"Image": "busybox", "Cmd": ["sh", "-c", command]}, {}, name, team=team)
    services.start_container(row.id)
    return row.id
print(json.dumps({"token": token,
    "shell": run("shell", "sleep 100000"),
    "ticker": run("ticker", "while :; do echo tick; usleep 20000; done"),
    "busy": run("busy", "while [ ! -e /tmp/go ]; do usleep 10000; done; seq 1 %d; sleep 100000"),
}))
"""


class Client:
    """A websocket client on asyncio and wsproto: text and binary messages in, JSON and bytes out."""

    def __init__(self, port: int, path: str, token: str) -> None:
        self.port, self.path, self.token = port, path, token
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.parts: list[bytes | str] = []

    async def connect(self) -> Client:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        origin = f"http://127.0.0.1:{self.port}"
        self.writer.write(self.ws.send(Request(
            host=f"127.0.0.1:{self.port}", target=self.path, subprotocols=[f"bearer.{self.token}"],
            extra_headers=[(b"origin", origin.encode())],
        )))  # fmt: skip
        while True:
            for event in await self._events():
                if isinstance(event, AcceptConnection):
                    return self
                raise RuntimeError(f"{self.path}: refused: {event}")

    async def _events(self) -> list[object]:
        data = await self.reader.read(1 << 20)
        if not data:
            raise ConnectionError(f"{self.path}: the server closed the connection")
        self.ws.receive_data(data)
        return list(self.ws.events())

    async def messages(self) -> list[bytes | str]:
        """Wait for the next whole messages (text as str, binary as bytes)."""
        out: list[bytes | str] = []
        while not out:
            for event in await self._events():
                if isinstance(event, TextMessage | BytesMessage):
                    self.parts.append(event.data)
                    if event.message_finished:
                        joined = "".join(self.parts) if isinstance(event, TextMessage) else b"".join(self.parts)
                        out.append(joined)  # type: ignore[arg-type]
                        self.parts = []
                elif isinstance(event, Ping):
                    self.writer.write(self.ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    raise ConnectionError(f"{self.path}: closed with {event.code}: {event.reason}")
        return out

    def send_json(self, value: object) -> None:
        self.writer.write(self.ws.send(TextMessage(data=json.dumps(value))))

    def send_bytes(self, data: bytes) -> None:
        self.writer.write(self.ws.send(BytesMessage(data=data)))

    async def json(self, kind: str) -> dict[str, object]:
        while True:
            for message in await self.messages():
                if isinstance(message, str) and (value := json.loads(message)).get("type") == kind:
                    return value

    def close(self) -> None:
        self.writer.close()


@dataclass
class Stack:
    port: int
    token: str
    ids: dict[str, str]
    engine: Engine

    async def client(self, path: str) -> Client:
        return await Client(self.port, path, self.token).connect()


@contextmanager
def stack(burst: int) -> Iterator[Stack]:
    """Serve webengine (daphne, a node agent, redis-server) from a fresh state root; remove it all afterwards."""
    root = Path(tempfile.mkdtemp(prefix="webengine-bench-live-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")}
    env |= {"WEBENGINE_ROOT": str(root), "WEBENGINE_CGROUP_PARENT": root.name, "NODE_NAME": "bench",
            "DJANGO_SETTINGS_MODULE": "webengine.settings", "REDIS_URL": f"unix://{root / 'redis.sock'}"}  # fmt: skip
    engine = Engine(EngineConfig(root=root, cgroup_parent=root.name))

    def manage(*args: str) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"manage.py {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    try:
        with redis_server(root / "redis.sock"), open(root / "servers.log", "wb") as log:
            manage("migrate", "--noinput")
            manage("image", "create-busybox")
            setup = json.loads(manage("shell", "-v", "0", "-c", SETUP % burst))
            with node_agent({**env, "PYTHONWARNINGS": "ignore"}) as agent:
                wait_for((root / "events.jsonl").exists, 60, "the node agent to start", agent)
                port = free_port()
                web = subprocess.Popen(
                    [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "webengine.asgi:application"],
                    cwd=REPO, env=env, stdout=log, stderr=log,
                )  # fmt: skip
                try:
                    wait_for(lambda: _listening(port), 30, "daphne to listen", web)
                    token = setup.pop("token")
                    yield Stack(port, token, setup, engine)
                finally:
                    stop(web)
    finally:
        for record in engine.containers.list():
            engine.containers.remove(record.id, force=True)
        engine.containers.shim.shutdown()
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            if (hierarchy / root.name).exists():
                os.rmdir(hierarchy / root.name)
        shutil.rmtree(root, ignore_errors=True)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] * 1000


async def keystrokes(site: Stack, count: int) -> list[float]:
    """Return the seconds from each key sent to the first output after it (its echo)."""
    terminal = await site.client(f"/ws/containers/{site.ids['shell']}/terminal/")
    terminal.send_json({"type": "open", "command": "sh", "rows": 24, "cols": 200})
    await terminal.json("opened")
    seen = b""
    while b"# " not in seen:
        seen += b"".join(m for m in await terminal.messages() if isinstance(m, bytes))
    samples = []
    for n in range(count + 20):
        # Type a character, then erase it: the line never grows, so every echo is alike.
        key = b"a" if n % 2 == 0 else b"\x7f"
        started = time.perf_counter()
        terminal.send_bytes(key)
        while not any(isinstance(m, bytes) for m in await terminal.messages()):
            pass
        if n >= 20:  # the first ones warm the path up
            samples.append(time.perf_counter() - started)
    terminal.close()
    return samples


def _logged_at(text: str) -> float:
    return datetime.fromisoformat(text[:26] + "+00:00").timestamp() + int(text[26:29]) / 1e9


async def line_latency(site: Stack, count: int) -> list[float]:
    """Return the seconds from each line's log time (its monitor wrote it) to its arrival at a follower."""
    follower = await site.client(f"/ws/containers/{site.ids['ticker']}/logs/")
    follower.send_json({"type": "open", "tail": 0})
    await follower.json("lines")
    samples: list[float] = []
    while len(samples) < count:
        for message in await follower.messages():
            arrived = time.time()
            batch = json.loads(message)
            if batch.get("type") == "lines" and not batch.get("history"):
                samples += [arrived - _logged_at(when) for _, when, _ in batch["lines"]]
    follower.close()
    return samples[:count]


async def many_followers(site: Stack, followers: int, burst: int) -> tuple[float, list[int], int]:
    """Follow the busy container with `followers` pages, start its burst; return the seconds, lines each got, bad."""
    path = f"/ws/containers/{site.ids['busy']}/logs/"
    clients = [await site.client(path) for _ in range(followers)]
    for client in clients:
        client.send_json({"type": "open", "tail": 0})
    for client in clients:
        await client.json("lines")  # its (empty) history: it follows from now on
    got = [0] * followers
    disordered = 0

    async def read(n: int) -> None:
        nonlocal disordered
        while got[n] < burst:
            for message in await clients[n].messages():
                batch = json.loads(message)
                if batch.get("type") == "gap":
                    disordered += 1
                for _, _, text in batch.get("lines", []):
                    got[n] += 1
                    if text != f"{got[n]}\n":
                        disordered += 1

    started = time.perf_counter()
    with site.engine.containers.exec(site.ids["busy"], ["touch", "/tmp/go"]) as go:
        go.collect()
    try:
        await asyncio.wait_for(asyncio.gather(*(read(n) for n in range(followers))), 120)
    except TimeoutError:
        pass
    elapsed = time.perf_counter() - started
    for client in clients:
        client.close()
    return elapsed, got, disordered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keystrokes", type=int, default=500)
    parser.add_argument("--lines", type=int, default=300)
    parser.add_argument("--followers", type=int, default=200)
    parser.add_argument("--burst", type=int, default=50_000)
    options = parser.parse_args()
    with stack(options.burst) as site:
        echo = asyncio.run(keystrokes(site, options.keystrokes))
        lines = asyncio.run(line_latency(site, options.lines))
        elapsed, got, disordered = asyncio.run(many_followers(site, options.followers, options.burst))
    print(f"keystroke to echo through the terminal: p50 {percentile(echo, 50):.2f} ms, "
          f"p99 {percentile(echo, 99):.2f} ms, "
          f"max {max(echo) * 1000:.2f} ms over {len(echo)} keys (targets p50 <= 5 ms, p99 <= 25 ms)")  # fmt: skip
    print(f"line written to a log follower: p50 {percentile(lines, 50):.2f} ms, p95 {percentile(lines, 95):.2f} ms, "
          f"max {max(lines) * 1000:.2f} ms over {len(lines)} lines (target p95 <= 50 ms)")  # fmt: skip
    lost = sum(options.burst - n for n in got)
    print(f"{options.followers} followers of one container printing {options.burst:,} lines: "
          f"{sum(got):,} of {options.followers * options.burst:,} lines arrived in {elapsed:.2f} s "
          f"({sum(got) / elapsed:,.0f} lines/s delivered), {lost} lost, {disordered} out of order "
          f"(target: none lost); mean {statistics.mean(got):,.0f} a follower")  # fmt: skip


if __name__ == "__main__":
    main()
