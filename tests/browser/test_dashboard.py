"""A person in a real browser: log in, run a busybox container from the form, see it running, stop it, audit it.

The whole stack runs as `make run` starts it (`manage.py serve`: redis, the node agent, Daphne), in a
state root of its own, and Debian's chromium is driven by Playwright.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import REPO, free_port, stop, wait_for

sync_api = pytest.importorskip("playwright.sync_api")

PASSWORD = "correct horse battery staple"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


@pytest.fixture
def site(state_root: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """Serve a fresh install with the busybox base, team `web` and its admin `dora`; yield its URL and env."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "SECRET_KEY")}
    env |= {"WEBENGINE_ROOT": str(state_root), "DJANGO_SETTINGS_MODULE": "webengine.settings"}

    def manage(*args: str, stdin: str | None = None) -> None:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, input=stdin,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, f"manage.py {' '.join(args)}: {done.stderr}"

    manage("migrate", "--noinput")
    manage("bootstrap")
    manage("user", "create", "dora", "--password-stdin", stdin=PASSWORD + "\n")
    manage("team", "create", "web")
    manage("team", "add-member", "web", "dora", "--role", "admin")
    port = free_port()
    log = (state_root / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port), "--docker-port", "0",
         "--docker-socket", str(state_root / "docker.sock")],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _status(base + "/healthz") == 200, 90, "the stack's /healthz", server)
        yield base, env
    finally:
        # Whatever the test reached, no container outlives it.
        subprocess.run([sys.executable, "manage.py", "container", "rm", "-f", "dora-web"], cwd=REPO, env=env,
                       capture_output=True, timeout=60)  # fmt: skip
        stop(server, signal.SIGINT, timeout=60)
        log.close()


@pytest.mark.requires("root", "overlayfs", "busybox", "redis-server", "chromium")
def test_a_person_runs_a_container_stops_it_and_finds_it_in_the_audit_log(site: tuple[str, dict[str, str]]) -> None:
    base, _ = site
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.set_default_timeout(30_000)
        expect = sync_api.expect

        page.goto(base + "/containers/")
        expect(page).to_have_url(base + "/login/?next=/containers/")
        page.fill("#id_username", "dora")
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        expect(page.locator("h1")).to_have_text("Containers")

        # The shared base image, with its layers and history read from the node's store; Run starts from it.
        page.click("nav >> text=Images")
        page.click("a:has-text('busybox:latest')")
        expect(page.locator("h1")).to_have_text("busybox:latest")
        expect(page.locator("h2", has_text="Layers")).to_be_visible()
        page.click("a.primary:has-text('Run')")
        expect(page.locator("#id_image")).to_have_value("busybox:latest")
        page.fill("#id_name", "dora-web")
        page.fill("#id_command", "sh -c 'trap \"exit 0\" TERM; while true; do sleep 1; done'")
        page.fill("#id_memory", "64m")
        page.fill("#id_pids_limit", "32")
        page.click("button:has-text('Run container')")

        # The job page follows the job by itself until it links to the container it made.
        expect(page.locator(".messages")).to_contain_text("Starting a container from busybox:latest.")
        page.click("text=Open dora-web", timeout=60_000)
        expect(page.locator("h1")).to_have_text("dora-web")
        expect(page.locator("[data-state]")).to_have_attribute("data-state", "running")

        page.click("text=Config")
        expect(page.locator("main")).to_contain_text("64 MiB")

        # A list open in another tab follows the container's state without a reload.
        watching = browser.new_context(storage_state=page.context.storage_state()).new_page()
        watching.goto(base + "/containers/")
        listed = watching.locator("tr", has_text="dora-web").locator("[data-container-status]")
        expect(listed).to_have_text("running")
        watching.evaluate("window.notReloaded = true")

        page.click("button:has-text('Stop')")
        expect(page.locator(".messages")).to_contain_text("Stopping dora-web.")
        # The page refreshes itself while the stop job runs, and shows the container stopped.
        expect(page.locator("[data-state]")).to_have_attribute("data-state", "exited", timeout=60_000)

        expect(listed).to_have_text("exited", timeout=30_000)
        assert watching.evaluate("window.notReloaded") is True, "the list must change in place, not reload"
        watching.close()

        page.click("nav >> text=Audit log")
        rows = page.locator("tbody tr")
        expect(rows.filter(has_text="container.stop").filter(has_text="dora-web")).to_have_count(1)
        expect(rows.filter(has_text="container.run").filter(has_text="dora-web")).to_contain_text("success")

        page.goto(base + "/containers/")
        page.once("dialog", lambda dialog: dialog.accept())
        page.check("input[aria-label='Select dora-web']")
        page.click("button[value=remove]")
        expect(page.locator(".messages")).to_contain_text("Removing dora-web.")
        assert not errors, f"the pages raised JavaScript errors: {errors}"
        browser.close()
