"""The suite itself never touches the network: the session guard refuses any host but this machine."""

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


def test_loopback_stays_open():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=5):
            pass


def test_a_hub_id_is_refused_offline_without_a_lookup(monkeypatch, tmp_path):
    """huggingface_hub in this process read the offline switch (it reads it once, at import), so loading a hub id
    that is not cached fails at once, from the cache alone, without even a DNS lookup of the hub."""
    from huggingface_hub import constants
    from transformers import AutoConfig

    lookups = []
    resolve = socket.getaddrinfo

    def recorded(host, *args, **kwargs):
        if host not in ("localhost", "127.0.0.1", "::1"):
            lookups.append(host)
            raise NetworkUsed(f"tests never touch the network: lookup of {host!r}")  # fails fast, no retries
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recorded)
    assert constants.HF_HUB_OFFLINE is True
    with pytest.raises(OSError, match="couldn't find them in the cached files"):
        AutoConfig.from_pretrained("Salesforce/blip-itm-base-coco", cache_dir=str(tmp_path / "empty-cache"))
    assert lookups == []
