"""The live views in a real browser: Debian's chromium driven by Playwright, against the whole stack.

Daphne serves the pages and websockets, a node agent runs the containers and the live sessions, and a
private redis-server joins them, all on 127.0.0.1 under a state root of this module's own.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from containers.engine.config import EngineConfig
from containers.engine.engine import Engine
from tests.servers import REPO, free_port, node_agent, redis_server, stop, wait_for

pytestmark = pytest.mark.requires("root", "overlayfs", "busybox", "redis-server")

PASSWORD = "correct horse battery staple"
CHROMIUM = "/usr/bin/chromium"

SETUP = """
import json
from containers import accounts, services
from containers.choices import Role
team = accounts.create_team("red")
accounts.add_member(team, accounts.create_user("alice", {password!r}), Role.OPERATOR)
def run(name, command, **host):
    row = services.create_container({{"Image": "busybox", "Cmd": command}}, host, name, team=team)
    services.start_container(row.id)
    return row.id
print(json.dumps({{
    "shell": run("shell", ["sleep", "100000"]),
    "talker": run("talker", ["sh", "-c", "echo hello from talker; sleep 100000"]),
    "other": run("other", ["sh", "-c", "echo hello from other; sleep 100000"]),
    "busy": run("busy", ["sh", "-c", "while :; do :; done"], Memory=64 * 1024 * 1024),
}}))
"""

BUILD = """
import io, sys
from containers import services
from containers.models import Team
build = services.create_build(tags=["steps:latest"], source="web")
build.team = Team.objects.get(name="red")
build.save()
services.queue_build(build, io.BytesIO(sys.stdin.buffer.read()))
print(build.id)
"""

DOCKERFILE = b"""FROM busybox
RUN echo first-step-done
RUN sleep 3
RUN echo last-step-done
"""


@dataclass
class Site:
    url: str
    env: dict[str, str]
    engine: Engine
    ids: dict[str, str]

    def manage(self, *args: str, stdin: bytes | None = None) -> str:
        return _manage(self.env, *args, stdin=stdin)

    def write(self, name: str, script: str) -> None:
        """Have a container's main process print what `script` prints, as its own output."""
        with self.engine.containers.exec(self.ids[name], ["sh", "-c", f"({script}) > /proc/1/fd/1"]) as stream:
            stream.collect()


def _manage(env: dict[str, str], *args: str, stdin: bytes | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, input=stdin, capture_output=True, timeout=120
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)}: {result.stderr.decode()}"
    return result.stdout.decode()


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    root = Path(tempfile.mkdtemp(prefix="browser-", dir=os.environ["WEBENGINE_TEST_ROOT"]))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")}
    env |= {
        "WEBENGINE_ROOT": str(root), "DJANGO_SETTINGS_MODULE": "webengine.settings", "NODE_NAME": "browser",
        "REDIS_URL": f"unix://{root / 'redis.sock'}",
    }  # fmt: skip
    engine = Engine(EngineConfig(root=root, cgroup_parent=env["WEBENGINE_CGROUP_PARENT"]))
    with redis_server(root / "redis.sock"):
        try:
            _manage(env, "migrate", "--noinput")
            _manage(env, "image", "create-busybox")
            ids = json.loads(_manage(env, "shell", "-v", "0", "-c", SETUP.format(password=PASSWORD)))
            with node_agent(env) as agent, open(root / "daphne.log", "wb") as log:
                wait_for((root / "events.jsonl").exists, 60, "the node agent to start", agent)
                port = free_port()
                web = subprocess.Popen(
                    [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "webengine.asgi:application"],
                    cwd=REPO, env=env, stdout=log, stderr=log, start_new_session=True,
                )  # fmt: skip
                try:
                    wait_for(lambda: _listening(port), 30, "daphne to listen", web)
                    yield Site(f"http://127.0.0.1:{port}", env, engine, ids)
                finally:
                    stop(web)
        finally:
            for record in engine.containers.list():
                engine.containers.remove(record.id, force=True)
            engine.containers.shim.shutdown()


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )  # fmt: skip
        yield browser
        browser.close()


