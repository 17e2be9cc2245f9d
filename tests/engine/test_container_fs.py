"""A container's filesystem from outside, on the real kernel: diff, commit, export, cp, top and stats."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from containers.engine import container_fs, events
from containers.engine.engine import Engine
from containers.engine.errors import Conflict, InvalidArgument, NotFound, UnsafeArchive
from containers.engine.images.busybox import PASSWD
from containers.engine.lifecycle import Record
from containers.engine.shim.logfile import read_log

pytestmark = pytest.mark.requires("root", "overlayfs", "busybox")


def run(engine: Engine, cmd: list[str], image: str = "busybox") -> tuple[Record, str]:
    """Create, start and wait for a container; return its record and output."""
    config: dict[str, object] = {"Image": image}
    if cmd:
        config["Cmd"] = cmd
    record = engine.containers.create(config)
    engine.containers.start(record.id)
    state = engine.containers.wait(record.id, timeout=20)
    assert not state.running, f"{cmd} did not finish within 20s"
    assert state.exit_code == 0, f"{cmd} failed with {state.exit_code}: {output(engine, record.id)}"
    return record, output(engine, record.id)


def start(engine: Engine, script: str, **host_config: object) -> Record:
    """Start a container that runs `script`, then sleeps; return once the script has run."""
    record = engine.containers.create({"Image": "busybox", "Cmd": ["sh", "-c", f"{script}; touch /ready; sleep 1000"]},
                                      host_config)  # fmt: skip
    engine.containers.start(record.id)
    rootfs = engine.containers.root / record.id / "rootfs"
    deadline = time.monotonic() + 10
    while not (rootfs / "ready").exists():
        assert time.monotonic() < deadline, f"the container never ran {script!r}"
        time.sleep(0.02)
    return record


def output(engine: Engine, ref: str) -> str:
    return "".join(r.text.decode() for r in read_log(engine.containers.log_path(ref)))


def tar_of(*entries: tuple[str, bytes | None]) -> io.BytesIO:
    """Return a tar with a file for each (name, data), or a directory where data is None."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            else:
                info.size, info.mode = len(data), 0o640
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    out.seek(0)
    return out


def members(chunks: Iterator[bytes]) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        return {m.name: (m, tar.extractfile(m).read() if m.isreg() else None) for m in tar}  # type: ignore[union-attr]


def nothing_mounted_under(root: Path) -> bool:
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    return not [p for p in points if p.startswith(str(root / "tmp"))]


#
# diff
#


def test_diff_lists_what_the_container_added_changed_and_deleted(engine: Engine, state_root: Path) -> None:
    record, _ = run(engine, ["sh", "-c", "touch /tmp/x; rm /etc/group; echo hi >> /etc/passwd"])
    assert container_fs.changes(engine.containers, record.id) == [
        ("C", "/etc"), ("D", "/etc/group"), ("C", "/etc/passwd"), ("C", "/tmp"), ("A", "/tmp/x"),
    ]  # fmt: skip
    assert nothing_mounted_under(state_root), "the image view must be unmounted"
    views = [s.name for s in engine.snapshotter.walk() if "-parent-view-" in s.name]
    assert views == [], "the image view snapshot must be removed"


def test_diff_leaves_out_the_mount_points_docker_keeps_in_its_init_layer(engine: Engine) -> None:
    record, _ = run(engine, ["true"])
    upper = engine.snapshotter.upper_dir(record.id)
    assert (upper / "proc").is_dir() and (upper / "etc" / "hostname").exists(), "the runtime made its mount points"
    assert container_fs.changes(engine.containers, record.id) == []


def test_diff_of_a_directory_made_again_lists_what_it_lost(engine: Engine) -> None:
    record, _ = run(engine, ["sh", "-c", "rm -r /var/spool && mkdir -p /var/spool/new"])
    assert container_fs.changes(engine.containers, record.id) == [
        ("C", "/var"), ("C", "/var/spool"), ("D", "/var/spool/mail"), ("A", "/var/spool/new"),
    ]  # fmt: skip


def test_diff_of_a_running_container_and_of_an_unknown_one(engine: Engine) -> None:
    record = start(engine, "mkdir /data")
    assert ("A", "/data") in container_fs.changes(engine.containers, record.id)
    with pytest.raises(NotFound, match="No such container: nosuch"):
        container_fs.changes(engine.containers, "nosuch")


#
# commit
#


