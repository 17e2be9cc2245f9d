"""The json-file log: Docker's record format, rotation, and tail/since/until/follow across files."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from containers.engine.shim.logfile import LogWriter, format_time, parse_time, read_log


def test_records_are_dockers_json_file_lines(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path / "c-json.log")
    writer.write("stdout", b'say "hi"\n\xe2\x9c\x93 done\npart')
    writer.write("stderr", b"oops\n")
    writer.close()
    lines = (tmp_path / "c-json.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["stream"], r["log"]) for r in records] == [
        ("stdout", 'say "hi"\n'), ("stdout", "✓ done\n"), ("stderr", "oops\n"), ("stdout", "part"),
    ]  # fmt: skip
    assert all(len(r["time"]) == 30 and r["time"].endswith("Z") for r in records), "RFC 3339 with nanoseconds"
    assert list(records[0]) == ["log", "stream", "time"]


def test_time_round_trips_with_nanoseconds() -> None:
    ns = 1_764_000_000_123_456_789
    assert parse_time(format_time(ns)) == ns
    assert parse_time("2026-11-28T12:00:00Z") == parse_time("2026-11-28T12:00:00.000000000Z")


def test_rotation_keeps_a_capped_number_of_files_and_reads_in_order(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    writer = LogWriter(path, max_size=2000, max_files=3)
    for n in range(200):
        writer.write("stdout", f"line {n}\n".encode())
    writer.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["c-json.log", "c-json.log.1", "c-json.log.2"]
    texts = [r.text.decode() for r in read_log(path)]
    numbers = [int(t.split()[1]) for t in texts]
    assert numbers == sorted(numbers) and numbers[-1] == 199, "rotated files must read oldest first"
    assert [r.text for r in read_log(path, tail=3)] == [b"line 197\n", b"line 198\n", b"line 199\n"]


def test_since_and_until_bound_by_record_time(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    writer = LogWriter(path)
    writer.write("stdout", b"early\n")
    time.sleep(0.01)
    middle = time.time_ns()
    time.sleep(0.01)
    writer.write("stdout", b"late\n")
    writer.close()
    assert [r.text for r in read_log(path, since_ns=middle)] == [b"late\n"]
    assert [r.text for r in read_log(path, until_ns=middle)] == [b"early\n"]


def test_follow_starts_exactly_where_the_history_ends(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    writer = LogWriter(path)
    writer.write("stdout", b"old\n")
    follower = read_log(path, tail=5, follow=True, stopped=lambda: True)
    first = next(follower)
    writer.write("stdout", b"written between history and follow\n")
    writer.close()
    assert [first.text, *(r.text for r in follower)] == [b"old\n", b"written between history and follow\n"]


def test_follow_sees_new_lines_and_survives_rotation(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    writer = LogWriter(path, max_size=300, max_files=2)
    writer.write("stdout", b"before\n")
    done = threading.Event()

    def produce() -> None:
        for n in range(20):
            writer.write("stdout", f"live {n}\n".encode())
            time.sleep(0.005)
        done.set()

    follower = read_log(path, tail=1, follow=True, stopped=done.is_set)
    seen = [next(follower).text]
    thread = threading.Thread(target=produce)
    thread.start()
    seen += [r.text for r in follower]
    thread.join()
    writer.close()
    assert seen[0] == b"before\n"
    assert seen[1:] == [f"live {n}\n".encode() for n in range(20)], "a follower must lose nothing across rotation"
