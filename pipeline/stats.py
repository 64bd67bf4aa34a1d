"""Counts of what happened to samples: per shard, and summed over shards for the report."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field

HISTOGRAM_BINS = 20
MAX_EXAMPLES = 24  # kept, and as many dropped, examples a sum of stats keeps: first shards first


def _bins() -> list[int]:
    return [0] * HISTOGRAM_BINS


@dataclass
class Stats:
    """What became of the samples of one shard, or of many once added together.

    ``dropped`` counts samples by drop reason; ``errors`` counts the notes attached to samples that were
    processed anyway (a blank or non-UTF-8 caption, a link member). The histograms bin ITM scores of web
    and synthetic captions over [0, 1], and their contrastive similarities (when computed) over [-1, 1].
    """

    shards: int = 0
    failed_shards: list[str] = field(default_factory=list)
    truncated_shards: list[str] = field(default_factory=list)
    input: int = 0
    kept: int = 0
    kept_web: int = 0
    kept_synthetic: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    web_scores: list[int] = field(default_factory=_bins)
    synthetic_scores: list[int] = field(default_factory=_bins)
    web_similarities: list[int] = field(default_factory=_bins)
    synthetic_similarities: list[int] = field(default_factory=_bins)
    seconds: float = 0.0
    examples: list[dict] = field(default_factory=list)
    # name -> {"input", "kept", "seconds", "status": ok | failed | truncated}: sizes.json and the report's table
    per_shard: dict[str, dict] = field(default_factory=dict)

    def add_sample(
        self,
        status: str,
        source: str | None,
        web_score: float | None,
        synthetic: list[float],
        web_similarity: float | None = None,
        synthetic_similarities: list[float] = (),
    ) -> None:
        self.input += 1
        if status == "kept":
            self.kept += 1
            self.kept_web += source == "web"
            self.kept_synthetic += source == "synthetic"
        else:
            self.dropped[status] = self.dropped.get(status, 0) + 1
        if web_score is not None:
            self.web_scores[_bin(web_score)] += 1
        for score in synthetic:
            self.synthetic_scores[_bin(score)] += 1
        if web_similarity is not None:
            self.web_similarities[_bin((web_similarity + 1) / 2)] += 1
        for similarity in synthetic_similarities:
            self.synthetic_similarities[_bin((similarity + 1) / 2)] += 1

    def add_error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def __add__(self, other: Stats) -> Stats:
        return Stats(
            shards=self.shards + other.shards,
            failed_shards=sorted(self.failed_shards + other.failed_shards),
            truncated_shards=sorted(self.truncated_shards + other.truncated_shards),
            input=self.input + other.input,
            kept=self.kept + other.kept,
            kept_web=self.kept_web + other.kept_web,
            kept_synthetic=self.kept_synthetic + other.kept_synthetic,
            dropped=dict(sorted((Counter(self.dropped) + Counter(other.dropped)).items())),
            errors=dict(sorted((Counter(self.errors) + Counter(other.errors)).items())),
            web_scores=_add_bins(self.web_scores, other.web_scores),
            synthetic_scores=_add_bins(self.synthetic_scores, other.synthetic_scores),
            web_similarities=_add_bins(self.web_similarities, other.web_similarities),
            synthetic_similarities=_add_bins(self.synthetic_similarities, other.synthetic_similarities),
            seconds=self.seconds + other.seconds,
            examples=_first_examples(self.examples + other.examples),
            per_shard=dict(sorted({**self.per_shard, **other.per_shard}.items())),
        )

    def to_json(self, **extra) -> bytes:
        return (
            json.dumps({**extra, **asdict(self), **self.img2dataset_keys()}, indent=1, sort_keys=True) + "\n"
        ).encode()

    def img2dataset_keys(self) -> dict:
        """The counts img2dataset's ``*_stats.json`` carry, under its names, for tools written against them."""
        return {
            "count": self.input,
            "successes": self.kept,
            "duration": round(self.seconds, 3),
            "status_dict": {"success": self.kept, **self.dropped},
        }

    @classmethod
    def from_json(cls, data: bytes) -> Stats:
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in json.loads(data).items() if k in fields})


def _first_examples(examples: list[dict]) -> list[dict]:
    ordered = sorted(examples, key=lambda e: (e["shard"], e["key"]))
    kept = [e for e in ordered if e["status"] == "kept"][:MAX_EXAMPLES]
    return kept + [e for e in ordered if e["status"] != "kept"][:MAX_EXAMPLES]


def _add_bins(a: list[int], b: list[int]) -> list[int]:
    return [x + y for x, y in zip(a, b, strict=True)]


def _bin(score: float) -> int:
    return min(int(score * HISTOGRAM_BINS), HISTOGRAM_BINS - 1)


def sum_stats(items) -> Stats:
    """The sum of ``items`` (Beam's ``CombineGlobally`` over every shard's stats)."""
    total = Stats()
    for item in items:
        total = total + item
    return total
