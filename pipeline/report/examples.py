"""A few samples per shard, kept and dropped, with small embedded thumbnails for the report."""

from __future__ import annotations

import base64
import io

from ..shard.decode import open_image
from ..shard.sample import Sample

THUMBNAIL_PIXELS = 128


class ExamplePicker:
    """Keeps the first ``per_kind`` kept samples and the first dropped sample of each reason (up to
    ``per_kind``), so the report shows what each decision looks like.

    Args:
        shard: the shard's name, recorded with each example.
        max_pixels: the decode pixel limit (thumbnails are made from the original bytes).
        per_kind: examples kept of each kind (kept / dropped).
    """

    def __init__(self, shard: str, max_pixels: int, per_kind: int = 3):
        self.shard, self.max_pixels, self.per_kind = shard, max_pixels, per_kind
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
            "thumbnail": self._thumbnail(sample),
        }

    def _thumbnail(self, sample: Sample) -> str | None:
        data = sample.members.get(sample.image_ext) if sample.image_ext else None
        image = open_image(data, self.max_pixels, draft_size=2 * THUMBNAIL_PIXELS)[0] if data else None
        if image is None:
            return None
        image.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=80)
        return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
