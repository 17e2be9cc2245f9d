"""The container lifecycle through the engine, on the real kernel: `docker run`'s options and verbs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from containers.engine import events, lifecycle
from containers.engine.engine import Engine
from containers.engine.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from containers.engine.lifecycle import Record
from containers.engine.runtime.state import process_start_time
from containers.engine.shim.logfile import read_log
from tests.conftest import has_feature
from tests.engine.conftest import busybox_engine
from tests.servers import wait_for

pytestmark = pytest.mark.requires("root", "overlayfs", "busybox")


@pytest.fixture(params=["native", "runc"])
def engine(request: pytest.FixtureRequest, state_root: Path) -> Iterator[Engine]:
    """An engine over our runtime, and over runc: the setting swaps them and nothing else changes."""
    if request.param == "runc" and not has_feature("runc"):
        pytest.skip("needs runc")
    with busybox_engine(state_root, runtime=request.param) as engine:
        yield engine


def run(engine: Engine, cmd: list[str], timeout: float = 20, **host_config: object) -> tuple[Record, int, str]:
    """Create, start and wait for a container; return its record, exit code and combined output."""
    config = {"Image": "busybox", "Cmd": cmd}
    config.update({k: v for k, v in host_config.items() if k[0].isupper() and k in ("User", "WorkingDir", "Env")})
    hc = {k: v for k, v in host_config.items() if k not in config}
    record = engine.containers.create(config, hc)
    engine.containers.start(record.id)
    state = engine.containers.wait(record.id, timeout=timeout)
    assert not state.running, f"{cmd} did not finish within {timeout}s"
    return record, state.exit_code, output(engine, record.id)


def output(engine: Engine, ref: str) -> str:
    return "".join(r.text.decode() for r in read_log(engine.containers.log_path(ref)))


def test_it_runs_a_command_and_keeps_its_output_and_exit_code(engine: Engine) -> None:
    record, code, out = run(engine, ["sh", "-c", "echo hello; echo oops >&2; exit 3"])
    assert code == 3
    assert out == "hello\noops\n"
    streams = [r.stream for r in read_log(engine.containers.log_path(record.id))]
    assert streams == ["stdout", "stderr"], "stdout and stderr must be told apart"


def test_it_gives_the_container_its_own_hostname_hosts_and_loopback(engine: Engine) -> None:
    record, code, out = run(engine, ["sh", "-c", "hostname; grep -c localhost /etc/hosts; ip -o addr | grep -c ' lo '"])
    hostname, hosts, loopback = out.split()
    assert code == 0
    assert hostname == record.id[:12]
    assert int(hosts) >= 1
    assert int(loopback) >= 1, "loopback should be up in the container's network namespace"


def test_it_cannot_see_host_processes_or_interfaces(engine: Engine) -> None:
    _, _, out = run(engine, ["sh", "-c", "ps -o pid,comm | tail -n +2 > /tmp/ps; cat /tmp/ps; ls /sys/class/net"])
    lines = out.splitlines()
    processes = {tuple(line.split()) for line in lines if line.strip()[:1].isdigit()}
    assert ("1", "sh") in processes, "pid 1 should be the container's command"
    assert {comm for _, comm in processes} <= {"sh", "ps", "tail", "exe"}, f"host processes are visible: {processes}"
    assert lines[-1] == "lo", f"host network interfaces leak into the container: {lines[-1]}"


def test_it_applies_user_workdir_and_env_from_options(engine: Engine) -> None:
    _, code, out = run(
        engine, ["sh", "-c", "id -u; id -g; pwd; echo $GREETING; echo $HOME"],
        User="nobody", WorkingDir="/work/dir", Env=["GREETING=hi there"],
    )  # fmt: skip
    assert code == 0
    assert out.split("\n")[:5] == ["65534", "65534", "/work/dir", "hi there", "/home"]


def test_a_missing_command_fails_start_with_dockers_words(engine: Engine) -> None:
    record = engine.containers.create({"Image": "busybox", "Cmd": ["nosuchcommand"]})
    with pytest.raises(Exception, match='exec: "nosuchcommand": executable file not found in \\$PATH'):
        engine.containers.start(record.id)
    state = engine.containers.state(record.id)
    assert state.status == "exited" and state.exit_code == 127


def test_stop_sends_the_stop_signal_then_kills_after_the_timeout(engine: Engine) -> None:
    trapping = engine.containers.create(
        {"Image": "busybox", "Cmd": ["sh", "-c", "trap 'exit 42' TERM; while true; do sleep 0.05; done"]}
    )
    engine.containers.start(trapping.id)
    time.sleep(0.3)
    assert engine.containers.stop(trapping.id, timeout=5) is True
    assert engine.containers.state(trapping.id).exit_code == 42, "the trap should have run on SIGTERM"

    stubborn = engine.containers.create({"Image": "busybox", "Cmd": ["sleep", "1000"]})
    engine.containers.start(stubborn.id)
    started = time.monotonic()
    engine.containers.stop(stubborn.id, timeout=1)
    assert 0.9 < time.monotonic() - started < 5
    assert engine.containers.state(stubborn.id).exit_code == 137, "pid 1 ignores SIGTERM: SIGKILL after 1s"
    assert engine.containers.stop(stubborn.id) is False, "stopping a stopped container changes nothing"


def test_kill_sends_any_signal(engine: Engine) -> None:
    record = engine.containers.create(
        {"Image": "busybox", "Cmd": ["sh", "-c", "trap 'exit 7' USR1; while true; do sleep 0.05; done"]}
    )
    engine.containers.start(record.id)
    time.sleep(0.3)
    engine.containers.kill(record.id, "USR1")
    assert engine.containers.wait(record.id, timeout=10).exit_code == 7
    with pytest.raises(Conflict, match="is not running"):
        engine.containers.kill(record.id)


def test_a_memory_hog_is_oom_killed_and_reported(engine: Engine) -> None:
    _, code, _ = run(
        engine, ["sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"],
        Memory=32 * 1024 * 1024, MemorySwap=32 * 1024 * 1024,
    )  # fmt: skip
    record = engine.containers.list()[0]
    state = engine.containers.state(record.id)
    assert state.oom_killed, "a container past its memory limit must be reported as OOM-killed"
    assert code == 137


def test_a_fork_bomb_stops_at_the_pids_limit(engine: Engine) -> None:
    # The inner shell dies at its first failed fork, leaving its sleeps; `read` and `echo` are
    # builtins of the outer shell, so counting needs no fork once the limit is reached.
    _, _, out = run(
        engine, ["sh", "-c", "sh -c 'for i in $(seq 40); do sleep 5 & done' 2>/dev/null; "
                 "read n < /sys/fs/cgroup/pids/pids.current; echo $n; read m < /sys/fs/cgroup/pids/pids.max; echo $m"],
        PidsLimit=10,
    )  # fmt: skip
    current, maximum = out.split()
    assert maximum == "10"
    assert 5 <= int(current) <= 10, f"the pids limit of 10 let {current} processes exist"


def test_the_restart_policy_restarts_on_failure_up_to_its_count(engine: Engine) -> None:
    record = engine.containers.create(
        {"Image": "busybox", "Cmd": ["sh", "-c", "echo run; exit 1"]},
        {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}},
    )
    engine.containers.start(record.id)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and engine.containers.state(record.id).status != "exited":
        time.sleep(0.05)
    assert engine.containers.state(record.id).status == "exited"
    assert output(engine, record.id) == "run\nrun\nrun\n", "one run and two restarts"


def test_exec_runs_in_the_container_with_its_exit_code(engine: Engine) -> None:
    record = engine.containers.create({"Image": "busybox", "Cmd": ["sleep", "1000"], "Hostname": "box"})
    engine.containers.start(record.id)
    with engine.containers.exec(record.id, ["sh", "-c", "hostname; echo err >&2; exit 5"]) as stream:
        out, err = stream.collect()
    assert (out, err, stream.exit_code) == (b"box\n", b"err\n", 5)
    with engine.containers.exec(record.id, ["cat"], stdin=True) as stream:
        stream.write(b"through stdin\n")
        stream.close_stdin()
        out, _ = stream.collect()
    assert out == b"through stdin\n"


def test_an_execs_output_is_its_own_not_the_containers(engine: Engine) -> None:
    ticking = ["sh", "-c", "while true; do echo tick; sleep 0.05; done"]
    record = engine.containers.create({"Image": "busybox", "Cmd": ticking})
    engine.containers.start(record.id)
    command = ["sh", "-c", "sleep 0.3; echo mine; echo to-pid-1 > /proc/1/fd/1"]
    with engine.containers.exec(record.id, command) as stream:
        out, err = stream.collect()
    assert (out, err) == (b"mine\n", b""), "docker exec shows what its process writes, as on Docker"
    wait_for(lambda: "to-pid-1" in output(engine, record.id), 5, "the line written to PID 1's stdout in its log")
    engine.containers.remove(record.id, force=True)


def test_a_container_seen_exited_is_released_and_starts_again_at_once(engine: Engine) -> None:
    """`docker wait` (which may poll the state) then `docker start`: the start must not race the release."""
    record = engine.containers.create({"Image": "busybox", "Cmd": ["true"]})
    rootfs = engine.config.containers_root / record.id / "rootfs"
    for _ in range(10):
        engine.containers.start(record.id)
        deadline = time.monotonic() + 20
        while engine.containers.state(record.id).status != "exited":  # as fast as a poll can see it
            assert time.monotonic() < deadline, "`true` never seen exited"
        with open("/proc/self/mounts") as f:
            assert not any(line.split()[1] == str(rootfs) for line in f), "exited, but its rootfs still mounted"
    engine.containers.remove(record.id)


def test_exec_with_a_tty_follows_resize(engine: Engine) -> None:
    record = engine.containers.create({"Image": "busybox", "Cmd": ["sleep", "1000"]})
    engine.containers.start(record.id)
    with engine.containers.exec(record.id, ["sh"], tty=True, stdin=True, console_size=[24, 80]) as stream:
        seen = ""
        frames = stream.frames()
        stream.write(b"stty size; tty\n")
        while "/dev/pts/" not in seen:
            seen += next(frames)[1].decode(errors="replace")
        stream.resize(40, 120)
        stream.write(b"stty size; exit 0\n")
        for _, payload in frames:
            seen += payload.decode(errors="replace")
    assert "24 80" in seen and "40 120" in seen, seen
    assert stream.exit_code == 0


def test_pause_freezes_and_unpause_thaws(engine: Engine) -> None:
    record = engine.containers.create({"Image": "busybox", "Cmd": ["sleep", "1000"]})
    engine.containers.start(record.id)
    engine.containers.pause(record.id)
    assert engine.containers.state(record.id).status == "paused"
    with pytest.raises(Conflict):
        engine.containers.exec(record.id, ["true"])
    engine.containers.unpause(record.id)
    assert engine.containers.state(record.id).status == "running"


def test_read_only_rootfs_tmpfs_and_bind_mounts(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "shared.txt").write_text("from the host\n")
    _, code, out = run(
        engine,
        ["sh", "-c", "touch /x 2>/dev/null && echo wrote-root; touch /scratch/y && echo wrote-tmpfs; "
         "cat /data/shared.txt; touch /data/z 2>/dev/null || echo ro-bind"],
        ReadonlyRootfs=True, Tmpfs={"/scratch": "size=1m"}, Binds=[f"{tmp_path}:/data:ro"],
    )  # fmt: skip
    assert out.split("\n")[:3] == ["wrote-tmpfs", "from the host", "ro-bind"]


def test_names_are_unique_and_any_unique_prefix_works(engine: Engine) -> None:
    record = engine.containers.create({"Image": "busybox", "Cmd": ["true"]}, name="web")
    with pytest.raises(AlreadyExists, match='The container name "/web" is already in use'):
        engine.containers.create({"Image": "busybox", "Cmd": ["true"]}, name="web")
    assert engine.containers.get("/web").id == record.id
    assert engine.containers.get(record.id[:6]).id == record.id
    engine.containers.rename("web", "api")
    assert engine.containers.get("api").id == record.id
    with pytest.raises(NotFound, match="No such container: web"):
        engine.containers.get("web")
    with pytest.raises(InvalidArgument):
        engine.containers.create({"Image": "busybox", "Cmd": ["true"]}, name="bad name!")


def test_remove_refuses_a_running_container_unless_forced(engine: Engine) -> None:
    record = engine.containers.create({"Image": "busybox", "Cmd": ["sleep", "1000"]}, name="busy")
    engine.containers.start(record.id)
    with pytest.raises(Conflict, match="stop the container before removing or force remove"):
        engine.containers.remove(record.id)
    engine.containers.remove(record.id, force=True)
    with pytest.raises(NotFound):
        engine.containers.get(record.id)
    assert not (engine.config.containers_root / record.id).exists()


def test_auto_remove_removes_the_container_when_it_exits(engine: Engine) -> None:
    record = engine.containers.create({"Image": "busybox", "Cmd": ["true"]}, {"AutoRemove": True})
    engine.containers.start(record.id)
    deadline = time.monotonic() + 10
    while (engine.config.containers_root / record.id).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not (engine.config.containers_root / record.id).exists()


def test_the_image_in_use_cannot_be_removed(engine: Engine) -> None:
    record = engine.containers.create({"Image": "busybox", "Cmd": ["sleep", "1000"]})
    engine.containers.start(record.id)
    with pytest.raises(Conflict):
        engine.images.remove(engine.images.get("busybox").id)
    engine.containers.remove(record.id, force=True)


def test_attaching_at_start_loses_no_output_and_forwards_stdin(engine: Engine) -> None:
    command = ["sh", "-c", "echo first; cat; echo last >&2"]
    record = engine.containers.create({"Image": "busybox", "Cmd": command, "OpenStdin": True, "StdinOnce": True})
    stream = engine.containers.start(record.id, attach={"stdin": True, "stdout": True, "stderr": True})
    assert stream is not None
    with stream:
        stream.write(b"typed\n")
        stream.close_stdin()
        out, err = stream.collect()
    assert (out, err, stream.exit_code) == (b"first\ntyped\n", b"last\n", 0)


def test_containers_outlive_the_process_that_started_them_and_the_shim_server(engine: Engine, state_root: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from containers.engine.config import EngineConfig; "
        "from containers.engine.engine import Engine; "
        f"e = Engine(EngineConfig(root=Path({str(state_root)!r}), "
        f"cgroup_parent={os.environ['WEBENGINE_CGROUP_PARENT']!r}, runtime={engine.config.runtime!r})); "
        "r = e.containers.create({'Image': 'busybox', 'Cmd': ['sleep', '1000']}, name='survivor'); "
        "e.containers.start(r.id); print(r.id, flush=True); import time; time.sleep(1000)"
    )
    starter = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        container_id = starter.stdout.readline().strip()
    finally:
        starter.kill()
        starter.wait()
    server = engine.containers.shim.ping()
    assert server is not None
    os.kill(server, signal.SIGKILL)
    time.sleep(0.2)
    state = engine.containers.state(container_id)
    assert state.running, "killing the node agent and the shim server must not touch a running container"
    with engine.containers.exec(container_id, ["echo", "still here"]) as stream:
        assert stream.collect()[0] == b"still here\n"


def test_reconcile_recovers_a_container_whose_monitor_died(engine: Engine) -> None:
    record = engine.containers.create(
        {"Image": "busybox", "Cmd": ["sleep", "1000"]}, {"RestartPolicy": {"Name": "always"}}
    )
    engine.containers.start(record.id)
    monitor = json.loads((engine.config.containers_root / record.id / "monitor.json").read_text())
    os.kill(monitor["monitor_pid"], signal.SIGKILL)
    time.sleep(0.1)
    assert engine.containers.state(record.id).status == "dead"
    done = engine.containers.reconcile()
    assert any("killed unsupervised" in line for line in done), done
    assert any("restarted" in line for line in done), done
    state = engine.containers.state(record.id)
    assert state.running and state.pid != monitor["pid"]
    assert process_start_time(monitor["pid"]) is None, "the unsupervised process must be gone (or a zombie)"


def test_a_reconcile_as_a_start_mounts_the_rootfs_leaves_it_to_that_start(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node agent reconciles as it starts, which may be while a `docker run` starts its container:
    a rootfs mounted for a start whose monitor is not up yet is no orphan's. It was unmounted, and
    the process was not found in the empty directory left (exit 127)."""
    mount_all = lifecycle.mount_all

    def then_reconcile(*args: object, **kwargs: object) -> None:
        mount_all(*args, **kwargs)  # type: ignore[arg-type]
        engine.containers.reconcile()

    monkeypatch.setattr(lifecycle, "mount_all", then_reconcile)
    record, code, out = run(engine, ["echo", "hello"])
    assert (code, out) == (0, "hello\n"), "a new container"
    engine.containers.start(record.id)
    assert engine.containers.wait(record.id, timeout=20).exit_code == 0
    assert output(engine, record.id) == "hello\nhello\n", "an exited one started again"


def test_every_change_is_an_event_in_dockers_words(engine: Engine) -> None:
    record, _, _ = run(engine, ["sh", "-c", "exit 2"])
    engine.containers.remove(record.id)
    happened = [(e.action, dict(e.attributes)) for e in events.read(engine.config.root) if e.id == record.id]
    assert [action for action, _ in happened] == ["create", "start", "die", "destroy"]
    assert happened[2][1] == {"exitCode": "2"}


def test_a_removed_container_that_could_not_start_says_so_in_the_events(engine: Engine) -> None:
    record = engine.containers.create({"Image": "busybox", "Cmd": ["nosuchcommand"]}, {"AutoRemove": True})
    with pytest.raises(Exception, match="executable file not found"):
        engine.containers.start(record.id)
    with pytest.raises(NotFound):
        engine.containers.get(record.id)
    assert [e.action for e in events.read(engine.config.root) if e.id == record.id] == ["create", "destroy"]
