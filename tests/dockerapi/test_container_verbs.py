"""Container verbs, logs, exec, inspect, stats, events and prune, driven by the real docker CLI 28 and docker-py 7.

Where the output is stable, the expected text is what Docker prints for the same command.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator

import docker
import pexpect
import pytest

from tests.dockerapi.conftest import ApiServer
from tests.servers import wait_for

pytestmark = pytest.mark.requires("root", "overlayfs", "busybox")
cli = pytest.mark.requires("docker-cli")

AGO = r"(Less than a second|1 second|\d+ seconds)"


@pytest.fixture(autouse=True)
def no_containers_left(api: ApiServer) -> Iterator[None]:
    """Remove every container the test made, however it ended."""
    yield
    for container in api.client().containers.list(all=True):
        container.remove(force=True)


def docker_ok(api: ApiServer, *args: str, input: str | None = None) -> str:
    """Return what `docker ARGS` prints; fail with its stderr."""
    result = api.docker(*args, input=input)
    assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}"
    return result.stdout


def status(api: ApiServer, name: str) -> str:
    return docker_ok(api, "ps", "-a", "--filter", f"name=^{name}$", "--format", "{{.Status}}").strip()


def cli_env(api: ApiServer) -> dict[str, str]:
    return {"DOCKER_HOST": api.url, "DOCKER_CONFIG": str(api.docker_config), "PATH": "/usr/local/bin:/usr/bin:/bin"}


#
# start, attach, wait
#


@cli
def test_start_a_i_pipes_stdin_through_and_exits_with_the_containers_code(api: ApiServer) -> None:
    docker_ok(api, "create", "-i", "--name", "upper", "busybox", "sh", "-c", "tr a-z A-Z; exit 4")
    first = api.docker("start", "-a", "-i", "upper", input="piped through\n")
    assert (first.returncode, first.stdout) == (4, "PIPED THROUGH\n"), first.stderr
    again = api.docker("start", "-ai", "upper", input="once more\n")
    assert (again.returncode, again.stdout) == (4, "ONCE MORE\n"), "a second start runs the command anew"


@cli
def test_attach_joins_a_running_container_until_it_exits(api: ApiServer) -> None:
    script = "echo before; read line; echo got $line; echo err >&2; exit 6"
    docker_ok(api, "run", "-d", "-i", "--name", "joined", "busybox", "sh", "-c", script)
    wait_for(lambda: docker_ok(api, "logs", "joined") == "before\n", 5, "the container to wait for its stdin")
    attached = api.docker("attach", "joined", input="hello\n")
    # Only what comes after the attach, as on Docker; the exit code is the container's.
    assert (attached.returncode, attached.stdout, attached.stderr) == (6, "got hello\n", "err\n")


@cli
def test_wait_prints_each_exit_code(api: ApiServer) -> None:
    docker_ok(api, "run", "-d", "--name", "slow", "busybox", "sh", "-c", "sleep 0.3; exit 42")
    docker_ok(api, "run", "-d", "--name", "quick", "busybox", "sh", "-c", "exit 3")
    assert docker_ok(api, "wait", "slow", "quick") == "42\n3\n"
    assert docker_ok(api, "wait", "slow") == "42\n", "waiting for an exited container answers at once"
    assert docker_ok(api, "inspect", "-f", "{{.State.ExitCode}}", "quick") == "3\n"
    missing = api.docker("wait", "nosuch")
    assert (missing.returncode, missing.stderr) == (1, "Error response from daemon: No such container: nosuch\n")


@cli
def test_ps_status_reads_as_on_docker(api: ApiServer) -> None:
    docker_ok(api, "create", "--name", "fresh", "busybox", "true")
    docker_ok(api, "run", "-d", "--name", "up", "busybox", "sleep", "100")
    assert api.docker("run", "--name", "done", "busybox", "sh", "-c", "exit 3").returncode == 3
    assert status(api, "fresh") == "Created"
    assert re.fullmatch(f"Up {AGO}", status(api, "up"))
    assert re.fullmatch(rf"Exited \(3\) {AGO} ago", status(api, "done"))
    listed = docker_ok(api, "ps", "--format", "{{.Names}}")
    assert listed == "up\n", "ps without -a lists the running containers only"


#
# stop, kill, restart, pause, rm, rename
#


@cli
def test_kill_s_sends_the_signal_and_kill_ends_the_container(api: ApiServer) -> None:
    script = "trap 'echo got usr1' USR1; echo ready; while true; do sleep 0.1; done"
    docker_ok(api, "run", "-d", "--name", "signalled", "busybox", "sh", "-c", script)
    wait_for(lambda: docker_ok(api, "logs", "signalled") == "ready\n", 5, "the trap to be set")
    assert docker_ok(api, "kill", "-s", "USR1", "signalled") == "signalled\n"
    wait_for(lambda: docker_ok(api, "logs", "signalled") == "ready\ngot usr1\n", 5, "the trap to run")
    assert re.fullmatch(f"Up {AGO}", status(api, "signalled")), "a trapped signal leaves the container running"
    assert docker_ok(api, "kill", "signalled") == "signalled\n"
    assert docker_ok(api, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "signalled") == "exited 137\n"
    again = api.docker("kill", "signalled")
    assert again.returncode == 1 and "is not running" in again.stderr


@cli
def test_restart_runs_the_command_again_without_counting_a_restart(api: ApiServer) -> None:
    docker_ok(api, "run", "-d", "--name", "rerun", "busybox", "sh", "-c", "echo run; sleep 100")
    first = docker_ok(api, "inspect", "-f", "{{.State.StartedAt}}", "rerun")
    following = subprocess.Popen(["docker", "logs", "-f", "rerun"], env=cli_env(api), stdout=subprocess.PIPE, text=True)
    try:
        assert following.stdout is not None and following.stdout.readline() == "run\n"
        assert docker_ok(api, "restart", "-t", "0", "rerun") == "rerun\n"
        assert following.wait(timeout=5) == 0, "logs -f ends when the run it follows stops"
    finally:
        following.kill()
        following.communicate()
    wait_for(lambda: docker_ok(api, "logs", "rerun") == "run\nrun\n", 5, "the second run's output")
    state = json.loads(docker_ok(api, "inspect", "rerun"))[0]
    assert state["State"]["Running"] and state["State"]["StartedAt"] != first
    assert state["RestartCount"] == 0, "Docker counts the restarts of its policy only"
    docker_ok(api, "stop", "-t", "0", "rerun")
    assert docker_ok(api, "restart", "rerun") == "rerun\n", "restart starts a stopped container too"
    assert re.fullmatch(f"Up {AGO}", status(api, "rerun"))


@cli
def test_pause_freezes_the_container_and_unpause_thaws_it(api: ApiServer) -> None:
    docker_ok(api, "run", "-d", "--name", "frozen", "busybox", "sh", "-c", "while true; do echo tick; sleep 0.05; done")
    assert docker_ok(api, "pause", "frozen") == "frozen\n"
    assert re.fullmatch(rf"Up {AGO} \(Paused\)", status(api, "frozen"))
    assert docker_ok(api, "inspect", "-f", "{{.State.Status}} {{.State.Paused}}", "frozen") == "paused true\n"
    ticks = docker_ok(api, "logs", "frozen").count("tick")
    time.sleep(0.3)
    assert docker_ok(api, "logs", "frozen").count("tick") == ticks, "a paused container makes no progress"
    refused = api.docker("exec", "frozen", "true")
    assert refused.returncode == 1 and "is paused, unpause the container before exec" in refused.stderr
    assert docker_ok(api, "unpause", "frozen") == "frozen\n"
    assert re.fullmatch(f"Up {AGO}", status(api, "frozen"))
    wait_for(lambda: docker_ok(api, "logs", "frozen").count("tick") > ticks, 5, "the ticks to go on")


@cli
def test_rm_refuses_a_running_container_unless_forced_and_rename_renames(api: ApiServer) -> None:
    docker_ok(api, "run", "-d", "--name", "first", "busybox", "sleep", "100")
    docker_ok(api, "create", "--name", "taken", "busybox")
    assert docker_ok(api, "rename", "first", "second") == ""
    assert docker_ok(api, "ps", "--format", "{{.Names}}") == "second\n"
    assert "No such container: first" in api.docker("inspect", "--type", "container", "first").stderr
    conflict = api.docker("rename", "second", "taken")
    assert conflict.returncode == 1 and 'The container name "/taken" is already in use' in conflict.stderr

    refused = api.docker("rm", "second")
    assert refused.returncode == 1
    assert 'cannot remove container "/second": container is running' in refused.stderr
    assert docker_ok(api, "rm", "-f", "second", "taken") == "second\ntaken\n"
    assert docker_ok(api, "ps", "-aq") == ""
    assert api.docker("rm", "-f", "second").returncode == 0, "rm -f of a missing container is no error"


@cli
def test_rm_f_of_many_containers_removes_them_all_at_once(api: ApiServer) -> None:
    """The CLI sends one request a container at the same time; none may find the socket's backlog full."""
    created = [api.client().containers.create("busybox", "true").id for _ in range(40)]
    removed = api.docker("rm", "-f", *created, host=f"unix://{api.socket_path}")
    assert removed.returncode == 0, removed.stderr
    assert sorted(removed.stdout.split()) == sorted(created)
    assert docker_ok(api, "ps", "-aq") == ""


