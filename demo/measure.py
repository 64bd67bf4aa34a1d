"""How good a pair of demo models is: CapFilt run on fresh demo samples, measured against their ground truth.

The samples go through the pipeline's own stages, not a copy of them: ``decode_sample``, then
``annotate.caption_batch`` with a ``Captioner``, ``annotate.score_batch`` with an ``ItmScorer`` (and each
similarity backend being compared), ``policy.decide``, and ``rows.sample_row`` for the rows that
``evaluate_rows`` and ``ablation_rows`` read. So a figure here is what ``capfilt run demo`` would make of the
same images, minus the shards and Beam.
"""

from __future__ import annotations

import random
from pathlib import Path

from ..models.captioner import Captioner
from ..models.itm import ItmScorer
from ..models.similarity import load_similarity
from ..pipeline.config import DecodeConfig, VideoConfig
from ..pipeline.policy import decide
from ..pipeline.shard import annotate
from ..pipeline.shard.decode import decode_sample
from ..pipeline.shard.reader import split_member_name
from ..pipeline.shard.rows import sample_row
from ..pipeline.shard.sample import Sample
from . import world
from .evaluate import ablation_rows, evaluate_rows, format_ablation, format_evaluation, ground_truth

# The recommended settings for the demo models (the `demo` pipeline in pipelines.yaml uses the same); the
# measurement, the model card and the captioner's mistakes the filter trains on all use exactly these.
NUM_CAPTIONS = 5
TOP_P = 0.9
MIN_NEW_TOKENS = 5
MAX_NEW_TOKENS = 24
THRESHOLD = 0.5


def demo_captioner(model, processor, num_captions: int = NUM_CAPTIONS, top_p: float = TOP_P) -> Captioner:
    """A CPU ``Captioner`` over a demo ``BlipForConditionalGeneration`` with the recommended settings."""
    return Captioner(model, processor, "cpu", world.PROMPT, num_captions, top_p, MIN_NEW_TOKENS, MAX_NEW_TOKENS)


def load_models(
    directory: Path, num_captions: int = NUM_CAPTIONS, top_p: float = TOP_P, batch_size: int = 32, dtype="float32"
) -> tuple[Captioner, ItmScorer]:
    """The captioner and filter saved under ``directory/{captioner,itm}``, loaded on CPU by path the way the
    pipeline loads any checkpoint (safetensors only, never a hub id).

    Args:
        directory: a demo-model directory, e.g. ``models/embedded``.
        num_captions, top_p: the captioner's sampling settings.
        batch_size: image-text pairs per ITM pass.
        dtype: the models' dtype (``models.base.PretrainedModel.load``'s: float32, bfloat16, float16 or auto).
    """
    model, processor, _ = Captioner.load(str(Path(directory) / "captioner"), "cpu", dtype)
    scorer = ItmScorer.from_pretrained(str(Path(directory) / "itm"), device="cpu", dtype=dtype, batch_size=batch_size)
    return demo_captioner(model, processor, num_captions, top_p), scorer


def load_similarities(directory: Path, scorer: ItmScorer) -> dict:
    """The similarity backends a demo-model directory offers, loaded as ``similarity.model`` loads them: ``itc``
    (the filter's own ITC head, sharing its vision pass) and ``clip`` when ``directory/clip`` holds a CLIP."""
    similarities = {"itc": load_similarity("itc", scorer)}
    if (Path(directory) / "clip" / "config.json").is_file():
        similarities["clip"] = load_similarity(str(Path(directory) / "clip"), device="cpu")
    return similarities


def demo_sample(
    key: str,
    rng: random.Random,
    correct_fraction: float,
    noise_mix: dict[str, float] | None,
    video: VideoConfig | None = None,
) -> Sample:
    """A fresh demo-world sample (a clip when ``video`` is given, sampled with it), decoded as the pipeline
    decodes one read from a shard."""
    members = world.make_sample(key, rng, correct_fraction, noise_mix, video=video is not None)
    sample = Sample(key, members={split_member_name(name)[1]: data for name, data in members.items()})
    return decode_sample(sample, DecodeConfig(), video)


