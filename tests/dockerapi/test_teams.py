"""Teams on the Docker API: each docker CLI, with its own token, sees and touches only its own team's things.

Issue 6's first done-when, with the real docker CLI 28 and docker-py: alice (admin) and bob
(operator) are in red, charlie (admin) in blue, each with a DOCKER_CONFIG whose config.json sends
their token in `HttpHeaders`. Neither team sees the other's containers or tags; touching them
fails exactly as for a missing one; the attempts are in the audit log of the team they aimed at.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import websocket
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied

from containers.permissions import Principal
from containers.usecases import check_host_access
from tests.dockerapi.conftest import ApiServer
from tests.servers import wait_for

pytestmark = pytest.mark.requires("root", "overlayfs", "busybox")
cli = pytest.mark.requires("docker-cli")


@dataclass
class Member:
    """A user of a team with a token of their own, and a docker CLI configured with it."""

    api: ApiServer
    name: str
    token: str
    config: Path

    def docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.api.docker(*args, config=self.config)

    def ok(self, *args: str) -> str:
        result = self.docker(*args)
        assert result.returncode == 0, f"docker {' '.join(args)} as {self.name}: {result.stderr}"
        return result.stdout

    def client(self) -> docker.DockerClient:
        client = docker.DockerClient(base_url=self.api.url, timeout=30)
        client.api.headers["Authorization"] = f"Bearer {self.token}"
        return client


@dataclass
class People:
    alice: Member
    bob: Member
    charlie: Member
    alice_read_only: Member
    since: float


def _audit(api: ApiServer, **where: Any) -> list[dict[str, Any]]:
    """Return the server's audit events (oldest first) with their team's name, those matching `where`."""
    with contextlib.closing(sqlite3.connect(f"file:{api.database}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute(
            "SELECT event.*, team.name AS team FROM containers_auditevent AS event "
            "LEFT JOIN containers_team AS team ON team.id = event.team_id ORDER BY event.id"
        ).fetchall()
    return [dict(row) for row in rows if all(row[key] == value for key, value in where.items())]


def _team_id(api: ApiServer, name: str) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{api.database}?mode=ro", uri=True)) as db:
        return db.execute("SELECT id FROM containers_team WHERE name = ?", (name,)).fetchone()[0]


# busybox:latest as a fresh install has it (bootstrap): shared with every team, its tag no team's. Other
# modules remove busybox and load it back with the fixture's token, which makes it that team's.
_SHARE_BUSYBOX = """
from containers.models import Image, ImageTag
tag = ImageTag.objects.get(reference="docker.io/library/busybox:latest")
ImageTag.objects.filter(pk=tag.pk).update(team=None)
Image.objects.filter(pk=tag.image_id).update(shared=True, team=None)
"""


@pytest.fixture(scope="module")
def people(api: ApiServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[People]:
    api.manage("shell", "-c", _SHARE_BUSYBOX)
    for name in ("alice", "bob", "charlie"):
        api.manage("user", "create", name)
    for team in ("red", "blue"):
        api.manage("team", "create", team)
    api.manage("team", "add-member", "red", "alice", "--role", "admin")
    api.manage("team", "add-member", "red", "bob", "--role", "operator")
    api.manage("team", "add-member", "blue", "charlie", "--role", "admin")
    configs = tmp_path_factory.mktemp("docker-configs")

    def member(user: str, team: str, *flags: str) -> Member:
        token = api.manage("token", "create", user, "--team", team, *flags).strip()
        config = configs / f"{user}{''.join(flags)}"
        config.mkdir()
        (config / "config.json").write_text(json.dumps({"HttpHeaders": {"Authorization": f"Bearer {token}"}}))
        return Member(api, user, token, config)

    found = People(
        member("alice", "red"), member("bob", "red"), member("charlie", "blue"),
        member("alice", "red", "--read-only"), time.time(),
    )  # fmt: skip
    found.alice.ok("run", "-d", "--name", "red-web", "busybox", "sh", "-c", "echo red says hi; sleep 1000")
    found.charlie.ok("run", "-d", "--name", "blue-web", "busybox", "sleep", "1000")
    found.alice.ok("tag", "busybox", "red/tool:1")
    found.charlie.ok("tag", "busybox", "blue/tool:1")
    yield found
    for admin, tag in ((found.alice, "red/tool:1"), (found.charlie, "blue/tool:1")):
        left = admin.ok("ps", "-aq").split()
        if left:
            admin.ok("rm", "-f", *left)
        admin.ok("rmi", tag)


#
# What each sees
#


@cli
def test_docker_ps_shows_each_team_only_its_own_containers(people: People) -> None:
    assert people.alice.ok("ps", "-a", "--format", "{{.Names}}").split() == ["red-web"]
    assert people.charlie.ok("ps", "-a", "--format", "{{.Names}}").split() == ["blue-web"]
    assert people.alice.ok("ps", "-l", "--format", "{{.Names}}").split() == ["red-web"], "the latest of red's"
    assert people.charlie.ok("info", "--format", "{{.Containers}} {{.ContainersRunning}}").split() == ["1", "1"]


@cli
def test_docker_images_shows_the_shared_base_and_the_teams_own_tags_only(people: People) -> None:
    listed = "{{.Repository}}:{{.Tag}}"
    assert sorted(people.alice.ok("images", "--format", listed).split()) == ["busybox:latest", "red/tool:1"]
    assert sorted(people.charlie.ok("images", "--format", listed).split()) == ["blue/tool:1", "busybox:latest"]
    assert people.charlie.ok("images", "--filter", "reference=red/*", "--format", listed) == ""


@cli
def test_docker_events_tell_a_team_only_of_its_own_containers(people: People) -> None:
    seen = people.charlie.ok(
        "events", "--since", f"{people.since:.9f}", "--until", f"{time.time():.9f}",
        "--format", "{{.Actor.Attributes.name}}",
    )  # fmt: skip
    assert set(seen.split()) == {"blue-web"}


def test_docker_py_with_a_teams_token_lists_and_finds_only_its_own(people: People) -> None:
    client = people.charlie.client()
    assert [container.name for container in client.containers.list(all=True)] == ["blue-web"]
    assert sorted(tag for image in client.images.list() for tag in image.tags) == ["blue/tool:1", "busybox:latest"]
    with pytest.raises(docker.errors.NotFound, match="No such container: red-web"):
        client.containers.get("red-web")
    with pytest.raises(docker.errors.ImageNotFound, match="No such image: red/tool:1"):
        client.images.get("red/tool:1")


#
# Touching the other team's: exactly as for what does not exist
#


@cli
@pytest.mark.parametrize(
    "command",
    [
        ("inspect", "{}"), ("logs", "{}"), ("top", "{}"), ("diff", "{}"), ("stop", "{}"), ("start", "{}"),
        ("kill", "{}"), ("restart", "{}"), ("pause", "{}"), ("rename", "{}", "taken"), ("exec", "{}", "true"),
        ("cp", "{}:/etc/hostname", "-"), ("commit", "{}", "blue/copy:1"), ("rm", "{}"), ("rm", "-f", "{}"),
    ],
    ids=lambda command: " ".join(command),
)  # fmt: skip
def test_another_teams_container_is_as_missing_as_one_that_never_was(people: People, command: tuple[str, ...]) -> None:
    theirs = people.charlie.docker(*(part.format("red-web") for part in command))
    missing = people.charlie.docker(*(part.format("no-such-thing") for part in command))

    assert (theirs.returncode, theirs.stdout) == (missing.returncode, missing.stdout)
    assert theirs.stderr == missing.stderr.replace("no-such-thing", "red-web")
    assert people.alice.ok("ps", "--filter", "name=^red-web$", "--format", "{{.State}}") == "running\n"


@cli
@pytest.mark.parametrize(
    "command",
    [("rmi", "{}"), ("image", "inspect", "{}"), ("history", "{}"), ("tag", "{}", "blue/copy:1"),
     ("save", "-o", "/dev/null", "{}"), ("run", "--rm", "{}", "true")],
    ids=lambda command: " ".join(command),
)  # fmt: skip
def test_another_teams_tag_is_as_missing_as_one_that_never_was(people: People, command: tuple[str, ...]) -> None:
    theirs = people.charlie.docker(*(part.format("red/tool:1") for part in command))
    missing = people.charlie.docker(*(part.format("no/such:1") for part in command))

    assert (theirs.returncode, theirs.stdout) == (missing.returncode, missing.stdout)
    assert theirs.returncode != 0
    assert theirs.stderr == missing.stderr.replace("no/such:1", "red/tool:1")
    assert "red/tool:1" in people.alice.ok("images", "--format", "{{.Repository}}:{{.Tag}}").split()


@cli
def test_saving_a_repository_saves_only_the_tags_the_team_sees(people: People, tmp_path: Path) -> None:
    people.alice.ok("tag", "busybox", "busybox:red-only")
    try:
        people.charlie.ok("save", "-o", str(tmp_path / "busybox.tar"), "busybox")
    finally:
        people.alice.ok("rmi", "busybox:red-only")

    with tarfile.open(tmp_path / "busybox.tar") as archive:
        manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert [entry["RepoTags"] for entry in manifest] == [["busybox:latest"]]


@cli
def test_loading_an_archive_cannot_take_another_teams_tag(people: People, tmp_path: Path) -> None:
    archive = tmp_path / "red-tool.tar"
    people.alice.ok("save", "-o", str(archive), "red/tool:1")

    loaded = people.charlie.docker("load", "-i", str(archive))

    assert loaded.returncode == 1 and "tag red/tool:1: in use by another team" in loaded.stderr, loaded.stderr
    assert "red/tool:1" in people.alice.ok("images", "--format", "{{.Repository}}:{{.Tag}}").split()
    assert "red/tool:1" not in people.charlie.ok("images", "--format", "{{.Repository}}:{{.Tag}}").split()


@cli
def test_an_untagged_commit_stays_its_teams_to_see_and_remove(people: People) -> None:
    image = people.alice.ok("commit", "red-web").strip()

    assert image in people.alice.ok("images", "-q", "--no-trunc").split()
    assert image not in people.charlie.ok("images", "-q", "--no-trunc").split()
    assert "No such image" in people.charlie.docker("rmi", image).stderr
    people.alice.ok("rmi", image)


def test_another_teams_exec_is_no_such_exec_even_over_the_websocket(people: People) -> None:
    exec_id = people.alice.client().api.exec_create("red-web", ["true"])["Id"]

    with pytest.raises(docker.errors.NotFound, match=f"No such exec instance: {exec_id}"):
        people.charlie.client().api.exec_inspect(exec_id)
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(
            f"ws://127.0.0.1:{people.charlie.api.port}/exec/{exec_id}/start/ws",
            subprotocols=[f"bearer.{people.charlie.token}"], timeout=20,
        )  # fmt: skip
    assert refused.value.status_code == 404
    assert people.alice.client().api.exec_inspect(exec_id)["Running"] is False, "it should not have started"


@cli
def test_a_name_another_team_uses_is_refused_without_saying_whose(people: People) -> None:
    red_web = people.alice.ok("inspect", "--format", "{{.Id}}", "red-web").strip()

    refused = people.charlie.docker("create", "--name", "red-web", "busybox")

    assert refused.returncode != 0
    assert 'The container name "/red-web" is already in use by a container of another team' in refused.stderr
    assert red_web[:12] not in refused.stderr


#
# Roles, read-only tokens, what only site admins may do
#


@cli
def test_a_read_only_token_may_look_but_not_change(people: People) -> None:
    viewer = people.alice_read_only
    assert viewer.ok("ps", "--format", "{{.Names}}").split() == ["red-web"]
    assert viewer.ok("logs", "red-web") == "red says hi\n"

    run = viewer.docker("run", "--rm", "busybox", "true")
    stop = viewer.docker("stop", "red-web")

    assert run.returncode == 125 and "team red: a read-only token cannot change anything" in run.stderr
    assert stop.returncode == 1 and "container red-web: a read-only token cannot change anything" in stop.stderr


@cli
def test_an_operator_runs_and_stops_but_only_an_admin_removes(people: People) -> None:
    people.bob.ok("run", "-d", "--name", "red-job", "busybox", "sleep", "1000")
    people.bob.ok("stop", "-t", "0", "red-job")

    refused = people.bob.docker("rm", "red-job")

    assert refused.returncode == 1
    assert "container red-job: needs the admin role, you have operator" in refused.stderr
    people.alice.ok("rm", "red-job")


@cli
def test_prune_removes_only_the_teams_own_stopped_containers(people: People) -> None:
    people.alice.ok("create", "--name", "red-stopped", "busybox")
    people.charlie.ok("create", "--name", "blue-stopped", "busybox")

    pruned = people.charlie.ok("container", "prune", "-f")

    assert pruned.startswith("Deleted Containers:\n") and len(pruned.splitlines()) == 4, pruned
    assert people.charlie.ok("ps", "-a", "--format", "{{.Names}}").split() == ["blue-web"]
    assert "red-stopped" in people.alice.ok("ps", "-a", "--format", "{{.Names}}").split()
    people.alice.ok("rm", "red-stopped")


@cli
def test_a_request_cannot_choose_its_team_by_label(people: People, api: ApiServer) -> None:
    blue = _team_id(api, "blue")

    refused = people.alice.docker("run", "--rm", "--label", f"webengine.team={blue}", "busybox", "true")

    assert refused.returncode == 125
    assert "label webengine.team: set by the server to the token's team, not by a request" in refused.stderr


@cli
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["-v", "/:/host"], "bind mount of /: only site admins may mount host paths"),
        (["--mount", "type=bind,source=/etc,target=/host"], "bind mount of /etc: only site admins may mount host"),
        (["--privileged"], "--privileged: only site admins may run privileged containers"),
        (["--cap-add", "SYS_ADMIN"], "--cap-add"),
        (["--pid", "host"], "--pid host: only site admins may share the node's pid namespace"),
        (["--network", "host"], "--network host: only site admins may share the node's network namespace"),
        (["--security-opt", "seccomp=unconfined"], "--security-opt seccomp: only site admins may change"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_only_site_admins_may_hand_a_container_the_node(people: People, flags: list[str], message: str) -> None:
    refused = people.alice.docker("run", "--rm", *flags, "busybox", "true")

    assert refused.returncode == 125 and message in refused.stderr, refused.stderr
    assert people.alice.ok("ps", "-a", "--format", "{{.Names}}").split() == ["red-web"], "nothing was created"


@cli
def test_the_unix_socket_is_a_site_admins_who_mounts_host_paths_and_is_named_in_the_log(
    api: ApiServer, tmp_path: Path
) -> None:
    (tmp_path / "note").write_text("from the host\n")

    shown = api.docker(
        "run", "--rm", "--name", "site-admin-run", "-v", f"{tmp_path}:/data:ro", "busybox", "cat", "/data/note",
        host=f"unix://{api.socket_path}", config=tmp_path,
    )  # fmt: skip

    assert (shown.returncode, shown.stdout) == (0, "from the host\n"), shown.stderr
    # A run's records are written once its answers are out (dockerapi/state.py, `Activity.after_run`).
    wait_for(lambda: bool(_audit(api, action="container.start", target_name="site-admin-run")), 5, "the records")
    (created,) = _audit(api, action="container.create", target_name="site-admin-run")
    assert (created["username"], created["user_id"], created["address"], created["team"]) == ("root", None, None, None)


def test_bind_mount_roots_let_everyone_mount_below_them_and_no_further(settings: Any, tmp_path: Path) -> None:
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "shared" / "escape").symlink_to("/etc")
    settings.BIND_MOUNT_ROOTS = [str(tmp_path / "shared")]
    member = Principal(get_user_model()(username="alice"))

    check_host_access(member, {"Binds": [f"{tmp_path}/shared/data:/data"]})
    outside = re.escape(f"only site admins may mount host paths outside {tmp_path}/shared")
    with pytest.raises(PermissionDenied, match=f"bind mount of {re.escape(str(tmp_path))}/shared/escape: {outside}"):
        check_host_access(member, {"Binds": [f"{tmp_path}/shared/escape:/data"]})
    with pytest.raises(PermissionDenied, match=outside):
        check_host_access(member, {"Mounts": [{"Type": "bind", "Source": f"{tmp_path}/shared/..", "Target": "/x"}]})


#
# The audit log
#


@cli
def test_the_attempts_are_in_the_audit_log_of_the_team_they_aimed_at(people: People, api: ApiServer) -> None:
    people.charlie.docker("stop", "red-web")
    people.charlie.docker("rmi", "red/tool:1")
    people.charlie.docker("stop", "nothing-is-called-this")
    people.alice_read_only.docker("kill", "red-web")

    stop = _audit(api, action="container.stop", username="charlie", target_name="red-web")[-1]
    assert (stop["outcome"], stop["team"], stop["source"], stop["address"]) == ("denied", "red", "docker", "127.0.0.1")
    assert "No such container: red-web" in stop["detail"], "the log keeps the answer the outsider had"
    rmi = _audit(api, action="image.remove", username="charlie")[-1]
    assert (rmi["outcome"], rmi["team"], rmi["target_name"]) == ("denied", "red", "red/tool:1")
    (nothing,) = _audit(api, action="container.stop", target_name="nothing-is-called-this")
    assert (nothing["outcome"], nothing["team"]) == ("failed", None), "an attempt on nothing is the site admins'"
    (kill,) = _audit(api, action="container.kill", username="alice", outcome="denied")
    assert (kill["team"], kill["target_name"]) == ("red", "red-web")
    created = _audit(api, action="container.create", username="alice", target_name="red-web")
    assert [(row["outcome"], row["team"]) for row in created] == [("success", "red")]
