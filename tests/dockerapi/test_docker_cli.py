"""The real docker CLI 28 drives webengine over TCP (token in config.json) and over the unix socket."""

from __future__ import annotations

import json
import tarfile
import time
from pathlib import Path

import pexpect
import pytest

from tests.dockerapi.conftest import ApiServer

pytestmark = pytest.mark.requires("root", "overlayfs", "busybox", "docker-cli")


def test_version_and_info_describe_this_engine(api: ApiServer) -> None:
    version = api.docker("version", "--format", "{{.Server.APIVersion}} {{.Server.MinAPIVersion}} {{.Server.Os}}")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == "1.51 1.24 linux"
    info = api.docker("info", "--format", "{{.OSType}} {{.Images}} {{.Swarm.LocalNodeState}} {{.LoggingDriver}}")
    assert info.returncode == 0, info.stderr
    assert info.stdout.strip() == "linux 1 inactive json-file"


def test_run_prints_the_output_and_exits_with_the_containers_code(api: ApiServer) -> None:
    hello = api.docker("run", "--rm", "busybox", "echo", "hello")
    assert (hello.returncode, hello.stdout) == (0, "hello\n"), hello.stderr
    three = api.docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (three.returncode, three.stdout, three.stderr) == (3, "out\n", "err\n")
    assert api.docker("ps", "-aq").stdout == "", "--rm must remove the containers"


def test_back_to_back_runs_each_print_their_own_output_and_leave_nothing(api: ApiServer) -> None:
    """The second and later runs take standby containers, and finish before their start's answer is done."""
    host = f"unix://{api.socket_path}"
    for n in range(25):
        run = api.docker("run", "--rm", "busybox", "sh", "-c", f"echo run {n} on $(hostname)", host=host)
        assert run.returncode == 0, f"run {n}: {run.stderr}"
        assert run.stdout.startswith(f"run {n} on ")
    assert api.docker("ps", "-aq").stdout == ""


def test_run_reports_a_missing_command_with_exit_127(api: ApiServer) -> None:
    missing = api.docker("run", "--rm", "busybox", "nosuchcommand")
    assert missing.returncode == 127
    assert 'exec: "nosuchcommand": executable file not found in $PATH' in missing.stderr
    assert api.docker("ps", "-aq").stdout == "", "a failed start with --rm must still remove the container"


def test_a_detached_container_is_listed_logged_execed_inspected_stopped_and_removed(api: ApiServer) -> None:
    run = api.docker("run", "-d", "--name", "web", "busybox", "sh", "-c", "echo started; echo oops >&2; sleep 1000")
    assert run.returncode == 0, run.stderr
    container_id = run.stdout.strip()
    assert len(container_id) == 64

    ps = api.docker("ps", "--format", "{{.ID}} {{.Names}} {{.Image}} {{.Status}}")
    assert ps.stdout.split(" ", 3)[:3] == [container_id[:12], "web", "busybox"]
    assert ps.stdout.split(" ", 3)[3].startswith("Up ")
    time.sleep(0.2)  # the shell's first lines reach the log
    logs = api.docker("logs", "web")
    assert (logs.stdout, logs.stderr) == ("started\n", "oops\n")

    hi = api.docker("exec", "web", "echo", "hi")
    assert (hi.returncode, hi.stdout) == (0, "hi\n"), hi.stderr
    assert api.docker("exec", "web", "sh", "-c", "exit 5").returncode == 5, "docker exec exits with the exec's code"
    piped = api.docker("exec", "-i", "web", "cat", input="through stdin")
    assert piped.stdout == "through stdin"

    inspected = json.loads(api.docker("inspect", "web").stdout)[0]
    assert inspected["Id"] == container_id and inspected["Name"] == "/web"
    assert inspected["State"]["Running"] and inspected["State"]["Status"] == "running"
    assert inspected["Image"].startswith("sha256:") and inspected["Config"]["Image"] == "busybox"
    assert inspected["HostConfig"]["LogConfig"]["Type"] == "json-file"

    stop = api.docker("stop", "-t", "1", "web")
    assert (stop.returncode, stop.stdout) == (0, "web\n"), stop.stderr
    state = json.loads(api.docker("inspect", "web").stdout)[0]["State"]
    # sh as PID 1 ignores SIGTERM, so the stop ends with SIGKILL, as on Docker.
    assert (state["Status"], state["ExitCode"]) == ("exited", 137)
    assert api.docker("ps", "-a", "--format", "{{.Status}}").stdout.startswith("Exited (137) ")
    remove = api.docker("rm", "web")
    assert (remove.returncode, remove.stdout) == (0, "web\n"), remove.stderr
    assert api.docker("ps", "-aq").stdout == ""


