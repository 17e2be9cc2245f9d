"""The live websockets: who may open what, the terminal and attach, stats, build output and container events.

Against the real node side (the live server, as the node agent runs it), a real Redis and real
containers; logs are in test_consumers_logs.py.
"""

from __future__ import annotations

import threading
import time
from unittest import mock

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.db import OperationalError
from django.test import TransactionTestCase

from containers import accounts, live, services, tasks
from containers.choices import AuditOutcome, AuditSource, BuildStatus, Role
from containers.live.protocol import Close
from containers.models import AuditEvent, Build, Container, Membership, Team
from tests.servers import wait_for
from tests.web.base import TeamTestCase
from tests.web.live_support import close_of, container, live_node, message, output_until, page, remove, run

__all__ = ["live_node"]

pytestmark = [
    pytest.mark.requires("root", "overlayfs", "busybox", "redis-server"),
    pytest.mark.usefixtures("live_node"),
]

SLEEPER = ["sleep", "1000"]


class WhoMayOpenWhatTests(TeamTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.sleeper = container("who", cls.red, SLEEPER)

    @classmethod
    def tearDownClass(cls) -> None:
        remove(cls.sleeper)
        super().tearDownClass()

    def test_it_refuses_an_outsider_as_if_the_container_did_not_exist(self) -> None:
        async def scenario() -> tuple[tuple[int, str], tuple[int, str]]:
            outsider = page(f"/ws/containers/{self.sleeper.id}/logs/", self.charlie)
            assert (await outsider.connect())[0], "refusals come after the accept, so that the page gets the code"
            unknown = page(f"/ws/containers/{'0' * 64}/logs/", self.charlie)
            await unknown.connect()
            return await close_of(outsider), await close_of(unknown)

        (code, reason), (unknown_code, unknown_reason) = run(scenario)
        assert code == unknown_code == Close.NOT_FOUND
        assert reason == f"no such container: {self.sleeper.id}"
        assert unknown_reason == f"no such container: {'0' * 64}", "an outsider learns nothing a stranger would not"

    def test_it_refuses_a_viewer_a_terminal_and_records_it(self) -> None:
        async def scenario() -> tuple[int, str]:
            ws = page(f"/ws/containers/{self.sleeper.id}/terminal/", self.vera)
            await ws.connect()
            return await close_of(ws)

        code, reason = run(scenario)
        assert code == Close.FORBIDDEN
        assert "needs the operator role, you have viewer" in reason
        denied = AuditEvent.objects.get(action="exec.open", user=self.vera)
        assert (denied.outcome, denied.source) == (AuditOutcome.DENIED, AuditSource.WEBSOCKET)

    def test_it_asks_who_you_are_without_a_session_or_token(self) -> None:
        async def scenario() -> tuple[int, str]:
            # A token in the query string is not looked at: URLs end up in logs.
            ws = page(f"/ws/containers/{self.sleeper.id}/logs/?token=whatever")
            await ws.connect()
            return await close_of(ws)

        code, reason = run(scenario)
        assert code == Close.UNAUTHENTICATED
        assert "bearer.<token>" in reason

    def test_it_takes_a_token_as_a_subprotocol_and_echoes_it(self) -> None:
        _, token = accounts.mint_token(self.bob, self.red, name="browser")
        _, read_only = accounts.mint_token(self.bob, self.red, name="watcher", read_only=True)

        async def scenario() -> tuple[str | None, bytes, tuple[int, str]]:
            ws = page(f"/ws/containers/{self.sleeper.id}/terminal/", subprotocols=[f"bearer.{token}"])
            _, chosen = await ws.connect()
            await ws.send_json_to({"type": "open", "command": "sh", "rows": 24, "cols": 80})
            await message(ws, "opened")
            await ws.send_to(bytes_data=b"echo token-$((1+1))\n")
            seen = await output_until(ws, b"token-2\r\n")
            await ws.disconnect()
            capped = page(f"/ws/containers/{self.sleeper.id}/terminal/", subprotocols=[f"bearer.{read_only}"])
            await capped.connect()
            return chosen, seen, await close_of(capped)

        chosen, seen, (code, _) = run(scenario)
        assert chosen == f"bearer.{token}", "a browser fails a handshake whose subprotocol is not echoed"
        assert b"token-2" in seen
        assert code == Close.FORBIDDEN, "a read-only token acts as a viewer"

    def test_it_answers_ping_with_pong(self) -> None:
        async def scenario() -> dict[str, str]:
            ws = page(f"/ws/containers/{self.sleeper.id}/stats/", self.vera)
            await ws.connect()
            await ws.send_json_to({"type": "ping"})
            pong = await message(ws, "pong")
            await ws.disconnect()
            return pong

        assert run(scenario) == {"type": "pong"}


class TerminalTests(TeamTestCase):
    def setUp(self) -> None:
        self.sleeper = container("terminal", self.red, SLEEPER)
        self.addCleanup(remove, self.sleeper)

    def processes(self) -> int:
        return len(services.engine().containers.top(self.sleeper.id))

    def test_it_runs_a_shell_that_answers_and_follows_the_size(self) -> None:
        async def scenario() -> tuple[dict[str, object], bytes, bytes, bytes]:
            ws = page(f"/ws/containers/{self.sleeper.id}/terminal/", self.bob)
            await ws.connect()
            await ws.send_json_to({"type": "open", "command": "auto", "rows": 24, "cols": 80})
            opened = await message(ws, "opened")
            await ws.send_to(bytes_data=b"echo $((6*7))\n")
            answer = await output_until(ws, b"\r\n42\r\n")
            await ws.send_to(bytes_data=b"stty size\n")
            before = await output_until(ws, b"24 80")
            await ws.send_json_to({"type": "resize", "rows": 40, "cols": 120})
            await ws.send_to(bytes_data=b"stty size\n")
            after = await output_until(ws, b"40 120")
            await ws.disconnect()
            return opened, answer, before, after

        opened, answer, before, after = run(scenario)
        assert opened["command"] == "auto" and opened["tty"] is True and opened["pid"] > 0
        assert b"42" in answer and b"24 80" in before and b"40 120" in after
        wait_for(lambda: self.processes() == 1, 10, "the shell to go when its page went (no leaked exec)")
        opened_row = AuditEvent.objects.get(action="exec.open", user=self.bob)
        closed_row = AuditEvent.objects.get(action="exec.close", user=self.bob)
        assert (opened_row.source, opened_row.outcome) == (AuditSource.WEBSOCKET, AuditOutcome.SUCCESS)
        assert opened_row.detail["command"] == "auto" and closed_row.target_id == self.sleeper.id

    def test_it_closes_with_the_exit_code_when_the_shell_exits(self) -> None:
        async def scenario() -> tuple[int, str]:
            ws = page(f"/ws/containers/{self.sleeper.id}/terminal/", self.bob)
            await ws.connect()
            await ws.send_json_to({"type": "open", "command": "sh", "rows": 24, "cols": 80})
            await message(ws, "opened")
            await ws.send_to(bytes_data=b"exit 3\n")
            return await close_of(ws)

        assert run(scenario) == (Close.SESSION_ENDED + 3, "the session ended (exit code 3)")
        assert AuditEvent.objects.get(action="exec.close", user=self.bob).detail["exit_code"] == 3

    def test_it_says_the_container_stopped_when_it_stops_under_the_shell(self) -> None:
        async def scenario() -> tuple[int, str]:
            ws = page(f"/ws/containers/{self.sleeper.id}/terminal/", self.bob)
            await ws.connect()
            await ws.send_json_to({"type": "open", "command": "sh", "rows": 24, "cols": 80})
            await message(ws, "opened")
            await ws.send_to(bytes_data=b"echo ready\n")
            await output_until(ws, b"ready\r\n")
            services.engine().containers.kill(self.sleeper.id)
            return await close_of(ws)

        code, reason = run(scenario)
        assert code == Close.NOT_RUNNING
        assert reason.startswith("the container stopped (exit code 137)")

    def test_it_refuses_a_terminal_in_a_stopped_container_with_a_clear_message(self) -> None:
        created = container("never-started", self.red, SLEEPER, start=False)
        self.addCleanup(remove, created)

        async def scenario() -> tuple[int, str]:
            ws = page(f"/ws/containers/{created.id}/terminal/", self.bob)
            await ws.connect()
            await ws.send_json_to({"type": "open", "command": "sh", "rows": 24, "cols": 80})
            return await close_of(ws)

        code, reason = run(scenario)
        assert code == Close.NOT_RUNNING
        assert "is not running" in reason

    def test_it_reports_a_command_that_is_not_there(self) -> None:
        async def scenario() -> tuple[int, str]:
            ws = page(f"/ws/containers/{self.sleeper.id}/terminal/", self.bob)
            await ws.connect()
            await ws.send_json_to({"type": "open", "command": "bash", "rows": 24, "cols": 80})
            return await close_of(ws)

        code, reason = run(scenario)
        assert code == Close.SESSION_ENDED + 127, reason
        assert AuditEvent.objects.get(action="exec.open", user=self.bob).outcome == AuditOutcome.FAILED

    def test_it_refuses_a_bad_size(self) -> None:
        async def scenario() -> tuple[int, str]:
            ws = page(f"/ws/containers/{self.sleeper.id}/terminal/", self.bob)
            await ws.connect()
            await ws.send_json_to({"type": "open", "command": "sh", "rows": 0, "cols": "wide"})
            return await close_of(ws)

        assert run(scenario) == (Close.BAD_REQUEST, "rows and cols must be numbers from 1 to 999")


class AttachTests(TeamTestCase):
    def test_it_attaches_to_the_main_process_with_its_terminal(self) -> None:
        main = container("attached", self.red, ["sh"], Tty=True, OpenStdin=True)
        self.addCleanup(remove, main)

        async def scenario() -> tuple[dict[str, object], bytes, tuple[int, str]]:
            ws = page(f"/ws/containers/{main.id}/attach/", self.bob)
            await ws.connect()
            await ws.send_json_to({"type": "open", "rows": 30, "cols": 100})
            opened = await message(ws, "opened")
            await ws.send_to(bytes_data=b"stty size; echo main-$$\n")
            seen = await output_until(ws, b"main-1\r\n")
            await ws.send_to(bytes_data=b"exit 5\n")
            return opened, seen, await close_of(ws)

        opened, seen, (code, reason) = run(scenario)
        assert opened["tty"] is True and opened["stdin"] is True
        assert b"30 100" in seen, "attach sets the main terminal to the page's size"
        assert (code, reason) == (Close.NOT_RUNNING, "the container stopped (exit code 5)")
        assert AuditEvent.objects.filter(action="attach.open", user=self.bob).exists()


class StatsTests(TeamTestCase):
    @pytest.fixture(autouse=True)
    def _live(self, request: pytest.FixtureRequest) -> None:
        self.live: live.LiveServer = request.getfixturevalue("live_node")

    def test_it_pushes_a_sample_a_second_with_the_memory_limit(self) -> None:
        busy = services.create_container(
            {"Image": "busybox", "Cmd": SLEEPER}, {"Memory": 64 * 1024 * 1024, "PidsLimit": 50}, "live-stats",
            team=self.red,
        )  # fmt: skip
        self.addCleanup(remove, busy)
        services.start_container(busy.id)

        async def scenario() -> tuple[dict[str, object], list[dict[str, object]], float]:
            ws = page(f"/ws/containers/{busy.id}/stats/", self.vera)
            await ws.connect()
            await ws.send_json_to({"type": "open"})
            history = await message(ws, "stats")
            started = time.monotonic()
            samples = [(await message(ws, "stats"))["samples"][0] for _ in range(3)]
            elapsed = time.monotonic() - started
            await ws.disconnect()
            return history, samples, elapsed

        history, samples, elapsed = run(scenario)
        assert history["history"] is True
        assert 1.5 < elapsed < 4.5, f"three samples should take about three seconds, took {elapsed:.1f}"
        last = samples[-1]
        assert last["running"] is True and last["mem_limit"] == 64 * 1024 * 1024 and last["pids_limit"] == 50
        assert last["pids"] == 1 and last["mem"] > 0 and last["cpu"] is not None
        assert samples[0]["t"] < samples[1]["t"] < samples[2]["t"]
        wait_for(lambda: not self.live.samplers, 5, "the sampler to stop with its last page")


class BuildOutputTests(TeamTestCase):
    def test_it_sends_the_log_so_far_then_the_steps_as_they_come_then_the_outcome(self) -> None:
        build = Build.objects.create(
            node="test", team=self.red, status=BuildStatus.RUNNING, log="Step 1/2 : FROM busybox\n"
        )
        group = services.build_group(build.id)

        async def scenario() -> tuple[dict[str, object], dict[str, object], dict[str, object], int]:
            ws = page(f"/ws/builds/{build.id}/", self.vera)
            await ws.connect()
            so_far = await message(ws, "log")
            layer = get_channel_layer()
            await layer.group_send(group, {"type": "build.output", "text": "Step 2/2 : RUN echo hi\n"})
            step = await message(ws, "output")
            await sync_finish()
            await layer.group_send(group, {"type": "build.finished", "status": "succeeded", "image_id": "sha256:ab",
                                           "error": ""})  # fmt: skip
            finished = await message(ws, "finished")
            close = await ws.receive_output(5)
            return so_far, step, finished, close["code"]

        async def sync_finish() -> None:
            whole = "Step 1/2 : FROM busybox\nStep 2/2 : RUN echo hi\nhi\n"
            await database_sync_to_async(Build.objects.filter(pk=build.pk).update)(
                status=BuildStatus.SUCCEEDED, image_id="sha256:ab", log=whole
            )

        so_far, step, finished, code = run(scenario)
        assert so_far == {"type": "log", "text": "Step 1/2 : FROM busybox\n", "status": "running"}
        assert step["text"] == "Step 2/2 : RUN echo hi\n"
        assert finished["status"] == "succeeded" and finished["image_id"] == "sha256:ab"
        assert finished["log"].endswith("hi\n"), "the whole log comes from the row, the record"
        assert code == 1000

    def test_it_catches_up_with_output_published_just_before_the_page_joined(self) -> None:
        build = Build.objects.create(node="test", team=self.red, status=BuildStatus.RUNNING, log="one\n")
        group = services.build_group(build.id)

        async def scenario() -> tuple[str, str, dict[str, object]]:
            ws = page(f"/ws/builds/{build.id}/", self.vera)
            await ws.connect()
            so_far = await message(ws, "log")
            # "two" was published before the page joined and reaches the row at the build's next save.
            await database_sync_to_async(Build.objects.filter(pk=build.pk).update)(log="one\ntwo\nthree\n")
            await get_channel_layer().group_send(group, {"type": "build.output", "text": "three\nfour\n"})
            output = await message(ws, "output")
            caught_up = await message(ws, "log", timeout=5)
            await ws.disconnect()
            return so_far["text"], output["text"], caught_up

        so_far, output, caught_up = run(scenario)
        assert so_far == "one\n"
        assert output == "three\nfour\n"
        assert caught_up == {"type": "log", "text": "one\ntwo\nthree\nfour\n", "status": "running"}

    def test_it_refuses_an_outsider(self) -> None:
        build = Build.objects.create(node="test", team=self.red)

        async def scenario() -> tuple[int, str]:
            ws = page(f"/ws/builds/{build.id}/", self.charlie)
            await ws.connect()
            return await close_of(ws)

        assert run(scenario) == (Close.NOT_FOUND, f"no such build: {build.id}")


class ContainerEventsTests(TransactionTestCase):
    """List pages hear of state changes through the node agent's events follower, per team.

    The follower syncs rows from a thread of its own, so the rows are committed, not in a test's transaction.
    """

    def setUp(self) -> None:
        users = get_user_model()
        self.red, blue = Team.objects.create(name="red"), Team.objects.create(name="blue")
        self.bob, self.charlie = users.objects.create_user("bob"), users.objects.create_user("charlie")
        Membership.objects.create(user=self.bob, team=self.red, role=Role.OPERATOR)
        Membership.objects.create(user=self.charlie, team=blue, role=Role.OPERATOR)

    def follow_events(self) -> None:
        """Run the node agent's events follower until the test ends."""
        stopped = threading.Event()
        follower = threading.Thread(target=tasks.follow_events, args=(stopped,), daemon=True)
        follower.start()
        self.addCleanup(follower.join, 5)
        self.addCleanup(stopped.set)
        time.sleep(0.3)  # the follower starts at the end of the event log: let it get there first

    def test_it_tells_the_team_and_not_the_outsider_when_a_container_changes(self) -> None:
        row = container("events", self.red, SLEEPER, start=False)
        self.addCleanup(remove, row)
        self.follow_events()

        async def scenario() -> tuple[dict[str, object], list[dict[str, object]]]:
            member = page("/ws/events/", self.bob)
            outsider = page("/ws/events/", self.charlie)
            await member.connect()
            await outsider.connect()
            # Not through the services: only the engine's events tell the node agent.
            services.engine().containers.start(row.id)
            heard = await message(member, "container")
            while heard["status"] != "running":
                heard = await message(member, "container")
            await outsider.send_json_to({"type": "ping"})
            frames = [await outsider.receive_json_from(5)]
            await member.disconnect()
            await outsider.disconnect()
            return heard, frames

        heard, outsider_frames = run(scenario)
        assert heard["id"] == row.id and heard["name"] == "live-events" and heard["action"] == "start"
        assert outsider_frames == [{"type": "pong"}], "another team's pages hear nothing of red's containers"
        assert Container.objects.get(pk=row.id).status == "running"

    def test_a_container_whose_row_the_follower_wrote_first_is_created_all_the_same(self) -> None:
        self.follow_events()
        engine_create = services.engine().containers.create

        def row_written(pk: str) -> bool:
            try:
                return Container.objects.filter(pk=pk).exists()
            except OperationalError:  # the follower is writing it: the test database locks the table meanwhile
                return False

        def create_heard_by_the_follower(*args: object) -> object:
            record = engine_create(*args)
            wait_for(lambda: row_written(record.id), 5, "the follower to write the row")
            return record

        with mock.patch.object(services.engine().containers, "create", create_heard_by_the_follower):
            row = container("raced", self.red, SLEEPER, start=False)
        self.addCleanup(remove, row)
        assert (row.name, row.team, row.status) == ("live-raced", self.red, "created")
        assert Container.objects.filter(name="live-raced").count() == 1