def test_commit_makes_an_image_whose_containers_see_the_file(engine: Engine) -> None:
    record, _ = run(engine, ["sh", "-c", "echo hello > /hello.txt"])
    image = container_fs.commit(engine.containers, record.id, "committed:1", author="alice", message="say hello")
    assert image.repo_tags == ("committed:1",)
    parent = engine.images.get("busybox")
    assert image.config.diff_ids[:-1] == parent.config.diff_ids, "the parent's layers come first"
    assert len(image.layers) == len(parent.layers) + 1
    last = image.config.history[-1]
    assert (last.created_by, last.author, last.comment, last.empty_layer) == (
        "sh -c echo hello > /hello.txt", "alice", "say hello", False,
    )  # fmt: skip
    assert image.config.config.cmd == ("sh", "-c", "echo hello > /hello.txt"), "the container's Cmd is kept"
    assert image.config.config.env == parent.config.config.env
    assert not image.config.config.stop_signal, "create's default stop signal is not written"

    _, out = run(engine, ["cat", "/hello.txt"], image="committed:1")
    assert out == "hello\n"
    happened = [e for e in events.read(engine.config.root) if e.id == record.id and e.action == "commit"]
    assert [dict(e.attributes) for e in happened] == [
        {"comment": "say hello", "imageID": image.id, "imageRef": "committed:1"},
    ]


def test_commit_applies_change_instructions(engine: Engine) -> None:
    record, _ = run(engine, ["sh", "-c", "echo hello > /hello.txt"])
    changes = ['CMD ["cat", "/hello.txt"]', "ENV A=1"]
    image = container_fs.commit(engine.containers, record.id, "changed", changes=changes)
    assert image.config.config.cmd == ("cat", "/hello.txt")
    assert "A=1" in image.config.config.env
    _, out = run(engine, [], image="changed")
    assert out == "hello\n", "the image's new CMD runs by default"


def test_commit_checks_everything_before_it_writes_anything(engine: Engine) -> None:
    record = start(engine, "true")
    blobs = {b.digest for b in engine.content.walk()}
    images = len(engine.images.list())
    with pytest.raises(InvalidArgument, match="copy is not a valid change command"):
        container_fs.commit(engine.containers, record.id, "bad", changes=["COPY a b"])
    with pytest.raises(InvalidArgument, match="digest reference"):
        container_fs.commit(engine.containers, record.id, "bad@sha256:" + "a" * 64)
    assert len(engine.images.list()) == images
    assert {b.digest for b in engine.content.walk()} == blobs, "no layer blob may be left behind"
    assert engine.containers.state(record.id).status == "running"


def test_commit_pauses_a_running_container_and_resumes_it(engine: Engine) -> None:
    record = start(engine, "echo live > /live")
    paused = []
    pause = engine.containers.pause
    engine.containers.pause = lambda ref: (paused.append(ref), pause(ref))  # type: ignore[method-assign]
    image = container_fs.commit(engine.containers, record.id)
    assert paused == [record.id]
    assert engine.containers.state(record.id).status == "running", "commit must unpause the container"
    assert image.repo_tags == (), "without a tag the image is dangling"
    _, out = run(engine, ["cat", "/live"], image=image.id)
    assert out == "live\n"


def test_commit_of_an_unchanged_container_adds_an_empty_layer_entry(engine: Engine) -> None:
    record = engine.containers.create({"Image": "busybox", "Cmd": ["true"]})
    image = container_fs.commit(engine.containers, record.id, "same")
    parent = engine.images.get("busybox")
    assert image.config.diff_ids == parent.config.diff_ids
    assert image.config.history[-1].empty_layer


#
# export
#


def test_export_of_a_stopped_and_of_a_running_container(engine: Engine, state_root: Path) -> None:
    root, cwd = os.stat("/"), os.getcwd()
    stopped, _ = run(engine, ["sh", "-c", "echo written > /root/note"])
    running = start(engine, "echo running > /root/note")
    for record, text in ((stopped, b"written\n"), (running, b"running\n")):
        out = io.BytesIO()
        container_fs.export(engine.containers, record.id, out)
        out.seek(0)
        with tarfile.open(fileobj=out) as tar:
            names = tar.getnames()
            assert "bin/busybox" in names
            assert tar.extractfile("root/note").read() == text  # type: ignore[union-attr]
            assert "etc/group" in names
    assert nothing_mounted_under(state_root)
    assert (os.stat("/").st_ino, os.getcwd()) == (root.st_ino, cwd), "only the worker thread may chroot"


#
# cp
#


