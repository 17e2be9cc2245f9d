"""What the clients depend on at the HTTP level: headers, versions, errors, chunked bodies, early headers."""

from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Any

import pytest

from tests.dockerapi.conftest import ApiServer

pytestmark = pytest.mark.requires("root", "overlayfs", "busybox")


def call(
    api: ApiServer, method: str, path: str, body: Any = None, token: bool = True, headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=20)
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {api.token}"
    payload = json.dumps(body).encode() if body is not None else None
    if payload is not None:
        sent["Content-Type"] = "application/json"
    connection.request(method, path, body=payload, headers=sent)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, response.headers, data


def test_ping_answers_head_and_get_with_the_negotiation_headers(api: ApiServer) -> None:
    for method in ("HEAD", "GET"):
        status, headers, body = call(api, method, "/_ping", token=False)
        assert status == 200
        assert (headers["Api-Version"], headers["Ostype"], headers["Builder-Version"]) == ("1.51", "linux", "1")
        assert (headers["Docker-Experimental"], headers["Swarm"]) == ("false", "inactive")
        assert headers["Server"].startswith("webengine/")
        assert body == (b"OK" if method == "GET" else b"")


def test_every_route_answers_with_and_without_a_version_prefix(api: ApiServer) -> None:
    for path in ("/version", "/v1.24/version", "/v1.51/version", "/v1.44/images/docker.io/library/busybox:latest/json"):
        status, headers, _ = call(api, "GET", path)
        assert status == 200, path
        assert headers["Api-Version"] == "1.51"
    status, _, body = call(api, "GET", "/v1.12/version")
    assert status == 400 and b"client version 1.12 is too old" in body


def test_paths_are_percent_decoded(api: ApiServer) -> None:
    status, _, body = call(api, "GET", "/v1.51/images/busybox%3Alatest/json")
    assert status == 200 and json.loads(body)["RepoTags"] == ["busybox:latest"]


def test_errors_are_json_messages_with_mobys_codes(api: ApiServer) -> None:
    cases = [
        ("GET", "/v1.51/containers/nosuch/json", 404, "No such container: nosuch"),
        ("GET", "/v1.51/images/nosuch:1/json", 404, "No such image: nosuch:1"),
        ("GET", "/v1.51/no/such/route", 404, "page not found"),
        ("POST", "/v1.51/build/prune", 501, "docker builder prune is not implemented yet in webengine"),
        ("GET", "/v1.51/containers/json?filters=%7B%22volume%22%3A%5B%22x%22%5D%7D", 501, "the volume filter"),
        ("GET", "/v1.51/containers/json?filters=nonsense", 400, "invalid filter"),
    ]
    for method, path, status, words in cases:
        got, headers, body = call(api, method, path)
        assert got == status, path
        assert headers["Content-Type"] == "application/json", "exactly, or the Go client prints raw JSON"
        assert words in json.loads(body)["message"], path


def test_tcp_wants_the_token_except_for_negotiation(api: ApiServer) -> None:
    status, _, body = call(api, "GET", "/v1.51/containers/json", token=False)
    assert status == 401 and "manage.py token create" in json.loads(body)["message"]
    status, _, _ = call(api, "GET", "/containers/json", headers={"Authorization": "Bearer wrong"}, token=False)
    assert status == 401
    assert call(api, "GET", "/version", token=False)[0] == 200


def test_a_chunked_request_body_is_read(api: ApiServer) -> None:
    body = json.dumps({"Image": "busybox", "Cmd": ["true"]}).encode()
    with socket.create_connection(("127.0.0.1", api.port), timeout=20) as sock:
        sock.sendall(
            b"POST /v1.51/containers/create?name=chunked HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {api.token}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + f"{len(body[:10]):x}\r\n".encode() + body[:10] + b"\r\n"
            + f"{len(body[10:]):x}\r\n".encode() + body[10:] + b"\r\n0\r\n\r\n"
        )  # fmt: skip
        assert sock.recv(65536).startswith(b"HTTP/1.1 201 ")
    status, _, _ = call(api, "DELETE", "/v1.51/containers/chunked?force=False&v=False&link=False")
    assert status == 204


def test_filters_come_in_both_shapes_and_python_false_is_false(api: ApiServer) -> None:
    config = {"Image": "busybox", "Cmd": ["sleep", "60"]}
    status, _, body = call(api, "POST", "/v1.51/containers/create?name=shapes", config)
    assert status == 201, body
    try:
        assert call(api, "POST", "/v1.51/containers/shapes/start")[0] == 204
        for shape in ('{"name":{"shapes":true}}', '{"name":["shapes"]}'):
            _, _, listed = call(api, "GET", f"/v1.51/containers/json?filters={shape}")
            assert [c["Names"] for c in json.loads(listed)] == [["/shapes"]], shape
        status, _, body = call(api, "DELETE", "/v1.51/containers/shapes?force=False")
        assert status == 409 and b"container is running" in body
    finally:
        call(api, "DELETE", "/v1.51/containers/shapes?force=1")


def test_wait_sends_its_headers_before_the_container_even_starts(api: ApiServer) -> None:
    _, _, body = call(api, "POST", "/v1.51/containers/create", {"Image": "busybox", "Cmd": ["sh", "-c", "exit 7"]})
    container_id = json.loads(body)["Id"]
    waiting = http.client.HTTPConnection("127.0.0.1", api.port, timeout=20)
    waiting.request("POST", f"/v1.51/containers/{container_id}/wait?condition=next-exit",
                    headers={"Authorization": f"Bearer {api.token}"})  # fmt: skip
    response = waiting.getresponse()  # returns with the headers, before any start
    assert response.status == 200
    started = time.monotonic()
    assert call(api, "POST", f"/v1.51/containers/{container_id}/start")[0] == 204
    assert json.loads(response.read()) == {"StatusCode": 7, "Error": None}
    assert time.monotonic() - started < 5
    waiting.close()
    assert call(api, "POST", f"/v1.51/containers/{container_id}/start")[0] == 204
    assert call(api, "POST", f"/v1.51/containers/{container_id}/wait")[2] == b'{"StatusCode": 7, "Error": null}\n'
    assert call(api, "DELETE", f"/v1.51/containers/{container_id}")[0] == 204


def test_streams_that_stay_open_do_not_hold_up_other_clients(api: ApiServer) -> None:
    """Each connection gets a thread of its own (kept for the next one): 40 open event streams, then a ping."""
    streams = []
    try:
        for _ in range(40):
            stream = socket.create_connection(("127.0.0.1", api.port), timeout=20)
            stream.sendall(f"GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api.token}\r\n\r\n".encode())
            streams.append(stream)
        for stream in streams:
            assert stream.recv(12) == b"HTTP/1.1 200", "each stream is answered at once"
        status, _, body = call(api, "GET", "/_ping", token=False)
        assert (status, body) == (200, b"OK")
    finally:
        for stream in streams:
            stream.close()