#
# logs
#


@cli
def test_logs_follow_tail_timestamps_since_and_until(api: ApiServer) -> None:
    script = "for i in 1 2 3 4 5; do echo line $i; sleep 0.2; done"
    docker_ok(api, "run", "-d", "--name", "talker", "busybox", "sh", "-c", script)
    begun = time.monotonic()
    assert docker_ok(api, "logs", "-f", "talker") == "".join(f"line {i}\n" for i in range(1, 6))
    assert time.monotonic() - begun > 0.5, "logs -f follows the container until it exits"

    assert docker_ok(api, "logs", "--tail", "2", "talker") == "line 4\nline 5\n"
    assert docker_ok(api, "logs", "--tail", "0", "talker") == ""
    stamped = docker_ok(api, "logs", "-t", "talker").splitlines()
    assert all(
        re.fullmatch(rf"\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{9}}Z line {i}", s) for i, s in enumerate(stamped, 1)
    )
    third = stamped[2].split()[0]
    # Both bounds include a line written at that very time, as moby's do.
    assert docker_ok(api, "logs", "--since", third, "talker") == "line 3\nline 4\nline 5\n"
    assert docker_ok(api, "logs", "--until", third, "talker") == "line 1\nline 2\nline 3\n"
    # The tail is taken first, then the bounds, as moby does.
    assert docker_ok(api, "logs", "--since", third, "--tail", "1", "talker") == "line 5\n"
    assert docker_ok(api, "logs", "--until", third, "--tail", "1", "talker") == ""


