"""The model stages of a shard: synthetic captions for each live sample, then ITM scores (and contrastive
similarities) for every candidate, then the selection."""

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


def score_batch(batch: list[Sample], scorer, similarity=None, keep_embeddings: bool = False) -> None:
    """ITM scores of every live sample's candidates, and their contrastive similarity when ``similarity`` is
    given (its ITC head, when it is the filter's own, starts from the ITM pass's vision states)."""
    live = [s for s in batch if s.live]
    if not live:
        return
    # Sampling often repeats a caption; each distinct text is scored once per image.
    candidates = [list(dict.fromkeys(([s.web_text] if s.web_text else []) + s.synthetic)) for s in live]
    images = [s.image for s in live]
    states = scorer.vision_states(images)
    for sample, texts, scores in zip(live, candidates, scorer.score(images, candidates, states), strict=True):
        score_of = dict(zip(texts, scores, strict=True))
        sample.web_score = score_of[sample.web_text] if sample.web_text else None
        sample.synthetic_scores = [score_of[text] for text in sample.synthetic]
    if similarity is None:
        return
    embeddings = similarity.embed(images, candidates, states if similarity.reuses_vision_of(scorer) else None)
    del states
    for i, (sample, texts) in enumerate(zip(live, candidates, strict=True)):
        similarity_of = dict(zip(texts, embeddings.similarities(i, texts), strict=True))
        sample.web_similarity = similarity_of[sample.web_text] if sample.web_text else None
        sample.synthetic_similarities = [similarity_of[text] for text in sample.synthetic]
        if keep_embeddings:
            sample.image_embedding = embeddings.images[i].numpy()
            sample.text_embeddings = {text: embeddings.text(text).numpy() for text in texts}


def decide(sample: Sample, policy: str, threshold: float, web_margin: float, by: str = "itm") -> None:
    """Apply the selection policy to the score ``by`` names (``itm`` or ``similarity``); a dropped sample gets
    the policy's reason as its status."""
    if not sample.live:
        return
    if by == "similarity":
        web_score, synthetic_scores = sample.web_similarity, sample.synthetic_similarities
    else:
        web_score, synthetic_scores = sample.web_score, sample.synthetic_scores
    sample.decision = choose(
        sample.web_text, web_score, sample.synthetic, synthetic_scores, policy, threshold, web_margin
    )
    if sample.decision.chosen is None:
        sample.drop(sample.decision.reason)
    else:
        sample.status = "kept"
        sample.image = None
