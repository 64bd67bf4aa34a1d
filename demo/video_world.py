"""The demo world as video clips: a scene whose objects drift within their slots while the camera pans a few
pixels, a few dozen frames encoded with PyAV (h264 in mp4, some vp9 in webm), as a web video would be.

The motion never changes the caption: each object stays within the jitter a still image of it may have, so the
scene's one canonical caption is true of every frame of that scene. With ``cuts`` (``write_demo_shards``), some
clips cut to (or from) another scene part-way (a ``Cut``), as edited web video does; the other scene is always
shown for less of the clip, and the ground-truth caption names the scene shown longer: one caption per clip,
which the demo captioner (trained on one scene per image) can write, and what a clip is mostly about.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

from .world import COLOURS, IMAGE_SIZE, SLOT_CENTRE, Scene, canonical_caption, draw_thing, place, sample_scene

FPS = 12
FRAMES = (24, 48)  # 2 to 4 seconds
WEBM_FRACTION = 0.1
KEYFRAME_SECONDS = 2  # as web encodes commonly are: seeking has keyframes to land on
DRIFT_PIXELS = 3  # how far the camera pans over a clip, on each axis
END_JITTER = 0.03  # an object ends where a still image might have put it (world.place's jitter)
CUT_SHARE = (0.2, 0.4)  # the other scene's share of a clip with a cut: the caption's scene is shown longer


@dataclass(frozen=True, slots=True)
class Cut:
    """Another scene a clip shows for ``share`` of its frames, before the caption's scene when ``first``."""

    scene: Scene
    share: float
    first: bool


def plan_cut(rng: random.Random, fraction: float, world: str = "default") -> Cut | None:
    """Whether a clip cuts to another scene (with probability ``fraction``) and to which; ``rng`` is a stream of
    its own (``write_demo_shards``), so clips without a cut are the same bytes at any ``fraction``."""
    if not fraction or rng.random() >= fraction:
        return None
    return Cut(sample_scene(rng, world), rng.uniform(*CUT_SHARE), rng.random() < 0.5)


def render_clip(scene: Scene, rng: random.Random, frames: int, size: int = IMAGE_SIZE) -> list[Image.Image]:
    """The frames of a clip of ``scene``: the first frame is ``world.render(scene)``; each object then moves in a
    straight line to another jittered place in its slot, and the whole view pans by up to ``DRIFT_PIXELS``.

    Args:
        scene: what to show.
        rng: draws the motion (the still placement comes from the scene's own jitter seed).
        frames: how many frames.
        size: the side of the square frames in pixels.
    """
    placement = random.Random(scene.jitter)
    starts = [place(thing, placement, size) for thing in scene.things]
    ends = [
        tuple(size * (centre + rng.uniform(-END_JITTER, END_JITTER)) for centre in SLOT_CENTRE[thing.position])
        for thing in scene.things
    ]
    pan = (rng.uniform(-DRIFT_PIXELS, DRIFT_PIXELS), rng.uniform(-DRIFT_PIXELS, DRIFT_PIXELS))
    clip = []
    for k in range(frames):
        u = k / max(1, frames - 1)
        image = Image.new("RGB", (size, size), COLOURS[scene.background])
        draw = ImageDraw.Draw(image)
        for thing, (cx, cy, half), (ex, ey) in zip(scene.things, starts, ends, strict=True):
            x = cx + u * (ex - cx) + u * pan[0]
            y = cy + u * (ey - cy) + u * pan[1]
            draw_thing(draw, thing, x, y, half)
        clip.append(image)
    return clip


def encode_clip(frames: list[Image.Image], fmt: str, fps: int = FPS) -> bytes:
    """``frames`` as an ``mp4`` (h264) or ``webm`` (vp9) file; the same frames always give the same bytes
    (one encoder thread, FFmpeg's bitexact muxing: no version strings or random ids)."""
    import av

    codec, options = {"mp4": ("libx264", {}), "webm": ("libvpx-vp9", {"deadline": "realtime", "cpu-used": "8"})}[fmt]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=fmt, options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        stream.options = {**options, "g": str(KEYFRAME_SECONDS * fps)}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def make_clip(
    scene: Scene, rng: random.Random, cut: Cut | None = None, cut_rng: random.Random | None = None
) -> tuple[str, bytes, dict | None]:
    """A clip of ``scene`` with a length and container drawn from ``rng``: ``(extension, bytes, cut)``.

    With ``cut``, ``cut.share`` of the frames (at least one) show ``cut.scene`` instead, moving as drawn from
    ``cut_rng``; ``rng`` is drawn from exactly as without a cut. ``cut`` comes back as the ground truth for the
    sample's json: when the other scene starts and ends (seconds) and its caption; None without a cut.
    """
    frames = rng.randint(*FRAMES)
    fmt = "webm" if rng.random() < WEBM_FRACTION else "mp4"
    if cut is None:
        return fmt, encode_clip(render_clip(scene, rng, frames), fmt), None
    other = min(frames - 1, max(1, round(cut.share * frames)))
    main = render_clip(scene, rng, frames - other)
    inserted = render_clip(cut.scene, cut_rng or random.Random(cut.scene.jitter), other)
    start = 0 if cut.first else frames - other
    truth = {
        "caption": canonical_caption(cut.scene),
        "start": round(start / FPS, 4),
        "end": round((start + other) / FPS, 4),
    }
    clip = inserted + main if cut.first else main + inserted
    return fmt, encode_clip(clip, fmt), truth