#
# exec
#


@cli
def test_exec_it_runs_a_shell_through_a_terminal_that_follows_a_resize(api: ApiServer) -> None:
    docker_ok(api, "run", "-d", "--name", "shelled", "busybox", "sleep", "100")
    shell = pexpect.spawn(
        "docker", ["exec", "-it", "shelled", "sh"], env=cli_env(api), encoding="utf-8", timeout=15, dimensions=(30, 100)
    )
    shell.expect(r"[#$] ")
    shell.sendline("tty; stty size; echo $TERM")
    shell.expect(r"/dev/pts/\d+\r\n30 100\r\nxterm\r\n")
    shell.setwinsize(40, 120)
    time.sleep(0.3)  # the CLI sends the resize on SIGWINCH
    shell.sendline("stty size; exit 3")
    shell.expect(r"40 120")
    shell.expect(pexpect.EOF)
    shell.close()
    assert shell.exitstatus == 3


@cli
def test_exec_d_u_w_and_e_run_as_asked(api: ApiServer) -> None:
    docker_ok(api, "run", "-d", "--name", "target", "-e", "FROM_RUN=1", "busybox", "sleep", "100")
    printed = docker_ok(api, "exec", "-u", "1000:1000", "-w", "/tmp", "-e", "X=y", "-e", "FROM_RUN=2", "target",
                        "sh", "-c", "id; pwd; echo $X $FROM_RUN $HOSTNAME")  # fmt: skip
    hostname = docker_ok(api, "inspect", "-f", "{{.Config.Hostname}}", "target").strip()
    assert printed == f"uid=1000 gid=1000 groups=1000\n/tmp\ny 2 {hostname}\n"
    assert docker_ok(api, "exec", "-u", "nobody", "target", "id") == (
        "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)\n"
    )
    assert docker_ok(api, "exec", "-d", "target", "sh", "-c", "echo detached > /tmp/d") == ""
    wait_for(lambda: api.docker("exec", "target", "cat", "/tmp/d").stdout == "detached\n", 5, "the detached exec")

    unknown = api.docker("exec", "-u", "nosuchuser", "target", "id")
    assert (unknown.returncode, unknown.stderr) == (
        126,
        "unable to find user nosuchuser: no matching entries in passwd file\n",
    )
    elsewhere = api.docker("exec", "-w", "/nonexistent", "target", "pwd")
    assert elsewhere.returncode == 126 and 'chdir to cwd ("/nonexistent")' in elsewhere.stderr


