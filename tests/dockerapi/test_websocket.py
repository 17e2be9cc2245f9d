"""Websockets on the Docker API: attach/ws through docker-py, the exec websocket through websocket-client over TCP."""

from __future__ import annotations

import http.client
import json
import os
import struct
import time
from collections.abc import Iterator
from typing import Any

import docker
import pytest
import websocket
from websocket import ABNF

from tests.dockerapi.conftest import ApiServer
from tests.servers import wait_for

pytestmark = pytest.mark.requires("root", "overlayfs", "busybox")


def _close_code(data: bytes) -> int:
    return struct.unpack(">H", data[:2])[0]


def _python_client(api: ApiServer) -> docker.DockerClient:
    """Return docker-py over TCP; it opens websockets without its session's headers, so give it the token there too."""
    client = api.client()
    client.api._create_websocket_connection = lambda url: websocket.create_connection(
        url, header=[f"Authorization: Bearer {api.token}"], timeout=20
    )
    return client


@pytest.fixture(scope="module")
def sleeper(api: ApiServer) -> Iterator[Any]:
    container = api.client().containers.run("busybox", "sleep 1000", detach=True)
    yield container
    container.remove(force=True)


def _exec(api: ApiServer, container: Any, cmd: list[str], *, tty: bool = True, stdin: bool = True) -> str:
    return api.client().api.exec_create(container.id, cmd, tty=tty, stdin=stdin)["Id"]


def _connect(api: ApiServer, exec_id: str, **options: Any) -> websocket.WebSocket:
    """Open the exec websocket over TCP with the token as a subprotocol, as a browser sends it."""
    options.setdefault("subprotocols", [f"bearer.{api.token}"])
    return websocket.create_connection(f"ws://127.0.0.1:{api.port}/exec/{exec_id}/start/ws", timeout=20, **options)


def _read_until(ws: websocket.WebSocket, wanted: bytes) -> bytes:
    seen = b""
    while wanted not in seen:
        opcode, data = ws.recv_data()
        assert opcode == ABNF.OPCODE_BINARY, f"expected output before {wanted!r}, got opcode {opcode}: {data!r}"
        seen += data
    return seen


def _until_exit(ws: websocket.WebSocket) -> tuple[list[bytes], dict[str, Any], int]:
    """Read the output messages, then the exit message and the close; return them and the close code."""
    output = []
    while (frame := ws.recv_data())[0] == ABNF.OPCODE_BINARY:
        output.append(frame[1])
    opcode, data = frame
    assert opcode == ABNF.OPCODE_TEXT, f"expected the exit message, got opcode {opcode}: {data!r}"
    opcode, closing = ws.recv_data()
    assert opcode == ABNF.OPCODE_CLOSE, "the server should close once it has told the exit code"
    return output, json.loads(data), _close_code(closing)


def test_attach_ws_echoes_stdin_through_a_cat_container(api: ApiServer) -> None:
    client = _python_client(api)
    # Created without detach, docker-py makes it StdinOnce: closing the websocket ends cat's input.
    container = client.containers.create("busybox", "cat", stdin_open=True)
    try:
        container.start()
        ws = client.api.attach_socket(container.id, params={"stdin": 1, "stdout": 1, "stream": 1}, ws=True)
        ws.send_binary(b"hello\n")
        assert ws.recv_data() == (ABNF.OPCODE_BINARY, b"hello\n"), "output comes raw, without Docker's 8-byte header"
        ws.send(b"text too\n")
        assert ws.recv_data() == (ABNF.OPCODE_BINARY, b"text too\n")
        ws.close()
        assert container.wait(timeout=20)["StatusCode"] == 0, "cat should see its stdin end and exit"
    finally:
        container.remove(force=True)


def test_attach_ws_replays_the_logs_and_closes_when_the_output_ends(api: ApiServer) -> None:
    client = _python_client(api)
    container = client.containers.run("busybox", ["sh", "-c", "echo one; sleep 1; echo two >&2"], detach=True)
    try:
        wait_for(lambda: container.logs() == b"one\n", 10, "the first line in the log")
        params = {"logs": 1, "stream": 1, "stdout": 1, "stderr": 1}
        ws = client.api.attach_socket(container.id, params=params, ws=True)
        output = b""
        while (frame := ws.recv_data())[0] == ABNF.OPCODE_BINARY:
            output += frame[1]
        assert output == b"one\ntwo\n"
        assert frame[0] == ABNF.OPCODE_CLOSE and _close_code(frame[1]) == 1000
    finally:
        container.remove(force=True)


def test_exec_ws_runs_a_shell_with_a_tty_that_follows_a_resize(api: ApiServer, sleeper: Any) -> None:
    exec_id = _exec(api, sleeper, ["sh"])
    ws = _connect(api, exec_id)
    chosen = ws.getheaders()["sec-websocket-protocol"]
    assert chosen == f"bearer.{api.token}", "the server should echo the subprotocol it chose"
    ws.send_binary(b"echo $((6*7))\n")
    assert b"42\r\n" in _read_until(ws, b"42\r\n")
    ws.send(json.dumps({"type": "resize", "rows": 33, "cols": 101}))
    ws.send_binary(b"stty size\n")
    _read_until(ws, b"33 101\r\n")
    ws.send_binary(b"exit 5\n")
    _, exit_message, close_code = _until_exit(ws)
    assert (exit_message, close_code) == ({"type": "exit", "code": 5}, 1000)
    inspected = api.client().api.exec_inspect(exec_id)
    assert (inspected["Running"], inspected["ExitCode"]) == (False, 5)


