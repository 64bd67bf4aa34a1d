"""A few samples per shard, kept and dropped, with small embedded thumbnails for the report."""

from __future__ import annotations

import base64
import io

from PIL import Image

from ..config import VideoConfig
from .decode import open_image
from .sample import Sample
from .video import VideoRefused, read_clip

THUMBNAIL_PIXELS = 128
STRIP_FRAME_PIXELS = 72  # each frame of a video's strip


class ExamplePicker:
    """Keeps the first ``per_kind`` kept samples and the first dropped sample of each reason (up to
    ``per_kind``), so the report shows what each decision looks like.

    Args:
        shard: the shard's name, recorded with each example.
        max_pixels: the decode pixel limit (thumbnails are made from the original bytes).
        video: how a video's frames are sampled; a video example shows them as a strip.
        per_kind: examples kept of each kind (kept / dropped).
    """

    def __init__(self, shard: str, max_pixels: int, video: VideoConfig | None = None, per_kind: int = 3):
        self.shard, self.max_pixels, self.per_kind = shard, max_pixels, per_kind
        self.video = video or VideoConfig()
        self.kept: list[dict] = []
        self.dropped: list[dict] = []
        self._reasons: set[str] = set()

    def offer(self, sample: Sample) -> None:
        if sample.status == "kept":
            if len(self.kept) < self.per_kind:
                self.kept.append(self._example(sample))
        elif sample.status not in self._reasons and len(self.dropped) < self.per_kind:
            self._reasons.add(sample.status)
            self.dropped.append(self._example(sample))

    @property
    def examples(self) -> list[dict]:
        return self.kept + self.dropped

    def _example(self, sample: Sample) -> dict:
        decision = sample.decision
        chosen = decision.chosen if decision is not None and sample.status == "kept" else None
        return {
            "shard": self.shard,
            "key": sample.key,
            "status": sample.status,
            "error": sample.error[:300],
            "caption": chosen.text if chosen else None,
            "source": chosen.source if chosen else None,
            "web": {"text": (sample.web_text or "")[:300] or None, "score": sample.web_score},
            "synthetic": [
                {"text": t, "score": s} for t, s in zip(sample.synthetic, sample.synthetic_scores, strict=True)
            ],
            "media": sample.media,
            "frames": sample.frame_count,
            "duration": sample.duration,
            "thumbnail": self._picture(sample),
            **({"duplicate_of": sample.duplicate_of} if sample.duplicate_of else {}),
        }

    def _picture(self, sample: Sample) -> str | None:
        if sample.media != "video":
            return self._thumbnail(sample)
        # A video refused while decoding (too long, too slow, damaged) is not read a second time for the report.
        return self._strip(sample) if sample.frame_count else None

    def _thumbnail(self, sample: Sample) -> str | None:
        return thumbnail(sample, self.max_pixels)

    def _strip(self, sample: Sample) -> str | None:
        """The frames the models saw, side by side, sampled again from the original bytes (the decoded frames
        are gone by the time a sample is written)."""
        data = sample.members.get(sample.image_ext) if sample.image_ext else None
        try:
            frames = read_clip(data, self.video).frames if data else []
        except VideoRefused:
            return None
        if not frames:
            return None
        for frame in frames:
            frame.thumbnail((STRIP_FRAME_PIXELS, STRIP_FRAME_PIXELS))
        height = max(f.height for f in frames)
        strip = Image.new("RGB", (sum(f.width for f in frames) + 2 * (len(frames) - 1), height), (160, 160, 160))
        x = 0
        for frame in frames:
            strip.paste(frame, (x, (height - frame.height) // 2))
            x += frame.width + 2
        return _data_url(strip)


def thumbnail(sample: Sample, max_pixels: int) -> str | None:
    """A small JPEG data URL of a sample's image (None for a video, or bytes that do not decode)."""
    data = sample.members.get(sample.image_ext) if sample.image_ext else None
    image = open_image(data, max_pixels, draft_size=2 * THUMBNAIL_PIXELS)[0] if data else None
    if image is None:
        return None
    image.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
    return _data_url(image)


def _data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