#
# inspect
#


@cli
def test_inspect_fills_state_config_and_host_config_as_docker_does(api: ApiServer) -> None:
    assert (
        api.docker("run", "--name", "inspected", "-e", "A=1", "-w", "/tmp", "busybox", "sh", "-c", "exit 2").returncode
        == 2
    )
    found = json.loads(docker_ok(api, "inspect", "inspected"))[0]
    state = found["State"]
    assert (state["Status"], state["Running"], state["ExitCode"], state["Pid"], state["Dead"]) == (
        "exited",
        False,
        2,
        0,
        False,
    )
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", state[key]) for key in ("StartedAt", "FinishedAt"))
    assert state["FinishedAt"] >= state["StartedAt"]
    assert (found["Name"], found["Path"], found["Args"], found["RestartCount"]) == (
        "/inspected",
        "sh",
        ["-c", "exit 2"],
        0,
    )
    config = found["Config"]
    assert config["Env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=1"]
    assert (config["Cmd"], config["Image"], config["WorkingDir"], config["Entrypoint"]) == (
        ["sh", "-c", "exit 2"], "busybox", "/tmp", None,
    )  # fmt: skip
    assert config["Hostname"] == found["Id"][:12] and config["Volumes"] is None and "ExposedPorts" not in config
    host_config = found["HostConfig"]
    assert host_config["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert (host_config["NetworkMode"], host_config["IpcMode"], host_config["ShmSize"]) == (
        "bridge",
        "private",
        67108864,
    )
    assert found["Mounts"] == [] and found["Image"].startswith("sha256:")

    docker_ok(api, "run", "-d", "--name", "alive", "busybox", "sleep", "100")
    running = json.loads(docker_ok(api, "inspect", "alive"))[0]["State"]
    assert (running["Status"], running["Running"], running["FinishedAt"]) == ("running", True, "0001-01-01T00:00:00Z")
    assert running["Pid"] > 0


