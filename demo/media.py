"""Decoding a demo sample's media bytes as a trainer would: an image's pixels, or a clip's sampled frames."""

from __future__ import annotations

import io

from PIL import Image

from ..pipeline.config import VideoConfig
from ..pipeline.shard.video import read_clip


def decode_media(data: bytes, video: VideoConfig | None):
    """An image's pixels (RGB), or with ``video`` a clip's frames sampled as it says; None when the bytes do not
    decode: a trainer's decode handler would skip the sample, not invent one."""
    try:
        if video is None:
            return Image.open(io.BytesIO(data)).convert("RGB")
        return read_clip(data, video).frames
    except Exception:  # any decoder failure, VideoRefused included
        return None
