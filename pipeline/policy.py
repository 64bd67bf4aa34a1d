"""Selection policies: which caption a sample keeps, or why it is dropped."""

from __future__ import annotations

from dataclasses import dataclass, field

POLICIES = ("best", "all", "score_only")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A caption and its ITM match probability; ``source`` is ``web`` or ``synthetic``."""

    text: str
    score: float
    source: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of selection: ``chosen`` is None when the sample is dropped for ``reason``."""

    chosen: Candidate | None
    kept: tuple[Candidate, ...] = field(default=())
    reason: str = "kept"


def select(
    web: Candidate | None,
    synthetic: list[Candidate],
    policy: str = "best",
    threshold: float = 0.5,
    web_margin: float = 0.0,
) -> Decision:
    """Apply ``policy`` to the web candidate (None when the sample had no usable caption) and the synthetic ones.

    Ties go to the web caption, then to the earlier synthetic caption, so the choice is stable.
    """
    candidates = ([web] if web is not None else []) + list(synthetic)
    if not candidates:
        return Decision(None, reason="no_caption")
    # max() keeps the first of equal scores: web first, then synthetic in sampling order.
    best = max(candidates, key=lambda c: c.score)
    if web is not None and web is not best and web.score >= threshold and best.score - web.score <= web_margin:
        best = web
    if policy == "score_only":
        return Decision(best, kept=(best,))
    if policy == "best":
        if best.score < threshold:
            return Decision(None, reason="below_threshold")
        return Decision(best, kept=(best,))
    if policy == "all":
        kept = tuple(c for c in candidates if c.score >= threshold)
        if not kept:
            return Decision(None, reason="below_threshold")
        return Decision(best, kept=kept)
    raise ValueError(f"unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")


def choose(
    web_text: str | None,
    web_score: float | None,
    synthetic_texts: list[str],
    synthetic_scores: list[float | None],
    policy: str = "best",
    threshold: float = 0.5,
    web_margin: float = 0.0,
) -> Decision:
    """Build one sample's candidates from its texts and scores and apply ``policy``: the pipeline's decision
    and every re-selection from recorded scores (evaluation, ablations) go through here.

    A text without a score (the sample never reached the filter) is not a candidate.
    """
    web = Candidate(web_text, web_score, "web") if web_text and web_score is not None else None
    synthetic = [
        Candidate(text, score, "synthetic")
        for text, score in zip(synthetic_texts, synthetic_scores, strict=True)
        if score is not None
    ]
    return select(web, synthetic, policy, threshold, web_margin)


def decide(sample, policy: str, threshold: float, web_margin: float, by: str = "itm") -> None:
    """Apply the selection policy to a live ``Sample``'s scores of kind ``by`` (``itm`` or ``similarity``):
    a kept sample gets its decision, a dropped one the policy's reason as its status."""
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
        sample.release_pixels()
