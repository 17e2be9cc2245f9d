"""The local content store: blobs by digest, visible only once committed, never under a wrong digest."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from containers.engine.content.local import LocalStore
from containers.engine.content.store import digest_of, validate_digest
from containers.engine.errors import ContentNotFound, DigestMismatch, InvalidArgument


@pytest.fixture
def store(state_root: Path) -> LocalStore:
    return LocalStore(state_root / "content")


def _ingests(store: LocalStore) -> list[str]:
    return os.listdir(store.root / "ingest")


def test_it_commits_a_blob_under_its_digest(store: LocalStore) -> None:
    with store.writer("hello") as w:
        w.write(b"hello ")
        w.write(b"world")
        assert (w.offset, w.digest) == (11, digest_of(b"hello world"))
        d = w.commit(11, digest_of(b"hello world"))

    assert d == "sha256:" + hashlib.sha256(b"hello world").hexdigest()
    assert store.path(d) == store.root / "blobs" / "sha256" / d.removeprefix("sha256:")
    assert store.path(d).read_bytes() == b"hello world"
    with store.read(d) as f:
        assert f.read() == b"hello world"
    info = store.info(d)
    assert (info.digest, info.size) == (d, 11)
    assert info.created == pytest.approx(time.time(), abs=60)
    assert _ingests(store) == [], "a committed ingest should be gone"


def test_a_committed_blob_is_read_only(store: LocalStore) -> None:
    d = store.write_blob(b"x")

    assert store.path(d).stat().st_mode & 0o777 == 0o444


def test_uncommitted_bytes_are_invisible(store: LocalStore) -> None:
    w = store.writer("pending")
    w.write(b"not yet")
    d = digest_of(b"not yet")

    assert not store.exists(d)
    assert list(store.walk()) == []
    with pytest.raises(ContentNotFound, match=f"content {d}: not found"):
        store.info(d)
    w.close()


def test_it_refuses_a_wrong_digest_and_keeps_nothing(store: LocalStore) -> None:
    expected = digest_of(b"expected")
    with store.writer("bad") as w:
        w.write(b"something else")
        with pytest.raises(DigestMismatch, match=f"expected {expected}"):
            w.commit(expected=expected)

    assert not store.exists(expected)
    assert not store.exists(digest_of(b"something else"))
    assert _ingests(store) == []


def test_it_refuses_a_wrong_size(store: LocalStore) -> None:
    with store.writer("short") as w:
        w.write(b"abc")
        with pytest.raises(InvalidArgument, match="unexpected size 3, expected 4"):
            w.commit(size=4)

    assert list(store.walk()) == []


def test_committing_content_already_there_returns_its_digest(store: LocalStore) -> None:
    first = store.write_blob(b"same")
    second = store.write_blob(b"same", expected=first)

    assert first == second
    assert [i.digest for i in store.walk()] == [first]


def test_closing_without_commit_discards_the_ingest(store: LocalStore) -> None:
    w = store.writer("abandoned")
    w.write(b"data")
    w.close()
    w.close()

    assert _ingests(store) == []
    with pytest.raises(InvalidArgument, match="writer is closed"):
        w.write(b"more")


def test_an_exception_in_the_block_aborts_the_ingest(store: LocalStore) -> None:
    with pytest.raises(RuntimeError), store.writer("boom") as w:
        w.write(b"partial")
        raise RuntimeError("caller failed")

    assert _ingests(store) == []
    assert list(store.walk()) == []


def test_ingest_copies_a_stream(store: LocalStore) -> None:
    data = os.urandom(3 << 20)

    d, size = store.ingest(io.BytesIO(data), expected=digest_of(data), size=len(data))

    assert (d, size) == (digest_of(data), len(data))
    assert store.path(d).read_bytes() == data


def test_walk_and_delete(store: LocalStore) -> None:
    a, b = store.write_blob(b"a"), store.write_blob(b"b")
    (store.root / "blobs" / "sha256" / "not-a-digest").write_bytes(b"stray")

    assert {i.digest for i in store.walk()} == {a, b}
    store.delete(a)
    assert {i.digest for i in store.walk()} == {b}
    with pytest.raises(ContentNotFound):
        store.delete(a)
    with pytest.raises(ContentNotFound):
        store.read(a)
    with pytest.raises(ContentNotFound):
        store.path(a)


CRAFTED = [
    "sha256:../../../etc/passwd",
    "sha256:" + "a" * 63,
    "sha256:" + "A" * 64,
    "sha256:" + "a" * 64 + "/x",
    "sha256:" + "a" * 64 + "\n",
    "sha512:" + "a" * 128,
    "../" + "a" * 64,
    "a" * 64,
    "",
]


@pytest.mark.parametrize("crafted", CRAFTED)
def test_it_refuses_crafted_digests_everywhere(store: LocalStore, crafted: str) -> None:
    for call in (store.info, store.read, store.path, store.delete, store.exists):
        with pytest.raises(InvalidArgument, match="invalid, want sha256"):
            call(crafted)
    with pytest.raises(InvalidArgument), store.writer("x") as w:
        w.write(b"data")
        w.commit(expected=crafted)
    assert list(store.walk()) == []


def test_validate_digest_accepts_the_canonical_form() -> None:
    d = "sha256:" + "0123456789abcdef" * 4

    assert validate_digest(d) == d


_KILLED_WRITER = """
import sys
from pathlib import Path
from containers.engine.content.local import LocalStore

store = LocalStore(Path(sys.argv[1]))
w = store.writer("killed")
w.write(b"x" * (1 << 20))
print("half", flush=True)
sys.stdin.read()
w.write(b"y" * (1 << 20))
w.commit()
"""


def test_a_writer_killed_halfway_leaves_no_blob(store: LocalStore) -> None:
    full = digest_of(b"x" * (1 << 20) + b"y" * (1 << 20))
    half = digest_of(b"x" * (1 << 20))
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(store.root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"half\n", "the writer should report that it wrote half"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)

    assert proc.returncode == -signal.SIGKILL
    assert not store.exists(full) and not store.exists(half)
    assert list(store.walk()) == []
    [ingest] = _ingests(store)
    assert (store.root / "ingest" / ingest / "data").stat().st_size == 1 << 20
    assert store.clean_ingests(older_than_s=0) == 1
    assert _ingests(store) == []


def test_clean_ingests_keeps_recent_ones(store: LocalStore) -> None:
    old = store.writer("old")
    old.write(b"o")
    recent = store.writer("recent")
    recent.write(b"r")
    [old_dir] = [p for p in (store.root / "ingest").iterdir() if (p / "ref").read_text() == "old"]
    past = time.time() - 7200
    for path in (old_dir, old_dir / "data", old_dir / "ref"):
        os.utime(path, (past, past))

    assert store.clean_ingests(older_than_s=3600) == 1
    assert not old_dir.exists()
    assert recent.commit() == digest_of(b"r")
