"""The record that carries one WebDataset sample through every stage of a shard."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..policy import Decision
from ..reasons import DROP_REASONS, NOTES

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff")


@dataclass(slots=True)
class Sample:
    """One input sample: raw members as read, then what each stage learns about it.

    ``status`` is ``pending`` while the sample is live; a stage that drops it sets the reason, and later
    stages pass it through untouched, so every input sample reaches the writer exactly once.
    """

    key: str
    members: dict[str, bytes] = field(default_factory=dict)  # extension as written -> bytes
    notes: list[str] = field(default_factory=list)  # why members were ignored (links, oversize, ...)
    status: str = "pending"
    detail: str = ""  # why the sample was dropped, in words
    image_ext: str | None = None
    sha256: str | None = None  # hex sha256 of the media member's bytes (img2dataset's column)
    duplicate_of: str | None = None  # SHARD/KEY of the copy kept in its place (select --dedup)
    image: Any = None  # a decoded RGB PIL image while the sample is live
    media: str | None = None  # "image" or "video", once the media member is found
    frames: list = field(default_factory=list)  # a video's sampled RGB frames while the sample is live
    pixels: dict[str, Any] = field(default_factory=dict)  # the models' pixels of its pictures (shard.pixels)
    frame_times: list[float] = field(default_factory=list)  # when each sampled frame is shown, in seconds
    frame_count: int | None = None  # frames the models saw: 1 for an image
    duration: float | None = None  # a video's length in seconds
    oversized: list[str] = field(default_factory=list)  # extensions of members skipped for their size
    web_text: str | None = None
    meta: dict | None = None
    meta_text: str | None = None
    synthetic: list[str] = field(default_factory=list)
    web_score: float | None = None
    synthetic_scores: list[float] = field(default_factory=list)
    # Contrastive similarity (when similarity.model is set), beside each ITM score above.
    web_similarity: float | None = None
    synthetic_similarities: list[float] = field(default_factory=list)
    # Normalised embeddings while the sample is live (similarity.embeddings): the image's, and each candidate's.
    image_embedding: Any = None
    text_embeddings: dict[str, Any] = field(default_factory=dict)
    decision: Decision | None = None

    @property
    def live(self) -> bool:
        return self.status == "pending"

    def drop(self, reason: str, detail: str = "") -> None:
        if reason not in DROP_REASONS:
            raise ValueError(f"{reason!r} is not a drop reason (reasons.DROP_REASONS)")
        self.status, self.detail = reason, detail
        self.release_pixels()

    def release_pixels(self) -> None:
        """Forget the decoded pixels once no stage needs them, so a batch's memory goes with it."""
        self.image, self.frames, self.pixels = None, [], {}

    @property
    def pictures(self) -> list:
        """What the models look at: the image, or a video's sampled frames."""
        return [self.image] if self.image is not None else self.frames

    def note(self, kind: str, detail: str = "") -> None:
        """Record something that went wrong without dropping the sample (``kind`` from ``reasons.NOTES``)."""
        if kind not in NOTES:
            raise ValueError(f"{kind!r} is not a note kind (reasons.NOTES)")
        self.notes.append(f"{kind}: {detail}" if detail else kind)

    @property
    def has_similarity(self) -> bool:
        """Whether the similarity pass scored this sample (similarity.model set and the sample reached it)."""
        return self.web_similarity is not None or bool(self.synthetic_similarities)

    def scores_of(self, text: str) -> tuple[float | None, float | None]:
        """The ITM score and the similarity of one of this sample's candidate texts."""
        if text == self.web_text:
            return self.web_score, self.web_similarity
        i = self.synthetic.index(text)
        similarity = self.synthetic_similarities[i] if self.synthetic_similarities else None
        return self.synthetic_scores[i], similarity

    @property
    def error(self) -> str:
        """Everything that went wrong with this sample, dropped or not, for its parquet row."""
        return "; ".join(filter(None, [self.detail, *self.notes]))

    def member(self, *extensions: str) -> tuple[str, bytes] | None:
        """The first member whose lower-cased extension is one of ``extensions``, in that order."""
        by_lower = {ext.lower(): ext for ext in self.members}
        for ext in extensions:
            if ext in by_lower:
                return by_lower[ext], self.members[by_lower[ext]]
        return None
