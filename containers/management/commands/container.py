"""Operate the node's containers from the command line, like `docker container ...`."""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import termios
import tty
from argparse import REMAINDER
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.timesince import timesince

from containers import services
from containers.engine.errors import EngineError
from containers.engine.shim import protocol
from containers.engine.shim.client import Stream
from containers.engine.shim.logfile import parse_time, read_log

_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_bytes(text: str) -> int:
    """Docker's RAMInBytes: `32m` is 32 MiB; a bare number is bytes."""
    value = text.strip().lower().rstrip("b") or "0"
    unit = value[-1] if value[-1] in _UNITS else "b"
    number = value[:-1] if unit != "b" or value[-1] == "b" else value
    try:
        return int(float(number if unit != "b" else value) * _UNITS[unit])
    except ValueError:
        raise CommandError(f"invalid size: {text!r}") from None


def _env_file(path: str) -> list[str]:
    with open(path) as f:
        lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    return [line if "=" in line else f"{line}={os.environ.get(line, '')}" for line in lines]


class Command(BaseCommand):
    help = "Manage containers: run, ps, inspect, logs, exec, start, stop, kill, restart, pause, unpause, rm."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        run = sub.add_parser("run", help="create and start a container (like docker run)")
        self._run_arguments(run)
        ps = sub.add_parser("ps", help="list containers")
        ps.add_argument("-a", "--all", action="store_true")
        ps.add_argument("-q", "--quiet", action="store_true")
        sub.add_parser("inspect", help="show a container as JSON").add_argument("ref")
        logs = sub.add_parser("logs", help="show a container's output")
        logs.add_argument("-f", "--follow", action="store_true")
        logs.add_argument("-t", "--timestamps", action="store_true")
        logs.add_argument("-n", "--tail", default="all")
        logs.add_argument("--since", default="")
        logs.add_argument("--until", default="")
        logs.add_argument("ref")
        execute = sub.add_parser("exec", help="run a command in a running container")
        execute.add_argument("-i", "--interactive", action="store_true")
        execute.add_argument("-t", "--tty", action="store_true")
        execute.add_argument("-d", "--detach", action="store_true")
        execute.add_argument("-u", "--user", default="")
        execute.add_argument("-w", "--workdir", default="")
        execute.add_argument("-e", "--env", action="append", default=[])
        execute.add_argument("ref")
        execute.add_argument("cmd", nargs=REMAINDER)
        for name in ("start", "pause", "unpause", "wait"):
            sub.add_parser(name).add_argument("refs", nargs="+")
        for name in ("stop", "restart"):
            verb = sub.add_parser(name)
            verb.add_argument("-t", "--time", type=int)
            verb.add_argument("refs", nargs="+")
        kill = sub.add_parser("kill")
        kill.add_argument("-s", "--signal", default="KILL")
        kill.add_argument("refs", nargs="+")
        rm = sub.add_parser("rm")
        rm.add_argument("-f", "--force", action="store_true")
        rm.add_argument("refs", nargs="+")

    @staticmethod
    def _run_arguments(run: CommandParser) -> None:
        run.add_argument("-d", "--detach", action="store_true")
        run.add_argument("-i", "--interactive", action="store_true")
        run.add_argument("-t", "--tty", action="store_true")
        run.add_argument("--rm", action="store_true")
        run.add_argument("--name", default="")
        run.add_argument("-e", "--env", action="append", default=[])
        run.add_argument("--env-file", action="append", default=[])
        run.add_argument("-w", "--workdir", default="")
        run.add_argument("-u", "--user", default="")
        run.add_argument("--hostname", default="")
        run.add_argument("-l", "--label", action="append", default=[])
        run.add_argument("-m", "--memory", default="")
        run.add_argument("--memory-swap", default="")
        run.add_argument("--cpus", type=float, default=0.0)
        run.add_argument("--pids-limit", type=int, default=0)
        run.add_argument("--read-only", action="store_true")
        run.add_argument("--tmpfs", action="append", default=[])
        run.add_argument("-v", "--volume", action="append", default=[])
        run.add_argument("--restart", default="no")
        run.add_argument("--entrypoint", default=None)
        run.add_argument("--network", default="default")
        run.add_argument("--stop-signal", default="")
        run.add_argument("--stop-timeout", type=int, default=None)
        run.add_argument("image")
        run.add_argument("cmd", nargs=REMAINDER)

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            code = getattr(self, "_" + action)(**options)
        except EngineError as err:
            raise CommandError(str(err)) from err
        if code:
            sys.exit(code)

    #
    # run
    #

    def _run(self, **o: Any) -> int:
        config, host_config = self._configs(o)
        container = services.create_container(config, host_config, o["name"])
        if o["detach"]:
            services.start_container(container.id)
            self.stdout.write(container.id)
            return 0
        attach = {"stdin": o["interactive"], "stdout": True, "stderr": True}
        stream = services.start_container(container.id, attach=attach)
        assert stream is not None
        with stream:
            _pump(stream, o["interactive"], o["tty"])
        if stream.exit_code is not None:
            services.sync_container(container.id)
            return stream.exit_code
        return services.wait_container(container.id).exit_code

    def _configs(self, o: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        env = [item for path in o["env_file"] for item in _env_file(path)] + [
            item if "=" in item else f"{item}={os.environ.get(item, '')}" for item in o["env"]
        ]
        config: dict[str, Any] = {
            "Image": o["image"], "Cmd": o["cmd"] or None, "Env": env, "WorkingDir": o["workdir"], "User": o["user"],
            "Hostname": o["hostname"], "Labels": dict(item.partition("=")[::2] for item in o["label"]),
            "Tty": o["tty"], "OpenStdin": o["interactive"], "StdinOnce": o["interactive"],
            "AttachStdin": o["interactive"], "AttachStdout": not o["detach"], "AttachStderr": not o["detach"],
        }  # fmt: skip
        if o["entrypoint"] is not None:
            config["Entrypoint"] = [o["entrypoint"]] if o["entrypoint"] else [""]
        if o["stop_signal"]:
            config["StopSignal"] = o["stop_signal"]
        if o["stop_timeout"] is not None:
            config["StopTimeout"] = o["stop_timeout"]
        policy, _, retries = o["restart"].partition(":")
        host_config: dict[str, Any] = {
            "AutoRemove": o["rm"], "ReadonlyRootfs": o["read_only"], "NetworkMode": o["network"],
            "RestartPolicy": {"Name": policy, "MaximumRetryCount": int(retries or 0)},
            "Binds": o["volume"], "Tmpfs": {t.partition(":")[0]: t.partition(":")[2] for t in o["tmpfs"]},
            "NanoCpus": int(o["cpus"] * 1e9), "PidsLimit": o["pids_limit"] or None,
            "Memory": parse_bytes(o["memory"]) if o["memory"] else 0,
        }  # fmt: skip
        if o["memory_swap"]:
            host_config["MemorySwap"] = -1 if o["memory_swap"] == "-1" else parse_bytes(o["memory_swap"])
        if sys.stdin.isatty() and o["tty"]:
            size = os.get_terminal_size(sys.stdin.fileno())
            config["ConsoleSize"] = [size.lines, size.columns]
        return config, host_config

    #
    # listing and inspection
    #

    def _ps(self, all: bool, quiet: bool, **o: Any) -> int:
        rows = services.sync_containers()
        shown = [row for row in rows if all or row.status in ("running", "paused", "restarting")]
        if quiet:
            for row in shown:
                self.stdout.write(row.short_id)
            return 0
        table = [("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES")]
        now = datetime.now(UTC)
        for row in shown:
            command = row.command if len(row.command) <= 20 else row.command[:19] + "…"
            table.append((row.short_id, row.image_ref, f'"{command}"', f"{_ago(row.created, now)} ago",
                          _status(row, now), row.name))  # fmt: skip
        widths = [max(len(r[i]) for r in table) for i in range(6)]
        for r in table:
            self.stdout.write("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        return 0

    def _inspect(self, ref: str, **o: Any) -> int:
        containers = services.engine().containers
        record = containers.get(ref)
        state = containers.state(record.id)
        self.stdout.write(json.dumps({"Record": record.__dict__, "State": state.__dict__}, indent=2))
        return 0

    def _logs(self, ref: str, follow: bool, timestamps: bool, tail: str, since: str, until: str, **o: Any) -> int:
        containers = services.engine().containers
        record = containers.get(ref)

        def stopped() -> bool:
            state = containers.state(record.id)
            return not (state.running or state.restarting or state.paused)

        records = read_log(
            containers.log_path(record.id), tail=None if tail == "all" else int(tail),
            since_ns=_time_ns(since), until_ns=_time_ns(until), follow=follow, stopped=stopped,
        )  # fmt: skip
        for item in records:
            target = sys.stdout.buffer if item.stream == "stdout" else sys.stderr.buffer
            target.write((item.timestamp().encode() + b" " if timestamps else b"") + item.text)
            target.flush()
        return 0

    #
    # exec and verbs
    #

    def _exec(self, ref: str, cmd: list[str], interactive: bool, detach: bool, **o: Any) -> int:
        size = None
        tty_wanted = o["tty"]
        if tty_wanted and sys.stdin.isatty():
            terminal = os.get_terminal_size(sys.stdin.fileno())
            size = [terminal.lines, terminal.columns]
        stream = services.engine().containers.exec(
            ref, cmd, user=o["user"], env=o["env"], workdir=o["workdir"], tty=tty_wanted, stdin=interactive,
            detach=detach, console_size=size,
        )  # fmt: skip
        with stream:
            if detach:
                return 0
            _pump(stream, interactive, tty_wanted)
        return stream.exit_code or 0

    def _each(self, refs: list[str], verb: Any) -> int:
        failed = 0
        for ref in refs:
            try:
                verb(ref)
                self.stdout.write(ref)
            except EngineError as err:
                self.stderr.write(f"Error response from daemon: {err}")
                failed = 1
        return failed

    def _start(self, refs: list[str], **o: Any) -> int:
        return self._each(refs, services.start_container)

    def _stop(self, refs: list[str], time: int | None, **o: Any) -> int:
        return self._each(refs, lambda ref: services.stop_container(ref, time))

    def _restart(self, refs: list[str], time: int | None, **o: Any) -> int:
        return self._each(refs, lambda ref: services.restart_container(ref, time))

    def _kill(self, refs: list[str], signal: str, **o: Any) -> int:
        return self._each(refs, lambda ref: services.kill_container(ref, signal))

    def _pause(self, refs: list[str], **o: Any) -> int:
        return self._each(refs, services.pause_container)

    def _unpause(self, refs: list[str], **o: Any) -> int:
        return self._each(refs, services.unpause_container)

    def _rm(self, refs: list[str], force: bool, **o: Any) -> int:
        return self._each(refs, lambda ref: services.remove_container(ref, force))

    def _wait(self, refs: list[str], **o: Any) -> int:
        for ref in refs:
            self.stdout.write(str(services.wait_container(ref).exit_code))
        return 0


def _status(row: Any, now: datetime) -> str:
    if row.status == "running":
        return f"Up {_ago(row.started_at, now)}" if row.started_at else "Up"
    if row.status == "exited":
        ago = f" {_ago(row.finished_at, now)} ago" if row.finished_at else ""
        return f"Exited ({row.exit_code}){ago}"
    return row.status.capitalize()


def _ago(when: datetime, now: datetime) -> str:
    """Docker's short durations: `5 seconds`, `About a minute`, then Django's `3 hours`."""
    seconds = (now - when).total_seconds()
    if seconds < 1:
        return "Less than a second"
    if seconds < 60:
        return f"{int(seconds)} second{'s' if int(seconds) != 1 else ''}"
    if seconds < 120:
        return "About a minute"
    return timesince(when, now, depth=1)


def _time_ns(text: str) -> int:
    if not text:
        return 0
    if text.replace(".", "").isdigit():
        return int(float(text) * 1e9)
    return parse_time(text)


def _pump(stream: Stream, interactive: bool, raw: bool) -> None:
    """Copy our stdin to the stream (if interactive) and its output to our stdout and stderr."""
    stdin = sys.stdin.fileno()
    saved = None
    if raw and interactive and os.isatty(stdin):
        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin)

        def follow_window(signum: int, frame: object) -> None:
            size = os.get_terminal_size(stdin)
            stream.resize(size.lines, size.columns)

        signal.signal(signal.SIGWINCH, follow_window)
    try:
        inputs = [stream.sock, stdin] if interactive else [stream.sock]
        while True:
            ready, _, _ = select.select(inputs, [], [])
            if stdin in ready:
                data = os.read(stdin, 65536)
                if data:
                    stream.write(data)
                else:
                    stream.close_stdin()
                    inputs.remove(stdin)
            if stream.sock in ready:
                frames = stream.receive()
                if frames is None:
                    return
                for kind, payload in frames:
                    if kind in (protocol.STDOUT, protocol.STDERR):
                        target = sys.stdout.buffer if kind == protocol.STDOUT else sys.stderr.buffer
                        target.write(payload)
                        target.flush()
    finally:
        if saved is not None:
            signal.signal(signal.SIGWINCH, signal.SIG_DFL)
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