def test_cp_puts_a_tar_into_a_running_container(engine: Engine) -> None:
    record = start(engine, "mkdir /data")
    container_fs.archive_put(engine.containers, record.id, "/data", tar_of(("sub", None), ("sub/x", b"from outside\n")))
    out, err = engine.containers.exec(record.id, ["cat", "/data/sub/x"]).collect()
    assert (out, err) == (b"from outside\n", b"")
    out, _ = engine.containers.exec(record.id, ["stat", "-c", "%a", "/data/sub/x"]).collect()
    assert out == b"640\n", "modes come from the archive"


def test_cp_puts_into_a_stopped_container_and_the_next_run_sees_it(engine: Engine, state_root: Path) -> None:
    record = engine.containers.create({"Image": "busybox", "Cmd": ["cat", "/tmp/x", "/tmp/.wh.y"]})
    container_fs.archive_put(engine.containers, record.id, "/tmp", tar_of(("x", b"one\n"), (".wh.y", b"two\n")))
    assert nothing_mounted_under(state_root)
    engine.containers.start(record.id)
    assert engine.containers.wait(record.id, timeout=20).exit_code == 0
    assert output(engine, record.id) == "one\ntwo\n", "a `.wh.` name is a plain file, not a whiteout"


def test_cp_gets_a_file_and_a_directory_with_their_stat(engine: Engine) -> None:
    record = start(engine, "mkdir -p /data/sub && echo abc > /data/sub/f && ln -s sub/f /data/link")
    stat_, chunks = container_fs.archive_get(engine.containers, record.id, "/data/sub/f")
    assert (stat_["name"], stat_["size"], stat_["mode"], stat_["linkTarget"]) == ("f", 4, 0o644, "")
    assert stat_["mtime"].endswith("Z") and stat_["mtime"][:4].isdigit()
    found = members(chunks)
    assert list(found) == ["f"]
    assert found["f"][1] == b"abc\n"

    stat_, chunks = container_fs.archive_get(engine.containers, record.id, "/data")
    assert stat_["name"] == "data"
    assert stat_["mode"] == 1 << 31 | 0o755, "a directory carries Go's ModeDir bit"
    found = members(chunks)
    assert sorted(found) == ["data", "data/link", "data/sub", "data/sub/f"]
    assert found["data/link"][0].issym() and found["data/link"][0].linkname == "sub/f"

    stat_, chunks = container_fs.archive_get(engine.containers, record.id, "/data/link")
    assert stat_["mode"] == 1 << 27 | 0o777 and stat_["linkTarget"] == "/data/sub/f"
    assert list(members(chunks)) == ["link"], "the last component is not followed"

    stat_, chunks = container_fs.archive_get(engine.containers, record.id, "/data/sub/.")
    assert stat_["name"] == "."
    assert sorted(members(chunks)) == [".", "./f"], "`/.` means the directory's contents"


def test_cp_refuses_missing_paths_and_non_directories_with_dockers_words(engine: Engine) -> None:
    record = start(engine, "true")
    with pytest.raises(NotFound, match=f"Could not find the file /nope in container {record.name}"):
        container_fs.archive_get(engine.containers, record.name, "/nope")
    with pytest.raises(NotFound, match="Could not find the file /nope"):
        container_fs.archive_put(engine.containers, record.id, "/nope", tar_of(("x", b"")))
    with pytest.raises(InvalidArgument, match="extraction point is not a directory"):
        container_fs.archive_put(engine.containers, record.id, "/etc/passwd", tar_of(("x", b"")))
    with pytest.raises(InvalidArgument, match="cannot overwrite directory"):
        container_fs.archive_put(engine.containers, record.id, "/", tar_of(("tmp", b"")), no_overwrite_dir_non_dir=True)
    with pytest.raises(InvalidArgument, match="not a valid tar archive"):
        container_fs.archive_put(engine.containers, record.id, "/tmp", io.BytesIO(b"not a tar" * 100))


