"""Moby's conventions for queries, paths, durations and frames, without a server."""

from __future__ import annotations

import io
import socket
import threading
import urllib.parse

import pytest

from containers.dockerapi.container_routes import human_duration
from containers.dockerapi.httpserver import ApiError, Connection, Reply, Request, Response
from containers.dockerapi.router import parse_target
from containers.dockerapi.streams import MULTIPLEXED_STREAM, RAW_STREAM, content_type, frame

_CLOSED = socket.socket()
_CLOSED.close()


def request(query: str) -> Request:
    return Request(
        method="GET", target="/x?" + query, path="/x", version="1.51",
        query=urllib.parse.parse_qs(query, keep_blank_values=True), headers={}, stream=io.BytesIO(), sock=_CLOSED,
    )  # fmt: skip


@pytest.mark.parametrize("text", ["", "0", "no", "false", "False", "NONE", " false "])
def test_flag_reads_mobys_false_spellings(text: str) -> None:
    assert request(f"force={urllib.parse.quote(text)}").flag("force") is False


@pytest.mark.parametrize("text", ["1", "true", "True", "yes", "anything"])
def test_flag_reads_anything_else_as_true(text: str) -> None:
    assert request(f"force={text}").flag("force") is True


def test_flag_takes_the_default_only_when_absent() -> None:
    assert request("").flag("stream", default=True) is True
    assert request("stream=0").flag("stream", default=True) is False


def test_filters_accept_the_go_and_the_python_shapes() -> None:
    go = request("filters=" + urllib.parse.quote('{"status":{"running":true,"exited":false}}'))
    python = request("filters=" + urllib.parse.quote('{"status":["running"]}'))
    assert go.filters() == python.filters() == {"status": ["running"]}
    with pytest.raises(ApiError):
        request("filters=nonsense").filters()


def test_times_are_unix_seconds_with_nanoseconds_or_rfc3339() -> None:
    assert request("since=1700000000.000000001").time_ns("since") == 1_700_000_000_000_000_001
    assert request("since=1700000000").time_ns("since") == 1_700_000_000_000_000_000
    assert request("since=2023-11-14T22:13:20Z").time_ns("since") == 1_700_000_000_000_000_000
    assert request("since=").time_ns("since") == 0


def test_the_version_prefix_is_optional() -> None:
    assert parse_target("/v1.50/containers/json") == ("1.50", "/containers/json")
    assert parse_target("/containers/json") == ("1.51", "/containers/json")
    assert parse_target("/v1.44/images/localhost:5000/foo/json") == ("1.44", "/images/localhost:5000/foo/json")


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(0.4, "Less than a second"), (1.5, "1 second"), (59, "59 seconds"), (60, "About a minute"),
     (150, "2 minutes"), (3600, "About an hour"), (7200, "2 hours"), (3 * 86400, "3 days")],
)  # fmt: skip
def test_durations_read_as_docker_ps_shows_them(seconds: float, words: str) -> None:
    assert human_duration(seconds) == words


def test_frames_carry_the_stream_and_a_big_endian_length() -> None:
    assert frame(2, b"hi") == b"\x02\x00\x00\x00\x00\x00\x00\x02hi"
    assert content_type(tty=False, version="1.51") == MULTIPLEXED_STREAM
    assert content_type(tty=True, version="1.51") == content_type(tty=False, version="1.41") == RAW_STREAM


def test_the_work_after_an_answer_runs_once_it_is_out_and_a_failure_there_keeps_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`Response.then` (the audit record of a change to no container: a tag, ...): the client has its answer first."""
    client, server = socket.socketpair()
    answered = threading.Event()
    seen_by_then: list[bool] = []

    def after_the_answer() -> None:
        seen_by_then.append(answered.wait(5))
        raise RuntimeError("the database is gone")

    def dispatch(request: Request) -> Reply:
        if request.path == "/first":
            return Response(201, b"made", "text/plain", then=after_the_answer)
        return Response(200, b"still here", "text/plain")

    serving = threading.Thread(target=Connection(server, dispatch, parse_target).serve)
    serving.start()
    reader = client.makefile("rb")

    def answer() -> tuple[bytes, bytes]:
        status, length = reader.readline(), 0
        while (line := reader.readline()) != b"\r\n":
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return status, reader.read(length)

    try:
        client.sendall(b"POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        assert answer() == (b"HTTP/1.1 201 Created\r\n", b"made")
        answered.set()
        client.sendall(b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer() == (b"HTTP/1.1 200 OK\r\n", b"still here")
    finally:
        client.shutdown(socket.SHUT_WR)
        serving.join(5)
        reader.close()
        client.close()
    assert seen_by_then == [True], "the work ran after the client had read the answer"
    assert "the work after answering POST /first failed" in caplog.text