def test_exec_ws_without_a_tty_tells_stdout_from_stderr_by_a_first_byte(api: ApiServer, sleeper: Any) -> None:
    ws = _connect(api, _exec(api, sleeper, ["sh", "-c", "cat; echo err >&2; exit 3"], tty=False))
    ws.send_binary(b"hi\n")
    ws.send(json.dumps({"type": "close_stdin"}))
    output, exit_message, _ = _until_exit(ws)
    assert b"".join(m[1:] for m in output if m[:1] == b"\x01") == b"hi\n"
    assert b"".join(m[1:] for m in output if m[:1] == b"\x02") == b"err\n"
    assert exit_message == {"type": "exit", "code": 3}


def test_exec_ws_answers_pings(api: ApiServer, sleeper: Any) -> None:
    ws = _connect(api, _exec(api, sleeper, ["cat"], tty=False))  # silent until it is sent something
    ws.ping(b"are you there")
    assert ws.recv_data(control_frame=True) == (ABNF.OPCODE_PONG, b"are you there")
    ws.send(json.dumps({"type": "close_stdin"}))
    assert _until_exit(ws)[1] == {"type": "exit", "code": 0}


def test_exec_ws_tells_a_command_that_cannot_start_in_band(api: ApiServer, sleeper: Any) -> None:
    ws = _connect(api, _exec(api, sleeper, ["no-such-command"]))
    output, exit_message, _ = _until_exit(ws)
    assert b"no-such-command" in b"".join(output)
    assert exit_message == {"type": "exit", "code": 127}


@pytest.mark.parametrize(
    "options",
    [{}, {"subprotocols": ["bearer.wrong"]}, {"header": ["Authorization: Bearer wrong"]}],
    ids=["no token", "wrong subprotocol", "wrong header"],
)
def test_exec_ws_refuses_a_connection_without_the_token(api: ApiServer, sleeper: Any, options: dict[str, Any]) -> None:
    exec_id = _exec(api, sleeper, ["true"])
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        _connect(api, exec_id, **{"subprotocols": None, **options})
    assert refused.value.status_code == 401
    assert api.client().api.exec_inspect(exec_id)["Running"] is False, "a refused exec should not have started"


def test_exec_ws_never_takes_the_token_from_the_url(api: ApiServer, sleeper: Any) -> None:
    exec_id = _exec(api, sleeper, ["true"])
    url = f"ws://127.0.0.1:{api.port}/exec/{exec_id}/start/ws?token={api.token}&access_token={api.token}"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(url, timeout=20)
    assert refused.value.status_code == 401


def test_exec_ws_refuses_a_bad_handshake_in_http_and_the_exec_can_still_start(api: ApiServer, sleeper: Any) -> None:
    exec_id = _exec(api, sleeper, ["true"])
    authorized = {"Authorization": f"Bearer {api.token}"}
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    answers = []
    for headers in (authorized, {**authorized, **upgrade, "Sec-WebSocket-Version": "8"}):
        connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=20)
        connection.request("GET", f"/exec/{exec_id}/start/ws", headers=headers)
        response = connection.getresponse()
        answers.append((response.status, response.getheader("Sec-WebSocket-Version")))
        assert "websocket handshake refused" in json.loads(response.read())["message"]
        connection.close()
    assert answers == [(400, None), (426, "13")], "a version we do not speak should be told the one we do"
    assert _until_exit(_connect(api, exec_id))[1] == {"type": "exit", "code": 0}


def test_exec_ws_answers_404_for_an_unknown_exec(api: ApiServer) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        _connect(api, "nope")
    assert refused.value.status_code == 404
    assert json.loads(refused.value.resp_body) == {"message": "No such exec instance: nope"}


def test_exec_ws_answers_409_for_an_exec_that_has_run(api: ApiServer, sleeper: Any) -> None:
    exec_id = _exec(api, sleeper, ["true"])
    assert _until_exit(_connect(api, exec_id))[1] == {"type": "exit", "code": 0}
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        _connect(api, exec_id)
    assert refused.value.status_code == 409
    assert json.loads(refused.value.resp_body) == {"message": f"exec command {exec_id} has already run"}


def test_a_client_that_vanishes_leaves_no_process_behind(api: ApiServer, sleeper: Any) -> None:
    exec_id = _exec(api, sleeper, ["sh"])
    ws = _connect(api, exec_id)
    ws.send_binary(b"echo ready\n")
    _read_until(ws, b"ready\r\n")
    pid = api.client().api.exec_inspect(exec_id)["Pid"]
    assert os.path.exists(f"/proc/{pid}"), "the exec's shell should run while its client is there"
    ws.shutdown()  # no close message: the connection just drops
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 10, "the shell to get its hangup and exit")
    deadline = time.monotonic() + 10
    while api.client().api.exec_inspect(exec_id)["Running"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert api.client().api.exec_inspect(exec_id)["Running"] is False, "the exec should be recorded as finished"
