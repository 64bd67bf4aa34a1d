"""The demo world as video clips: a scene whose objects drift within their slots while the camera pans a few
pixels, a few dozen frames encoded with PyAV (h264 in mp4, some vp9 in webm), as a web video would be.

The motion never changes the caption: each object stays within the jitter a still image of it may have, so the
scene's one canonical caption is true of every frame.
"""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw

from .world import COLOURS, IMAGE_SIZE, SLOT_CENTRE, Scene, draw_thing, place

FPS = 12
FRAMES = (24, 48)  # 2 to 4 seconds
WEBM_FRACTION = 0.1
KEYFRAME_SECONDS = 2  # as web encodes commonly are: seeking has keyframes to land on
DRIFT_PIXELS = 3  # how far the camera pans over a clip, on each axis
END_JITTER = 0.03  # an object ends where a still image might have put it (world.place's jitter)


def render_clip(scene: Scene, rng: random.Random, frames: int, size: int = IMAGE_SIZE) -> list[Image.Image]:
    """The frames of a clip of ``scene``: the first frame is ``world.render(scene)``; each object then moves in a
    straight line to another jittered place in its slot, and the whole view pans by up to ``DRIFT_PIXELS``.

    Args:
        scene: what to show.
        rng: draws the motion (the still placement comes from the scene's own jitter seed).
        frames: how many frames, at least 2.
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
        u = k / (frames - 1)
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


def make_clip(scene: Scene, rng: random.Random) -> tuple[str, bytes]:
    """A clip of ``scene`` with a length and container drawn from ``rng``: ``(extension, bytes)``."""
    frames = rng.randint(*FRAMES)
    fmt = "webm" if rng.random() < WEBM_FRACTION else "mp4"
    return fmt, encode_clip(render_clip(scene, rng, frames), fmt)