@cli
def test_image_inspect_shows_what_the_image_is(api: ApiServer) -> None:
    template = (
        "{{.Os}}/{{.Architecture}} {{json .RepoTags}} {{json .Config.Cmd}} {{.RootFS.Type}} {{len .RootFS.Layers}}"
    )
    described = docker_ok(api, "image", "inspect", "-f", template, "busybox")
    assert described == 'linux/amd64 ["busybox:latest"] ["sh"] layers 1\n'
    image_id = docker_ok(api, "inspect", "--type", "image", "-f", "{{.Id}}", "busybox").strip()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", image_id)
    docker_ok(api, "create", "--name", "from-image", "busybox")
    assert docker_ok(api, "inspect", "-f", "{{.Image}}", "from-image").strip() == image_id


#
# stats, events, prune
#


@cli
def test_stats_streams_until_interrupted_and_no_stream_prints_once(api: ApiServer) -> None:
    docker_ok(api, "run", "-d", "--name", "measured", "busybox", "sleep", "100")
    stream = pexpect.spawn("docker", ["stats", "--format", "{{.Name}} {{.PIDs}}", "measured"], env=cli_env(api),
                           encoding="utf-8", timeout=10)  # fmt: skip
    try:
        # The CLI redraws its table each half second: two frames with the numbers, from the stream.
        stream.expect(r"measured 1 \x1b\[K")
        stream.expect(r"measured 1 \x1b\[K")
    finally:
        # CLI 28 keeps drawing after Ctrl-C, against Docker as well: end it for good.
        stream.close(force=True)
    assert docker_ok(api, "stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "measured") == "measured 1\n"


@cli
def test_events_between_since_and_until_filtered_by_container(api: ApiServer) -> None:
    since = f"{time.time():.9f}"
    docker_ok(api, "run", "--name", "watched", "busybox", "true")
    assert api.docker("run", "--name", "other", "busybox", "sh", "-c", "exit 2").returncode == 2
    docker_ok(api, "pause", docker_ok(api, "run", "-d", "--name", "paused", "busybox", "sleep", "100").strip())
    until = f"{time.time():.9f}"
    docker_ok(api, "run", "--name", "later", "busybox", "true")
    template = "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}"
    begun = time.monotonic()
    bounded = ["events", "--since", since, "--until", until]
    seen = docker_ok(api, *bounded, "--filter", "container=watched", "--format", template)
    assert time.monotonic() - begun < 5, "a bounded events stream ends at its until"
    assert seen.splitlines() == [
        "container create watched <no value>", "container start watched <no value>", "container die watched 0",
    ]  # fmt: skip
    dies = docker_ok(api, *bounded, "--filter", "event=die", "--format", "{{.Actor.Attributes.name}}")
    assert dies == "watched\nother\n", "only what happened between since and until"
    paused = docker_ok(api, *bounded, "--filter", "container=paused", "--format", "{{.Action}}")
    assert paused.split() == ["create", "start", "pause"]


@cli
def test_container_prune_removes_stopped_containers_and_keeps_running_ones(api: ApiServer) -> None:
    kept = docker_ok(api, "run", "-d", "--name", "running", "busybox", "sleep", "100").strip()
    docker_ok(api, "run", "-d", "--name", "paused", "busybox", "sleep", "100")
    docker_ok(api, "pause", "paused")
    labelled = docker_ok(api, "create", "--name", "labelled", "-l", "keep=yes", "busybox").strip()
    docker_ok(api, "run", "--name", "exited", "busybox", "sh", "-c", "echo data > /file")
    exited = docker_ok(api, "inspect", "-f", "{{.Id}}", "exited").strip()

    assert docker_ok(api, "container", "prune", "-f", "--filter", "until=1h") == "Total reclaimed space: 0B\n"
    pruned = docker_ok(api, "container", "prune", "-f", "--filter", "label!=keep")
    # The bytes the container wrote: "data\n" in its own layer.
    assert pruned == f"Deleted Containers:\n{exited}\n\nTotal reclaimed space: 5B\n"
    pruned = docker_ok(api, "container", "prune", "-f", "--filter", "label=keep=yes")
    assert pruned == f"Deleted Containers:\n{labelled}\n\nTotal reclaimed space: 0B\n"
    assert (
        docker_ok(api, "ps", "-aq", "--no-trunc") == f"{docker_ok(api, 'inspect', '-f', '{{.Id}}', 'paused')}{kept}\n"
    )

    refused = api.docker("container", "prune", "-f", "--filter", "bogus=1")
    assert (refused.returncode, refused.stderr) == (1, "Error response from daemon: invalid filter 'bogus'\n")


#
# docker-py
#


def test_docker_py_drives_the_verbs(api: ApiServer) -> None:
    client = api.client()
    script = "trap 'echo usr1' USR1; echo started; while true; do sleep 0.05; done"
    container = client.containers.run("busybox", ["sh", "-c", script], detach=True, name="py-verbs")
    wait_for(lambda: container.logs() == b"started\n", 5, "the trap to be set")
    container.kill(signal="SIGUSR1")
    wait_for(lambda: container.logs() == b"started\nusr1\n", 5, "the signal's trap")
    container.pause()
    container.reload()
    assert container.status == "paused"
    container.unpause()
    container.rename("py-renamed")
    container.reload()
    assert (container.name, container.status) == ("py-renamed", "running")
    result = container.exec_run(["sh", "-c", "id -u; pwd; echo $V"], user="nobody", workdir="/tmp", environment=["V=v"])
    assert (result.exit_code, result.output) == (0, b"65534\n/tmp\nv\n")

    followed = container.logs(stream=True, follow=True)
    assert next(followed) == b"started\n" and next(followed) == b"usr1\n"
    container.stop(timeout=0)
    assert next(followed, None) is None, "a followed log ends when the container stops"
    assert container.wait(timeout=10) == {"StatusCode": 137, "Error": None}
    container.restart(timeout=0)
    wait_for(lambda: container.logs() == b"started\nusr1\nstarted\n", 5, "the second run")


def test_docker_py_streams_stats_with_the_previous_sample_filled(api: ApiServer) -> None:
    client = api.client()
    container = client.containers.run("busybox", "sleep 100", detach=True)
    samples = container.stats(stream=True, decode=True)
    first, second = next(samples), next(samples)
    samples.close()
    assert first["name"] == f"/{container.name}" and first["pids_stats"]["current"] == 1
    assert second["precpu_stats"]["cpu_usage"] == first["cpu_stats"]["cpu_usage"]
    assert second["read"] > first["read"]
    one = container.stats(stream=False)
    assert one["precpu_stats"]["cpu_usage"]["total_usage"] > 0, "a single sample comes with the one before it"


def test_docker_py_attaches_to_a_container_and_prunes(api: ApiServer) -> None:
    client = api.client()
    container = client.containers.run("busybox", ["sh", "-c", "echo one; sleep 0.5; echo two"], detach=True)
    wait_for(lambda: container.logs() == b"one\n", 5, "the first line")
    # The history first, then what follows, to the exit.
    assert b"".join(container.attach(stream=True, logs=True)) == b"one\ntwo\n"
    assert container.wait(timeout=10)["StatusCode"] == 0

    running = client.containers.run("busybox", "sleep 100", detach=True)
    assert client.containers.prune(filters={"label": "nosuch"}) == {"ContainersDeleted": None, "SpaceReclaimed": 0}
    pruned = client.containers.prune()
    assert (pruned["ContainersDeleted"], pruned["SpaceReclaimed"]) == ([container.id], 0)
    assert [c.id for c in client.containers.list(all=True)] == [running.id]
    with pytest.raises(docker.errors.APIError, match="invalid filter 'status'"):
        client.containers.prune(filters={"status": "exited"})
