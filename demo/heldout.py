"""The held-out retrieval set: fresh demo images with their ground-truth captions that no run has seen.

Disjoint by construction: its scenes come from a random stream (``capfilt-heldout/WORLD/SEED``) that no shard
writer, measurement or training run draws from (they use ``capfilt-demo/...``, ``capfilt-eval/...``,
``capfilt-train...``), and each image's pixel jitter is a 31-bit draw of that stream. ``check_disjoint`` asserts
it against the images a model is about to train on, so a held-out figure can never be a training figure.

For a video run the pairs are clips (``video_world``) from a stream of their own, with as many cuts to another
scene as the run's input had, each captioned with the scene it shows longer, as the demo's ground truth is; the
check then also compares every sampled frame.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from PIL import Image

from ..pipeline.config import VideoConfig
from . import world as demo_world
from .media import decode_media

SIZE = 1000


@dataclass(frozen=True)
class HeldOut:
    """Retrieval pairs: ``images[i]`` (encoded bytes, as a shard would hold them: an image, or a clip when
    ``video`` says how its frames are sampled) goes with ``captions[i]``. Captions are distinct, so each text
    has exactly one right image and each image one right text."""

    world: str
    images: tuple[bytes, ...]
    captions: tuple[str, ...]
    video: VideoConfig | None = None

    def decoded(self) -> list:
        """The images as RGB pixels, or the clips as lists of their sampled frames."""
        return [decode_media(data, self.video) for data in self.images]


def heldout_set(
    world: str = "default", size: int = SIZE, seed: int = 0, video: VideoConfig | None = None, cuts: float = 0.0
) -> HeldOut:
    """``size`` fresh images of ``world`` (``world.WORLDS``) with distinct canonical captions, JPEG-encoded as
    demo shards encode them; with ``video``, clips encoded as demo shards encode them.

    Args:
        world: which scenes to draw.
        size: pairs in the set.
        seed: which held-out set; the same arguments give the same bytes.
        video: clips instead of images, their frames sampled as this says.
        cuts: with ``video``, the share of clips that cut to another scene part-way (``video_world.plan_cut``).
    """
    medium = "video/" if video else ""
    rng = random.Random(f"capfilt-heldout/{medium}{world}/{seed}")
    cut_rng = random.Random(f"capfilt-heldout-cuts/{world}/{seed}")
    images, captions, seen = [], [], set()
    while len(captions) < size:
        scene = demo_world.sample_scene(rng, world)
        caption = demo_world.canonical_caption(scene)
        if caption in seen:
            continue
        seen.add(caption)
        captions.append(caption)
        if video:
            from .video_world import make_clip, plan_cut

            images.append(make_clip(scene, rng, plan_cut(cut_rng, cuts, world), cut_rng)[1])
        else:
            images.append(demo_world.encode_image(demo_world.render(scene), "jpg"))
    return HeldOut(world, tuple(images), tuple(captions), video)


def check_disjoint(heldout: HeldOut, encoded: list[bytes], decoded: list[Image.Image]) -> None:
    """Raise ``AssertionError`` if a training image is one of the held-out images, byte for byte (``encoded``:
    the bytes as read from a shard) or pixel for pixel (``decoded``: the same images decoded; for clips, lists
    of frames, each compared with every frame of every held-out clip)."""
    held_bytes = {hashlib.sha256(data).digest() for data in heldout.images}
    held_pixels = {hashlib.sha256(image.tobytes()).digest() for image in _pictures(heldout.decoded())}
    if any(hashlib.sha256(data).digest() in held_bytes for data in encoded) or any(
        hashlib.sha256(image.convert("RGB").tobytes()).digest() in held_pixels for image in _pictures(decoded)
    ):
        raise AssertionError("a training image is in the held-out retrieval set")


def _pictures(decoded: list) -> list[Image.Image]:
    """Images, and the frames of clips, in one list."""
    return [frame for item in decoded for frame in (item if isinstance(item, list) else [item])]
