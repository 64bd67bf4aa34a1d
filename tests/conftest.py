"""Fixtures the whole suite shares, and the guard that keeps it off the network."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest

from capfilt.demo.training.tiny import save_random_clip, save_random_pair
from tests.helpers import WORDS, NetworkUsed, run, sample_members, write_messy_input, write_shard

# Subprocesses inherit these: a hub id can never be resolved online, whatever a test runs.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


def _loopback(address) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    if not isinstance(host, str) or host in ("localhost", ""):
        return True  # unix sockets and the local host name
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False  # a host name other than localhost would need DNS


@pytest.fixture(autouse=True, scope="session")
def no_network():
    """Every connection from this process must stay on loopback (moto, Beam's job service, worker pools)."""
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded(method):
        def wrapper(self, address):
            if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address):
                raise NetworkUsed(f"tests never touch the network: connect to {address!r}")
            return method(self, address)

        return wrapper

    socket.socket.connect, socket.socket.connect_ex = guarded(connect), guarded(connect_ex)
    yield
    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> tuple[str, str]:
    """A random-weight captioner and ITM model, saved and loaded by path like any hub checkpoint."""
    captioner, itm = save_random_pair(tmp_path_factory.mktemp("models"), WORDS, image_size=32)
    return str(captioner), str(itm)


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> str:
    """A random-weight CLIPModel with a CLIPProcessor around the tests' word tokenizer, saved to a directory."""
    return str(save_random_clip(tmp_path_factory.mktemp("clip") / "clip", WORDS, image_size=32))


@pytest.fixture
def shards(tmp_path) -> Path:
    """Two shards of six ordinary samples each (one without a caption) under ``tmp_path/in``."""
    colors = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    for shard in range(2):
        members = []
        for i in range(6):
            text = None if i == 3 else f"a {['red', 'green', 'blue'][i % 3]} square"
            members += sample_members(f"s{shard}_{i:03d}", text, color=colors[i % 3])
        write_shard(tmp_path / "in" / f"{shard:05d}.tar", members)
    return tmp_path / "in"


@pytest.fixture(scope="session")
def messy_run(tiny_models, tmp_path_factory):
    """One score_only run over the messy corpus, shared by the hardening and report tests."""
    root = tmp_path_factory.mktemp("messy")
    expected = write_messy_input(root / "in")
    out = root / "out"
    code = run(tiny_models, root / "in", out, "--set", "filter.policy=score_only", pattern="*")
    return code, out, expected
