"""The model stages of a shard: synthetic captions for each live sample, then ITM scores for every candidate."""

from __future__ import annotations

import hashlib

from ..policy import choose
from .sample import Sample


def batch_seed(seed: int, shard: str, batch_index: int) -> int:
    """The sampling seed of one batch: fixed by the run's seed, the shard's name and the batch's place in it,
    never by the worker or the clock, so any worker reproduces any shard."""
    digest = hashlib.sha256(f"{seed}\0{shard}\0{batch_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def caption_batch(batch: list[Sample], captioner, seed: int) -> None:
    live = [s for s in batch if s.live]
    if not live:
        return
    for sample, captions in zip(live, captioner.caption([s.image for s in live], seed=seed), strict=True):
        sample.synthetic = [c for c in captions if c]


def score_batch(batch: list[Sample], scorer) -> None:
    live = [s for s in batch if s.live]
    if not live:
        return
    # Sampling often repeats a caption; each distinct text is scored once per image.
    candidates = [list(dict.fromkeys(([s.web_text] if s.web_text else []) + s.synthetic)) for s in live]
    for sample, texts, scores in zip(live, candidates, scorer.score([s.image for s in live], candidates), strict=True):
        score_of = dict(zip(texts, scores, strict=True))
        sample.web_score = score_of[sample.web_text] if sample.web_text else None
        sample.synthetic_scores = [score_of[text] for text in sample.synthetic]


def decide(sample: Sample, policy: str, threshold: float, web_margin: float) -> None:
    """Apply the selection policy; a dropped sample gets the policy's reason as its status."""
    if not sample.live:
        return
    sample.decision = choose(
        sample.web_text, sample.web_score, sample.synthetic, sample.synthetic_scores, policy, threshold, web_margin
    )
    if sample.decision.chosen is None:
        sample.drop(sample.decision.reason)
    else:
        sample.status = "kept"
        sample.image = None
