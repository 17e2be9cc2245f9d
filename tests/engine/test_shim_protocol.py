"""The monitor connection's protocol (containers/engine/shim/protocol.py): a JSON line, then frames."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from containers.engine.shim import protocol


def test_a_line_is_read_without_the_frames_that_follow_it() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(b'{"pid": 42}\n' + protocol.pack(protocol.STDOUT, b"hello\n"))
        assert protocol.read_line(ours) == {"pid": 42}
        assert protocol.FrameReader().feed(ours.recv(100)) == [(protocol.STDOUT, b"hello\n")]


def test_a_line_that_comes_in_pieces_is_read_whole() -> None:
    ours, theirs = socket.socketpair()

    def send_in_pieces() -> None:
        theirs.sendall(b'{"exit_code": ')
        time.sleep(0.05)
        theirs.sendall(b"3}\n" + protocol.pack(protocol.EXIT))

    with ours, theirs:
        sender = threading.Thread(target=send_in_pieces)
        sender.start()
        assert protocol.read_line(ours) == {"exit_code": 3}
        sender.join()
        assert protocol.FrameReader().feed(ours.recv(100)) == [(protocol.EXIT, b"")]


def test_a_connection_closed_before_a_whole_line_is_an_error() -> None:
    ours, theirs = socket.socketpair()
    with ours:
        theirs.sendall(b'{"half":')
        theirs.close()
        with pytest.raises(ConnectionError):
            protocol.read_line(ours)
