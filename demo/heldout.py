"""The held-out retrieval set: fresh demo images with their ground-truth captions that no run has seen.

Disjoint by construction: its scenes come from a random stream (``capfilt-heldout/WORLD/SEED``) that no shard
writer, measurement or training run draws from (they use ``capfilt-demo/...``, ``capfilt-eval/...``,
``capfilt-train...``), and each image's pixel jitter is a 31-bit draw of that stream. ``check_disjoint`` asserts
it against the images a model is about to train on, so a held-out figure can never be a training figure.
"""

from __future__ import annotations

import hashlib
import io
import random
from dataclasses import dataclass

from PIL import Image

from . import world as demo_world

SIZE = 1000


@dataclass(frozen=True)
class HeldOut:
    """Retrieval pairs: ``images[i]`` (encoded bytes, as a shard would hold them) goes with ``captions[i]``.
    Captions are distinct, so each text has exactly one right image and each image one right text."""

    world: str
    images: tuple[bytes, ...]
    captions: tuple[str, ...]

    def decoded(self) -> list[Image.Image]:
        return [Image.open(io.BytesIO(data)).convert("RGB") for data in self.images]


def heldout_set(world: str = "default", size: int = SIZE, seed: int = 0) -> HeldOut:
    """``size`` fresh images of ``world`` (``world.WORLDS``) with distinct canonical captions, JPEG-encoded as
    demo shards encode them.

    Args:
        world: which scenes to draw.
        size: pairs in the set.
        seed: which held-out set; the same arguments give the same bytes.
    """
    rng = random.Random(f"capfilt-heldout/{world}/{seed}")
    images, captions, seen = [], [], set()
    while len(captions) < size:
        scene = demo_world.sample_scene(rng, world)
        caption = demo_world.canonical_caption(scene)
        if caption in seen:
            continue
        seen.add(caption)
        captions.append(caption)
        images.append(demo_world.encode_image(demo_world.render(scene), "jpg"))
    return HeldOut(world, tuple(images), tuple(captions))


def check_disjoint(heldout: HeldOut, encoded: list[bytes], decoded: list[Image.Image]) -> None:
    """Raise ``AssertionError`` if a training image is one of the held-out images, byte for byte (``encoded``:
    the bytes as read from a shard) or pixel for pixel (``decoded``: the same images decoded)."""
    held_bytes = {hashlib.sha256(data).digest() for data in heldout.images}
    held_pixels = {hashlib.sha256(image.tobytes()).digest() for image in heldout.decoded()}
    if any(hashlib.sha256(data).digest() in held_bytes for data in encoded) or any(
        hashlib.sha256(image.convert("RGB").tobytes()).digest() in held_pixels for image in decoded
    ):
        raise AssertionError("a training image is in the held-out retrieval set")