@pytest.fixture
def page(site: Site, browser: Browser) -> Iterator[Page]:
    context = browser.new_context(base_url=site.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto("/login/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)
    yield page
    context.close()


def screen_has(page: Page, text: str, timeout: float = 10_000) -> None:
    """Wait until a row of the terminal's screen reads `text` exactly."""
    page.wait_for_function(
        "text => [...document.querySelectorAll('.xterm-rows > div')].some(row => row.textContent.trim() === text)",
        arg=text, timeout=timeout,
    )  # fmt: skip


def settled_size(page: Page, other_than: str = "") -> str:
    """Return the terminal's size once it differs from `other_than` and has stayed put for half a second."""
    size, since = "", time.monotonic()
    deadline = since + 10
    while time.monotonic() < deadline:
        now = page.get_attribute("[data-live-terminal]", "data-size") or ""
        if now != size:
            size, since = now, time.monotonic()
        elif size and size != other_than and time.monotonic() - since >= 0.5:
            return size
        time.sleep(0.05)
    raise AssertionError(f"the terminal's size did not settle (last {size!r}, was {other_than!r})")


def stty_shows(page: Page, size: str) -> None:
    rows, cols = size.split("x")
    page.keyboard.type("clear; stty size\n")
    screen_has(page, f"{rows} {cols}")


def test_a_terminal_answers_and_its_size_follows_the_window(site: Site, page: Page) -> None:
    page.goto(f"/containers/{site.ids['shell']}/live/terminal/")
    page.wait_for_selector("[data-live-terminal][data-connected]")
    page.keyboard.type("echo $((6*7))\n")
    screen_has(page, "42")
    size = settled_size(page)
    stty_shows(page, size)

    page.set_viewport_size({"width": 900, "height": 600})
    smaller = settled_size(page, other_than=size)
    stty_shows(page, smaller)

    page.click("[data-fullscreen]")
    stty_shows(page, settled_size(page, other_than=smaller))


def test_a_terminal_says_why_it_ended_and_reconnects(site: Site, page: Page) -> None:
    page.goto(f"/containers/{site.ids['shell']}/live/terminal/")
    page.wait_for_selector("[data-live-terminal][data-connected]")
    page.keyboard.type("exit 3\n")
    overlay = page.wait_for_selector("[data-overlay]:not([hidden])")
    assert overlay.inner_text().startswith("The session ended (exit code 3).")
    page.click("[data-reconnect]")
    page.wait_for_selector("[data-live-terminal][data-connected]")
    page.keyboard.type("echo again-$((1+1))\n")
    screen_has(page, "again-2")


def test_a_terminal_pastes_with_the_usual_keys(site: Site, page: Page) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(f"/containers/{site.ids['shell']}/live/terminal/")
    page.wait_for_selector("[data-live-terminal][data-connected]")
    for keys, command, answer in (("Control+Shift+V", "echo pasted-$((2+3))", "pasted-5"),
                                  ("Shift+Insert", "echo inserted-$((3+3))", "inserted-6")):  # fmt: skip
        page.evaluate("text => navigator.clipboard.writeText(text)", command)
        page.keyboard.press(keys)
        screen_has(page, f"/ # {command}")
        page.keyboard.press("Enter")
        screen_has(page, answer)


def test_a_line_written_in_the_container_shows_in_the_logs_within_a_second(site: Site, page: Page) -> None:
    page.goto(f"/containers/{site.ids['talker']}/live/logs/")
    page.wait_for_selector("[data-log-rows] :text('hello from talker')")
    site.write("talker", "echo fresh-line-$((20+22))")
    started = time.monotonic()
    page.wait_for_selector("[data-log-rows] :text('fresh-line-42')", timeout=1000)
    assert time.monotonic() - started < 1


def test_a_search_highlights_and_counts_its_matches(site: Site, page: Page) -> None:
    site.write(
        "talker", "for i in $(seq 1 40); do if [ $((i % 4)) = 0 ]; then echo needle $i; else echo hay $i; fi; done"
    )
    page.goto(f"/containers/{site.ids['talker']}/live/logs/")
    page.wait_for_selector("[data-log-rows] :text('needle 40')")
    page.fill("[data-search]", "needle")
    page.wait_for_function("() => document.querySelector('[data-match-count]').textContent === '0/10'")
    page.press("[data-search]", "Enter")
    page.wait_for_function("() => document.querySelector('[data-match-count]').textContent === '1/10'")
    assert page.locator("[data-log-rows] mark").count() == 10
    assert page.locator("[data-log-rows] mark.current").inner_text() == "needle"
    page.click("[data-previous]")
    page.wait_for_function("() => document.querySelector('[data-match-count]').textContent === '10/10'")


def test_the_scroll_lock_holds_while_lines_arrive(site: Site, page: Page) -> None:
    site.write("talker", "seq 1 500")
    page.goto(f"/containers/{site.ids['talker']}/live/logs/")
    page.wait_for_selector("[data-log-rows] :text-is('500')")
    scroller = page.locator("[data-log-scroll]")
    scroller.hover()
    page.mouse.wheel(0, -2000)
    page.wait_for_function("() => !document.querySelector('[data-live-logs]').classList.contains('following')")
    before = scroller.evaluate("el => el.scrollTop")
    first = page.locator("[data-log-rows] .tx").nth(25).inner_text()
    lines = int(page.get_attribute("[data-live-logs]", "data-lines") or 0)
    for batch in range(5):
        site.write("talker", f"seq {batch * 100 + 1001} {batch * 100 + 1100}")
    page.wait_for_function(f"() => Number(document.querySelector('[data-live-logs]').dataset.lines) >= {lines + 500}")
    assert scroller.evaluate("el => el.scrollTop") == before, "new lines must not move the view while someone reads"
    assert page.locator("[data-log-rows] .tx").nth(25).inner_text() == first
    more = page.locator("[data-new-lines]")
    assert more.is_visible() and more.inner_text() == "↓ 500 new lines"
    more.click()
    page.wait_for_selector("[data-log-rows] :text-is('1500')")
    page.wait_for_function("() => document.querySelector('[data-live-logs]').classList.contains('following')")


def test_a_hundred_thousand_lines_load_and_scroll_with_few_rows_drawn(site: Site, page: Page) -> None:
    site.write("other", "seq 1 100000")
    page.goto(f"/containers/{site.ids['other']}/live/logs/")
    page.wait_for_function("() => document.querySelector('[data-live-logs]').dataset.lines > 0")
    started = time.monotonic()
    page.select_option("[data-tail-choice]", "100000")
    page.wait_for_function("() => document.querySelector('[data-live-logs]').dataset.lines >= 100000")
    assert time.monotonic() - started < 10, "a hundred thousand lines should load in seconds"
    page.locator("[data-log-scroll]").evaluate("el => el.scrollTop = el.scrollHeight / 2")
    page.wait_for_function("() => Number(document.querySelector('[data-log-rows] .ln').textContent) > 45000")
    assert page.locator("[data-log-rows] .live-log-row").count() < 200, "only the rows in view are drawn"


def test_several_containers_share_one_view_with_their_names(site: Site, page: Page) -> None:
    page.goto(f"/containers/logs/?id={site.ids['talker']}&id={site.ids['other']}")
    page.wait_for_function("() => document.querySelector('[data-live-logs]').dataset.lines > 0")
    site.write("other", "echo said-by-other")
    site.write("talker", "echo said-by-talker")
    other = page.locator("[data-log-rows] .live-log-row", has_text="said-by-other")
    talker = page.locator("[data-log-rows] .live-log-row", has_text="said-by-talker")
    assert other.locator(".src").inner_text() == "other" and "c1" in (
        other.locator(".src").get_attribute("class") or ""
    )
    assert talker.locator(".src").inner_text() == "talker" and "c0" in (
        talker.locator(".src").get_attribute("class") or ""
    )


def test_the_stats_charts_move(site: Site, page: Page) -> None:
    page.goto(f"/containers/{site.ids['busy']}/live/stats/")
    page.wait_for_function("() => Number(document.querySelector('[data-live-stats]').dataset.samples) >= 3")
    canvas = page.locator("[data-chart=cpu] canvas")
    first = canvas.screenshot()
    samples = int(page.get_attribute("[data-live-stats]", "data-samples") or 0)
    page.wait_for_function(
        f"() => Number(document.querySelector('[data-live-stats]').dataset.samples) >= {samples + 2}"
    )
    assert canvas.screenshot() != first, "the CPU chart should move as samples come"
    assert " of 64 MiB (" in page.inner_text("[data-value=mem]"), "the memory shows against its limit"
    cpu = float(page.inner_text("[data-value=cpu]").split("%")[0])
    assert cpu > 5, f"a busy loop should show on the CPU chart, got {cpu}%"


def test_a_builds_steps_appear_while_it_runs(site: Site, page: Page) -> None:
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(DOCKERFILE)
        tar.addfile(info, io.BytesIO(DOCKERFILE))
    build_id = site.manage("shell", "-v", "0", "-c", BUILD, stdin=context.getvalue()).strip()
    page.goto(f"/builds/{build_id}/live/")
    page.wait_for_selector("[data-log] :text-is('first-step-done')", timeout=30_000)
    assert page.get_attribute("[data-live-build]", "data-status") == "running", "the output shows while the build runs"
    assert page.locator("[data-log] .step").count() >= 2
    page.wait_for_selector("[data-live-build][data-status=succeeded]", timeout=30_000)
    assert page.locator("[data-log] :text-is('last-step-done')").count() == 1
    link = page.locator("[data-build-result] a[data-image]")
    assert link.get_attribute("href", timeout=1000).startswith("/images/")
