"""The test-suite's network guard: loopback works, any other host is refused before a packet is sent."""

import socket
import threading

import conftest
import pytest


def test_loopback_server_is_reachable():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    threading.Thread(target=lambda: server.accept()[0].sendall(b"hi"), daemon=True).start()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        assert client.recv(2) == b"hi"
    server.close()


def test_other_hosts_are_refused_and_recorded():
    before = len(conftest.NETWORK_ATTEMPTS)
    with pytest.raises(ConnectionRefusedError, match="may not reach the network"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)  # TEST-NET-1: documentation only
    assert len(conftest.NETWORK_ATTEMPTS) == before + 1
    del conftest.NETWORK_ATTEMPTS[before:]  # this attempt was the point of the test
