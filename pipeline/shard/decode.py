"""Turning a sample's raw members into a caption, metadata and an RGB image, or a reason to drop it."""

from __future__ import annotations

import hashlib
import io
import json
import warnings

from PIL import Image, ImageOps

from ..config import DecodeConfig, VideoConfig
from .reader import unsafe_key
from .sample import IMAGE_EXTENSIONS, Sample
from .video import VIDEO_EXTENSIONS, VideoRefused, read_clip


def decode_sample(sample: Sample, limits: DecodeConfig, video: VideoConfig | None = None) -> Sample:
    """Fill ``web_text``, ``meta`` and ``image`` (or a video's ``frames``); drop the sample with a reason when
    it cannot be used. A sample with a video member is a video sample, whatever else it holds (video2dataset
    may put a thumbnail beside the clip).

    A missing, blank or non-UTF-8 caption is not a reason to drop: the captioner may still give one.
    """
    if not sample.live:
        return sample
    if unsafe_key(sample.key):
        sample.drop("unsafe_path", "member path leaves the archive's folder")
        return sample
    _decode_text(sample)
    if not _decode_meta(sample):
        return sample
    if sample.member(*VIDEO_EXTENSIONS) or _oversized_video(sample):
        return decode_video(sample, video or VideoConfig())
    found = sample.member(*IMAGE_EXTENSIONS)
    if found is None:
        sample.drop("no_image", "no image member")
        return sample
    sample.image_ext, data = found
    sample.sha256 = hashlib.sha256(data).hexdigest()
    sample.media = "image"
    sample.image, reason, error = open_image(data, limits.max_pixels, limits.draft_size)
    if sample.image is None:
        sample.drop(reason, error)
    else:
        sample.frame_count = 1
    return sample


def _oversized_video(sample: Sample) -> bool:
    return any(ext.lower() in VIDEO_EXTENSIONS for ext in sample.oversized)


def decode_video(sample: Sample, config: VideoConfig) -> Sample:
    """Sample a video member's frames (``video.read_clip``), or drop the sample with the reason it gives."""
    sample.media = "video"
    found = sample.member(*VIDEO_EXTENSIONS)
    if found is None:
        ext = next(e for e in sample.oversized if e.lower() in VIDEO_EXTENSIONS)
        sample.image_ext = ext
        sample.drop("video_too_large", f"the {ext} member is over video.max_member_bytes {config.max_member_bytes}")
        return sample
    sample.image_ext, data = found
    sample.sha256 = hashlib.sha256(data).hexdigest()
    try:
        clip = read_clip(data, config)
    except VideoRefused as refused:
        sample.drop(refused.reason, refused.detail)
        return sample
    sample.frames, sample.frame_times, sample.duration = clip.frames, clip.times, clip.duration
    sample.frame_count = len(clip.frames)
    return sample


def _decode_text(sample: Sample) -> None:
    found = sample.member("txt")
    if found is None:
        sample.note("no_txt")
        return
    try:
        text = found[1].decode("utf-8")
    except UnicodeDecodeError as exc:
        sample.note("txt_not_utf8", f"{exc.reason} at byte {exc.start}")
        return
    text = " ".join(text.split())
    if text:
        sample.web_text = text
    else:
        sample.note("blank_txt")


def _decode_meta(sample: Sample) -> bool:
    found = sample.member("json")
    if found is None:
        sample.meta = {}
        return True
    try:
        sample.meta_text = found[1].decode("utf-8")
        meta = json.loads(sample.meta_text)
    except (UnicodeDecodeError, ValueError) as exc:
        sample.drop("invalid_json", f"json member unreadable: {exc}")
        return False
    if not isinstance(meta, dict):
        sample.drop("invalid_json", f"json member is a {type(meta).__name__}, not an object")
        return False
    sample.meta = meta
    return True


def open_image(data: bytes, max_pixels: int, draft_size: int = 0) -> tuple[Image.Image | None, str, str]:
    """Decode ``data`` to an upright RGB image; the size is checked from the header before any pixels load.

    With ``draft_size``, a JPEG much larger than that is decoded at a reduced scale (the codec's own DCT
    scaling, never below ``draft_size`` on either side): the models see a few hundred pixels, and a
    12-megapixel photo then decodes several times faster.

    Returns the image (None on failure), the drop reason and the error detail.
    """
    try:
        with warnings.catch_warnings():
            # Pillow warns, then raises, on huge images; our own limit below decides first.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                return None, "image_too_large", f"{width}x{height} is over the {max_pixels} pixel limit"
            if draft_size and image.format == "JPEG":
                image.draft(image.mode, (draft_size, draft_size))
            image.load()
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image), "", ""
    except Image.DecompressionBombError as exc:
        return None, "image_too_large", f"over the pixel limit: {exc}"
    except Image.UnidentifiedImageError:
        return None, "undecodable_image", "cannot identify image file: not an image format Pillow reads"
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        return None, "undecodable_image", f"{type(exc).__name__}: {exc}"


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels carry arbitrary colour; show them on white as a browser would.
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits rather than clip at 255.
        return image.point(lambda v: v / 256).convert("L").convert("RGB")
    return image.convert("RGB")
