"""Shared fixtures: tiny BLIP checkpoints saved to a temp folder, and tiny shards built on the fly."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from capfilt.models.tiny import save_random_pair
from capfilt.pipeline.shard.tar_writer import DeterministicTarWriter
from PIL import Image

WORDS = "a picture of red green blue circle square triangle small large on the left right and".split()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> tuple[str, str]:
    """A random-weight captioner and ITM model, saved and loaded by path like any hub checkpoint."""
    captioner, itm = save_random_pair(tmp_path_factory.mktemp("models"), WORDS, image_size=32)
    return str(captioner), str(itm)


def image_bytes(color=(200, 30, 30), size=(24, 16), fmt="JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def write_shard(path: Path, members: list[tuple[str, bytes]]) -> Path:
    """A tar at ``path`` holding ``members`` (name, bytes) in order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle, DeterministicTarWriter(handle) as tar:
        for name, data in members:
            tar.add(name, data)
    return path


def sample_members(key: str, text: str | None = "a red square", meta: dict | None = None, color=(200, 30, 30)):
    """The members of one ordinary sample: jpg, optional txt, json."""
    members = [(f"{key}.jpg", image_bytes(color))]
    if text is not None:
        members.append((f"{key}.txt", text.encode()))
    members.append((f"{key}.json", json.dumps(meta or {"url": f"https://example.com/{key}.jpg"}).encode()))
    return members


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