def measure_models(
    captioner: Captioner,
    scorer: ItmScorer,
    samples: int = 256,
    seed: int = 1000,
    threshold: float = THRESHOLD,
    correct_fraction: float = 0.4,
    batch_size: int = 32,
    noise_mix: dict[str, float] | None = None,
    similarities: dict | None = None,
    video: VideoConfig | None = None,
    caption_below: float | None = None,
) -> dict:
    """Run CapFilt (policy ``best``, no web margin) over fresh demo samples and measure it against the truth.

    Args:
        captioner, scorer: the models, e.g. from ``load_models``; the captioner's settings are reported.
        samples: fresh demo samples to draw (seeded by ``seed``, independent of training data).
        threshold: the filter threshold.
        correct_fraction: the fraction of correct web captions in the fresh data.
        batch_size: images per model call; batch ``k`` is captioned with seed ``seed + k * batch_size``.
        noise_mix: weights per noise kind (``world.parse_noise_mix``), used instead of ``correct_fraction``.
        similarities: similarity backends by name (``load_similarities``), each scoring the same candidates
            beside the ITM head; the selection still uses ITM.
        video: clips of the demo world instead of images, sampled and captioned as this config says.
        caption_below: ``captioner.caption_below``: caption only images whose web caption scores under it.

    Returns:
        ``caption_exact`` (synthetic captions exactly right), ``caption_any`` (images with at least one
        right), ``itm`` (mean scores, pass rates and AUC of correct vs wrong captions), ``evaluation``
        (``evaluate_rows``), ``ablation`` (``ablation_rows``) and ``rows`` (the pipeline's parquet rows those
        were computed from), with ``samples``, ``seed`` and ``settings``; with ``similarities``, also
        ``similarity``: ``similarity_figures`` per backend.
    """
    similarities = similarities or {}
    rng = random.Random(f"capfilt-eval/{seed}")
    rows = []
    cosines: dict[str, list] = {name: [] for name in similarities}
    for start in range(0, samples, batch_size):
        keys = [f"eval_{i:06d}" for i in range(start, min(samples, start + batch_size))]
        batch = [demo_sample(key, rng, correct_fraction, noise_mix, video) for key in keys]
        frames = video.caption_frames if video else "spread"
        states = None
        if caption_below is None:
            annotate.caption_batch(batch, captioner, seed + start, frames)
        else:
            states = annotate.caption_after_web_scores(batch, captioner, scorer, caption_below, seed + start, frames)
        # One backend per pass of the pipeline's own scoring (a sample holds one similarity); the ITM scores
        # each pass writes are the same.
        for name, similarity in similarities.items() or [(None, None)]:
            annotate.score_batch(batch, scorer, similarity, states=states)
            if name is not None:
                cosines[name] += [(s.web_similarity, list(s.synthetic_similarities)) for s in batch]
        for sample in batch:
            decide(sample, "best", threshold, 0.0)
            rows.append(sample_row(sample))
    figures = {}
    if similarities:
        figures["similarity"] = {
            name: similarity_figures(rows, [value[0] for value in values], [value[1] for value in values])
            for name, values in cosines.items()
        }
    return {
        "samples": samples,
        "seed": seed,
        "settings": {"num_captions": captioner.num_captions, "top_p": captioner.top_p, "threshold": threshold},
        **caption_figures(rows, captioner.num_captions),
        "itm": itm_figures(rows, threshold),
        "evaluation": evaluate_rows(rows),
        "ablation": ablation_rows(rows, threshold),
        "rows": rows,
        **figures,
    }


def caption_figures(rows: list[dict], num_captions: int) -> dict:
    """``caption_exact``, the share of the ``num_captions`` sampled per image that are exactly right, and
    ``caption_any``, the share of images with at least one right."""
    exact = any_exact = 0
    for row in rows:
        right = [world.normalise(text) == ground_truth(row)[0] for text in row["synthetic_texts"]]
        exact += sum(right)
        any_exact += any(right)
    return {
        "caption_exact": exact / max(1, len(rows) * num_captions),
        "caption_any": any_exact / max(1, len(rows)),
    }


def itm_figures(rows: list[dict], threshold: float) -> dict:
    """How the filter's scores split right captions from wrong ones, over every scored caption of ``rows``
    (the web caption and each synthetic one, repeats included)."""
    positives, negatives = split_by_truth(rows, [r["web_score"] for r in rows], [r["synthetic_scores"] for r in rows])
    return separation(positives, negatives, threshold)