def test_cp_never_follows_the_containers_symlinks_onto_the_host(engine: Engine, tmp_path: Path) -> None:
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    record = start(engine, f"ln -s / /tmp/escape && ln -s {host_dir} /tmp/hostdir && mkdir -p {host_dir}")
    container_fs.archive_put(engine.containers, record.id, "/tmp/escape", tar_of(("pwned", b"x")))
    container_fs.archive_put(engine.containers, record.id, "/tmp/hostdir", tar_of(("pwned", b"x")))
    container_fs.archive_put(engine.containers, record.id, "/tmp", tar_of(("escape/etc/pwned", b"x")))
    assert not Path("/pwned").exists() and not Path("/etc/pwned").exists()
    assert list(host_dir.iterdir()) == [], "a symlink to a host path must resolve inside the container"
    out, _ = engine.containers.exec(record.id, ["ls", "/pwned", f"{host_dir}/pwned", "/etc/pwned"]).collect()
    assert out.split() == [b"/etc/pwned", b"/pwned", f"{host_dir}/pwned".encode()]

    with pytest.raises(UnsafeArchive):
        container_fs.archive_put(engine.containers, record.id, "/tmp", tar_of(("../../etc/pwned2", b"x")))

    _, chunks = container_fs.archive_get(engine.containers, record.id, "/tmp/escape/etc/passwd")
    assert members(chunks)["passwd"][1] == PASSWD.encode(), "the container's passwd, not the host's"
    stat_, _ = container_fs.archive_get(engine.containers, record.id, "/tmp/escape")
    assert stat_["linkTarget"] == "/"


def test_an_archive_read_half_way_leaves_nothing_behind(engine: Engine, state_root: Path) -> None:
    record, _ = run(engine, ["true"])
    _, chunks = container_fs.archive_get(engine.containers, record.id, "/bin")
    next(chunks)
    chunks.close()  # type: ignore[attr-defined]
    assert nothing_mounted_under(state_root)


#
# top and stats
#


def test_top_lists_the_containers_processes_under_dockers_titles(engine: Engine) -> None:
    record = start(engine, "true")
    result = container_fs.top(engine.containers, record.id)
    assert result["Titles"] == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    commands = [row[-1] for row in result["Processes"]]
    assert "sleep 1000" in commands
    assert len(commands) == len(engine.containers.top(record.id)), "only the container's processes"
    assert all(len(row) == 8 for row in result["Processes"])

    custom = container_fs.top(engine.containers, record.id, "-o pid,comm")
    assert custom["Titles"] == ["PID", "COMMAND"] and ["sleep"] in [row[1:] for row in custom["Processes"]]
    with pytest.raises(InvalidArgument, match='specifying "user=PID" is not allowed'):
        container_fs.top(engine.containers, record.id, "-o user=PID")


def test_top_of_a_stopped_container_is_a_conflict(engine: Engine) -> None:
    record, _ = run(engine, ["true"])
    with pytest.raises(Conflict, match="is not running"):
        container_fs.top(engine.containers, record.id)


def test_top_keeps_the_thread_rows_of_a_kept_process() -> None:
    ps = "  PID TID CMD\n   10   - sleep 1\n    -  10 -\n   11   - other\n    -  11 -\n"
    assert container_fs.parse_ps(ps, {10}) == {
        "Titles": ["PID", "TID", "CMD"], "Processes": [["10", "-", "sleep 1"], ["-", "10", "-"]],
    }  # fmt: skip


def test_stats_has_dockers_fields_with_sane_values(engine: Engine) -> None:
    record = start(engine, "true", Memory=64 * 1024 * 1024)
    sample = container_fs.stats(engine.containers, record.id)
    json.dumps(sample)
    assert (sample["name"], sample["id"]) == ("/" + record.name, record.id)
    cpu = sample["cpu_stats"]
    assert cpu["cpu_usage"]["total_usage"] > 0
    assert cpu["system_cpu_usage"] > cpu["cpu_usage"]["total_usage"]
    assert cpu["online_cpus"] == os.sysconf("SC_NPROCESSORS_ONLN")
    assert set(cpu["throttling_data"]) == {"periods", "throttled_periods", "throttled_time"}
    assert sample["precpu_stats"]["cpu_usage"]["total_usage"] == 0
    memory = sample["memory_stats"]
    assert memory["limit"] == 64 * 1024 * 1024
    assert 0 < memory["usage"] <= memory["limit"] and memory["stats"]
    assert sample["pids_stats"]["current"] >= 1
    assert sample["read"].endswith("Z") and sample["preread"] == "0001-01-01T00:00:00Z"

    later = container_fs.stats(engine.containers, record.id, previous=sample)
    assert later["precpu_stats"] == cpu and later["preread"] == sample["read"]
    assert later["cpu_stats"]["system_cpu_usage"] >= cpu["system_cpu_usage"]


def test_stats_of_a_stopped_container_are_zero(engine: Engine) -> None:
    record, _ = run(engine, ["true"])
    sample = container_fs.stats(engine.containers, record.id)
    assert sample["read"] == "0001-01-01T00:00:00Z"
    assert sample["cpu_stats"]["cpu_usage"]["total_usage"] == 0 and sample["memory_stats"] == {}
    assert sample["blkio_stats"]["io_service_bytes_recursive"] is None
