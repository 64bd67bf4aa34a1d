"""The suite itself never touches the network: the session guard refuses any host but this machine."""

import os
import socket

import pytest

from tests.helpers import NetworkUsed


def test_connections_off_this_machine_are_refused():
    for address in (("203.0.113.7", 443), ("huggingface.co", 443), ("2001:db8::1", 80, 0, 0)):
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s, pytest.raises(NetworkUsed):
            s.connect(address)
    with pytest.raises(NetworkUsed):
        socket.create_connection(("198.51.100.1", 80), timeout=1)


def test_loopback_stays_open_and_the_hub_is_offline():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=5):
            pass
    assert os.environ["HF_HUB_OFFLINE"] == "1"