def similarity_figures(rows: list[dict], web: list, synthetic: list[list[float]]) -> dict:
    """``itm_figures`` for cosines (``web[i]``, ``synthetic[i]``: row ``i``'s candidates), at the cosine that
    best separates right from wrong here (``threshold``: the highest mean of pass and reject rates); a cosine
    has no fixed cut of its own as a match probability has 0.5."""
    positives, negatives = split_by_truth(rows, web, synthetic)
    cut = best_threshold(positives, negatives)
    return {**separation(positives, negatives, cut), "threshold": cut}


def separation(positives: list[float], negatives: list[float], cut: float) -> dict:
    """Mean values of right and wrong captions, the share of each on its side of ``cut``, and the AUC."""
    return {
        "correct_mean": sum(positives) / max(1, len(positives)),
        "wrong_mean": sum(negatives) / max(1, len(negatives)),
        "correct_pass": sum(p >= cut for p in positives) / max(1, len(positives)),
        "wrong_reject": sum(n < cut for n in negatives) / max(1, len(negatives)),
        "auc": auc(positives, negatives),
        "pairs": len(positives) + len(negatives),
    }


def split_by_truth(rows: list[dict], web: list, synthetic: list[list[float]]) -> tuple[list[float], list[float]]:
    """The values of right and of wrong captions: ``web[i]`` (None: no web caption) and ``synthetic[i]`` are the
    values of row ``i``'s web caption and synthetic captions."""
    positives, negatives = [], []
    for row, web_value, synthetic_values in zip(rows, web, synthetic, strict=True):
        scored = [(row["web_text"], web_value)] if web_value is not None else []
        for text, value in scored + list(zip(row["synthetic_texts"], synthetic_values, strict=True)):
            (positives if world.normalise(text) == ground_truth(row)[0] else negatives).append(value)
    return positives, negatives


def best_threshold(positives: list[float], negatives: list[float]) -> float:
    """The cut, rounded to two decimals, with the highest mean of the share of ``positives`` at or above it and
    of ``negatives`` below it (the lowest such cut on a tie)."""
    if not positives or not negatives:
        return 0.0
    cuts = sorted({round(v, 2) for v in positives + negatives})
    return max(
        cuts,
        key=lambda c: (
            sum(p >= c for p in positives) / len(positives) + sum(n < c for n in negatives) / len(negatives),
            -c,
        ),
    )


def auc(positives: list[float], negatives: list[float]) -> float:
    """Probability that a random correct caption outscores a random wrong one (ties count half)."""
    if not positives or not negatives:
        return 0.0
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def format_metrics(metrics: dict) -> str:
    """A plain-text report of ``measure_models``'s result."""
    itm = metrics["itm"]
    lines = [
        f"fresh demo samples {metrics['samples']} (seed {metrics['seed']}), settings {metrics['settings']}",
        f"captioner exact-match {metrics['caption_exact']:.3f} per caption, "
        f"{metrics['caption_any']:.3f} of images with at least one exact caption",
        f"ITM: correct mean {itm['correct_mean']:.3f} (pass {itm['correct_pass']:.3f}), wrong mean "
        f"{itm['wrong_mean']:.3f} (rejected {itm['wrong_reject']:.3f}), AUC {itm['auc']:.4f} over {itm['pairs']}",
    ]
    if "similarity" in metrics:
        lines += ["", format_similarity(metrics)]
    return "\n".join(lines + ["", format_evaluation(metrics["evaluation"]), "", format_ablation(metrics["ablation"])])


def format_similarity(metrics: dict) -> str:
    """The ITM head and each similarity backend side by side on the same candidates."""
    lines = [
        "scorer  AUC     right mean  wrong mean  cut   right pass  wrong rejected",
        _scorer_line("itm", metrics["itm"], metrics["settings"]["threshold"]),
    ]
    for name, figures in metrics["similarity"].items():
        lines.append(_scorer_line(name, figures, figures["threshold"]))
    lines.append(
        "(same candidates; cut: ITM's threshold, and for a cosine the one that best separates right from wrong "
        "here, a threshold for filter.score: similarity on the demo)"
    )
    return "\n".join(lines)


def _scorer_line(name: str, figures: dict, cut: float) -> str:
    return (
        f"{name:<7} {figures['auc']:.4f}  {figures['correct_mean']:>10.3f}  {figures['wrong_mean']:>10.3f}  "
        f"{cut:<4.2f}  {figures['correct_pass']:>10.3f}  {figures['wrong_reject']:>14.3f}"
    )
