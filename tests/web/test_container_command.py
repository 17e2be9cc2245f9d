"""`manage.py container ...` drives the lifecycle as an operator would, from a fresh state root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.servers import REPO

pytestmark = pytest.mark.requires("root", "overlayfs", "busybox")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    root = Path(os.environ["WEBENGINE_TEST_ROOT"]) / "command"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {"WEBENGINE_ROOT": str(root), "DJANGO_SETTINGS_MODULE": "webengine.settings"}
    assert manage(env, "migrate", "--noinput").returncode == 0
    assert manage(env, "image", "create-busybox").returncode == 0
    yield env
    ids = manage(env, "container", "ps", "-a", "-q").stdout.split()
    if ids:
        manage(env, "container", "rm", "-f", *ids)
    stop_shim = "from containers import services; services.engine().containers.shim.shutdown()"
    manage(env, "shell", "-v", "0", "-c", stop_shim)


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def test_run_prints_the_output_and_exits_with_the_status(env: dict[str, str]) -> None:
    hello = manage(env, "container", "run", "--rm", "busybox", "echo", "hello")
    assert (hello.stdout, hello.returncode) == ("hello\n", 0), hello.stderr
    failing = manage(env, "container", "run", "--rm", "busybox", "sh", "-c", "echo to-stderr >&2; exit 3")
    assert (failing.stderr, failing.returncode) == ("to-stderr\n", 3)


def test_a_memory_hog_is_reported_oom_killed(env: dict[str, str]) -> None:
    hog = "x=$(head -c 200000000 /dev/zero | tr '\\0' a)"
    run = manage(env, "container", "run", "--name", "hog", "--memory", "32m", "busybox", "sh", "-c", hog)
    assert run.returncode == 137
    state = json.loads(manage(env, "container", "inspect", "hog").stdout)["State"]
    assert state["oom_killed"] is True and state["exit_code"] == 137
    assert "Exited (137)" in manage(env, "container", "ps", "-a").stdout


def test_an_interactive_shell_works_through_exec_with_a_pty(env: dict[str, str]) -> None:
    started = manage(env, "container", "run", "-d", "--name", "web", "busybox", "sleep", "1000")
    assert started.returncode == 0, started.stderr
    shell = pexpect.spawn(
        sys.executable, ["manage.py", "container", "exec", "-it", "web", "sh"], cwd=str(REPO), env=env,
        dimensions=(24, 80), timeout=20,
    )  # fmt: skip
    try:
        shell.expect("# ")
        shell.sendline("echo $((6*7))")
        shell.expect("42")
        shell.sendline("stty size")
        shell.expect("24 80")
        shell.setwinsize(40, 120)
        shell.sendline("stty size")
        shell.expect("40 120")
        shell.sendline("exit 4")
        shell.expect(pexpect.EOF)
    finally:
        shell.close()
    assert shell.exitstatus == 4
    logs = manage(env, "container", "logs", "web")
    assert logs.returncode == 0
    assert manage(env, "container", "stop", "-t", "1", "web").returncode == 0
    assert manage(env, "container", "rm", "web").returncode == 0