def test_images_lists_busybox_and_rmi_refuses_an_image_in_use(api: ApiServer) -> None:
    images = api.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}")
    assert images.stdout.split() == ["busybox:latest", "2.14MB"]
    created = api.docker("create", "--name", "holder", "busybox", "true")
    assert created.returncode == 0, created.stderr
    refused = api.docker("rmi", "busybox")
    assert refused.returncode == 1
    assert 'conflict: unable to remove repository reference "busybox" (must force) - container ' in refused.stderr
    assert api.docker("rm", "holder").returncode == 0
    assert api.docker("tag", "busybox", "example/mine:1").returncode == 0
    untag = api.docker("rmi", "example/mine:1")
    assert (untag.returncode, untag.stdout) == (0, "Untagged: example/mine:1\n"), untag.stderr


def test_a_missing_image_gives_a_clear_error(api: ApiServer) -> None:
    missing = api.docker("run", "--rm", "nosuch:1", "true")
    assert missing.returncode == 125
    assert "Unable to find image 'nosuch:1' locally" in missing.stderr
    assert "pull is not supported yet: cannot pull nosuch:1" in missing.stderr


def test_inspect_of_an_unknown_name_says_no_such_object(api: ApiServer) -> None:
    unknown = api.docker("inspect", "nosuchthing")
    assert unknown.returncode == 1
    assert "No such object: nosuchthing" in unknown.stderr


def test_tcp_without_the_token_is_refused(api: ApiServer, tmp_path: Path) -> None:
    refused = api.docker("ps", config=tmp_path)
    assert refused.returncode == 1
    assert "authentication required" in refused.stderr and "manage.py token create" in refused.stderr


def test_the_unix_socket_needs_no_token(api: ApiServer, tmp_path: Path) -> None:
    assert api.socket_path.stat().st_mode & 0o777 == 0o600, "the socket is the check: root only"
    run = api.docker("run", "--rm", "busybox", "echo", "unix", host=f"unix://{api.socket_path}", config=tmp_path)
    assert (run.returncode, run.stdout) == (0, "unix\n"), run.stderr


def test_an_interactive_run_is_a_shell_that_follows_a_resize(api: ApiServer) -> None:
    env = {"DOCKER_HOST": api.url, "DOCKER_CONFIG": str(api.docker_config), "PATH": "/usr/local/bin:/usr/bin:/bin"}
    shell = pexpect.spawn(
        "docker", ["run", "-it", "--rm", "busybox", "sh"], env=env, encoding="utf-8", timeout=15, dimensions=(30, 100)
    )
    shell.expect(r"[#$] ")
    shell.sendline("stty size")
    shell.expect(r"30 100")
    shell.setwinsize(40, 120)
    time.sleep(0.3)  # the CLI sends the resize on SIGWINCH
    shell.sendline("stty size; exit 9")
    shell.expect(r"40 120")
    shell.expect(pexpect.EOF)
    shell.close()
    assert shell.exitstatus == 9


def test_top_stats_diff_cp_export_and_commit_see_into_a_container(api: ApiServer, tmp_path: Path) -> None:
    run = api.docker("run", "-d", "--name", "files", "busybox", "sh", "-c", "echo hi > /tmp/x; sleep 1000")
    assert run.returncode == 0, run.stderr
    try:
        time.sleep(0.2)
        top = api.docker("top", "files")
        assert top.stdout.splitlines()[0].split()[:2] == ["UID", "PID"] and "sleep 1000" in top.stdout, top.stderr
        stats = api.docker("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "files")
        assert stats.stdout == "files 1\n", stats.stderr
        assert api.docker("diff", "files").stdout == "C /tmp\nA /tmp/x\n"

        assert api.docker("cp", "files:/tmp/x", str(tmp_path)).returncode == 0
        assert (tmp_path / "x").read_text() == "hi\n"
        (tmp_path / "in" / "sub").mkdir(parents=True)
        (tmp_path / "in" / "sub" / "f").write_text("deep\n")
        copied = api.docker("cp", str(tmp_path / "in"), "files:/newdir")
        assert copied.returncode == 0, copied.stderr
        assert api.docker("exec", "files", "cat", "/newdir/sub/f").stdout == "deep\n"
        missing = api.docker("cp", "files:/nonexistent", str(tmp_path))
        assert "Could not find the file /nonexistent in container files" in missing.stderr

        exported = api.docker("export", "-o", str(tmp_path / "files.tar"), "files")
        assert exported.returncode == 0, exported.stderr
        with tarfile.open(tmp_path / "files.tar") as tar:
            assert "bin/busybox" in tar.getnames()

        committed = api.docker("commit", "-c", 'CMD ["cat", "/tmp/x"]', "files", "snapshot:1")
        assert committed.returncode == 0 and committed.stdout.startswith("sha256:"), committed.stderr
        assert api.docker("run", "--rm", "snapshot:1").stdout == "hi\n"
    finally:
        api.docker("rm", "-f", "files")
        api.docker("rmi", "snapshot:1")
