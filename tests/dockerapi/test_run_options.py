"""`docker run` and `docker create` options, driven by the real docker CLI 28 and docker-py 7.

Where the output is stable, the expected text is what Docker prints for the same command.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.types import Mount

from tests.dockerapi.conftest import ApiServer
from tests.servers import wait_for

pytestmark = pytest.mark.requires("root", "overlayfs", "busybox")
cli = pytest.mark.requires("docker-cli")

# The limits as the container reads them from its cgroup: memory, CPU quota and period, pids, on v2 or v1.
CGROUP_LIMITS = (
    "cd /sys/fs/cgroup; if [ -f memory.max ]; then cat memory.max; cat cpu.max; cat pids.max; "
    "else cat memory/memory.limit_in_bytes; echo $(cat cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us); "
    "cat pids/pids.max; fi"
)


@pytest.fixture(autouse=True)
def no_containers_left(api: ApiServer) -> Iterator[None]:
    """Remove every container the test made, however it ended."""
    yield
    for container in api.client().containers.list(all=True):
        container.remove(force=True)


def run(api: ApiServer, *args: str) -> str:
    """Return what `docker run --rm ARGS` prints; fail with its stderr."""
    result = api.docker("run", "--rm", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def inspect(api: ApiServer, name: str) -> dict[str, Any]:
    result = api.docker("inspect", name)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)[0]


#
# environment, mounts
#


@cli
def test_env_file_and_e_set_the_environment_after_path_and_hostname(
    api: ApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "env").write_text("A=1\n# a comment\nB=two words\nC\n")
    monkeypatch.setenv("C", "from-the-client")
    printed = run(
        api, "--hostname", "box", "--env-file", str(tmp_path / "env"), "-e", "D=4", "-e", "A=5", "busybox", "env"
    )
    # What Docker prints: the -e after the file wins, and a name alone takes the client's value.
    assert printed.splitlines() == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=box", "A=5", "B=two words",
        "C=from-the-client", "D=4", "HOME=/root",
    ]  # fmt: skip


@cli
def test_v_binds_a_host_directory_read_write_and_read_only(api: ApiServer, tmp_path: Path) -> None:
    (tmp_path / "in").write_text("from the host\n")
    script = "cat /rw/in; echo from the container > /rw/out; echo no > /ro/refused"
    result = api.docker(
        "run", "--rm", "-v", f"{tmp_path}:/rw", "-v", f"{tmp_path}:/ro:ro", "busybox", "sh", "-c", script
    )
    assert (result.returncode, result.stdout) == (1, "from the host\n")
    assert "can't create /ro/refused: Read-only file system" in result.stderr
    assert (tmp_path / "out").read_text() == "from the container\n"
    assert not (tmp_path / "refused").exists()


@cli
def test_v_creates_a_missing_host_directory_but_mount_refuses_one(api: ApiServer, tmp_path: Path) -> None:
    assert run(api, "-v", f"{tmp_path}/made/here:/m", "busybox", "ls", "-a", "/m") == ".\n..\n"
    assert (tmp_path / "made" / "here").is_dir(), "-v should create the host directory, as Docker does"

    refused = api.docker("run", "--rm", "--mount", f"type=bind,src={tmp_path}/absent,dst=/m", "busybox", "true")
    assert refused.returncode == 125
    assert f'invalid mount config for type "bind": bind source path does not exist: {tmp_path}/absent' in refused.stderr
    assert not (tmp_path / "absent").exists()
    assert api.docker("ps", "-aq").stdout == "", "a refused create leaves no container"


@cli
def test_mount_binds_and_tmpfs_reach_the_container_and_inspect(api: ApiServer, tmp_path: Path) -> None:
    created = api.docker(
        "create", "--name", "mounted", "-v", f"{tmp_path}:/v", "--mount", f"type=bind,src={tmp_path},dst=/b,readonly",
        "--mount", "type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=1770", "--tmpfs", "/x:size=2m", "busybox",
        "sh", "-c", "grep -E ' /(b|t|x) ' /proc/mounts | cut -d' ' -f2-4; stat -c %a /t; touch /b/no",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    # As Docker shows them: -v and --mount under Mounts, --tmpfs only in HostConfig.Tmpfs.
    assert inspect(api, "mounted")["Mounts"] == [
        {"Type": "bind", "Source": str(tmp_path), "Destination": "/v", "Mode": "", "RW": True,
         "Propagation": "rprivate"},
        {"Type": "bind", "Source": str(tmp_path), "Destination": "/b", "Mode": "", "RW": False,
         "Propagation": "rprivate"},
        {"Type": "tmpfs", "Source": "", "Destination": "/t", "Mode": "", "RW": True, "Propagation": ""},
    ]  # fmt: skip
    assert inspect(api, "mounted")["HostConfig"]["Tmpfs"] == {"/x": "size=2m"}
    started = api.docker("start", "-a", "mounted")
    *mounts, mode = started.stdout.splitlines()
    seen = {line.split()[0]: line.split()[1:] for line in mounts}
    assert seen["/b"][1].startswith("ro,")
    assert seen["/t"] == ["tmpfs", "rw,nosuid,nodev,noexec,relatime,size=1024k,mode=1770"]
    assert seen["/x"] == ["tmpfs", "rw,nosuid,nodev,noexec,relatime,size=2048k"]
    assert mode == "1770"
    assert "touch: /b/no: Read-only file system" in started.stderr


@cli
def test_tmpfs_mounts_an_empty_noexec_tmpfs_with_its_options(api: ApiServer) -> None:
    script = "grep -E ' /(x|y) ' /proc/mounts; stat -c %a /y; echo kept > /x/f && cat /x/f"
    printed = run(api, "--tmpfs", "/x", "--tmpfs", "/y:size=1m,mode=1770", "busybox", "sh", "-c", script)
    assert printed.splitlines() == [
        "tmpfs /x tmpfs rw,nosuid,nodev,noexec,relatime 0 0",
        "tmpfs /y tmpfs rw,nosuid,nodev,noexec,relatime,size=1024k,mode=1770 0 0",
        "1770",
        "kept",
    ]


#
# identity and limits
#


@cli
def test_u_and_w_set_the_user_and_the_working_directory(api: ApiServer) -> None:
    # Docker's words for each, the primary group among the supplementary ones.
    assert run(api, "-u", "1000", "busybox", "id") == "uid=1000 gid=0(root) groups=0(root)\n"
    assert run(api, "-u", "1000:1001", "busybox", "id") == "uid=1000 gid=1001 groups=1001\n"
    assert run(api, "-u", "nobody", "busybox", "id") == "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)\n"
    assert run(api, "-u", "root:daemon", "busybox", "id") == "uid=0(root) gid=1(daemon) groups=1(daemon)\n"
    assert run(api, "busybox", "id") == "uid=0(root) gid=0(root) groups=0(root),10(wheel)\n"
    assert run(api, "-w", "/made/for/me", "busybox", "pwd") == "/made/for/me\n"


@cli
def test_an_unknown_user_fails_the_run_and_rm_still_removes_the_container(api: ApiServer) -> None:
    unknown = api.docker("run", "--rm", "-u", "nosuchuser", "busybox", "id")
    assert unknown.returncode == 125
    assert "unable to find user nosuchuser: no matching entries in passwd file" in unknown.stderr
    assert api.docker("ps", "-aq").stdout == "", "--rm removes a container whose start failed, as Docker does"


@cli
def test_name_labels_entrypoint_and_hostname_show_in_the_container_and_inspect(api: ApiServer) -> None:
    created = api.docker(
        "create", "--name", "described", "-l", "tier=web", "-l", "flag", "--hostname", "box", "--entrypoint", "sh",
        "busybox", "-c", "hostname; cat /etc/hostname; echo $HOSTNAME",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    inspected = inspect(api, "described")
    assert (inspected["Name"], inspected["Path"], inspected["Args"]) == (
        "/described", "sh", ["-c", "hostname; cat /etc/hostname; echo $HOSTNAME"],
    )  # fmt: skip
    config = inspected["Config"]
    assert (config["Entrypoint"], config["Hostname"]) == (["sh"], "box")
    assert {"tier": "web", "flag": ""}.items() <= config["Labels"].items()
    listed = api.docker("ps", "-a", "--filter", "label=tier=web", "--format", "{{.Names}} {{.Command}}")
    assert listed.stdout == 'described "sh -c \'hostname; ca…"\n', "moby quotes an argument with a space"
    assert api.docker("start", "-a", "described").stdout == "box\nbox\nbox\n"


@cli
def test_memory_cpus_and_pids_limit_reach_the_cgroup_and_inspect(api: ApiServer) -> None:
    printed = run(api, "--name", "limited", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "20", "busybox",
                  "sh", "-c", CGROUP_LIMITS)  # fmt: skip
    assert printed.splitlines() == ["67108864", "50000 100000", "20"]
    created = api.docker("create", "--name", "limited", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "20",
                         "busybox")  # fmt: skip
    assert created.returncode == 0, created.stderr
    host_config = inspect(api, "limited")["HostConfig"]
    assert (host_config["Memory"], host_config["NanoCpus"], host_config["PidsLimit"]) == (67108864, 500000000, 20)


@cli
def test_ulimit_sets_the_processs_limits_and_minus_one_is_unlimited(api: ApiServer) -> None:
    result = api.docker("run", "--rm", "--ulimit", "nofile=1024:2048", "--ulimit", "core=-1", "busybox", "sh", "-c",
                        "ulimit -Sn; ulimit -Hn; ulimit -Sc; ulimit -Hc")  # fmt: skip
    assert (result.returncode, result.stdout.split()) == (0, ["1024", "2048", "unlimited", "unlimited"]), result.stderr


@cli
def test_read_only_makes_the_root_filesystem_read_only_but_not_its_tmpfs(api: ApiServer) -> None:
    result = api.docker("run", "--rm", "--read-only", "--tmpfs", "/tmp", "busybox", "sh", "-c",
                        "touch /tmp/yes && echo tmp is writable; touch /no")  # fmt: skip
    assert (result.returncode, result.stdout) == (1, "tmp is writable\n")
    assert "touch: /no: Read-only file system" in result.stderr


#
# restart policies, stop signal and timeout
#


def _restarts(api: ApiServer, name: str) -> tuple[str, int]:
    inspected = inspect(api, name)
    return inspected["State"]["Status"], inspected["RestartCount"]


@cli
def test_restart_on_failure_restarts_twice_then_stops(api: ApiServer) -> None:
    started = api.docker("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c",
                         "echo attempt; exit 3")  # fmt: skip
    assert started.returncode == 0, started.stderr
    wait_for(lambda: _restarts(api, "flaky")[0] == "exited", 10, "the third failure")
    assert _restarts(api, "flaky") == ("exited", 2)
    assert inspect(api, "flaky")["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert api.docker("logs", "flaky").stdout == "attempt\n" * 3
    assert api.docker("ps", "-a", "--format", "{{.Status}}").stdout.startswith("Exited (3) ")


@cli
@pytest.mark.parametrize("policy", ["always", "unless-stopped"])
def test_restart_always_and_unless_stopped_restart_until_stopped(api: ApiServer, policy: str) -> None:
    started = api.docker("run", "-d", "--name", "again", "--restart", policy, "busybox", "true")
    assert started.returncode == 0, started.stderr
    wait_for(lambda: _restarts(api, "again")[1] >= 2, 10, "two restarts of a container that exits 0")
    assert api.docker("stop", "again").returncode == 0
    stopped = _restarts(api, "again")
    time.sleep(0.5)  # longer than the next restart's delay would be
    assert _restarts(api, "again") == stopped and stopped[0] == "exited", "docker stop ends the restarts"


@cli
def test_stop_signal_and_stop_timeout_are_what_docker_stop_uses(api: ApiServer) -> None:
    script = "trap 'echo got usr1; exit 8' USR1; echo ready; while true; do sleep 0.1; done"
    started = api.docker("run", "-d", "--name", "polite", "--stop-signal", "USR1", "busybox", "sh", "-c", script)
    assert started.returncode == 0, started.stderr
    wait_for(lambda: api.docker("logs", "polite").stdout == "ready\n", 5, "the trap to be set")
    assert api.docker("stop", "polite").stdout == "polite\n"
    assert api.docker("logs", "polite").stdout == "ready\ngot usr1\n"
    assert api.docker("inspect", "-f", "{{.State.ExitCode}} {{.Config.StopSignal}}", "polite").stdout == "8 USR1\n"

    # sh as PID 1 ignores SIGTERM: the stop waits --stop-timeout (not 10 s), then kills.
    started = api.docker("run", "-d", "--name", "deaf", "--stop-timeout", "1", "busybox", "sh", "-c", "sleep 100")
    assert started.returncode == 0, started.stderr
    begun = time.monotonic()
    assert api.docker("stop", "deaf").returncode == 0
    assert 0.9 < time.monotonic() - begun < 5
    assert api.docker("inspect", "-f", "{{.State.ExitCode}} {{.Config.StopTimeout}}", "deaf").stdout == "137 1\n"


#
# networks
#


@cli
def test_network_none_has_only_loopback_and_host_sees_the_hosts_interfaces(api: ApiServer) -> None:
    assert run(api, "--network", "none", "busybox", "ls", "/sys/class/net") == "lo\n"
    host = sorted(os.listdir("/sys/class/net"))
    assert run(api, "--network", "host", "busybox", "ls", "/sys/class/net").split() == host
    assert api.docker("create", "--name", "hosted", "--network", "host", "busybox").returncode == 0
    assert inspect(api, "hosted")["HostConfig"]["NetworkMode"] == "host"


@cli
def test_publishing_ports_and_named_networks_are_refused_clearly(api: ApiServer) -> None:
    ports = api.docker("run", "--rm", "-p", "8080:80", "busybox", "true")
    assert ports.returncode == 125
    assert "publishing ports (-p) comes with the networking issue and is not supported yet" in ports.stderr
    named = api.docker("run", "--rm", "--network", "somenet", "busybox", "true")
    assert named.returncode == 125
    assert "network somenet not found" in named.stderr
    assert api.docker("ps", "-aq").stdout == ""


#
# side by side with Docker
#

# `docker run --rm ARGS` whose output, stderr and exit code are the same on Docker (no ids, no times).
SAME_AS_DOCKER = [
    ["--hostname", "box", "-e", "A=1", "-e", "HOSTNAME=mine", "busybox", "env"],
    ["busybox", "id"],
    ["-u", "1000", "busybox", "id"],
    ["-u", "daemon", "busybox", "id"],
    ["-u", "root:daemon", "busybox", "id"],
    ["-u", "nosuchuser", "busybox", "id"],
    ["-w", "/made/for/me", "busybox", "pwd"],
    ["--tmpfs", "/x:size=1m,mode=1770", "busybox", "sh", "-c", "grep ' /x ' /proc/mounts; stat -c %a /x"],
    ["--read-only", "busybox", "sh", "-c", "touch /x"],
    ["--network", "none", "busybox", "ls", "/sys/class/net"],
    ["--memory", "64m", "--cpus", "0.5", "--pids-limit", "20", "busybox", "sh", "-c", CGROUP_LIMITS],
    ["--entrypoint", "sh", "busybox", "-c", "echo out; echo err >&2; exit 3"],
]


@cli
@pytest.mark.requires("docker-daemon")
def test_run_prints_what_docker_prints(api: ApiServer) -> None:
    daemon = {**os.environ, "DOCKER_HOST": "unix:///var/run/docker.sock"}
    if subprocess.run(["docker", "image", "inspect", "busybox"], env=daemon, capture_output=True).returncode:
        pytest.skip("the Docker daemon has no busybox image to compare with")
    for args in SAME_AS_DOCKER:
        ours = api.docker("run", "--rm", *args)
        docker_run = ["docker", "run", "--rm", *args]
        theirs = subprocess.run(docker_run, env=daemon, capture_output=True, text=True, timeout=60)
        assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr), args


#
# docker-py
#


def test_docker_py_runs_with_the_same_options(api: ApiServer, tmp_path: Path) -> None:
    client = api.client()
    (tmp_path / "in").write_text("host file\n")
    tmp_path.chmod(0o755)  # for nobody
    script = f"cat /data/in; id; pwd; echo $GREETING; hostname; {CGROUP_LIMITS}; touch /no 2>&1; exit 0"
    output = client.containers.run(
        "busybox", ["-c", script], entrypoint="sh", remove=True, user="nobody", working_dir="/tmp",
        environment={"GREETING": "hello"}, hostname="pybox", mem_limit="64m", nano_cpus=500_000_000, pids_limit=20,
        read_only=True, tmpfs={"/tmp": "size=1m"}, volumes={str(tmp_path): {"bind": "/data", "mode": "ro"}},
    )  # fmt: skip
    assert output.decode().splitlines() == [
        "host file", "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)", "/tmp", "hello", "pybox",
        "67108864", "50000 100000", "20", "touch: /no: Read-only file system",
    ]  # fmt: skip

    container = client.containers.create(
        "busybox", ["sh", "-c", "exit 1"], name="py-options", labels={"tier": "web"},
        mounts=[Mount("/m", str(tmp_path), type="bind", read_only=True)],
        restart_policy={"Name": "on-failure", "MaximumRetryCount": 1}, stop_signal="SIGUSR1",
    )  # fmt: skip
    container.start()
    wait_for(lambda: client.containers.get("py-options").status == "exited", 10, "the retry to fail")
    container.reload()
    assert container.labels["tier"] == "web"
    assert (container.attrs["RestartCount"], container.attrs["Config"]["StopSignal"]) == (1, "SIGUSR1")
    assert container.attrs["Mounts"][0]["Destination"] == "/m" and not container.attrs["Mounts"][0]["RW"]
    with pytest.raises(docker.errors.APIError, match="bind source path does not exist"):
        client.containers.create("busybox", mounts=[Mount("/m", str(tmp_path / "absent"), type="bind")])
